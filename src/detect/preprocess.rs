//! MMDetection's test-time input pipeline: `Resize` keeping the aspect ratio to fit
//! 1333x800, normalisation with the ImageNet mean/std (RGB), zero padding (after
//! normalisation) at the bottom and right to a multiple of 32.
//!
//! The resize reproduces OpenCV's `INTER_LINEAR` for 8-bit images, which MMDetection uses:
//! half-pixel centres, no antialiasing, 11-bit fixed-point weights, and the rounding of
//! OpenCV's vectorised vertical pass (16-bit multiply-high), which differs from its scalar
//! formula by one level on a few percent of the pixels. Rows shorter than one vector (16
//! values) take the scalar formula.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};

use crate::image::RgbImage;
use crate::nn::transfer::{cpu_slice, frame_on_device};

/// ImageNet per-channel mean (R, G, B) on the 0..255 scale, subtracted from every pixel.
pub const MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet per-channel standard deviation (R, G, B) on the 0..255 scale; pixels are divided
/// by it after the mean is subtracted.
pub const STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Geometry of one preprocessed image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageMeta {
    /// Original size `(height, width)`, pixels.
    pub ori_shape: (usize, usize),
    /// Resized size `(height, width)` before padding: boxes are clipped to it.
    pub img_shape: (usize, usize),
    /// Size `(height, width)` of the input tensor after padding to `pad_divisor`; in a batch,
    /// the largest image's.
    pub pad_shape: (usize, usize),
    /// `(new_w / w, new_h / h)`.
    pub scale_factor: (f64, f64),
}

/// The test-time resize and padding (MMDetection's `Resize` and `Pad` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessConfig {
    /// Longer and shorter side limits, `(1333, 800)`.
    pub scale: (usize, usize),
    /// Height and width are padded up to a multiple of this (32; 0 is taken as 1).
    pub pad_divisor: usize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            scale: (1333, 800),
            pad_divisor: 32,
        }
    }
}

/// The resized size `(width, height)` of a `w x h` image: the largest that fits the scale
/// limits, rounded half up.
pub fn rescaled_size(w: usize, h: usize, scale: (usize, usize)) -> (usize, usize) {
    let long = scale.0.max(scale.1) as f64;
    let short = scale.0.min(scale.1) as f64;
    let f = (long / w.max(h) as f64).min(short / w.min(h) as f64);
    ((w as f64 * f + 0.5) as usize, (h as f64 * f + 0.5) as usize)
}

/// Normalised, padded `[1, 3, H, W]` input and its geometry. The caller has checked that
/// the image is non-empty and that the resized size is at least 1x1.
///
/// The frame goes to `device` once, as bytes; the resize and normalisation run there
/// ([`DetectorInput`]: the CPU code below, or `kernels/detector_input.cu` on a GPU).
pub fn preprocess(
    img: &RgbImage,
    cfg: &PreprocessConfig,
    device: &Device,
) -> Result<(Tensor, ImageMeta)> {
    preprocess_uploaded(img, None, cfg, device)
}

/// [`preprocess`] reading the frame from `uploaded` (its `[h, w, 3]` bytes on `device`, see
/// [`crate::nn::transfer::upload_frame`]) where given, instead of sending it to the device
/// again.
pub fn preprocess_uploaded(
    img: &RgbImage,
    uploaded: Option<&Tensor>,
    cfg: &PreprocessConfig,
    device: &Device,
) -> Result<(Tensor, ImageMeta)> {
    let (w, h) = (img.width as usize, img.height as usize);
    let (nw, nh) = rescaled_size(w, h, cfg.scale);
    let d = cfg.pad_divisor.max(1);
    let (ph, pw) = (nh.div_ceil(d) * d, nw.div_ceil(d) * d);
    let frame = frame_on_device(img, uploaded, device)?;
    let taps = Tensor::from_vec(resize_taps(w, h, nw, nh), (nw + nh, 4), device)?;
    let op = DetectorInput { nw, nh, pw, ph };
    let x = frame.apply_op2_no_bwd(&taps, &op)?.unsqueeze(0)?;
    let meta = ImageMeta {
        ori_shape: (h, w),
        img_shape: (nh, nw),
        pad_shape: (ph, pw),
        scale_factor: (nw as f64 / w as f64, nh as f64 / h as f64),
    };
    Ok((x, meta))
}

