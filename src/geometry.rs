//! Boxes and affine transforms, shared by detection, pose cropping and rendering.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in image pixels, corners `(x1, y1)`-`(x2, y2)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge, pixels.
    pub x1: f32,
    /// Top edge, pixels.
    pub y1: f32,
    /// Right edge, pixels.
    pub x2: f32,
    /// Bottom edge, pixels.
    pub y2: f32,
}

impl BBox {
    /// From its corners, as given (nothing is clipped or reordered).
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// From COCO `[x, y, w, h]` in f32, the corners added in f32: MMPose's
    /// `bbox_xywh2xyxy` on a detection-results file, which it reads as float32 first.
    pub fn from_xywh(xywh: [f32; 4]) -> Self {
        Self::new(xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3])
    }

    /// A ground-truth `[x, y, w, h]` as MMPose's COCO-style datasets (PoseTrack18 among them)
    /// turn it into corners (`BaseCocoStyleDataset.parse_data_info`): `x + w` added in f64 as read
    /// from the JSON, each corner clipped to `[0, size - 1]` of the image the annotation file
    /// names, then rounded once to f32. Adding in f32 instead moves the crop centre by an ulp,
    /// enough to flip pixel roundings in the warp.
    pub fn from_annotation_xywh(xywh: [f64; 4], image_width: f64, image_height: f64) -> Self {
        let [x, y, w, h] = xywh;
        // numpy's clip: max with the low bound, then min with the high one.
        let clip = |v: f64, size: f64| v.max(0.0).min(size - 1.0) as f32;
        Self::new(
            clip(x, image_width),
            clip(y, image_height),
            clip(x + w, image_width),
            clip(y + h, image_height),
        )
    }

    /// To COCO `[x, y, w, h]`.
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.x1, self.y1, self.width(), self.height()]
    }

    /// `x2 - x1`, pixels; negative for an inverted box.
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    /// `y2 - y1`, pixels; negative for an inverted box.
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Area with MMCV's convention (no +1), zero for degenerate boxes.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Centre `(x, y)`, pixels.
    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }

    /// Whether all four corners are finite (no NaN or infinity).
    pub fn is_finite(&self) -> bool {
        self.x1.is_finite() && self.y1.is_finite() && self.x2.is_finite() && self.y2.is_finite()
    }

    /// Area of the overlap with `other`, square pixels; 0 when they do not overlap.
    pub fn intersection(&self, other: &BBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        w * h
    }

    /// Intersection over union; 0 when both boxes are empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The box size as MMPose's top-down pipeline sees it: grown by `padding` (`GetBBoxCenterScale`,
    /// 1.25), then widened or heightened to the model's `aspect` = width / height (`TopdownAffine`).
    pub fn padded_scale(&self, padding: f32, aspect: f32) -> (f32, f32) {
        let (w, h) = (self.width() * padding, self.height() * padding);
        if w > h * aspect {
            (w, w / aspect)
        } else {
            (h * aspect, h)
        }
    }
}

/// MMPose `GetBBoxCenterScale`: box centre and `padding` x its size, `([cx, cy], [sw, sh])`.
pub fn bbox_center_scale(bbox: &BBox, padding: f32) -> ([f32; 2], [f32; 2]) {
    let (cx, cy) = bbox.center();
    (
        [cx, cy],
        [(bbox.x2 - bbox.x1) * padding, (bbox.y2 - bbox.y1) * padding],
    )
}

/// Grow the shorter side of a box scale so that width / height equals `aspect` (MMPose's
/// `_fix_aspect_ratio`, used by `TopdownAffine`).
pub fn fix_aspect_ratio(scale: [f32; 2], aspect: f32) -> [f32; 2] {
    let [w, h] = scale;
    if w > h * aspect {
        [w, w / aspect]
    } else {
        [h * aspect, h]
    }
}

/// The top-down crop transform of MMPose's `get_warp_matrix` (rotation 0, no shift, fixed
/// aspect): maps the centre to the middle of a `out_w` x `out_h` output and scales by
/// `out_w / scale[0]`. Built, as MMPose does, from three corresponding points in f32, so the
/// result matches the reference to the last bits.
/// `None` for a degenerate (zero or non-finite) scale.
pub fn topdown_warp_matrix(
    center: [f32; 2],
    scale: [f32; 2],
    out_w: u32,
    out_h: u32,
) -> Option<[f64; 6]> {
    let sw = scale[0];
    let (dw, dh) = (out_w as f32, out_h as f32);
    // MMPose 1.x places the second point half a width to the left of the centre (its 0.x
    // placed it above); the third is the second rotated about it, all rounded to f32.
    let src0 = center;
    let src1 = [center[0] + (-0.5 * sw), center[1]];
    let dst0 = [dw * 0.5, dh * 0.5];
    let dst1 = [dst0[0] + (-0.5 * dw), dst0[1]];
    // third point: rotate (a - b) by 90 degrees around b
    let third = |a: [f32; 2], b: [f32; 2]| {
        let d = [a[0] - b[0], a[1] - b[1]];
        [b[0] - d[1], b[1] + d[0]]
    };
    let src = [src0, src1, third(src0, src1)];
    let dst = [dst0, dst1, third(dst0, dst1)];
    solve_affine(&src, &dst)
}

