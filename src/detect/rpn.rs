//! Region Proposal Network (Ren et al., "Faster R-CNN", <https://arxiv.org/abs/1506.01497>):
//! a shared 3x3 conv over every FPN level, objectness (sigmoid) and box deltas for three
//! anchors per position, then per level the top-scoring anchors, decoding, and NMS across
//! levels with the level as the class.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::box_coder::{decode, level_anchors, Deltas};
use super::ops::{batched_nms, nms::argsort_desc};
use crate::geometry::BBox;
use crate::nn::conv::{Conv, ConvSpec};

/// Test-time settings (MMDetection's `test_cfg.rpn`).
#[derive(Debug, Clone, PartialEq)]
pub struct RpnConfig {
    pub strides: Vec<usize>,
    pub anchor_scale: f32,
    pub anchor_ratios: Vec<f32>,
    pub nms_pre: usize,
    pub iou_threshold: f32,
    pub max_proposals: usize,
    /// Boxes must be strictly wider and taller than this.
    pub min_box_size: f32,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            strides: vec![4, 8, 16, 32, 64],
            anchor_scale: 8.0,
            anchor_ratios: vec![0.5, 1.0, 2.0],
            nms_pre: 1000,
            iou_threshold: 0.7,
            max_proposals: 1000,
            min_box_size: 0.0,
        }
    }
}

/// Proposals in resized-image pixels, best first.
#[derive(Debug, Clone, Default)]
pub struct Proposals {
    pub boxes: Vec<BBox>,
    pub scores: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct RpnHead {
    conv: Conv,
    cls: Conv,
    reg: Conv,
    num_anchors: usize,
    cfg: RpnConfig,
}

impl RpnHead {
    /// `vb` points at `rpn_head.`.
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        feat_channels: usize,
        cfg: RpnConfig,
    ) -> Result<Self> {
        let a = cfg.anchor_ratios.len();
        Ok(Self {
            conv: Conv::with_bias(
                vb.pp("rpn_conv"),
                ConvSpec::k3(channels, feat_channels, 1, true),
            )?,
            cls: Conv::with_bias(vb.pp("rpn_cls"), ConvSpec::k1(feat_channels, a, false))?,
            reg: Conv::with_bias(vb.pp("rpn_reg"), ConvSpec::k1(feat_channels, a * 4, false))?,
            num_anchors: a,
            cfg,
        })
    }

    /// Proposals for one image from its pyramid `feats` (batch 1); `img_shape` is the
    /// resized image's `(height, width)` before padding.
    pub fn forward(&self, feats: &[Tensor], img_shape: (usize, usize)) -> Result<Proposals> {
        let a = self.num_anchors;
        let max_shape = (img_shape.0 as f32, img_shape.1 as f32);
        let (mut boxes, mut scores, mut levels) = (Vec::new(), Vec::new(), Vec::new());
        for (lvl, (f, &stride)) in feats.iter().zip(&self.cfg.strides).enumerate() {
            let (_, _, h, w) = f.dims4()?;
            let t = self.conv.forward(f)?;
            // (a, h, w) -> (h, w, a): the anchors' order
            let anchor_order = |out: Tensor| -> Result<Tensor> {
                out.squeeze(0)?
                    .permute((1, 2, 0))?
                    .to_dtype(DType::F32)?
                    .contiguous()
            };
            let logits: Vec<f32> = anchor_order(self.cls.forward(&t)?)?
                .flatten_all()?
                .to_vec1()?;
            let s: Vec<f32> = logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect();
            let anchors =
                level_anchors(stride, self.cfg.anchor_scale, &self.cfg.anchor_ratios, h, w);
            debug_assert_eq!(anchors.len(), h * w * a);
            let mut order = argsort_desc(&s);
            order.truncate(self.cfg.nms_pre);
            let sel_anchors: Vec<BBox> = order.iter().map(|&i| anchors[i]).collect();
            // Only the selected anchors' deltas leave the device: on a GPU that is 16 KB per
            // level instead of 16 bytes for every anchor (3 MB on P2 at 1333x800).
            let idx = Tensor::new(
                order.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                f.device(),
            )?;
            let sel_deltas: Vec<Deltas> = anchor_order(self.reg.forward(&t)?)?
                .reshape((h * w * a, 4))?
                .index_select(&idx, 0)?
                .to_vec2::<f32>()?
                .into_iter()
                .map(|d| [d[0], d[1], d[2], d[3]])
                .collect();
            boxes.extend(decode(&sel_anchors, &sel_deltas, [1.0; 4], max_shape));
            scores.extend(order.iter().map(|&i| s[i]));
            levels.extend(std::iter::repeat_n(lvl, order.len()));
        }
        let min = self.cfg.min_box_size;
        let valid: Vec<usize> = (0..boxes.len())
            .filter(|&i| boxes[i].width() > min && boxes[i].height() > min)
            .collect();
        let boxes: Vec<BBox> = valid.iter().map(|&i| boxes[i]).collect();
        let scores: Vec<f32> = valid.iter().map(|&i| scores[i]).collect();
        let levels: Vec<usize> = valid.iter().map(|&i| levels[i]).collect();
        let mut keep = batched_nms(&boxes, &scores, &levels, self.cfg.iou_threshold);
        keep.truncate(self.cfg.max_proposals);
        Ok(Proposals {
            boxes: keep.iter().map(|&i| boxes[i]).collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
        })
    }
}
