//! Grouped 2-D convolution on the CPU (ResNeXt's 3x3 layers: 64 groups).
//!
//! candle runs a grouped convolution as one convolution per group plus a concatenation. Here
//! every group of every image is one task on rayon's pool: the group's im2col matrix
//! (`c_in/g·k·k` rows of output pixels) is built in a per-thread buffer and one GEMM writes
//! the group's output channels in place, starting from the (BN-folded) bias, with the ReLU
//! fused. Output channels of a group are contiguous in NCHW, so the groups write disjoint
//! slices and need no gathering afterwards.

use std::sync::Arc;

use crate::nn::cpu_conv::{gemm_accumulate, im2col, relu_in_place, with_columns};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct GroupedConv {
    /// `[c_out, c_in/groups, k, k]` flattened.
    weight: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    c_in: usize,
    c_out: usize,
    groups: usize,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
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
        Ok(Self {
            weight: Arc::new(weight.flatten_all()?.to_vec1()?),
            bias: Arc::new(bias.to_vec1()?),
            c_in: c_in_g * groups,
            c_out,
            groups,
            k,
            stride,
            pad,
            relu,
        })
    }

    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad).saturating_sub(self.k) / self.stride + 1
    }

    /// Group `g` of one image: `img` is `[c_in, h, w]`, `dst` the group's `[c_out/g, oh, ow]`.
    fn group(&self, g: usize, img: &[f32], h: usize, w: usize, dst: &mut [f32]) {
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let p = oh * ow;
        let cg_in = self.c_in / self.groups;
        let cg_out = self.c_out / self.groups;
        let kk = cg_in * self.k * self.k;
        for (row, b) in dst.chunks_exact_mut(p).zip(&self.bias[g * cg_out..]) {
            row.fill(*b);
        }
        let weight = &self.weight[g * cg_out * kk..][..cg_out * kk];
        let geometry = (self.k, self.stride, self.pad);
        with_columns(kk * p, |cols| {
            im2col(
                &img[g * cg_in * h * w..],
                cg_in,
                h,
                w,
                geometry,
                oh,
                ow,
                cols,
            );
            gemm_accumulate(dst, weight, cols, p, kk);
        });
        if self.relu {
            relu_in_place(dst);
        }
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
        if c != self.c_in {
            candle_core::bail!("grouped conv expects {} input channels, got {c}", self.c_in);
        }
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k {
            candle_core::bail!(
                "grouped conv input {h}x{w} smaller than its {0}x{0} kernel",
                self.k
            );
        }
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let group_len = self.c_out / self.groups * oh * ow;
        let mut out = vec![0f32; n * self.c_out * oh * ow];
        out.par_chunks_mut(group_len.max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                let (img, g) = (i / self.groups, i % self.groups);
                self.group(g, &x[img * c * h * w..][..c * h * w], h, w, dst);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, self.c_out, oh, ow))))
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
