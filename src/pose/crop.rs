//! Top-down crops: MMPose's `GetBBoxCenterScale` and `TopdownAffine`, then the data
//! preprocessor's mean/std normalisation.
//!
//! The warp reproduces `cv2.warpAffine(..., INTER_LINEAR)` with a constant 0 border as OpenCV
//! 4.11+/5.x computes it for 8-bit 3-channel images: source coordinates and bilinear
//! interpolation in f32 with fused multiply-adds, rounding half to even. (Older OpenCV used
//! 5-bit fixed-point weights; the reference environment's OpenCV 5.0 does not.) One grey level
//! of difference changes the normalised input by 1/57, far above the heatmap tolerance, which
//! is why the arithmetic order matters here.

use crate::geometry::{
    bbox_center_scale, fix_aspect_ratio, invert_affine_f64, topdown_warp_matrix, BBox,
};
use crate::image::RgbImage;

/// ImageNet mean and std in RGB order, 0-255 scale (MMPose `PoseDataPreprocessor`).
pub const MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet std in RGB order, 0-255 scale; crop pixels are `(v - MEAN) / STD`.
pub const STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Box padding of the PoseTrack18 configs.
pub const BBOX_PADDING: f32 = 1.25;

/// Where a crop came from: centre and aspect-fixed scale in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Box centre `[x, y]`, image pixels.
    pub center: [f32; 2],
    /// Region `[width, height]` that fills the model input, image pixels: the box padded by
    /// [`BBOX_PADDING`], then widened or heightened to the input's aspect ratio.
    pub scale: [f32; 2],
}

/// Crop geometry for a model input of `input_w` x `input_h` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopdownAffine {
    /// Model input width, pixels.
    pub input_w: u32,
    /// Model input height, pixels.
    pub input_h: u32,
    /// Factor the box is grown by before cropping (MMPose's `GetBBoxCenterScale` `padding`).
    pub padding: f32,
}

impl TopdownAffine {
    /// Crops for a `input_w` x `input_h` model with the PoseTrack18 padding, [`BBOX_PADDING`].
    pub fn new(input_w: u32, input_h: u32) -> Self {
        Self {
            input_w,
            input_h,
            padding: BBOX_PADDING,
        }
    }

    /// Centre and aspect-fixed scale of a detector box.
    pub fn crop_box(&self, bbox: &BBox) -> CropBox {
        let (center, scale) = bbox_center_scale(bbox, self.padding);
        let aspect = (self.input_w as f64 / self.input_h as f64) as f32;
        CropBox {
            center,
            scale: fix_aspect_ratio(scale, aspect),
        }
    }

    /// The `input_h x input_w` RGB crop, or `None` when the box is degenerate (zero area or
    /// non-finite), for which no transform exists.
    pub fn warp(&self, img: &RgbImage, cb: &CropBox) -> Option<Vec<u8>> {
        let inv = self.inverse(cb)?;
        Some(warp_affine_linear(
            img,
            &inv,
            self.input_w as usize,
            self.input_h as usize,
        ))
    }

    /// The map from crop pixels to image pixels, or `None` when the box is degenerate.
    pub fn inverse(&self, cb: &CropBox) -> Option<[f64; 6]> {
        let usable =
            cb.scale[0] > 0.0 && cb.scale[1] > 0.0 && cb.center.iter().all(|v| v.is_finite());
        if !usable {
            return None;
        }
        let m = topdown_warp_matrix(cb.center, cb.scale, self.input_w, self.input_h)?;
        invert_affine_f64(&m)
    }
}

