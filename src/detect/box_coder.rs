//! Anchors and the (dx, dy, dw, dh) box coding of MMDetection's `DeltaXYWHBBoxCoder`,
//! computed in f32 in the reference's order of operations.

/// `ln(1000 / 16)`: log-scale deltas are clamped to ±this (a box grows or shrinks at most
/// 62.5x in one step). Computed in f64 and rounded once, as the reference does.
fn max_log_ratio() -> f32 {
    (1000.0f64 / 16.0).ln() as f32
}

/// Applies `deltas` (scaled by `stds`, means 0) to `rois` and clips to `max_shape`
/// `(height, width)` of the resized, unpadded image.
pub fn decode(
    rois: &[[f32; 4]],
    deltas: &[[f32; 4]],
    stds: [f32; 4],
    max_shape: (f32, f32),
) -> Vec<[f32; 4]> {
    let (h, w) = max_shape;
    let m = max_log_ratio();
    rois.iter()
        .zip(deltas)
        .map(|(r, d)| {
            let dx = d[0] * stds[0];
            let dy = d[1] * stds[1];
            let dw = (d[2] * stds[2]).clamp(-m, m);
            let dh = (d[3] * stds[3]).clamp(-m, m);
            let px = (r[0] + r[2]) * 0.5;
            let py = (r[1] + r[3]) * 0.5;
            let pw = r[2] - r[0];
            let ph = r[3] - r[1];
            let gx = px + pw * dx;
            let gy = py + ph * dy;
            let gw = pw * dw.exp();
            let gh = ph * dh.exp();
            [
                (gx - gw * 0.5).clamp(0.0, w),
                (gy - gh * 0.5).clamp(0.0, h),
                (gx + gw * 0.5).clamp(0.0, w),
                (gy + gh * 0.5).clamp(0.0, h),
            ]
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
) -> Vec<[f32; 4]> {
    let base = stride as f32;
    let base_anchors: Vec<[f32; 4]> = ratios
        .iter()
        .map(|&r| {
            let h_ratio = r.sqrt();
            let w_ratio = 1.0 / h_ratio;
            let ws = base * w_ratio * scale;
            let hs = base * h_ratio * scale;
            [-(0.5 * ws), -(0.5 * hs), 0.5 * ws, 0.5 * hs]
        })
        .collect();
    let mut out = Vec::with_capacity(feat_h * feat_w * ratios.len());
    for y in 0..feat_h {
        let sy = (y * stride) as f32;
        for x in 0..feat_w {
            let sx = (x * stride) as f32;
            for a in &base_anchors {
                out.push([a[0] + sx, a[1] + sy, a[2] + sx, a[3] + sy]);
            }
        }
    }
    out
}
