//! Stage benchmarks that need no reference: decode throughput, detector latency, and the
//! stage report of a real run (`report`), and cross-device / cross-precision comparisons
//! (`parity`).

pub mod parity;
pub mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::detect::{CascadeRcnn, DetectError};
use crate::image::RgbImage;
use crate::video::{decode, discover, VideoError};

/// Result of [`decode_throughput`], printed by `vidpose bench decode` (as JSON with `--json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeBench {
    /// Frames decoded.
    pub frames: u64,
    /// Wall time decoding and converting to RGB, seconds (opening the file excluded).
    pub seconds: f64,
    /// `frames / seconds`.
    pub fps: f64,
    /// Width of the last frame, pixels; 0 when there was none.
    pub width: u32,
    /// Height of the last frame, pixels; 0 when there was none.
    pub height: u32,
}

/// Decodes every frame of `path` to RGB and times it (open excluded).
pub fn decode_throughput(path: &Path, threads: usize) -> Result<DecodeBench, VideoError> {
    let jobs = discover::discover(&[path.to_path_buf()])?;
    let job = jobs.first().ok_or_else(|| VideoError::Missing {
        path: path.to_path_buf(),
    })?;
    let mut decoder = decode::open(job, 25.0, threads)?;
    let started = Instant::now();
    let (mut frames, mut width, mut height) = (0u64, 0, 0);
    while let Some(frame) = decoder.next_frame()? {
        frames += 1;
        width = frame.image.width;
        height = frame.image.height;
        // Touch the pixels so the copy cannot be optimised away.
        std::hint::black_box(&frame.image.data);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(DecodeBench {
        frames,
        seconds,
        fps: frames as f64 / seconds.max(1e-9),
        width,
        height,
    })
}

/// The first frame of a video, image or image folder.
pub fn first_frame(path: &Path) -> Result<RgbImage, VideoError> {
    let missing = || VideoError::Missing {
        path: path.to_path_buf(),
    };
    let jobs = discover::discover(&[path.to_path_buf()])?;
    let job = jobs.first().ok_or_else(missing)?;
    let mut decoder = decode::open(job, 25.0, 0)?;
    Ok(decoder.next_frame()?.ok_or_else(missing)?.image)
}

/// A deterministic frame with edges and texture (a stand-in for a video frame when none is
/// given; the detector's cost hardly depends on the content).
pub fn synthetic_frame(width: u32, height: u32) -> RgbImage {
    let mut state = 0x2545_f491_u32;
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let block = ((x / 64 + y / 48) % 2) as u8 * 80;
            for c in 0..3u32 {
                let ramp = ((x * (c + 1) + y * (3 - c)) / 8 % 160) as u8;
                data.push(block + ramp / 2 + (state >> (8 * c)) as u8 % 16);
            }
        }
    }
    RgbImage {
        width,
        height,
        data,
    }
}

/// What [`detect_times`] measured.
#[derive(Debug, Clone)]
pub struct DetectTimes {
    /// One per timed run, for the whole batch.
    pub runs: Vec<Duration>,
    /// Persons the detector found in the frame (last run), to compare with another
    /// implementation on the same checkpoint.
    pub detections: usize,
}

/// Times `runs` detector calls on a batch of `batch` copies of `frame` (resize, network, box
/// post-processing), after `warmup` untimed ones.
pub fn detect_times(
    model: &CascadeRcnn,
    frame: &RgbImage,
    batch: usize,
    warmup: usize,
    runs: usize,
) -> Result<DetectTimes, DetectError> {
    let frames: Vec<&RgbImage> = vec![frame; batch.max(1)];
    let mut times = DetectTimes {
        runs: Vec::with_capacity(runs),
        detections: 0,
    };
    for i in 0..warmup + runs {
        let started = Instant::now();
        for (n, result) in model.detect_batch(&frames).into_iter().enumerate() {
            let found = std::hint::black_box(result?);
            if n == 0 {
                times.detections = found.len();
            }
        }
        if i >= warmup {
            times.runs.push(started.elapsed());
        }
    }
    Ok(times)
}
