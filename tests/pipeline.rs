//! The staged pipeline end to end: bounded frames in flight, order, failure isolation, atomic
//! and resumable output, overlay video, given boxes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vidpose::config::Config;
use vidpose::pipeline::messages::{Frame, VideoMeta};
use vidpose::pipeline::sink::FrameSink;
use vidpose::pipeline::{self, RunReport};
use vidpose::posetrack::PoseTrackFile;
use vidpose::sinks::OverlaySettings;
use vidpose::video::{discover, encode::VideoCodec};

/// An annotation file giving `video` one box per frame for `frames` frames.
fn boxes_file(path: &Path, video: &str, frames: u64) {
    let images: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{video}/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"image_id": i + 1, "bbox": [1.0 + i as f64, 2.0, 10.0, 20.0], "track_id": 3, "category_id": 1}))
        .collect();
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Makes `name.mp4` of `frames` frames for each entry, with a boxes folder covering them all.
fn videos_with_boxes(dir: &Path, videos: &[(&str, u64)]) -> (Vec<PathBuf>, PathBuf) {
    let boxes = dir.join("boxes");
    std::fs::create_dir_all(&boxes).unwrap();
    let mut inputs = Vec::new();
    for &(name, frames) in videos {
        let video = dir.join(format!("{name}.mp4"));
        make_mp4(&video, frames as usize, 64, 48, 25.0);
        boxes_file(&boxes.join(format!("{name}.json")), name, frames);
        inputs.push(video);
    }
    (inputs, boxes)
}

/// A numbered-JPEG folder `seq` and an annotation file listing its frames 0..`listed`.
fn jpeg_sequence(dir: &Path, numbers: &[u64], listed: u64) -> (PathBuf, PathBuf) {
    let seq = dir.join("seq");
    make_jpeg_folder(&seq, numbers);
    let boxes = dir.join("b.json");
    boxes_file(&boxes, "seq", listed);
    (seq, boxes)
}

/// Runs `input` with `boxes` on the default configuration; it must be the run's one failed
/// video and leave no `<name>.json` in `out`. Returns why it failed.
fn lone_failure(out: &Path, boxes: &Path, input: &Path, name: &str) -> String {
    let report = run(
        &config(out, boxes, &[]),
        &[input.to_path_buf()],
        default_sink(),
    );
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(!out.join(format!("{name}.json")).exists());
    report.failed[0].1.clone()
}

fn config(out: &Path, boxes: &Path, extra: &[&str]) -> Config {
    let mut overrides = vec![
        format!("output.dir='{}'", out.display()),
        format!("detector.boxes='{}'", boxes.display()),
        // Boxes from files only: a video they do not cover fails instead of going to the
        // detector.
        "detector.kind=boxes".to_string(),
        "pipeline.progress=false".to_string(),
        "pose.model=none".to_string(),
        "tracker.kind=given".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &overrides).unwrap()
}

fn run(config: &Config, inputs: &[PathBuf], sink: Box<dyn FrameSink>) -> RunReport {
    let jobs = discover::discover(inputs).unwrap();
    pipeline::run(config, jobs, sink, Arc::new(AtomicBool::new(false))).unwrap()
}

fn default_sink() -> Box<dyn FrameSink> {
    Box::new(vidpose::sinks::standard(None, false))
}

/// Records the frames it gets, slowly.
struct SlowSink {
    seen: Arc<Mutex<Vec<(String, u64)>>>,
    delay: Duration,
}

impl FrameSink for SlowSink {
    fn start(
        &mut self,
        _: &Arc<VideoMeta>,
    ) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        Ok(())
    }
    fn frame(
        &mut self,
        frame: &mut Frame,
    ) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        std::thread::sleep(self.delay);
        self.seen
            .lock()
            .unwrap()
            .push((frame.video.job.name.clone(), frame.decoded.number));
        Ok(())
    }
    fn end(
        &mut self,
        _: &Arc<VideoMeta>,
        _: bool,
    ) -> Result<Vec<PathBuf>, vidpose::pipeline::messages::VideoFailure> {
        Ok(Vec::new())
    }
}

