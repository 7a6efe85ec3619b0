//! Helpers shared by the integration tests: synthetic videos and image folders, and the
//! optional real data in `../shared/data`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vidpose::image::RgbImage;
use vidpose::video::encode::{write_jpeg, OverlayWriter, VideoCodec};

/// A frame whose whole area has grey level `level`, with a white square at column `i * 8`
/// so frames differ in content as well as brightness.
pub fn test_frame(width: u32, height: u32, level: u8) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    img.data.fill(level);
    img
}

/// Mean of the red channel, to tell synthetic frames apart after lossy coding.
pub fn mean_level(img: &RgbImage) -> f64 {
    let sum: u64 = img.data.iter().step_by(3).map(|&v| v as u64).sum();
    sum as f64 / (img.width as f64 * img.height as f64)
}

/// Grey level of synthetic frame `i`.
pub fn level(i: usize) -> u8 {
    (20 + (i * 23) % 200) as u8
}

/// Writes an mp4 of `n` frames (MPEG-4 Part 2, present in every FFmpeg build).
pub fn make_mp4(path: &Path, n: usize, width: u32, height: u32, fps: f64) {
    let mut w = OverlayWriter::create(path, width, height, fps, VideoCodec::Mpeg4, 23).unwrap();
    for i in 0..n {
        w.write(&test_frame(width, height, level(i))).unwrap();
    }
    w.finish().unwrap();
}

/// Writes `numbers.len()` JPEGs named `%06d.jpg`; frame k gets `level(k)`.
pub fn make_jpeg_folder(dir: &Path, numbers: &[u64]) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, n) in numbers.iter().enumerate() {
        write_jpeg(
            &dir.join(format!("{n:06}.jpg")),
            &test_frame(64, 48, level(k)),
        )
        .unwrap();
    }
}

/// `../shared/data` beside the repository, when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

pub fn vidpose() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vidpose"));
    c.env("NO_COLOR", "1");
    c
}

/// The narrow HRNet of the committed fixture, as `reference.json` describes it.
pub fn narrow_hrnet_config(json: &serde_json::Value) -> vidpose::pose::PoseModelConfig {
    let list = |key: &str| -> Vec<usize> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (widths, modules, blocks, input) = (
        list("widths"),
        list("num_modules"),
        list("num_blocks"),
        list("input_size"),
    );
    vidpose::pose::PoseModelConfig {
        backbone: vidpose::pose::HrNetConfig {
            stage1_channels: json["stage1_channels"].as_u64().unwrap() as usize,
            stage1_blocks: blocks[0],
            widths: [widths[0], widths[1], widths[2], widths[3]],
            num_modules: [modules[1], modules[2], modules[3]],
            num_blocks: [blocks[1], blocks[2], blocks[3]],
        },
        input_size: (input[0] as u32, input[1] as u32),
    }
}

/// The committed narrow HRNet fixture as a ready estimator.
pub fn narrow_estimator(options: vidpose::pose::PoseOptions) -> vidpose::pose::PoseEstimator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hrnet");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    vidpose::pose::PoseEstimator::load(
        dir.join("hrnet_w4_zip.pth"),
        narrow_hrnet_config(&json),
        options,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

/// Writes `img` as an uncompressed 24-bit BMP: a lossless frame FFmpeg decodes exactly.
pub fn write_bmp(path: &Path, img: &RgbImage) {
    let (w, h) = (img.width as usize, img.height as usize);
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54 + row * h;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"BM");
    for v in [size as u32, 0, 54, 40, w as u32, h as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&1u16.to_le_bytes()); // planes
    out.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    for v in [0u32, (row * h) as u32, 2835, 2835, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // rows bottom-up, pixels as BGR
    for y in (0..h).rev() {
        let start = out.len();
        for px in img.data[y * w * 3..][..w * 3].chunks(3) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        out.resize(start + row, 0);
    }
    std::fs::write(path, out).unwrap();
}

/// The largest |x| over a tensor, in f64.
pub fn max_abs(t: &candle_core::Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The largest |a - b| over two tensors of one shape, computed in f64.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let f64 = |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
    max_abs(&(f64(a) - f64(b)).unwrap())
}

/// Writes an annotation file for `frames` frames of `video` (`<video>/<n>.jpg`, image ids from
/// 1), with one box per frame, `bbox(frame)`, carrying `track_id` when given.
pub fn write_video_boxes(
    path: &Path,
    video: &str,
    frames: usize,
    bbox: impl Fn(usize) -> [f64; 4],
    track_id: Option<i64>,
) {
    let images: Vec<_> = (0..frames)
        .map(|f| serde_json::json!({"id": f + 1, "file_name": format!("{video}/{f:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .map(|f| {
            let mut a = serde_json::json!({"image_id": f + 1, "bbox": bbox(f)});
            if let Some(t) = track_id {
                a["track_id"] = t.into();
            }
            a
        })
        .collect();
    std::fs::write(
        path,
        serde_json::json!({"images": images, "annotations": anns}).to_string(),
    )
    .unwrap();
}
