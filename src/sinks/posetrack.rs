//! The PoseTrack 2018 JSON of each video: frames spooled to disk as they come, the file
//! written atomically when the video ends well.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::pipeline::messages::{Frame, VideoFailure, VideoMeta};
use crate::pipeline::sink::FrameSink;
use crate::posetrack::submission::{annotations, image_entry, FramePlace, Submission};

/// Writes `<output>/<video>.json` per finished video.
#[derive(Default)]
pub struct PoseTrackSink {
    /// The submissions of the videos in flight, by id.
    open: HashMap<usize, Submission>,
}

impl PoseTrackSink {
    /// A sink with no video started.
    pub fn new() -> Self {
        Self::default()
    }
}

impl FrameSink for PoseTrackSink {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        let open = Submission::create(&video.output_json)
            .map_err(|e| VideoFailure::Output(e.to_string()))?;
        self.open.insert(video.id, open);
        Ok(())
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        let open = self
            .open
            .get_mut(&frame.video.id)
            .ok_or_else(|| VideoFailure::Output("a frame came before its video started".into()))?;
        let image = match &frame.reference_image {
            Some(reference) => reference.clone(),
            None => image_entry(
                &frame.video.job,
                FramePlace {
                    index: frame.index,
                    number: frame.decoded.number,
                    file_name: &frame.decoded.file_name,
                },
            ),
        };
        open.push(
            image,
            annotations(&frame.persons),
            frame.reference_image.is_some(),
        )
        .map_err(|e| VideoFailure::Output(e.to_string()))
    }

    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        let Some(open) = self.open.remove(&video.id) else {
            return Ok(Vec::new());
        };
        if !ok {
            return Ok(Vec::new());
        }
        let written = open
            .finish()
            .map_err(|e| VideoFailure::Output(e.to_string()))?;
        Ok(vec![written])
    }
}