#[test]
fn slow_sink_keeps_frames_in_flight_bounded_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, boxes) = videos_with_boxes(dir.path(), &[("a", 25), ("b", 25)]);
    let cfg = config(
        &dir.path().join("out"),
        &boxes,
        &[
            "pipeline.max_frames_in_flight=3",
            "pipeline.channel_capacity=8",
        ],
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = SlowSink {
        seen: seen.clone(),
        delay: Duration::from_millis(4),
    };
    let report = run(&cfg, &inputs, Box::new(sink));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // The channels alone could hold 8 per stage: the permits are what bounds frames.
    assert!(
        report.peak_frames_in_flight <= 3,
        "{}",
        report.peak_frames_in_flight
    );
    assert_eq!(report.peak_frames_in_flight, 3);
    let seen = seen.lock().unwrap();
    let expected: Vec<(String, u64)> = ["a", "b"]
        .iter()
        .flat_map(|n| (0..25).map(move |i| (n.to_string(), i)))
        .collect();
    assert_eq!(*seen, expected);
    let sink = report.stages.iter().find(|s| s.stage == "sink").unwrap();
    assert_eq!(sink.items, 50);
    assert!(sink.busy_s >= 0.15, "the slow sink's busy time is measured");
    let decode = report.stages.iter().find(|s| s.stage == "decode").unwrap();
    assert!(
        decode.blocked_output_s > 0.05,
        "decode waits on the slow sink"
    );
}

#[test]
fn writes_posetrack_json_with_given_boxes_and_track_ids() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("clip.mp4"), 4, 64, 48, 25.0);
    let boxes = dir.path().join("clip_boxes.json");
    boxes_file(&boxes, "clip", 4);
    let out = dir.path().join("out");
    let report = run(
        &config(&out, &boxes, &[]),
        &[dir.path().join("clip.mp4")],
        default_sink(),
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let file = PoseTrackFile::read(&out.join("clip.json")).unwrap();
    assert_eq!(file.images.len(), 4);
    assert_eq!(file.annotations.len(), 4);
    for (i, (img, ann)) in file.images.iter().zip(&file.annotations).enumerate() {
        // The annotation file's image entries are kept.
        assert_eq!(img.id, i as u64 + 1);
        assert_eq!(img.file_name, format!("clip/{i:06}.jpg"));
        assert_eq!(img.nframes, Some(4));
        assert_eq!(ann.image_id, img.id);
        assert_eq!(ann.bbox, Some([1.0 + i as f64, 2.0, 10.0, 20.0]));
        assert_eq!(ann.track_id, Some(3));
    }
    assert_eq!(file.categories.len(), 1);
    assert_eq!(file.categories[0].keypoints.len(), 17);
}

#[test]
fn given_track_ids_are_made_valid_for_posetrack() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("clip.mp4"), 3, 64, 48, 25.0);
    let images: Vec<_> = (0..3)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("clip/{i:06}.jpg")}))
        .collect();
    // Per frame: 10000 (too large), 10000 again, 12 and 12 again.
    let anns: Vec<_> = (0..3)
        .flat_map(|i| {
            [10000, 10000, 12, 12].map(|t| {
                serde_json::json!({"image_id": i + 1, "bbox": [1.0, 2.0, 10.0, 20.0], "track_id": t})
            })
        })
        .collect();
    let boxes = dir.path().join("boxes.json");
    std::fs::write(
        &boxes,
        serde_json::json!({"images": images, "annotations": anns}).to_string(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = run(
        &config(&out, &boxes, &[]),
        &[dir.path().join("clip.mp4")],
        default_sink(),
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let file = PoseTrackFile::read(&out.join("clip.json")).unwrap();
    let mut large_id = None;
    for image in &file.images {
        let ids: Vec<i64> = file
            .annotations
            .iter()
            .filter(|a| a.image_id == image.id)
            .map(|a| a.track_id.unwrap())
            .collect();
        assert_eq!(ids.len(), 4);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 4, "{ids:?}");
        assert!(ids.iter().all(|&t| (0..10000).contains(&t)), "{ids:?}");
        assert!(ids.contains(&12));
        // The too-large id maps to the same id in every frame.
        let mapped = *ids.iter().find(|&&t| t >= 9000).unwrap();
        assert_eq!(*large_id.get_or_insert(mapped), mapped);
    }
}

#[test]
fn a_broken_file_in_a_boxes_folder_fails_only_what_it_would_cover() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, boxes) = videos_with_boxes(dir.path(), &[("a", 2), ("b", 2)]);
    // b's boxes are unreadable; an unrelated, malformed JSON lies beside them.
    std::fs::write(boxes.join("b.json"), "{ not json").unwrap();
    std::fs::write(boxes.join("notes.json"), "[1, 2,").unwrap();
    let out = dir.path().join("out");
    let report = run(&config(&out, &boxes, &[]), &inputs, default_sink());
    assert!(out.join("a.json").exists());
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, "b");
    assert!(
        report.failed[0].1.contains("b.json"),
        "{}",
        report.failed[0].1
    );
}

