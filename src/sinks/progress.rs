//! A progress bar per video, drawn only when stderr is a terminal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::messages::{Frame, VideoFailure, VideoMeta};
use crate::pipeline::sink::FrameSink;

/// Observes the frames reaching the end of the chain; writes nothing.
pub struct ProgressSink {
    bars: MultiProgress,
    /// One bar per video in flight, by id.
    bar: HashMap<usize, ProgressBar>,
}

impl Default for ProgressSink {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressSink {
    /// Bars on stderr.
    pub fn new() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bar: HashMap::new(),
        }
    }
}

impl FrameSink for ProgressSink {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        let bar = self.bars.add(match video.info.frames_hint {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        });
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>20} [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(video.job.name.clone());
        self.bar.insert(video.id, bar);
        Ok(())
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        if let Some(bar) = self.bar.get(&frame.video.id) {
            bar.inc(1);
        }
        Ok(())
    }

    fn end(&mut self, video: &Arc<VideoMeta>, _ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        if let Some(bar) = self.bar.remove(&video.id) {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        Ok(Vec::new())
    }
}
