//! The convolution layer of both models: square kernel, padding `k/2`, an optional grouping
//! of the input channels, a bias, an optional ReLU.
//!
//! The bias is the layer's own or comes from a batch norm folded in at load time. At inference
//! a BN layer is a per-channel affine map, so with t = γ / √(var + eps) the pair conv(W) → BN
//! equals conv(W·t) + (β − μ·t); folding removes four tensor passes per layer.
//!
//! [`Conv::run`] is the one place that picks a kernel: on the CPU (f32) Winograd's algorithm
//! ([`super::winograd`]) for 3x3 stride-1 convolutions, the fused convolutions of
//! [`super::cpu_conv`] and [`super::grouped_conv`] for the others, all of which also fuse the
//! bias, the ReLU and residual additions; on a GPU, vidpose's grouped kernel for grouped
//! convolutions in f32 ([`super::grouped_conv::GroupedConvDirect`]); candle's conv2d
//! everywhere else.

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_conv::{CpuConv, WithResidual};
use super::grouped_conv::{GroupedConv, GroupedConvDirect};
use super::winograd::{TileSize, Winograd, WinogradOp};

/// The narrowest map a [`ConvSpec::wide_tiles`] layer runs by F(4x4): measured on HRNet-W32's
/// shapes at batch 8, F(4x4) is 1.4x faster than F(2x2) on 48 columns and no faster on 24.
pub const WIDE_TILES_MIN_WIDTH: usize = 32;

/// PyTorch's default BN epsilon (mmcv's `BN` config sets none).
pub const BN_EPS: f64 = 1e-5;

/// Shape and placement of a square convolution (padding `kernel / 2`).
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side, in pixels (the kernel is `kernel`x`kernel`).
    pub kernel: usize,
    /// Step between output positions, in input pixels.
    pub stride: usize,
    /// Groups of input channels (1: a plain convolution); the weight is
    /// `[c_out, c_in / groups, k, k]`.
    pub groups: usize,
    /// ReLU after the bias on the plain forward pass; residual forwards choose their own.
    pub relu: bool,
    /// On the CPU, a 3x3 stride-1 layer runs wide maps by Winograd's F(4x4) (see
    /// [`ConvSpec::wide_tiles`]).
    pub wide_tiles: bool,
}

impl ConvSpec {
    /// A `kernel`x`kernel` convolution, ungrouped.
    pub fn square(c_in: usize, c_out: usize, kernel: usize, stride: usize, relu: bool) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            groups: 1,
            relu,
            wide_tiles: false,
        }
    }

    /// 3x3, padding 1.
    pub fn k3(c_in: usize, c_out: usize, stride: usize, relu: bool) -> Self {
        Self::square(c_in, c_out, 3, stride, relu)
    }

    /// 1x1, stride 1.
    pub fn k1(c_in: usize, c_out: usize, relu: bool) -> Self {
        Self::square(c_in, c_out, 1, 1, relu)
    }

    /// The same convolution, run on the CPU by Winograd's F(4x4) on maps at least
    /// `WIDE_TILES_MIN_WIDTH` (32) columns wide (F(2x2) otherwise): 1.2-1.4x faster there, at a
    /// larger rounding (full-size HRNet-W32 against MMPose: 2.1e-5 of the heatmap peak instead
    /// of 1.0e-5). For models whose batches hold same-size inputs, such as the pose model's
    /// crops; the detector keeps F(2x2), whose padded batches must match images run alone.
    pub fn wide_tiles(self) -> Self {
        Self {
            wide_tiles: true,
            ..self
        }
    }

    /// The same convolution over `groups` groups of input channels.
    pub fn grouped(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    fn weight_shape(&self) -> (usize, usize, usize, usize) {
        let k = self.kernel;
        (self.c_out, self.c_in / self.groups, k, k)
    }
}

/// A convolution with a bias, optionally followed by ReLU.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    spec: ConvSpec,
    /// The fused CPU kernel, when the weights live on the CPU in f32.
    cpu: Option<CpuKernel>,
}

#[derive(Debug, Clone)]
enum CpuKernel {
    Dense(CpuConv, Option<Winograd>),
    Grouped(GroupedConv),
}

