//! HRNet backbone: "Deep High-Resolution Representation Learning for Human Pose Estimation",
//! Sun et al., CVPR 2019 (<https://arxiv.org/abs/1902.09212>), as built by MMPose.
//!
//! A stem brings the image to 1/4 resolution, a bottleneck stage (`layer1`) widens it, then
//! stages 2-4 keep 2, 3 and 4 parallel branches at strides 4/8/16/32. Transitions open each new
//! branch from the lowest-resolution one; inside a stage every module runs its branches and then
//! fuses them (each output sums all branches, upsampled or strided to its resolution). Only the
//! highest-resolution output of the last module is returned.
//!
//! Layer and key names follow the MMPose state dict (`backbone.stage3.1.fuse_layers.2.0.1.0`),
//! so `vb.pp(..)` nesting below is the checkpoint layout.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv::{Conv, ConvSpec};
use crate::nn::cpu_conv::AddUpsampled;

/// Stem width, fixed in MMPose's HRNet.
const STEM_CHANNELS: usize = 64;
/// Bottleneck expansion in `layer1`.
const EXPANSION: usize = 4;

/// The variable parts of MMPose's `extra` backbone config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrNetConfig {
    /// Bottleneck width in `layer1` (64 in the published models; output is 4x this).
    pub stage1_channels: usize,
    /// Number of bottlenecks in `layer1`.
    pub stage1_blocks: usize,
    /// Branch widths at strides 4, 8, 16, 32 (W, 2W, 4W, 8W).
    pub widths: [usize; 4],
    /// HR modules in stages 2, 3, 4.
    pub num_modules: [usize; 3],
    /// Basic blocks per branch in stages 2, 3, 4.
    pub num_blocks: [usize; 3],
}

impl HrNetConfig {
    /// The published layout at branch width `w` (32 and 48 exist; any width works).
    pub fn with_width(w: usize) -> Self {
        Self {
            stage1_channels: 64,
            stage1_blocks: 4,
            widths: [w, 2 * w, 4 * w, 8 * w],
            num_modules: [1, 4, 3],
            num_blocks: [4, 4, 4],
        }
    }

    /// Channels of the returned feature map (what the head consumes).
    pub fn out_channels(&self) -> usize {
        self.widths[0]
    }
}

/// 1x1 → 3x3 → 1x1 residual block with expansion 4 (`layer1`).
#[derive(Debug, Clone)]
struct Bottleneck {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    downsample: Option<Conv>,
}

impl Bottleneck {
    fn new(vb: VarBuilder, c_in: usize, mid: usize) -> Result<Self> {
        let c_out = mid * EXPANSION;
        let downsample = if c_in != c_out {
            let d = vb.pp("downsample");
            Some(Conv::with_bn(
                d.pp("0"),
                d.pp("1"),
                ConvSpec::k1(c_in, c_out, false),
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1: Conv::with_bn(vb.pp("conv1"), vb.pp("bn1"), ConvSpec::k1(c_in, mid, true))?,
            conv2: Conv::with_bn(
                vb.pp("conv2"),
                vb.pp("bn2"),
                ConvSpec::k3(mid, mid, 1, true).wide_tiles(),
            )?,
            conv3: Conv::with_bn(
                vb.pp("conv3"),
                vb.pp("bn3"),
                ConvSpec::k1(mid, c_out, false),
            )?,
            downsample,
        })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        self.conv3.forward_add_relu(&y, &identity)
    }
}

/// 3x3 → 3x3 residual block (HR module branches; input and output widths are equal).
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv,
    conv2: Conv,
}

impl BasicBlock {
    fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            conv1: Conv::with_bn(
                vb.pp("conv1"),
                vb.pp("bn1"),
                ConvSpec::k3(c, c, 1, true).wide_tiles(),
            )?,
            conv2: Conv::with_bn(
                vb.pp("conv2"),
                vb.pp("bn2"),
                ConvSpec::k3(c, c, 1, false).wide_tiles(),
            )?,
        })
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv2.forward_add_relu(&self.conv1.forward(x)?, x)
    }
}

/// A chain of conv+BN layers applied in order.
#[derive(Debug, Clone)]
struct Chain(Vec<Conv>);

impl Module for Chain {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.0 {
            y = l.forward(&y)?;
        }
        Ok(y)
    }
}

/// How branch j reaches the resolution of output i.
#[derive(Debug, Clone)]
enum Fuse {
    /// j == i.
    Identity,
    /// j > i: 1x1 conv to C_i, BN, nearest upsampling by 2^(j-i).
    Up { conv: Conv, factor: usize },
    /// j < i: (i-j) stride-2 3x3 conv+BN steps; ReLU after all but the last.
    Down(Chain),
}

