//! Decoding with FFmpeg: video files, single images and numbered-image folders, to RGB.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::discover::{SourceKind, VideoJob};
use super::VideoError;
use crate::image::RgbImage;

/// One decoded frame and where it came from.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    /// The picture as packed RGB, turned upright (display matrix for videos, EXIF for JPEG/PNG).
    pub image: RgbImage,
    /// Frame number: the file number in an image folder; in a video, the index its timestamp
    /// gives (frames lost in a damaged file leave a gap).
    pub number: u64,
    /// Presentation time in seconds from the start of the video.
    pub pts: f64,
    /// The file the frame was decoded from.
    pub file_name: String,
}

/// What is known about a video before its frames are decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// Frames per second: the container's average rate (25 when it declares none); for images,
    /// the configured image rate.
    pub fps: f64,
    /// Frame count declared by the container (or the folder listing), if any.
    pub frames_hint: Option<u64>,
}

/// Registers FFmpeg once and keeps its log to errors (swscale warns about JPEG's YUVJ
/// formats on every image otherwise).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

fn threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// Converts decoded frames to packed RGB, rebuilding the converter if the size or format
/// changes mid-stream.
#[derive(Default)]
pub(super) struct RgbConverter {
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    rgb: Option<ffmpeg::frame::Video>,
}

impl RgbConverter {
    pub(super) fn convert(
        &mut self,
        frame: &ffmpeg::frame::Video,
    ) -> Result<RgbImage, ffmpeg::Error> {
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        if width == 0 || height == 0 {
            return Err(ffmpeg::Error::InvalidData);
        }
        let stale = !matches!(&self.scaler, Some((_, f, w, h)) if *f == format && *w == width && *h == height);
        if stale {
            let ctx = scaling::Context::get(
                format,
                width,
                height,
                Pixel::RGB24,
                width,
                height,
                scaling::Flags::BICUBIC,
            )?;
            self.scaler = Some((ctx, format, width, height));
            self.rgb = Some(ffmpeg::frame::Video::empty());
        }
        let (ctx, ..) = self.scaler.as_mut().expect("scaler set above");
        let rgb = self.rgb.as_mut().expect("frame set above");
        ctx.run(frame, rgb)?;
        // Rows may be padded past width * 3.
        let stride = rgb.stride(0);
        let row = width as usize * 3;
        let data = rgb.data(0);
        let mut image = RgbImage {
            width,
            height,
            data: Vec::with_capacity(row * height as usize),
        };
        for y in 0..height as usize {
            image
                .data
                .extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(image)
    }
}

/// Frames of one job, in order.
pub trait FrameDecoder {
    /// Frame rate and declared frame count, known once the input is open.
    fn info(&self) -> &StreamInfo;
    /// The next frame, `Ok(None)` at the end.
    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError>;
    /// How many times a live stream was reconnected after it dropped (0 for files).
    fn reconnects(&self) -> u64 {
        0
    }
}

/// Opens the decoder for a job. `image_fps` is the rate given to image folders.
pub fn open(
    job: &VideoJob,
    image_fps: f64,
    decode_threads: usize,
) -> Result<Box<dyn FrameDecoder>, VideoError> {
    init();
    match &job.kind {
        SourceKind::VideoFile(path) => Ok(Box::new(VideoFileDecoder::open(path, decode_threads)?)),
        SourceKind::SingleImage(path) => Ok(Box::new(ImageListDecoder::new(
            vec![(0, path.clone())],
            image_fps,
        ))),
        SourceKind::ImageFolder { files, .. } => {
            Ok(Box::new(ImageListDecoder::new(files.clone(), image_fps)))
        }
        SourceKind::Stream { .. } => Ok(Box::new(super::stream::StreamDecoder::open(
            job,
            super::stream::StreamOptions {
                decode_threads,
                ..Default::default()
            },
        )?)),
        SourceKind::Invalid { path, message } => Err(VideoError::Folder {
            path: path.clone(),
            message: message.clone(),
        }),
    }
}

fn check_regular_file(path: &Path) -> Result<(), VideoError> {
    let meta = std::fs::metadata(path).map_err(|source| VideoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() == 0 {
        return Err(VideoError::Open {
            path: path.to_path_buf(),
            message: "the file is empty (0 bytes)".into(),
        });
    }
    Ok(())
}

/// Why FFmpeg could not open a file: what follows the path in [`VideoError::Open`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum OpenError {
    #[cfg(not(unix))]
    #[error("its name is not valid Unicode, which FFmpeg cannot open on this system")]
    NameNotUnicode,
    #[error("its name contains a NUL byte")]
    NameWithNul,
    #[error(
        "FFmpeg cannot read it: not a video/image it knows, or the file is damaged (truncated?)"
    )]
    InvalidData,
    #[error("the file ends before its header does (truncated?)")]
    Eof,
    #[error("FFmpeg cannot open it: {0}")]
    Ffmpeg(ffmpeg::Error),
}