impl Conv {
    /// A bias-free conv (`weight` under `conv`) with its BN (`weight`, `bias`, `running_mean`,
    /// `running_var` under `bn`) folded in.
    pub fn with_bn(conv: VarBuilder, bn: VarBuilder, spec: ConvSpec) -> Result<Self> {
        let dtype = conv.dtype();
        let c = spec.c_out;
        // Fold in f64 so the folded weights differ from the unfolded computation only by the
        // final rounding to the model dtype.
        let w = conv
            .get(spec.weight_shape(), "weight")?
            .to_dtype(DType::F64)?;
        let gamma = bn.get(c, "weight")?.to_dtype(DType::F64)?;
        let beta = bn.get(c, "bias")?.to_dtype(DType::F64)?;
        let mean = bn.get(c, "running_mean")?.to_dtype(DType::F64)?;
        let var = bn.get(c, "running_var")?.to_dtype(DType::F64)?;
        let t = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let weight = w
            .broadcast_mul(&t.reshape((c, 1, 1, 1))?)?
            .to_dtype(dtype)?;
        let bias = (beta - (mean * &t)?)?.to_dtype(dtype)?;
        Self::from_parts(weight, bias, spec)
    }

    /// A convolution with its own `weight` and `bias` (FPN, RPN, the heatmap head).
    pub fn with_bias(vb: VarBuilder, spec: ConvSpec) -> Result<Self> {
        let weight = vb.get(spec.weight_shape(), "weight")?;
        let bias = vb.get(spec.c_out, "bias")?;
        Self::from_parts(weight, bias, spec)
    }

