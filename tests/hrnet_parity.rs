//! HRNet top-down parity against MMPose 1.3.2 on random-initialised weights.
//!
//! Fixtures (tests/fixtures/hrnet, written by scripts/make_hrnet_fixtures.py): a narrow, shallow
//! HRNet (branch widths 4/8/16/32, one block per branch, 1/2/2 modules in stages 2-4, input
//! 128x96) with 0.x keys as PyTorch zip (f32, f16-exact values) on a cut-out of a real PoseTrack18
//! frame, with MMPose's crops, heatmaps, keypoints and scores. The same weights as legacy `.pth`
//! (f16, 0.x keys) and safetensors (f16, 1.x keys) are written at test time (tests/common). The full-size W32/W48 comparison is `full_size_parity` (ignored; run by
//! scripts/parity_hrnet_full.sh).

mod common;

use std::path::{Path, PathBuf};

use common::NarrowCheckpoint;

use candle_core::Device;
use serde_json::Value;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::nn::Checkpoint;
use vidpose::person::NUM_KEYPOINTS;
use vidpose::pose::codec::{to_image, Decoding, HeatmapPeak};
use vidpose::pose::crop::TopdownAffine;
use vidpose::pose::{PoseEstimator, PoseModelConfig, PoseOptions};

/// Heatmaps: max |ours − MMPose| / max |MMPose| over the whole tensor.
const HEATMAP_REL_TOL: f32 = 1e-4;
/// Keypoints in image pixels.
const KEYPOINT_TOL_PX: f32 = 0.01;
/// Keypoint scores (raw heatmap maxima): 1e-4 absolute for heatmaps peaking at ≤ 1 (trained
/// models), relative to the heatmap peak beyond that — random full-width weights give peaks of
/// ~20, where an absolute bound would be tighter than the heatmap bound itself.
const SCORE_TOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    common::hrnet_fixture_dir()
}

/// The frame both sides use, stored losslessly as PNG.
fn read_frame(path: &Path) -> RgbImage {
    vidpose::image::read_still(path)
        .unwrap()
        .expect("a PNG file")
        .image
}

struct Reference {
    json: Value,
    config: PoseModelConfig,
    frame: RgbImage,
    tensors: std::collections::HashMap<String, candle_core::Tensor>,
}

fn nums(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => nums(x),
            _ => vec![x.as_f64().unwrap() as f32],
        })
        .collect()
}

impl Reference {
    fn load(dir: &Path) -> Self {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let config = common::narrow_hrnet_config(&json);
        let tensors =
            candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
                .unwrap();
        Self {
            frame: read_frame(&dir.join("frame.png")),
            json,
            config,
            tensors,
        }
    }