#[test]
fn png_frames_of_a_posetrack_sequence_are_named_png() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("images/val/000001_mpii_test");
    std::fs::create_dir_all(&seq).unwrap();
    for i in 0..2 {
        let img = test_frame(32, 24, level(i));
        let file = std::fs::File::create(seq.join(format!("{i:06}.png"))).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 32, 24);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header()
            .unwrap()
            .write_image_data(&img.data)
            .unwrap();
    }
    let ann = dir.path().join("annotations/val");
    std::fs::create_dir_all(&ann).unwrap();
    boxes_file(&ann.join("000001_mpii_test.json"), "000001_mpii_test", 0);
    let out = dir.path().join("out");
    let cfg = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            "pipeline.progress=false".into(),
            "pose.model=none".into(),
            "tracker.kind=given".into(),
        ],
    )
    .unwrap();
    let report = run(&cfg, &[seq], default_sink());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let file = PoseTrackFile::read(&out.join("000001_mpii_test.json")).unwrap();
    assert_eq!(file.images.len(), 2);
    assert_eq!(
        file.images[1].file_name,
        "images/val/000001_mpii_test/000001.png"
    );
}

fn overlay_sink() -> Box<dyn FrameSink> {
    Box::new(vidpose::sinks::standard(
        Some(OverlaySettings {
            stream: None,
            codec: VideoCodec::Auto,
            crf: 23,
        }),
        false,
    ))
}

fn write_png(path: &Path, img: &vidpose::image::RgbImage) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header()
        .unwrap()
        .write_image_data(&img.data)
        .unwrap();
}

#[test]
fn a_frame_too_small_for_an_overlay_still_gets_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("tiny");
    std::fs::create_dir(&seq).unwrap();
    write_png(&seq.join("000000.png"), &test_frame(1, 1, 200));
    let boxes = dir.path().join("b.json");
    boxes_file(&boxes, "tiny", 1);
    let out = dir.path().join("out");
    let report = run(
        &config(&out, &boxes, &["render.enabled=true"]),
        &[seq],
        overlay_sink(),
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(out.join("tiny.json").exists());
    assert!(!out.join("tiny.mp4").exists());
}

#[test]
fn overlay_frames_of_another_size_are_fitted_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("mixed");
    std::fs::create_dir(&seq).unwrap();
    write_png(&seq.join("000000.png"), &test_frame(64, 48, 40));
    write_png(&seq.join("000001.png"), &test_frame(32, 48, 220));
    let boxes = dir.path().join("b.json");
    boxes_file(&boxes, "mixed", 2);
    let out = dir.path().join("out");
    let report = run(
        &config(&out, &boxes, &["render.enabled=true"]),
        &[seq],
        overlay_sink(),
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let jobs = discover::discover(&[out.join("mixed.mp4")]).unwrap();
    let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 1).unwrap();
    d.next_frame().unwrap().unwrap();
    let second = d.next_frame().unwrap().unwrap().image;
    assert_eq!((second.width, second.height), (64, 48));
    // Black bars left and right, the 32-pixel-wide frame whole in the middle.
    let at = |x: i64| second.pixel(x, 40).unwrap()[1] as i32;
    assert!(at(3) < 30 && at(60) < 30, "{} {}", at(3), at(60));
    assert!(at(32) > 150, "{}", at(32));
}

