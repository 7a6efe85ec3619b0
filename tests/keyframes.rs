//! `detector.interval`: detection on key frames only, people carried by their poses between
//! them, an early detection when a carried pose degrades, and the detector itself on key
//! frames.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::*;
use vidpose::config::Config;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::person::Keypoint;
use vidpose::pipeline::{self, RunReport};
use vidpose::posetrack::PoseTrackFile;
use vidpose::video::discover;

/// One box per frame for `video`, moving right by a pixel a frame: `[1 + i, 2, 30, 40]`.
fn boxes_file(path: &Path, video: &str, frames: u64) {
    let images: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{video}/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .map(|i| {
            serde_json::json!({"image_id": i + 1, "bbox": [1.0 + i as f64, 2.0, 30.0, 40.0], "category_id": 1})
        })
        .collect();
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Keypoints spread over the middle of each box (so a box can be carried from them); the
/// score of call `weak_call` (from 1) is 0.1, else 0.9. Records each call's boxes.
struct SpreadModel {
    boxes: Arc<Mutex<Vec<Vec<BBox>>>>,
    weak_call: Option<usize>,
}

impl vidpose::stages::pose::PoseModel for SpreadModel {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; 17]>, Box<dyn std::error::Error + Send + Sync>> {
        let mut calls = self.boxes.lock().unwrap();
        calls.push(items.iter().map(|(_, b)| *b).collect());
        let score = if Some(calls.len()) == self.weak_call {
            0.1
        } else {
            0.9
        };
        Ok(items
            .iter()
            .map(|(_, b)| {
                std::array::from_fn(|j| Keypoint {
                    x: b.x1 + b.width() * (0.2 + 0.6 * (j % 4) as f32 / 3.0),
                    y: b.y1 + b.height() * (0.1 + 0.8 * (j / 4) as f32 / 4.0),
                    score,
                })
            })
            .collect())
    }
}

fn clip(dir: &Path, frames: u64) -> (PathBuf, PathBuf) {
    let video = dir.join("a.mp4");
    make_mp4(&video, frames as usize, 64, 48, 25.0);
    let boxes = dir.join("a.json");
    boxes_file(&boxes, "a", frames);
    (video, boxes)
}

fn config(out: &Path, boxes: &Path, extra: &[&str]) -> Config {
    let mut overrides = vec![
        format!("output.dir='{}'", out.display()),
        format!("detector.boxes='{}'", boxes.display()),
        "detector.kind=boxes".to_string(),
        "pipeline.progress=false".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &overrides).unwrap()
}

fn run(cfg: &Config, video: &Path, model: SpreadModel) -> RunReport {
    let jobs = discover::discover(&[video.to_path_buf()]).unwrap();
    pipeline::run_with_pose(
        cfg,
        jobs,
        Some(Box::new(model)),
        Box::new(vidpose::sinks::standard(None, false)),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

/// The box written for each frame (one person per frame here).
fn written_boxes(out: &Path) -> Vec<[f64; 4]> {
    let file = PoseTrackFile::read(&out.join("a.json")).unwrap();
    let mut boxes = vec![None; file.images.len()];
    for a in &file.annotations {
        let frame = file.images.iter().position(|i| i.id == a.image_id).unwrap();
        assert!(boxes[frame].is_none(), "one person per frame");
        boxes[frame] = a.bbox;
    }
    boxes
        .into_iter()
        .map(|b| b.expect("a person in every frame"))
        .collect()
}

fn given(i: usize) -> [f64; 4] {
    [1.0 + i as f64, 2.0, 30.0, 40.0]
}

#[test]
fn boxes_come_from_the_detector_every_k_frames_and_from_the_poses_between() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path(), 12);
    let out = dir.path().join("out");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let model = SpreadModel {
        boxes: calls.clone(),
        weak_call: None,
    };
    let report = run(
        &config(&out, &boxes, &["detector.interval=5"]),
        &video,
        model,
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let written = written_boxes(&out);
    assert_eq!(written.len(), 12);
    for (i, b) in written.iter().enumerate() {
        if i % 5 == 0 {
            assert_eq!(*b, given(i), "key frame {i} keeps its given box");
        } else {
            assert_ne!(*b, given(i), "frame {i} is carried, not given");
        }
    }
    // A carried box is the box around the previous pose's keypoints, grown 1.25x and widened
    // to the model's 3:4: the keypoints of frame 0 span x 1+0.2*30 .. 1+0.8*30 (7 .. 25) and
    // y 2+0.1*40 .. 2+0.9*40 (6 .. 38); grown: 22.5 x 40, then 30 x 40 at 3:4, centred at
    // (16, 22).
    let b = written[1];
    let expected = [1.0, 2.0, 30.0, 40.0];
    for (got, want) in b.iter().zip(expected) {
        assert!((got - want).abs() < 1e-3, "{b:?} vs {expected:?}");
    }
    // One pose call per frame (each waits for the previous frame's poses).
    assert_eq!(calls.lock().unwrap().len(), 12);
    let detect = report.stages.iter().find(|s| s.stage == "detect").unwrap();
    assert_eq!((detect.items, detect.batches), (12, 3));
}

#[test]
fn a_degraded_pose_brings_the_next_detection_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path(), 12);
    let out = dir.path().join("out");
    // The poses of frame 2 (third call) score 0.1: frame 3 is detected, then 8.
    let model = SpreadModel {
        boxes: Arc::new(Mutex::new(Vec::new())),
        weak_call: Some(3),
    };
    let report = run(
        &config(
            &out,
            &boxes,
            &["detector.interval=5", "tracker.min_keypoints=0"],
        ),
        &video,
        model,
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let written = written_boxes(&out);
    for i in [0, 3, 8] {
        assert_eq!(written[i], given(i), "frame {i} is a detection frame");
    }
    for i in [1, 4, 5, 9, 10, 11] {
        assert_ne!(written[i], given(i), "frame {i} is carried");
    }
}

