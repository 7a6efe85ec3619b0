//! The HRNet estimator inside the pipeline: every box of every frame gets its keypoints, the
//! same ones the estimator gives on its own.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use vidpose::config::Config;
use vidpose::geometry::BBox;
use vidpose::pipeline::{self, sink::PoseTrackSink};
use vidpose::pose::PoseOptions;
use vidpose::posetrack::PoseTrackFile;
use vidpose::video::discover;

fn run_with_narrow_model(inputs: &[PathBuf], overrides: &[String], flip: bool) {
    let config = Config::load(None, overrides).unwrap();
    let options = PoseOptions {
        flip_test: flip,
        batch_size: config.pose.batch_size,
        ..Default::default()
    };
    let jobs = discover::discover(inputs).unwrap();
    let report = pipeline::run_with_pose(
        &config,
        jobs,
        Some(Box::new(narrow_estimator(options))),
        Box::new(PoseTrackSink::new(None, false)),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}

/// Checks each annotation of `file` against the estimator run directly on `frame`.
fn check_against_direct(
    file: &PoseTrackFile,
    frame_of: impl Fn(u64) -> vidpose::image::RgbImage,
    flip: bool,
) {
    let est = narrow_estimator(PoseOptions {
        flip_test: flip,
        ..Default::default()
    });
    assert!(!file.annotations.is_empty());
    for a in &file.annotations {
        let b = a.bbox.unwrap();
        let bbox = BBox::from_xywh([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]);
        let frame = frame_of(a.image_id);
        let direct = est.estimate(&[(&frame, bbox)]).unwrap()[0];
        let k = a.keypoints.as_ref().unwrap();
        let s = a.scores.as_ref().unwrap();
        assert_eq!((k.len(), s.len()), (51, 17));
        for (j, d) in direct.iter().enumerate() {
            // Batched with other crops or alone, a crop's result is the same to float precision.
            assert!((k[3 * j] - d.x as f64).abs() < 1e-3, "x of joint {j}");
            assert!((k[3 * j + 1] - d.y as f64).abs() < 1e-3, "y of joint {j}");
            assert!((s[j] - d.score as f64).abs() < 1e-4, "score of joint {j}");
        }
    }
}

#[test]
fn every_box_of_every_frame_gets_keypoints() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    make_mp4(&video, 5, 96, 64, 25.0);
    let images: Vec<_> = (0..5)
        .map(|i| serde_json::json!({"id": i, "file_name": format!("clip/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..5)
        .flat_map(|i| {
            [
                serde_json::json!({"image_id": i, "bbox": [4.0, 4.0, 30.0, 50.0]}),
                serde_json::json!({"image_id": i, "bbox": [40.0 + i as f64, 2.0, 40.0, 60.0]}),
            ]
        })
        .collect();
    let boxes = dir.path().join("boxes.json");
    std::fs::write(
        &boxes,
        serde_json::json!({"images": images, "annotations": anns}).to_string(),
    )
    .unwrap();
    let out = dir.path().join("out");
    for flip in [false, true] {
        run_with_narrow_model(
            std::slice::from_ref(&video),
            &[
                format!("output.dir='{}'", out.display()),
                format!("detector.boxes='{}'", boxes.display()),
                "pipeline.progress=false".into(),
                "output.overwrite=true".into(),
                "pose.batch_size=3".into(),
            ],
            flip,
        );
        let file = PoseTrackFile::read(&out.join("clip.json")).unwrap();
        assert_eq!(file.annotations.len(), 10);
        let frames = decode_frames(&video);
        check_against_direct(&file, |id| frames[id as usize].clone(), flip);
    }
}

fn decode_frames(path: &Path) -> Vec<vidpose::image::RgbImage> {
    let jobs = discover::discover(&[path.to_path_buf()]).unwrap();
    let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 1).unwrap();
    let mut v = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        v.push(f.image);
    }
    v
}

#[test]
fn real_posetrack_frames_with_ground_truth_boxes() {
    let Some(data) = shared_data() else { return };
    let root = data.join("posetrack18/images/val");
    let out = tempfile::tempdir().unwrap();
    run_with_narrow_model(
        std::slice::from_ref(&root),
        &[
            format!("output.dir='{}'", out.path().display()),
            "pipeline.progress=false".into(),
        ],
        true,
    );
    for (seq, people) in [
        ("003418_mpii_test", 1),
        ("009473_mpii_test", 2),
        ("012834_mpii_test", 11),
    ] {
        let file = PoseTrackFile::read(&out.path().join(format!("{seq}.json"))).unwrap();
        assert_eq!(file.annotations.len(), people, "{seq}");
        let frames = decode_frames(&root.join(seq));
        check_against_direct(&file, |_| frames[0].clone(), true);
    }
}
