//! RoIAlign (average pooling) with mmcv's semantics, as used by MMDetection's RoI extractor.
//!
//! Each output bin averages bilinear samples taken on a regular grid inside the bin. With
//! `aligned` the box corners are shifted by half a pixel so that a box's continuous
//! coordinates line up with pixel centres. `sampling_ratio == 0` picks the grid per box:
//! `ceil(box_size / output_size)` samples per bin side. Samples more than one pixel outside
//! the feature map contribute 0 (but still count in the mean); samples within one pixel of
//! the border are clamped onto it. The arithmetic follows the reference kernel step for step
//! in f32, so results agree to rounding. With `--features cuda` the op runs on CUDA tensors
//! through `kernels/roi_align.cu`, which repeats the same arithmetic.

use crate::nn::transfer::cpu_slice;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// mmcv's RoIAlign settings for one feature level; the op itself is `ops::roi_align`.
#[derive(Debug, Clone, Copy)]
pub struct RoiAlign {
    /// Bins per side of the pooled output (7 in MMDetection).
    pub output_size: usize,
    /// Feature-map pixels per input pixel (1 / stride).
    pub spatial_scale: f32,
    /// Samples per bin side; 0 = adaptive.
    pub sampling_ratio: usize,
    /// Shift box corners by half a pixel so box coordinates meet pixel centres (mmcv's
    /// `aligned=True`, MMDetection's setting).
    pub aligned: bool,
}

/// One bilinear sample: four feature-map offsets and their weights.
#[derive(Debug, Clone, Copy, Default)]
struct Tap {
    pos: [usize; 4],
    w: [f32; 4],
}

impl RoiAlign {
    /// MMDetection's RoI extractor settings (7x7, adaptive sampling, aligned) for a level.
    pub fn mmdet(stride: usize) -> Self {
        Self {
            output_size: 7,
            spatial_scale: 1.0 / stride as f32,
            sampling_ratio: 0,
            aligned: true,
        }
    }

    /// With `aligned`, a box of negative (or NaN) size is an error, as in mmcv.
    fn check_size(&self, roi_w: f32, roi_h: f32, roi: &[f32]) -> Result<()> {
        // NaN fails this too
        if self.aligned && !(roi_w >= 0.0 && roi_h >= 0.0) {
            candle_core::bail!(
                "roi_align: box ({}, {}, {}, {}) has a negative size",
                roi[1],
                roi[2],
                roi[3],
                roi[4]
            );
        }
        Ok(())
    }

    /// The checks of the CPU op for one RoI row, without sampling: the batch index is one of
    /// `n` images and the box has a valid size (the CUDA op runs them on the host).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn check_roi(&self, roi: &[f32], n: usize) -> Result<()> {
        check_batch(roi[0], n)?;
        let offset = if self.aligned { 0.5f32 } else { 0.0 };
        let scale = self.spatial_scale;
        let roi_w = (roi[3] * scale - offset) - (roi[1] * scale - offset);
        let roi_h = (roi[4] * scale - offset) - (roi[2] * scale - offset);
        self.check_size(roi_w, roi_h, roi)
    }

    /// The sampling taps of one RoI (row `(batch, x1, y1, x2, y2)`), bin by bin, and the
    /// number of samples per bin.
    fn taps(&self, roi: &[f32], height: usize, width: usize) -> Result<(Vec<Tap>, usize)> {
        let offset = if self.aligned { 0.5f32 } else { 0.0 };
        let scale = self.spatial_scale;
        let start_w = roi[1] * scale - offset;
        let start_h = roi[2] * scale - offset;
        let end_w = roi[3] * scale - offset;
        let end_h = roi[4] * scale - offset;
        let mut roi_w = end_w - start_w;
        let mut roi_h = end_h - start_h;
        if self.aligned {
            self.check_size(roi_w, roi_h, roi)?;
        } else {
            roi_w = roi_w.max(1.0);
            roi_h = roi_h.max(1.0);
        }
        let out = self.output_size;
        let bin_h = roi_h / out as f32;
        let bin_w = roi_w / out as f32;
        let (grid_h, grid_w) = if self.sampling_ratio > 0 {
            (self.sampling_ratio, self.sampling_ratio)
        } else {
            (
                (roi_h / out as f32).ceil() as usize,
                (roi_w / out as f32).ceil() as usize,
            )
        };
        let (hf, wf) = (height as f32, width as f32);
        let mut taps = Vec::with_capacity(out * out * grid_h * grid_w);
        for ph in 0..out {
            for pw in 0..out {
                for iy in 0..grid_h {
                    let yy =
                        start_h + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                    for ix in 0..grid_w {
                        let xx =
                            start_w + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                        taps.push(bilinear_tap(yy, xx, height, width, hf, wf));
                    }
                }
            }
        }
        Ok((taps, grid_h * grid_w))
    }

    fn run(
        &self,
        feats: &[f32],
        fshape: (usize, usize, usize, usize),
        rois: &[f32],
    ) -> Result<Vec<f32>> {
        let (n, c, h, w) = fshape;
        let out = self.output_size;
        let per_roi = c * out * out;
        let mut dst = vec![0f32; rois.len() / 5 * per_roi];
        dst.par_chunks_mut(per_roi.max(1))
            .zip(rois.par_chunks_exact(5))
            .try_for_each(|(d, roi)| -> Result<()> {
                let b = roi[0];
                check_batch(b, n)?;
                let (taps, count) = self.taps(roi, h, w)?;
                let count_f = count.max(1) as f32;
                let img = &feats[b as usize * c * h * w..][..c * h * w];
                for (ci, plane_out) in d.chunks_exact_mut(out * out).enumerate() {
                    let plane = &img[ci * h * w..][..h * w];
                    for (bin, o) in plane_out.iter_mut().enumerate() {
                        let mut acc = 0f32;
                        for t in &taps[bin * count..(bin + 1) * count] {
                            acc += t.w[0] * plane[t.pos[0]]
                                + t.w[1] * plane[t.pos[1]]
                                + t.w[2] * plane[t.pos[2]]
                                + t.w[3] * plane[t.pos[3]];
                        }
                        *o = acc / count_f;
                    }
                }
                Ok(())
            })?;
        Ok(dst)
    }
}