    fn boxes(&self) -> Vec<BBox> {
        self.json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let b = nums(&i["bbox_xyxy"]);
                BBox::new(b[0], b[1], b[2], b[3])
            })
            .collect()
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.tensors[name]
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Compare one configuration; returns (heatmap rel err, max keypoint px err, max score err
    /// relative to max(1, heatmap peak)).
    fn compare(&self, est: &PoseEstimator, flip: bool, decoding: Decoding) -> (f32, f32, f32) {
        let boxes = self.boxes();
        let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&self.frame, *b)).collect();
        let out = est.estimate_detailed(&items).unwrap();
        let tag = if flip { "flip" } else { "noflip" };
        let hm_ref = self.tensor(&format!("heatmaps_{tag}"));
        let hm: Vec<f32> = out
            .iter()
            .flat_map(|o| o.heatmaps.iter().copied())
            .collect();
        assert_eq!(hm.len(), hm_ref.len());
        let scale = hm_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
        let hm_err = hm
            .iter()
            .zip(&hm_ref)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        let (kp_key, sc_key) = match decoding {
            Decoding::Msra => (format!("keypoints_{tag}"), format!("scores_{tag}")),
            Decoding::Dark { .. } => (
                format!("keypoints_dark_{tag}"),
                format!("scores_dark_{tag}"),
            ),
        };
        let (hw, hh) = self.config.heatmap_size();
        let per = NUM_KEYPOINTS * hw * hh;
        let (mut kp_err, mut sc_err) = (0f32, 0f32);
        let mut skipped = 0;
        for (n, (o, inst)) in out
            .iter()
            .zip(self.json["instances"].as_array().unwrap())
            .enumerate()
        {
            let kp = nums(&inst[&kp_key]);
            let sc = nums(&inst[&sc_key]);
            let c = nums(&inst["input_center"]);
            let s = nums(&inst["input_scale"]);
            let cb = o.crop.unwrap();
            assert!((cb.center[0] - c[0]).abs() < 1e-4 && (cb.center[1] - c[1]).abs() < 1e-4);
            assert!((cb.scale[0] - s[0]).abs() < 1e-3 && (cb.scale[1] - s[1]).abs() < 1e-3);
            for (j, k) in o.keypoints.iter().enumerate() {
                if let Decoding::Dark { .. } = decoding {
                    // DARK's Newton step is unbounded: where the log-heatmap's Hessian is near
                    // singular (random weights make such peaks) it jumps several pixels and
                    // amplifies float rounding without limit. Compare only real sub-pixel
                    // refinements: MMPose's result within one heatmap pixel of the argmax.
                    let ch = &hm_ref[n * per + j * hw * hh..][..hw * hh];
                    let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
                    for (i, &v) in ch.iter().enumerate() {
                        if v > best {
                            best = v;
                            arg = i;
                        }
                    }
                    let peak = HeatmapPeak {
                        x: (arg % hw) as f32,
                        y: (arg / hw) as f32,
                        score: best,
                    };
                    let (px, py) = to_image(&peak, self.config.input_size, (hw, hh), &cb);
                    let pixel = cb.scale[0] / hw as f32;
                    if (px - kp[2 * j]).abs() > pixel || (py - kp[2 * j + 1]).abs() > pixel {
                        skipped += 1;
                        continue;
                    }
                }
                let e = (k.x - kp[2 * j]).abs().max((k.y - kp[2 * j + 1]).abs());
                if e > KEYPOINT_TOL_PX {
                    println!(
                        "  keypoint {j}: ours ({}, {}) MMPose ({}, {})",
                        k.x,
                        k.y,
                        kp[2 * j],
                        kp[2 * j + 1]
                    );
                }
                kp_err = kp_err
                    .max((k.x - kp[2 * j]).abs())
                    .max((k.y - kp[2 * j + 1]).abs());
                sc_err = sc_err.max((k.score - sc[j]).abs());
            }
        }
        if skipped > 0 {
            println!(
                "  {skipped} keypoint(s) with a Newton step beyond one heatmap pixel not compared"
            );
        }
        println!("  heatmap peak {scale:.3}, absolute score err {sc_err:.2e}");
        (hm_err, kp_err, sc_err / scale.max(1.0))
    }
}

fn estimator(r: &Reference, file: &Path, flip: bool, decoding: Decoding) -> PoseEstimator {
    let options = PoseOptions {
        flip_test: flip,
        decoding,
        batch_size: 8,
        ..Default::default()
    };
    PoseEstimator::load(file, r.config.clone(), options, &Device::Cpu).unwrap()
}

fn check_all_modes(r: &Reference, path: &Path) {
    let file = path.file_name().unwrap().to_string_lossy();
    for flip in [false, true] {
        let est = estimator(r, path, flip, Decoding::Msra);
        let (hm, kp, sc) = r.compare(&est, flip, Decoding::Msra);
        println!(
            "{file} flip={flip}: heatmap rel err {hm:.2e}, keypoints {kp:.2e} px, scores {sc:.2e}"
        );
        assert!(
            hm <= HEATMAP_REL_TOL,
            "{file} flip={flip}: heatmap rel err {hm}"
        );
        assert!(
            kp <= KEYPOINT_TOL_PX,
            "{file} flip={flip}: keypoint err {kp} px"
        );
        assert!(sc <= SCORE_TOL, "{file} flip={flip}: score err {sc}");
    }
}

#[test]
fn crops_match_opencv_warp_affine() {
    check_crops(&Reference::load(&fixture_dir()));
}

fn check_crops(r: &Reference) {
    let (w, h) = (
        r.config.input_size.0 as usize,
        r.config.input_size.1 as usize,
    );
    let crops = r.tensors["crops_bgr_uint8"]
        .flatten_all()
        .unwrap()
        .to_vec1::<u8>()
        .unwrap();
    let t = TopdownAffine::new(w as u32, h as u32);
    let mut mismatched = 0;
    let mut worst = 0i32;
    for (n, b) in r.boxes().iter().enumerate() {
        let ours = t.warp(&r.frame, &t.crop_box(b)).unwrap();
        for c in 0..3 {
            for i in 0..w * h {
                // reference is BGR planar, ours RGB packed
                let theirs = crops[((n * 3) + (2 - c)) * w * h + i] as i32;
                let d = (ours[i * 3 + c] as i32 - theirs).abs();
                worst = worst.max(d);
                if d != 0 && mismatched < 20 {
                    println!(
                        "  crop {n} channel {c} at ({}, {}): ours {} cv2 {theirs}",
                        i % w,
                        i / w,
                        ours[i * 3 + c]
                    );
                }
                mismatched += (d != 0) as usize;
            }
        }
    }
    println!("crop pixels differing from cv2.warpAffine: {mismatched}, max diff {worst}");
    assert_eq!(mismatched, 0);
}