#[test]
fn one_bad_video_does_not_stop_the_others_nor_lose_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    make_mp4(&input.join("good.mp4"), 3, 64, 48, 25.0);
    std::fs::write(input.join("bad.mp4"), "not a video at all\n".repeat(20)).unwrap();
    let boxes = dir.path().join("boxes");
    std::fs::create_dir(&boxes).unwrap();
    boxes_file(&boxes.join("good.json"), "good", 3);
    boxes_file(&boxes.join("bad.json"), "bad", 3);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("bad.json"), "earlier result").unwrap();
    let cfg = config(&out, &boxes, &["output.overwrite=true"]);
    let report = run(&cfg, std::slice::from_ref(&input), default_sink());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "bad");
    assert!(
        report.failed[0].1.contains("bad.mp4"),
        "{}",
        report.failed[0].1
    );
    assert!(out.join("good.json").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("bad.json")).unwrap(),
        "earlier result"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty());

    // A rerun without --overwrite skips what is complete.
    let cfg = config(&out, &boxes, &[]);
    let report = run(&cfg, &[input], default_sink());
    assert_eq!(report.skipped, vec!["bad".to_string(), "good".to_string()]);
}

#[test]
fn gap_in_numbering_fails_that_sequence_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, boxes) = jpeg_sequence(dir.path(), &[0, 1, 4], 1);
    let out = dir.path().join("out");
    let reason = lone_failure(&out, &boxes, &seq, "seq");
    assert!(
        reason.contains("gap") && reason.contains(&seq.display().to_string()),
        "{reason}"
    );

    let report = run(
        &config(&out, &boxes, &["input.allow_gaps=true"]),
        &[seq],
        default_sink(),
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let file = PoseTrackFile::read(&out.join("seq.json")).unwrap();
    let names: Vec<&str> = file.images.iter().map(|i| i.file_name.as_str()).collect();
    assert_eq!(
        names,
        ["seq/000000.jpg", "seq/000001.jpg", "seq/000004.jpg"]
    );
}

#[test]
fn boxes_for_frames_that_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("clip.mp4"), 3, 64, 48, 25.0);
    let boxes = dir.path().join("b.json");
    boxes_file(&boxes, "clip", 5);
    let out = dir.path().join("out");
    let reason = lone_failure(&out, &boxes, &dir.path().join("clip.mp4"), "clip");
    assert!(reason.contains(&boxes.display().to_string()), "{reason}");
    assert!(reason.contains("3, 4"), "{reason}");
}

#[test]
fn bad_boxes_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("clip.mp4"), 2, 64, 48, 25.0);
    let cases: [(&str, &str); 5] = [
        ("this is not json", "not JSON"),
        (
            r#"{"images": [{"id": 1, "file_name": "clip/000000.jpg"}], "annotations": [{"image_id": 1, "bbox": [0, 0, -5, 10]}]}"#,
            "negative size",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "clip/000000.jpg"}], "annotations": [{"image_id": 1, "bbox": [0, 0, NaN, 10]}]}"#,
            "not JSON",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "clip/000000.jpg"}], "annotations": [{"image_id": 7, "bbox": [0, 0, 5, 10]}]}"#,
            "image_id 7",
        ),
        (
            r#"[{"image_id": 1, "bbox": [0, 0, 5, 10], "score": 0.9}]"#,
            "boxes_images",
        ),
    ];
    for (text, words) in cases {
        let boxes = dir.path().join("boxes.json");
        std::fs::write(&boxes, text).unwrap();
        let cfg = config(&dir.path().join("out"), &boxes, &[]);
        let jobs = discover::discover(&[dir.path().join("clip.mp4")]).unwrap();
        let e = pipeline::run(&cfg, jobs, default_sink(), Arc::new(AtomicBool::new(false)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&boxes.display().to_string()), "{text}: {e}");
        assert!(e.contains(words), "{text}: {e}");
    }
}

#[test]
fn overlay_video_has_every_frame_at_the_source_rate() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("clip.mp4"), 7, 64, 48, 30.0);
    let boxes = dir.path().join("b.json");
    boxes_file(&boxes, "clip", 7);
    let out = dir.path().join("out");
    let cfg = config(&out, &boxes, &["render.enabled=true"]);
    let report = run(&cfg, &[dir.path().join("clip.mp4")], overlay_sink());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let overlay = out.join("clip.mp4");
    let jobs = discover::discover(std::slice::from_ref(&overlay)).unwrap();
    let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 1).unwrap();
    assert!((d.info().fps - 30.0).abs() < 1e-6, "fps {}", d.info().fps);
    let mut n = 0;
    let mut last = None;
    while let Some(f) = d.next_frame().unwrap() {
        n += 1;
        last = Some(f);
    }
    assert_eq!(n, 7);
    // The box's left edge (x 7, y 2..22 in the last frame) is drawn in colour over the grey
    // frame (4:2:0 coding blurs a 2-pixel line, so only "clearly not grey" is checked).
    let f = last.unwrap();
    let px = f.image.pixel(7, 12).unwrap();
    let spread = px.iter().max().unwrap() - px.iter().min().unwrap();
    assert!(spread > 40, "pixel {px:?} is grey: no box drawn");
    let background = f.image.pixel(40, 40).unwrap();
    assert!(background.iter().max().unwrap() - background.iter().min().unwrap() < 10);
}

