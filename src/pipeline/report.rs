//! What a run did: per video, how it ended and what it wrote; per stage, its metrics.

use std::path::{Path, PathBuf};

use super::messages::VideoFailure;
use super::metrics::StageSummary;
use crate::video::VideoJob;

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Files written, per finished video.
    pub written: Vec<PathBuf>,
    /// Videos skipped because their output already exists.
    pub skipped: Vec<String>,
    /// `(video, reason)` for every video that failed.
    pub failed: Vec<(String, String)>,
    /// Each stage's metrics, source first and sink last.
    pub stages: Vec<StageSummary>,
    /// Most decoded frames alive at once.
    pub peak_frames_in_flight: usize,
    /// A signal stopped the run before every video was complete.
    pub interrupted: bool,
    /// `--fail-fast` stopped the run after a failure.
    pub stopped_on_failure: bool,
    /// Wall-clock time of the run.
    pub seconds: f64,
    /// One entry per video, in the order they ended.
    pub videos: Vec<VideoOutcome>,
}

/// How one video's run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoOutcome {
    /// The video's name (its outputs are named after it).
    pub name: String,
    /// The video file or frame folder.
    #[serde(serialize_with = "lossy_path")]
    pub input: PathBuf,
    /// `written`, `skipped`, `failed` or `interrupted`.
    pub status: &'static str,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Frames that reached the output.
    pub frames: u64,
    /// Time from its first message to its end.
    pub seconds: f64,
    /// The files written for it.
    #[serde(serialize_with = "lossy_paths")]
    pub outputs: Vec<PathBuf>,
    /// Live mode: frames dropped at the source to keep up with the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_frames: Option<u64>,
    /// Live mode: times the stream was reconnected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
    /// Median time from a frame's decoding to the sinks, milliseconds (frames that reached
    /// them; none: no frame did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile of the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<f64>,
}

/// A path in JSON even when it is not valid UTF-8 (serde refuses those): the lossy form, which
/// replaces the invalid bytes with U+FFFD.
fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn lossy_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

impl VideoOutcome {
    /// An entry for `job` with no frames yet.
    pub fn new(job: &VideoJob, status: &'static str, reason: Option<String>) -> Self {
        Self {
            name: job.name.clone(),
            input: job.path().to_path_buf(),
            status,
            reason,
            frames: 0,
            seconds: 0.0,
            outputs: Vec::new(),
            dropped_frames: None,
            reconnects: None,
            latency_p50_ms: None,
            latency_p95_ms: None,
        }
    }
}

impl RunReport {
    /// Records a video that failed before it ran (found by the plan).
    pub fn fail_early(&mut self, job: &VideoJob, reason: String) {
        tracing::error!("{}: {reason}", job.name);
        self.failed.push((job.name.clone(), reason.clone()));
        self.videos
            .push(VideoOutcome::new(job, "failed", Some(reason)));
    }

    /// Records a video skipped because its output exists.
    pub fn skip(&mut self, job: &VideoJob, reason: String) {
        self.skipped.push(job.name.clone());
        self.videos
            .push(VideoOutcome::new(job, "skipped", Some(reason)));
    }

    /// Records how a video that ran ended.
    pub fn finish(&mut self, mut entry: VideoOutcome, failure: Option<&VideoFailure>) {
        if let Some(failure) = failure {
            if failure.is_interrupted() {
                self.interrupted = true;
                entry.status = "interrupted";
            } else {
                entry.status = "failed";
            }
            self.failed.push((entry.name.clone(), failure.to_string()));
            entry.reason = Some(failure.to_string());
        } else {
            self.written.extend(entry.outputs.iter().cloned());
        }
        self.videos.push(entry);
    }
}
