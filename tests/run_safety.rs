//! A run never writes over its inputs, finds unwritable outputs before any work, stops cleanly on
//! SIGTERM, and says each fault once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// `name.mp4` with an annotation file giving one box per frame.
fn video_with_boxes(dir: &Path, name: &str, frames: u64) -> (PathBuf, PathBuf) {
    let video = dir.join(format!("{name}.mp4"));
    make_mp4(&video, frames as usize, 64, 48, 25.0);
    let boxes = dir.join(format!("{name}_boxes.json"));
    write_video_boxes(
        &boxes,
        name,
        frames as usize,
        |_| [1.0, 2.0, 10.0, 20.0],
        None,
    );
    (video, boxes)
}

fn run(args: &[&str], boxes: &Path) -> Output {
    vidpose()
        .arg("run")
        .args(args)
        .args(["--set", &format!("detector.boxes={}", boxes.display())])
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_overlay_never_replaces_the_source_video() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "clip", 3);
    let before = std::fs::read(&video).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&["-i", d, "-o", d, "--set", "render.enabled=true"], &boxes);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never writes over its inputs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&video).unwrap(), before, "the source changed");
    assert!(!dir.path().join("clip.json").exists());
}

#[test]
fn an_output_json_never_replaces_the_annotation_file() {
    let dir = tempfile::tempdir().unwrap();
    let (video, _) = video_with_boxes(dir.path(), "clip", 2);
    // The annotation file is named as the video's output would be.
    let (_, boxes) = video_with_boxes(dir.path(), "other", 2);
    let ann = dir.path().join("clip.json");
    std::fs::rename(&boxes, &ann).unwrap();
    let text = std::fs::read_to_string(&ann)
        .unwrap()
        .replace("other/", "clip/");
    std::fs::write(&ann, &text).unwrap();
    let out = run(
        &[
            "-i",
            video.to_str().unwrap(),
            "-o",
            dir.path().to_str().unwrap(),
            "--overwrite",
        ],
        &ann,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&ann).unwrap(), text);
}

#[test]
fn metrics_json_may_not_name_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "clip", 2);
    let out_dir = dir.path().join("out");
    let target = out_dir.join("clip.json");
    let out = run(
        &[
            "-i",
            video.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--metrics-json",
            target.to_str().unwrap(),
        ],
        &boxes,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--metrics-json"), "{}", stderr(&out));
    assert!(!target.exists());
}

#[test]
fn an_output_folder_that_is_a_file_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "clip", 2);
    let not_a_folder = dir.path().join("out");
    std::fs::write(&not_a_folder, b"keep me").unwrap();
    let out = run(
        &[
            "-i",
            video.to_str().unwrap(),
            "-o",
            not_a_folder.to_str().unwrap(),
        ],
        &boxes,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("is a file") && !e.contains("cannot read"), "{e}");
    // Refused before decoding: no stage table was printed.
    assert!(!e.contains("p95 ms"), "{e}");
    assert_eq!(std::fs::read(&not_a_folder).unwrap(), b"keep me");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the configuration file should be: EISDIR.
    let out = vidpose()
        .arg("run")
        .arg(dir.path())
        .args(["-i", "x.mp4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert_eq!(e.matches("os error 21").count(), 1, "{e}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "long", 1500);
    let out_dir = dir.path().join("out");
    let child = vidpose()
        .arg("run")
        .args([
            "-i",
            video.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ])
        .args(["--set", &format!("detector.boxes={}", boxes.display())])
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .args([
            "--set",
            "render.enabled=true",
            "--set",
            "render.codec=mpeg4",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: the overlay's temporary file exists once the first frame is written.
    let started = std::time::Instant::now();
    let partial = || {
        std::fs::read_dir(&out_dir).is_ok_and(|r| {
            r.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
        })
    };
    while !partial() {
        assert!(started.elapsed().as_secs() < 60, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{:?}: {e}", out.status);
    assert!(e.contains("interrupted"), "{e}");
    assert!(!out_dir.join("long.json").exists() && !out_dir.join("long.mp4").exists());
    assert!(!partial(), "a temporary file was left");
}

#[test]
fn the_run_report_lists_every_video_and_fail_fast_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let boxes = dir.path().join("boxes");
    std::fs::create_dir(&boxes).unwrap();
    for name in ["a_bad", "b_good", "c_good"] {
        let (video, b) = video_with_boxes(&input, name, 3);
        std::fs::rename(&b, boxes.join(format!("{name}.json"))).unwrap();
        if name == "a_bad" {
            std::fs::write(&video, "not a video\n".repeat(50)).unwrap();
        }
    }
    let out_dir = dir.path().join("out");
    let args = [
        "-i",
        input.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let out = run(&args, &boxes);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The summary names the failure and why.
    assert!(
        stderr(&out).contains("a_bad") && stderr(&out).contains("failed"),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    let status = |r: &serde_json::Value, name: &str| -> String {
        r["videos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "absent".into())
    };
    assert_eq!(status(&report, "a_bad"), "failed");
    assert_eq!(status(&report, "b_good"), "written");
    let good = report["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "c_good")
        .unwrap();
    assert_eq!(good["frames"], 3);
    assert!(good["seconds"].as_f64().unwrap() >= 0.0);

    // With --fail-fast, nothing after the failure is written.
    let out_dir = dir.path().join("out2");
    let report_file = dir.path().join("report.json");
    let out = run(
        &[
            "-i",
            input.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--fail-fast",
            "--report",
            report_file.to_str().unwrap(),
        ],
        &boxes,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(status(&report, "a_bad"), "failed");
    assert_eq!(report["stopped_on_failure"], true);
    assert!(!out_dir.join("c_good.json").exists());
}

#[test]
fn the_run_report_never_replaces_an_output() {
    let dir = tempfile::tempdir().unwrap();
    // A video named `run` has `run.json` as its output, the default report's name.
    let (video, boxes) = video_with_boxes(dir.path(), "run", 2);
    let out_dir = dir.path().join("out");
    let args = [
        "-i",
        video.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let out = run(&args, &boxes);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("the run report"), "{}", stderr(&out));
    assert!(!out_dir.join("run.json").exists());
    // Elsewhere, it runs.
    let report = dir.path().join("report.json");
    let mut args = args.to_vec();
    args.extend(["--report", report.to_str().unwrap()]);
    let out = run(&args, &boxes);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = vidpose::posetrack::PoseTrackFile::read(&out_dir.join("run.json")).unwrap();
    assert_eq!(file.images.len(), 2);
    assert!(report.exists());
}

#[test]
fn jsonl_may_not_name_an_input_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "clip", 2);
    let before = std::fs::read(&boxes).unwrap();
    let out = run(
        &[
            "-i",
            video.to_str().unwrap(),
            "-o",
            dir.path().to_str().unwrap(),
            "--jsonl",
            boxes.to_str().unwrap(),
        ],
        &boxes,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--jsonl"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&boxes).unwrap(), before);
}

#[test]
fn side_files_may_not_name_an_input_outside_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (video, boxes) = video_with_boxes(dir.path(), "clip", 2);
    let before = std::fs::read(&video).unwrap();
    let out_dir = dir.path().join("out");
    for flag in ["--jsonl", "--metrics-json", "--report"] {
        let out = run(
            &[
                "-i",
                video.to_str().unwrap(),
                "-o",
                out_dir.to_str().unwrap(),
                flag,
                video.to_str().unwrap(),
            ],
            &boxes,
        );
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("would replace the input"),
            "{flag}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(&video).unwrap(), before, "{flag}");
    }
}