/// Puts every keypoint at the box centre; counts calls and batch sizes.
struct CentreModel {
    batches: Arc<Mutex<Vec<usize>>>,
    fail_on_call: Option<usize>,
}

impl vidpose::stages::pose::PoseModel for CentreModel {
    fn estimate(
        &mut self,
        items: &[(&vidpose::image::RgbImage, vidpose::geometry::BBox)],
    ) -> Result<Vec<[vidpose::person::Keypoint; 17]>, Box<dyn std::error::Error + Send + Sync>>
    {
        let mut b = self.batches.lock().unwrap();
        b.push(items.len());
        if self.fail_on_call == Some(b.len()) {
            return Err("out of memory".into());
        }
        Ok(items
            .iter()
            .map(|(_, bbox)| {
                let (x, y) = bbox.center();
                [vidpose::person::Keypoint { x, y, score: 0.5 }; 17]
            })
            .collect())
    }
}

fn run_pose(cfg: &Config, inputs: &[PathBuf], model: CentreModel) -> RunReport {
    let jobs = discover::discover(inputs).unwrap();
    pipeline::run_with_pose(
        cfg,
        jobs,
        Some(Box::new(model)),
        default_sink(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

#[test]
fn pose_crops_are_batched_across_frames_and_videos() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, boxes) = videos_with_boxes(dir.path(), &[("a", 5), ("b", 4)]);
    let out = dir.path().join("out");
    // A long timeout: only full batches and the end of input flush.
    let cfg = config(
        &out,
        &boxes,
        &["pose.batch_size=4", "pose.batch_timeout_ms=5000"],
    );
    let batches = Arc::new(Mutex::new(Vec::new()));
    let model = CentreModel {
        batches: batches.clone(),
        fail_on_call: None,
    };
    let report = run_pose(&cfg, &inputs, model);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // 9 crops (one per frame) in batches of 4: the second batch spans both videos.
    assert_eq!(*batches.lock().unwrap(), vec![4, 4, 1]);
    for (name, n) in [("a", 5), ("b", 4)] {
        let f = PoseTrackFile::read(&out.join(format!("{name}.json"))).unwrap();
        assert_eq!(f.annotations.len(), n);
        for (i, a) in f.annotations.iter().enumerate() {
            let k = a.keypoints.as_ref().unwrap();
            assert_eq!(k.len(), 51);
            // Box i is [1 + i, 2, 10, 20]: centre (6 + i, 12).
            assert_eq!((k[0], k[1], k[2]), (6.0 + i as f64, 12.0, 0.5));
            assert_eq!(a.scores.as_ref().unwrap().len(), 17);
        }
    }
    let pose = report.stages.iter().find(|s| s.stage == "pose").unwrap();
    assert_eq!((pose.items, pose.batches), (9, 3));
}

#[test]
fn a_partial_batch_runs_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("a.mp4"), 3, 64, 48, 25.0);
    let boxes = dir.path().join("a.json");
    boxes_file(&boxes, "a", 3);
    let cfg = config(
        &dir.path().join("out"),
        &boxes,
        &["pose.batch_size=64", "pose.batch_timeout_ms=1"],
    );
    let batches = Arc::new(Mutex::new(Vec::new()));
    let model = CentreModel {
        batches: batches.clone(),
        fail_on_call: None,
    };
    let report = run_pose(&cfg, &[dir.path().join("a.mp4")], model);
    assert!(report.failed.is_empty());
    assert_eq!(batches.lock().unwrap().iter().sum::<usize>(), 3);
}

#[test]
fn a_failed_pose_batch_fails_only_its_videos() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, boxes) = videos_with_boxes(dir.path(), &[("a", 2), ("b", 2)]);
    let out = dir.path().join("out");
    let cfg = config(
        &out,
        &boxes,
        &["pose.batch_size=2", "pose.batch_timeout_ms=5000"],
    );
    let model = CentreModel {
        batches: Arc::new(Mutex::new(Vec::new())),
        fail_on_call: Some(1),
    };
    let report = run_pose(&cfg, &inputs, model);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "a");
    assert!(report.failed[0].1.contains("out of memory"));
    assert!(!out.join("a.json").exists());
    assert!(out.join("b.json").exists());
}

