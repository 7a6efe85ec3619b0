//! End to end against MMPose's own test loop: the committed PoseTrack sample
//! (`samples/posetrack18`: JPEG frames, annotation files, detection results) through vidpose's
//! whole pipeline, compared with the per-video files MMPose 1.3.2's `Runner.test` and
//! PoseTrack18Metric wrote for the same frames with the same narrow random HRNet, in both box
//! modes (ground truth, detection results), and the AP poseval gives for them.
//! `scripts/make_e2e_fixtures.py` writes `tests/fixtures/e2e/narrow/`.
//!
//! Tolerances: keypoints within 0.01 px; keypoint and instance scores within
//! 1e-4 x max(1, the instance's highest keypoint score) (random weights give heatmap peaks far
//! above 1); AP within 1e-9 of poseval's.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use serde_json::Value;
use vidpose::config::Config;
use vidpose::pipeline;
use vidpose::pose::PoseOptions;
use vidpose::posetrack::{Annotation, PoseTrackFile};
use vidpose::video::discover;

const SEQUENCES: [&str; 3] = ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn samples() -> PathBuf {
    repo().join("samples/posetrack18")
}

fn reference(mode: &str) -> PathBuf {
    repo().join("tests/fixtures/e2e/narrow").join(mode)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs the sample through vidpose's pipeline as MMPose's test loop runs it: flip test, MSRA
/// decoding, OKS NMS 0.9, no linking (`tracker.kind: given`).
fn run_vidpose(mode: &str, out: &Path, estimator: vidpose::pose::PoseEstimator) {
    let root = samples();
    let mut overrides = vec![
        format!("output.dir='{}'", out.display()),
        "tracker.kind=given".to_string(),
        "tracker.nms_oks_threshold=0.9".to_string(),
        "pose.batch_size=4".to_string(),
        "pipeline.progress=false".to_string(),
    ];
    if mode == "det" {
        overrides.push(format!(
            "detector.boxes='{}'",
            root.join("annotations/test_posetrack18_human_detections.json")
                .display()
        ));
        overrides.push(format!(
            "detector.boxes_images='{}'",
            root.join("annotations/test_posetrack18_val.json").display()
        ));
    }
    let config = Config::load(None, &overrides).unwrap();
    let jobs = discover::discover(&[root.join("images/val")]).unwrap();
    let report = pipeline::run_with_pose(
        &config,
        jobs,
        Some(Box::new(estimator)),
        Box::new(vidpose::sinks::standard(None, false)),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}

fn keypoints(a: &Annotation) -> &[f64] {
    a.keypoints.as_deref().expect("keypoints")
}

/// Largest keypoint position difference between two annotations, in pixels.
fn position_gap(a: &Annotation, b: &Annotation) -> f64 {
    keypoints(a)
        .chunks(3)
        .zip(keypoints(b).chunks(3))
        .map(|(p, q)| (p[0] - q[0]).abs().max((p[1] - q[1]).abs()))
        .fold(0.0, f64::max)
}

struct Worst {
    position: f64,
    score: f64,
    people: usize,
}

/// Compares vidpose's files with MMPose's for every frame: the same frames, the same people in
/// the same order.
fn compare_files(ours: &Path, theirs: &Path) -> Worst {
    let mut worst = Worst {
        position: 0.0,
        score: 0.0,
        people: 0,
    };
    for seq in SEQUENCES {
        let name = format!("{seq}.json");
        let mine = PoseTrackFile::read(&ours.join(&name)).unwrap();
        let reference = PoseTrackFile::read(&theirs.join(&name)).unwrap();
        let ids = |f: &PoseTrackFile| -> Vec<(u64, String)> {
            f.images
                .iter()
                .map(|i| (i.id, i.file_name.clone()))
                .collect()
        };
        assert_eq!(ids(&mine), ids(&reference), "{name}: frames");
        for image in &reference.images {
            let in_frame = |f: &PoseTrackFile| -> Vec<Annotation> {
                f.annotations
                    .iter()
                    .filter(|a| a.image_id == image.id)
                    .cloned()
                    .collect()
            };
            let (mut mine, reference) = (in_frame(&mine), in_frame(&reference));
            assert_eq!(
                mine.len(),
                reference.len(),
                "{name} image {}: people",
                image.id
            );
            // In MMPose's order (highest instance score first): the evaluator pairs people
            // in file order when they tie, so the order can move the AP.
            for (m, r) in mine.drain(..).zip(&reference) {
                let gap = position_gap(&m, r);
                let peak = r
                    .scores
                    .as_ref()
                    .unwrap()
                    .iter()
                    .cloned()
                    .fold(1.0, f64::max);
                let score_gap = m
                    .scores
                    .as_ref()
                    .unwrap()
                    .iter()
                    .zip(r.scores.as_ref().unwrap())
                    .map(|(a, b)| (a - b).abs())
                    .chain([(m.score.unwrap() - r.score.unwrap()).abs()])
                    .fold(0.0, f64::max)
                    / peak;
                assert!(
                    gap <= 0.01,
                    "{name} image {}: keypoints {gap} px from MMPose's",
                    image.id
                );
                assert!(
                    score_gap <= 1e-4,
                    "{name} image {}: scores {score_gap} (relative) from MMPose's:\n{:?} {:?}\nvs {:?} {:?}",
                    image.id,
                    m.score,
                    m.scores,
                    r.score,
                    r.scores
                );
                worst.position = worst.position.max(gap);
                worst.score = worst.score.max(score_gap);
                worst.people += 1;
            }
        }
    }
    worst
}

/// vidpose's evaluator on a prediction folder: the AP row in poseval's joint order + total.
fn ap_of(pred: &Path) -> Vec<f64> {
    let report =
        vidpose::posetrack::eval::evaluate_dirs(&samples().join("annotations/val"), pred).unwrap();
    report.to_json()["ap"]["ap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn options() -> PoseOptions {
    PoseOptions {
        flip_test: true,
        batch_size: 4,
        ..Default::default()
    }
}

/// Runs one box mode and compares it with MMPose's files and poseval's AP in `reference`.
fn check_mode(
    mode: &str,
    reference: &Path,
    estimator: vidpose::pose::PoseEstimator,
    expected_people: usize,
) {
    let out = tempfile::tempdir().unwrap();
    run_vidpose(mode, out.path(), estimator);
    let worst = compare_files(out.path(), reference);
    eprintln!(
        "{mode}: {} people, keypoints within {:.2e} px, scores within {:.2e} (relative)",
        worst.people, worst.position, worst.score
    );
    assert_eq!(worst.people, expected_people);

    let poseval = read_json(&reference.join("ap.json"));
    let expected: Vec<f64> = poseval["poseval"]["ap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // Both MMPose's files and vidpose's score what poseval gave MMPose's.
    for (who, dir) in [("MMPose's", reference), ("vidpose's", out.path())] {
        let ap = ap_of(dir);
        assert_eq!(ap.len(), expected.len());
        for (j, (a, e)) in ap.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() < 1e-9,
                "{mode}, {who} files: AP[{j}] {a} vs poseval {e}"
            );
        }
    }
}

#[test]
fn ground_truth_boxes_match_mmposes_test_loop() {
    // 14 annotated people, none left out by MMPose's rules or its NMS.
    check_mode("gt", &reference("gt"), narrow_estimator(options()), 14);
}

#[test]
fn detection_results_match_mmposes_test_loop() {
    // 88 of the 278 detections score at least 0.4.
    check_mode("det", &reference("det"), narrow_estimator(options()), 88);
}

/// The published architectures at full size: `scripts/parity_e2e_full.sh` writes MMPose's
/// results for a random checkpoint into `VIDPOSE_E2E_DIR` (`gt/`, `det/`, the checkpoint) and
/// names the model card in `VIDPOSE_E2E_MODEL`.
#[test]
#[ignore = "needs the reference environment's output: scripts/parity_e2e_full.sh"]
fn full_size_matches_mmposes_test_loop() {
    let dir = PathBuf::from(std::env::var("VIDPOSE_E2E_DIR").expect("VIDPOSE_E2E_DIR"));
    let model = std::env::var("VIDPOSE_E2E_MODEL").expect("VIDPOSE_E2E_MODEL");
    let cards = vidpose::models::builtin_cards();
    let card = vidpose::models::find(&cards, &model).unwrap();
    let checkpoint = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pth"))
        .expect("a .pth checkpoint in VIDPOSE_E2E_DIR");
    for (mode, people) in [("gt", 14), ("det", 88)] {
        let estimator = vidpose::pose::PoseEstimator::load(
            &checkpoint,
            card.pose_config().unwrap(),
            options(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        check_mode(mode, &dir.join(mode), estimator, people);
    }
}