/// The resized `nw x nh` RGB bytes, normalised into planar `[3, ph, pw]` with zeros in the
/// bottom/right padding.
fn normalise_padded(resized: &[u8], nw: usize, nh: usize, pw: usize, ph: usize) -> Vec<f32> {
    let mut x = vec![0f32; 3 * ph * pw];
    for c in 0..3 {
        let plane = &mut x[c * ph * pw..][..ph * pw];
        for y in 0..nh {
            let src = &resized[y * nw * 3..][..nw * 3];
            for (xx, v) in plane[y * pw..][..nw].iter_mut().enumerate() {
                *v = (src[xx * 3 + c] as f32 - MEAN[c]) / STD[c];
            }
        }
    }
    x
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Source index and fixed-point weights for each destination coordinate along one axis.
fn axis_taps(src: usize, dst: usize, clamp_weights: bool) -> Vec<(isize, [i32; 2])> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as isize;
            let mut frac = f - s as f32;
            if clamp_weights {
                if s < 0 {
                    s = 0;
                    frac = 0.0;
                }
                if s >= src as isize - 1 {
                    s = src as isize - 1;
                    frac = 0.0;
                }
            }
            let w0 = ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32;
            let w1 = (frac * COEF_SCALE).round_ties_even() as i32;
            (s, [w0, w1])
        })
        .collect()
}

/// The resize of a `w x h` image to `nw x nh` as `nw + nh` rows of 4 values: for each output
/// column, then each output row, the two source indices (clamped into the image) and their
/// 11-bit weights. Columns' weights are clamped at the borders, rows' are not (OpenCV's
/// choice), so every value is a plain non-negative integer a kernel can use as it is.
pub fn resize_taps(w: usize, h: usize, nw: usize, nh: usize) -> Vec<u32> {
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as u32;
    let columns = axis_taps(w, nw, true)
        .into_iter()
        .map(|(s, [a0, a1])| [clamp(s, w), clamp(s + 1, w), a0 as u32, a1 as u32]);
    let rows = axis_taps(h, nh, false)
        .into_iter()
        .map(|(s, [b0, b1])| [clamp(s, h), clamp(s + 1, h), b0 as u32, b1 as u32]);
    columns.chain(rows).flatten().collect()
}

/// OpenCV `resize(INTER_LINEAR)` of packed RGB (3 channels, u8).
pub fn resize_linear_u8(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    resize_with_taps(src, w, nw, nh, &resize_taps(w, h, nw, nh))
}

/// [`resize_linear_u8`] with its [`resize_taps`].
fn resize_with_taps(src: &[u8], w: usize, nw: usize, nh: usize, taps: &[u32]) -> Vec<u8> {
    let (xt, yt) = taps.split_at(4 * nw);
    let row_len = nw * 3;
    let hpass = |y: usize| -> Vec<i32> {
        let row = &src[y * w * 3..][..w * 3];
        let mut out = vec![0i32; row_len];
        for (dx, t) in xt.chunks_exact(4).enumerate() {
            let (sx, sx1, a0, a1) = (t[0] as usize, t[1] as usize, t[2] as i32, t[3] as i32);
            for c in 0..3 {
                out[dx * 3 + c] = row[sx * 3 + c] as i32 * a0 + row[sx1 * 3 + c] as i32 * a1;
            }
        }
        out
    };
    let vectorised = row_len >= 16;
    let mut dst = vec![0u8; nh * row_len];
    let mut cache: Option<(usize, Vec<i32>)> = None;
    for (dy, t) in yt.chunks_exact(4).enumerate() {
        let (y0, y1, b0, b1) = (t[0] as usize, t[1] as usize, t[2] as i32, t[3] as i32);
        let r0 = match cache.take() {
            Some((y, r)) if y == y0 => r,
            _ => hpass(y0),
        };
        let r1 = if y1 == y0 { r0.clone() } else { hpass(y1) };
        let out = &mut dst[dy * row_len..][..row_len];
        for (i, o) in out.iter_mut().enumerate() {
            let v = if vectorised {
                // 16-bit multiply-high path of OpenCV's SIMD loop
                let a = ((r0[i] >> 4) * b0) >> 16;
                let b = ((r1[i] >> 4) * b1) >> 16;
                (a + b + 2) >> 2
            } else {
                (r0[i] * b0 + r1[i] * b1 + (1 << 21)) >> 22
            };
            *o = v.clamp(0, 255) as u8;
        }
        cache = Some((y1, r1));
    }
    dst
}

/// The detector's input as a candle operator: `frame` `[h, w, 3]` u8 (packed RGB) and
/// `taps` `[nw + nh, 4]` u32 ([`resize_taps`]) in, the resized, normalised and padded planar
/// `[3, ph, pw]` f32 out. `cpu_fwd` is [`resize_linear_u8`] and the normalisation; with
/// `--features cuda` the CUDA side runs `kernels/detector_input.cu`, one thread per pixel.
#[derive(Debug, Clone, Copy)]
pub struct DetectorInput {
    /// Resized width, pixels.
    pub nw: usize,
    /// Resized height, pixels.
    pub nh: usize,
    /// Padded width (at least `nw`).
    pub pw: usize,
    /// Padded height (at least `nh`).
    pub ph: usize,
}