/// Raises the cancel flag after a few frames, as Ctrl-C does.
struct CancellingSink {
    cancel: Arc<AtomicBool>,
    frames: usize,
}

impl FrameSink for CancellingSink {
    fn start(
        &mut self,
        _: &Arc<VideoMeta>,
    ) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        Ok(())
    }
    fn frame(&mut self, _: &mut Frame) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        self.frames += 1;
        if self.frames == 3 {
            self.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
    fn end(
        &mut self,
        _: &Arc<VideoMeta>,
        ok: bool,
    ) -> Result<Vec<PathBuf>, vidpose::pipeline::messages::VideoFailure> {
        assert!(!ok, "an interrupted video must not be completed");
        Ok(Vec::new())
    }
}

#[test]
fn cancel_stops_cleanly_and_completes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("a.mp4"), 200, 64, 48, 25.0);
    let boxes = dir.path().join("a.json");
    boxes_file(&boxes, "a", 200);
    let cfg = config(
        &dir.path().join("out"),
        &boxes,
        &["pipeline.max_frames_in_flight=2"],
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let sink = CancellingSink {
        cancel: cancel.clone(),
        frames: 0,
    };
    let jobs = discover::discover(&[dir.path().join("a.mp4")]).unwrap();
    let report = pipeline::run(&cfg, jobs, Box::new(sink), cancel).unwrap();
    assert!(report.interrupted);
    assert_eq!(report.failed.len(), 1);
    let decoded = report
        .stages
        .iter()
        .find(|s| s.stage == "decode")
        .unwrap()
        .items;
    assert!(
        decoded < 20,
        "decoding went on after the cancel: {decoded} frames"
    );
}

#[test]
fn a_frame_listed_in_the_annotation_file_but_missing_fails_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, boxes) = jpeg_sequence(dir.path(), &[0, 1, 2], 4);
    let out = dir.path().join("out");
    let reason = lone_failure(&out, &boxes, &seq, "seq");
    assert!(
        reason.contains("number 3") && reason.contains(&boxes.display().to_string()),
        "{reason}"
    );
}

/// The narrow random Cascade R-CNN of the committed fixture.
fn narrow_detector() -> vidpose::detect::CascadeRcnn {
    use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cascade/narrow_r.safetensors");
    let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 1, 64, 8, 16, (240, 160));
    CascadeRcnn::load(&fixture, &cfg, &candle_core::Device::Cpu).unwrap()
}

/// `<dir>/street/`: the detector fixture's real PoseTrack crop three times, as lossless BMP
/// frames so the detector sees exactly the fixture's pixels; also the frame itself.
fn detector_fixture_frames(dir: &Path) -> (PathBuf, vidpose::image::RgbImage) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cascade/frame_crop.safetensors");
    let frame = candle_core::safetensors::load(fixture, &candle_core::Device::Cpu)
        .unwrap()
        .remove("image_rgb")
        .unwrap();
    let (h, w, _) = frame.dims3().unwrap();
    let image = vidpose::image::RgbImage {
        width: w as u32,
        height: h as u32,
        data: frame.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
    };
    let street = dir.join("street");
    std::fs::create_dir(&street).unwrap();
    for i in 0..3 {
        common::write_bmp(&street.join(format!("{i:06}.bmp")), &image);
    }
    (street, image)
}

