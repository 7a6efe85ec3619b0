//! The same weights run twice, a reference (the CPU in f32) against a candidate (another
//! device, another dtype), and how far apart the results are: for `examples/device_check` on a
//! GPU machine and for the half-precision accuracy test. Also random full-size weights, so the
//! comparison needs no downloaded checkpoint.

use std::hash::{Hash, Hasher};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::detect::{CascadeRcnn, DetectError};
use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::pose::{PoseError, PoseEstimator};

/// Pose results of a candidate against the reference's.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PoseDiff {
    /// Instances compared.
    pub instances: usize,
    /// Largest heatmap difference, relative to the reference's largest |value|.
    pub heatmap_rel: f32,
    /// Largest keypoint coordinate difference, image pixels.
    pub keypoint_px: f32,
    /// Largest keypoint score difference, relative to max(1, |reference score|).
    pub score: f32,
}

/// Runs both estimators on `items` (flip test and decoding as each is configured).
pub fn compare_pose(
    reference: &PoseEstimator,
    candidate: &PoseEstimator,
    items: &[(&RgbImage, BBox)],
) -> Result<PoseDiff, PoseError> {
    let a = reference.estimate_detailed(items)?;
    let b = candidate.estimate_detailed(items)?;
    let mut d = PoseDiff {
        instances: a.len(),
        ..PoseDiff::default()
    };
    let scale = a
        .iter()
        .flat_map(|o| o.heatmaps.iter())
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.heatmaps.iter().zip(&y.heatmaps) {
            d.heatmap_rel = d.heatmap_rel.max((p - q).abs() / scale);
        }
        for (p, q) in x.keypoints.iter().zip(&y.keypoints) {
            d.keypoint_px = d.keypoint_px.max((p.x - q.x).abs()).max((p.y - q.y).abs());
            d.score = d
                .score
                .max((p.score - q.score).abs() / p.score.abs().max(1.0));
        }
    }
    Ok(d)
}

/// Detector results of a candidate against the reference's on one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct DetectDiff {
    /// Largest FPN difference over P2..P6, each level relative to its largest |value|.
    pub fpn_rel: f32,
    /// Detections of the reference.
    pub reference: usize,
    /// Detections of the candidate.
    pub candidate: usize,
    /// Reference detections with a candidate of the same class at IoU > 0.99.
    pub matched: usize,
    /// Largest box coordinate difference of matched pairs, relative to the larger box side.
    pub box_rel: f32,
    /// Largest score difference of matched pairs.
    pub score: f32,
}

/// Runs both detectors on `img`.
pub fn compare_detector(
    reference: &CascadeRcnn,
    candidate: &CascadeRcnn,
    img: &RgbImage,
) -> Result<DetectDiff, DetectError> {
    let a = reference.detect_with_trace(img)?;
    let b = candidate.detect_with_trace(img)?;
    let mut d = DetectDiff {
        reference: a.detections.len(),
        candidate: b.detections.len(),
        ..DetectDiff::default()
    };
    for (x, y) in a.fpn.iter().zip(&b.fpn) {
        let x: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let y: Vec<f32> = y.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let scale = x
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        for (p, q) in x.iter().zip(&y) {
            d.fpn_rel = d.fpn_rel.max((p - q).abs() / scale);
        }
    }
    for r in &a.detections {
        let best = b
            .detections
            .iter()
            .filter(|c| c.label == r.label)
            .max_by(|p, q| iou(&r.bbox, &p.bbox).total_cmp(&iou(&r.bbox, &q.bbox)));
        let Some(c) = best.filter(|c| iou(&r.bbox, &c.bbox) > 0.99) else {
            continue;
        };
        d.matched += 1;
        let side = r.bbox.width().max(r.bbox.height()).max(1.0);
        let (p, q) = (r.bbox, c.bbox);
        for (u, v) in [(p.x1, q.x1), (p.y1, q.y1), (p.x2, q.x2), (p.y2, q.y2)] {
            d.box_rel = d.box_rel.max((u - v).abs() / side);
        }
        d.score = d.score.max((r.score - c.score).abs());
    }
    Ok(d)
}

fn iou(a: &BBox, b: &BBox) -> f32 {
    let inter = a.intersection(b);
    inter / (a.width() * a.height() + b.width() * b.height() - inter)
}

/// Random weights for any model, the same for every device and dtype: each tensor is drawn
/// from a generator seeded by its name. Scales keep a random 100-layer network tame: He
/// initialisation for convolutions, 1/√fan-in for linear layers, batch-norm scales of 0.2-0.5
/// (which damp every residual branch), variances of 0.5-1.5, small biases and means; the
/// detector's person logit gets a bias of 3 so that there are detections to compare.
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    /// Mixed into every tensor's seed.
    pub seed: u64,
}

