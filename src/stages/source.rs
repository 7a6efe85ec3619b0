//! The source: decodes the planned videos one after the other and sends their frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Sender;

use crate::pipeline::messages::{Frame, Msg, VideoFailure, VideoMeta};
use crate::pipeline::metrics::StageMetrics;
use crate::pipeline::permits::FramePermits;
use crate::video::decode;

/// A job ready to run, or the reason it cannot.
pub struct PlannedVideo {
    /// The video as the stages will see it.
    pub meta: VideoMeta,
    /// Why it cannot run: it is then reported failed without being decoded.
    pub problem: Option<String>,
}

/// How the source decodes.
pub struct SourceSettings {
    /// Frame rate given to folders of images.
    pub image_fps: f64,
    /// FFmpeg decoding threads per video.
    pub decode_threads: usize,
    /// Frames decoded at most per video.
    pub max_frames: Option<u64>,
}

/// Decodes the videos one after the other. Each frame holds a permit, so no more than the
/// configured number of frames exist at once.
pub fn run_source(
    videos: Vec<PlannedVideo>,
    settings: SourceSettings,
    permits: FramePermits,
    cancel: Arc<AtomicBool>,
    tx: Sender<Msg>,
) -> StageMetrics {
    let mut metrics = StageMetrics::new("decode");
    let started = Instant::now();
    let send = |msg: Msg, metrics: &mut StageMetrics| -> bool {
        let t = Instant::now();
        let ok = tx.send(msg).is_ok();
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
                .map_err(|e| VideoFailure::Decode(Arc::new(e))),
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
            if settings.max_frames.is_some_and(|max| index >= max) {
                break Ok(());
            }
            let t = Instant::now();
            let Some(permit) = permits.acquire(&cancelled) else {
                break Err(VideoFailure::Interrupted);
            };
            // Waiting for a permit is back-pressure from the stages after us.
            metrics.blocked_output += t.elapsed();
            let t = Instant::now();
            let next = decoder.next_frame();
            metrics.record_busy(t);
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
                Err(e) => break Err(VideoFailure::Decode(Arc::new(e))),
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
