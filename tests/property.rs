//! Property tests for every reader of user input: arbitrary bytes and mutations of valid files
//! (byte changes, cuts, insertions) must give an error or a value, never a panic. Each property
//! prints how many cases ran.

mod common;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as Runner, TestRunner};

/// A mutation of `valid`: a few bytes replaced, a cut, an insertion.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        0..=len,
        proptest::collection::vec(any::<u8>(), 0..16),
        0..=len,
    )
        .prop_map(move |(flips, cut, insert, at)| {
            let mut bytes = valid.clone();
            for (i, b) in flips {
                if i < bytes.len() {
                    bytes[i] = b;
                }
            }
            bytes.truncate(cut.max(1));
            let at = at.min(bytes.len());
            bytes.splice(at..at, insert);
            bytes
        })
}

/// Mutations of `valid` half the time, arbitrary bytes the other half.
fn inputs(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutated(valid),
        proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Runs `check` on `cases` generated files named `name` and says how many ran.
fn property(
    name: &str,
    valid: Vec<u8>,
    cases: u32,
    check: impl Fn(&Path) + std::panic::RefUnwindSafe,
) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join(name);
    let mut runner = TestRunner::new(Runner {
        cases,
        failure_persistence: None,
        ..Runner::default()
    });
    let ran = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&inputs(valid), |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            check(&path);
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    eprintln!("{name}: {} cases, no panic", ran.into_inner());
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn pipeline_yaml_never_panics() {
    property("pipeline.yaml", fixture("pipeline.yaml"), 512, |p| {
        let _ = vidpose::config::Config::load(Some(p), &[]);
    });
}

#[test]
fn posetrack_and_coco_annotation_files_never_panic() {
    for (name, rel) in [
        (
            "pt.json",
            "samples/posetrack18/annotations/val/012834_mpii_test.json",
        ),
        (
            "coco.json",
            "samples/posetrack18/annotations/test_posetrack18_val.json",
        ),
    ] {
        property(name, fixture(rel), 256, |p| {
            let _ = vidpose::posetrack::PoseTrackFile::read(p);
            let _ = vidpose::posetrack::boxes::GivenBoxes::load(p, None, 0.4);
        });
    }
}

#[test]
fn detection_files_never_panic() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/posetrack18/annotations/test_posetrack18_val.json");
    property(
        "dets.json",
        fixture("samples/posetrack18/annotations/test_posetrack18_human_detections.json"),
        256,
        |p| {
            if let Ok(boxes) = vidpose::posetrack::boxes::GivenBoxes::load(p, Some(&images), 0.4) {
                let _ = boxes.persons("012834_mpii_test", 0, 1920, 1080);
            }
        },
    );
}

#[test]
fn checkpoints_never_panic() {
    let json: serde_json::Value =
        serde_json::from_slice(&fixture("tests/fixtures/hrnet/reference.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("ckpt.pth", common::NarrowCheckpoint::Zip),
        ("legacy.pth", common::NarrowCheckpoint::Legacy),
        ("ckpt.safetensors", common::NarrowCheckpoint::Safetensors),
    ] {
        let config = common::narrow_hrnet_config(&json);
        let valid = std::fs::read(common::narrow_hrnet_checkpoint(format, dir.path())).unwrap();
        property(name, valid, 64, move |p| {
            let _ = vidpose::pose::PoseEstimator::load(
                p,
                config.clone(),
                Default::default(),
                &candle_core::Device::Cpu,
            );
        });
    }
}

#[test]
fn images_never_panic() {
    for (name, rel) in [
        ("frame.jpg", "tests/fixtures/decode/images/progressive.jpg"),
        ("cmyk.jpg", "tests/fixtures/decode/images/cmyk.jpg"),
        ("exif.jpg", "tests/fixtures/decode/images/exif6.jpg"),
        ("frame.png", "tests/fixtures/decode/images/interlaced.png"),
        ("exif.png", "tests/fixtures/decode/images/exif6.png"),
    ] {
        property(name, fixture(rel), 256, |p| {
            let _ = vidpose::image::read_still(p);
        });
    }
}
