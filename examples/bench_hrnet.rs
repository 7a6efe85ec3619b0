//! Time the HRNet-W32 256x192 forward pass (backbone + head, no pre/post-processing) on the CPU.
//!
//!   RAYON_NUM_THREADS=2 cargo run --release --example bench_hrnet -- CHECKPOINT [BATCH] [RUNS] [WARMUP]
//!
//! Prints one JSON line: median and all timed runs in milliseconds.

use candle_core::Device;
use vidpose::pose::{PoseEstimator, PoseModelConfig, PoseOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(ckpt) = args.first() else {
        anyhow::bail!("usage: bench_hrnet CHECKPOINT [BATCH] [RUNS] [WARMUP]");
    };
    let num = |i: usize, d: usize| args.get(i).map_or(Ok(d), |s| s.parse::<usize>());
    let (batch, runs, warmup) = (num(1, 8)?, num(2, 5)?, num(3, 2)?);
    let est = PoseEstimator::load(
        ckpt,
        PoseModelConfig::w32_256x192(),
        PoseOptions::default(),
        &Device::Cpu,
    )?;
    let mut ms: Vec<f64> = est
        .time_forward(batch, warmup, runs)?
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let runs_ms: Vec<String> = ms.iter().map(|v| format!("{v:.1}")).collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "{{\"what\": \"vidpose HRNet-W32 256x192 forward\", \"batch\": {batch}, \"threads\": {}, \"median_ms\": {median:.1}, \"runs_ms\": [{}]}}",
        candle_core::utils::get_num_threads(),
        runs_ms.join(", ")
    );
    Ok(())
}
