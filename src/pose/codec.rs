//! Heatmap decoding (MMPose's `MSRAHeatmap` codec) and the flip test's heatmap merge.
//!
//! Heatmaps are `K x H x W` f32 slices (row-major), one instance at a time.

use serde::Deserialize;

use crate::pose::crop::CropBox;

/// Heatmap decoding as `pose.decode` names it; the blur kernel of DARK follows from the model's
/// input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeatmapDecoding {
    /// Argmax and a quarter-pixel shift (MMPose's default).
    Msra,
    /// DARK's sub-pixel refinement.
    Dark,
}

impl HeatmapDecoding {
    /// The decoding for a model whose input is `input_height` pixels high: MMPose's DARK
    /// kernel follows the heatmap sigma of each input size (2 at 256x192, 3 at 384x288).
    pub fn for_input_height(self, input_height: usize) -> Decoding {
        match self {
            HeatmapDecoding::Msra => Decoding::Msra,
            HeatmapDecoding::Dark if input_height >= 384 => Decoding::Dark { blur_kernel: 17 },
            HeatmapDecoding::Dark => Decoding::Dark { blur_kernel: 11 },
        }
    }
}

/// How keypoint locations are refined from the heatmap maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    /// Quarter-pixel shift toward the higher neighbour (MMPose 1.x `refine_keypoints`); what
    /// the PoseTrack18 configs use.
    #[default]
    Msra,
    /// DARK (Zhang et al. 2019, <https://arxiv.org/abs/1910.06278>): Gaussian-blur the heatmap
    /// and take a Newton step on its log. `blur_kernel` is 11 for sigma 2, 17 for sigma 3.
    Dark {
        /// Side of the Gaussian blur kernel, heatmap pixels (odd).
        blur_kernel: usize,
    },
}

/// A keypoint in heatmap coordinates with its score (the heatmap maximum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatmapPeak {
    /// Column, heatmap pixels, refined to sub-pixel; -1 when the maximum is not above 0.
    pub x: f32,
    /// Row, heatmap pixels, refined to sub-pixel; -1 when the maximum is not above 0.
    pub y: f32,
    /// The heatmap's maximum value (MMPose's keypoint score, not clipped to [0, 1]).
    pub score: f32,
}

/// Flip-test merge: `flipped` came from the mirrored crop. Mirror it back, swap left/right
/// channels, shift one pixel right (column 0 keeps its value), and average with `plain`.
pub fn merge_flipped(
    plain: &[f32],
    flipped: &[f32],
    k: usize,
    h: usize,
    w: usize,
    flip_indices: &[usize],
) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; k * plane];
    for (c, &src_c) in flip_indices.iter().enumerate().take(k) {
        for y in 0..h {
            let row = &flipped[src_c * plane + y * w..][..w];
            for x in 0..w {
                // shifted: output column x reads unshifted column x-1 (x = 0 reads itself);
                // unshifted column u of the mirrored map is flipped column w-1-u.
                let u = x.saturating_sub(1);
                let f = row[w - 1 - u];
                let i = c * plane + y * w + x;
                out[i] = (plain[i] + f) * 0.5;
            }
        }
    }
    out
}

/// Argmax per channel (first maximum); a maximum ≤ 0 gives location (-1, -1), as MMPose.
fn maxima(hm: &[f32], k: usize, h: usize, w: usize) -> Vec<(i64, i64, f32)> {
    (0..k)
        .map(|c| {
            let ch = &hm[c * h * w..][..h * w];
            let mut best = 0usize;
            for (i, &v) in ch.iter().enumerate() {
                // NaN never wins; strict `>` keeps the first maximum
                if v > ch[best] {
                    best = i;
                }
            }
            let v = ch.get(best).copied().unwrap_or(f32::NAN);
            if v > 0.0 {
                ((best % w) as i64, (best / w) as i64, v)
            } else {
                (-1, -1, v)
            }
        })
        .collect()
}

