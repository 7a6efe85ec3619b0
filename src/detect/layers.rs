//! The convolution layers of the detector: BN-folded or with a plain bias, grouped or not,
//! each run by the fastest kernel available for its device (the fused CPU convolutions of
//! `crate::nn::cpu_conv` and `ops::GroupedConv` on the CPU, candle's conv2d elsewhere).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::ops::GroupedConv;
use crate::nn::conv::{ConvBn, ConvSpec};
use crate::nn::cpu_conv::CpuConv;

/// A square convolution with a bias (BN already folded in, or the layer's own), optionally
/// followed by ReLU.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
    relu: bool,
    cpu: Option<CpuKernel>,
}

#[derive(Debug, Clone)]
enum CpuKernel {
    Dense(CpuConv),
    Grouped(GroupedConv),
}

impl Conv {
    /// `conv` (no bias) then `bn`, folded; `groups` splits the input channels.
    #[allow(clippy::too_many_arguments)]
    pub fn with_bn(
        conv: VarBuilder,
        bn: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        relu: bool,
    ) -> Result<Self> {
        let spec = ConvSpec {
            c_in: c_in / groups,
            c_out,
            kernel,
            stride,
            relu,
        };
        let folded = ConvBn::new(conv, bn, spec)?;
        let (w, b) = folded.folded();
        Self::from_parts(w.clone(), b.clone(), stride, kernel / 2, groups, relu)
    }

    /// A convolution with its own `weight` and `bias` (FPN, RPN layers).
    pub fn with_bias(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        relu: bool,
    ) -> Result<Self> {
        let weight = vb.get((c_out, c_in, kernel, kernel), "weight")?;
        let bias = vb.get(c_out, "bias")?;
        Self::from_parts(weight, bias, 1, kernel / 2, 1, relu)
    }

    fn from_parts(
        weight: Tensor,
        bias: Tensor,
        stride: usize,
        padding: usize,
        groups: usize,
        relu: bool,
    ) -> Result<Self> {
        let cpu = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            let (c_out, c_in_g, k, _) = weight.dims4()?;
            Some(if groups == 1 {
                CpuKernel::Dense(CpuConv::new(
                    weight.flatten_all()?.to_vec1()?,
                    bias.to_vec1()?,
                    c_in_g,
                    c_out,
                    k,
                    stride,
                    padding,
                    relu,
                ))
            } else {
                CpuKernel::Grouped(GroupedConv::new(
                    &weight, &bias, groups, stride, padding, relu,
                )?)
            })
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
            groups,
            relu,
            cpu,
        })
    }

    /// `self(x) + residual`, then ReLU (the end of a bottleneck block).
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if let (Some(CpuKernel::Dense(conv)), true) = (&self.cpu, on_cpu_f32(x)) {
            let op = crate::nn::cpu_conv::WithResidual { conv, relu: true };
            return x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &op);
        }
        let y = self.generic(x, false)?;
        (y + residual)?.relu()
    }

    fn generic(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, self.groups)?;
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

fn on_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.cpu, on_cpu_f32(x)) {
            (Some(CpuKernel::Dense(op)), true) => x.contiguous()?.apply_op1_no_bwd(op),
            (Some(CpuKernel::Grouped(op)), true) => x.contiguous()?.apply_op1_no_bwd(op),
            _ => self.generic(x, self.relu),
        }
    }
}
