//! Grouped 2-D convolution on the CPU (ResNeXt's 3x3 layers: 64 groups).
//!
//! candle runs a grouped convolution as one convolution per group plus a concatenation. Here
//! every group of every image is one task on rayon's pool: one block of the CPU convolution
//! ([`CpuConv::block`]: the group's im2col matrix of `c_in/g·k·k` rows in a per-thread buffer,
//! one GEMM writing the group's output channels in place from the BN-folded bias, ReLU fused).
//! Output channels of a group are contiguous in NCHW, so the groups write disjoint slices and
//! need no gathering afterwards.

use super::cpu_conv::CpuConv;
use super::transfer::cpu_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
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

/// A grouped convolution as one operator on tensors of any device: `x` `[n, c_in, h, w]`,
/// `weight` `[c_out, c_in/groups, k, k]`, `bias` `[c_out]`, all f32, padding `pad`, the bias
/// added and the ReLU applied. On a GPU it is one launch of `kernels/grouped_conv.cu`, where
/// candle's grouped `conv2d` is one convolution per group; `cpu_fwd` is the same direct sum in
/// the same order (the CPU models use `GroupedConv`, which is faster there).
#[derive(Debug, Clone, Copy)]
pub struct GroupedConvDirect {
    /// Groups of input (and output) channels.
    pub groups: usize,
    /// Step between output positions, in input pixels.
    pub stride: usize,
    /// Zero padding on every side, pixels.
    pub pad: usize,
    /// ReLU after the bias.
    pub relu: bool,
}

/// Sizes of a [`GroupedConvDirect`] call: `(n, c_in, h, w, c_out, k, oh, ow)`.
type DirectShape = (usize, usize, usize, usize, usize, usize, usize, usize);

impl GroupedConvDirect {
    fn shapes(&self, x: &Layout, weight: &Layout, bias: &Layout) -> Result<DirectShape> {
        let (n, c_in, h, w) = x.shape().dims4()?;
        let (c_out, cig, k, k2) = weight.shape().dims4()?;
        let b = bias.shape().dims1()?;
        let g = self.groups;
        let fits = g > 0
            && k == k2
            && k > 0
            && self.stride > 0
            && c_in == cig * g
            && c_out % g == 0
            && b == c_out
            && h + 2 * self.pad >= k
            && w + 2 * self.pad >= k;
        if !fits {
            candle_core::bail!(
                "grouped conv: input {:?}, weight {:?}, bias {:?} do not fit {g} groups",
                x.shape(),
                weight.shape(),
                bias.shape()
            );
        }
        let out = |v: usize| (v + 2 * self.pad - k) / self.stride + 1;
        Ok((n, c_in, h, w, c_out, k, out(h), out(w)))
    }
}

