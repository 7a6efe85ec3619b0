//! `PoseEstimator`: boxes on frames in, 17 PoseTrack keypoints per box out.
//!
//! Crops from any number of frames are stacked into batches of `PoseOptions::batch_size`
//! (the flip test doubles each batch: the mirrored crops ride along in the same forward pass).

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};
use rayon::prelude::*;

use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::keypoints::FLIP_INDICES;
use crate::nn::checkpoint::{Checkpoint, CheckpointError};
use crate::nn::transfer::frame_on_device;
use crate::person::{Keypoint, NUM_KEYPOINTS};
use crate::pose::codec::{self, Decoding};
use crate::pose::crop::{normalize_into, CropBox, TopdownAffine};
use crate::pose::head::HeatmapHead;
use crate::pose::hrnet::{HrNet, HrNetConfig};
use crate::pose::ops::{crop_params, CropOp, FlipMerge, MsraPeaks};

/// Why the pose model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    /// The checkpoint cannot be read, or holds tensors the model did not use.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Building HRNet or its head from the checkpoint failed (a missing or misshapen tensor).
    #[error("loading pose model from {path}: {source}")]
    Load {
        /// The checkpoint file, for display.
        path: String,
        /// candle's error, wrapping the [`CheckpointError`] that names the tensor.
        source: candle_core::Error,
    },
    /// A tensor operation failed while running a batch of crops.
    #[error("pose model forward pass: {0}")]
    Forward(#[from] candle_core::Error),
}

/// Architecture and input size of a top-down HRNet model.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseModelConfig {
    /// HRNet's width (32 or 48) and stage layout.
    pub backbone: HrNetConfig,
    /// Model input (width, height): (192, 256) or (288, 384) for the seed models.
    pub input_size: (u32, u32),
}

impl PoseModelConfig {
    /// Heatmap (width, height): a quarter of the input.
    pub fn heatmap_size(&self) -> (usize, usize) {
        (
            self.input_size.0 as usize / 4,
            self.input_size.1 as usize / 4,
        )
    }
}

/// Test-time options (the PoseTrack18 configs: flip test on, MSRA decoding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseOptions {
    /// Average the heatmaps with those of the mirrored crop (`pose.flip_test`).
    pub flip_test: bool,
    /// How keypoints are read off the heatmaps (`pose.decode`, blur kernel resolved).
    pub decoding: Decoding,
    /// Crops per forward pass (before flip doubling).
    pub batch_size: usize,
    /// Weights and activations of the network (`pose.dtype`); crops, heatmap merging and
    /// decoding stay in f32.
    pub dtype: DType,
}

impl Default for PoseOptions {
    fn default() -> Self {
        Self {
            flip_test: true,
            decoding: Decoding::Msra,
            batch_size: 8,
            dtype: DType::F32,
        }
    }
}

/// A loaded top-down HRNet with its heatmap head: person boxes on a frame in, 17 keypoints
/// per box out, in the frame's pixels.
pub struct PoseEstimator {
    backbone: HrNet,
    head: HeatmapHead,
    config: PoseModelConfig,
    crop: TopdownAffine,
    options: PoseOptions,
    device: Device,
}

/// One instance's decoded result plus its merged heatmaps (for parity checks).
#[derive(Debug, Clone)]
pub struct PoseOutput {
    pub keypoints: [Keypoint; NUM_KEYPOINTS],
    pub crop: Option<CropBox>,
    /// `K x H x W` heatmaps the decoder saw (flip-averaged when flip test is on); empty for a
    /// degenerate box.
    pub heatmaps: Vec<f32>,
}

/// The result for a box without a crop: every keypoint at the box centre, score 0.
fn unposed(b: &BBox) -> PoseOutput {
    let (cx, cy) = b.center();
    PoseOutput {
        keypoints: [Keypoint {
            x: cx,
            y: cy,
            score: 0.0,
        }; NUM_KEYPOINTS],
        crop: None,
        heatmaps: Vec::new(),
    }
}

