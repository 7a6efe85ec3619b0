//! SIGKILL at random points of a batch, then rerun: no partial file ever sits under a final
//! name, every video ends complete and identical to an uninterrupted run, and the temporary
//! files the killed runs left are removed.

#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

const KILLS: usize = 20;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("run"))
                .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under a final name is whole: JSON parses, overlays decode to the frame count.
fn check_complete(dir: &Path, frames: &BTreeMap<String, usize>) {
    for (name, _) in files(dir) {
        let path = dir.join(&name);
        if name.contains(".partial-") {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".json") {
            let f = vidpose::posetrack::PoseTrackFile::read(&path)
                .unwrap_or_else(|e| panic!("partial JSON under its final name: {e}"));
            assert_eq!(f.images.len(), frames[stem], "{name}");
        } else if let Some(stem) = name.strip_suffix(".mp4") {
            let jobs = vidpose::video::discover(std::slice::from_ref(&path)).unwrap();
            let mut d = vidpose::video::decode::open(&jobs[0], 25.0, 1).unwrap();
            let mut n = 0;
            while d.next_frame().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, frames[stem], "{name} is cut short");
        }
    }
}

#[test]
fn killed_batches_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("videos");
    let boxes = dir.path().join("boxes");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&boxes).unwrap();
    let mut frames = BTreeMap::new();
    for i in 0..6 {
        let name = format!("v{i}");
        let n = 20 + 7 * i;
        frames.insert(name.clone(), n);
        make_mp4(&input.join(format!("{name}.mp4")), n, 96, 64, 25.0);
        write_video_boxes(
            &boxes.join(format!("{name}.json")),
            &name,
            n,
            |f| [2.0 + f as f64, 3.0, 20.0, 30.0],
            Some(1),
        );
    }
    let run = |out: &Path| {
        let mut c = vidpose();
        c.args([
            "run",
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--set", &format!("detector.boxes={}", boxes.display())])
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .args([
            "--set",
            "render.enabled=true",
            "--set",
            "render.codec=mpeg4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    let reference = dir.path().join("reference");
    let started = std::time::Instant::now();
    assert!(run(&reference).status().unwrap().success());
    let whole = started.elapsed().as_millis() as u64;
    let expected = files(&reference);
    assert_eq!(expected.len(), 12);

    let out = dir.path().join("killed");
    // A fixed pseudo-random sequence of kill points within the time a whole run takes. Each
    // killed run redoes the batch (--overwrite), so every kill lands in work; the old outputs
    // must survive until their replacements are complete.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut killed_mid_run = 0;
    for _ in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(5 + seed % (whole * 3 / 4).max(50));
        let mut child = run(&out).arg("--overwrite").spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        check_complete(&out, &frames);
    }
    assert!(
        killed_mid_run >= KILLS / 2,
        "only {killed_mid_run} kills hit a running batch"
    );
    // Resume to the end: videos finished by some killed run are skipped, the rest redone.
    assert!(run(&out).status().unwrap().success());
    let got = files(&out);
    let leftovers: Vec<_> = got.keys().filter(|n| n.contains(".partial-")).collect();
    assert!(leftovers.is_empty(), "stale temporary files: {leftovers:?}");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &expected {
        assert!(
            got[name] == *bytes,
            "{name} differs from the uninterrupted run"
        );
    }
    eprintln!("{KILLS} kills, {killed_mid_run} mid-run; every video complete and identical");
}
