//! MMDetection's Cascade R-CNN with an FPN (Cai & Vasconcelos, "Cascade R-CNN: Delving into
//! High Quality Object Detection", <https://arxiv.org/abs/1712.00726>), loading MMDetection
//! checkpoints as published (`backbone.`, `neck.`, `rpn_head.`, `roi_head.bbox_head.{0,1,2}.`).
//!
//! image → [`preprocess`](super::preprocess::preprocess) → [`ResNet`] C2..C5 → [`Fpn`] P2..P6 → [`RpnHead`] proposals →
//! [`CascadeRoiHead`] (three stages on P2..P5) → boxes in original image pixels.
//!
//! Input sizes: any image of at least 1x1 pixel is accepted and resized to fit 1333x800
//! (small images are enlarged). An image so elongated that one side would resize to 0
//! pixels, or one with more than [`MAX_PIXELS`], is rejected with an error.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::fpn::Fpn;
use super::preprocess::{preprocess_uploaded, rescaled_size, ImageMeta, PreprocessConfig};
use super::resnet::{ResNet, ResNetConfig};
use super::roi_head::{CascadeRoiHead, RoiHeadConfig, StageTrace};
use super::rpn::{Proposals, RpnConfig, RpnHead};
use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::nn::transfer::upload_frame;
use crate::nn::{Checkpoint, CheckpointError};
use crate::person::Person;

/// Frames larger than this (width·height) are rejected rather than resized: 64 Mpx.
pub const MAX_PIXELS: usize = 1 << 26;

/// COCO class index of "person" (MMDetection label 0).
pub const PERSON: usize = 0;

/// The architecture and test settings of one Cascade R-CNN checkpoint (MMDetection's config).
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeRcnnConfig {
    /// ResNet / ResNeXt depth, width and grouping.
    pub backbone: ResNetConfig,
    /// Channels of every FPN level (MMDetection's `neck.out_channels`, 256).
    pub fpn_channels: usize,
    /// Width of the RPN's 3x3 conv.
    pub rpn_channels: usize,
    /// Anchors, proposal counts and NMS of the RPN (`rpn_head`, `test_cfg.rpn`).
    pub rpn: RpnConfig,
    /// The three cascade stages (`roi_head`, `test_cfg.rcnn`).
    pub roi_head: RoiHeadConfig,
    /// Resize, normalisation and padding of the input frame.
    pub preprocess: PreprocessConfig,
}

impl CascadeRcnnConfig {
    /// `cascade_rcnn_r50_fpn_*_coco`.
    pub fn r50() -> Self {
        Self::with_backbone(ResNetConfig::resnet50())
    }

    /// `cascade_rcnn_x101_64x4d_fpn_20e_coco` (the detector MMPose's PoseTrack18 results use).
    pub fn x101() -> Self {
        Self::with_backbone(ResNetConfig::resnext101_64x4d())
    }

    fn with_backbone(backbone: ResNetConfig) -> Self {
        Self {
            backbone,
            fpn_channels: 256,
            rpn_channels: 256,
            rpn: RpnConfig::default(),
            roi_head: RoiHeadConfig::mmdet(256, 1024),
            preprocess: PreprocessConfig::default(),
        }
    }

    /// A narrow model with the same structure, for small test fixtures: `base_channels`
    /// stem/stage-1 planes, `groups` (1 = ResNet), FPN/RPN width `fpn`, FC width `fc`, and
    /// the test scale `(long, short)`.
    pub fn narrow(
        blocks: [usize; 4],
        base_channels: usize,
        groups: usize,
        base_width: usize,
        fpn: usize,
        fc: usize,
        scale: (usize, usize),
    ) -> Self {
        Self {
            backbone: ResNetConfig {
                blocks,
                base_channels,
                groups,
                base_width,
            },
            fpn_channels: fpn,
            rpn_channels: fpn,
            rpn: RpnConfig::default(),
            roi_head: RoiHeadConfig::mmdet(fpn, fc),
            preprocess: PreprocessConfig {
                scale,
                pad_divisor: 32,
            },
        }
    }
}