fn check_batch(b: f32, n: usize) -> Result<()> {
    if !(b >= 0.0 && (b as usize) < n) {
        candle_core::bail!("roi_align: batch index {b} outside 0..{n}");
    }
    Ok(())
}

/// mmcv's rule along one axis of `n` samples for a coordinate `v >= 0`: the sample below and
/// the one above, and the coordinate, moved onto the last sample from beyond it.
fn neighbours(v: f32, n: usize) -> (usize, usize, f32) {
    let low = v as usize;
    if low >= n - 1 {
        (n - 1, n - 1, (n - 1) as f32)
    } else {
        (low, low + 1, v)
    }
}

fn bilinear_tap(yy: f32, xx: f32, height: usize, width: usize, hf: f32, wf: f32) -> Tap {
    if yy < -1.0 || yy > hf || xx < -1.0 || xx > wf || height == 0 || width == 0 {
        return Tap::default();
    }
    let (y_low, y_high, y) = neighbours(yy.max(0.0), height);
    let (x_low, x_high, x) = neighbours(xx.max(0.0), width);
    let ly = y - y_low as f32;
    let lx = x - x_low as f32;
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Tap {
        pos: [
            y_low * width + x_low,
            y_low * width + x_high,
            y_high * width + x_low,
            y_high * width + x_high,
        ],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

impl CustomOp2 for RoiAlign {
    fn name(&self) -> &'static str {
        "roi-align"
    }

    /// `s1`: features `[n, c, h, w]`; `s2`: RoIs `[k, 5]` `(batch, x1, y1, x2, y2)` in input
    /// pixels. Output `[k, c, out, out]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let fshape = l1.shape().dims4()?;
        let (k, five) = l2.shape().dims2()?;
        if five != 5 {
            candle_core::bail!("roi_align expects rois [k, 5], got {:?}", l2.shape());
        }
        let feats = cpu_slice::<f32>(s1, l1, "roi_align")?;
        let rois = cpu_slice::<f32>(s2, l2, "roi_align")?;
        let dst = self.run(feats, fshape, rois)?;
        let out = self.output_size;
        Ok((CpuStorage::F32(dst), Shape::from((k, fshape.1, out, out))))
    }

    /// `kernels/roi_align.cu`, one thread per output value; the RoIs (`k·5` floats) are
    /// copied to the host first for the CPU op's checks, so bad RoIs fail the same way.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::nn::cuda;
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;

        let (n, c, h, w) = l1.shape().dims4()?;
        let (k, five) = l2.shape().dims2()?;
        if five != 5 {
            candle_core::bail!("roi_align expects rois [k, 5], got {:?}", l2.shape());
        }
        let dev = s1.device().clone();
        let feats = cuda::view::<f32>(s1, l1, "roi_align")?;
        let rois = cuda::view::<f32>(s2, l2, "roi_align")?;
        for roi in cuda::to_host(&dev, &rois)?.chunks_exact(5) {
            self.check_roi(roi, n)?;
        }
        let out = self.output_size;
        let total = k * c * out * out;
        let dst = unsafe { dev.alloc::<f32>(total) }?;
        if total > 0 {
            let func = dev.get_or_load_custom_func(
                "roi_align_f32",
                "vidpose_roi_align",
                cuda::ROI_ALIGN_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&feats);
            b.arg(&rois);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(k, "roi count")?,
                cuda::int(c, "channels")?,
                cuda::int(h, "height")?,
                cuda::int(w, "width")?,
                cuda::int(out, "output size")?,
                self.spatial_scale,
                cuda::int(self.sampling_ratio, "sampling ratio")?,
                i32::from(self.aligned)
            );
            unsafe { b.launch(cuda::per_element(total)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((k, c, out, out)),
        ))
    }
}

/// Runs [`RoiAlign`] on features `[n, c, h, w]` and RoIs `[k, 5]`.
pub fn roi_align(features: &Tensor, rois: &Tensor, op: RoiAlign) -> Result<Tensor> {
    features
        .contiguous()?
        .apply_op2_no_bwd(&rois.contiguous()?, &op)
}
