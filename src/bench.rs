//! Stage benchmarks that need no reference: decode throughput.

use std::path::Path;
use std::time::Instant;

use crate::video::{decode, discover, VideoError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeBench {
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub width: u32,
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