/// Bilinear warp of a packed RGB image; `inv` maps output pixels to source pixels. Samples
/// outside the image read 0.
pub fn warp_affine_linear(img: &RgbImage, inv: &[f64; 6], out_w: usize, out_h: usize) -> Vec<u8> {
    let m = inv.map(|v| v as f32);
    let (sw, sh) = (img.width as i64, img.height as i64);
    let mut out = vec![0u8; out_w * out_h * 3];
    // OpenCV's vector loop handles 16 pixels per step (its AVX2 kernel: 8 float lanes, unrolled
    // twice) while a whole step fits; the rest of the row takes its scalar path, whose
    // coordinate expression rounds differently. The models' input widths (96, 192, 288) are
    // multiples of 16, so only other widths have such a tail.
    const STEP: usize = 16;
    let vector_end = out_w / STEP * STEP;
    let pixel = |x: i64, y: i64| -> [f32; 3] {
        if x >= 0 && y >= 0 && x < sw && y < sh {
            let i = (y as usize * img.width as usize + x as usize) * 3;
            [
                img.data[i] as f32,
                img.data[i + 1] as f32,
                img.data[i + 2] as f32,
            ]
        } else {
            [0.0; 3]
        }
    };
    for y in 0..out_h {
        let yf = y as f32;
        let row_x = yf * m[1] + m[2];
        let row_y = yf * m[4] + m[5];
        for x in 0..out_w {
            let xf = x as f32;
            let (sx, sy) = if x < vector_end {
                (m[0].mul_add(xf, row_x), m[3].mul_add(xf, row_y))
            } else {
                // `x*M[0] + y*M[1] + M[2]` as compiled: the first product fused into the
                // first sum, then the last addition rounded on its own.
                (
                    xf.mul_add(m[0], yf * m[1]) + m[2],
                    xf.mul_add(m[3], yf * m[4]) + m[5],
                )
            };
            if !(sx.is_finite() && sy.is_finite()) {
                continue;
            }
            let (fx, fy) = (sx.floor(), sy.floor());
            let (ix, iy) = (fx as i64, fy as i64);
            // all four neighbours outside: the border value
            if ix + 1 < 0 || iy + 1 < 0 || ix >= sw || iy >= sh {
                continue;
            }
            let (a, b) = (sx - fx, sy - fy);
            let (p00, p01, p10, p11) = (
                pixel(ix, iy),
                pixel(ix + 1, iy),
                pixel(ix, iy + 1),
                pixel(ix + 1, iy + 1),
            );
            let o = (y * out_w + x) * 3;
            for c in 0..3 {
                let top = a.mul_add(p01[c] - p00[c], p00[c]);
                let bottom = a.mul_add(p11[c] - p10[c], p10[c]);
                let v = b.mul_add(bottom - top, top);
                out[o + c] = v.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Packed RGB crop → planar normalised f32 (C, H, W) written to `out`, mirrored left-right when
/// `flip` (the flip-test input).
pub fn normalize_into(rgb: &[u8], w: usize, h: usize, flip: bool, out: &mut [f32]) {
    let plane = w * h;
    for y in 0..h {
        for x in 0..w {
            let src = (y * w + if flip { w - 1 - x } else { x }) * 3;
            for c in 0..3 {
                out[c * plane + y * w + x] = (rgb[src + c] as f32 - MEAN[c]) / STD[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_warp_copies_and_borders_are_zero() {
        let mut img = RgbImage::new(4, 3);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = i as u8;
        }
        let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        assert_eq!(warp_affine_linear(&img, &id, 4, 3), img.data);
        let shifted = [1.0, 0.0, -10.0, 0.0, 1.0, 0.0];
        assert!(warp_affine_linear(&img, &shifted, 4, 3)
            .iter()
            .all(|&v| v == 0));
    }

    #[test]
    fn degenerate_boxes_have_no_crop() {
        let t = TopdownAffine::new(192, 256);
        let img = RgbImage::new(8, 8);
        let cb = t.crop_box(&BBox::new(5.0, 5.0, 5.0, 5.0));
        assert!(t.warp(&img, &cb).is_none());
        let cb = t.crop_box(&BBox::new(f32::NAN, 0.0, 5.0, 5.0));
        assert!(t.warp(&img, &cb).is_none());
        // a box entirely outside the image gives an all-border crop
        let cb = t.crop_box(&BBox::new(100.0, 100.0, 150.0, 200.0));
        assert!(t.warp(&img, &cb).unwrap().iter().all(|&v| v == 0));
    }
}
