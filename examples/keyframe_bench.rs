//! Key-frame detection, end to end (a benchmark, not a test): one video through decode, the
//! detector, the pose model and the tracker at several `detector.interval` values, the
//! intervals interleaved round after round; prints frames/s (min and median over the rounds)
//! and each run's detector and pose busy time. `scripts/bench_keyframes.sh` makes the input
//! and runs it.
//!
//!   keyframe_bench VIDEO [ROUNDS] [INTERVALS]        (defaults: 3 rounds, intervals 1,5,10)
//!
//! The models are the committed narrow ones (real model code, random weights) with the
//! detector resizing frames to 1333x800 as the published one does; the busy times let the
//! speed-up be re-estimated for full-size models, whose detector costs far more.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use vidpose::config::Config;
use vidpose::pipeline;

mod common;

use common::{narrow_detector, narrow_model};

/// One run's numbers.
struct Run {
    fps: f64,
    detector_runs: u64,
    detect_busy_s: f64,
    pose_busy_s: f64,
    people: usize,
    /// End-to-end frames/s over what the busiest stage does alone.
    of_bottleneck: f64,
}

fn run_once(video: &PathBuf, interval: u32, out: &std::path::Path) -> Result<Run> {
    let config = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            "detector.kind=cascade_rcnn".into(),
            format!("detector.interval={interval}"),
            // The narrow random detector's scores are low; this keeps a handful of people.
            "detector.score_threshold=0.3".into(),
            "output.overwrite=true".into(),
            "pipeline.progress=false".into(),
        ],
    )?;
    let jobs = vidpose::video::discover(std::slice::from_ref(video))?;
    let report = pipeline::run_with_models(
        &config,
        jobs,
        Some(narrow_detector((1333, 800))?),
        Some(Box::new(narrow_model()?)),
        Box::new(vidpose::sinks::standard(None, false)),
        Arc::new(AtomicBool::new(false)),
    )?;
    if !report.failed.is_empty() {
        bail!("the run failed: {:?}", report.failed);
    }
    let stage = |name: &str| report.stages.iter().find(|s| s.stage == name);
    let frames = report.videos.iter().map(|v| v.frames).sum::<u64>();
    let written = report
        .written
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| vidpose::posetrack::PoseTrackFile::read(p))
        .transpose()?;
    Ok(Run {
        fps: frames as f64 / report.seconds,
        detector_runs: stage("detect").map_or(0, |s| s.batches),
        detect_busy_s: stage("detect").map_or(0.0, |s| s.busy_s),
        pose_busy_s: stage("pose").map_or(0.0, |s| s.busy_s),
        people: written.map_or(0, |f| f.annotations.len()),
        of_bottleneck: vidpose::bench::report::BenchReport::from_run(&report, None)
            .of_bottleneck
            .unwrap_or(0.0),
    })
}

fn main() -> Result<()> {
    // as the vidpose binary runs its models
    vidpose::nn::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if !(2..=4).contains(&args.len()) {
        bail!("usage: keyframe_bench VIDEO [ROUNDS] [INTERVALS, e.g. 1,5,10]");
    }
    let video = PathBuf::from(&args[1]);
    let rounds: usize = args.get(2).map_or(Ok(3), |r| r.parse())?;
    let intervals: Vec<u32> = args
        .get(3)
        .map_or("1,5,10", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let out = tempfile::tempdir()?;
    let mut runs: Vec<Vec<Run>> = intervals.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        for (i, &k) in intervals.iter().enumerate() {
            let run = run_once(&video, k, out.path())?;
            eprintln!(
                "round {} k={k}: {:.2} frames/s ({:.2}x of the busiest stage alone), {} detector runs, detect busy {:.1} s, pose busy {:.1} s, {} people written",
                round + 1,
                run.fps,
                run.of_bottleneck,
                run.detector_runs,
                run.detect_busy_s,
                run.pose_busy_s,
                run.people
            );
            runs[i].push(run);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(runs[0].iter().map(|r| r.fps).collect());
    println!("| interval k | frames/s min | frames/s median | vs k={} (median) | detector runs | detect busy s (median) | pose busy s (median) |", intervals[0]);
    println!("|---|---|---|---|---|---|---|");
    for (k, r) in intervals.iter().zip(&runs) {
        let fps: Vec<f64> = r.iter().map(|r| r.fps).collect();
        let min = fps.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(fps);
        println!(
            "| {k} | {min:.2} | {med:.2} | {:.2}x | {} | {:.1} | {:.1} |",
            med / base,
            r[0].detector_runs,
            median(r.iter().map(|r| r.detect_busy_s).collect()),
            median(r.iter().map(|r| r.pose_busy_s).collect()),
        );
    }
    Ok(())
}