/// `detector.kind: auto` (the default): a video its boxes file covers keeps those boxes; a
/// video nothing covers goes to the detector.
#[test]
fn auto_detection_runs_the_detector_only_where_no_boxes_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let (street, _) = detector_fixture_frames(dir.path());
    let clip = dir.path().join("clip.mp4");
    make_mp4(&clip, 4, 64, 48, 25.0);
    let boxes = dir.path().join("clip_boxes.json");
    boxes_file(&boxes, "clip", 4);
    let out = dir.path().join("out");
    let config = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            format!("detector.boxes='{}'", boxes.display()),
            "detector.score_threshold=0.0".into(),
            "pose.model=none".into(),
            "tracker.kind=given".into(),
            "pipeline.progress=false".into(),
        ],
    )
    .unwrap();
    assert_eq!(config.detector.kind, vidpose::config::DetectorKind::Auto);
    let jobs = discover::discover(&[street, clip]).unwrap();
    assert!(pipeline::needs_detector(&config, &jobs).unwrap());
    let report = pipeline::run_with_models(
        &config,
        jobs,
        Some(narrow_detector()),
        None,
        default_sink(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let given = PoseTrackFile::read(&out.join("clip.json")).unwrap();
    assert_eq!(given.annotations.len(), 4);
    assert_eq!(given.annotations[0].bbox, Some([1.0, 2.0, 10.0, 20.0]));
    let detected = PoseTrackFile::read(&out.join("street.json")).unwrap();
    assert!(detected.annotations.len() >= 3);
    // The detector saw the three frames nothing covered, and only those.
    let detect = report.stages.iter().find(|s| s.stage == "detect").unwrap();
    assert_eq!(detect.items, 7);
    assert_eq!(detect.batches, 3);
}

#[test]
fn cascade_detector_boxes_reach_the_output() {
    let load = narrow_detector;
    let dir = tempfile::tempdir().unwrap();
    let (video, image) = detector_fixture_frames(dir.path());
    let out = dir.path().join("out");
    let config = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            "detector.kind=cascade_rcnn".into(),
            "detector.score_threshold=0.0".into(),
            // two frames per forward pass; the long timeout makes the batches deterministic
            // (2 + the last frame at the end of input)
            "detector.batch_size=2".into(),
            "detector.batch_timeout_ms=60000".into(),
            "pose.model=none".into(),
            "tracker.kind=given".into(),
            "pipeline.progress=false".into(),
        ],
    )
    .unwrap();
    let jobs = discover::discover(std::slice::from_ref(&video)).unwrap();
    let report = pipeline::run_with_models(
        &config,
        jobs,
        Some(load()),
        None,
        default_sink(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let file = PoseTrackFile::read(&out.join("street.json")).unwrap();
    let model = load();
    let jobs = discover::discover(&[video]).unwrap();
    let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 1).unwrap();
    let mut total = 0;
    while let Some(f) = d.next_frame().unwrap() {
        assert_eq!(f.image, image, "the frame is decoded as written");
        let direct = model.detect_persons(&f.image, 0.0).unwrap();
        let ours: Vec<_> = file
            .annotations
            .iter()
            .filter(|a| a.image_id == f.number)
            .collect();
        assert_eq!(ours.len(), direct.len(), "frame {}", f.number);
        for (a, p) in ours.iter().zip(&direct) {
            let b = a.bbox.unwrap();
            assert!(
                (b[0] - p.bbox.x1 as f64).abs() < 1e-3
                    && (b[2] - p.bbox.width() as f64).abs() < 1e-3
            );
            assert!((a.score.unwrap() - p.bbox_score as f64).abs() < 1e-6);
        }
        total += direct.len();
    }
    // The narrow random-weight fixture finds one person-class box among its 100 detections on
    // this frame: the stage hands on exactly the detector's person boxes; box parity itself is
    // tests/cascade_parity.rs.
    eprintln!("{total} person boxes");
    assert!(total >= 3, "{total} person boxes in 3 frames");
    let detect = report.stages.iter().find(|s| s.stage == "detect").unwrap();
    assert_eq!((detect.items, detect.batches), (3, 2));
}

/// An annotation file for `video`, `frames` frames, one person per `[x, y, w, h, dx, dy]`
/// entry, moving by `(dx, dy)` a frame; no track ids (the tracker gives them).
fn moving_boxes(path: &Path, video: &str, frames: u64, people: &[[f64; 6]]) {
    let images: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{video}/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .flat_map(|i| {
            let t = i as f64;
            people.iter().map(move |[x, y, w, h, dx, dy]| {
                serde_json::json!({"image_id": i + 1, "bbox": [x + dx * t, y + dy * t, w, h], "category_id": 1})
            })
        })
        .collect();
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Records which video each frame reaching the sinks belongs to, slowly enough that the
/// decoders of several inputs run side by side.
struct Order(Arc<Mutex<Vec<String>>>);

impl FrameSink for Order {
    fn start(
        &mut self,
        _: &Arc<VideoMeta>,
    ) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        Ok(())
    }
    fn frame(&mut self, f: &mut Frame) -> Result<(), vidpose::pipeline::messages::VideoFailure> {
        std::thread::sleep(Duration::from_millis(3));
        self.0.lock().unwrap().push(f.video.job.name.clone());
        Ok(())
    }
    fn end(
        &mut self,
        _: &Arc<VideoMeta>,
        _: bool,
    ) -> Result<Vec<PathBuf>, vidpose::pipeline::messages::VideoFailure> {
        Ok(Vec::new())
    }
}