impl From<ffmpeg::Error> for OpenError {
    fn from(e: ffmpeg::Error) -> Self {
        match e {
            ffmpeg::Error::InvalidData => Self::InvalidData,
            ffmpeg::Error::Eof => Self::Eof,
            e => Self::Ffmpeg(e),
        }
    }
}

/// The path as FFmpeg's file protocol takes it: the path's own bytes (FFmpeg accepts any on
/// Unix; ffmpeg-next's `format::input` panics on a name that is not UTF-8), relative paths
/// given as `./...` so that a name such as `a:b.mp4` is not read as protocol `a`.
fn ffmpeg_path(path: &Path) -> Result<std::ffi::CString, OpenError> {
    let path = if path.is_relative() {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    };
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or(OpenError::NameNotUnicode)?
        .as_bytes()
        .to_vec();
    std::ffi::CString::new(bytes).map_err(|_| OpenError::NameWithNul)
}

/// Opens a container and reads its stream information, as `ffmpeg::format::input` does, but
/// from the path's bytes (see [`ffmpeg_path`]).
fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, OpenError> {
    use ffmpeg::ffi;
    let c_path = ffmpeg_path(path)?;
    // SAFETY: the same calls as ffmpeg-next's `format::input`: on success the context is
    // owned by `Input` (closed on drop); on failure FFmpeg has freed it or we close it here.
    unsafe {
        let mut ps = std::ptr::null_mut();
        match ffi::avformat_open_input(
            &mut ps,
            c_path.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) {
            0 => match ffi::avformat_find_stream_info(ps, std::ptr::null_mut()) {
                r if r >= 0 => Ok(ffmpeg::format::context::Input::wrap(ps)),
                e => {
                    ffi::avformat_close_input(&mut ps);
                    Err(ffmpeg::Error::from(e).into())
                }
            },
            e => Err(ffmpeg::Error::from(e).into()),
        }
    }
}

/// Top-level box types that start an ISO base media file (mp4, mov, m4v, 3gp).
const ISO_FIRST_BOXES: [&[u8; 4]; 11] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"sidx", b"moof",
    b"uuid",
];

/// For an ISO base media file, how its top-level boxes run past the end of the file: the sure
/// sign of a cut-off copy, which FFmpeg reports only as "Invalid data", "End of file" or a
/// missing stream. `None` for a complete file or another format.
fn iso_truncation(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut pos = 0u64;
    while pos < len {
        file.seek(SeekFrom::Start(pos)).ok()?;
        let mut header = [0u8; 16];
        let got = file.by_ref().take(16).read(&mut header).ok()?;
        if got < 8 {
            return (pos > 0).then(|| format!("the file ends inside a box header at byte {pos}"));
        }
        let kind = &header[4..8];
        let plausible = kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
        if (pos == 0 && !ISO_FIRST_BOXES.iter().any(|k| k[..] == *kind)) || !plausible {
            return None;
        }
        let size = match u32::from_be_bytes(header[..4].try_into().ok()?) {
            0 => return None, // the box runs to the end of the file, however long
            1 if got >= 16 => u64::from_be_bytes(header[8..16].try_into().ok()?),
            1 => return Some(format!("the file ends inside a box header at byte {pos}")),
            n => u64::from(n),
        };
        if size < 8 {
            return None; // malformed, not cut
        }
        if pos + size > len {
            return Some(format!(
                "its `{}` box at byte {pos} declares {size} bytes, but the file ends {} bytes into it",
                String::from_utf8_lossy(kind),
                len - pos
            ));
        }
        pos += size;
    }
    None
}

