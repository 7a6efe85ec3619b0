//! The source and the middle stages of the default pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Sender;

use super::messages::{Envelope, Frame, Msg, VideoFailure, VideoMeta};
use super::metrics::StageMetrics;
use super::permits::FramePermits;
use super::stage::Stage;
use crate::track::MAX_TRACK_ID;
use crate::video::{decode, StreamInfo, VideoJob};

/// A job ready to run, or the reason it cannot.
pub struct PlannedVideo {
    pub meta: VideoMeta,
    pub problem: Option<String>,
}

pub struct SourceSettings {
    pub image_fps: f64,
    pub decode_threads: usize,
}

/// Decodes the videos one after the other. Each frame holds a permit, so no more than the
/// configured number of frames exist at once.
pub fn run_source(
    videos: Vec<PlannedVideo>,
    settings: SourceSettings,
    permits: FramePermits,
    cancel: Arc<AtomicBool>,
    tx: Sender<Envelope>,
) -> StageMetrics {
    let mut metrics = StageMetrics::new("decode");
    let started = Instant::now();
    let mut seq = 0u64;
    let mut send = |msg: Msg, metrics: &mut StageMetrics| -> bool {
        let t = Instant::now();
        let ok = tx.send(Envelope { seq, msg }).is_ok();
        seq += 1;
        metrics.blocked_output += t.elapsed();
        ok
    };
    let cancelled = || cancel.load(Ordering::SeqCst);
    for planned in videos {
        if cancelled() {
            break;
        }
        let mut meta = planned.meta;
        let decoder = match planned.problem {
            Some(p) => Err(VideoFailure::Plan(p)),
            None => decode::open(&meta.job, settings.image_fps, settings.decode_threads)
                .map_err(|e| VideoFailure::Decode(e.to_string())),
        };
        let mut decoder = match decoder {
            Ok(d) => d,
            Err(problem) => {
                let meta = Arc::new(meta);
                if !send(Msg::Start(meta.clone()), &mut metrics)
                    || !send(Msg::End(meta, Err(problem)), &mut metrics)
                {
                    break;
                }
                continue;
            }
        };
        meta.info = decoder.info().clone();
        let meta = Arc::new(meta);
        if !send(Msg::Start(meta.clone()), &mut metrics) {
            break;
        }
        let mut index = 0u64;
        let outcome = loop {
            if cancelled() {
                break Err(VideoFailure::Interrupted);
            }
            let t = Instant::now();
            let Some(permit) = permits.acquire(&cancelled) else {
                break Err(VideoFailure::Interrupted);
            };
            // Waiting for a permit is back-pressure from the stages after us.
            metrics.blocked_output += t.elapsed();
            let t = Instant::now();
            let next = decoder.next_frame();
            match next {
                Ok(Some(decoded)) => {
                    metrics.items += 1;
                    metrics.batches += 1;
                    metrics.record_latency(t.elapsed());
                    let frame = Frame {
                        video: meta.clone(),
                        index,
                        decoded,
                        persons: Vec::new(),
                        reference_image: None,
                        entered_stage: Instant::now(),
                        _permit: Some(permit),
                    };
                    index += 1;
                    if !send(Msg::Frame(Box::new(frame)), &mut metrics) {
                        return finish(metrics, started);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(VideoFailure::Decode(e.to_string())),
            }
        };
        if !send(Msg::End(meta, outcome), &mut metrics) {
            break;
        }
    }
    finish(metrics, started)
}

fn finish(mut metrics: StageMetrics, started: Instant) -> StageMetrics {
    metrics.busy = started
        .elapsed()
        .saturating_sub(metrics.wait_input + metrics.blocked_output);
    metrics
}

/// Person boxes looked up in the video's box file. Checks at the end of each video that the
/// file has no boxes for frames the video does not have.
pub struct GivenBoxesStage {
    seen: std::collections::HashSet<u64>,
    name: &'static str,
}

impl GivenBoxesStage {
    /// The stage that gives the people: `detect` in the metrics.
    pub fn new() -> Self {
        Self::named("detect")
    }

    /// Before the detector (`detector.kind: auto`), where `detect` names the detector.
    pub fn named(name: &'static str) -> Self {
        Self {
            seen: Default::default(),
            name,
        }
    }
}

impl Default for GivenBoxesStage {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage for GivenBoxesStage {
    fn name(&self) -> &'static str {
        self.name
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                self.seen.clear();
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if let Some(boxes) = &frame.video.boxes {
                    let name = &frame.video.job.name;
                    let number = frame.decoded.number;
                    let image = &frame.decoded.image;
                    frame.persons = boxes
                        .persons(name, number, image.width, image.height)
                        .into_iter()
                        .map(|(mut p, track)| {
                            p.track_id = track.and_then(|t| u64::try_from(t).ok());
                            p
                        })
                        .collect();
                    frame.reference_image = boxes.image(name, number).cloned();
                }
                self.seen.insert(frame.decoded.number);
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, Ok(())) => {
                let outcome = match &v.boxes {
                    Some(boxes) => {
                        let orphans: Vec<u64> = boxes
                            .frames_with_boxes(&v.job.name)
                            .into_iter()
                            .filter(|n| !self.seen.contains(n))
                            .collect();
                        if orphans.is_empty() {
                            Ok(())
                        } else {
                            Err(VideoFailure::Boxes(format!(
                                "{}: has boxes for frame(s) {} of `{}`, which the video does not have ({} frames decoded)",
                                boxes.source().display(),
                                list_numbers(&orphans),
                                v.job.name,
                                self.seen.len()
                            )))
                        }
                    }
                    None => Ok(()),
                };
                out.push(Msg::End(v, outcome));
            }
            end @ Msg::End(..) => out.push(end),
        }
    }
}