/// Why the detector could not be loaded, or could not run on a frame.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The checkpoint cannot be read, or holds tensors the model did not use.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Building the model from the checkpoint failed (a missing or misshapen tensor).
    #[error("{path}: cannot build Cascade R-CNN from this checkpoint: {source}")]
    Load {
        /// The checkpoint file.
        path: PathBuf,
        /// candle's error, wrapping the [`CheckpointError`] that names the tensor.
        source: candle_core::Error,
    },
    /// A frame with no pixels, or whose data is not `width * height * 3` bytes.
    #[error("image {width}x{height} has no pixels or its data ({len} bytes) does not match")]
    BadImage {
        /// Frame width, pixels.
        width: u32,
        /// Frame height, pixels.
        height: u32,
        /// Length of the RGB data, bytes.
        len: usize,
    },
    /// A frame of more than 64 Mpx (2^26 pixels): rejected rather than resized.
    #[error("image {width}x{height} is too large for the detector (at most {MAX_PIXELS} pixels)")]
    TooLarge {
        /// Frame width, pixels.
        width: u32,
        /// Frame height, pixels.
        height: u32,
    },
    /// A frame so elongated that resizing it to the test scale leaves a side of 0 pixels.
    #[error("image {width}x{height} is too elongated: it resizes to {new_w}x{new_h}")]
    Degenerate {
        /// Frame width, pixels.
        width: u32,
        /// Frame height, pixels.
        height: u32,
        /// Width after resizing, pixels.
        new_w: usize,
        /// Height after resizing, pixels.
        new_h: usize,
    },
    /// A tensor operation failed during the forward pass.
    #[error("detector forward pass failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One detection in original image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The box, x1/y1/x2/y2 in the original frame's pixels.
    pub bbox: BBox,
    /// Class probability in [0, 1]: softmax of the three stages' mean class logits.
    pub score: f32,
    /// COCO class index (0 = person).
    pub label: usize,
}

/// Everything the network computed for one image (parity checks, debugging).
#[derive(Debug, Clone)]
pub struct Trace {
    pub meta: ImageMeta,
    pub input: Tensor,
    /// P2..P6.
    pub fpn: Vec<Tensor>,
    pub proposals: Proposals,
    pub stages: Vec<StageTrace>,
    pub detections: Vec<Detection>,
}

/// The person detections scoring at least `score_threshold`, in order.
pub fn persons(detections: Vec<Detection>, score_threshold: f32) -> Vec<Person> {
    detections
        .into_iter()
        .filter(|d| d.label == PERSON && d.score >= score_threshold)
        .map(|d| Person::from_box(d.bbox, d.score))
        .collect()
}

/// A loaded Cascade R-CNN with an FPN: frames in, boxes in the frame's pixels out.
#[derive(Debug, Clone)]
pub struct CascadeRcnn {
    backbone: ResNet,
    neck: Fpn,
    rpn: RpnHead,
    roi_head: CascadeRoiHead,
    cfg: CascadeRcnnConfig,
    device: Device,
    /// Of the weights and activations; RoIAlign, the box head's inputs and everything after
    /// the networks are f32.
    dtype: DType,
}

