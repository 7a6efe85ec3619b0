//! Anchors and the (dx, dy, dw, dh) box coding of MMDetection's `DeltaXYWHBBoxCoder`,
//! computed in f32 in the reference's order of operations.

use crate::geometry::BBox;

/// A box regression `(dx, dy, dw, dh)` as the network outputs it (or the per-component
/// scales of one): four values per row of the regression tensor, not a box.
pub type Deltas = [f32; 4];

/// `ln(1000 / 16)`: log-scale deltas are clamped to ±this (a box grows or shrinks at most
/// 62.5x in one step). Computed in f64 and rounded once, as the reference does.
fn max_log_ratio() -> f32 {
    (1000.0f64 / 16.0).ln() as f32
}

/// Applies `deltas` (scaled by `stds`, means 0) to `rois` and clips to `max_shape`
/// `(height, width)` of the resized, unpadded image.
pub fn decode(rois: &[BBox], deltas: &[Deltas], stds: Deltas, max_shape: (f32, f32)) -> Vec<BBox> {
    let (h, w) = max_shape;
    let m = max_log_ratio();
    rois.iter()
        .zip(deltas)
        .map(|(r, d)| {
            let dx = d[0] * stds[0];
            let dy = d[1] * stds[1];
            let dw = (d[2] * stds[2]).clamp(-m, m);
            let dh = (d[3] * stds[3]).clamp(-m, m);
            let px = (r.x1 + r.x2) * 0.5;
            let py = (r.y1 + r.y2) * 0.5;
            let pw = r.x2 - r.x1;
            let ph = r.y2 - r.y1;
            let gx = px + pw * dx;
            let gy = py + ph * dy;
            let gw = pw * dw.exp();
            let gh = ph * dh.exp();
            BBox::new(
                (gx - gw * 0.5).clamp(0.0, w),
                (gy - gh * 0.5).clamp(0.0, h),
                (gx + gw * 0.5).clamp(0.0, w),
                (gy + gh * 0.5).clamp(0.0, h),
            )
        })
        .collect()
}

/// MMDetection's `AnchorGenerator` for one level: base size = stride, one scale, the given
/// aspect ratios (h/w), no centre offset; anchors ordered (y, x, ratio).
pub fn level_anchors(
    stride: usize,
    scale: f32,
    ratios: &[f32],
    feat_h: usize,
    feat_w: usize,
) -> Vec<BBox> {
    let base = stride as f32;
    let base_anchors: Vec<BBox> = ratios
        .iter()
        .map(|&r| {
            let h_ratio = r.sqrt();
            let w_ratio = 1.0 / h_ratio;
            let ws = base * w_ratio * scale;
            let hs = base * h_ratio * scale;
            BBox::new(-(0.5 * ws), -(0.5 * hs), 0.5 * ws, 0.5 * hs)
        })
        .collect();
    let mut out = Vec::with_capacity(feat_h * feat_w * ratios.len());
    for y in 0..feat_h {
        let sy = (y * stride) as f32;
        for x in 0..feat_w {
            let sx = (x * stride) as f32;
            for a in &base_anchors {
                out.push(BBox::new(a.x1 + sx, a.y1 + sy, a.x2 + sx, a.y2 + sy));
            }
        }
    }
    out
}
