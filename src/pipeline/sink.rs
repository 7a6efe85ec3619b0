//! The last stage: PoseTrack 2018 JSON per video, optional overlay video, progress bars.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::messages::{Frame, VideoFailure, VideoMeta};
use crate::posetrack::{Annotation, Category, Image, PoseTrackFile};
use crate::video::encode::{OverlayWriter, VideoCodec};

/// Receives each video's frames in order. `end` is called once per started video; with
/// `ok == false` nothing may be left under the final output names.
pub trait FrameSink {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure>;
    fn frame(&mut self, frame: Frame) -> Result<(), VideoFailure>;
    /// Completes (or abandons) the video; returns the files written.
    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure>;
}

pub struct OverlaySettings {
    pub codec: VideoCodec,
    pub crf: u32,
}

/// One frame's entries; `from_reference` when the image entry came from an annotation file.
struct FrameEntry {
    image: Image,
    annotations: Vec<Annotation>,
    from_reference: bool,
}

/// One video's output under construction.
struct Open {
    frames: Vec<FrameEntry>,
    /// The writer and the frame size it was opened with.
    overlay: Option<(OverlayWriter, u32, u32)>,
    overlay_failed: bool,
    progress: Option<ProgressBar>,
}

pub struct PoseTrackSink {
    overlay: Option<OverlaySettings>,
    bars: Option<MultiProgress>,
    open: Option<Open>,
}

impl PoseTrackSink {
    /// `progress`: show a bar per video (only drawn when stderr is a terminal).
    pub fn new(overlay: Option<OverlaySettings>, progress: bool) -> Self {
        let bars = progress.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            overlay,
            bars,
            open: None,
        }
    }
}

/// The image entry for a frame: the annotation file's when known, else the PoseTrack scheme
/// for PoseTrack sequences, else the frame's position and file name.
fn image_entry(frame: &Frame) -> Image {
    if let Some(reference) = &frame.reference_image {
        return reference.clone();
    }
    let video = &frame.video;
    let number = frame.decoded.number;
    match &video.job.posetrack {
        Some(seq) => {
            let id = seq.image_id(number);
            // The frame's own extension: a sequence of PNG frames is named `.png`.
            let file_name = match Path::new(&frame.decoded.file_name).extension() {
                Some(ext) => Path::new(&seq.file_name(number))
                    .with_extension(ext)
                    .to_string_lossy()
                    .into_owned(),
                None => seq.file_name(number),
            };
            Image {
                id,
                file_name,
                vid_id: Some(format!("{:06}", seq.number)),
                frame_id: Some(id),
                nframes: None,
                is_labeled: None,
                ignore_regions_x: None,
                ignore_regions_y: None,
                extra: Default::default(),
            }
        }
        None => {
            // A video's frames are numbered from their timestamps: after frames lost to damage,
            // the later ones keep their true index (and the boxes keyed by it).
            let index = match &video.job.kind {
                crate::video::SourceKind::VideoFile(_) => frame.decoded.number,
                _ => frame.index,
            };
            Image {
                id: index,
                file_name: match &video.job.kind {
                    crate::video::SourceKind::VideoFile(_) => {
                        format!("{}/{:06}.jpg", video.job.name, index)
                    }
                    _ => format!("{}/{}", video.job.name, frame.decoded.file_name),
                },
                vid_id: Some(video.job.name.clone()),
                frame_id: Some(index),
                nframes: None,
                is_labeled: None,
                ignore_regions_x: None,
                ignore_regions_y: None,
                extra: Default::default(),
            }
        }
    }
}

/// Builds the file: image ids made unique (an annotation file that covers only some frames
/// could share ids with the numbering of the others), `nframes` filled in, and annotations
/// pointing at their image.
fn assemble(mut frames: Vec<FrameEntry>) -> PoseTrackFile {
    let mut seen = std::collections::HashSet::new();
    if !frames.iter().all(|f| seen.insert(f.image.id)) {
        let reference_ids: std::collections::HashSet<u64> = frames
            .iter()
            .filter(|f| f.from_reference)
            .map(|f| f.image.id)
            .collect();
        let first_free = reference_ids.iter().max().map_or(0, |m| m + 1);
        for (id, f) in (first_free..).zip(frames.iter_mut().filter(|f| !f.from_reference)) {
            f.image.id = id;
            f.image.frame_id = Some(id);
        }
    }
    let n = frames.len() as u64;
    let mut file = PoseTrackFile {
        images: Vec::with_capacity(frames.len()),
        annotations: Vec::new(),
        categories: vec![Category::person()],
    };
    for f in frames {
        let id = f.image.id;
        for (i, mut a) in f.annotations.into_iter().enumerate() {
            a.image_id = id;
            a.id = Some(id * 100 + i as u64);
            file.annotations.push(a);
        }
        let mut image = f.image;
        image.nframes.get_or_insert(n);
        file.images.push(image);
    }
    file
}

