//! Soak run (a benchmark, not a test): a long video with given boxes through decode, pose (the
//! narrow HRNet fixture) and Hungarian tracking, sampling the process's resident memory every
//! 10 s. A bounded pipeline keeps it flat: every sample from minute 2 on should stay within 5%
//! of the minute-2 value. `scripts/bench_soak.sh` makes the input and runs it.
//!
//!   soak VIDEO BOXES.json OUT_DIR

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use vidpose::config::Config;
use vidpose::pipeline;

mod common;

use common::narrow_model;

/// Resident memory of this process in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    // as the vidpose binary runs its models
    vidpose::nn::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        bail!("usage: soak VIDEO BOXES.json OUT_DIR");
    }
    let (video, boxes, out) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
    );
    let config = Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            format!("detector.boxes='{}'", boxes.display()),
            "output.overwrite=true".into(),
            "pipeline.progress=false".into(),
            // SOAK_FRAMES: decode only the first N frames, to compare boxes files of several
            // lengths on the same frames.
            format!(
                "input.max_frames={}",
                std::env::var("SOAK_FRAMES").unwrap_or_else(|_| "null".into())
            ),
        ],
    )?;
    let jobs = vidpose::video::discover(&[video])?;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::SeqCst) {
                samples.push((started.elapsed().as_secs_f64(), rss_mib()));
                for _ in 0..100 {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        })
    };
    let report = pipeline::run_with_pose(
        &config,
        jobs,
        Some(Box::new(narrow_model()?)),
        Box::new(vidpose::sinks::standard(None, false)),
        Arc::new(AtomicBool::new(false)),
    )?;
    done.store(true, Ordering::SeqCst);
    let samples = sampler.join().expect("sampler thread");
    if !report.failed.is_empty() {
        bail!("the run failed: {:?}", report.failed);
    }
    println!("{:>8}  {:>9}", "time s", "RSS MiB");
    for (t, rss) in &samples {
        println!("{t:>8.0}  {rss:>9.1}");
    }
    let frames = report.videos.iter().map(|v| v.frames).sum::<u64>();
    println!(
        "{frames} frames in {:.0} s ({:.1} frames/s)",
        report.seconds,
        frames as f64 / report.seconds
    );
    if let Some(peak) = vidpose::bench::report::peak_rss_mib() {
        println!("peak RSS (VmHWM) {peak:.1} MiB");
    }
    match samples.iter().find(|(t, _)| *t >= 120.0) {
        Some(&(_, base)) => {
            let worst = samples
                .iter()
                .filter(|(t, _)| *t >= 120.0)
                .map(|(_, r)| (r - base).abs() / base)
                .fold(0.0, f64::max);
            println!(
                "RSS at minute 2: {base:.1} MiB; largest later departure {:.2}% (target 5%)",
                worst * 100.0
            );
        }
        None => println!("the run took less than 2 minutes: no minute-2 baseline"),
    }
    Ok(())
}
