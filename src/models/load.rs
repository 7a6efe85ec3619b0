//! Loading the models a card names: the card fixes the architecture, the checkpoint is the one
//! given or the card's file in the models folder.

use std::path::Path;

use super::{builtin_cards, find, ModelError, ModelTask};
use crate::detect::CascadeRcnn;
use crate::nn::device::{DeviceSpec, Precision};
use crate::pose::codec::HeatmapDecoding;
use crate::pose::{PoseEstimator, PoseOptions};

/// Where a model's weights come from and where it runs.
#[derive(Debug, Clone, Copy)]
pub struct ModelSource<'a> {
    /// The model card's name.
    pub card: &'a str,
    /// The checkpoint; `None`: the card's file in `models_dir`.
    pub checkpoint: Option<&'a Path>,
    /// Where `vidpose models fetch` puts checkpoints.
    pub models_dir: &'a Path,
    /// The device the model runs on.
    pub device: DeviceSpec,
    /// The precision of its weights and activations.
    pub dtype: Precision,
}

/// How the pose model post-processes its heatmaps.
#[derive(Debug, Clone, Copy)]
pub struct PoseSettings {
    /// Average with the horizontally flipped crop (MMPose's flip test).
    pub flip_test: bool,
    /// Heatmap decoding.
    pub decode: HeatmapDecoding,
    /// Crops per forward pass.
    pub batch_size: usize,
}

/// The device, or why it cannot be used.
pub fn open_device(device: DeviceSpec) -> Result<candle_core::Device, ModelError> {
    device.open().map_err(|e| ModelError::Device {
        device: e.device,
        reason: e.reason,
    })
}

/// Loads the HRNet pose model of `source`.
pub fn pose_model(
    source: ModelSource<'_>,
    settings: PoseSettings,
) -> Result<PoseEstimator, ModelError> {
    let cards = builtin_cards();
    let card = find(&cards, source.card)?;
    let model_config = card.pose_config().ok_or_else(|| ModelError::WrongTask {
        name: card.name.clone(),
        expected: ModelTask::Pose.to_string(),
    })?;
    let checkpoint = card.checkpoint(source.checkpoint, source.models_dir, "pose")?;
    let options = PoseOptions {
        flip_test: settings.flip_test,
        decoding: settings
            .decode
            .for_input_height(model_config.input_size.1 as usize),
        batch_size: settings.batch_size,
        dtype: source.dtype.dtype(),
    };
    let device = open_device(source.device)?;
    PoseEstimator::load(&checkpoint, model_config, options, &device).map_err(|e| ModelError::Load {
        what: "pose model",
        name: card.name.clone(),
        reason: e.to_string(),
    })
}

/// Loads the Cascade R-CNN of `source`.
pub fn detector(source: ModelSource<'_>) -> Result<CascadeRcnn, ModelError> {
    let cards = builtin_cards();
    let card = find(&cards, source.card)?;
    let model_config = card
        .detector_config()
        .ok_or_else(|| ModelError::WrongTask {
            name: card.name.clone(),
            expected: "detector".into(),
        })?;
    let checkpoint = card.checkpoint(source.checkpoint, source.models_dir, "detector")?;
    let device = open_device(source.device)?;
    CascadeRcnn::load_as(&checkpoint, &model_config, &device, source.dtype.dtype()).map_err(|e| {
        ModelError::Load {
            what: "detector",
            name: card.name.clone(),
            reason: e.to_string(),
        }
    })
}