/// The frame's persons, highest instance score first as MMPose's PoseTrack18 metric writes
/// them (the evaluator pairs predictions with people in file order when they tie, so the order
/// can move the AP); `image_id` and `id` are set by `assemble`.
fn annotations(frame: &Frame) -> Vec<Annotation> {
    let mut persons: Vec<(f32, &crate::person::Person)> = frame
        .persons
        .iter()
        .map(|p| (crate::track::nms::instance_score(p), p))
        .collect();
    // Stable: equal scores keep the tracker's order.
    persons.sort_by(|a, b| b.0.total_cmp(&a.0));
    persons
        .into_iter()
        .map(|(score, p)| {
            let [x, y, w, h] = p.bbox.to_xywh();
            let (keypoints, scores) = match &p.keypoints {
                Some(k) => (
                    Some(
                        k.iter()
                            .flat_map(|k| [k.x as f64, k.y as f64, k.score as f64])
                            .collect(),
                    ),
                    Some(k.iter().map(|k| k.score as f64).collect()),
                ),
                None => (None, None),
            };
            Annotation {
                image_id: 0,
                id: None,
                track_id: p.track_id.map(|t| t as i64),
                bbox: Some([x as f64, y as f64, w as f64, h as f64]),
                bbox_head: None,
                keypoints,
                scores,
                // MMPose's instance score (box score x mean confident keypoint score), as its
                // PoseTrack18 metric writes it; the box score alone without keypoints.
                score: Some(score as f64),
                category_id: Some(1),
                extra: Default::default(),
            }
        })
        .collect()
}

impl FrameSink for PoseTrackSink {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        let progress = self.bars.as_ref().map(|bars| {
            let bar = bars.add(match video.info.frames_hint {
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
            bar
        });
        self.open = Some(Open {
            frames: Vec::new(),
            overlay: None,
            overlay_failed: false,
            progress,
        });
        Ok(())
    }

    fn frame(&mut self, mut frame: Frame) -> Result<(), VideoFailure> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| VideoFailure::Output("a frame came before its video started".into()))?;
        open.frames.push(FrameEntry {
            image: image_entry(&frame),
            annotations: annotations(&frame),
            from_reference: frame.reference_image.is_some(),
        });
        if let (Some(settings), Some(path)) = (&self.overlay, &frame.video.output_video) {
            // The overlay is extra: when it cannot be made (a 1x1 video, a full disk) the
            // PoseTrack JSON is still written, and the user is told.
            if open.overlay.is_none() && !open.overlay_failed {
                let img = &frame.decoded.image;
                match OverlayWriter::create(
                    path,
                    img.width,
                    img.height,
                    frame.video.info.fps,
                    settings.codec,
                    settings.crf,
                ) {
                    Ok(w) => open.overlay = Some((w, img.width, img.height)),
                    Err(e) => {
                        open.overlay_failed = true;
                        tracing::warn!("{}: no overlay video: {e}", frame.video.job.name);
                    }
                }
            }
            if let Some((writer, width, height)) = open.overlay.as_mut() {
                for p in &frame.persons {
                    crate::render::draw_person(&mut frame.decoded.image, p);
                }
                // A frame of another size than the first is fitted in, not cut off.
                let fitted;
                let image = if (frame.decoded.image.width, frame.decoded.image.height)
                    == (*width, *height)
                {
                    &frame.decoded.image
                } else {
                    fitted = crate::render::fit_into(&frame.decoded.image, *width, *height);
                    &fitted
                };
                if let Err(e) = writer.write(image) {
                    tracing::warn!("{}: no overlay video: {e}", frame.video.job.name);
                    open.overlay = None;
                    open.overlay_failed = true;
                }
            }
        }
        if let Some(bar) = &open.progress {
            bar.inc(1);
        }
        Ok(())
    }

    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        let Some(mut open) = self.open.take() else {
            return Ok(Vec::new());
        };
        if let Some(bar) = open.progress.take() {
            bar.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&bar);
            }
        }
        if !ok {
            // Dropping the writer removes its temporary file.
            return Ok(Vec::new());
        }
        let mut written = Vec::new();
        if let Some((writer, ..)) = open.overlay.take() {
            match writer.finish() {
                Ok(path) => written.push(path),
                Err(e) => tracing::warn!("{}: no overlay video: {e}", video.job.name),
            }
        }
        let file = assemble(open.frames);
        file.write_atomic(&video.output_json)
            .map_err(|e| VideoFailure::Output(e.to_string()))?;
        written.push(video.output_json.clone());
        Ok(written)
    }
}
