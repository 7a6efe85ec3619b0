//! The GPU machine's check, run by `scripts/device_check.sh`: CPU-vs-device parity and device
//! throughput, written as JSON. Needs no FFmpeg, no checkpoint download and no network.
//!
//!   device_check [--device cuda:0] [--out DIR] [--skip-full] [--skip-timing] [--f32-only]
//!                [--e2e-frames N]
//!
//! 1. The committed narrow fixtures (`tests/fixtures/hrnet`, `tests/fixtures/cascade`): the
//!    CPU in f32 against the device in f32, f16 and bf16.
//! 2. Random full-size HRNet-W32 256x192 (16 boxes on a 1920x1080 frame) and Cascade R-CNN X101
//!    (one 1333x800 frame): the same comparisons.
//! 3. Device throughput: HRNet-W32 crops/s at batch 64 (forward pass alone, and whole crops
//!    with the flip test), Cascade X101 frames/s at 1333x800, X101's grouped convolutions by
//!    candle and by vidpose's kernel, and both models end to end on a 1280x720 sequence
//!    (detection on every frame and on one in 5).
//!
//! f32 passes when heatmaps and FPN maps agree within 1e-3 relative and every reference
//! detection has its match with boxes within 1e-3 of their size; f16/bf16 are reported only.
//! The exit status is 1 when an f32 check fails. `--device cpu` compares the CPU with itself:
//! a smoke test of this program on a machine without a GPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use vidpose::bench::parity::{
    compare_detector, compare_pose, spread_boxes, synthetic_frame, RandomWeights,
};
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::models;

mod common;
use vidpose::nn::device::parse_device;
use vidpose::nn::GroupedConvDirect;
use vidpose::pose::{PoseEstimator, PoseModelConfig, PoseOptions};

const F32_REL_TOL: f32 = 1e-3;

struct Args {
    device: Device,
    out: PathBuf,
    full: bool,
    timing: bool,
    dtypes: Vec<DType>,
    /// Frames of the end-to-end timing, per detection interval.
    e2e_frames: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        device: Device::Cpu,
        out: std::env::var_os("OUT").map_or_else(|| PathBuf::from("."), PathBuf::from),
        full: true,
        timing: true,
        dtypes: vec![DType::F32, DType::F16, DType::BF16],
        e2e_frames: 30,
    };
    let mut device = "cuda:0".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--device" => device = it.next().context("--device needs a value")?,
            "--out" => a.out = it.next().context("--out needs a folder")?.into(),
            "--skip-full" => a.full = false,
            "--skip-timing" => a.timing = false,
            // f16 on the CPU is slow: a CPU smoke test of the program can leave it out
            "--f32-only" => a.dtypes = vec![DType::F32],
            // the CPU takes seconds per X101 frame: a smoke test runs a few
            "--e2e-frames" => {
                a.e2e_frames = it
                    .next()
                    .context("--e2e-frames needs a number")?
                    .parse()
                    .context("--e2e-frames needs a number")?
            }
            _ => bail!(
                "usage: device_check [--device cuda:0] [--out DIR] [--skip-full] [--skip-timing] [--f32-only] [--e2e-frames N]"
            ),
        }
    }
    a.device = parse_device(&device)?.open()?;
    Ok(a)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The narrow HRNet fixture's architecture, frame and boxes.
fn pose_fixture() -> Result<(PoseModelConfig, RgbImage, Vec<BBox>)> {
    let dir = fixtures().join("hrnet");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
    let frame = vidpose::image::read_still(&dir.join("frame.png"))?
        .context("frame.png is a still image")?
        .image;
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let boxes = json["instances"]
        .as_array()
        .context("reference.json has instances")?
        .iter()
        .map(|i| {
            let b = nums(&i["bbox_xyxy"]);
            BBox::new(b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32)
        })
        .collect();
    let config = common::narrow_pose_config()?;
    Ok((config, frame, boxes))
}

fn pose_options(dtype: DType, batch_size: usize) -> PoseOptions {
    PoseOptions {
        dtype,
        batch_size,
        ..PoseOptions::default()
    }
}