impl Fuse {
    fn new(vb: VarBuilder, widths: &[usize], i: usize, j: usize) -> Result<Self> {
        use std::cmp::Ordering;
        Ok(match j.cmp(&i) {
            Ordering::Equal => Fuse::Identity,
            Ordering::Greater => Fuse::Up {
                conv: Conv::with_bn(
                    vb.pp("0"),
                    vb.pp("1"),
                    ConvSpec::k1(widths[j], widths[i], false),
                )?,
                factor: 1 << (j - i),
            },
            Ordering::Less => {
                let steps = i - j;
                let layers = (0..steps)
                    .map(|k| {
                        let last = k == steps - 1;
                        let c_out = if last { widths[i] } else { widths[j] };
                        let s = vb.pp(k.to_string());
                        Conv::with_bn(
                            s.pp("0"),
                            s.pp("1"),
                            ConvSpec::k3(widths[j], c_out, 2, !last),
                        )
                    })
                    .collect::<Result<_>>()?;
                Fuse::Down(Chain(layers))
            }
        })
    }

    /// `acc + f(x)` (just `f(x)` for the first term), with the ReLU that closes the sum when
    /// `relu`. On the CPU each term is added by the op that produces it.
    fn add_to(&self, acc: Option<Tensor>, x: &Tensor, relu: bool) -> Result<Tensor> {
        let first = |y: Tensor| if relu { y.relu() } else { Ok(y) };
        match self {
            Fuse::Identity => match acc {
                None => first(x.clone()),
                Some(a) => add_upsampled(&a, x, 1, relu),
            },
            Fuse::Up { conv, factor } => {
                let y = conv.forward(x)?;
                match acc {
                    None => {
                        let (_, _, h, w) = y.dims4()?;
                        first(y.upsample_nearest2d(h * factor, w * factor)?)
                    }
                    Some(a) => add_upsampled(&a, &y, *factor, relu),
                }
            }
            Fuse::Down(Chain(layers)) => {
                let (last, steps) = layers.split_last().expect("at least one step");
                let mut z = x.clone();
                for l in steps {
                    z = l.forward(&z)?;
                }
                match acc {
                    None => first(last.forward(&z)?),
                    Some(a) => last.forward_add(&z, &a, relu),
                }
            }
        }
    }
}

/// `acc + nearest_upsample(y, factor)`, optionally followed by ReLU.
fn add_upsampled(acc: &Tensor, y: &Tensor, factor: usize, relu: bool) -> Result<Tensor> {
    if acc.device().is_cpu() && acc.dtype() == DType::F32 && y.dtype() == DType::F32 {
        return acc
            .contiguous()?
            .apply_op2_no_bwd(&y.contiguous()?, &AddUpsampled { factor, relu });
    }
    let (_, _, h, w) = y.dims4()?;
    let up = if factor == 1 {
        y.clone()
    } else {
        y.upsample_nearest2d(h * factor, w * factor)?
    };
    let s = (acc + up)?;
    if relu {
        s.relu()
    } else {
        Ok(s)
    }
}

/// One high-resolution module: parallel branches, then the fuse layers.
#[derive(Debug, Clone)]
struct HrModule {
    branches: Vec<Vec<BasicBlock>>,
    /// `fuse[i][j]`; one row per output (only row 0 when the module is not multi-scale).
    fuse: Vec<Vec<Fuse>>,
}

