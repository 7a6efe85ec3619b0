//! The end of the chain: sinks receive each video's frames in order and write what they make
//! of them; `run_sink` feeds them and records how each video ended.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Receiver;

use super::messages::{Frame, Msg, VideoFailure, VideoMeta};
use super::metrics::StageMetrics;
use super::report::{RunReport, VideoOutcome};

/// Receives each video's frames in order. `end` is called once per started video; with
/// `ok == false` nothing may be left under the final output names. Several videos may be in
/// flight at once (`input.concurrent`): their frames then interleave, so a sink keeps its
/// state per video (by `VideoMeta::id`), from `start` to `end`.
pub trait FrameSink {
    /// A video begins.
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure>;
    /// One frame of a started video; a sink may draw on its image for the sinks after it.
    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure>;
    /// Completes (or abandons) the video; returns the files written.
    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure>;
}

/// Several sinks fed in turn, each frame passed from one to the next. A failing sink fails the
/// video; the others are still ended (with `ok == false`) so that they clean up.
#[derive(Default)]
pub struct Sinks(Vec<Box<dyn FrameSink>>);

impl Sinks {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink after the ones already there.
    pub fn with(mut self, sink: Box<dyn FrameSink>) -> Self {
        self.0.push(sink);
        self
    }
}

impl FrameSink for Sinks {
    fn start(&mut self, video: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        self.0.iter_mut().try_for_each(|s| s.start(video))
    }

    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        self.0.iter_mut().try_for_each(|s| s.frame(frame))
    }

    fn end(&mut self, video: &Arc<VideoMeta>, ok: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        let mut written = Vec::new();
        let mut failure = None;
        for sink in &mut self.0 {
            match sink.end(video, ok && failure.is_none()) {
                Ok(files) => written.extend(files),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}

/// Feeds the sink; a failure of one video is recorded and the others go on (unless
/// `fail_fast`, which then stops the run through `cancel`).
pub fn run_sink(
    mut sink: Box<dyn FrameSink>,
    rx: Receiver<Msg>,
    report: &mut RunReport,
    fail_fast: bool,
    cancel: &AtomicBool,
) -> StageMetrics {
    let mut metrics = StageMetrics::new("sink");
    let started = Instant::now();
    // The videos in flight, by id.
    let mut videos: HashMap<usize, InFlight> = HashMap::new();
    loop {
        let t = Instant::now();
        let Ok(msg) = rx.recv() else { break };
        metrics.wait_input += t.elapsed();
        metrics.record_queue(rx.len());
        let t = Instant::now();
        match msg {
            Msg::Start(video) => {
                let failure = sink.start(&video).err();
                videos.insert(video.id, InFlight::new(&video, failure));
            }
            Msg::Frame(mut frame) => {
                metrics.items += 1;
                metrics.batches += 1;
                metrics.record_latency(frame.entered_stage.elapsed());
                let state = videos
                    .entry(frame.video.id)
                    .or_insert_with(|| InFlight::new(&frame.video, None));
                state.frames += 1;
                state.latency.record_latency(frame.decoded_at.elapsed());
                if state.failure.is_none() {
                    state.failure = sink.frame(&mut frame).err();
                }
            }
            Msg::End(video, outcome) => {
                let state = videos
                    .remove(&video.id)
                    .unwrap_or_else(|| InFlight::new(&video, None));
                let mut reason = state.failure.or(outcome.err());
                if report.stopped_on_failure {
                    // Already queued when the run was stopped: not written either.
                    reason = Some(VideoFailure::Interrupted);
                }
                let mut entry = VideoOutcome::new(&video.job, "written", None);
                entry.frames = state.frames;
                entry.seconds = state.started.elapsed().as_secs_f64();
                if state.frames > 0 {
                    let latency = state.latency.summary();
                    entry.latency_p50_ms = Some(latency.latency_p50_ms);
                    entry.latency_p95_ms = Some(latency.latency_p95_ms);
                }
                if let Some(live) = &video.live {
                    let (_, dropped, reconnects) = live.snapshot();
                    entry.dropped_frames = Some(dropped);
                    entry.reconnects = Some(reconnects);
                }
                let failed = match sink.end(&video, reason.is_none()) {
                    Ok(files) if reason.is_none() => {
                        tracing::info!("{}: done", video.job.name);
                        entry.outputs = files;
                        None
                    }
                    Ok(_) => reason,
                    Err(e) => Some(e),
                };
                if let Some(failure) = &failed {
                    tracing::error!("{}: failed: {failure}", video.job.name);
                }
                report.finish(entry, failed.as_ref());
                let broken = failed.as_ref().is_some_and(|f| !f.is_interrupted());
                if broken && fail_fast && !cancel.swap(true, Ordering::SeqCst) {
                    tracing::error!("stopping the run after this failure (--fail-fast)");
                    report.stopped_on_failure = true;
                }
            }
        }
        metrics.record_busy(t);
    }
    metrics.busy = started.elapsed().saturating_sub(metrics.wait_input);
    metrics
}

/// What the sink side knows of a video between its start and its end.
struct InFlight {
    started: Instant,
    frames: u64,
    /// From each frame's decoding to the sinks.
    latency: StageMetrics,
    /// A sink failed on it: later frames are not given to the sinks.
    failure: Option<VideoFailure>,
}

impl InFlight {
    fn new(video: &VideoMeta, failure: Option<VideoFailure>) -> Self {
        Self {
            started: Instant::now(),
            frames: 0,
            latency: StageMetrics::new(&video.job.name),
            failure,
        }
    }
}
