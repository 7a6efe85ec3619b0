//! Live sources through FFmpeg: network streams (`rtsp://`, `http(s)://`, HLS, `srt://`,
//! `udp://`, ...) and webcams, opened with per-source FFmpeg options, bounded in time by an
//! interrupt callback (a dead server never hangs the run, and Ctrl-C stops a blocked read), and
//! reconnected with backoff when they drop. Frames are numbered from the stream's timestamps;
//! after a reconnect the numbering goes on from the last frame.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;

use super::decode::{init, DecodedFrame, FrameDecoder, FrameNumbering, RgbConverter, StreamInfo};
use super::discover::{redact, SourceKind, VideoJob};
use super::VideoError;

/// Reconnection after a live stream drops (a read error, a stall, or its end).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    /// Attempts after each drop before the stream is taken as ended (0: never reconnect).
    pub attempts: u32,
    /// Wait before the first attempt; doubled after each failed one.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// How a live source is opened and read.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// FFmpeg options (`rtsp_transport`, `rw_timeout`, `buffer_size`, ...) given as the options
    /// dictionary when the source is opened.
    pub ffmpeg_options: Vec<(String, String)>,
    /// Longest wait for the source to open, or for its next packet once open.
    pub timeout: Duration,
    /// What to do when the stream drops.
    pub reconnect: Reconnect,
    /// Decoder threads (slice threading, which adds no delay); 0 picks one per core.
    pub decode_threads: usize,
    /// Set (by Ctrl-C) to stop waiting at once.
    pub cancel: Arc<AtomicBool>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            ffmpeg_options: Vec::new(),
            timeout: Duration::from_secs(10),
            reconnect: Reconnect::default(),
            decode_threads: 0,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What the interrupt callback watches: the cancel flag and the deadline of the current open
/// or read.
struct Watch {
    epoch: Instant,
    deadline_ms: AtomicU64,
    cancel: Arc<AtomicBool>,
}

impl Watch {
    fn arm(&self, timeout: Duration) {
        let at = self.epoch.elapsed() + timeout;
        self.deadline_ms
            .store(at.as_millis() as u64, Ordering::SeqCst);
    }

