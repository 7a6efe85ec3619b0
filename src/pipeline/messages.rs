//! What flows between stages. Defined once; every stage speaks these types.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::permits::Permit;
use crate::detect::DetectError;
use crate::person::Person;
use crate::posetrack;
use crate::posetrack::boxes::GivenBoxes;
use crate::track::TrackError;
use crate::video::{DecodedFrame, StreamInfo, VideoError, VideoJob};

/// A video being processed, shared by all its frames.
#[derive(Debug)]
pub struct VideoMeta {
    /// Position among this run's videos.
    pub id: usize,
    /// The input: its name, source files and PoseTrack sequence, if any.
    pub job: VideoJob,
    /// Frame rate and declared frame count, as the decoder reports them once opened.
    pub info: StreamInfo,
    /// Where the PoseTrack JSON file goes, under `output.dir`.
    pub output_json: PathBuf,
    /// Where the overlay video goes; `None` unless `render.enabled`.
    pub output_video: Option<PathBuf>,
    /// Boxes from files, when the detector is `boxes`.
    pub boxes: Option<Arc<GivenBoxes>>,
    /// Frames decoded at most (`input.max_frames`): a video cut there has no frames beyond.
    pub frame_limit: Option<u64>,
    /// Set in live mode (`input.live`): frames the source dropped to keep up, reconnections.
    pub live: Option<Arc<LiveStats>>,
    /// Set by the source when it stopped reading before the video's end (`input.duration`):
    /// the video then has no frames beyond its last one.
    pub cut_short: AtomicBool,
}

/// What live mode did to a video, counted by the source as it goes and read by the sink at
/// the video's end.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Frames decoded from the stream.
    pub received: AtomicU64,
    /// Frames dropped because no frame permit was free (the pipeline was behind).
    pub dropped: AtomicU64,
    /// Times the stream was reconnected after it dropped.
    pub reconnects: AtomicU64,
}

impl LiveStats {
    /// `(received, dropped, reconnects)` as they stand.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
            self.reconnects.load(Ordering::SeqCst),
        )
    }
}

/// One frame and what the stages found in it.
#[derive(Debug)]
pub struct Frame {
    /// The video the frame belongs to.
    pub video: Arc<VideoMeta>,
    /// Position within the video, from 0.
    pub index: u64,
    /// The pixels, the frame's number, timestamp and source file.
    pub decoded: DecodedFrame,
    /// The people found so far: boxes after detection, keypoints after pose, track ids after
    /// tracking.
    pub persons: Vec<Person>,
    /// The annotation file's entry for this frame, so outputs keep the dataset's ids.
    pub reference_image: Option<posetrack::Image>,
    /// When the current stage received it (for latency).
    pub entered_stage: Instant,
    /// When the source had it decoded: the start of its time in the pipeline.
    pub decoded_at: Instant,
    /// The pixels on the models' GPU (`[h, w, 3]` u8), put there by the detector so that the
    /// pose model crops from the same copy: a frame goes up once. `None` on the CPU, and
    /// once the pose stage is done with the frame.
    pub on_device: Option<candle_core::Tensor>,
    pub(crate) _permit: Option<Permit>,
}

/// Why a video failed, by the stage that found it. The message is for the user; control flow
/// looks only at the kind (an interrupted video is not a broken one). The stages' own errors
/// travel inside, shared (`Arc`) because one batch failure fails every video in the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VideoFailure {
    /// Stopped by Ctrl-C / SIGTERM or `--fail-fast` before it was complete.
    #[error("interrupted")]
    Interrupted,
    /// Found before decoding: the boxes do not fit it, the numbering has gaps, ...
    #[error("{0}")]
    Plan(String),
    /// The video or a frame could not be read.
    #[error(transparent)]
    Decode(Arc<VideoError>),
    /// The boxes file disagrees with the decoded video.
    #[error("{0}")]
    Boxes(String),
    /// The detector failed on a frame.
    #[error("detector: frame {frame}: {source}")]
    Detect {
        /// The frame's number.
        frame: u64,
        /// What the detector reported.
        source: Arc<DetectError>,
    },
    /// The pose model failed on a batch holding this video's people.
    #[error("pose model: {0}")]
    Pose(Arc<dyn std::error::Error + Send + Sync>),
    /// The tracker could not link the video's people.
    #[error("tracking: {0}")]
    Track(Arc<TrackError>),
    /// The output could not be written.
    #[error("{0}")]
    Output(String),
}

impl VideoFailure {
    /// Whether the video was stopped rather than broken.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, VideoFailure::Interrupted)
    }
}

/// What a stage receives and sends: a video's start, its frames in order, its end.
#[derive(Debug)]
pub enum Msg {
    /// A video begins; its frames follow.
    Start(Arc<VideoMeta>),
    /// One decoded frame.
    Frame(Box<Frame>),
    /// The video ended: `Err` carries why it failed; its output must not be written.
    End(Arc<VideoMeta>, Result<(), VideoFailure>),
}
