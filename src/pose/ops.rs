//! The pose stage's pre- and post-processing as candle operators, so that on a GPU the frame
//! goes up once as bytes and only keypoints come back: [`CropOp`] (affine warp and
//! normalisation), [`FlipMerge`] (the flip test's heatmap merge) and [`MsraPeaks`] (argmax and
//! MSRA refinement). Each `cpu_fwd` is the CPU code of [`crate::pose::crop`] and
//! [`crate::pose::codec`], so both devices compute the same thing; with `--features cuda` the
//! CUDA side runs `kernels/pose_crop.cu` and `kernels/heatmap.cu`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};

use crate::image::RgbImage;
use crate::nn::transfer::cpu_slice;
use crate::pose::codec::{self, Decoding};
use crate::pose::crop::{normalize_into, warp_affine_linear};

/// One crop's parameters as [`CropOp`] reads them: the inverse affine map (crop pixels to
/// image pixels) rounded to f32 as the warp uses it, and 1 for the mirrored flip-test copy.
pub fn crop_params(inverse: &[f64; 6], flip: bool) -> [f32; 7] {
    let m = inverse.map(|v| v as f32);
    [
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        if flip { 1.0 } else { 0.0 },
    ]
}

/// Crops of one frame: `frame` `[h, w, 3]` u8 (packed RGB) and `params` `[n, 7]` f32 rows of
/// [`crop_params`] in, normalised planar crops `[n, 3, out_h, out_w]` f32 out.
#[derive(Debug, Clone, Copy)]
pub struct CropOp {
    /// Crop width, pixels (the model input's).
    pub out_w: usize,
    /// Crop height, pixels.
    pub out_h: usize,
}

impl CropOp {
    fn shapes(&self, frame: &Layout, params: &Layout) -> Result<(usize, usize, usize)> {
        let (h, w, three) = frame.shape().dims3()?;
        let (n, seven) = params.shape().dims2()?;
        if three != 3 || seven != 7 {
            candle_core::bail!(
                "pose crop expects a frame [h, w, 3] and params [n, 7], got {:?} and {:?}",
                frame.shape(),
                params.shape()
            );
        }
        Ok((h, w, n))
    }
}

impl CustomOp2 for CropOp {
    fn name(&self) -> &'static str {
        "pose-crop"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (h, w, n) = self.shapes(l1, l2)?;
        let img = RgbImage {
            width: w as u32,
            height: h as u32,
            data: cpu_slice::<u8>(s1, l1, "pose crop")?.to_vec(),
        };
        let params = cpu_slice::<f32>(s2, l2, "pose crop")?;
        let plane = 3 * self.out_w * self.out_h;
        let mut out = vec![0f32; n * plane];
        for (p, dst) in params
            .chunks_exact(7)
            .zip(out.chunks_exact_mut(plane.max(1)))
        {
            let inv = [p[0], p[1], p[2], p[3], p[4], p[5]].map(f64::from);
            let pixels = warp_affine_linear(&img, &inv, self.out_w, self.out_h);
            normalize_into(&pixels, self.out_w, self.out_h, p[6] != 0.0, dst);
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, 3, self.out_h, self.out_w)),
        ))
    }

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

        let (h, w, n) = self.shapes(l1, l2)?;
        let dev = s1.device().clone();
        let frame = cuda::view::<u8>(s1, l1, "pose crop")?;
        let params = cuda::view::<f32>(s2, l2, "pose crop")?;
        let total = n * self.out_w * self.out_h;
        let dst = unsafe { dev.alloc::<f32>(3 * total) }?;
        if total > 0 {
            let func = dev.get_or_load_custom_func(
                "pose_crop_f32",
                "vidpose_pose_crop",
                cuda::POSE_CROP_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&frame);
            b.arg(&params);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(n, "crops")?,
                cuda::int(w, "frame width")?,
                cuda::int(h, "frame height")?,
                cuda::int(self.out_w, "crop width")?,
                cuda::int(self.out_h, "crop height")?
            );
            unsafe { b.launch(cuda::per_element(total)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((n, 3, self.out_h, self.out_w)),
        ))
    }
}

/// The flip test's merge on a batch: `[2n, k, h, w]` heatmaps (the n plain crops, then their
/// n mirrored copies) in, `[n, k, h, w]` merged heatmaps out ([`codec::merge_flipped`]).
#[derive(Debug, Clone)]
pub struct FlipMerge {
    /// Output channel c reads mirrored channel `flip_indices[c]` (left/right swapped).
    pub flip_indices: Vec<usize>,
}

impl FlipMerge {
    fn shape(&self, l: &Layout) -> Result<(usize, usize, usize, usize)> {
        let (n2, k, h, w) = l.shape().dims4()?;
        if n2 % 2 != 0 || k != self.flip_indices.len() || self.flip_indices.iter().any(|&c| c >= k)
        {
            candle_core::bail!(
                "flip merge expects [2n, {}, h, w] heatmaps, got {:?}",
                self.flip_indices.len(),
                l.shape()
            );
        }
        Ok((n2 / 2, k, h, w))
    }
}

