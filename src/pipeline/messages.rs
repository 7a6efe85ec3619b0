//! What flows between stages. Defined once; every stage speaks these types.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::permits::Permit;
use crate::detect::given::GivenBoxes;
use crate::person::Person;
use crate::posetrack;
use crate::video::{DecodedFrame, StreamInfo, VideoJob};

/// A video being processed, shared by all its frames.
#[derive(Debug)]
pub struct VideoMeta {
    /// Position among this run's videos.
    pub id: usize,
    pub job: VideoJob,
    pub info: StreamInfo,
    pub output_json: PathBuf,
    pub output_video: Option<PathBuf>,
    /// Boxes from files, when the detector is `boxes`.
    pub boxes: Option<Arc<GivenBoxes>>,
}

/// One frame and what the stages found in it.
#[derive(Debug)]
pub struct Frame {
    pub video: Arc<VideoMeta>,
    /// Position within the video, from 0.
    pub index: u64,
    pub decoded: DecodedFrame,
    pub persons: Vec<Person>,
    /// The annotation file's entry for this frame, so outputs keep the dataset's ids.
    pub reference_image: Option<posetrack::Image>,
    /// When the current stage received it (for latency).
    pub entered_stage: Instant,
    pub(crate) _permit: Option<Permit>,
}

/// Why a video failed, by the stage that found it. The message is for the user; control flow
/// looks only at the kind (an interrupted video is not a broken one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoFailure {
    /// Stopped by Ctrl-C / SIGTERM or `--fail-fast` before it was complete.
    #[error("interrupted")]
    Interrupted,
    /// Found before decoding: the boxes do not fit it, the numbering has gaps, ...
    #[error("{0}")]
    Plan(String),
    /// The video or a frame could not be read.
    #[error("{0}")]
    Decode(String),
    /// The boxes file disagrees with the decoded video.
    #[error("{0}")]
    Boxes(String),
    #[error("detector: {0}")]
    Detect(String),
    #[error("pose model: {0}")]
    Pose(String),
    #[error("tracking: {0}")]
    Track(String),
    /// The output could not be written.
    #[error("{0}")]
    Output(String),
}

#[derive(Debug)]
pub enum Msg {
    Start(Arc<VideoMeta>),
    Frame(Box<Frame>),
    /// The video ended: `Err` carries why it failed; its output must not be written.
    End(Arc<VideoMeta>, Result<(), VideoFailure>),
}

/// A message with its position in the run, so order can be restored after parallel stages.
#[derive(Debug)]
pub struct Envelope {
    pub seq: u64,
    pub msg: Msg,
}
