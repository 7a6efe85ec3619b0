//! On the real PoseTrack18 / COCO fixtures in `../shared/data` (skipped when absent).

mod common;

use common::*;
use vidpose::posetrack::boxes::GivenBoxes;
use vidpose::posetrack::PoseTrackFile;

#[test]
fn posetrack_annotation_files_as_boxes() {
    let Some(data) = shared_data() else { return };
    let ann = data.join("posetrack18/annotations/val");
    let boxes = GivenBoxes::load(&ann, None, 0.4).unwrap();
    let people = boxes.persons("012834_mpii_test", 0, 1920, 1080);
    assert_eq!(people.len(), 11);
    let mut ids: Vec<i64> = people.iter().map(|(_, t)| t.unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..11).collect::<Vec<_>>());
    assert_eq!(boxes.persons("003418_mpii_test", 0, 1920, 1080).len(), 1);
    assert_eq!(boxes.persons("009473_mpii_test", 0, 1920, 1080).len(), 2);
    let image = boxes.image("003418_mpii_test", 0).unwrap();
    assert_eq!(image.id, 10034180000);
    assert_eq!(image.nframes, Some(149));
}

#[test]
fn coco_detection_results_mapped_through_images() {
    let Some(data) = shared_data() else { return };
    let dets = data.join("posetrack18/annotations/test_posetrack18_human_detections.json");
    let images = data.join("posetrack18/annotations/test_posetrack18_val.json");
    let all = GivenBoxes::load(&dets, Some(&images), 0.0).unwrap();
    let count = |b: &GivenBoxes| -> usize {
        ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
            .iter()
            .map(|s| b.persons(s, 0, 1920, 1080).len())
            .sum()
    };
    assert_eq!(count(&all), 278);
    let raw: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&dets).unwrap()).unwrap();
    let above = raw
        .iter()
        .filter(|d| d["score"].as_f64().unwrap() >= 0.4)
        .count();
    let kept = GivenBoxes::load(&dets, Some(&images), 0.4).unwrap();
    assert_eq!(count(&kept), above);
    assert!(above < 278);
}

#[test]
fn run_on_a_posetrack_sequence_with_its_annotation_as_boxes() {
    let Some(data) = shared_data() else { return };
    let seq = data.join("posetrack18/images/val/003418_mpii_test");
    let ann = data.join("posetrack18/annotations/val/003418_mpii_test.json");
    let out = tempfile::tempdir().unwrap();
    let output = vidpose()
        .arg("run")
        .arg("--input")
        .arg(&seq)
        .arg("--output")
        .arg(out.path())
        .arg("--set")
        .arg(format!("detector.boxes={}", ann.display()))
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .arg("--metrics-json")
        .arg(out.path().join("metrics.json"))
        .current_dir(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("stage") && stderr.contains("p95 ms"),
        "{stderr}"
    );
    for stage in ["decode", "detect", "track", "sink"] {
        assert!(stderr.contains(stage), "{stderr}");
    }
    let gt = PoseTrackFile::read(&ann).unwrap();
    let ours = PoseTrackFile::read(&out.path().join("003418_mpii_test.json")).unwrap();
    assert_eq!(ours.images, gt.images);
    let boxes = |f: &PoseTrackFile| -> Vec<(u64, [f64; 4], Option<i64>)> {
        f.annotations
            .iter()
            .map(|a| (a.image_id, a.bbox.unwrap(), a.track_id))
            .collect()
    };
    let theirs = boxes(&gt);
    let mine = boxes(&ours);
    assert_eq!(mine.len(), theirs.len());
    for (m, t) in mine.iter().zip(&theirs) {
        assert_eq!(m.0, t.0);
        assert_eq!(m.2, t.2);
        // Boxes are clipped to the frame, as MMPose's dataset clips them: this person's box
        // reaches below the 1080-pixel frame.
        let clipped = vidpose::geometry::BBox::from_annotation_xywh(t.1, 1920.0, 1080.0);
        assert!(t.1[1] + t.1[3] > 1079.0);
        let expected = clipped.to_xywh();
        for k in 0..4 {
            assert!(
                (m.1[k] - expected[k] as f64).abs() < 1e-3,
                "{m:?} vs {expected:?}"
            );
        }
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["stages"].as_array().unwrap().len(), 4);
}

#[test]
fn posetrack_root_with_automatic_boxes() {
    let Some(data) = shared_data() else { return };
    let out = tempfile::tempdir().unwrap();
    let output = vidpose()
        .arg("run")
        .arg("-i")
        .arg(data.join("posetrack18/images/val"))
        .arg("-o")
        .arg(out.path())
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for seq in ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"] {
        let f = PoseTrackFile::read(&out.path().join(format!("{seq}.json"))).unwrap();
        assert_eq!(f.images.len(), 1);
        assert!(!f.annotations.is_empty());
    }
}

#[test]
fn the_sample_video_and_its_frames_decode_alike() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("posetrack18/videos/000001_mpiinew_test");
    let decode = |p: std::path::PathBuf| {
        let jobs = vidpose::video::discover(&[p]).unwrap();
        let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 2).unwrap();
        let mut v = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            v.push(f);
        }
        v
    };
    let video = decode(dir.join("000001_mpiinew_test.mp4"));
    let frames = decode(dir.clone());
    assert_eq!(video.len(), 5);
    assert_eq!(frames.len(), 5);
    for (a, b) in video.iter().zip(&frames) {
        assert_eq!((a.image.width, a.image.height), (1280, 720));
        assert_eq!((b.image.width, b.image.height), (1280, 720));
        // Same pictures through two lossy codecs: close on average.
        assert!((mean_level(&a.image) - mean_level(&b.image)).abs() < 3.0);
    }
}