fn list_numbers(n: &[u64]) -> String {
    let shown: Vec<String> = n.iter().take(5).map(|x| x.to_string()).collect();
    if n.len() > 5 {
        format!("{}, ... ({} in all)", shown.join(", "), n.len())
    } else {
        shown.join(", ")
    }
}

/// Keeps track ids given with the boxes (ground truth); people without one are numbered within
/// their frame after the given ids, so ids stay unique per frame.
pub struct GivenTrackStage {
    /// The pose NMS MMPose applies before writing PoseTrack results (`tracker.nms_oks_threshold`;
    /// 1.0 disables it).
    pub nms_oks_threshold: f32,
    /// Given ids PoseTrack cannot take (10000 and above), mapped to free ids for the video.
    remapped: std::collections::HashMap<u64, u64>,
    /// The next id handed out for a remapped one, counting down from 9999.
    next_spare: u64,
    /// Whether this video's replaced ids were already reported.
    warned: bool,
}

impl GivenTrackStage {
    pub fn new(nms_oks_threshold: f32) -> Self {
        Self {
            nms_oks_threshold,
            remapped: Default::default(),
            next_spare: MAX_TRACK_ID - 1,
            warned: false,
        }
    }

    /// An id no person of this frame has, for one whose given id cannot be kept.
    fn spare(&mut self, used: &std::collections::HashSet<u64>) -> Option<u64> {
        while used.contains(&self.next_spare) {
            self.next_spare = self.next_spare.checked_sub(1)?;
        }
        let id = self.next_spare;
        self.next_spare = self.next_spare.saturating_sub(1);
        Some(id)
    }
}

impl Stage for GivenTrackStage {
    fn name(&self) -> &'static str {
        "track"
    }

    fn needs_order(&self) -> bool {
        true
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                self.remapped.clear();
                self.next_spare = MAX_TRACK_ID - 1;
                self.warned = false;
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if self.nms_oks_threshold < 1.0 {
                    crate::track::nms::oks_nms(&mut frame.persons, self.nms_oks_threshold);
                }
                // PoseTrack wants ids below 10000 and unique within a frame (the evaluator
                // refuses the file otherwise): keep the given ids that qualify, map larger
                // ones to a spare id kept for the whole video, renumber a repeat.
                let mut used = std::collections::HashSet::new();
                let mut changed = 0;
                for p in frame.persons.iter_mut() {
                    let Some(given) = p.track_id else { continue };
                    let id = if given < MAX_TRACK_ID {
                        given
                    } else if let Some(&id) = self.remapped.get(&given) {
                        id
                    } else {
                        match self.spare(&used) {
                            Some(id) => {
                                self.remapped.insert(given, id);
                                id
                            }
                            None => {
                                p.track_id = None;
                                continue;
                            }
                        }
                    };
                    p.track_id = if used.insert(id) {
                        Some(id)
                    } else {
                        None // a repeat: numbered below
                    };
                    changed += usize::from(p.track_id != Some(given));
                }
                let mut next = 0;
                for p in frame.persons.iter_mut().filter(|p| p.track_id.is_none()) {
                    while used.contains(&next) {
                        next += 1;
                    }
                    p.track_id = Some(next);
                    used.insert(next);
                }
                if changed > 0 && !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        "{} frame {}: {changed} given track id(s) of 10000 or more, or repeated in the frame, replaced (PoseTrack needs ids below 10000, unique per frame; later frames are not reported)",
                        frame.video.job.name,
                        frame.decoded.number
                    );
                }
                out.push(Msg::Frame(frame));
            }
            msg => out.push(msg),
        }
    }
}

/// The stream information used before a video is opened.
pub fn placeholder_info() -> StreamInfo {
    StreamInfo {
        fps: 25.0,
        frames_hint: None,
    }
}

/// Output base paths of a job.
pub fn output_paths(
    dir: &std::path::Path,
    job: &VideoJob,
    render: bool,
) -> (std::path::PathBuf, Option<std::path::PathBuf>) {
    (
        dir.join(format!("{}.json", job.name)),
        render.then(|| dir.join(format!("{}.mp4", job.name))),
    )
}

/// Links people across frames with the Hungarian tracker, one tracker per video. A video
/// whose tracker fails (more tracks than PoseTrack ids allow) ends with that error.
pub struct HungarianTrackStage {
    config: crate::track::TrackerConfig,
    tracker: Option<crate::track::Tracker>,
    failure: Option<VideoFailure>,
}

impl HungarianTrackStage {
    pub fn new(config: crate::track::TrackerConfig) -> Self {
        Self {
            config,
            tracker: None,
            failure: None,
        }
    }
}

impl Stage for HungarianTrackStage {
    fn name(&self) -> &'static str {
        "track"
    }

    fn needs_order(&self) -> bool {
        true
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                // Ids start again at 0 in every video.
                self.tracker = Some(crate::track::Tracker::new(self.config.clone()));
                self.failure = None;
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if let (Some(tracker), None) = (self.tracker.as_mut(), &self.failure) {
                    if let Err(e) = tracker.update(&mut frame.persons) {
                        self.failure = Some(VideoFailure::Track(e.to_string()));
                    }
                }
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, outcome) => {
                let outcome = match (outcome, self.failure.take()) {
                    (Ok(()), Some(e)) => Err(e),
                    (outcome, _) => outcome,
                };
                self.tracker = None;
                out.push(Msg::End(v, outcome));
            }
        }
    }
}