impl RandomWeights {
    /// A `VarBuilder` that hands out these weights in `dtype` on `device`.
    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn tensor(&self, shape: &Shape, name: &str) -> candle_core::Result<Tensor> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, name).hash(&mut h);
        let mut rng = SplitMix(h.finish());
        let dims = shape.dims();
        let n = shape.elem_count();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let values: Vec<f32> = match (leaf, dims.len()) {
            ("running_var", _) => (0..n).map(|_| 0.5 + rng.uniform()).collect(),
            ("running_mean", _) => (0..n).map(|_| 0.1 * rng.normal()).collect(),
            ("weight", 1) => (0..n).map(|_| 0.2 + 0.3 * rng.uniform()).collect(),
            // the box head's person logit raised, so that random weights still give person
            // detections (scores about 0.2) to compare
            ("bias", _) if name.contains("fc_cls") => (0..n)
                .map(|i| 0.01 * rng.normal() + if i == 0 { 3.0 } else { 0.0 })
                .collect(),
            ("bias", _) => (0..n).map(|_| 0.01 * rng.normal()).collect(),
            ("weight", 4) => {
                let std = (2.0 / fan_in as f32).sqrt();
                (0..n).map(|_| std * rng.normal()).collect()
            }
            ("weight", 2) => {
                let std = (1.0 / fan_in as f32).sqrt();
                (0..n).map(|_| std * rng.normal()).collect()
            }
            _ => (0..n).map(|_| 0.1 * rng.normal()).collect(),
        };
        Tensor::from_vec(values, shape.clone(), &Device::Cpu)
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.tensor(&s, name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape: {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// SplitMix64: small, fast, and good enough for test weights.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = self.uniform().max(1e-7);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// A deterministic test frame: smooth gradients with texture, so crops and feature maps are
/// not flat.
pub fn synthetic_frame(width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    let (w, h) = (width as usize, height as usize);
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 3;
            let t = ((x * 7 + y * 13) % 64) as f32;
            img.data[i] = ((x * 255 / w.max(1)) as f32 * 0.8 + t) as u8;
            img.data[i + 1] = ((y * 255 / h.max(1)) as f32 * 0.8 + t) as u8;
            img.data[i + 2] = (((x + y) % 256) as f32 * 0.5 + 2.0 * t) as u8;
        }
    }
    img
}

/// `n` person-shaped boxes spread over a `width` x `height` frame.
pub fn spread_boxes(width: u32, height: u32, n: usize) -> Vec<BBox> {
    let (w, h) = (width as f32, height as f32);
    (0..n)
        .map(|i| {
            let f = i as f32 / n.max(1) as f32;
            let bw = w * (0.08 + 0.1 * ((i * 7) % 5) as f32 / 5.0);
            let bh = (bw * 2.2).min(h * 0.9);
            let x1 = f * (w - bw);
            let y1 = ((i * 37) % 11) as f32 / 11.0 * (h - bh);
            BBox::new(x1, y1, x1 + bw, y1 + bh)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::CascadeRcnnConfig;

    #[test]
    fn random_weights_are_the_same_every_time_and_give_detections() -> candle_core::Result<()> {
        let w = RandomWeights { seed: 3 };
        let a = w.var_builder(DType::F32, &Device::Cpu);
        let b = w.var_builder(DType::F32, &Device::Cpu);
        let shape = (8, 4, 3, 3);
        let (x, y) = (a.get(shape, "conv.weight")?, b.get(shape, "conv.weight")?);
        assert_eq!(
            x.flatten_all()?.to_vec1::<f32>()?,
            y.flatten_all()?.to_vec1::<f32>()?
        );
        let cfg = CascadeRcnnConfig::narrow([1, 1, 1, 1], 4, 2, 2, 8, 16, (160, 96));
        let reference = CascadeRcnn::new(w.var_builder(DType::F32, &Device::Cpu), &cfg)?;
        let same = CascadeRcnn::new(w.var_builder(DType::F32, &Device::Cpu), &cfg)?;
        let d = compare_detector(&reference, &same, &synthetic_frame(160, 96))
            .map_err(candle_core::Error::wrap)?;
        assert!(d.reference > 0, "{d:?}");
        assert_eq!((d.matched, d.fpn_rel, d.box_rel), (d.reference, 0.0, 0.0));
        Ok(())
    }
}