/// `message`, with a note when the file appears truncated.
fn with_truncation(path: &Path, message: String) -> String {
    match iso_truncation(path) {
        Some(cut) => format!("the file appears truncated or damaged ({cut}): {message}"),
        None => message,
    }
}

/// Opens the best video stream of a file with frame threading switched on.
fn open_video_stream(
    path: &Path,
    decode_threads: usize,
) -> Result<
    (
        ffmpeg::format::context::Input,
        usize,
        ffmpeg::decoder::Video,
    ),
    VideoError,
> {
    check_regular_file(path)?;
    let open_err = |message: String| VideoError::Open {
        path: path.to_path_buf(),
        message: with_truncation(path, message),
    };
    let input = open_input(path).map_err(|e| open_err(e.to_string()))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| open_err("it has no video stream".into()))?;
    let index = stream.index();
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| open_err(format!("bad codec parameters: {e}")))?;
    ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: threads(decode_threads),
        ..Default::default()
    });
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|e| open_err(format!("no decoder for its video codec: {e}")))?;
    Ok((input, index, decoder))
}

/// A display matrix whose turn is not a multiple of 90 degrees: the frames are left as stored.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "its display matrix turns the picture by {angle:.1} degrees counter-clockwise, not a \
     multiple of 90; frames are left as stored"
)]
struct NotQuarterTurn {
    angle: f64,
}

/// How to turn decoded pictures upright, from the stream's display matrix (phones record in
/// the sensor's orientation and write the turn there). OpenCV's `VideoCapture` applies the
/// rotation by default (`CAP_PROP_ORIENTATION_AUTO`), so the reference sees upright frames. Like
/// OpenCV, only the matrix's angle (`av_display_rotation_get`) counts: a mirrored matrix is
/// read as the turn its angle says (a left-right mirror as 180 degrees), as the reference reads
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Orientation {
    CounterClockwise,
    HalfTurn,
    Clockwise,
}

impl Orientation {
    /// From FFmpeg's display matrix. `Ok(None)` when nothing is to be done; `Err` for a turn
    /// that is not a multiple of 90 degrees (OpenCV leaves those as stored too).
    fn from_display_matrix(m: &[i32; 9]) -> Result<Option<Self>, NotQuarterTurn> {
        let angle = display_rotation(m);
        let quarter = (angle / 90.0).round();
        if !angle.is_finite() || (angle - quarter * 90.0).abs() > 1.0 {
            return Err(NotQuarterTurn { angle });
        }
        Ok(match (quarter as i64).rem_euclid(4) {
            0 => None,
            1 => Some(Self::CounterClockwise),
            2 => Some(Self::HalfTurn),
            _ => Some(Self::Clockwise),
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::CounterClockwise => "turned 90 degrees counter-clockwise",
            Self::HalfTurn => "turned 180 degrees",
            Self::Clockwise => "turned 90 degrees clockwise",
        }
    }

    /// The picture turned; the EXIF orientation code that shows it so does the work.
    fn apply(&self, image: RgbImage) -> RgbImage {
        let exif = match self {
            Self::CounterClockwise => 8,
            Self::HalfTurn => 3,
            Self::Clockwise => 6,
        };
        crate::image::orientation::apply(image, exif)
    }
}

/// `av_display_rotation_get`: the counter-clockwise turn a display matrix applies, in degrees.
fn display_rotation(m: &[i32; 9]) -> f64 {
    let (a, b, c, d) = (m[0] as f64, m[1] as f64, m[3] as f64, m[4] as f64);
    let (s0, s1) = (a.hypot(c), b.hypot(d));
    if s0 == 0.0 || s1 == 0.0 {
        return f64::NAN;
    }
    -(b / s1).atan2(a / s0).to_degrees()
}

/// The display matrix of a stream, if it has one.
fn display_matrix(stream: &ffmpeg::format::stream::Stream) -> Option<[i32; 9]> {
    let side = stream
        .side_data()
        .find(|s| s.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)?;
    let bytes = side.data();
    let mut m = [0i32; 9];
    for (v, b) in m.iter_mut().zip(bytes.get(..36)?.chunks_exact(4)) {
        *v = i32::from_ne_bytes(b.try_into().ok()?);
    }
    Some(m)
}

/// How a frame's number relates to the frame before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The next number.
    Next,
    /// Numbers between the previous frame's and this one's have no frame.
    Gap,
    /// The timestamp is repeated or earlier than the previous frame's: numbered as the
    /// previous frame plus one.
    NotAfter,
}