    fn expired(&self) -> bool {
        self.epoch.elapsed().as_millis() as u64 > self.deadline_ms.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn should_stop(&self) -> bool {
        self.cancelled() || self.expired()
    }
}

/// Why a live source could not be opened or read on.
#[derive(Debug, thiserror::Error)]
enum StreamFault {
    #[error("no data within {0:.1} s (input.timeout_s)")]
    TimedOut(f64),
    #[error("stopped")]
    Cancelled,
    #[error("{what}: {source}")]
    Ffmpeg {
        what: &'static str,
        source: ffmpeg::Error,
    },
    #[error("it has no video stream")]
    NoVideo,
    #[error("FFmpeg has no `{0}` input (a build without libavdevice?)")]
    NoFormat(String),
    #[error("the URL contains a NUL byte")]
    Nul,
    #[error("the stream ended")]
    Ended,
    #[error("the decoder fails on every packet")]
    Undecodable,
}

/// The fault an FFmpeg error stands for: an interrupted call is a timeout or a cancel.
fn fault(what: &'static str, e: ffmpeg::Error, watch: &Watch, timeout: Duration) -> StreamFault {
    if watch.cancelled() {
        StreamFault::Cancelled
    } else if matches!(e, ffmpeg::Error::Exit) || watch.expired() {
        StreamFault::TimedOut(timeout.as_secs_f64())
    } else {
        StreamFault::Ffmpeg { what, source: e }
    }
}

/// One open connection to the source.
struct Connection {
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    time_base: f64,
    fps: f64,
    eof_sent: bool,
}

fn decode_threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// Opens the source, bounded by `options.timeout` and the cancel flag.
fn connect(
    url: &str,
    shown: &str,
    format: Option<&str>,
    options: &StreamOptions,
    watch: &Arc<Watch>,
) -> Result<Connection, StreamFault> {
    use ffmpeg::ffi;
    let c_url = CString::new(url).map_err(|_| StreamFault::Nul)?;
    let input_format = match format {
        Some(name) => {
            let c_name = CString::new(name).map_err(|_| StreamFault::Nul)?;
            // SAFETY: a plain lookup by a NUL-terminated name.
            let found = unsafe { ffi::av_find_input_format(c_name.as_ptr()) };
            if found.is_null() {
                return Err(StreamFault::NoFormat(name.into()));
            }
            found
        }
        None => std::ptr::null(),
    };
    let mut dict = ffmpeg::Dictionary::new();
    for (key, value) in &options.ffmpeg_options {
        dict.set(key, value);
    }
    let timeout = options.timeout;
    watch.arm(timeout);
    // SAFETY: as ffmpeg-next's `format::input_with_interrupt_and_dictionary`, with an input
    // format: the context is allocated here and its interrupt callback set before opening; on
    // failure FFmpeg frees the context (open) or we close it (stream info); on success `Input`
    // owns it and the callback's closure (dropped after the context is closed).
    let input = unsafe {
        let mut ps = ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err(StreamFault::Ffmpeg {
                what: "cannot open it",
                source: ffmpeg::Error::Other {
                    errno: ffmpeg::util::error::ENOMEM,
                },
            });
        }
        let w = watch.clone();
        let interrupt = ffmpeg::util::interrupt::new(Box::new(move || w.should_stop()));
        (*ps).interrupt_callback = interrupt.interrupt;
        let mut opts = dict.disown();
        let r = ffi::avformat_open_input(&mut ps, c_url.as_ptr(), input_format, &mut opts);
        let unused = ffmpeg::Dictionary::own(opts);
        if r != 0 {
            return Err(fault(
                "cannot open it",
                ffmpeg::Error::from(r),
                watch,
                timeout,
            ));
        }
        for (key, _) in unused.iter() {
            tracing::warn!("{shown}: FFmpeg did not use the option `{key}` (input.ffmpeg_options)");
        }
        watch.arm(timeout);
        let r = ffi::avformat_find_stream_info(ps, std::ptr::null_mut());
        if r < 0 {
            ffi::avformat_close_input(&mut ps);
            return Err(fault(
                "cannot read its stream information",
                ffmpeg::Error::from(r),
                watch,
                timeout,
            ));
        }
        ffmpeg::format::context::Input::wrap_with_interrupt(ps, interrupt.guard)
    };
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or(StreamFault::NoVideo)?;
    let stream_index = stream.index();
    let rate =
        |r: ffmpeg::Rational| (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r));
    let fps = rate(stream.avg_frame_rate())
        .or_else(|| rate(stream.rate()))
        .filter(|f| *f < 1000.0)
        .unwrap_or(25.0);
    let time_base = f64::from(stream.time_base());
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(
        |source| StreamFault::Ffmpeg {
            what: "bad codec parameters",
            source,
        },
    )?;
    // Frame threading holds frames back (one per thread); slices do not.
    ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Slice,
        count: decode_threads(options.decode_threads),
        ..Default::default()
    });
    ctx.set_flags(ffmpeg::codec::Flags::LOW_DELAY);
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|source| StreamFault::Ffmpeg {
            what: "no decoder for its video codec",
            source,
        })?;
    Ok(Connection {
        input,
        stream_index,
        decoder,
        time_base,
        fps,
        eof_sent: false,
    })
}

/// Numbering within one connection: the stream's own timestamps, shifted to follow the frames
/// of the connections before.
struct Segment {
    numbering: FrameNumbering,
    first_ts: Option<i64>,
    base_number: u64,
    base_pts: f64,
    time_base: f64,
    fps: f64,
}