impl CustomOp3 for GroupedConvDirect {
    fn name(&self) -> &'static str {
        "grouped-conv2d-direct"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w, c_out, k, oh, ow) = self.shapes(l1, l2, l3)?;
        let (x, wt, bias) = (
            cpu_slice::<f32>(s1, l1, "grouped conv")?,
            cpu_slice::<f32>(s2, l2, "grouped conv")?,
            cpu_slice::<f32>(s3, l3, "grouped conv")?,
        );
        let (cig, per_group) = (c_in / self.groups, c_out / self.groups);
        let (s, pad) = (self.stride as isize, self.pad as isize);
        let mut out = vec![0f32; n * c_out * oh * ow];
        out.par_chunks_mut((oh * ow).max(1))
            .enumerate()
            .for_each(|(plane, dst)| {
                let (img, co) = (plane / c_out, plane % c_out);
                let g = co / per_group;
                let wt = &wt[co * cig * k * k..][..cig * k * k];
                let src = &x[(img * c_in + g * cig) * h * w..][..cig * h * w];
                for (i, d) in dst.iter_mut().enumerate() {
                    let (oy, ox) = ((i / ow) as isize, (i % ow) as isize);
                    let mut acc = 0f32;
                    for ci in 0..cig {
                        let p = &src[ci * h * w..][..h * w];
                        for ky in 0..k {
                            let iy = oy * s - pad + ky as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..k {
                                let ix = ox * s - pad + kx as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                acc +=
                                    p[iy as usize * w + ix as usize] * wt[(ci * k + ky) * k + kx];
                            }
                        }
                    }
                    let v = acc + bias[co];
                    *d = if self.relu && v < 0.0 { 0.0 } else { v };
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, oh, ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::nn::cuda;
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;

        let (n, c_in, h, w, c_out, k, oh, ow) = self.shapes(l1, l2, l3)?;
        let dev = s1.device().clone();
        let x = cuda::view::<f32>(s1, l1, "grouped conv")?;
        let wt = cuda::view::<f32>(s2, l2, "grouped conv")?;
        let bias = cuda::view::<f32>(s3, l3, "grouped conv")?;
        let total = n * c_out * oh * ow;
        let dst = unsafe { dev.alloc::<f32>(total) }?;
        if total > 0 {
            let func = dev.get_or_load_custom_func(
                "grouped_conv_f32",
                "vidpose_grouped_conv",
                cuda::GROUPED_CONV_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&x);
            b.arg(&wt);
            b.arg(&bias);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(n, "batch")?,
                cuda::int(c_in, "input channels")?,
                cuda::int(h, "height")?,
                cuda::int(w, "width")?,
                cuda::int(c_out, "output channels")?,
                cuda::int(self.groups, "groups")?,
                cuda::int(k, "kernel")?,
                cuda::int(self.stride, "stride")?,
                cuda::int(self.pad, "padding")?,
                cuda::int(oh, "output height")?,
                cuda::int(ow, "output width")?,
                i32::from(self.relu)
            );
            unsafe { b.launch(cuda::per_element(total)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((n, c_out, oh, ow)),
        ))
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
        let fused = x.apply_op1_no_bwd(&GroupedConv::new(&wt, &b, groups, stride, 1, true)?)?;
        let direct = GroupedConvDirect {
            groups,
            stride,
            pad: 1,
            relu: true,
        };
        let direct = x.apply_op3_no_bwd(&wt, &b, &direct)?;
        for (got, what) in [(fused, "im2col"), (direct, "direct")] {
            assert_eq!(got.dims(), want.dims(), "{what}");
            let err = (got - &want)?
                .abs()?
                .flatten_all()?
                .max(D::Minus1)?
                .to_scalar::<f32>()?;
            assert!(err < 1e-4, "{what}: max error {err}");
        }
        Ok(())
    }

    #[test]
    fn matches_candle_grouped_conv() -> Result<()> {
        check(1, 64, 64, 16, (9, 11), 1)?;
        check(2, 32, 64, 8, (10, 7), 2)?;
        check(1, 12, 12, 3, (3, 3), 2)?;
        check(1, 8, 8, 1, (5, 6), 1)
    }

    #[test]
    fn the_direct_operator_refuses_operands_that_do_not_fit() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 8, 5, 5), candle_core::DType::F32, &dev)?;
        let op = GroupedConvDirect {
            groups: 4,
            stride: 1,
            pad: 1,
            relu: false,
        };
        let w =
            |co: usize, cig: usize| Tensor::zeros((co, cig, 3, 3), candle_core::DType::F32, &dev);
        let b = |co: usize| Tensor::zeros(co, candle_core::DType::F32, &dev);
        // weights for 8 groups, output channels not divisible by the groups, a bias too short
        for (wt, bias) in [(w(8, 1)?, b(8)?), (w(6, 2)?, b(6)?), (w(8, 2)?, b(4)?)] {
            let e = x.apply_op3_no_bwd(&wt, &bias, &op).unwrap_err().to_string();
            assert!(e.contains("grouped conv"), "{e}");
        }
        Ok(())
    }
}