/// Frame numbers from timestamps, so that frames a damaged file loses leave a gap instead of
/// renumbering every later frame. A frame's number is that of the last frame numbered from
/// its timestamp plus the time between them in frames: `round((pts - first_pts) * fps)` for a
/// constant-rate file, and no drift when the declared rate is a little off.
#[derive(Debug)]
pub(super) struct FrameNumbering {
    frames_per_tick: f64,
    /// The last frame numbered from its timestamp: `(number, timestamp)`.
    anchor: Option<(u64, i64)>,
    /// The last frame numbered: `(number, timestamp)`.
    last: Option<(u64, Option<i64>)>,
}

impl FrameNumbering {
    pub(super) fn new(time_base: f64, fps: f64) -> Self {
        Self {
            frames_per_tick: time_base * fps,
            anchor: None,
            last: None,
        }
    }

    pub(super) fn next(&mut self, ts: Option<i64>) -> (u64, Step) {
        let Some((prev, prev_ts)) = self.last else {
            self.last = Some((0, ts));
            self.anchor = ts.map(|t| (0, t));
            return (0, Step::Next);
        };
        let after = |(n, at): (u64, i64), t: i64| {
            let k = n as f64 + ((t - at) as f64 * self.frames_per_tick).round();
            (k > prev as f64 && k < u64::MAX as f64).then_some(k as u64)
        };
        let (number, step) = match ts {
            // Nothing to go by: the next number.
            None => (prev + 1, Step::Next),
            Some(t) => {
                // From the anchor, so one bad timestamp does not move the frames after it; else
                // from the previous frame, so that a timeline that restarts is followed. The
                // first timestamp after frames without one starts the count where it stands.
                let by_time = if self.anchor.is_none() && prev_ts.is_none() {
                    Some(prev + 1)
                } else {
                    self.anchor
                        .and_then(|a| after(a, t))
                        .or_else(|| prev_ts.and_then(|p| after((prev, p), t)))
                };
                match by_time {
                    Some(n) => {
                        self.anchor = Some((n, t));
                        (n, if n > prev + 1 { Step::Gap } else { Step::Next })
                    }
                    None => (prev + 1, Step::NotAfter),
                }
            }
        };
        self.last = Some((number, ts));
        (number, step)
    }
}

/// Warnings of one kind given one by one per video; more are summed up at the end.
const WARNINGS_PER_KIND: u64 = 10;

struct VideoFileDecoder {
    path: PathBuf,
    file_name: String,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    frame: ffmpeg::frame::Video,
    rgb: RgbConverter,
    orientation: Option<Orientation>,
    info: StreamInfo,
    numbering: FrameNumbering,
    /// Frames returned.
    decoded: u64,
    /// The last frame returned: `(number, pts)`.
    last: Option<(u64, f64)>,
    gaps: u64,
    missing_frames: u64,
    out_of_order: u64,
    eof_sent: bool,
    corrupt_packets: u64,
    /// Decoder errors since the last frame or packet taken, to stop a decoder that only fails.
    errors_in_a_row: u64,
}

