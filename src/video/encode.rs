//! Writing the overlay video: RGB frames encoded to H.264 (or MPEG-4) in an mp4, written
//! under a temporary name and renamed when complete.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::VideoError;
use crate::image::RgbImage;

/// Which encoder to use (`render.codec`: `auto`, `h264`, `mpeg4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 when FFmpeg has an encoder for it, else MPEG-4 Part 2.
    Auto,
    /// H.264 (libx264 at `render.crf`, preset veryfast); an error if FFmpeg lacks the encoder.
    H264,
    /// MPEG-4 Part 2 at a bit rate set from the frame size and rate.
    Mpeg4,
}

/// Where an overlay goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OverlayTarget {
    /// An mp4 file, written under a temporary name and renamed when complete.
    File(PathBuf),
    /// A live stream to an FFmpeg output URL, sent as frames come (see [`stream_muxer`]).
    Stream(String),
}

/// The FFmpeg muxer a live overlay URL takes, by its scheme; `None` for other schemes.
pub fn stream_muxer(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "rtmp" | "rtmps" => Some("flv"),
        "rtsp" => Some("rtsp"),
        "rtp" => Some("rtp_mpegts"),
        "udp" | "tcp" | "srt" | "http" | "https" => Some("mpegts"),
        _ => None,
    }
}

/// An overlay being written. Call `finish` to complete it; dropping an unfinished file removes
/// its temporary file.
pub struct OverlayWriter {
    /// The file, or the stream's URL (for messages).
    path: PathBuf,
    /// The temporary file; `None` for a stream.
    tmp: Option<PathBuf>,
    output: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    scaler: scaling::Context,
    yuv: ffmpeg::frame::Video,
    rgb: ffmpeg::frame::Video,
    encoder_time_base: ffmpeg::Rational,
    width: u32,
    height: u32,
    next_pts: i64,
    finished: bool,
}

fn rational_fps(fps: f64) -> ffmpeg::Rational {
    // 1/1000 s precision is enough for 23.976 and friends.
    let num = (fps * 1000.0).round().max(1.0) as i32;
    ffmpeg::Rational::new(num, 1000).reduce()
}

impl OverlayWriter {
    /// Starts an mp4 file (written under a temporary name) or a live stream; odd sizes are
    /// cropped to even. `crf` is H.264's constant rate factor (lower is better quality), unused
    /// for MPEG-4.
    pub fn create(
        target: &OverlayTarget,
        width: u32,
        height: u32,
        fps: f64,
        codec: VideoCodec,
        crf: u32,
    ) -> Result<Self, VideoError> {
        super::decode::init();
        let path = match target {
            OverlayTarget::File(path) => path.clone(),
            OverlayTarget::Stream(url) => PathBuf::from(url),
        };
        let err = |message: String| VideoError::Encode {
            path: path.clone(),
            message,
        };
        // Encoders for 4:2:0 need even sizes.
        let (enc_w, enc_h) = (width & !1, height & !1);
        if enc_w == 0 || enc_h == 0 {
            return Err(err(format!("frame size {width}x{height} is too small")));
        }
        let (mut output, tmp) = match target {
            OverlayTarget::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let tmp = crate::fsutil::temp_path(path);
                let output = ffmpeg::format::output_as(&tmp, "mp4")
                    .map_err(|e| err(format!("mp4 muxer: {e}")))?;
                (output, Some(tmp))
            }
            OverlayTarget::Stream(url) => {
                let muxer = stream_muxer(url)
                    .ok_or_else(|| err("not a stream URL vidpose can send to".into()))?;
                let output = ffmpeg::format::output_as(url, muxer)
                    .map_err(|e| err(format!("cannot open the stream ({muxer}): {e}")))?;
                (output, None)
            }
        };
        let live = tmp.is_none();
        let h264 = ffmpeg::encoder::find(ffmpeg::codec::Id::H264);
        let chosen = match codec {
            VideoCodec::H264 => h264.ok_or_else(|| err("FFmpeg has no H.264 encoder".into()))?,
            VideoCodec::Auto => match h264 {
                Some(c) => c,
                None => ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4).ok_or_else(|| {
                    err("FFmpeg has neither an H.264 nor an MPEG-4 encoder".into())
                })?,
            },
            VideoCodec::Mpeg4 => ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4)
                .ok_or_else(|| err("FFmpeg has no MPEG-4 encoder".into()))?,
        };
        let is_h264 = chosen.id() == ffmpeg::codec::Id::H264;
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let mut stream = output
            .add_stream(chosen)
            .map_err(|e| err(format!("cannot add a stream: {e}")))?;
        let frame_rate = rational_fps(fps);
        let time_base = frame_rate.invert();
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(chosen)
            .encoder()
            .video()
            .map_err(|e| err(e.to_string()))?;
        enc.set_width(enc_w);
        enc.set_height(enc_h);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(frame_rate));
        if global_header {
            enc.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let mut options = ffmpeg::Dictionary::new();
        if is_h264 {
            options.set("preset", "veryfast");
            options.set("crf", &crf.to_string());
            if live {
                // No frames held back for look-ahead or B-frames: a viewer sees each at once.
                options.set("tune", "zerolatency");
            }
        } else {
            enc.set_bit_rate((enc_w as usize * enc_h as usize * fps as usize / 8).max(400_000));
        }
        let encoder = enc
            .open_with(options)
            .map_err(|e| err(format!("cannot open the {} encoder: {e}", chosen.name())))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        output
            .write_header()
            .map_err(|e| err(format!("cannot write the header: {e}")))?;
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            enc_w,
            enc_h,
            Pixel::YUV420P,
            enc_w,
            enc_h,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path,
            tmp,
            output,
            encoder,
            scaler,
            yuv: ffmpeg::frame::Video::new(Pixel::YUV420P, enc_w, enc_h),
            rgb: ffmpeg::frame::Video::new(Pixel::RGB24, enc_w, enc_h),
            encoder_time_base: time_base,
            width: enc_w,
            height: enc_h,
            next_pts: 0,
            finished: false,
        })
    }

    fn err(&self, message: String) -> VideoError {
        VideoError::Encode {
            path: self.path.clone(),
            message,
        }
    }

    /// Appends a frame; frames of another size are cropped or padded to the first one's.
    pub fn write(&mut self, image: &RgbImage) -> Result<(), VideoError> {
        let stride = self.rgb.stride(0);
        let rows = self.height.min(image.height) as usize;
        let cols = self.width.min(image.width) as usize * 3;
        let dst = self.rgb.data_mut(0);
        dst.fill(0);
        for y in 0..rows {
            let src = &image.data[y * image.width as usize * 3..][..cols];
            dst[y * stride..y * stride + cols].copy_from_slice(src);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| VideoError::Encode {
                path: self.path.clone(),
                message: format!("colour conversion: {e}"),
            })?;
        self.yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| self.err(format!("encoder: {e}")))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<(), VideoError> {
        let stream_tb = self.output.stream(0).expect("one stream").time_base();
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Without a duration the mp4 edit list cuts the last frame off.
            if packet.duration() <= 0 {
                packet.set_duration(1);
            }
            // The mp4 muxer picks its own stream time base at write_header.
            packet.rescale_ts(self.encoder_time_base, stream_tb);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| self.err(format!("muxer: {e}")))?;
        }
        Ok(())
    }

    /// Flushes the encoder, writes the trailer and moves a file into place; returns the file
    /// or the stream's URL.
    pub fn finish(mut self) -> Result<PathBuf, VideoError> {
        self.encoder
            .send_eof()
            .map_err(|e| self.err(format!("encoder flush: {e}")))?;
        self.drain()?;
        self.output
            .write_trailer()
            .map_err(|e| self.err(format!("trailer: {e}")))?;
        if let Some(tmp) = &self.tmp {
            std::fs::rename(tmp, &self.path).map_err(|e| self.err(e.to_string()))?;
        }
        self.finished = true;
        Ok(self.path.clone())
    }
}

