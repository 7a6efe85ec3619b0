//! The detect stage: frames batched into one Cascade R-CNN forward pass (see
//! [`super::batching`]), and loading the detector a configuration names.

use std::time::Duration;

use super::batching::{BatchStage, BatchWork};
use super::messages::{Frame, VideoFailure};
use crate::config::{Config, DetectorKind};
use crate::detect::{cascade, CascadeRcnn};
use crate::image::RgbImage;
use crate::models::ModelError;
use crate::person::Person;

/// Whole frames batched into one detector call; persons at or above `score_threshold` kept.
pub struct DetectWork {
    model: CascadeRcnn,
    score_threshold: f32,
}

/// The detect stage: up to `batch_size` frames per forward pass, waiting at most `timeout`
/// for more. A frame the detector fails on fails its video.
pub type DetectStage = BatchStage<DetectWork>;

impl DetectStage {
    pub fn with_detector(
        model: CascadeRcnn,
        score_threshold: f32,
        batch_size: usize,
        timeout: Duration,
    ) -> Self {
        BatchStage::new(
            DetectWork {
                model,
                score_threshold,
            },
            batch_size,
            timeout,
        )
    }
}

impl BatchWork for DetectWork {
    type Output = Vec<Person>;

    fn stage_name(&self) -> &'static str {
        "detect"
    }

    /// Frames of a video with given boxes (`detector.kind: auto`) are not detected.
    fn items(&self, frame: &Frame) -> usize {
        usize::from(frame.video.boxes.is_none())
    }

    fn run(
        &mut self,
        items: &[(&Frame, usize)],
    ) -> Result<Vec<Result<Self::Output, VideoFailure>>, VideoFailure> {
        let images: Vec<&RgbImage> = items.iter().map(|(f, _)| &f.decoded.image).collect();
        Ok(self
            .model
            .detect_batch(&images)
            .into_iter()
            .zip(items)
            .map(|(r, (f, _))| {
                r.map(|d| cascade::persons(d, self.score_threshold))
                    .map_err(|e| VideoFailure::Detect(format!("frame {}: {e}", f.decoded.number)))
            })
            .collect())
    }

    fn store(&self, frame: &mut Frame, _item: usize, persons: Self::Output) {
        frame.persons = persons;
    }
}

/// Loads the Cascade R-CNN when `detector.kind` asks for it: the model card's architecture,
/// the checkpoint given or the card's file in `models_dir`.
pub fn load_detector(config: &Config) -> Result<Option<CascadeRcnn>, ModelError> {
    let det = &config.detector;
    if det.kind == DetectorKind::Boxes {
        return Ok(None);
    }
    let cards = crate::models::builtin_cards();
    let card = crate::models::find(&cards, &det.model)?;
    let model_config = card
        .detector_config()
        .ok_or_else(|| ModelError::WrongTask {
            name: card.name.clone(),
            expected: "detector".into(),
        })?;
    let checkpoint = card.checkpoint(det.checkpoint.as_deref(), &config.models_dir, "detector")?;
    // RoIAlign, NMS and the grouped convolution have CPU kernels only: on a CUDA device the
    // pose model uses the GPU and the detector stays on the CPU
    if config.device != crate::config::DeviceSpec::Cpu {
        tracing::warn!(
            "the detector runs on the CPU (device {} is used by the pose model): its RoIAlign, NMS and grouped-convolution operators have no CUDA kernels yet",
            config.device
        );
    }
    CascadeRcnn::load(&checkpoint, &model_config, &candle_core::Device::Cpu)
        .map(Some)
        .map_err(|e| ModelError::Load {
            what: "detector",
            name: card.name.clone(),
            reason: e.to_string(),
        })
}