/// Decode one instance's heatmaps to heatmap-space peaks.
pub fn decode(hm: &[f32], k: usize, h: usize, w: usize, how: Decoding) -> Vec<HeatmapPeak> {
    let peaks = maxima(hm, k, h, w);
    match how {
        Decoding::Msra => peaks
            .iter()
            .enumerate()
            .map(|(c, &(x, y, score))| {
                let at = |xx: i64, yy: i64| hm[c * h * w + yy as usize * w + xx as usize];
                let (wi, hi) = (w as i64, h as i64);
                // MMPose 1.x bounds: note the lower bound 1 (not 0) on the refined axis
                let mut px = x as f32;
                let mut py = y as f32;
                if 1 < x && x < wi - 1 && 0 < y && y < hi {
                    px += 0.25 * sign(at(x + 1, y) - at(x - 1, y));
                }
                if 1 < y && y < hi - 1 && 0 < x && x < wi {
                    py += 0.25 * sign(at(x, y + 1) - at(x, y - 1));
                }
                HeatmapPeak {
                    x: px,
                    y: py,
                    score,
                }
            })
            .collect(),
        Decoding::Dark { blur_kernel } => {
            let logs = dark_modulate(hm, k, h, w, blur_kernel);
            peaks
                .iter()
                .enumerate()
                .map(|(c, &(x, y, score))| {
                    let (dx, dy) = dark_offset(&logs[c * h * w..][..h * w], h, w, x, y);
                    HeatmapPeak {
                        x: (x as f64 + dx) as f32,
                        y: (y as f64 + dy) as f32,
                        score,
                    }
                })
                .collect()
        }
    }
}

/// numpy's sign: -1, 0 or 1.
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Heatmap-space peak → image pixels: scale by input/heatmap size, then undo the crop.
pub fn to_image(
    p: &HeatmapPeak,
    input: (u32, u32),
    heatmap: (usize, usize),
    crop: &CropBox,
) -> (f32, f32) {
    let (iw, ih) = (input.0 as f64, input.1 as f64);
    // the codec's scale factor is stored in f32
    let fx = (iw / heatmap.0 as f64) as f32;
    let fy = (ih / heatmap.1 as f64) as f32;
    let (xi, yi) = ((p.x * fx) as f64, (p.y * fy) as f64);
    let (sx, sy) = (crop.scale[0] as f64, crop.scale[1] as f64);
    let x = xi / iw * sx + crop.center[0] as f64 - 0.5 * sx;
    let y = yi / ih * sy + crop.center[1] as f64 - 0.5 * sy;
    (x as f32, y as f32)
}

/// Normalised 1-D Gaussian of odd size `k` with OpenCV's default sigma for that size, computed
/// in f64 and stored in f32 like `cv2.getGaussianKernel` for float images.
fn gaussian_kernel(k: usize) -> Vec<f32> {
    let sigma = 0.3 * ((k as f64 - 1.0) * 0.5 - 1.0) + 0.8;
    let r = (k / 2) as f64;
    let v: Vec<f64> = (0..k)
        .map(|i| (-0.5 / (sigma * sigma) * (i as f64 - r).powi(2)).exp())
        .collect();
    let s: f64 = v.iter().sum();
    v.into_iter().map(|x| (x / s) as f32).collect()
}

/// DARK's heatmap modulation: zero-padded Gaussian blur, rescaled to the original maximum,
/// clamped at 1e-10, log. In f32 like MMPose: the Newton step below differences these logs,
/// so working at another precision moves keypoints by ~0.01 px.
fn dark_modulate(hm: &[f32], k: usize, h: usize, w: usize, ksize: usize) -> Vec<f32> {
    let ksize = ksize.max(1) | 1;
    let g = gaussian_kernel(ksize);
    let mut out = vec![0f32; k * h * w];
    let mut tmp = vec![0f32; h * w];
    for c in 0..k {
        let src = &hm[c * h * w..][..h * w];
        let dst = &mut out[c * h * w..][..h * w];
        blur_pass(src, &mut tmp, h, w, &g, false);
        blur_pass(&tmp, dst, h, w, &g, true);
        let orig_max = src.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let new_max = dst.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let f = orig_max / new_max;
        for v in dst.iter_mut() {
            *v = (*v * f).max(1e-10).ln();
        }
    }
    out
}

