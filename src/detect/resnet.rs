//! ResNet and ResNeXt backbones as MMDetection builds them ("pytorch" style: the stride sits
//! on the 3x3 convolution), with every BN folded into its convolution.
//!
//! He et al., "Deep Residual Learning for Image Recognition", <https://arxiv.org/abs/1512.03385>;
//! Xie et al., "Aggregated Residual Transformations for Deep Neural Networks" (ResNeXt),
//! <https://arxiv.org/abs/1611.05431>.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv::{Conv, ConvSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Bottleneck blocks per stage (50: 3,4,6,3; 101: 3,4,23,3).
    pub blocks: [usize; 4],
    /// Stem width and the `planes` of stage 1 (64 in the published models).
    pub base_channels: usize,
    /// Groups of the 3x3 convolutions (1: ResNet, 64: ResNeXt-101 64x4d).
    pub groups: usize,
    /// ResNeXt's per-group width at `base_channels` planes (4 in 64x4d).
    pub base_width: usize,
}

impl ResNetConfig {
    pub fn resnet50() -> Self {
        Self {
            blocks: [3, 4, 6, 3],
            base_channels: 64,
            groups: 1,
            base_width: 4,
        }
    }

    pub fn resnext101_64x4d() -> Self {
        Self {
            blocks: [3, 4, 23, 3],
            base_channels: 64,
            groups: 64,
            base_width: 4,
        }
    }

    /// Output channels of stage `i` (0-based): C2..C5.
    pub fn out_channels(&self, i: usize) -> usize {
        self.planes(i) * 4
    }

    fn planes(&self, i: usize) -> usize {
        self.base_channels << i
    }

    /// Width of the 3x3 convolution in stage `i`.
    fn width(&self, i: usize) -> usize {
        let p = self.planes(i);
        if self.groups == 1 {
            p
        } else {
            p * self.base_width / self.base_channels * self.groups
        }
    }
}

/// conv1x1 → conv3x3 (stride, groups) → conv1x1, plus the identity or a 1x1 projection.
#[derive(Debug, Clone)]
struct Bottleneck {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    downsample: Option<Conv>,
}

impl Bottleneck {
    fn new(
        vb: VarBuilder,
        cfg: &ResNetConfig,
        stage: usize,
        c_in: usize,
        stride: usize,
    ) -> Result<Self> {
        let (width, c_out) = (cfg.width(stage), cfg.out_channels(stage));
        let conv1 = Conv::with_bn(
            vb.pp("conv1"),
            vb.pp("bn1"),
            ConvSpec::k1(c_in, width, true),
        )?;
        let conv2 = Conv::with_bn(
            vb.pp("conv2"),
            vb.pp("bn2"),
            ConvSpec::k3(width, width, stride, true).grouped(cfg.groups),
        )?;
        let conv3 = Conv::with_bn(
            vb.pp("conv3"),
            vb.pp("bn3"),
            ConvSpec::k1(width, c_out, false),
        )?;
        let downsample = if stride != 1 || c_in != c_out {
            let ds = vb.pp("downsample");
            // a strided 1x1 projection
            Some(Conv::with_bn(
                ds.pp("0"),
                ds.pp("1"),
                ConvSpec::square(c_in, c_out, 1, stride, false),
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            conv3,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some(ds) => ds.forward(x)?,
            None => x.clone(),
        };
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        self.conv3.forward_add_relu(&y, &identity)
    }
}

#[derive(Debug, Clone)]
pub struct ResNet {
    stem: Conv,
    stages: Vec<Vec<Bottleneck>>,
}

impl ResNet {
    /// `vb` points at the backbone (`backbone.` keys).
    pub fn new(vb: VarBuilder, cfg: &ResNetConfig) -> Result<Self> {
        let stem = Conv::with_bn(
            vb.pp("conv1"),
            vb.pp("bn1"),
            ConvSpec::square(3, cfg.base_channels, 7, 2, true),
        )?;
        let mut c_in = cfg.base_channels;
        let mut stages = Vec::new();
        for (i, &n) in cfg.blocks.iter().enumerate() {
            let vb_l = vb.pp(format!("layer{}", i + 1));
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                blocks.push(Bottleneck::new(
                    vb_l.pp(b),
                    cfg,
                    i,
                    c_in,
                    if b == 0 { stride } else { 1 },
                )?);
                c_in = cfg.out_channels(i);
            }
            stages.push(blocks);
        }
        Ok(Self { stem, stages })
    }

    /// C2..C5 (strides 4, 8, 16, 32).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let x = self.stem.forward(x)?;
        // 3x3/2 max-pool with padding 1: zero padding is exact after a ReLU
        let mut x = x
            .pad_with_zeros(2, 1, 1)?
            .pad_with_zeros(3, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        let mut outs = Vec::with_capacity(4);
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x)?;
            }
            outs.push(x.clone());
        }
        Ok(outs)
    }
}