impl Drop for OverlayWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.as_ref().filter(|_| !self.finished) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes one picture as a JPEG (by FFmpeg's MJPEG encoder, quality 2 of 2-31); used to make
/// image sequences and test inputs.
pub fn write_jpeg(path: &Path, image: &RgbImage) -> Result<(), VideoError> {
    super::decode::init();
    let err = |message: String| VideoError::Encode {
        path: path.to_path_buf(),
        message,
    };
    let (w, h) = (image.width & !1, image.height & !1);
    if w == 0 || h == 0 {
        return Err(err(format!(
            "image size {}x{} is too small",
            image.width, image.height
        )));
    }
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG)
        .ok_or_else(|| err("FFmpeg has no MJPEG encoder".into()))?;
    let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| err(e.to_string()))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(ffmpeg::Rational::new(1, 25));
    enc.set_flags(ffmpeg::codec::Flags::QSCALE);
    enc.set_global_quality(2 * 118); // FF_QP2LAMBDA * q
    let mut encoder = enc.open().map_err(|e| err(format!("MJPEG encoder: {e}")))?;
    let mut rgb = ffmpeg::frame::Video::new(Pixel::RGB24, w, h);
    let stride = rgb.stride(0);
    for y in 0..h as usize {
        let src = &image.data[y * image.width as usize * 3..][..w as usize * 3];
        rgb.data_mut(0)[y * stride..y * stride + w as usize * 3].copy_from_slice(src);
    }
    let mut yuv = ffmpeg::frame::Video::new(Pixel::YUVJ420P, w, h);
    scaling::Context::get(
        Pixel::RGB24,
        w,
        h,
        Pixel::YUVJ420P,
        w,
        h,
        scaling::Flags::BICUBIC,
    )
    .and_then(|mut s| s.run(&rgb, &mut yuv))
    .map_err(|e| err(format!("colour conversion: {e}")))?;
    yuv.set_pts(Some(0));
    let mut bytes = Vec::new();
    let mut packet = ffmpeg::Packet::empty();
    encoder.send_frame(&yuv).map_err(|e| err(e.to_string()))?;
    encoder.send_eof().map_err(|e| err(e.to_string()))?;
    while encoder.receive_packet(&mut packet).is_ok() {
        bytes.extend_from_slice(packet.data().unwrap_or_default());
    }
    crate::fsutil::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}