impl PoseEstimator {
    /// Load an MMPose checkpoint (.pth zip or legacy, or .safetensors; 0.x or 1.x keys).
    pub fn load(
        checkpoint: impl AsRef<Path>,
        config: PoseModelConfig,
        options: PoseOptions,
        device: &Device,
    ) -> Result<Self, PoseError> {
        let ckpt = Checkpoint::open(checkpoint)?;
        Self::from_checkpoint(&ckpt, config, options, device)
    }

    /// Build from an opened checkpoint; every tensor in it must be used by the model.
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        config: PoseModelConfig,
        options: PoseOptions,
        device: &Device,
    ) -> Result<Self, PoseError> {
        let vb = ckpt.var_builder(options.dtype, device);
        let model =
            Self::from_var_builder(vb, config, options).map_err(|source| PoseError::Load {
                path: ckpt.path().display().to_string(),
                source,
            })?;
        ckpt.check_all_used()?;
        Ok(model)
    }

    /// Build from any `VarBuilder` rooted at the checkpoint's top (`backbone.`, `head.`): the
    /// weights' dtype and device are the builder's (random weights for benchmarks, say).
    pub fn from_var_builder(
        vb: candle_nn::VarBuilder,
        config: PoseModelConfig,
        options: PoseOptions,
    ) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let backbone = HrNet::new(vb.pp("backbone"), &config.backbone)?;
        let head = HeatmapHead::new(vb.pp("head"), config.backbone.out_channels(), NUM_KEYPOINTS)?;
        Ok(Self {
            backbone,
            head,
            crop: TopdownAffine::new(config.input_size.0, config.input_size.1),
            config,
            options: PoseOptions {
                batch_size: options.batch_size.max(1),
                dtype: vb.dtype(),
                ..options
            },
            device,
        })
    }

    /// The architecture and input size the model was built with.
    pub fn config(&self) -> &PoseModelConfig {
        &self.config
    }

    /// The test-time options in use (`batch_size` at least 1).
    pub fn options(&self) -> &PoseOptions {
        &self.options
    }

    /// Backbone + head on a normalised NCHW batch → (N, 17, H/4, W/4) heatmaps.
    pub fn forward(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(&self.backbone.forward(input)?)
    }

    /// Keypoints in image pixels for each `(frame, box)`, in input order.
    ///
    /// A degenerate box (zero area or non-finite coordinates) has no crop: its keypoints are
    /// all at the box centre with score 0. A box partly or wholly outside the frame is cropped
    /// with a black border, as MMPose does, and decoded normally.
    pub fn estimate(
        &self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, PoseError> {
        self.estimate_uploaded(items, &[])
    }

    /// [`estimate`](Self::estimate) with, per item, its frame's `[h, w, 3]` bytes already on
    /// the model's device where there is one (uploaded by the detector): on a GPU the crops
    /// are then cut from that copy instead of a new upload. Missing entries, copies on another
    /// device and the CPU path upload (or read) the image as usual.
    pub fn estimate_uploaded(
        &self,
        items: &[(&RgbImage, BBox)],
        uploads: &[Option<&Tensor>],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, PoseError> {
        Ok(self
            .run(items, uploads, false)?
            .into_iter()
            .map(|o| o.keypoints)
            .collect())
    }

    /// [`estimate`](Self::estimate) with crops and heatmaps.
    pub fn estimate_detailed(
        &self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<PoseOutput>, PoseError> {
        self.run(items, &[], true)
    }

    /// Keypoints, crops, and the merged heatmaps when `heatmaps` (on the CPU they are at hand
    /// and always kept).
    fn run(
        &self,
        items: &[(&RgbImage, BBox)],
        uploads: &[Option<&Tensor>],
        heatmaps: bool,
    ) -> Result<Vec<PoseOutput>, PoseError> {
        if !self.device.is_cpu() {
            return self.run_on_device(items, uploads, heatmaps);
        }
        let (iw, ih) = (
            self.config.input_size.0 as usize,
            self.config.input_size.1 as usize,
        );
        let (hw, hh) = self.config.heatmap_size();
        let k = NUM_KEYPOINTS;
        let mut outputs: Vec<PoseOutput> = items.iter().map(|(_, b)| unposed(b)).collect();
        // Crops for the boxes that have one, warped on the compute pool: done one by one on
        // the calling thread, they left the pool idle between forward passes.
        let warped: Vec<(usize, CropBox, Option<Vec<u8>>)> = items
            .par_iter()
            .enumerate()
            .map(|(i, (img, b))| {
                let cb = self.crop.crop_box(b);
                (i, cb, self.crop.warp(img, &cb))
            })
            .collect();
        let mut valid = Vec::new();
        for (i, cb, pixels) in warped {
            if let Some(pixels) = pixels {
                outputs[i].crop = Some(cb);
                valid.push((i, pixels));
            }
        }
        let plane = 3 * iw * ih;
        for chunk in valid.chunks(self.options.batch_size) {
            let n = chunk.len();
            let copies = if self.options.flip_test { 2 } else { 1 };
            let mut input = vec![0f32; copies * n * plane];
            // Plain crops first, then the flipped ones: the batch layout the flip merge expects.
            input
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(slot, dst)| {
                    let (pixels, flipped) = (&chunk[slot % n].1, slot >= n);
                    normalize_into(pixels, iw, ih, flipped, dst);
                });
            let x = Tensor::from_vec(input, (copies * n, 3, ih, iw), &self.device)?
                .to_dtype(self.options.dtype)?;
            let hm = self.forward(&x)?.to_dtype(DType::F32)?;
            let hm = hm.flatten_all()?.to_vec1::<f32>()?;
            let per = k * hh * hw;
            for (j, (i, _)) in chunk.iter().enumerate() {
                let plain = &hm[j * per..][..per];
                let merged = if self.options.flip_test {
                    codec::merge_flipped(
                        plain,
                        &hm[(n + j) * per..][..per],
                        k,
                        hh,
                        hw,
                        &FLIP_INDICES,
                    )
                } else {
                    plain.to_vec()
                };
                let peaks = codec::decode(&merged, k, hh, hw, self.options.decoding);
                self.place(&mut outputs[*i], &peaks);
                outputs[*i].heatmaps = merged;
            }
        }
        Ok(outputs)
    }

    /// [`Self::run`] on a GPU: each frame goes up once as bytes, the crops are warped there
    /// ([`CropOp`]), the heatmaps merged ([`FlipMerge`]) and decoded ([`MsraPeaks`]) there, and
    /// only `(x, y, score)` per keypoint comes back; the heatmaps too when asked for, or when
    /// DARK decoding (host code) needs them.
    fn run_on_device(
        &self,
        items: &[(&RgbImage, BBox)],
        uploads: &[Option<&Tensor>],
        heatmaps: bool,
    ) -> Result<Vec<PoseOutput>, PoseError> {
        let (iw, ih) = (
            self.config.input_size.0 as usize,
            self.config.input_size.1 as usize,
        );
        let (hw, hh) = self.config.heatmap_size();
        let k = NUM_KEYPOINTS;
        let mut outputs: Vec<PoseOutput> = items.iter().map(|(_, b)| unposed(b)).collect();
        // (item, frame slot, inverse map) for the boxes that have a crop
        // each distinct frame once, with the copy already on the device if an item brought one
        let mut frames: Vec<(&RgbImage, Option<&Tensor>)> = Vec::new();
        let mut valid = Vec::new();
        for (i, (img, b)) in items.iter().enumerate() {
            let cb = self.crop.crop_box(b);
            let Some(inv) = self.crop.inverse(&cb) else {
                continue;
            };
            outputs[i].crop = Some(cb);
            let slot = match frames.iter().position(|(f, _)| std::ptr::eq(*f, *img)) {
                Some(s) => s,
                None => {
                    frames.push((img, uploads.get(i).copied().flatten()));
                    frames.len() - 1
                }
            };
            valid.push((i, slot, inv));
        }
        let uploaded = frames
            .iter()
            .map(|(f, up)| frame_on_device(f, *up, &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let op = CropOp {
            out_w: iw,
            out_h: ih,
        };
        let copies = if self.options.flip_test { 2 } else { 1 };
        for chunk in valid.chunks(self.options.batch_size) {
            let n = chunk.len();
            // One crop launch per frame; `order` lists the batch slot of each crop produced,
            // plain crops in slots 0..n, their mirrored copies in n..2n.
            let (mut parts, mut order) = (Vec::new(), Vec::new());
            for (slot, frame) in uploaded.iter().enumerate() {
                let mut params = Vec::new();
                for copy in 0..copies {
                    for (j, (_, s, inv)) in chunk.iter().enumerate() {
                        if *s == slot {
                            params.extend(crop_params(inv, copy == 1));
                            order.push((copy * n + j) as u32);
                        }
                    }
                }
                if !params.is_empty() {
                    let rows = params.len() / 7;
                    let p = Tensor::from_vec(params, (rows, 7), &self.device)?;
                    parts.push(frame.apply_op2_no_bwd(&p, &op)?);
                }
            }
            let mut x = Tensor::cat(&parts, 0)?;
            if order.iter().enumerate().any(|(pos, &s)| pos as u32 != s) {
                let mut at = vec![0u32; order.len()];
                for (pos, &s) in order.iter().enumerate() {
                    at[s as usize] = pos as u32;
                }
                x = x.index_select(&Tensor::new(at, &self.device)?, 0)?;
            }
            let hm = self
                .forward(&x.to_dtype(self.options.dtype)?)?
                .to_dtype(DType::F32)?;
            let merged = if self.options.flip_test {
                hm.apply_op1_no_bwd(&FlipMerge {
                    flip_indices: FLIP_INDICES.to_vec(),
                })?
            } else {
                hm
            };
            let host_maps = if heatmaps || self.options.decoding != Decoding::Msra {
                Some(merged.flatten_all()?.to_vec1::<f32>()?)
            } else {
                None
            };
            let per = k * hh * hw;
            let peaks: Vec<Vec<codec::HeatmapPeak>> = match &host_maps {
                Some(maps) if self.options.decoding != Decoding::Msra => (0..n)
                    .map(|j| {
                        codec::decode(&maps[j * per..][..per], k, hh, hw, self.options.decoding)
                    })
                    .collect(),
                _ => merged
                    .apply_op1_no_bwd(&MsraPeaks)?
                    .to_vec3::<f32>()?
                    .into_iter()
                    .map(|inst| {
                        inst.into_iter()
                            .map(|r| codec::HeatmapPeak {
                                x: r[0],
                                y: r[1],
                                score: r[2],
                            })
                            .collect()
                    })
                    .collect(),
            };
            for (j, ((i, _, _), inst)) in chunk.iter().zip(&peaks).enumerate() {
                self.place(&mut outputs[*i], inst);
                if heatmaps {
                    if let Some(maps) = &host_maps {
                        outputs[*i].heatmaps = maps[j * per..][..per].to_vec();
                    }
                }
            }
        }
        Ok(outputs)
    }

    /// Heatmap peaks of one instance to keypoints in image pixels through its crop.
    fn place(&self, out: &mut PoseOutput, peaks: &[codec::HeatmapPeak]) {
        let cb = out.crop.expect("valid crops have a box");
        let (hw, hh) = self.config.heatmap_size();
        for (kp, p) in out.keypoints.iter_mut().zip(peaks) {
            let (x, y) = codec::to_image(p, self.config.input_size, (hw, hh), &cb);
            *kp = Keypoint {
                x,
                y,
                score: p.score,
            };
        }
    }

    /// Time `runs` forward passes (backbone + head, no pre/post-processing) on a random batch
    /// of `batch` inputs after `warmup` untimed ones. For benchmarks.
    pub fn time_forward(
        &self,
        batch: usize,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<Duration>, PoseError> {
        let (iw, ih) = (
            self.config.input_size.0 as usize,
            self.config.input_size.1 as usize,
        );
        let x = Tensor::randn(0f32, 1.0, (batch, 3, ih, iw), &self.device)?
            .to_dtype(self.options.dtype)?;
        let mut times = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let t0 = Instant::now();
            let y = self.forward(&x)?;
            // make sure asynchronous devices have finished
            y.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if i >= warmup {
                times.push(t0.elapsed());
            }
        }
        Ok(times)
    }
}
