//! What a run makes of its frames: the PoseTrack JSON (`posetrack`), the overlay video
//! (`overlay`), per-frame JSON Lines (`jsonl`) and progress bars (`progress`), each a
//! [`crate::pipeline::sink::FrameSink`];
//! `pipeline::sink::Sinks` chains them.

pub mod jsonl;
pub mod overlay;
pub mod posetrack;
pub mod progress;

pub use jsonl::{JsonlError, JsonlSink};
pub use overlay::{OverlaySettings, OverlaySink};
pub use posetrack::PoseTrackSink;
pub use progress::ProgressSink;

use crate::pipeline::sink::Sinks;

/// The sinks of a run: progress bars (when `progress`), the PoseTrack JSON, and the overlay
/// video (when `overlay` is given), fed in that order.
pub fn standard(overlay: Option<OverlaySettings>, progress: bool) -> Sinks {
    let mut sinks = Sinks::new();
    if progress {
        sinks = sinks.with(Box::new(ProgressSink::new()));
    }
    sinks = sinks.with(Box::new(PoseTrackSink::new()));
    if let Some(settings) = overlay {
        sinks = sinks.with(Box::new(OverlaySink::new(settings)));
    }
    sinks
}