impl DetectorInput {
    fn shapes(&self, frame: &Layout, taps: &Layout) -> Result<(usize, usize)> {
        let (h, w, three) = frame.shape().dims3()?;
        let (rows, four) = taps.shape().dims2()?;
        if three != 3
            || four != 4
            || rows != self.nw + self.nh
            || self.pw < self.nw
            || self.ph < self.nh
            || h == 0
            || w == 0
        {
            candle_core::bail!(
                "detector input: frame {:?}, taps {:?} do not fit a {}x{} resize padded to {}x{}",
                frame.shape(),
                taps.shape(),
                self.nw,
                self.nh,
                self.pw,
                self.ph
            );
        }
        Ok((h, w))
    }
}

impl CustomOp2 for DetectorInput {
    fn name(&self) -> &'static str {
        "detector-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, w) = self.shapes(l1, l2)?;
        let frame = cpu_slice::<u8>(s1, l1, "detector input")?;
        let taps = cpu_slice::<u32>(s2, l2, "detector input")?;
        let resized = resize_with_taps(frame, w, self.nw, self.nh, taps);
        let x = normalise_padded(&resized, self.nw, self.nh, self.pw, self.ph);
        Ok((CpuStorage::F32(x), Shape::from((3, self.ph, self.pw))))
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

        let (h, w) = self.shapes(l1, l2)?;
        let dev = s1.device().clone();
        let frame = cuda::view::<u8>(s1, l1, "detector input")?;
        let taps = cuda::view::<u32>(s2, l2, "detector input")?;
        let total = self.pw * self.ph;
        let dst = unsafe { dev.alloc::<f32>(3 * total) }?;
        if total > 0 {
            let func = dev.get_or_load_custom_func(
                "detector_input_f32",
                "vidpose_detector_input",
                cuda::DETECTOR_INPUT_PTX,
            )?;
            let mut b = func.builder();
            b.arg(&frame);
            b.arg(&taps);
            b.arg(&dst);
            candle_core::builder_arg!(
                b,
                cuda::int(w, "frame width")?,
                cuda::int(h, "frame height")?,
                cuda::int(self.nw, "resized width")?,
                cuda::int(self.nh, "resized height")?,
                cuda::int(self.pw, "padded width")?,
                cuda::int(self.ph, "padded height")?,
                i32::from(self.nw * 3 >= 16)
            );
            unsafe { b.launch(cuda::per_element(total)?) }.w()?;
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((3, self.ph, self.pw)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize) -> Tensor {
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        Tensor::from_vec(data, (h, w, 3), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_operator_equals_resize_then_normalise() {
        let (w, h, nw, nh, pw, ph) = (23, 17, 40, 30, 64, 32);
        let f = frame(w, h);
        let taps = Tensor::from_vec(resize_taps(w, h, nw, nh), (nw + nh, 4), &Device::Cpu);
        let got = f
            .apply_op2_no_bwd(&taps.unwrap(), &DetectorInput { nw, nh, pw, ph })
            .unwrap();
        assert_eq!(got.dims(), &[3, ph, pw]);
        let bytes: Vec<u8> = f.flatten_all().unwrap().to_vec1().unwrap();
        let want = normalise_padded(&resize_linear_u8(&bytes, w, h, nw, nh), nw, nh, pw, ph);
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    }

    #[test]
    fn mismatched_operands_are_errors() {
        let f = frame(8, 6);
        let op = DetectorInput {
            nw: 4,
            nh: 3,
            pw: 32,
            ph: 32,
        };
        let taps = |rows: usize, cols: usize| {
            Tensor::from_vec(vec![0u32; rows * cols], (rows, cols), &Device::Cpu).unwrap()
        };
        // taps for another size, taps of the wrong width, a padded size below the resized one
        for (t, op) in [
            (taps(8, 4), op),
            (taps(7, 3), op),
            (taps(7, 4), DetectorInput { pw: 2, ..op }),
        ] {
            let e = f.apply_op2_no_bwd(&t, &op).unwrap_err().to_string();
            assert!(e.contains("detector input"), "{e}");
        }
        let gray = Tensor::zeros((6, 8, 1), candle_core::DType::U8, &Device::Cpu).unwrap();
        assert!(gray.apply_op2_no_bwd(&taps(7, 4), &op).is_err());
    }
}
