//! The pose stage: person crops from several frames (and videos) batched into one forward
//! pass (see [`super::batching`]), and loading the pose model a configuration names.

use std::time::Duration;

use super::batching::{BatchStage, BatchWork};
use super::messages::{Frame, VideoFailure};
use crate::config::HeatmapDecoding;
use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::models::ModelError;
use crate::person::{Keypoint, NUM_KEYPOINTS};

/// A top-down pose model: keypoints for each (image, person box) pair, in order.
pub trait PoseModel: Send {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Person crops of frames batched into one pose model call.
pub struct PoseWork {
    model: Box<dyn PoseModel>,
}

/// The pose stage: up to `batch_size` crops per forward pass, waiting at most `timeout` for
/// more.
pub type PoseStage = BatchStage<PoseWork>;

impl PoseStage {
    pub fn with_model(model: Box<dyn PoseModel>, batch_size: usize, timeout: Duration) -> Self {
        BatchStage::new(PoseWork { model }, batch_size, timeout)
    }
}

impl BatchWork for PoseWork {
    type Output = [Keypoint; NUM_KEYPOINTS];

    fn stage_name(&self) -> &'static str {
        "pose"
    }

    fn items(&self, frame: &Frame) -> usize {
        frame.persons.len()
    }

    fn run(
        &mut self,
        items: &[(&Frame, usize)],
    ) -> Result<Vec<Result<Self::Output, VideoFailure>>, VideoFailure> {
        let crops: Vec<(&RgbImage, BBox)> = items
            .iter()
            .map(|&(f, person)| (&f.decoded.image, f.persons[person].bbox))
            .collect();
        let keypoints = self
            .model
            .estimate(&crops)
            .map_err(|e| VideoFailure::Pose(e.to_string()))?;
        Ok(keypoints.into_iter().map(Ok).collect())
    }

    fn store(&self, frame: &mut Frame, person: usize, keypoints: Self::Output) {
        frame.persons[person].keypoints = Some(keypoints);
    }
}

impl PoseModel for crate::pose::PoseEstimator {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::pose::PoseEstimator::estimate(self, items)?)
    }
}

/// The candle device named by `device` (`cpu`, `cuda:N`).
pub fn candle_device(spec: crate::config::DeviceSpec) -> Result<candle_core::Device, ModelError> {
    match spec {
        crate::config::DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
        crate::config::DeviceSpec::Cuda(n) => {
            candle_core::Device::new_cuda(n).map_err(|e| ModelError::Device {
                device: spec.to_string(),
                reason: e.to_string(),
            })
        }
    }
}

/// Loads the pose model the configuration names; `None` for `pose.model: none`.
pub fn load_pose_model(
    config: &crate::config::Config,
) -> Result<Option<crate::pose::PoseEstimator>, ModelError> {
    use crate::pose::{Decoding, PoseEstimator, PoseOptions};
    let pose = &config.pose;
    if pose.model == "none" {
        return Ok(None);
    }
    let cards = crate::models::builtin_cards();
    let card = crate::models::find(&cards, &pose.model)?;
    let model_config = card.pose_config().ok_or_else(|| ModelError::WrongTask {
        name: card.name.clone(),
        expected: "pose".into(),
    })?;
    let checkpoint = card.checkpoint(pose.checkpoint.as_deref(), &config.models_dir, "pose")?;
    let decoding = match pose.decode {
        // MMPose's kernel rule for the sigma of each input size (2 at 256x192, 3 at 384x288).
        HeatmapDecoding::Dark if model_config.input_size.1 >= 384 => {
            Decoding::Dark { blur_kernel: 17 }
        }
        HeatmapDecoding::Dark => Decoding::Dark { blur_kernel: 11 },
        HeatmapDecoding::Msra => Decoding::Msra,
    };
    let options = PoseOptions {
        flip_test: pose.flip_test,
        decoding,
        batch_size: pose.batch_size,
    };
    let device = candle_device(config.device)?;
    let estimator =
        PoseEstimator::load(&checkpoint, model_config, options, &device).map_err(|e| {
            ModelError::Load {
                what: "pose model",
                name: card.name.clone(),
                reason: e.to_string(),
            }
        })?;
    Ok(Some(estimator))
}
