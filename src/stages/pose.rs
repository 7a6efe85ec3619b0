//! The pose stage: person crops from several frames (and videos) batched into one forward
//! pass (see `crate::pipeline::batching`).

use std::time::Duration;

use std::sync::Arc;

use candle_core::Tensor;

use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::person::{Keypoint, NUM_KEYPOINTS};
use crate::pipeline::batching::{BatchStage, BatchWork};
use crate::pipeline::messages::{Frame, VideoFailure};

/// A top-down pose model: keypoints for each (image, person box) pair, in order.
pub trait PoseModel: Send {
    /// One keypoint set per item, in the items' order.
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>>;

    /// [`Self::estimate`] with each item's frame as the detector put it on the GPU, where it
    /// did (`Frame::on_device`); a model that cannot use it ignores it.
    fn estimate_uploaded(
        &mut self,
        items: &[(&RgbImage, BBox)],
        _uploads: &[Option<&Tensor>],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>> {
        self.estimate(items)
    }
}

/// Person crops of frames batched into one pose model call.
pub struct PoseWork {
    model: Box<dyn PoseModel>,
}

/// The pose stage: up to `batch_size` crops per forward pass, waiting at most `timeout` for
/// more.
pub type PoseStage = BatchStage<PoseWork>;

impl PoseStage {
    /// A stage running `model` on up to `batch_size` crops at once.
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
        let uploads: Vec<Option<&Tensor>> =
            items.iter().map(|(f, _)| f.on_device.as_ref()).collect();
        let keypoints = self
            .model
            .estimate_uploaded(&crops, &uploads)
            .map_err(|e| VideoFailure::Pose(Arc::from(e)))?;
        Ok(keypoints.into_iter().map(Ok).collect())
    }

    fn store(&self, frame: &mut Frame, person: usize, keypoints: Self::Output) {
        frame.persons[person].keypoints = Some(keypoints);
    }

    /// The frame's GPU copy is not needed after the pose model: its memory goes back now,
    /// not when the frame leaves the pipeline.
    fn finish(&self, frame: &mut Frame) {
        frame.on_device = None;
    }
}

impl PoseModel for crate::pose::PoseEstimator {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::pose::PoseEstimator::estimate(self, items)?)
    }

    fn estimate_uploaded(
        &mut self,
        items: &[(&RgbImage, BBox)],
        uploads: &[Option<&Tensor>],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::pose::PoseEstimator::estimate_uploaded(
            self, items, uploads,
        )?)
    }
}