impl VideoFileDecoder {
    fn open(path: &Path, decode_threads: usize) -> Result<Self, VideoError> {
        let (input, stream_index, decoder) = open_video_stream(path, decode_threads)?;
        let stream = input.stream(stream_index).expect("index from best()");
        let rate =
            |r: ffmpeg::Rational| (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r));
        let fps = rate(stream.avg_frame_rate())
            .or_else(|| rate(stream.rate()))
            .unwrap_or(25.0);
        let frames_hint = (stream.frames() > 0).then_some(stream.frames() as u64);
        let time_base = f64::from(stream.time_base());
        let orientation =
            match display_matrix(&stream).map(|m| Orientation::from_display_matrix(&m)) {
                Some(Ok(o)) => o,
                Some(Err(why)) => {
                    tracing::warn!("{}: {why}", path.display());
                    None
                }
                None => None,
            };
        if let Some(o) = orientation {
            tracing::debug!(
                "{}: frames {} (display matrix)",
                path.display(),
                o.describe()
            );
        }
        Ok(Self {
            file_name: path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            input,
            stream_index,
            time_base,
            decoder,
            frame: ffmpeg::frame::Video::empty(),
            rgb: RgbConverter::default(),
            orientation,
            info: StreamInfo { fps, frames_hint },
            numbering: FrameNumbering::new(time_base, fps),
            decoded: 0,
            last: None,
            gaps: 0,
            missing_frames: 0,
            out_of_order: 0,
            eof_sent: false,
            corrupt_packets: 0,
            errors_in_a_row: 0,
        })
    }

    fn error(&self, message: String) -> VideoError {
        VideoError::Decode {
            path: self.path.clone(),
            message: with_truncation(&self.path, message),
        }
    }

    /// Numbers the frame just decoded and reports what its number says about the file.
    fn number_frame(&mut self, ts: Option<i64>) -> (u64, f64) {
        let (number, step) = self.numbering.next(ts);
        let pts = match ts {
            Some(ts) => ts as f64 * self.time_base,
            None => number as f64 / self.info.fps,
        };
        if let Some((prev, prev_pts)) = self.last {
            match step {
                Step::Next => {}
                Step::Gap => {
                    self.gaps += 1;
                    self.missing_frames += number - prev - 1;
                    if self.gaps <= WARNINGS_PER_KIND {
                        tracing::warn!(
                            "{}: frames {} to {} are missing ({} frame(s) lost between {prev_pts:.3} s and {pts:.3} s; the file is damaged there); the frames after keep their numbers",
                            self.path.display(),
                            prev + 1,
                            number - 1,
                            number - prev - 1
                        );
                    }
                }
                Step::NotAfter => {
                    self.out_of_order += 1;
                    if self.out_of_order <= WARNINGS_PER_KIND {
                        tracing::warn!(
                            "{}: the frame after frame {prev} has timestamp {pts:.3} s, not after {prev_pts:.3} s; numbered {number}",
                            self.path.display()
                        );
                    }
                }
            }
        }
        self.last = Some((number, pts));
        (number, pts)
    }

    /// Called at the end: fewer frames than the container declared means a cut-off file.
    fn check_complete(&self) -> Result<(), VideoError> {
        if self.corrupt_packets > 0 {
            tracing::warn!(
                "{}: skipped {} corrupt packet(s)",
                self.path.display(),
                self.corrupt_packets
            );
        }
        if self.gaps > WARNINGS_PER_KIND {
            tracing::warn!(
                "{}: {} gaps in all, {} frame(s) missing",
                self.path.display(),
                self.gaps,
                self.missing_frames
            );
        }
        if self.out_of_order > WARNINGS_PER_KIND {
            tracing::warn!(
                "{}: {} frames in all had a repeated or out-of-order timestamp",
                self.path.display(),
                self.out_of_order
            );
        }
        if let Some(declared) = self.info.frames_hint {
            // A little slack: edit lists can hide a frame or two at the start.
            let missing = declared.saturating_sub(self.decoded);
            if missing > (declared / 100).max(2) {
                return Err(self.error(format!(
                    "truncated: decoded {} of the {declared} frames the container declares",
                    self.decoded
                )));
            }
        }
        Ok(())
    }
}

/// Decoder errors in a row after which a video is given up.
const MAX_ERRORS_IN_A_ROW: u64 = 1000;

impl FrameDecoder for VideoFileDecoder {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    self.errors_in_a_row = 0;
                    let (number, pts) = self.number_frame(self.frame.timestamp());
                    let mut image = self
                        .rgb
                        .convert(&self.frame)
                        .map_err(|e| self.error(format!("frame {number}: {e}")))?;
                    if let Some(o) = self.orientation {
                        image = o.apply(image);
                    }
                    self.decoded += 1;
                    return Ok(Some(DecodedFrame {
                        image,
                        number,
                        pts,
                        file_name: self.file_name.clone(),
                    }));
                }
                Err(ffmpeg::Error::Eof) => {
                    self.check_complete()?;
                    return Ok(None);
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                // A damaged packet: the decoder goes on with the next (frame threads report it
                // late, here or while flushing).
                Err(ffmpeg::Error::InvalidData) if self.errors_in_a_row < MAX_ERRORS_IN_A_ROW => {
                    self.corrupt_packets += 1;
                    self.errors_in_a_row += 1;
                    continue;
                }
                Err(e) => return Err(self.error(format!("decoder failed: {e}"))),
            }
            if self.eof_sent {
                self.check_complete()?;
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    match self.decoder.send_packet(&packet) {
                        Ok(()) => self.errors_in_a_row = 0,
                        Err(ffmpeg::Error::InvalidData) => self.corrupt_packets += 1,
                        Err(e) => return Err(self.error(format!("decoder rejected a packet: {e}"))),
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    // The flush is queued even when decoding the last packets fails, so frames
                    // still come out after an InvalidData here.
                    match self.decoder.send_eof() {
                        Ok(()) => {}
                        Err(ffmpeg::Error::InvalidData) => self.corrupt_packets += 1,
                        Err(e) => return Err(self.error(format!("cannot flush the decoder: {e}"))),
                    }
                    self.eof_sent = true;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    return Err(self.error(format!(
                        "cannot read past frame {}: {e} (truncated or damaged file?)",
                        self.last.map_or(0, |(n, _)| n)
                    )))
                }
            }
        }
    }
}

