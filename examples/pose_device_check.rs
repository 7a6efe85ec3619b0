//! Runs the same HRNet checkpoint on the CPU and on a CUDA device and compares keypoints, then
//! times the forward pass on both. For GPU machines, which lack FFmpeg: it reads a PPM frame.
//!
//!   cargo build --release --features cuda --example pose_device_check
//!   pose_device_check CHECKPOINT FRAME.ppm [MODEL] [x1,y1,x2,y2 ...]
//!
//! Without boxes, three boxes across the frame are used.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::models;
use vidpose::pose::{PoseEstimator, PoseOptions};

fn read_ppm(path: &str) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{path}: cannot read"))?;
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            bail!("{path}: not a binary PPM (P6)");
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).to_string());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        bail!("{path}: not an 8-bit binary PPM (P6)");
    }
    let (width, height): (u32, u32) = (fields[1].parse()?, fields[2].parse()?);
    let data = bytes.get(pos + 1..).unwrap_or_default().to_vec();
    if data.len() != (width * height * 3) as usize {
        bail!("{path}: {} pixel bytes for {width}x{height}", data.len());
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: pose_device_check CHECKPOINT FRAME.ppm [MODEL] [x1,y1,x2,y2 ...]");
    }
    let frame = read_ppm(&args[1])?;
    let model = args.get(2).map_or("hrnet_w32_256x192", String::as_str);
    let cards = models::builtin_cards();
    let config = models::find(&cards, model)?
        .pose_config()
        .context("not a pose model")?;
    let mut boxes: Vec<BBox> = args
        .iter()
        .skip(3)
        .map(|s| {
            let v: Vec<f32> = s.split(',').filter_map(|x| x.parse().ok()).collect();
            BBox::new(v[0], v[1], v[2], v[3])
        })
        .collect();
    if boxes.is_empty() {
        let (w, h) = (frame.width as f32, frame.height as f32);
        boxes = (0..3)
            .map(|i| {
                BBox::new(
                    w * (0.1 + 0.3 * i as f32),
                    h * 0.1,
                    w * (0.3 + 0.3 * i as f32),
                    h * 0.9,
                )
            })
            .collect();
    }
    let cuda = Device::new_cuda(0).context("CUDA device 0")?;
    let cpu_est = PoseEstimator::load(
        &args[0],
        config.clone(),
        PoseOptions::default(),
        &Device::Cpu,
    )?;
    let gpu_est = PoseEstimator::load(&args[0], config, PoseOptions::default(), &cuda)?;
    let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&frame, *b)).collect();
    let a = cpu_est.estimate(&items)?;
    let b = gpu_est.estimate(&items)?;
    let (mut dk, mut ds) = (0f32, 0f32);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            dk = dk.max((p.x - q.x).abs()).max((p.y - q.y).abs());
            ds = ds.max((p.score - q.score).abs() / p.score.abs().max(1.0));
        }
    }
    println!(
        "{} boxes, flip test on: max keypoint difference CPU vs CUDA {dk:.5} px, max score difference {ds:.2e} (relative to peaks above 1)",
        boxes.len()
    );
    for batch in [1, 8, 32] {
        let median = |est: &PoseEstimator, runs| -> Result<f64> {
            let mut t: Vec<f64> = est
                .time_forward(batch, 3, runs)?
                .iter()
                .map(|d| d.as_secs_f64() * 1e3)
                .collect();
            t.sort_by(f64::total_cmp);
            Ok(t[t.len() / 2])
        };
        let c = median(&cpu_est, 3)?;
        let g = median(&gpu_est, 20)?;
        println!(
            "forward batch {batch}: CPU {c:.1} ms ({} threads), CUDA {g:.2} ms, {:.0} crops/s on CUDA",
            rayon::current_num_threads(),
            batch as f64 / g * 1e3
        );
    }
    Ok(())
}
