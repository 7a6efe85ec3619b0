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
    pub image: RgbImage,
    /// Frame number: the file number in an image folder, the decode index in a video.
    pub number: u64,
    /// Presentation time in seconds from the start of the video.
    pub pts: f64,
    /// The file the frame was decoded from.
    pub file_name: String,
}

/// What is known about a video before its frames are decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
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
struct RgbConverter {
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    rgb: Option<ffmpeg::frame::Video>,
}

impl RgbConverter {
    fn convert(&mut self, frame: &ffmpeg::frame::Video) -> Result<RgbImage, ffmpeg::Error> {
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
    fn info(&self) -> &StreamInfo;
    /// The next frame, `Ok(None)` at the end.
    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError>;
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

fn describe_open_error(e: ffmpeg::Error) -> String {
    match e {
        ffmpeg::Error::InvalidData => {
            "FFmpeg cannot read it: not a video/image it knows, or the file is damaged (truncated?)"
                .into()
        }
        e => format!("FFmpeg cannot open it: {e}"),
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
        message,
    };
    let input = ffmpeg::format::input(&path).map_err(|e| open_err(describe_open_error(e)))?;
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

struct VideoFileDecoder {
    path: PathBuf,
    file_name: String,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    frame: ffmpeg::frame::Video,
    rgb: RgbConverter,
    info: StreamInfo,
    decoded: u64,
    eof_sent: bool,
    corrupt_packets: u64,
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
            info: StreamInfo { fps, frames_hint },
            decoded: 0,
            eof_sent: false,
            corrupt_packets: 0,
        })
    }

    fn error(&self, message: String) -> VideoError {
        VideoError::Decode {
            path: self.path.clone(),
            message,
        }
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

impl FrameDecoder for VideoFileDecoder {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let image = self
                        .rgb
                        .convert(&self.frame)
                        .map_err(|e| self.error(format!("frame {}: {e}", self.decoded)))?;
                    let pts = match self.frame.timestamp() {
                        Some(ts) => ts as f64 * self.time_base,
                        None => self.decoded as f64 / self.info.fps,
                    };
                    let number = self.decoded;
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
                        Ok(()) => {}
                        Err(ffmpeg::Error::InvalidData) => self.corrupt_packets += 1,
                        Err(e) => return Err(self.error(format!("decoder rejected a packet: {e}"))),
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.decoder
                        .send_eof()
                        .map_err(|e| self.error(format!("cannot flush the decoder: {e}")))?;
                    self.eof_sent = true;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    return Err(self.error(format!(
                        "cannot read past frame {}: {e} (truncated or damaged file?)",
                        self.decoded
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