/// Decodes a list of image files, one FFmpeg input per file (a gap in the numbering does not
/// end the stream, unlike FFmpeg's image2 demuxer).
struct ImageListDecoder {
    files: std::vec::IntoIter<(u64, PathBuf)>,
    first_number: Option<u64>,
    info: StreamInfo,
    rgb: RgbConverter,
}

impl ImageListDecoder {
    fn new(files: Vec<(u64, PathBuf)>, fps: f64) -> Self {
        Self {
            first_number: files.first().map(|f| f.0),
            info: StreamInfo {
                fps,
                frames_hint: Some(files.len() as u64),
            },
            files: files.into_iter(),
            rgb: RgbConverter::default(),
        }
    }
}

/// Decodes an image file: JPEG and PNG exactly as OpenCV's `imread` decodes them (the reference
/// reads PoseTrack's frames that way), other formats with FFmpeg.
fn decode_image(path: &Path, rgb: &mut RgbConverter) -> Result<RgbImage, VideoError> {
    match crate::image::read_still(path) {
        Ok(Some(decoded)) => {
            if let Some(warning) = decoded.warning {
                tracing::warn!("{}: {warning} (decoded as far as it goes)", path.display());
            }
            Ok(decoded.image)
        }
        Ok(None) => decode_image_ffmpeg(path, rgb),
        Err(e) => Err(e.into()),
    }
}

/// Decodes the single picture of an image file with FFmpeg.
fn decode_image_ffmpeg(path: &Path, rgb: &mut RgbConverter) -> Result<RgbImage, VideoError> {
    let (mut input, index, mut decoder) = open_video_stream(path, 1)?;
    let err = |message: String| VideoError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let mut frame = ffmpeg::frame::Video::empty();
    let mut eof = false;
    loop {
        match decoder.receive_frame(&mut frame) {
            Ok(()) => {
                return rgb
                    .convert(&frame)
                    .map_err(|e| err(format!("cannot convert to RGB: {e}")))
            }
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
            Err(ffmpeg::Error::Eof) => return Err(err("no picture could be decoded".into())),
            Err(e) => return Err(err(format!("cannot decode: {e}"))),
        }
        if eof {
            return Err(err("no picture could be decoded".into()));
        }
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) if packet.stream() == index => decoder
                .send_packet(&packet)
                .map_err(|e| err(format!("cannot decode: {e} (damaged image?)")))?,
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => {
                decoder.send_eof().map_err(|e| err(e.to_string()))?;
                eof = true;
            }
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        }
    }
}