    fn from_parts(weight: Tensor, bias: Tensor, spec: ConvSpec) -> Result<Self> {
        let cpu = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            let pad = spec.kernel / 2;
            Some(if spec.groups == 1 {
                let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
                let b: Vec<f32> = bias.to_vec1()?;
                let wino = (spec.kernel == 3 && spec.stride == 1).then(|| {
                    Winograd::new(
                        Arc::new(w.clone()),
                        Arc::new(b.clone()),
                        spec.c_in,
                        spec.c_out,
                    )
                });
                CpuKernel::Dense(
                    CpuConv::new(
                        w,
                        b,
                        spec.c_in,
                        spec.c_out,
                        spec.kernel,
                        spec.stride,
                        pad,
                        spec.relu,
                    ),
                    wino,
                )
            } else {
                CpuKernel::Grouped(GroupedConv::new(
                    &weight,
                    &bias,
                    spec.groups,
                    spec.stride,
                    pad,
                    spec.relu,
                )?)
            })
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            spec,
            cpu,
        })
    }

    /// `relu(self(x) + residual)`, the end of a residual block.
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.run(x, Some(residual), true)
    }

    /// `self(x) + residual`, then ReLU when `relu`. The layer's own ReLU flag is not used:
    /// the ReLU, if any, comes after the sum.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor, relu: bool) -> Result<Tensor> {
        self.run(x, Some(residual), relu)
    }

    /// `conv(x) + bias (+ residual)`, then ReLU when `relu`, by the kernel for `x`'s device.
    fn run(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32;
        // The CPU kernels carry the layer's own ReLU flag, which a plain forward uses.
        match (&self.cpu, residual) {
            // 3x3 stride 1: Winograd's F(2x2), faster than the im2col kernel on every
            // HRNet-W32 shape at batch 8; F(4x4) on wide maps where the layer allows it (its
            // larger rounding makes a detector batch differ from its images run alone by more
            // than 1e-5 in score, tests/cascade_bad_input.rs).
            (Some(CpuKernel::Dense(_, Some(conv))), r) if cpu_f32 && x.rank() == 4 => {
                let wide = self.spec.wide_tiles && x.dim(3)? >= WIDE_TILES_MIN_WIDTH;
                let tile = if wide { TileSize::F4 } else { TileSize::F2 };
                let op = WinogradOp { conv, tile, relu };
                return match r {
                    None => x.contiguous()?.apply_op1_no_bwd(&op),
                    Some(r) => x.contiguous()?.apply_op2_no_bwd(&r.contiguous()?, &op),
                };
            }
            (Some(CpuKernel::Dense(op, _)), None) if cpu_f32 => {
                return x.contiguous()?.apply_op1_no_bwd(op)
            }
            (Some(CpuKernel::Grouped(op)), None) if cpu_f32 => {
                return x.contiguous()?.apply_op1_no_bwd(op)
            }
            (Some(CpuKernel::Dense(conv, _)), Some(r)) if cpu_f32 => {
                return x
                    .contiguous()?
                    .apply_op2_no_bwd(&r.contiguous()?, &WithResidual { conv, relu })
            }
            // No fused residual for grouped convolutions (none of the models ends a block
            // with one): candle below.
            _ => {}
        }
        let s = &self.spec;
        // A grouped convolution on a GPU in f32: one launch of vidpose's kernel rather than
        // candle's convolution per group and concatenation (64 of each per ResNeXt layer).
        if s.groups > 1 && !x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = GroupedConvDirect {
                groups: s.groups,
                stride: s.stride,
                pad: s.kernel / 2,
                relu: relu && residual.is_none(),
            };
            let y = x
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op)?;
            return match residual {
                None => Ok(y),
                Some(r) if relu => (y + r)?.relu(),
                Some(r) => y + r,
            };
        }
        let y = x.conv2d(&self.weight, s.kernel / 2, s.stride, 1, s.groups)?;
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, self.spec.relu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};
    use std::collections::HashMap;

    #[test]
    fn folding_matches_conv_then_batch_norm() -> Result<()> {
        let dev = Device::Cpu;
        let mut ts = HashMap::new();
        ts.insert(
            "c.weight".into(),
            Tensor::randn(0f32, 1., (4, 3, 3, 3), &dev)?,
        );
        ts.insert("b.weight".into(), Tensor::rand(0.5f32, 1.5, 4, &dev)?);
        ts.insert("b.bias".into(), Tensor::randn(0f32, 1., 4, &dev)?);
        ts.insert("b.running_mean".into(), Tensor::randn(0f32, 1., 4, &dev)?);
        ts.insert("b.running_var".into(), Tensor::rand(0.5f32, 2., 4, &dev)?);
        let vb = VarBuilder::from_tensors(ts.clone(), DType::F32, &dev);
        let layer = Conv::with_bn(vb.pp("c"), vb.pp("b"), ConvSpec::k3(3, 4, 2, false))?;
        let x = Tensor::randn(0f32, 1., (2, 3, 9, 7), &dev)?;
        let got = layer.forward(&x)?;
        let y = x.conv2d(&ts["c.weight"], 1, 2, 1, 1)?;
        let shape = (1, 4, 1, 1);
        let want = y
            .broadcast_sub(&ts["b.running_mean"].reshape(shape)?)?
            .broadcast_div(&(ts["b.running_var"].reshape(shape)? + BN_EPS)?.sqrt()?)?
            .broadcast_mul(&ts["b.weight"].reshape(shape)?)?
            .broadcast_add(&ts["b.bias"].reshape(shape)?)?;
        let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
        assert!(err.to_scalar::<f32>()? < 1e-4);
        Ok(())
    }

    #[test]
    fn cpu_kernel_matches_candle_conv() -> Result<()> {
        let dev = Device::Cpu;
        // (c_in, c_out, k, stride, groups, h, w, relu)
        for (ci, co, k, s, g, h, w, relu) in [
            (3, 5, 3, 2, 1, 9, 7, true),
            (4, 6, 3, 1, 1, 5, 8, false),
            (6, 3, 1, 1, 1, 4, 4, true),
            (2, 4, 3, 2, 1, 1, 1, false),
            (3, 2, 3, 1, 1, 1, 1, true),
            (2, 3, 3, 1, 1, 2, 5, false),
            (5, 2, 1, 1, 1, 3, 2, false),
            (8, 8, 3, 2, 4, 6, 5, true),
        ] {
            let wt = Tensor::randn(0f32, 1., (co, ci / g, k, k), &dev)?;
            let b = Tensor::randn(0f32, 1., co, &dev)?;
            let spec = ConvSpec::square(ci, co, k, s, relu).grouped(g);
            let layer = Conv::from_parts(wt.clone(), b.clone(), spec)?;
            assert!(layer.cpu.is_some());
            for n in [1, 3] {
                let x = Tensor::randn(0f32, 1., (n, ci, h, w), &dev)?;
                let got = layer.forward(&x)?;
                let mut want = x
                    .conv2d(&wt, k / 2, s, 1, g)?
                    .broadcast_add(&b.reshape((1, co, 1, 1))?)?;
                if relu {
                    want = want.relu()?;
                }
                assert_eq!(got.dims(), want.dims());
                let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
                assert!(
                    err.to_scalar::<f32>()? < 1e-4,
                    "{ci} {co} {k} {s} g{g} {h}x{w} n={n}"
                );
            }
        }
        Ok(())
    }
}