#[test]
fn interval_one_is_the_plain_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path(), 6);
    let out = dir.path().join("out");
    let model = SpreadModel {
        boxes: Arc::new(Mutex::new(Vec::new())),
        weak_call: None,
    };
    let report = run(&config(&out, &boxes, &[]), &video, model);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let written = written_boxes(&out);
    assert_eq!(written, (0..6).map(given).collect::<Vec<_>>());
}

#[test]
fn the_detector_runs_on_key_frames_only() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cascade");
    let frame = candle_core::safetensors::load(
        fixture.join("frame_crop.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .remove("image_rgb")
    .unwrap();
    let (h, w, _) = frame.dims3().unwrap();
    let image = RgbImage {
        width: w as u32,
        height: h as u32,
        data: frame.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
    };
    let street = dir.path().join("street");
    std::fs::create_dir(&street).unwrap();
    for i in 0..7 {
        write_bmp(&street.join(format!("{i:06}.bmp")), &image);
    }
    let detector = {
        use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
        let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 1, 64, 8, 16, (240, 160));
        CascadeRcnn::load(
            fixture.join("narrow_r.safetensors"),
            &cfg,
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let out = dir.path().join("out");
    let cfg = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            "detector.kind=cascade_rcnn".into(),
            "detector.score_threshold=0.0".into(),
            "detector.interval=3".into(),
            "pipeline.progress=false".into(),
        ],
    )
    .unwrap();
    let report = pipeline::run_with_models(
        &cfg,
        discover::discover(&[street]).unwrap(),
        Some(detector),
        Some(Box::new(SpreadModel {
            boxes: Arc::new(Mutex::new(Vec::new())),
            weak_call: None,
        })),
        Box::new(vidpose::sinks::standard(None, false)),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let detect = report.stages.iter().find(|s| s.stage == "detect").unwrap();
    // Frames 0, 3 and 6.
    assert_eq!((detect.items, detect.batches), (7, 3));
    let file = PoseTrackFile::read(&out.join("street.json")).unwrap();
    assert_eq!(file.images.len(), 7);
    assert!(!file.annotations.is_empty());
}

#[test]
fn interval_settings_are_checked() {
    let bad = |set: &str| {
        Config::load(None, &[set.to_string()])
            .unwrap_err()
            .to_string()
    };
    assert!(bad("detector.interval=0").contains("detector.interval"));
    assert!(bad("detector.refresh_score=1.5").contains("detector.refresh_score"));
    let e = Config::load(
        None,
        &[
            "detector.interval=5".into(),
            "pose.model=none".into(),
            "tracker.kind=given".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs a pose model"), "{e}");
}

/// Two clips in flight at once (`input.concurrent: 2`): each carries its own people between
/// its own key frames (the key-frame stage waits for each video's own tracker reports while
/// the other's frames interleave), and the files equal those of the clips run one after the
/// other, byte for byte.
#[test]
fn two_clips_at_once_carry_their_own_people() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = dir.path().join("boxes");
    std::fs::create_dir_all(&boxes).unwrap();
    let mut inputs = Vec::new();
    for (name, frames) in [("a", 14), ("b", 11)] {
        let video = dir.path().join(format!("{name}.mp4"));
        make_mp4(&video, frames as usize, 64, 48, 25.0);
        boxes_file(&boxes.join(format!("{name}.json")), name, frames);
        inputs.push(video);
    }
    let run_with = |out: &Path, concurrent: &str| {
        let cfg = config(
            out,
            &boxes,
            &[
                "detector.interval=4",
                &format!("input.concurrent={concurrent}"),
            ],
        );
        let model = SpreadModel {
            boxes: Arc::new(Mutex::new(Vec::new())),
            weak_call: None,
        };
        let report = pipeline::run_with_pose(
            &cfg,
            discover::discover(&inputs).unwrap(),
            Some(Box::new(model)),
            Box::new(vidpose::sinks::standard(None, false)),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        report
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    run_with(&one, "1");
    let report = run_with(&two, "2");
    assert_eq!(report.videos.len(), 2);
    for name in ["a", "b"] {
        let file = format!("{name}.json");
        let (x, y) = (
            std::fs::read(one.join(&file)).unwrap(),
            std::fs::read(two.join(&file)).unwrap(),
        );
        assert!(x == y, "{file} differs between the runs");
    }
    // Frames between key frames got boxes carried from the poses, not the given ones.
    let boxes = written_boxes(&two);
    assert_eq!(boxes[0], given(0));
    assert_ne!(boxes[1], given(1));
}