/// Two files in flight at once (`input.concurrent: 2`) give the same PoseTrack files, byte for
/// byte, as the same files one after another: each has its own Hungarian tracker, and crops
/// of both share the pose model's batches. (The fake pose model is deterministic per crop, so
/// batching cannot change a result; a real model's batches are batch-invariant too, see
/// "Threads" in the README, but that is not what this test checks.)
#[test]
fn two_files_at_once_give_the_same_outputs_as_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = dir.path().join("boxes");
    std::fs::create_dir_all(&boxes).unwrap();
    let people: [(&str, u64, &[[f64; 6]]); 2] = [
        (
            "a",
            30,
            &[
                [2.0, 2.0, 12.0, 20.0, 1.0, 0.0],
                [44.0, 2.0, 12.0, 20.0, 0.0, 0.5],
            ],
        ),
        ("b", 20, &[[20.0, 5.0, 10.0, 15.0, 0.0, 0.5]]),
    ];
    let mut inputs = Vec::new();
    for (name, frames, persons) in people {
        let video = dir.path().join(format!("{name}.mp4"));
        make_mp4(&video, frames as usize, 64, 48, 25.0);
        moving_boxes(&boxes.join(format!("{name}.json")), name, frames, persons);
        inputs.push(video);
    }
    let run_with = |out: &Path, concurrent: &str, order: Arc<Mutex<Vec<String>>>| {
        let cfg = config(
            out,
            &boxes,
            &[
                "pose.model=hrnet_w32_256x192",
                "tracker.kind=hungarian",
                "pipeline.max_frames_in_flight=6",
                "pose.batch_size=4",
                &format!("input.concurrent={concurrent}"),
            ],
        );
        let batches = Arc::new(Mutex::new(Vec::new()));
        let sinks = vidpose::pipeline::sink::Sinks::new()
            .with(Box::new(Order(order)))
            .with(default_sink());
        pipeline::run_with_pose(
            &cfg,
            discover::discover(&inputs).unwrap(),
            Some(Box::new(CentreModel {
                batches,
                fail_on_call: None,
            })),
            Box::new(sinks),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap()
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let sequential = Arc::new(Mutex::new(Vec::new()));
    let report = run_with(&one, "1", sequential.clone());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sequential = sequential.lock().unwrap().clone();
    assert_eq!(
        sequential.iter().position(|v| v == "b"),
        Some(30),
        "one after another"
    );

    let concurrent = Arc::new(Mutex::new(Vec::new()));
    let report = run_with(&two, "2", concurrent.clone());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // Both were in flight together: b's first frame came before a's last.
    let order = concurrent.lock().unwrap().clone();
    let first_b = order.iter().position(|v| v == "b").unwrap();
    let last_a = order.iter().rposition(|v| v == "a").unwrap();
    assert!(first_b < last_a, "not interleaved: {order:?}");
    for (name, frames) in [("a", 30), ("b", 20)] {
        let video = report.videos.iter().find(|v| v.name == name).unwrap();
        assert_eq!((video.status, video.frames), ("written", frames));
        assert!(video.latency_p95_ms.is_some(), "{video:?}");
        let file = format!("{name}.json");
        let (x, y) = (
            std::fs::read(one.join(&file)).unwrap(),
            std::fs::read(two.join(&file)).unwrap(),
        );
        assert!(x == y, "{file} differs between the runs");
    }
    // The tracker of b knew nothing of a's two people: its one person is track 0 throughout.
    let b = PoseTrackFile::read(&two.join("b.json")).unwrap();
    assert!(b.annotations.iter().all(|a| a.track_id == Some(0)));
    let a = PoseTrackFile::read(&two.join("a.json")).unwrap();
    let ids: std::collections::BTreeSet<_> = a.annotations.iter().map(|a| a.track_id).collect();
    assert_eq!(ids, [Some(0), Some(1)].into(), "{ids:?}");
}
