//! The source: decodes the planned videos, several at once when asked, and sends their
//! frames into one channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{SendTimeoutError, Sender};

use crate::pipeline::messages::{Frame, LiveStats, Msg, VideoFailure, VideoMeta};
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
    /// Videos decoded at once, in order; `None`: every live input at once, and the files one
    /// after another beside them.
    pub concurrent: Option<usize>,
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

/// How the inputs are spread over decoding threads: each lane is a queue of videos that
/// `threads` threads take from in order, one video per thread at a time.
struct Lane {
    queue: Mutex<VecDeque<PlannedVideo>>,
    threads: usize,
}

/// The lanes for `concurrent` inputs at once (`None`: every live input on a thread of its
/// own, the files one after another on one more).
fn lanes(videos: Vec<PlannedVideo>, concurrent: Option<usize>) -> Vec<Lane> {
    let lane = |videos: Vec<PlannedVideo>, threads: usize| Lane {
        threads: threads.min(videos.len()),
        queue: Mutex::new(videos.into()),
    };
    let lanes = match concurrent {
        Some(n) => vec![lane(videos, n.max(1))],
        None => {
            let (live, files): (Vec<_>, Vec<_>) =
                videos.into_iter().partition(|v| v.meta.live.is_some());
            let mut lanes: Vec<Lane> = live.into_iter().map(|v| lane(vec![v], 1)).collect();
            lanes.push(lane(files, 1));
            lanes
        }
    };
    lanes.into_iter().filter(|l| l.threads > 0).collect()
}

/// Decodes the videos, `settings.concurrent` of them at once, each on a thread of its own:
/// their frames go into `tx` interleaved, each video's in order between its `Start` and its
/// `End`. Each frame holds a permit, so no more than the configured number of frames exist
/// at once, and each open input holds at most its share of them.
pub fn run_source(
    videos: Vec<PlannedVideo>,
    settings: SourceSettings,
    permits: FramePermits,
    cancel: Arc<AtomicBool>,
    tx: Sender<Msg>,
) -> StageMetrics {
    let lanes = lanes(videos, settings.concurrent);
    let decoders = Decoders {
        settings: &settings,
        permits: &permits,
        cancel: &cancel,
        tx: &tx,
    };
    let per_thread: Vec<StageMetrics> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .iter()
            .flat_map(|lane| (0..lane.threads).map(move |_| lane))
            .map(|lane| scope.spawn(|| decoders.run_lane(lane)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut metrics = StageMetrics::new("decode");
    for m in per_thread {
        metrics.merge(m);
    }
    metrics
}

/// What every decoding thread shares.
#[derive(Clone, Copy)]
struct Decoders<'a> {
    settings: &'a SourceSettings,
    permits: &'a FramePermits,
    cancel: &'a Arc<AtomicBool>,
    tx: &'a Sender<Msg>,
}

impl Decoders<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn send(&self, msg: Msg, metrics: &mut StageMetrics) -> bool {
        let t = Instant::now();
        let ok = self.tx.send(msg).is_ok();
        metrics.blocked_output += t.elapsed();
        ok
    }

    /// Takes the lane's videos one after another until it is empty, the run is cancelled or
    /// the chain is gone; returns this thread's metrics.
    fn run_lane(&self, lane: &Lane) -> StageMetrics {
        let mut metrics = StageMetrics::new("decode");
        let started = Instant::now();
        while !self.cancelled() {
            let next = lane.queue.lock().map(|mut q| q.pop_front());
            let Ok(Some(planned)) = next else { break };
            if !self.run_video(planned, &mut metrics) {
                break;
            }
        }
        finish(metrics, started)
    }

    /// Decodes one video from its `Start` to its `End`; false when the chain is gone.
    fn run_video(&self, planned: PlannedVideo, metrics: &mut StageMetrics) -> bool {
        let settings = self.settings;
        let mut meta = planned.meta;
        let decoder = match planned.problem {
            Some(p) => Err(VideoFailure::Plan(p)),
            None => open(&meta.job, settings, self.cancel)
                .map_err(|e| VideoFailure::Decode(Arc::new(e))),
        };
        let mut decoder = match decoder {
            Ok(d) => d,
            Err(problem) => {
                let meta = Arc::new(meta);
                return self.send(Msg::Start(meta.clone()), metrics)
                    && self.send(Msg::End(meta, Err(problem)), metrics);
            }
        };
        meta.info = decoder.info().clone();
        let meta = Arc::new(meta);
        if !self.send(Msg::Start(meta.clone()), metrics) {
            return false;
        }
        // This video's share of the frame permits, given back at its end.
        let permits = self.permits.open_input();
        let cancelled = || self.cancelled();
        let mut index = 0u64;
        let started_video = Instant::now();
        let live = meta.live.clone();
        let frame_interval = Duration::from_secs_f64(1.0 / meta.info.fps.clamp(5.0, 100.0));
        let outcome = loop {
            if cancelled() {
                break Err(VideoFailure::Interrupted);
            }
            if settings.max_frames.is_some_and(|max| index >= max) {
                break Ok(());
            }
            if settings
                .duration
                .is_some_and(|d| started_video.elapsed() >= d)
            {
                meta.cut_short.store(true, Ordering::SeqCst);
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
            let number = decoded.number;
            let drop_frame = |stats: &LiveStats| {
                if stats.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
                    tracing::warn!(
                        "{}: the pipeline is behind the live stream: dropping frames (from frame {number})",
                        meta.job.name,
                    );
                }
            };
            let permit = match (&live, permit) {
                (Some(stats), _) => {
                    stats.received.fetch_add(1, Ordering::SeqCst);
                    stats
                        .reconnects
                        .store(decoder.reconnects(), Ordering::SeqCst);
                    match permits.try_acquire() {
                        Some(p) => p,
                        None => {
                            drop_frame(stats);
                            continue;
                        }
                    }
                }
                (None, Some(p)) => p,
                (None, None) => unreachable!("a permit is taken before decoding"),
            };
            let now = Instant::now();
            let frame = Frame {
                video: meta.clone(),
                index,
                decoded,
                persons: Vec::new(),
                reference_image: None,
                entered_stage: now,
                decoded_at: now,
                on_device: None,
                _permit: Some(permit),
            };
            let msg = Msg::Frame(Box::new(frame));
            match &live {
                // Live: a channel still full after a frame's interval drops the frame like a
                // missing permit. Waiting longer would stop reading the stream, whose frames
                // would then queue unseen in the connection (latency nobody measures), and
                // would let one stream take the channel from the others. Up to the interval,
                // a burst (the frames FFmpeg read while probing come at once) is absorbed.
                Some(stats) => {
                    let t = Instant::now();
                    let sent = self.tx.send_timeout(msg, frame_interval);
                    metrics.blocked_output += t.elapsed();
                    match sent {
                        Ok(()) => {}
                        Err(SendTimeoutError::Timeout(_)) => {
                            drop_frame(stats);
                            continue;
                        }
                        Err(SendTimeoutError::Disconnected(_)) => return false,
                    }
                }
                None => {
                    if !self.send(msg, metrics) {
                        return false;
                    }
                }
            }
            metrics.items += 1;
            metrics.batches += 1;
            index += 1;
        };
        // Its frames still in flight keep their permits; the share goes to the others now.
        drop(permits);
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
        self.send(Msg::End(meta, outcome), metrics)
    }
}

fn finish(mut metrics: StageMetrics, started: Instant) -> StageMetrics {
    metrics.busy = started
        .elapsed()
        .saturating_sub(metrics.wait_input + metrics.blocked_output);
    metrics
}