/// One pass of a separable blur with kernel `g` over an `h`x`w` map, along columns
/// (`vertical`) or rows; zeros outside the map.
fn blur_pass(src: &[f32], dst: &mut [f32], h: usize, w: usize, g: &[f32], vertical: bool) {
    let r = (g.len() / 2) as i64;
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let mut acc = 0f32;
            for (t, gv) in g.iter().enumerate() {
                let o = t as i64 - r;
                let (yy, xx) = if vertical { (y + o, x) } else { (y, x + o) };
                if (0..h as i64).contains(&yy) && (0..w as i64).contains(&xx) {
                    acc += gv * src[(yy * w as i64 + xx) as usize];
                }
            }
            dst[(y * w as i64 + x) as usize] = acc;
        }
    }
}

/// Newton step −H⁻¹∇ on the log-heatmap at (x, y); zero near the border or when H is singular.
fn dark_offset(l: &[f32], h: usize, w: usize, x: i64, y: i64) -> (f64, f64) {
    let (wi, hi) = (w as i64, h as i64);
    if !(1 < x && x < wi - 2 && 1 < y && y < hi - 2) {
        return (0.0, 0.0);
    }
    let at = |dx: i64, dy: i64| l[((y + dy) * wi + x + dx) as usize];
    let dx = 0.5 * (at(1, 0) - at(-1, 0));
    let dy = 0.5 * (at(0, 1) - at(0, -1));
    let dxx = 0.25 * (at(2, 0) - 2.0 * at(0, 0) + at(-2, 0));
    let dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1));
    let dyy = 0.25 * (at(0, 2) - 2.0 * at(0, 0) + at(0, -2));
    let det = dxx * dyy - dxy * dxy;
    if det == 0.0 || !det.is_finite() {
        return (0.0, 0.0);
    }
    // inverse of [[dxx, dxy], [dxy, dyy]]
    let (i00, i01, i11) = (dyy / det, -dxy / det, dxx / det);
    (
        (-(i00 * dx + i01 * dy)) as f64,
        (-(i01 * dx + i11 * dy)) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msra_shifts_a_quarter_toward_the_higher_neighbour() {
        let (h, w) = (5, 6);
        let mut hm = vec![0f32; h * w];
        hm[2 * w + 3] = 1.0;
        hm[2 * w + 4] = 0.5;
        hm[3 * w + 3] = 0.2;
        let p = decode(&hm, 1, h, w, Decoding::Msra)[0];
        assert_eq!((p.x, p.y, p.score), (3.25, 2.25, 1.0));
        // non-positive maximum: (-1, -1)
        let p = decode(&vec![-1f32; h * w], 1, h, w, Decoding::Msra)[0];
        assert_eq!((p.x, p.y), (-1.0, -1.0));
    }

    #[test]
    fn dark_recovers_a_subpixel_gaussian_centre() {
        let (h, w) = (32, 24);
        let (cx, cy, s) = (10.3f64, 14.6f64, 2.0f64);
        let hm: Vec<f32> = (0..h * w)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * s * s)).exp() as f32
            })
            .collect();
        let p = decode(&hm, 1, h, w, Decoding::Dark { blur_kernel: 11 })[0];
        assert!(
            (p.x as f64 - cx).abs() < 0.05 && (p.y as f64 - cy).abs() < 0.05,
            "{p:?}"
        );
    }

    #[test]
    fn flip_merge_mirrors_swaps_and_shifts() {
        let (h, w) = (1, 4);
        let plain = vec![0f32; 2 * w];
        // output channel 0 reads flipped channel 1; its column 1 mirrors to column 2 and
        // shifts to column 3
        let mut flipped = vec![0f32; 2 * w];
        flipped[w + 1] = 2.0;
        let out = merge_flipped(&plain, &flipped, 2, h, w, &[1, 0]);
        assert_eq!(&out[..w], &[0.0, 0.0, 0.0, 1.0]);
    }
}