impl Segment {
    fn new(conn: &Connection, last: Option<(u64, f64)>) -> Self {
        let (base_number, base_pts) = match last {
            Some((n, pts)) => (n + 1, pts + 1.0 / conn.fps),
            None => (0, 0.0),
        };
        Self {
            numbering: FrameNumbering::new(conn.time_base, conn.fps),
            first_ts: None,
            base_number,
            base_pts,
            time_base: conn.time_base,
            fps: conn.fps,
        }
    }

    /// The frame's number and time (seconds from the first frame of the stream).
    fn place(&mut self, ts: Option<i64>) -> (u64, f64) {
        let (n, _) = self.numbering.next(ts);
        if self.first_ts.is_none() {
            self.first_ts = ts;
        }
        let relative = match (ts, self.first_ts) {
            (Some(t), Some(first)) => ((t - first) as f64 * self.time_base).max(0.0),
            _ => n as f64 / self.fps,
        };
        (self.base_number + n, self.base_pts + relative)
    }
}

/// Packets in a row the decoder may refuse before the connection is taken as broken.
const MAX_ERRORS_IN_A_ROW: u64 = 1000;

/// Frames of a live source, reconnecting when it drops.
pub struct StreamDecoder {
    url: String,
    shown: String,
    name: String,
    format: Option<String>,
    options: StreamOptions,
    watch: Arc<Watch>,
    conn: Option<Connection>,
    segment: Segment,
    frame: ffmpeg::frame::Video,
    rgb: RgbConverter,
    info: StreamInfo,
    last: Option<(u64, f64)>,
    reconnects: u64,
    corrupt_packets: u64,
    errors_in_a_row: u64,
}

impl StreamDecoder {
    /// Opens a [`SourceKind::Stream`] job. The first connection is not retried: a wrong URL
    /// or a server that is not there fails at once, with FFmpeg's reason.
    pub fn open(job: &VideoJob, options: StreamOptions) -> Result<Self, VideoError> {
        init();
        let SourceKind::Stream { url, format } = &job.kind else {
            return Err(VideoError::Stream {
                url: job.path().display().to_string(),
                message: "not a live source".into(),
            });
        };
        let shown = redact(url);
        let watch = Arc::new(Watch {
            epoch: Instant::now(),
            deadline_ms: AtomicU64::new(u64::MAX),
            cancel: options.cancel.clone(),
        });
        let conn = connect(url, &shown, format.as_deref(), &options, &watch).map_err(|e| {
            VideoError::Stream {
                url: shown.clone(),
                message: e.to_string(),
            }
        })?;
        let segment = Segment::new(&conn, None);
        let info = StreamInfo {
            fps: conn.fps,
            frames_hint: None,
        };
        Ok(Self {
            url: url.clone(),
            shown,
            name: job.name.clone(),
            format: format.clone(),
            options,
            watch,
            conn: Some(conn),
            segment,
            frame: ffmpeg::frame::Video::empty(),
            rgb: RgbConverter::default(),
            info,
            last: None,
            reconnects: 0,
            corrupt_packets: 0,
            errors_in_a_row: 0,
        })
    }