impl FrameDecoder for ImageListDecoder {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        let Some((number, path)) = self.files.next() else {
            return Ok(None);
        };
        let image = decode_image(&path, &mut self.rgb)?;
        // Time follows the file number, so a gap shows as a jump in time.
        let pts = (number - self.first_number.unwrap_or(number)) as f64 / self.info.fps;
        Ok(Some(DecodedFrame {
            image,
            number,
            pts,
            file_name: path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(fps: f64, time_base: f64, ts: &[Option<i64>]) -> Vec<(u64, Step)> {
        let mut n = FrameNumbering::new(time_base, fps);
        ts.iter().map(|&t| n.next(t)).collect()
    }

    #[test]
    fn numbers_follow_timestamps_through_gaps_and_bad_stamps() {
        use Step::*;
        // 25 fps in milliseconds: frames 0, 1, 2, then 5 (3 and 4 lost).
        let got = numbers(
            25.0,
            1e-3,
            &[Some(0), Some(40), Some(80), Some(200), Some(240)],
        );
        assert_eq!(got, [(0, Next), (1, Next), (2, Next), (5, Gap), (6, Next)]);
        // A repeated stamp takes the next number; the frame after keeps its own.
        let got = numbers(25.0, 1e-3, &[Some(0), Some(40), Some(40), Some(120)]);
        assert_eq!(got, [(0, Next), (1, Next), (2, NotAfter), (3, Next)]);
        // A timeline that restarts is followed from the frame after the jump.
        let got = numbers(
            25.0,
            1e-3,
            &[Some(1000), Some(1040), Some(0), Some(40), Some(80)],
        );
        assert_eq!(
            got,
            [(0, Next), (1, Next), (2, NotAfter), (3, Next), (4, Next)]
        );
        // No timestamp: the next number.
        let got = numbers(25.0, 1e-3, &[Some(0), None, Some(80)]);
        assert_eq!(got, [(0, Next), (1, Next), (2, Next)]);
        let got = numbers(25.0, 1e-3, &[None, Some(500), Some(540), Some(620)]);
        assert_eq!(got, [(0, Next), (1, Next), (2, Next), (4, Gap)]);
        // Millisecond rounding of 29.97 fps (33/34 ms steps) over 10 minutes: no false gap.
        let ts: Vec<Option<i64>> = (0..18_000)
            .map(|i| Some((i as f64 * 1001.0 / 30.0).round() as i64))
            .collect();
        let got = numbers(30000.0 / 1001.0, 1e-3, &ts);
        assert!(got.iter().enumerate().all(|(i, &(n, _))| n == i as u64));
        // A declared rate 0.5% off the true one does not drift into gaps or repeats.
        let ts: Vec<Option<i64>> = (0..10_000).map(|i| Some(i * 40)).collect();
        let got = numbers(25.125, 1e-3, &ts);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, &(n, s))| n == i as u64 && s == Next));
    }

    fn matrix(a: i32, b: i32, c: i32, d: i32) -> [i32; 9] {
        let f = 1 << 16;
        [a * f, b * f, 0, c * f, d * f, 0, 0, 0, 1 << 30]
    }

    #[test]
    fn display_matrices_become_turns_and_mirrors() {
        // 2x1 picture: pixel values 0 and 1 (left, right).
        let img = RgbImage {
            width: 2,
            height: 1,
            data: vec![0, 0, 0, 1, 1, 1],
        };
        let turn = |m: [i32; 9]| {
            let o = Orientation::from_display_matrix(&m).unwrap().unwrap();
            let out = o.apply(img.clone());
            (
                out.width,
                out.height,
                out.data.iter().step_by(3).copied().collect::<Vec<u8>>(),
            )
        };
        // A matrix av_display_rotation_get reads as 90 (counter-clockwise): the right pixel
        // goes on top. (libavutil 57 gives the same 90 for this matrix.)
        assert_eq!(display_rotation(&matrix(0, -1, 1, 0)), 90.0);
        assert_eq!(turn(matrix(0, -1, 1, 0)), (1, 2, vec![1, 0]));
        assert_eq!(turn(matrix(0, 1, -1, 0)), (1, 2, vec![0, 1]));
        assert_eq!(turn(matrix(-1, 0, 0, -1)), (2, 1, vec![1, 0]));
        // A left-right mirror is read by its angle, 180 degrees, as OpenCV reads it; a
        // top-bottom mirror's angle is 0.
        assert_eq!(turn(matrix(-1, 0, 0, 1)), (2, 1, vec![1, 0]));
        assert_eq!(
            Orientation::from_display_matrix(&matrix(1, 0, 0, -1)),
            Ok(None)
        );
        assert_eq!(
            Orientation::from_display_matrix(&matrix(1, 0, 0, 1)),
            Ok(None)
        );
        // 45 degrees: left alone, with the reason.
        let m = [46341, -46341, 0, 46341, 46341, 0, 0, 0, 1 << 30];
        let e = Orientation::from_display_matrix(&m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("45.0 degrees"), "{e}");
    }
}
