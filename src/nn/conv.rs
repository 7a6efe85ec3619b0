//! Convolution followed by batch norm, folded into one convolution at load time.
//!
//! At inference a BN layer is a per-channel affine map, so with t = γ / √(var + eps) the pair
//! conv(W) → BN equals conv(W·t) + (β − μ·t). Folding removes four tensor passes per layer.
//! On the CPU the layers run through [`crate::nn::cpu_conv`], which also fuses the bias, the
//! ReLU and residual additions; other devices use candle's conv2d.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::cpu_conv::{CpuConv, WithResidual};

/// PyTorch's default BN epsilon (mmcv's `BN` config sets none).
pub const BN_EPS: f64 = 1e-5;

/// A bias-free conv (`weight` under `conv`) with its BN (`weight`, `bias`, `running_mean`,
/// `running_var` under `bn`) folded in, optionally followed by ReLU.
#[derive(Debug, Clone)]
pub struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
    /// The fused CPU kernel, when the weights live on the CPU in f32.
    cpu: Option<CpuConv>,
}

/// Shape and placement of a square convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub relu: bool,
}

impl ConvSpec {
    /// 3x3, padding 1.
    pub fn k3(c_in: usize, c_out: usize, stride: usize, relu: bool) -> Self {
        Self {
            c_in,
            c_out,
            kernel: 3,
            stride,
            relu,
        }
    }

    /// 1x1, stride 1.
    pub fn k1(c_in: usize, c_out: usize, relu: bool) -> Self {
        Self {
            c_in,
            c_out,
            kernel: 1,
            stride: 1,
            relu,
        }
    }
}

impl ConvBn {
    pub fn new(conv: VarBuilder, bn: VarBuilder, spec: ConvSpec) -> Result<Self> {
        let dtype = conv.dtype();
        let (k, c) = (spec.kernel, spec.c_out);
        // Fold in f64 so the folded weights differ from the unfolded computation only by the
        // final rounding to the model dtype.
        let w = conv
            .get((c, spec.c_in, k, k), "weight")?
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
        let cpu = cpu_kernel(&weight, &bias, spec.stride, k / 2, spec.relu)?;
        Ok(Self {
            weight,
            bias,
            stride: spec.stride,
            padding: k / 2,
            relu: spec.relu,
            cpu,
        })
    }

    /// `relu(self(x) + residual)`, the end of a residual block (fused on the CPU).
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_add(x, residual, true)
    }

    /// `self(x) + residual`, then ReLU when `relu` (fused on the CPU). The layer's own ReLU
    /// flag is not used: the ReLU, if any, comes after the sum.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor, relu: bool) -> Result<Tensor> {
        if let (Some(conv), true) = (&self.cpu, x.device().is_cpu() && x.dtype() == DType::F32) {
            return x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &WithResidual { conv, relu });
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let y = (residual + y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// The folded weight and bias, for layers that run through another kernel (e.g. a grouped
    /// convolution, whose weight is `[c_out, c_in/groups, k, k]`).
    pub fn folded(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

/// The fused CPU convolution for f32 weights on the CPU; other devices use candle's conv2d.
fn cpu_kernel(
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    pad: usize,
    relu: bool,
) -> Result<Option<CpuConv>> {
    if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
        return Ok(None);
    }
    let (c_out, c_in, k, _) = weight.dims4()?;
    Ok(Some(CpuConv::new(
        weight.flatten_all()?.to_vec1()?,
        bias.to_vec1()?,
        c_in,
        c_out,
        k,
        stride,
        pad,
        relu,
    )))
}

fn run_cpu(op: &CpuConv, x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(op)
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(op), true) = (&self.cpu, x.device().is_cpu() && x.dtype() == DType::F32) {
            return run_cpu(op, x);
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

/// A plain convolution with bias (the heatmap head's final layer).
#[derive(Debug, Clone)]
pub struct ConvBias {
    weight: Tensor,
    bias: Tensor,
    cpu: Option<CpuConv>,
}

impl ConvBias {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let weight = vb.get((c_out, c_in, 1, 1), "weight")?;
        let bias = vb.get(c_out, "bias")?;
        let cpu = cpu_kernel(&weight, &bias, 1, 0, false)?;
        Ok(Self { weight, bias, cpu })
    }
}

impl Module for ConvBias {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(op), true) = (&self.cpu, x.device().is_cpu() && x.dtype() == DType::F32) {
            return run_cpu(op, x);
        }
        let y = x.conv2d(&self.weight, 0, 1, 1, 1)?;
        y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
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
        let layer = ConvBn::new(vb.pp("c"), vb.pp("b"), ConvSpec::k3(3, 4, 2, false))?;
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
        // (c_in, c_out, k, stride, h, w, relu)
        for (ci, co, k, s, h, w, relu) in [
            (3, 5, 3, 2, 9, 7, true),
            (4, 6, 3, 1, 5, 8, false),
            (6, 3, 1, 1, 4, 4, true),
            (2, 4, 3, 2, 1, 1, false),
            (3, 2, 3, 1, 1, 1, true),
            (2, 3, 3, 1, 2, 5, false),
            (5, 2, 1, 1, 3, 2, false),
        ] {
            let wt = Tensor::randn(0f32, 1., (co, ci, k, k), &dev)?;
            let b = Tensor::randn(0f32, 1., co, &dev)?;
            let op = cpu_kernel(&wt, &b, s, k / 2, relu)?.unwrap();
            for n in [1, 3] {
                let x = Tensor::randn(0f32, 1., (n, ci, h, w), &dev)?;
                let got = run_cpu(&op, &x)?;
                let mut want = x
                    .conv2d(&wt, k / 2, s, 1, 1)?
                    .broadcast_add(&b.reshape((1, co, 1, 1))?)?;
                if relu {
                    want = want.relu()?;
                }
                assert_eq!(got.dims(), want.dims());
                let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
                assert!(
                    err.to_scalar::<f32>()? < 1e-4,
                    "{ci} {co} {k} {s} {h}x{w} n={n}"
                );
            }
        }
        Ok(())
    }
}