/// CPU f32 against the device in each dtype: `build` makes the model for a device and dtype,
/// `compare` measures a device model against the CPU one, and `f32_failure` says why an f32
/// result is out of bounds (f16 and bf16 are reported only).
fn parity<M, D: serde::Serialize>(
    build: &dyn Fn(&Device, DType) -> Result<M>,
    compare: &dyn Fn(&M, &M) -> Result<D>,
    f32_failure: &dyn Fn(&D) -> Option<String>,
    device: &Device,
    dtypes: &[DType],
    failures: &mut Vec<String>,
    what: &str,
) -> Result<Value> {
    let reference = build(&Device::Cpu, DType::F32)?;
    let mut out = serde_json::Map::new();
    for &dtype in dtypes {
        let t0 = Instant::now();
        let result = build(device, dtype).and_then(|c| compare(&reference, &c));
        let v = match result {
            Ok(d) => {
                if let Some(why) = (dtype == DType::F32).then(|| f32_failure(&d)).flatten() {
                    failures.push(format!("{what} f32: {why}"));
                }
                json!(d)
            }
            Err(e) if dtype == DType::F32 => {
                failures.push(format!("{what} f32: {}", short(&e)));
                json!({ "error": short(&e) })
            }
            Err(e) => json!({ "error": short(&e) }),
        };
        println!(
            "{what} {dtype:?}: {v} ({:.1} s)",
            t0.elapsed().as_secs_f64()
        );
        out.insert(format!("{dtype:?}").to_lowercase(), v);
    }
    Ok(Value::Object(out))
}

/// [`parity`] of a pose model on `items`: heatmaps within [`F32_REL_TOL`] in f32.
fn pose_parity(
    build: &dyn Fn(&Device, DType) -> Result<PoseEstimator>,
    device: &Device,
    dtypes: &[DType],
    items: &[(&RgbImage, BBox)],
    failures: &mut Vec<String>,
    what: &str,
) -> Result<Value> {
    parity(
        build,
        &|r, c| Ok(compare_pose(r, c, items)?),
        &|d| (!within(d.heatmap_rel)).then(|| format!("heatmaps differ by {}", d.heatmap_rel)),
        device,
        dtypes,
        failures,
        what,
    )
}

/// [`parity`] of a detector on `img`: FPN maps and boxes within [`F32_REL_TOL`], every
/// reference detection matched, in f32.
fn detector_parity(
    build: &dyn Fn(&Device, DType) -> Result<CascadeRcnn>,
    device: &Device,
    dtypes: &[DType],
    img: &RgbImage,
    failures: &mut Vec<String>,
    what: &str,
) -> Result<Value> {
    parity(
        build,
        &|r, c| Ok(compare_detector(r, c, img)?),
        &|d| {
            let ok = within(d.fpn_rel) && d.matched == d.reference && within(d.box_rel);
            (!ok).then(|| format!("{d:?}"))
        },
        device,
        dtypes,
        failures,
        what,
    )
}

