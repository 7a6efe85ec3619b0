//! Per-frame results as JSON Lines, one line per frame written (and flushed) as the frame
//! completes: for live streams, and for anything reading results as they come.
//!
//! A line: `{"video", "frame", "index", "timestamp", "latency_ms", "people": [{"track_id",
//! "box": [x1, y1, x2, y2], "score", "keypoints": [[x, y, score], ...]}]}`; `frame` is the
//! frame's number (from its timestamp), `timestamp` its time in seconds from the start of the
//! video, `latency_ms` the time from its decoding to this line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::pipeline::messages::{Frame, VideoFailure, VideoMeta};
use crate::pipeline::sink::FrameSink;

/// Why the JSON Lines output could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write the JSON Lines output: {source}", .path.display())]
pub struct JsonlError {
    /// The file.
    pub path: PathBuf,
    /// The operating system's reason.
    pub source: std::io::Error,
}

/// Writes one JSON line per frame to a file or stdout, flushed per line.
pub struct JsonlSink {
    out: Box<dyn Write + Send>,
    name: String,
}

impl JsonlSink {
    /// Writes to `path`, created or truncated; `-` is stdout.
    pub fn create(path: &Path) -> Result<Self, JsonlError> {
        if path.as_os_str() == "-" {
            return Ok(Self::to_writer(Box::new(std::io::stdout()), "stdout"));
        }
        let file = std::fs::File::create(path).map_err(|source| JsonlError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::to_writer(Box::new(file), &path.display().to_string()))
    }

    /// Writes to any writer; `name` says where in error messages.
    pub fn to_writer(out: Box<dyn Write + Send>, name: &str) -> Self {
        Self {
            out,
            name: name.to_string(),
        }
    }
}

/// The JSON line of a frame (without the newline).
pub fn frame_line(frame: &Frame) -> serde_json::Value {
    let people: Vec<serde_json::Value> = frame
        .persons
        .iter()
        .map(|p| {
            let b = &p.bbox;
            serde_json::json!({
                "track_id": p.track_id,
                "box": [b.x1, b.y1, b.x2, b.y2],
                "score": p.bbox_score,
                "keypoints": p.keypoints.map(|k| {
                    k.iter().map(|k| [k.x, k.y, k.score]).collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    serde_json::json!({
        "video": frame.video.job.name,
        "frame": frame.decoded.number,
        "index": frame.index,
        "timestamp": frame.decoded.pts,
        "latency_ms": frame.decoded_at.elapsed().as_secs_f64() * 1e3,
        "people": people,
    })
}

impl FrameSink for JsonlSink {
    fn start(&mut self, _video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        Ok(())
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        let mut line = serde_json::to_vec(&frame_line(frame))
            .map_err(|e| VideoFailure::Output(format!("{}: {e}", self.name)))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .and_then(|()| self.out.flush())
            .map_err(|e| {
                VideoFailure::Output(format!(
                    "{}: cannot write the JSON Lines output: {e}",
                    self.name
                ))
            })
    }

    fn end(&mut self, _video: &Arc<VideoMeta>, _ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        self.out.flush().map_err(|e| {
            VideoFailure::Output(format!(
                "{}: cannot write the JSON Lines output: {e}",
                self.name
            ))
        })?;
        Ok(Vec::new())
    }
}
