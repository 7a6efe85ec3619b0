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
    /// Open once the first video starts: by then the run has checked that the file names no
    /// input or output, so a wrong `--jsonl` cannot truncate anything.
    out: Option<Box<dyn Write + Send>>,
    /// The file still to be created.
    path: Option<PathBuf>,
    name: String,
}

impl JsonlSink {
    /// Writes to `path`, created (or truncated) when the first video starts; `-` is stdout.
    pub fn create(path: &Path) -> Result<Self, JsonlError> {
        if path.as_os_str() == "-" {
            return Ok(Self::to_writer(Box::new(std::io::stdout()), "stdout"));
        }
        if path.is_dir() {
            return Err(JsonlError {
                path: path.to_path_buf(),
                source: std::io::Error::other("is a folder"),
            });
        }
        Ok(Self {
            out: None,
            path: Some(path.to_path_buf()),
            name: path.display().to_string(),
        })
    }

    /// Writes to any writer; `name` says where in error messages.
    pub fn to_writer(out: Box<dyn Write + Send>, name: &str) -> Self {
        Self {
            out: Some(out),
            path: None,
            name: name.to_string(),
        }
    }

    fn failure(&self, e: impl std::fmt::Display) -> VideoFailure {
        VideoFailure::Output(format!(
            "{}: cannot write the JSON Lines output: {e}",
            self.name
        ))
    }

    /// The open output, opening the file on first use.
    fn writer(&mut self) -> Result<&mut Box<dyn Write + Send>, VideoFailure> {
        if self.out.is_none() {
            if let Some(path) = self.path.take() {
                let file = std::fs::File::create(&path).map_err(|e| self.failure(e))?;
                self.out = Some(Box::new(std::io::BufWriter::new(file)));
            }
        }
        let failure = self.failure("not open");
        self.out.as_mut().ok_or(failure)
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
        self.writer().map(|_| ())
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        let mut line = serde_json::to_vec(&frame_line(frame))
            .map_err(|e| VideoFailure::Output(format!("{}: {e}", self.name)))?;
        line.push(b'\n');
        let out = self.writer()?;
        let written = out.write_all(&line).and_then(|()| out.flush());
        written.map_err(|e| self.failure(e))
    }

    fn end(&mut self, _video: &Arc<VideoMeta>, _ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        if let Some(out) = self.out.as_mut() {
            let flushed = out.flush();
            flushed.map_err(|e| self.failure(e))?;
        }
        Ok(Vec::new())
    }
}