impl CascadeRcnn {
    /// Builds the model from a checkpoint-rooted `VarBuilder` (keys `backbone.…` etc.).
    pub fn new(vb: VarBuilder, cfg: &CascadeRcnnConfig) -> candle_core::Result<Self> {
        let b = &cfg.backbone;
        let c_outs: Vec<usize> = (0..4).map(|i| b.out_channels(i)).collect();
        Ok(Self {
            backbone: ResNet::new(vb.pp("backbone"), b)?,
            neck: Fpn::new(vb.pp("neck"), &c_outs, cfg.fpn_channels)?,
            rpn: RpnHead::new(
                vb.pp("rpn_head"),
                cfg.fpn_channels,
                cfg.rpn_channels,
                cfg.rpn.clone(),
            )?,
            roi_head: CascadeRoiHead::new(vb.pp("roi_head"), cfg.roi_head.clone())?,
            cfg: cfg.clone(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Loads a `.pth` (zip or legacy) or safetensors checkpoint; every tensor in it must be
    /// used, so a checkpoint of another architecture fails naming the offending key.
    pub fn load(
        path: impl AsRef<Path>,
        cfg: &CascadeRcnnConfig,
        device: &Device,
    ) -> Result<Self, DetectError> {
        Self::load_as(path, cfg, device, DType::F32)
    }

    /// [`Self::load`] with the weights converted to `dtype` (f32, f16 or bf16).
    pub fn load_as(
        path: impl AsRef<Path>,
        cfg: &CascadeRcnnConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, DetectError> {
        let path = path.as_ref();
        let ckpt = Checkpoint::open(path)?;
        let vb = ckpt.var_builder(dtype, device);
        let model = Self::new(vb, cfg).map_err(|source| DetectError::Load {
            path: path.to_path_buf(),
            source,
        })?;
        ckpt.check_all_used()?;
        Ok(model)
    }

    /// The architecture and test settings the model was built with.
    pub fn config(&self) -> &CascadeRcnnConfig {
        &self.cfg
    }

    /// The region proposal network (for running it on given features).
    pub fn rpn(&self) -> &RpnHead {
        &self.rpn
    }

    /// The cascade box head (for running it on given features and proposals).
    pub fn roi_head(&self) -> &CascadeRoiHead {
        &self.roi_head
    }

    /// All detections (every class, score > 0.05, at most 100), best first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        self.detect_uploaded(img, None)
    }

    /// [`Self::detect`] reading the image from its [`Self::upload`] where there is one.
    pub fn detect_uploaded(
        &self,
        img: &RgbImage,
        uploaded: Option<&Tensor>,
    ) -> Result<Vec<Detection>, DetectError> {
        Ok(self.trace(img, uploaded)?.detections)
    }

    /// Persons scoring at least `score_threshold`, best first.
    pub fn detect_persons(
        &self,
        img: &RgbImage,
        score_threshold: f32,
    ) -> Result<Vec<Person>, DetectError> {
        Ok(persons(self.detect(img)?, score_threshold))
    }

    fn check(&self, img: &RgbImage) -> Result<(), DetectError> {
        let (w, h) = (img.width as usize, img.height as usize);
        if w == 0 || h == 0 || img.data.len() != w * h * 3 {
            return Err(DetectError::BadImage {
                width: img.width,
                height: img.height,
                len: img.data.len(),
            });
        }
        if w.saturating_mul(h) > MAX_PIXELS {
            return Err(DetectError::TooLarge {
                width: img.width,
                height: img.height,
            });
        }
        let (new_w, new_h) = rescaled_size(w, h, self.cfg.preprocess.scale);
        if new_w == 0 || new_h == 0 {
            return Err(DetectError::Degenerate {
                width: img.width,
                height: img.height,
                new_w,
                new_h,
            });
        }
        Ok(())
    }

    /// [`Self::detect`] keeping the intermediate results.
    pub fn detect_with_trace(&self, img: &RgbImage) -> Result<Trace, DetectError> {
        self.trace(img, None)
    }

    fn trace(&self, img: &RgbImage, uploaded: Option<&Tensor>) -> Result<Trace, DetectError> {
        self.check(img)?;
        let (input, meta) = preprocess_uploaded(img, uploaded, &self.cfg.preprocess, &self.device)?;
        let fpn = self.features(&input)?;
        self.heads(input, fpn, meta)
    }

    /// Detections for several images from one backbone pass. As MMDetection batches them, the
    /// images are padded (bottom/right, with zeros) to the largest of them, rounded up to a
    /// multiple of 32: an image batched with a larger one can get slightly different boxes
    /// than alone, frames of one video never do. An image failing the checks gets its own
    /// error; the others are still detected.
    pub fn detect_batch(&self, imgs: &[&RgbImage]) -> Vec<Result<Vec<Detection>, DetectError>> {
        self.detect_batch_uploaded(imgs, &[])
    }

    /// `img` on the detector's GPU (see [`Self::detect_batch_uploaded`]), for the stages after
    /// it to reuse; `None` on the CPU, where there is no transfer to save, and for an image the
    /// detector refuses or cannot place there (it is then uploaded, or refused, again later).
    pub fn upload(&self, img: &RgbImage) -> Option<Tensor> {
        if self.device.is_cpu() || self.check(img).is_err() {
            return None;
        }
        upload_frame(img, &self.device).ok()
    }

    /// [`Self::detect_batch`] reading each image from its [`Self::upload`] where there is one
    /// (`uploads[i]` for `imgs[i]`; missing entries are uploaded here), so that a frame crosses
    /// to the GPU once for the detector and the pose model.
    pub fn detect_batch_uploaded(
        &self,
        imgs: &[&RgbImage],
        uploads: &[Option<&Tensor>],
    ) -> Vec<Result<Vec<Detection>, DetectError>> {
        let mut results: Vec<Option<Result<Vec<Detection>, DetectError>>> =
            imgs.iter().map(|_| None).collect();
        let mut inputs = Vec::new();
        for (i, img) in imgs.iter().enumerate() {
            let uploaded = uploads.get(i).copied().flatten();
            match self.check(img).and_then(|()| {
                Ok(preprocess_uploaded(
                    img,
                    uploaded,
                    &self.cfg.preprocess,
                    &self.device,
                )?)
            }) {
                Ok((input, meta)) => inputs.push((i, input, meta)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        match self.detect_preprocessed(&inputs) {
            Ok(dets) => {
                for ((i, _, _), d) in inputs.iter().zip(dets) {
                    results[*i] = Some(Ok(d));
                }
            }
            Err(e) => {
                // candle errors cannot be cloned: each image gets the message
                for (i, _, _) in &inputs {
                    results[*i] = Some(Err(DetectError::Candle(candle_core::Error::Msg(
                        e.to_string(),
                    ))));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every image has a result"))
            .collect()
    }

    fn detect_preprocessed(
        &self,
        inputs: &[(usize, Tensor, ImageMeta)],
    ) -> Result<Vec<Vec<Detection>>, DetectError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (ph, pw) = inputs.iter().fold((0, 0), |(h, w), (_, _, m)| {
            (h.max(m.pad_shape.0), w.max(m.pad_shape.1))
        });
        let batch = inputs
            .iter()
            .map(|(_, t, m)| {
                t.pad_with_zeros(2, 0, ph - m.pad_shape.0)?
                    .pad_with_zeros(3, 0, pw - m.pad_shape.1)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let batch = Tensor::cat(&batch, 0)?;
        let fpn = self.features(&batch)?;
        inputs
            .iter()
            .enumerate()
            .map(|(k, (_, input, meta))| {
                let levels = fpn
                    .iter()
                    .map(|t| t.narrow(0, k, 1))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let meta = ImageMeta {
                    pad_shape: (ph, pw),
                    ..*meta
                };
                Ok(self.heads(input.clone(), levels, meta)?.detections)
            })
            .collect()
    }

    /// Backbone and FPN: P2..P6 for a batch of preprocessed images.
    fn features(&self, input: &Tensor) -> Result<Vec<Tensor>, DetectError> {
        let feats = self.backbone.forward(&input.to_dtype(self.dtype)?)?;
        Ok(self.neck.forward(&feats)?)
    }

    /// RPN and cascade head on one image's pyramid; boxes back in original pixels.
    fn heads(
        &self,
        input: Tensor,
        fpn: Vec<Tensor>,
        meta: ImageMeta,
    ) -> Result<Trace, DetectError> {
        let proposals = self.rpn.forward(&fpn, meta.img_shape)?;
        if proposals.boxes.is_empty() {
            return Ok(Trace {
                meta,
                input,
                fpn,
                proposals,
                stages: Vec::new(),
                detections: Vec::new(),
            });
        }
        let n_roi_levels = self.cfg.roi_head.strides.len();
        // RoIAlign reads f32 maps, whatever the networks' dtype (a no-op for f32)
        let roi_levels = fpn[..n_roi_levels]
            .iter()
            .map(|t| t.to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let out = self
            .roi_head
            .forward(&roi_levels, &proposals.boxes, meta.img_shape)?;
        // back to original pixels: multiply by the reciprocal scale, as the reference does
        let (sx, sy) = (
            (1.0 / meta.scale_factor.0) as f32,
            (1.0 / meta.scale_factor.1) as f32,
        );
        let detections = out
            .boxes
            .iter()
            .zip(&out.scores)
            .zip(&out.labels)
            .map(|((b, &score), &label)| Detection {
                bbox: BBox::new(b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy),
                score,
                label,
            })
            .collect();
        Ok(Trace {
            meta,
            input,
            fpn,
            proposals,
            stages: out.stages,
            detections,
        })
    }
}