    /// Decodes the next frame of the open connection into `self.frame`.
    fn pull(&mut self) -> Result<(), StreamFault> {
        let timeout = self.options.timeout;
        let Some(conn) = self.conn.as_mut() else {
            return Err(StreamFault::Ended);
        };
        loop {
            match conn.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    self.errors_in_a_row = 0;
                    return Ok(());
                }
                Err(ffmpeg::Error::Eof) => return Err(StreamFault::Ended),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(ffmpeg::Error::InvalidData) if self.errors_in_a_row < MAX_ERRORS_IN_A_ROW => {
                    self.corrupt_packets += 1;
                    self.errors_in_a_row += 1;
                    continue;
                }
                Err(ffmpeg::Error::InvalidData) => return Err(StreamFault::Undecodable),
                Err(source) => {
                    return Err(StreamFault::Ffmpeg {
                        what: "the decoder failed",
                        source,
                    })
                }
            }
            if conn.eof_sent {
                return Err(StreamFault::Ended);
            }
            let mut packet = ffmpeg::Packet::empty();
            self.watch.arm(timeout);
            match packet.read(&mut conn.input) {
                Ok(()) => {
                    if packet.stream() != conn.stream_index {
                        continue;
                    }
                    match conn.decoder.send_packet(&packet) {
                        Ok(()) => {}
                        Err(ffmpeg::Error::InvalidData)
                            if self.errors_in_a_row < MAX_ERRORS_IN_A_ROW =>
                        {
                            self.corrupt_packets += 1;
                            self.errors_in_a_row += 1;
                        }
                        Err(ffmpeg::Error::InvalidData) => return Err(StreamFault::Undecodable),
                        Err(source) => {
                            return Err(StreamFault::Ffmpeg {
                                what: "the decoder refused a packet",
                                source,
                            })
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    // Frames still in the decoder come out before it reports the end.
                    let _ = conn.decoder.send_eof();
                    conn.eof_sent = true;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(fault("cannot read on", e, &self.watch, timeout)),
            }
        }
    }

    /// Waits `wait`, in short slices so that Ctrl-C is not kept waiting; false when cancelled.
    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.watch.cancelled() {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.watch.cancelled()
    }

    /// Reconnects after `why` with backoff; false when every attempt failed (or Ctrl-C).
    fn reconnect(&mut self, mut why: StreamFault) -> bool {
        let policy = self.options.reconnect.clone();
        let mut wait = policy.initial_backoff;
        for attempt in 1..=policy.attempts {
            tracing::warn!(
                "{}: {why}; reconnecting in {:.1} s (attempt {attempt} of {})",
                self.shown,
                wait.as_secs_f64(),
                policy.attempts
            );
            if !self.sleep(wait) {
                return false;
            }
            match connect(
                &self.url,
                &self.shown,
                self.format.as_deref(),
                &self.options,
                &self.watch,
            ) {
                Ok(conn) => {
                    self.segment = Segment::new(&conn, self.last);
                    self.conn = Some(conn);
                    self.reconnects += 1;
                    tracing::warn!(
                        "{}: reconnected; the video goes on from frame {}",
                        self.shown,
                        self.segment.base_number
                    );
                    return true;
                }
                Err(StreamFault::Cancelled) => return false,
                Err(e) => why = e,
            }
            wait = (wait * 2).min(policy.max_backoff);
        }
        if policy.attempts > 0 {
            tracing::warn!(
                "{}: {why}; gave up after {} reconnection attempt(s): the video ends here",
                self.shown,
                policy.attempts
            );
        } else {
            tracing::warn!("{}: {why}; the video ends here", self.shown);
        }
        false
    }
}

impl FrameDecoder for StreamDecoder {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        loop {
            if self.conn.is_none() {
                return Ok(None);
            }
            match self.pull() {
                Ok(()) => break,
                Err(StreamFault::Cancelled) => return Ok(None),
                Err(why) => {
                    self.conn = None;
                    if !self.reconnect(why) {
                        return Ok(None);
                    }
                }
            }
        }
        let (mut number, mut pts) = self.segment.place(self.frame.timestamp());
        if let Some((last_number, last_pts)) = self.last {
            number = number.max(last_number + 1);
            if pts <= last_pts {
                pts = last_pts + 1.0 / self.segment.fps;
            }
        }
        self.last = Some((number, pts));
        let image = self
            .rgb
            .convert(&self.frame)
            .map_err(|e| VideoError::Stream {
                url: self.shown.clone(),
                message: format!("frame {number}: cannot convert it to RGB: {e}"),
            })?;
        Ok(Some(DecodedFrame {
            image,
            number,
            pts,
            file_name: self.name.clone(),
        }))
    }

    fn reconnects(&self) -> u64 {
        self.reconnects
    }
}

impl Drop for StreamDecoder {
    fn drop(&mut self) {
        if self.corrupt_packets > 0 {
            tracing::warn!(
                "{}: skipped {} corrupt packet(s)",
                self.shown,
                self.corrupt_packets
            );
        }
    }
}
