//! Damaged checkpoints, mismatched architectures and unusual boxes: errors that say what is
//! wrong, or documented results — never a panic.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::NarrowCheckpoint;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::nn::{Checkpoint, CheckpointError};
use vidpose::pose::{HrNetConfig, PoseEstimator, PoseModelConfig, PoseOptions};

/// The narrow HRNet fixture in `format` (written into `dir` unless it is the committed zip).
fn fixture(format: NarrowCheckpoint, dir: &tempfile::TempDir) -> PathBuf {
    common::narrow_hrnet_checkpoint(format, dir.path())
}

/// The architecture of the committed fixtures.
fn fixture_config() -> PoseModelConfig {
    PoseModelConfig {
        backbone: HrNetConfig {
            stage1_channels: 8,
            stage1_blocks: 1,
            widths: [4, 8, 16, 32],
            num_modules: [1, 2, 2],
            num_blocks: [1, 1, 1],
        },
        input_size: (96, 128),
    }
}

fn load(path: &Path, config: PoseModelConfig) -> Result<PoseEstimator, String> {
    PoseEstimator::load(path, config, PoseOptions::default(), &Device::Cpu)
        .map_err(|e| e.to_string())
}

#[test]
fn truncated_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for format in common::NARROW_CHECKPOINTS {
        let path = fixture(format, &dir);
        let name = path.file_name().unwrap().to_string_lossy();
        let bytes = std::fs::read(&path).unwrap();
        for frac in [0.0, 0.001, 0.1, 0.5, 0.9, 0.999] {
            let cut = ((bytes.len() as f64) * frac) as usize;
            let p = dir.path().join(format!("cut-{cut}-{name}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let err = Checkpoint::open(&p)
                .err()
                .unwrap_or_else(|| panic!("{name} cut at {cut} opened"));
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(
                matches!(
                    err,
                    CheckpointError::Corrupt { .. } | CheckpointError::UnknownFormat { .. }
                ),
                "{msg}"
            );
        }
    }
    let err = Checkpoint::open(dir.path().join("absent.pth"))
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::Io { .. }));
}

#[test]
fn wider_model_than_checkpoint_names_key_and_shapes() {
    // like W48 weights into a W32 model: same keys, other widths
    let mut cfg = fixture_config();
    cfg.backbone.widths = [8, 16, 32, 64];
    let dir = tempfile::tempdir().unwrap();
    let msg = load(&fixture(NarrowCheckpoint::Zip, &dir), cfg)
        .err()
        .unwrap();
    assert!(msg.contains("hrnet_w4_zip.pth"), "{msg}");
    assert!(msg.contains("backbone.transition1.0.0.weight"), "{msg}");
    assert!(
        msg.contains("[4, 32, 3, 3]") && msg.contains("[8, 32, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn missing_tensors_are_named() {
    let mut cfg = fixture_config();
    cfg.backbone.num_blocks = [2, 1, 1];
    let dir = tempfile::tempdir().unwrap();
    let msg = load(&fixture(NarrowCheckpoint::Safetensors, &dir), cfg)
        .err()
        .unwrap();
    assert!(
        msg.contains("backbone.stage2.0.branches.0.1.conv1.weight") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn unused_tensors_are_reported() {
    let mut cfg = fixture_config();
    cfg.backbone.num_modules = [1, 1, 2];
    let dir = tempfile::tempdir().unwrap();
    let msg = load(&fixture(NarrowCheckpoint::Legacy, &dir), cfg)
        .err()
        .unwrap();
    assert!(
        msg.contains("not used") && msg.contains("backbone.stage3.1."),
        "{msg}"
    );
}

#[test]
fn degenerate_and_outside_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let est = PoseEstimator::load(
        fixture(NarrowCheckpoint::Zip, &dir),
        fixture_config(),
        PoseOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let img = RgbImage::new(64, 48);
    let items = [
        (&img, BBox::new(10.0, 10.0, 10.0, 10.0)),     // zero area
        (&img, BBox::new(f32::NAN, 0.0, 5.0, 5.0)),    // not finite
        (&img, BBox::new(500.0, 400.0, 600.0, 600.0)), // entirely outside
        (&img, BBox::new(-20.0, -20.0, 30.0, 40.0)),   // partly outside
    ];
    let out = est.estimate(&items).unwrap();
    assert_eq!(out.len(), 4);
    // documented: degenerate boxes give keypoints at the box centre with score 0
    assert!(out[0]
        .iter()
        .all(|k| k.x == 10.0 && k.y == 10.0 && k.score == 0.0));
    assert!(out[1].iter().all(|k| k.score == 0.0));
    for kps in &out[2..] {
        assert!(kps
            .iter()
            .all(|k| k.x.is_finite() && k.y.is_finite() && k.score.is_finite()));
    }
    // outside box: keypoints land inside its (padded) crop region
    assert!(out[2].iter().all(|k| k.x > 400.0 && k.y > 300.0));
    assert!(est.estimate(&[]).unwrap().is_empty());
}

#[test]
fn estimator_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PoseEstimator>();
}