impl HrModule {
    fn new(vb: VarBuilder, widths: &[usize], blocks: usize, multiscale: bool) -> Result<Self> {
        let n = widths.len();
        let branches = (0..n)
            .map(|b| {
                let vb = vb.pp("branches").pp(b.to_string());
                (0..blocks)
                    .map(|k| BasicBlock::new(vb.pp(k.to_string()), widths[b]))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = if multiscale { n } else { 1 };
        let fuse = (0..outputs)
            .map(|i| {
                let vb = vb.pp("fuse_layers").pp(i.to_string());
                (0..n)
                    .map(|j| Fuse::new(vb.pp(j.to_string()), widths, i, j))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { branches, fuse })
    }

    fn forward(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let xs = self
            .branches
            .iter()
            .zip(xs)
            .map(|(blocks, x)| {
                let mut y = x.clone();
                for b in blocks {
                    y = b.forward(&y)?;
                }
                Ok(y)
            })
            .collect::<Result<Vec<_>>>()?;
        // Sum in branch order j = 0..n, as MMPose does, then ReLU.
        self.fuse
            .iter()
            .map(|row| {
                let mut acc = None;
                for (j, (f, x)) in row.iter().zip(&xs).enumerate() {
                    acc = Some(f.add_to(acc, x, j + 1 == row.len())?);
                }
                acc.ok_or_else(|| candle_core::Error::msg("HR module without branches"))
            })
            .collect()
    }
}

/// The HRNet backbone.
#[derive(Debug, Clone)]
pub struct HrNet {
    conv1: Conv,
    conv2: Conv,
    layer1: Vec<Bottleneck>,
    /// `transitions[s][i]` opens branch i of stage s+2 (None: the branch passes through).
    transitions: Vec<Vec<Option<Chain>>>,
    stages: Vec<Vec<HrModule>>,
}

impl HrNet {
    /// Build from a `VarBuilder` positioned at the backbone (`backbone.` keys).
    pub fn new(vb: VarBuilder, cfg: &HrNetConfig) -> Result<Self> {
        let conv1 = Conv::with_bn(
            vb.pp("conv1"),
            vb.pp("bn1"),
            ConvSpec::k3(3, STEM_CHANNELS, 2, true),
        )?;
        let conv2 = Conv::with_bn(
            vb.pp("conv2"),
            vb.pp("bn2"),
            ConvSpec::k3(STEM_CHANNELS, STEM_CHANNELS, 2, true),
        )?;
        let mut c_in = STEM_CHANNELS;
        let layer1 = (0..cfg.stage1_blocks)
            .map(|k| {
                let b =
                    Bottleneck::new(vb.pp("layer1").pp(k.to_string()), c_in, cfg.stage1_channels);
                c_in = cfg.stage1_channels * EXPANSION;
                b
            })
            .collect::<Result<Vec<_>>>()?;

        let mut prev: Vec<usize> = vec![cfg.stage1_channels * EXPANSION];
        let mut transitions = Vec::new();
        let mut stages = Vec::new();
        for s in 0..3 {
            let cur = &cfg.widths[..s + 2];
            let tvb = vb.pp(format!("transition{}", s + 1));
            transitions.push(transition(tvb, &prev, cur)?);
            let svb = vb.pp(format!("stage{}", s + 2));
            let n_mod = cfg.num_modules[s];
            let modules = (0..n_mod)
                .map(|m| {
                    // Stage 4 is not multi-scale: its last module keeps only output 0.
                    let multiscale = !(s == 2 && m == n_mod - 1);
                    HrModule::new(svb.pp(m.to_string()), cur, cfg.num_blocks[s], multiscale)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(modules);
            prev = cur.to_vec();
        }
        Ok(Self {
            conv1,
            conv2,
            layer1,
            transitions,
            stages,
        })
    }

    /// NCHW image batch → the stride-4 feature map of branch 0 (N, W, H/4, W/4).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv2.forward(&self.conv1.forward(x)?)?;
        for b in &self.layer1 {
            x = b.forward(&x)?;
        }
        let mut ys = vec![x];
        for (trans, modules) in self.transitions.iter().zip(&self.stages) {
            // A transition reads the lowest-resolution output of the previous stage; branches
            // without one pass their own input through.
            let last = ys.last().cloned().expect("at least one branch");
            let mut xs = trans
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Some(chain) => chain.forward(&last),
                    None => Ok(ys[i].clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            for m in modules {
                xs = m.forward(&xs)?;
            }
            ys = xs;
        }
        Ok(ys.swap_remove(0))
    }
}

/// Transition from `prev` branch widths to `cur`: a 3x3 conv where an existing branch changes
/// width, and for each new branch a chain of stride-2 3x3 convs from the last previous branch.
fn transition(vb: VarBuilder, prev: &[usize], cur: &[usize]) -> Result<Vec<Option<Chain>>> {
    (0..cur.len())
        .map(|i| {
            let vb = vb.pp(i.to_string());
            if i < prev.len() {
                if cur[i] == prev[i] {
                    return Ok(None);
                }
                let l = Conv::with_bn(
                    vb.pp("0"),
                    vb.pp("1"),
                    ConvSpec::k3(prev[i], cur[i], 1, true).wide_tiles(),
                )?;
                return Ok(Some(Chain(vec![l])));
            }
            let c = *prev.last().expect("previous stage has branches");
            let steps = i + 1 - prev.len();
            let layers = (0..steps)
                .map(|k| {
                    let c_out = if k == steps - 1 { cur[i] } else { c };
                    let s = vb.pp(k.to_string());
                    Conv::with_bn(s.pp("0"), s.pp("1"), ConvSpec::k3(c, c_out, 2, true))
                })
                .collect::<Result<_>>()?;
            Ok(Some(Chain(layers)))
        })
        .collect()
}