/// The affine map taking three `src` points to three `dst` points, solved as OpenCV's
/// `getAffineTransform` does: the 6x6 system (rows `[x y 1 0 0 0]` and `[0 0 0 x y 1]` per
/// point) by Gaussian elimination with partial pivoting in f64. Crops of large frames sample
/// far from the origin, where a last-bit difference in the matrix flips pixel roundings.
fn solve_affine(src: &[[f32; 2]; 3], dst: &[[f32; 2]; 3]) -> Option<[f64; 6]> {
    let mut a = [[0f64; 6]; 6];
    let mut b = [0f64; 6];
    for i in 0..3 {
        let (x, y) = (src[i][0] as f64, src[i][1] as f64);
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0];
        b[2 * i] = dst[i][0] as f64;
        b[2 * i + 1] = dst[i][1] as f64;
    }
    let n = 6;
    for col in 0..n {
        let mut pivot = col;
        for r in col + 1..n {
            if a[r][col].abs() > a[pivot][col].abs() {
                pivot = r;
            }
        }
        let p = a[pivot][col].abs();
        if p.is_nan() || p < f64::EPSILON * 100.0 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let neg_inv = -1.0 / a[col][col];
        let pivot_row = a[col];
        for r in col + 1..n {
            let f = a[r][col] * neg_inv;
            for (x, p) in a[r][col + 1..].iter_mut().zip(&pivot_row[col + 1..]) {
                *x += f * p;
            }
            b[r] += f * b[col];
        }
        // keep the reciprocal pivot for back-substitution
        a[col][col] = -neg_inv;
    }
    for r in (0..n).rev() {
        let mut s = b[r];
        for c in r + 1..n {
            s -= a[r][c] * b[c];
        }
        b[r] = s * a[r][r];
    }
    b.iter().all(|v| v.is_finite()).then_some(b)
}

/// Inverse of a 2x3 affine map in f64, computed like `cv2.invertAffineTransform`.
pub fn invert_affine_f64(m: &[f64; 6]) -> Option<[f64; 6]> {
    let det = m[0] * m[4] - m[1] * m[3];
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let d = 1.0 / det;
    let (a11, a22, a12, a21) = (m[4] * d, m[0] * d, -m[1] * d, -m[3] * d);
    let b1 = -a11 * m[2] - a12 * m[5];
    let b2 = -a21 * m[2] - a22 * m[5];
    Some([a11, a12, b1, a21, a22, b2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let half = BBox::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&half) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn xywh_round_trip() {
        let b = BBox::from_xywh([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(b, BBox::new(1.0, 2.0, 4.0, 6.0));
        assert_eq!(b.to_xywh(), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn annotation_boxes_add_in_f64_and_clip_to_the_image() {
        // 1234.567 + 89.123 is 1323.69 rounded once, 1323.6901 when added in f32.
        let b = BBox::from_annotation_xywh([1234.567, 10.0, 89.123, 20.0], 1920.0, 1080.0);
        assert_eq!(b.x2, 1323.69_f32);
        assert_ne!(b.x2, 1234.567_f32 + 89.123_f32);
        assert_ne!(BBox::from_xywh([1234.567, 10.0, 89.123, 20.0]).x2, b.x2);
        // Corners outside the frame land on its first and last pixel.
        let b = BBox::from_annotation_xywh([-5.5, -1.0, 2000.0, 2000.0], 1920.0, 1080.0);
        assert_eq!(b, BBox::new(0.0, 0.0, 1919.0, 1079.0));
    }

    #[test]
    fn topdown_warp_maps_center_to_middle() {
        let (c, s) = bbox_center_scale(&BBox::new(10.0, 20.0, 110.0, 220.0), 1.25);
        assert_eq!(c, [60.0, 120.0]);
        let s = fix_aspect_ratio(s, 0.75);
        assert_eq!(s, [187.5, 250.0]);
        let m = topdown_warp_matrix(c, s, 192, 256).unwrap();
        let x = m[0] * 60.0 + m[1] * 120.0 + m[2];
        let y = m[3] * 60.0 + m[4] * 120.0 + m[5];
        assert!((x - 96.0).abs() < 1e-9 && (y - 128.0).abs() < 1e-9);
        assert!((m[0] - 192.0 / 187.5).abs() < 1e-12 && m[1].abs() < 1e-12);
        let inv = invert_affine_f64(&m).unwrap();
        assert!((inv[0] * 96.0 + inv[2] - 60.0).abs() < 1e-9);
        assert!(topdown_warp_matrix(c, [0.0, 0.0], 192, 256).is_none());
    }
}
