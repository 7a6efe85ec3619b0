//! The three-stage Cascade R-CNN box head (Cai & Vasconcelos, <https://arxiv.org/abs/1712.00726>):
//! each stage pools 7x7 RoI features from the FPN level that fits the box, runs two shared
//! fully connected layers, and predicts class logits and one class-agnostic box refinement;
//! the refined boxes are the next stage's RoIs. The final score is the softmax of the three
//! stages' averaged logits; the final boxes are the last stage's refinement.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::box_coder::{decode, Deltas};
use super::ops::{batched_nms, roi_align, RoiAlign};
use crate::geometry::BBox;

/// Test-time settings of the box head (MMDetection's `test_cfg.rcnn` and head config).
#[derive(Debug, Clone, PartialEq)]
pub struct RoiHeadConfig {
    pub in_channels: usize,
    pub fc_channels: usize,
    /// Foreground classes; the logits have one more (background, last).
    pub num_classes: usize,
    /// Delta scales of each stage.
    pub stage_stds: Vec<Deltas>,
    /// Strides of the levels RoIs are pooled from (P2..P5).
    pub strides: Vec<usize>,
    /// Boxes of about this side (input pixels) come from the finest level.
    pub finest_scale: f32,
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_per_image: usize,
}

impl RoiHeadConfig {
    pub fn mmdet(in_channels: usize, fc_channels: usize) -> Self {
        Self {
            in_channels,
            fc_channels,
            num_classes: 80,
            stage_stds: vec![
                [0.1, 0.1, 0.2, 0.2],
                [0.05, 0.05, 0.1, 0.1],
                [0.033, 0.033, 0.067, 0.067],
            ],
            strides: vec![4, 8, 16, 32],
            finest_scale: 56.0,
            score_threshold: 0.05,
            iou_threshold: 0.5,
            max_per_image: 100,
        }
    }
}

/// `Shared2FCBBoxHead`: flatten → fc → ReLU → fc → ReLU → (class logits, box deltas).
#[derive(Debug, Clone)]
struct BoxHead {
    fc1: Linear,
    fc2: Linear,
    cls: Linear,
    reg: Linear,
}

impl BoxHead {
    fn new(vb: VarBuilder, cfg: &RoiHeadConfig) -> Result<Self> {
        let flat = cfg.in_channels * 7 * 7;
        let fcs = vb.pp("shared_fcs");
        Ok(Self {
            fc1: candle_nn::linear(flat, cfg.fc_channels, fcs.pp(0))?,
            fc2: candle_nn::linear(cfg.fc_channels, cfg.fc_channels, fcs.pp(1))?,
            cls: candle_nn::linear(cfg.fc_channels, cfg.num_classes + 1, vb.pp("fc_cls"))?,
            reg: candle_nn::linear(cfg.fc_channels, 4, vb.pp("fc_reg"))?,
        })
    }

    /// f32 RoI features in, f32 logits and deltas out; the layers run in their own dtype.
    fn forward(&self, roi_feats: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = roi_feats
            .flatten_from(1)?
            .to_dtype(self.fc1.weight().dtype())?;
        let x = self.fc1.forward(&x)?.relu()?;
        let x = self.fc2.forward(&x)?.relu()?;
        Ok((
            self.cls.forward(&x)?.to_dtype(DType::F32)?,
            self.reg.forward(&x)?.to_dtype(DType::F32)?,
        ))
    }
}

/// What each stage saw and produced, for parity checks.
#[derive(Debug, Clone, Default)]
pub struct StageTrace {
    pub rois: Vec<BBox>,
    pub cls_logits: Vec<Vec<f32>>,
    pub deltas: Vec<Deltas>,
}

/// Final detections in resized-image pixels, best first.
#[derive(Debug, Clone, Default)]
pub struct HeadOutput {
    pub boxes: Vec<BBox>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
    pub stages: Vec<StageTrace>,
}

#[derive(Debug, Clone)]
pub struct CascadeRoiHead {
    heads: Vec<BoxHead>,
    cfg: RoiHeadConfig,
}

