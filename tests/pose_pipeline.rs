//! The HRNet estimator inside the pipeline: every box of every frame gets its keypoints, the
//! same ones the estimator gives on its own.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use vidpose::config::Config;
use vidpose::geometry::BBox;
use vidpose::pipeline;
use vidpose::pose::PoseOptions;
use vidpose::posetrack::PoseTrackFile;
use vidpose::video::discover;

fn run_with_narrow_model(inputs: &[PathBuf], overrides: &[String], flip: bool) {
    let mut overrides = overrides.to_vec();
    if !overrides.iter().any(|o| o.starts_with("tracker.")) {
        // Compare every box with the estimator: no NMS, no track births dropping people.
        overrides.push("tracker.kind=given".into());
        overrides.push("tracker.nms_oks_threshold=1.0".into());
    }
    let config = Config::load(None, &overrides).unwrap();
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
        Box::new(vidpose::sinks::standard(None, false)),
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

/// An annotation file with `frames` images of `video` and the given annotations.
fn write_boxes(dir: &Path, video: &str, frames: u64, anns: Vec<serde_json::Value>) -> PathBuf {
    let images: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"id": i, "file_name": format!("{video}/{i:06}.jpg")}))
        .collect();
    let path = dir.join("boxes.json");
    std::fs::write(
        &path,
        serde_json::json!({"images": images, "annotations": anns}).to_string(),
    )
    .unwrap();
    path
}

#[test]
fn every_box_of_every_frame_gets_keypoints() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    make_mp4(&video, 5, 96, 64, 25.0);
    let anns: Vec<_> = (0..5)
        .flat_map(|i| {
            [
                serde_json::json!({"image_id": i, "bbox": [4.0, 4.0, 30.0, 50.0]}),
                serde_json::json!({"image_id": i, "bbox": [40.0 + i as f64, 2.0, 40.0, 60.0]}),
            ]
        })
        .collect();
    let boxes = write_boxes(dir.path(), "clip", 5, anns);
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

#[test]
fn hungarian_tracker_keeps_ids_of_people_moving_across_frames() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("walk.mp4");
    make_mp4(&video, 6, 128, 64, 25.0);
    // Two people walking towards each other, two pixels a frame; the right one leaves after
    // frame 3 and a third one appears in frame 5.
    let mut anns = Vec::new();
    for i in 0..6 {
        let step = 2.0 * i as f64;
        anns.push(serde_json::json!({"image_id": i, "bbox": [5.0 + step, 4.0, 30.0, 50.0]}));
        if i <= 3 {
            anns.push(serde_json::json!({"image_id": i, "bbox": [80.0 - step, 6.0, 30.0, 50.0]}));
        }
        if i == 5 {
            anns.push(serde_json::json!({"image_id": i, "bbox": [90.0, 2.0, 20.0, 40.0]}));
        }
    }
    let boxes = write_boxes(dir.path(), "walk", 6, anns);
    let out = dir.path().join("out");
    run_with_narrow_model(
        std::slice::from_ref(&video),
        &[
            format!("output.dir='{}'", out.display()),
            format!("detector.boxes='{}'", boxes.display()),
            "pipeline.progress=false".into(),
            "tracker.kind=hungarian".into(),
            // The random narrow model's scores are low: let every person start a track.
            "tracker.min_keypoints=0".into(),
            "tracker.nms_oks_threshold=1.0".into(),
            "tracker.max_age=0".into(),
        ],
        true,
    );
    let file = PoseTrackFile::read(&out.join("walk.json")).unwrap();
    let ids = |frame: u64| -> Vec<(f64, i64)> {
        let mut v: Vec<(f64, i64)> = file
            .annotations
            .iter()
            .filter(|a| a.image_id == frame)
            .map(|a| (a.bbox.unwrap()[0], a.track_id.unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let first = ids(0);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0].1, first[1].1);
    for f in 1..=3 {
        let now = ids(f);
        assert_eq!(now[0].1, first[0].1, "left person, frame {f}");
        assert_eq!(now[1].1, first[1].1, "right person, frame {f}");
    }
    assert_eq!(ids(4), vec![(13.0, first[0].1)]);
    let last = ids(5);
    assert_eq!(last[0].1, first[0].1);
    // A newcomer gets a fresh id, never one used before in the video.
    assert!(last[1].1 != first[0].1 && last[1].1 != first[1].1);
}

/// With fewer frames allowed in flight than a pose batch could gather, the partial batch runs as
/// soon as every frame permit is held, not after the batch timeout.
#[test]
fn a_batch_that_cannot_fill_runs_without_waiting_out_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    make_mp4(&video, 6, 96, 64, 25.0);
    let anns: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"image_id": i, "bbox": [4.0, 4.0, 30.0, 50.0]}))
        .collect();
    let boxes = write_boxes(dir.path(), "clip", 6, anns);
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    run_with_narrow_model(
        std::slice::from_ref(&video),
        &[
            format!("output.dir='{}'", out.display()),
            format!("detector.boxes='{}'", boxes.display()),
            "pipeline.progress=false".into(),
            "pipeline.max_frames_in_flight=2".into(),
            "pose.batch_size=8".into(),
            // Waiting out this timeout even once would take longer than the whole check allows.
            "pose.batch_timeout_ms=10000".into(),
        ],
        false,
    );
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
    let file = PoseTrackFile::read(&out.join("clip.json")).unwrap();
    assert_eq!(file.annotations.len(), 6);
}
