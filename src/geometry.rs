//! Boxes and affine transforms, shared by detection, pose cropping and rendering.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in image pixels, corners `(x1, y1)`-`(x2, y2)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// From COCO `[x, y, w, h]`.
    pub fn from_xywh(xywh: [f32; 4]) -> Self {
        Self::new(xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3])
    }

    /// To COCO `[x, y, w, h]`.
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.x1, self.y1, self.width(), self.height()]
    }

    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Area with MMCV's convention (no +1), zero for degenerate boxes.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }

    pub fn is_finite(&self) -> bool {
        self.x1.is_finite() && self.y1.is_finite() && self.x2.is_finite() && self.y2.is_finite()
    }

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

    /// Clamp to an image of `width` x `height` pixels.
    pub fn clip(&self, width: f32, height: f32) -> BBox {
        BBox::new(
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
            self.x2.clamp(0.0, width),
            self.y2.clamp(0.0, height),
        )
    }
}

/// A 2x3 affine transform `[a, b, c; d, e, f]`: `x' = a x + b y + c`, `y' = d x + e y + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub m: [f32; 6],
}

impl Affine {
    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.m;
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }

    /// Inverse transform; `None` when singular.
    pub fn inverse(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.m;
        let det = a * e - b * d;
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine {
            m: [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)],
        })
    }
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
    fn affine_inverse() {
        let t = Affine {
            m: [2.0, 0.0, 3.0, 0.0, 0.5, -1.0],
        };
        let inv = t.inverse().unwrap();
        let (x, y) = t.apply(4.0, 6.0);
        let (bx, by) = inv.apply(x, y);
        assert!((bx - 4.0).abs() < 1e-5 && (by - 6.0).abs() < 1e-5);
    }
}
