//! `vidpose bench run`: the report's format, its JSON, `--compare`, `--frames`, the timeline,
//! and a bad earlier report; timings are not checked (benchmarks are not tests).

mod common;

use std::path::Path;

use common::*;

/// A 12-frame clip with one given box per frame.
fn clip(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let video = dir.join("clip.mp4");
    make_mp4(&video, 12, 64, 48, 25.0);
    let images: Vec<_> = (0..12)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("clip/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..12)
        .map(|i| serde_json::json!({"image_id": i + 1, "bbox": [4.0, 4.0, 20.0, 30.0], "category_id": 1, "track_id": 0}))
        .collect();
    let boxes = dir.join("boxes.json");
    std::fs::write(
        &boxes,
        serde_json::to_vec(&serde_json::json!({"images": images, "annotations": anns})).unwrap(),
    )
    .unwrap();
    (video, boxes)
}

fn bench(dir: &Path, video: &Path, boxes: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = vidpose();
    cmd.current_dir(dir)
        .args(["bench", "run", "-i"])
        .arg(video)
        .arg("--set")
        .arg(format!("detector.boxes='{}'", boxes.display()))
        .args([
            "--set",
            "detector.kind=boxes",
            "--set",
            "pose.model=none",
            "--set",
            "tracker.kind=given",
        ])
        .args(extra);
    cmd.output().unwrap()
}

#[test]
fn report_json_compare_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path());
    let first = bench(
        dir.path(),
        &video,
        &boxes,
        &[
            "--json",
            "old.json",
            "--timeline",
            "t.svg",
            "--frames",
            "10",
        ],
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let header = text.lines().next().unwrap();
    for column in [
        "stage",
        "alone f/s",
        "run f/s",
        "p50 ms",
        "p95 ms",
        "busy",
        "starved",
        "blocked",
        "batch",
        "queue",
    ] {
        assert!(header.contains(column), "{header}");
    }
    for stage in ["decode", "detect", "track", "sink"] {
        assert!(text.lines().any(|l| l.starts_with(stage)), "{text}");
    }
    assert!(
        text.contains("10 frames in"),
        "--frames 10 decodes 10: {text}"
    );
    assert!(text.contains("bottleneck"), "{text}");
    assert!(text.contains("peak RSS"), "{text}");
    // Outputs went to a temporary folder, not here.
    assert!(!dir.path().join("clip.json").exists());

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("old.json")).unwrap()).unwrap();
    assert_eq!(json["frames"], 10);
    for key in [
        "seconds",
        "frames_per_s",
        "peak_rss_mib",
        "bottleneck",
        "of_bottleneck",
    ] {
        assert!(!json[key].is_null(), "{key} in {json}");
    }
    let stages = json["stages"].as_array().unwrap();
    assert_eq!(stages[0]["stage"], "decode");
    for key in [
        "frames_per_s_busy",
        "frames_per_s",
        "p50_ms",
        "p95_ms",
        "busy",
        "starved",
        "blocked",
        "mean_batch",
        "mean_queue",
    ] {
        assert!(stages[0][key].is_number(), "{key} in {}", stages[0]);
    }
    let svg = std::fs::read_to_string(dir.path().join("t.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains(">decode</text>") && svg.contains(">sink</text>")
    );

    let second = bench(dir.path(), &video, &boxes, &["--compare", "old.json"]);
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{text}");
    assert!(text.contains("12 frames in"), "{text}");
    assert!(text.contains("against old.json:"), "{text}");
    assert!(text.contains("end to end: "), "{text}");
    for stage in ["decode", "detect", "track", "sink"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(stage) && l.contains("alone") && l.contains("->")),
            "{stage}: {text}"
        );
    }
}

#[test]
fn a_bad_earlier_report_is_named_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path());
    std::fs::write(dir.path().join("old.json"), "{\"frames\": \"many\"}").unwrap();
    let out = bench(dir.path(), &video, &boxes, &["--compare", "old.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("old.json") && err.contains("not a `vidpose bench run --json` report"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no run before the check");
    let missing = bench(dir.path(), &video, &boxes, &["--compare", "nope.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
}

#[test]
fn bench_run_writes_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = clip(dir.path());
    let out = bench(
        dir.path(),
        &video,
        &boxes,
        &["--jsonl", "lines.jsonl", "--frames", "5"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(dir.path().join("lines.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");
}
