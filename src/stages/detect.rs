//! The detect stage: frames batched into one Cascade R-CNN forward pass (see
//! [`crate::pipeline::batching`]).

use std::time::Duration;

use std::sync::Arc;

use candle_core::Tensor;

use crate::detect::{cascade, CascadeRcnn};
use crate::image::RgbImage;
use crate::person::Person;
use crate::pipeline::batching::{BatchStage, BatchWork};
use crate::pipeline::messages::{Frame, VideoFailure};

/// Whole frames batched into one detector call; persons at or above `score_threshold` kept.
pub struct DetectWork {
    model: CascadeRcnn,
    score_threshold: f32,
}

/// The detect stage: up to `batch_size` frames per forward pass, waiting at most `timeout`
/// for more. A frame the detector fails on fails its video.
pub type DetectStage = BatchStage<DetectWork>;

impl DetectStage {
    /// A stage running `model` on up to `batch_size` frames at once.
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
    /// The persons, and the frame as uploaded to the detector's GPU (for the pose model).
    type Output = (Vec<Person>, Option<Tensor>);

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
        let uploads: Vec<Option<Tensor>> = images.iter().map(|i| self.model.upload(i)).collect();
        let refs: Vec<Option<&Tensor>> = uploads.iter().map(Option::as_ref).collect();
        Ok(self
            .model
            .detect_batch_uploaded(&images, &refs)
            .into_iter()
            .zip(uploads)
            .zip(items)
            .map(|((r, up), (f, _))| {
                r.map(|d| (cascade::persons(d, self.score_threshold), up))
                    .map_err(|e| VideoFailure::Detect {
                        frame: f.decoded.number,
                        source: Arc::new(e),
                    })
            })
            .collect())
    }

    fn store(&self, frame: &mut Frame, _item: usize, (persons, uploaded): Self::Output) {
        frame.persons = persons;
        frame.on_device = uploaded;
    }
}