/// An error's text without the backtraces candle appends.
fn short(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .take_while(|l| !l.trim_start().starts_with("0:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `v <= F32_REL_TOL`, false for NaN.
fn within(v: f32) -> bool {
    v <= F32_REL_TOL
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// X101's grouped 3x3 layers (64 groups, stride 1) at their 1333x800 sizes, f32: candle's
/// grouped `conv2d` (one convolution per group) against vidpose's kernel (`GroupedConvDirect`,
/// what `Conv` runs on a GPU), median of 5 runs each, and how far apart their outputs are.
fn grouped_conv_timing(device: &Device) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for (c, h, w) in [
        (256, 200, 336),
        (512, 100, 168),
        (1024, 50, 84),
        (2048, 25, 42),
    ] {
        let x = Tensor::randn(0f32, 1.0, (1, c, h, w), device)?;
        let wt = Tensor::randn(0f32, 0.1, (c, c / 64, 3, 3), device)?;
        let b = Tensor::randn(0f32, 0.1, c, device)?;
        let candle = || -> Result<Tensor> {
            let y = x.conv2d(&wt, 1, 1, 1, 64)?;
            Ok(y.broadcast_add(&b.reshape((1, c, 1, 1))?)?.relu()?)
        };
        let op = GroupedConvDirect {
            groups: 64,
            stride: 1,
            pad: 1,
            relu: true,
        };
        let ours = || -> Result<Tensor> { Ok(x.apply_op3_no_bwd(&wt, &b, &op)?) };
        let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
            f()?;
            device.synchronize()?;
            let mut runs = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                f()?;
                device.synchronize()?;
                runs.push(t0.elapsed().as_secs_f64());
            }
            Ok(median(runs))
        };
        let (tc, to) = (time(&candle)?, time(&ours)?);
        let (a, b2) = (candle()?, ours()?);
        let peak = a
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            .max(1e-12);
        let diff = (a - b2)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        out.insert(
            format!("{c}x{h}x{w}"),
            json!({ "candle_ms": tc * 1e3, "vidpose_ms": to * 1e3, "rel_diff": diff / peak }),
        );
    }
    Ok(Value::Object(out))
}

/// People per frame handed to the pose model in the end-to-end timing.
const E2E_PEOPLE: usize = 8;

/// Both models on a 1280x720 frame sequence, one frame after another as a single video's
/// frames go (no overlap of the stages, so the pipeline can only do better): the detector on
/// every k-th frame (k = 1 and 5, the key-frame mode), its best `E2E_PEOPLE` person boxes
/// (spread boxes when the random weights find fewer) to HRNet-W32 with the flip test.
fn end_to_end_720p(det: &CascadeRcnn, est: &PoseEstimator, frames: usize) -> Result<Value> {
    let frame = synthetic_frame(1280, 720);
    let fallback = spread_boxes(1280, 720, E2E_PEOPLE);
    let mut out = serde_json::Map::new();
    for interval in [1usize, 5] {
        let mut boxes = fallback.clone();
        let t0 = Instant::now();
        for f in 0..frames {
            if f % interval == 0 {
                let people: Vec<BBox> = det
                    .detect(&frame)?
                    .iter()
                    .filter(|d| d.label == 0)
                    .take(E2E_PEOPLE)
                    .map(|d| d.bbox)
                    .collect();
                boxes = if people.len() == E2E_PEOPLE {
                    people
                } else {
                    fallback.clone()
                };
            }
            let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&frame, *b)).collect();
            est.estimate(&items)?;
        }
        let s = t0.elapsed().as_secs_f64();
        out.insert(
            format!("interval_{interval}"),
            json!({ "frames": frames, "people_per_frame": E2E_PEOPLE, "seconds": s,
                    "frames_per_s": frames as f64 / s }),
        );
    }
    Ok(Value::Object(out))
}