/// The narrow HRNet in `format` (written into `dir` unless it is the committed zip file).
fn checkpoint(format: NarrowCheckpoint, dir: &tempfile::TempDir) -> PathBuf {
    common::narrow_hrnet_checkpoint(format, dir.path())
}

#[test]
fn zip_pth_with_0x_keys_matches_mmpose() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(NarrowCheckpoint::Zip, &dir);
    check_all_modes(&Reference::load(&fixture_dir()), &path);
}

#[test]
fn legacy_pth_matches_mmpose() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(NarrowCheckpoint::Legacy, &dir);
    check_all_modes(&Reference::load(&fixture_dir()), &path);
}

#[test]
fn safetensors_with_1x_keys_matches_mmpose() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(NarrowCheckpoint::Safetensors, &dir);
    check_all_modes(&Reference::load(&fixture_dir()), &path);
}

#[test]
fn dark_decoding_matches_mmpose() {
    let r = Reference::load(&fixture_dir());
    for flip in [false, true] {
        let d = Decoding::Dark { blur_kernel: 11 };
        let est = estimator(&r, &fixture_dir().join("hrnet_w4_zip.pth"), flip, d);
        let (_, kp, sc) = r.compare(&est, flip, d);
        println!("DARK flip={flip}: keypoints {kp:.2e} px, scores {sc:.2e}");
        assert!(
            kp <= KEYPOINT_TOL_PX && sc <= SCORE_TOL,
            "DARK flip={flip}: {kp} px, {sc}"
        );
    }
}

/// DARK against MMPose on well-conditioned heatmaps (Gaussian blobs plus noise), where the
/// Newton step is a genuine sub-pixel refinement; every keypoint is compared.
#[test]
fn dark_decoder_matches_mmpose_on_gaussian_heatmaps() {
    let t = candle_core::safetensors::load(
        fixture_dir().join("dark_synthetic.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let hm = t["heatmaps"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = t["keypoints_input_space"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let scores = t["scores"].to_vec1::<f32>().unwrap();
    let (k, h, w) = t["heatmaps"].dims3().unwrap();
    let peaks = vidpose::pose::codec::decode(&hm, k, h, w, Decoding::Dark { blur_kernel: 11 });
    let mut worst = 0f32;
    for (j, p) in peaks.iter().enumerate() {
        // input space = heatmap coordinates x 4 (96x128 input, 24x32 heatmap)
        worst = worst
            .max((p.x * 4.0 - want[2 * j]).abs())
            .max((p.y * 4.0 - want[2 * j + 1]).abs());
        assert!((p.score - scores[j]).abs() <= SCORE_TOL);
    }
    println!("DARK on Gaussian heatmaps: max error {worst:.2e} input px");
    // 0.01 px in the 96x128 input; image pixels scale this by box size / 96
    assert!(worst <= KEYPOINT_TOL_PX, "{worst}");
}

#[test]
fn all_formats_hold_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let zip = Checkpoint::open(checkpoint(NarrowCheckpoint::Zip, &dir)).unwrap();
    for format in [NarrowCheckpoint::Legacy, NarrowCheckpoint::Safetensors] {
        let path = checkpoint(format, &dir);
        let other = path.file_name().unwrap().to_string_lossy();
        let o = Checkpoint::open(&path).unwrap();
        assert_eq!(zip.keys(), o.keys(), "{other}");
        for k in zip.keys() {
            let d = common::max_abs_diff(zip.get(k).unwrap(), o.get(k).unwrap());
            assert_eq!(d, 0.0, "{other}: {k}");
        }
    }
}

/// Full-width models against the reference written by `make_hrnet_fixtures.py --full`.
/// Run through scripts/parity_hrnet_full.sh (needs VIDPOSE_PARITY_DIR and VIDPOSE_PARITY_ARCH).
#[test]
#[ignore]
fn full_size_parity() {
    let dir = PathBuf::from(std::env::var("VIDPOSE_PARITY_DIR").expect("VIDPOSE_PARITY_DIR"));
    let arch = std::env::var("VIDPOSE_PARITY_ARCH").expect("VIDPOSE_PARITY_ARCH");
    let r = Reference::load(&dir);
    let card = match arch.as_str() {
        "w32" => "hrnet_w32_256x192",
        "w48" => "hrnet_w48_384x288",
        other => panic!("unknown arch {other}"),
    };
    let cards = vidpose::models::builtin_cards();
    let want = vidpose::models::find(&cards, card)
        .unwrap()
        .pose_config()
        .unwrap();
    assert_eq!(r.config, want);
    check_crops(&r);
    check_all_modes(&r, &dir.join(format!("hrnet_{arch}_zip.pth")));
}
