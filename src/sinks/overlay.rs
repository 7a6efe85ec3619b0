//! The overlay video: each frame with its people drawn, encoded next to the JSON or streamed
//! live to a URL (`render.stream`). It is extra:
//! when it cannot be made (a 1x1 video, a full disk) the JSON is still written, and the user is
//! told.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::pipeline::messages::{Frame, VideoFailure, VideoMeta};
use crate::pipeline::sink::FrameSink;
use crate::video::encode::{OverlayTarget, OverlayWriter, VideoCodec};

/// How overlay videos are encoded.
#[derive(Debug, Clone)]
pub struct OverlaySettings {
    /// The encoder.
    pub codec: VideoCodec,
    /// Quality (lower is better), 0..=51.
    pub crf: u32,
    /// An FFmpeg output URL (with `{name}` for the input's name) the overlay is streamed to
    /// instead of `<name>.mp4`.
    pub stream: Option<String>,
}

/// One video's overlay under construction.
#[derive(Default)]
struct Open {
    /// The writer and the frame size it was opened with.
    writer: Option<(OverlayWriter, u32, u32)>,
    failed: bool,
}

/// Writes `<output>/<video>.mp4` per finished video.
pub struct OverlaySink {
    settings: OverlaySettings,
    /// The overlays of the videos in flight, by id.
    open: HashMap<usize, Open>,
}

impl OverlaySink {
    /// A sink encoding with `settings`.
    pub fn new(settings: OverlaySettings) -> Self {
        Self {
            settings,
            open: HashMap::new(),
        }
    }
}

impl Open {
    fn give_up(&mut self, video: &VideoMeta, why: impl std::fmt::Display) {
        tracing::warn!("{}: no overlay video: {why}", video.job.name);
        self.writer = None;
        self.failed = true;
    }
}

impl FrameSink for OverlaySink {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        self.open.insert(video.id, Open::default());
        Ok(())
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        let target = match (&self.settings.stream, &frame.video.output_video) {
            (Some(url), _) => OverlayTarget::Stream(url.replace("{name}", &frame.video.job.name)),
            (None, Some(path)) => OverlayTarget::File(path.clone()),
            (None, None) => return Ok(()),
        };
        let open = self.open.entry(frame.video.id).or_default();
        if open.writer.is_none() && !open.failed {
            let img = &frame.decoded.image;
            match OverlayWriter::create(
                &target,
                img.width,
                img.height,
                frame.video.info.fps,
                self.settings.codec,
                self.settings.crf,
            ) {
                Ok(w) => open.writer = Some((w, img.width, img.height)),
                Err(e) => open.give_up(&frame.video, e),
            }
        }
        let Some((writer, width, height)) = open.writer.as_mut() else {
            return Ok(());
        };
        for p in &frame.persons {
            crate::render::draw_person(&mut frame.decoded.image, p);
        }
        // A frame of another size than the first is fitted in, not cut off.
        let image = &frame.decoded.image;
        let written = if (image.width, image.height) == (*width, *height) {
            writer.write(image)
        } else {
            writer.write(&crate::render::fit_into(image, *width, *height))
        };
        if let Err(e) = written {
            open.give_up(&frame.video, e);
        }
        Ok(())
    }

    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        let open = self.open.remove(&video.id).unwrap_or_default();
        let Some((writer, ..)) = open.writer else {
            return Ok(Vec::new());
        };
        if !ok {
            // Dropping the writer removes its temporary file.
            return Ok(Vec::new());
        }
        match writer.finish() {
            Ok(path) => Ok(vec![path]),
            Err(e) => {
                tracing::warn!("{}: no overlay video: {e}", video.job.name);
                Ok(Vec::new())
            }
        }
    }
}
