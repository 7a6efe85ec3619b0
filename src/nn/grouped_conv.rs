//! Grouped 2-D convolution on the CPU (ResNeXt's 3x3 layers: 64 groups).
//!
//! candle runs a grouped convolution as one convolution per group plus a concatenation. Here
//! every group of every image is one task on rayon's pool: one block of the CPU convolution
//! ([`CpuConv::block`]: the group's im2col matrix of `c_in/g·k·k` rows in a per-thread buffer,
//! one GEMM writing the group's output channels in place from the BN-folded bias, ReLU fused).
//! Output channels of a group are contiguous in NCHW, so the groups write disjoint slices and
//! need no gathering afterwards.

use super::cpu_conv::CpuConv;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct GroupedConv {
    /// The convolution of one group: `c_in/groups` input channels, all `c_out` output
    /// channels (group `g` owns `g·c_out/groups..`), so that a group is one block of it.
    conv: CpuConv,
    groups: usize,
}

impl GroupedConv {
    /// `weight` `[c_out, c_in/groups, k, k]` and `bias` `[c_out]`, f32 on any device (copied
    /// to host vectors).
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        groups: usize,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> Result<Self> {
        let (c_out, c_in_g, k, k2) = weight.dims4()?;
        if k != k2 || groups == 0 || c_out % groups != 0 {
            candle_core::bail!(
                "grouped conv: weight {:?} does not fit {groups} groups of square kernels",
                weight.shape()
            );
        }
        let conv = CpuConv::new(
            weight.flatten_all()?.to_vec1()?,
            bias.to_vec1()?,
            c_in_g,
            c_out,
            k,
            stride,
            pad,
            relu,
        );
        Ok(Self { conv, groups })
    }
}

impl CustomOp1 for GroupedConv {
    fn name(&self) -> &'static str {
        "grouped-conv2d-bias-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::msg("grouped conv input must be contiguous"))?;
        let x = &data[a..b];
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = self
            .conv
            .check_input(c, h, w, self.groups, "grouped conv")?;
        let (cg_in, c_out) = (c / self.groups, self.conv.c_out);
        let cg_out = c_out / self.groups;
        let mut out = vec![0f32; n * c_out * oh * ow];
        out.par_chunks_mut((cg_out * oh * ow).max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                let (img, g) = (i / self.groups, i % self.groups);
                let group_in = &x[img * c * h * w + g * cg_in * h * w..][..cg_in * h * w];
                self.conv
                    .block(group_in, h, w, g * cg_out, dst, None, self.conv.relu);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, oh, ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    fn check(
        n: usize,
        c_in: usize,
        c_out: usize,
        groups: usize,
        hw: (usize, usize),
        stride: usize,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (n, c_in, hw.0, hw.1), &dev)?;
        let wt = Tensor::randn(0f32, 1.0, (c_out, c_in / groups, 3, 3), &dev)?;
        let b = Tensor::randn(0f32, 1.0, c_out, &dev)?;
        let want = x
            .conv2d(&wt, 1, stride, 1, groups)?
            .broadcast_add(&b.reshape((1, c_out, 1, 1))?)?
            .relu()?;
        let got = x.apply_op1_no_bwd(&GroupedConv::new(&wt, &b, groups, stride, 1, true)?)?;
        assert_eq!(got.dims(), want.dims());
        let err = (got - &want)?
            .abs()?
            .flatten_all()?
            .max(D::Minus1)?
            .to_scalar::<f32>()?;
        assert!(err < 1e-4, "max error {err}");
        Ok(())
    }

    #[test]
    fn matches_candle_grouped_conv() -> Result<()> {
        check(1, 64, 64, 16, (9, 11), 1)?;
        check(2, 32, 64, 8, (10, 7), 2)?;
        check(1, 12, 12, 3, (3, 3), 2)?;
        check(1, 8, 8, 1, (5, 6), 1)
    }
}