fn main() -> Result<()> {
    // as the vidpose binary runs its models
    vidpose::nn::memory::keep_freed_memory();
    let args = args()?;
    let started = Instant::now();
    let device = &args.device;
    let mut failures = Vec::new();
    let mut report = serde_json::Map::new();
    report.insert("device".into(), json!(format!("{device:?}")));

    // 1. committed fixtures
    let (config, frame, boxes) = pose_fixture()?;
    let ckpt = fixtures().join("hrnet/hrnet_w4_zip.pth");
    let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&frame, *b)).collect();
    let build = |d: &Device, t: DType| -> Result<PoseEstimator> {
        Ok(PoseEstimator::load(
            &ckpt,
            config.clone(),
            pose_options(t, 8),
            d,
        )?)
    };
    report.insert(
        "fixture_hrnet".into(),
        pose_parity(
            &build,
            device,
            &args.dtypes,
            &items,
            &mut failures,
            "fixture hrnet",
        )?,
    );
    let cascade = fixtures().join("cascade");
    let crop =
        candle_core::safetensors::load(cascade.join("frame_crop.safetensors"), &Device::Cpu)?;
    let t = &crop["image_rgb"];
    let (h, w, _) = t.dims3()?;
    let crop_img = RgbImage {
        width: w as u32,
        height: h as u32,
        data: t.flatten_all()?.to_vec1::<u8>()?,
    };
    let narrow = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 4, 2, 8, 16, (240, 160));
    let narrow_ckpt = cascade.join("narrow_x.safetensors");
    let build = |d: &Device, t: DType| -> Result<CascadeRcnn> {
        Ok(CascadeRcnn::load_as(&narrow_ckpt, &narrow, d, t)?)
    };
    report.insert(
        "fixture_cascade_x".into(),
        detector_parity(
            &build,
            device,
            &args.dtypes,
            &crop_img,
            &mut failures,
            "fixture cascade",
        )?,
    );

    // 2. random full-size models
    let cards = models::builtin_cards();
    let w32 = models::find(&cards, "hrnet_w32_256x192")?
        .pose_config()
        .context("hrnet_w32_256x192 is a pose model")?;
    let x101 = CascadeRcnnConfig::x101();
    let weights = RandomWeights { seed: 14 };
    let big = synthetic_frame(1920, 1080);
    let det_frame = synthetic_frame(1333, 800);
    if args.full {
        let big_boxes = spread_boxes(1920, 1080, 16);
        let items: Vec<(&RgbImage, BBox)> = big_boxes.iter().map(|b| (&big, *b)).collect();
        let build = |d: &Device, t: DType| -> Result<PoseEstimator> {
            Ok(PoseEstimator::from_var_builder(
                weights.var_builder(t, d),
                w32.clone(),
                pose_options(t, 16),
            )?)
        };
        report.insert(
            "random_hrnet_w32".into(),
            pose_parity(
                &build,
                device,
                &args.dtypes,
                &items,
                &mut failures,
                "random hrnet-w32",
            )?,
        );
        let build = |d: &Device, t: DType| -> Result<CascadeRcnn> {
            Ok(CascadeRcnn::new(weights.var_builder(t, d), &x101)?)
        };
        report.insert(
            "random_cascade_x101".into(),
            detector_parity(
                &build,
                device,
                &args.dtypes,
                &det_frame,
                &mut failures,
                "random cascade-x101",
            )?,
        );
    }

    // 3. throughput on the device
    if args.timing {
        let mut timing = serde_json::Map::new();
        let est = PoseEstimator::from_var_builder(
            weights.var_builder(DType::F32, device),
            w32.clone(),
            pose_options(DType::F32, 64),
        )?;
        let forward = median(
            est.time_forward(64, 3, 10)?
                .iter()
                .map(|d| d.as_secs_f64())
                .collect(),
        );
        let boxes = spread_boxes(1920, 1080, 64);
        let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&big, *b)).collect();
        est.estimate(&items)?;
        let runs: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                est.estimate(&items).map(|_| t0.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        let whole = median(runs);
        timing.insert(
            "hrnet_w32_batch64".into(),
            json!({
                "forward_ms": forward * 1e3,
                "forward_crops_per_s": 64.0 / forward,
                "estimate_flip_test_ms": whole * 1e3,
                "estimate_flip_test_crops_per_s": 64.0 / whole,
            }),
        );
        println!("hrnet-w32 batch 64: {:?}", timing["hrnet_w32_batch64"]);
        let det = CascadeRcnn::new(weights.var_builder(DType::F32, device), &x101)?;
        det.detect(&det_frame)?;
        let runs: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                det.detect(&det_frame).map(|_| t0.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        let per_frame = median(runs);
        timing.insert(
            "cascade_x101_1333x800".into(),
            json!({ "frame_ms": per_frame * 1e3, "frames_per_s": 1.0 / per_frame }),
        );
        println!(
            "cascade-x101 1333x800: {:?}",
            timing["cascade_x101_1333x800"]
        );
        let grouped = grouped_conv_timing(device)?;
        println!("grouped conv: {grouped}");
        timing.insert("grouped_conv_x101".into(), grouped);
        let e2e = end_to_end_720p(&det, &est, args.e2e_frames)?;
        println!("end to end 720p: {e2e}");
        timing.insert("end_to_end_720p".into(), e2e);
        report.insert("timing".into(), Value::Object(timing));
    }

    report.insert("f32_failures".into(), json!(failures));
    report.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("device_check.json");
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(report))?)?;
    println!("wrote {}", path.display());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAIL {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}