impl CascadeRoiHead {
    /// `vb` points at `roi_head.`.
    pub fn new(vb: VarBuilder, cfg: RoiHeadConfig) -> Result<Self> {
        let vb = vb.pp("bbox_head");
        let heads = (0..cfg.stage_stds.len())
            .map(|i| BoxHead::new(vb.pp(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { heads, cfg })
    }

    /// FPN level of each RoI: `floor(log2(sqrt(area) / finest_scale))`, clamped.
    fn levels(&self, rois: &[BBox]) -> Vec<usize> {
        let top = self.cfg.strides.len() as f32 - 1.0;
        rois.iter()
            .map(|r| {
                let scale = (r.width() * r.height()).sqrt();
                (scale / self.cfg.finest_scale + 1e-6)
                    .log2()
                    .floor()
                    .clamp(0.0, top) as usize
            })
            .collect()
    }

    /// 7x7 features of every RoI, each from its level, in RoI order.
    fn pool(&self, feats: &[Tensor], rois: &[BBox], device: &Device) -> Result<Tensor> {
        let levels = self.levels(rois);
        let mut parts = Vec::new();
        let mut order = Vec::with_capacity(rois.len());
        for (lvl, &stride) in self.cfg.strides.iter().enumerate() {
            let idx: Vec<usize> = (0..rois.len()).filter(|&i| levels[i] == lvl).collect();
            if idx.is_empty() {
                continue;
            }
            // RoIAlign's input layout: one `(batch, x1, y1, x2, y2)` row per RoI
            let rows: Vec<f32> = idx
                .iter()
                .flat_map(|&i| [0.0, rois[i].x1, rois[i].y1, rois[i].x2, rois[i].y2])
                .collect();
            let t = Tensor::from_vec(rows, (idx.len(), 5), device)?;
            parts.push(roi_align(&feats[lvl], &t, RoiAlign::mmdet(stride))?);
            order.extend(idx);
        }
        let pooled = Tensor::cat(&parts, 0)?;
        // back to RoI order: position of RoI i in the concatenation
        let mut inverse = vec![0u32; rois.len()];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i] = pos as u32;
        }
        pooled.index_select(&Tensor::new(inverse, device)?, 0)
    }

    /// Runs the cascade on `proposals` (resized-image pixels, at least one) and applies the
    /// final per-class NMS. `img_shape` is the unpadded resized `(height, width)`.
    pub fn forward(
        &self,
        feats: &[Tensor],
        proposals: &[BBox],
        img_shape: (usize, usize),
    ) -> Result<HeadOutput> {
        let max_shape = (img_shape.0 as f32, img_shape.1 as f32);
        let device = feats[0].device();
        let mut rois = proposals.to_vec();
        let mut logit_sum: Option<Tensor> = None;
        let mut stages = Vec::new();
        let mut last_deltas = Vec::new();
        for (s, head) in self.heads.iter().enumerate() {
            let (cls, reg) = head.forward(&self.pool(feats, &rois, device)?)?;
            let deltas: Vec<Deltas> = reg
                .to_vec2::<f32>()?
                .into_iter()
                .map(|d| [d[0], d[1], d[2], d[3]])
                .collect();
            stages.push(StageTrace {
                rois: rois.clone(),
                cls_logits: cls.to_vec2()?,
                deltas: deltas.clone(),
            });
            logit_sum = Some(match logit_sum {
                None => cls,
                Some(acc) => (acc + cls)?,
            });
            if s + 1 < self.heads.len() {
                rois = decode(&rois, &deltas, self.cfg.stage_stds[s], max_shape);
            } else {
                last_deltas = deltas;
            }
        }
        let Some(sum) = logit_sum else {
            candle_core::bail!("cascade head has no stages");
        };
        // a true division (candle's `tensor / f64` multiplies by the reciprocal)
        let n_stages = Tensor::new(self.heads.len() as f32, device)?;
        let mean = sum.broadcast_div(&n_stages)?;
        let scores: Vec<Vec<f32>> = candle_nn::ops::softmax(&mean, D::Minus1)?.to_vec2()?;
        let stds = *self.cfg.stage_stds.last().unwrap_or(&[1.0; 4]);
        let boxes = decode(&rois, &last_deltas, stds, max_shape);
        let (b, s, l) = self.multiclass_nms(&boxes, &scores);
        Ok(HeadOutput {
            boxes: b,
            scores: s,
            labels: l,
            stages,
        })
    }

    /// Every (box, foreground class) pair scoring above the threshold, NMS within each
    /// class, the best `max_per_image` over all classes.
    #[allow(clippy::type_complexity)]
    fn multiclass_nms(
        &self,
        boxes: &[BBox],
        scores: &[Vec<f32>],
    ) -> (Vec<BBox>, Vec<f32>, Vec<usize>) {
        let (mut cb, mut cs, mut cl) = (Vec::new(), Vec::new(), Vec::new());
        for (b, row) in boxes.iter().zip(scores) {
            for (c, &p) in row.iter().take(self.cfg.num_classes).enumerate() {
                if p > self.cfg.score_threshold {
                    cb.push(*b);
                    cs.push(p);
                    cl.push(c);
                }
            }
        }
        let mut keep = batched_nms(&cb, &cs, &cl, self.cfg.iou_threshold);
        keep.truncate(self.cfg.max_per_image);
        (
            keep.iter().map(|&i| cb[i]).collect(),
            keep.iter().map(|&i| cs[i]).collect(),
            keep.iter().map(|&i| cl[i]).collect(),
        )
    }
}