impl CustomOp1 for FlipMerge {
    fn name(&self) -> &'static str {
        "flip-merge"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k, h, w) = self.shape(l)?;
        let hm = cpu_slice::<f32>(s, l, "flip merge")?;
        let per = k * h * w;
        let mut out = Vec::with_capacity(n * per);
        for i in 0..n {
            out.extend(codec::merge_flipped(
                &hm[i * per..][..per],
                &hm[(n + i) * per..][..per],
                k,
                h,
                w,
                &self.flip_indices,
            ));
        }
        Ok((CpuStorage::F32(out), Shape::from((n, k, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::nn::cuda;
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;

        let (n, k, h, w) = self.shape(l)?;
        let dev = s.device().clone();
        let hm = cuda::view::<f32>(s, l, "flip merge")?;
        let flip: Vec<u32> = self.flip_indices.iter().map(|&c| c as u32).collect();
        let flip = cuda::to_device(&dev, &flip)?;
        let total = n * k * h * w;
        let dst = unsafe { dev.alloc::<f32>(total) }?;
        if total > 0 {
            let func = dev.get_or_load_custom_func(
                "flip_merge_f32",
                "vidpose_heatmap",
                cuda::HEATMAP_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&hm);
            b.arg(&flip);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(n, "instances")?,
                cuda::int(k, "keypoints")?,
                cuda::int(h, "heatmap height")?,
                cuda::int(w, "heatmap width")?
            );
            unsafe { b.launch(cuda::per_element(total)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((n, k, h, w)),
        ))
    }
}

/// MSRA decoding on a batch: `[n, k, h, w]` heatmaps in, `[n, k, 3]` rows `(x, y, score)` in
/// heatmap pixels out, as [`codec::decode`] with [`Decoding::Msra`] gives them.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsraPeaks;

impl CustomOp1 for MsraPeaks {
    fn name(&self) -> &'static str {
        "msra-peaks"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k, h, w) = l.shape().dims4()?;
        let hm = cpu_slice::<f32>(s, l, "heatmap decoding")?;
        let per = k * h * w;
        let mut out = Vec::with_capacity(n * k * 3);
        for i in 0..n {
            for p in codec::decode(&hm[i * per..][..per], k, h, w, Decoding::Msra) {
                out.extend([p.x, p.y, p.score]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, k, 3))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::nn::cuda;
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;

        let (n, k, h, w) = l.shape().dims4()?;
        let dev = s.device().clone();
        let hm = cuda::view::<f32>(s, l, "heatmap decoding")?;
        let m = n * k;
        let dst = unsafe { dev.alloc::<f32>(3 * m) }?;
        if m > 0 {
            let func = dev.get_or_load_custom_func(
                "msra_peaks_f32",
                "vidpose_heatmap",
                cuda::HEATMAP_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&hm);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(m, "channels")?,
                cuda::int(h, "heatmap height")?,
                cuda::int(w, "heatmap width")?
            );
            unsafe { b.launch(cuda::per_warp(m)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((n, k, 3)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;
    use crate::keypoints::FLIP_INDICES;
    use crate::pose::crop::TopdownAffine;
    use candle_core::{Device, Tensor};

    fn frame(w: u32, h: u32) -> RgbImage {
        let mut img = RgbImage::new(w, h);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * 37 + i / 7) % 256) as u8;
        }
        img
    }

    /// The op's CPU side gives the crops the estimator's CPU path builds, bit for bit.
    #[test]
    fn crop_op_matches_warp_and_normalise() -> Result<()> {
        let img = frame(61, 47);
        let t = TopdownAffine::new(40, 52);
        let boxes = [
            BBox::new(3.0, 4.5, 30.25, 40.0),
            BBox::new(-10.0, 20.0, 70.0, 80.0),
            BBox::new(50.0, 1.0, 58.0, 9.0),
        ];
        let mut params = Vec::new();
        let mut want = Vec::new();
        for flip in [false, true] {
            for b in &boxes {
                let cb = t.crop_box(b);
                let inv = t.inverse(&cb).expect("a usable box");
                params.extend(crop_params(&inv, flip));
                let pixels = t.warp(&img, &cb).expect("a usable box");
                let mut dst = vec![0f32; 3 * 40 * 52];
                normalize_into(&pixels, 40, 52, flip, &mut dst);
                want.extend(dst);
            }
        }
        let dev = Device::Cpu;
        let f = Tensor::from_vec(img.data.clone(), (47, 61, 3), &dev)?;
        let p = Tensor::from_vec(params, (6, 7), &dev)?;
        let got = f.apply_op2_no_bwd(
            &p,
            &CropOp {
                out_w: 40,
                out_h: 52,
            },
        )?;
        assert_eq!(got.dims(), &[6, 3, 52, 40]);
        assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want);
        Ok(())
    }

    #[test]
    fn flip_merge_and_peaks_match_the_codec() -> Result<()> {
        let (n, k, h, w) = (3, FLIP_INDICES.len(), 9, 7);
        let dev = Device::Cpu;
        let hm = Tensor::randn(0f32, 1.0, (2 * n, k, h, w), &dev)?;
        let data = hm.flatten_all()?.to_vec1::<f32>()?;
        let merged = hm.apply_op1_no_bwd(&FlipMerge {
            flip_indices: FLIP_INDICES.to_vec(),
        })?;
        let per = k * h * w;
        let merged_v = merged.flatten_all()?.to_vec1::<f32>()?;
        for i in 0..n {
            let want = codec::merge_flipped(
                &data[i * per..][..per],
                &data[(n + i) * per..][..per],
                k,
                h,
                w,
                &FLIP_INDICES,
            );
            assert_eq!(&merged_v[i * per..][..per], &want[..]);
        }
        let peaks = merged.apply_op1_no_bwd(&MsraPeaks)?.to_vec3::<f32>()?;
        for (i, inst) in peaks.iter().enumerate() {
            let want = codec::decode(&merged_v[i * per..][..per], k, h, w, Decoding::Msra);
            for (row, p) in inst.iter().zip(&want) {
                assert_eq!(row, &vec![p.x, p.y, p.score]);
            }
        }
        Ok(())
    }
}
