//! The source: decodes the planned videos one after the other and sends their frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;

use crate::pipeline::messages::{Frame, Msg, VideoFailure, VideoMeta};
use crate::pipeline::metrics::StageMetrics;
use crate::pipeline::permits::FramePermits;
use crate::video::decode::{self, FrameDecoder};
use crate::video::stream::{StreamDecoder, StreamOptions};
use crate::video::{DecodedFrame, VideoError};

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
    /// How live sources (URLs, webcams) are opened, read and reconnected; the cancel flag is
    /// replaced by the run's.
    pub stream: StreamOptions,
    /// Each video is read for at most this long (wall clock), then ends as complete.
    pub duration: Option<Duration>,
}

/// Opens a job's decoder: live sources with the stream options, the rest as files.
fn open(
    job: &crate::video::VideoJob,
    settings: &SourceSettings,
    cancel: &Arc<AtomicBool>,
) -> Result<Box<dyn FrameDecoder>, VideoError> {
    if job.is_stream() {
        let options = StreamOptions {
            cancel: cancel.clone(),
            decode_threads: settings.decode_threads,
            ..settings.stream.clone()
        };
        Ok(Box::new(StreamDecoder::open(job, options)?))
    } else {
        decode::open(job, settings.image_fps, settings.decode_threads)
    }
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
            None => {
                open(&meta.job, &settings, &cancel).map_err(|e| VideoFailure::Decode(Arc::new(e)))
            }
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
        let started_video = Instant::now();
        let live = meta.live.clone();
        let outcome = loop {
            if cancelled() {
                break Err(VideoFailure::Interrupted);
            }
            if settings.max_frames.is_some_and(|max| index >= max)
                || settings
                    .duration
                    .is_some_and(|d| started_video.elapsed() >= d)
            {
                break Ok(());
            }
            // Live: the stream is read whatever happens after; a frame that finds no free
            // permit is dropped. Otherwise: wait for a permit, then decode.
            let permit = match &live {
                Some(_) => None,
                None => {
                    let t = Instant::now();
                    let Some(permit) = permits.acquire(&cancelled) else {
                        break Err(VideoFailure::Interrupted);
                    };
                    // Waiting for a permit is back-pressure from the stages after us.
                    metrics.blocked_output += t.elapsed();
                    Some(permit)
                }
            };
            let t = Instant::now();
            let next = decoder.next_frame();
            metrics.record_busy(t);
            let decoded: DecodedFrame = match next {
                Ok(Some(decoded)) => decoded,
                // A live read stopped by Ctrl-C ends like the stream.
                _ if cancelled() => break Err(VideoFailure::Interrupted),
                Ok(None) => break Ok(()),
                Err(e) => break Err(VideoFailure::Decode(Arc::new(e))),
            };
            metrics.record_latency(t.elapsed());
            let permit = match (&live, permit) {
                (Some(stats), _) => {
                    stats.received.fetch_add(1, Ordering::SeqCst);
                    stats
                        .reconnects
                        .store(decoder.reconnects(), Ordering::SeqCst);
                    match permits.try_acquire() {
                        Some(p) => p,
                        None => {
                            if stats.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
                                tracing::warn!(
                                    "{}: the pipeline is behind the live stream: dropping frames (from frame {})",
                                    meta.job.name,
                                    decoded.number
                                );
                            }
                            continue;
                        }
                    }
                }
                (None, Some(p)) => p,
                (None, None) => unreachable!("a permit is taken before decoding"),
            };
            metrics.items += 1;
            metrics.batches += 1;
            let now = Instant::now();
            let frame = Frame {
                video: meta.clone(),
                index,
                decoded,
                persons: Vec::new(),
                reference_image: None,
                entered_stage: now,
                decoded_at: now,
                _permit: Some(permit),
            };
            index += 1;
            if !send(Msg::Frame(Box::new(frame)), &mut metrics) {
                return finish(metrics, started);
            }
        };
        if let Some(stats) = &live {
            stats
                .reconnects
                .store(decoder.reconnects(), Ordering::SeqCst);
            let (received, dropped, reconnects) = stats.snapshot();
            if dropped > 0 {
                tracing::warn!(
                    "{}: dropped {dropped} of {received} frames ({:.1}%) to keep up with the live stream; {reconnects} reconnection(s)",
                    meta.job.name,
                    100.0 * dropped as f64 / received.max(1) as f64
                );
            }
        }
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
