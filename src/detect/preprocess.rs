//! MMDetection's test-time input pipeline: `Resize` keeping the aspect ratio to fit
//! 1333x800, normalisation with the ImageNet mean/std (RGB), zero padding (after
//! normalisation) at the bottom and right to a multiple of 32.
//!
//! The resize reproduces OpenCV's `INTER_LINEAR` for 8-bit images, which MMDetection uses:
//! half-pixel centres, no antialiasing, 11-bit fixed-point weights, and the rounding of
//! OpenCV's vectorised vertical pass (16-bit multiply-high), which differs from its scalar
//! formula by one level on a few percent of the pixels. Rows shorter than one vector (16
//! values) take the scalar formula.

use candle_core::{Device, Result, Tensor};

use crate::image::RgbImage;

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
pub fn preprocess(
    img: &RgbImage,
    cfg: &PreprocessConfig,
    device: &Device,
) -> Result<(Tensor, ImageMeta)> {
    let (w, h) = (img.width as usize, img.height as usize);
    let (nw, nh) = rescaled_size(w, h, cfg.scale);
    let resized = resize_linear_u8(&img.data, w, h, nw, nh);
    let d = cfg.pad_divisor.max(1);
    let (ph, pw) = (nh.div_ceil(d) * d, nw.div_ceil(d) * d);
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
    let meta = ImageMeta {
        ori_shape: (h, w),
        img_shape: (nh, nw),
        pad_shape: (ph, pw),
        scale_factor: (nw as f64 / w as f64, nh as f64 / h as f64),
    };
    Ok((Tensor::from_vec(x, (1, 3, ph, pw), device)?, meta))
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

/// OpenCV `resize(INTER_LINEAR)` of packed RGB (3 channels, u8).
pub fn resize_linear_u8(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    let xt = axis_taps(w, nw, true);
    // rows: weights not clamped, row indices clamped when read
    let yt = axis_taps(h, nh, false);
    let row_len = nw * 3;
    let hpass = |y: usize| -> Vec<i32> {
        let row = &src[y * w * 3..][..w * 3];
        let mut out = vec![0i32; row_len];
        for (dx, &(sx, [a0, a1])) in xt.iter().enumerate() {
            let sx = sx as usize;
            let sx1 = (sx + 1).min(w - 1);
            for c in 0..3 {
                out[dx * 3 + c] = row[sx * 3 + c] as i32 * a0 + row[sx1 * 3 + c] as i32 * a1;
            }
        }
        out
    };
    let vectorised = row_len >= 16;
    let mut dst = vec![0u8; nh * row_len];
    let mut cache: Option<(usize, Vec<i32>)> = None;
    for (dy, &(sy, [b0, b1])) in yt.iter().enumerate() {
        let y0 = sy.clamp(0, h as isize - 1) as usize;
        let y1 = (sy + 1).clamp(0, h as isize - 1) as usize;
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
