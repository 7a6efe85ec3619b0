//! The `vidpose` command line: parses arguments and hands the work to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use vidpose::config::Config;
use vidpose::models;
use vidpose::pipeline::{self, metrics};
use vidpose::video::discover;

#[derive(Parser)]
#[command(
    name = "vidpose",
    version,
    about = "Turns videos into tracked human poses written as PoseTrack 2018 JSON",
    long_about = "Turns videos into tracked human poses written as PoseTrack 2018 JSON.\n\nA staged pipeline: FFmpeg decode -> person boxes -> pose -> tracking -> PoseTrack JSON (and an optional overlay video), with per-stage timing at the end."
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process videos, image folders or PoseTrack sequences into PoseTrack 2018 JSON.
    Run(RunArgs),
    /// Measure one stage on its own.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List, download and check the published checkpoints (model cards in models/*.yaml).
    Models(ModelsArgs),
    /// Score PoseTrack 2018 predictions as the official evaluator (poseval) does: per-joint AP
    /// (PCKh@0.5) and MOTA/MOTP/precision/recall.
    Eval(EvalArgs),
}

#[derive(Args)]
struct EvalArgs {
    /// Folder of ground-truth files, one `<seq>.json` per sequence.
    #[arg(long, value_name = "DIR")]
    gt: PathBuf,
    /// Folder of prediction files with the same names (a `vidpose run` output folder).
    #[arg(long, value_name = "DIR")]
    pred: PathBuf,
    /// Also write every metric, per joint and total, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ModelsArgs {
    /// Folder holding the checkpoints (`models_dir` in pipeline.yaml).
    #[arg(long, default_value = "models", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    action: ModelsAction,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Show each model card and whether its checkpoint is in the folder.
    List,
    /// Download checkpoints, checking the sha256 prefix; a download lands under its final name
    /// only when complete and verified. With no NAME: the models ./pipeline.yaml (or the
    /// defaults) runs: the pose model and, unless detector.kind is `boxes`, the detector.
    Fetch { names: Vec<String> },
    /// Hash the checkpoints in the folder and compare them with their cards.
    Verify { names: Vec<String> },
}

#[derive(Args)]
struct RunArgs {
    /// The configuration file; every key is documented in the default one.
    #[arg(default_value = "pipeline.yaml")]
    config: PathBuf,
    /// A video, an image, a folder of numbered images (000000.jpg, ...), or a folder holding
    /// many of these (each becomes its own output). Repeatable; replaces `input.paths`.
    #[arg(short, long = "input", value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// Output folder (`output.dir`): one <name>.json (and <name>.mp4) per video.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Override a configuration key by its dotted path, e.g. `--set pose.flip_test=false`.
    /// The value is read as YAML and checked like the file. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Redo videos whose output already exists (they are skipped otherwise).
    #[arg(long)]
    overwrite: bool,
    /// Also write the per-stage metrics as JSON to FILE (`output.metrics_json`).
    #[arg(long, value_name = "FILE")]
    metrics_json: Option<PathBuf>,
    /// Process only shard I of N of the videos (deterministic by name), for job arrays.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Stop the whole run at the first video that fails (`output.fail_fast`).
    #[arg(long)]
    fail_fast: bool,
    /// Write the run report (each video's status, reason, frames, time) to FILE instead of
    /// <output>/run.json (`output.report`).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Also write per-frame results as JSON Lines to FILE as each frame completes, flushed
    /// per line; `-` is stdout (`output.jsonl`).
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// Read each input for at most SECONDS, then finish it normally (`input.duration`).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Inputs in flight at once, sharing the models' batches (`input.concurrent`): a number,
    /// or `auto` (the default: every live input at once, files one after another).
    #[arg(long, value_name = "N|auto")]
    concurrent: Option<String>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum BenchCommand {
    /// Time the pose model's forward pass (backbone + head, no pre/post-processing) on random
    /// input; prints the median and every run in milliseconds. RAYON_NUM_THREADS sets the CPU
    /// threads.
    Pose {
        /// A checkpoint of the model (published or random-initialised).
        checkpoint: PathBuf,
        /// Model card name.
        #[arg(long, default_value = "hrnet_w32_256x192")]
        model: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// `cpu` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Time the person detector end to end (resize, network, box post-processing) on one
    /// frame; prints the median and every run in milliseconds per batch, the model's load
    /// time and the persons found. RAYON_NUM_THREADS sets the CPU threads.
    Detect(DetectBenchArgs),
    /// Run the real pipeline (the same configuration, inputs and `--set` as `vidpose run`)
    /// and report each stage: frames/s alone and in the run, p50/p95 latency, busy, starved
    /// and blocked shares, mean batch size and input queue, the bottleneck and how close the
    /// run gets to it, and the peak RSS. Outputs go to a temporary folder unless --output.
    Run(BenchRunArgs),
    /// Decode a video (or image folder) to RGB as fast as possible and print frames/s.
    Decode {
        path: PathBuf,
        /// Decoder threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn load_config(args: &RunArgs) -> Result<Config> {
    let mut overrides = args.overrides.clone();
    // Paths become quoted YAML strings, so a name like `no` or `1e3` stays a path.
    let paths = [
        ("output.dir", &args.output),
        ("output.metrics_json", &args.metrics_json),
        ("output.report", &args.report),
        ("output.jsonl", &args.jsonl),
    ];
    for (key, path) in paths {
        if let Some(path) = path {
            overrides.push(format!("{key}={}", yaml_string(&path.to_string_lossy())));
        }
    }
    if args.overwrite {
        overrides.push("output.overwrite=true".into());
    }
    if let Some(shard) = &args.shard {
        overrides.push(format!("input.shard={}", yaml_string(shard)));
    }
    if args.fail_fast {
        overrides.push("output.fail_fast=true".into());
    }
    if let Some(seconds) = args.duration {
        overrides.push(format!("input.duration={seconds}"));
    }
    if let Some(n) = &args.concurrent {
        // As YAML: a number stays a number, anything else is checked as a word.
        overrides.push(format!("input.concurrent={n}"));
    }
    let file = if args.config.exists() {
        Some(args.config.as_path())
    } else if args.config.as_os_str() == "pipeline.yaml" {
        // No default file in this folder: the built-in defaults are the same values.
        None
    } else {
        bail!("{}: no such configuration file", args.config.display());
    };
    let mut config = Config::load(file, &overrides)?;
    if !args.inputs.is_empty() {
        config.input.paths = args.inputs.clone();
    }
    Ok(config)
}

/// The overlay's settings when one is wanted: a file (`render.enabled`) or a live stream
/// (`render.stream`).
fn overlay_settings(config: &Config) -> Option<vidpose::sinks::OverlaySettings> {
    (config.render.enabled || config.render.stream.is_some()).then(|| {
        vidpose::sinks::OverlaySettings {
            codec: config.render.codec,
            crf: config.render.crf,
            stream: config.render.stream.clone(),
        }
    })
}

/// The sinks of a run: JSON Lines when asked for (first: a frame's line goes out before the
/// overlay encodes it), then the PoseTrack JSON, the overlay and the progress bars.
fn run_sinks(
    config: &Config,
    overlay: Option<vidpose::sinks::OverlaySettings>,
    progress: bool,
) -> Result<Box<dyn vidpose::pipeline::sink::FrameSink>> {
    let standard = vidpose::sinks::standard(overlay, progress);
    Ok(match &config.output.jsonl {
        Some(path) => Box::new(
            vidpose::pipeline::sink::Sinks::new()
                .with(Box::new(vidpose::sinks::JsonlSink::create(path)?))
                .with(Box::new(standard)),
        ),
        None => Box::new(standard),
    })
}

/// Quotes a path for a `--set` value so YAML keeps it a string.
fn yaml_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = load_config(&args)?;
    if config.input.paths.is_empty() {
        bail!("nothing to do: give --input PATH or set input.paths in the configuration");
    }
    let mut jobs = discover::discover(&config.input.paths)?;
    if let Some(shard) = config.input.shard {
        jobs = discover::shard(jobs, shard.index, shard.count);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: stop at once; temporary files (*.partial-<host>-<pid>) are
                // removed by the next run.
                std::process::exit(130);
            }
            eprintln!("interrupted: finishing the frames in flight (Ctrl-C again to abort)");
        })
        .context("cannot install the Ctrl-C / SIGTERM handler")?;
    }
    let overlay = overlay_settings(&config);
    let sink = run_sinks(&config, overlay, config.pipeline.progress)?;
    eprintln!(
        "vidpose: {} video(s) -> {}",
        jobs.len(),
        config.output.dir.display()
    );
    let report = pipeline::run(&config, jobs, sink, cancel.clone())?;
    eprint!("\n{}", metrics::table(&report.stages));
    eprintln!(
        "{} written, {} skipped (output exists), {} failed in {:.1} s; peak frames in flight {}",
        report
            .written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .count(),
        report.skipped.len(),
        report.failed.len(),
        report.seconds,
        report.peak_frames_in_flight
    );
    eprint!("{}", summary_table(&report));
    for v in report.videos.iter().filter(|v| v.dropped_frames.is_some()) {
        let dropped = v.dropped_frames.unwrap_or(0);
        let latency = match (v.latency_p50_ms, v.latency_p95_ms) {
            (Some(p50), Some(p95)) => format!(", latency p50 {p50:.0} ms p95 {p95:.0} ms"),
            _ => String::new(),
        };
        eprintln!(
            "{}: live: {} frame(s) processed, {dropped} dropped ({:.1}%), {} reconnection(s){latency}",
            v.name,
            v.frames,
            100.0 * dropped as f64 / (v.frames + dropped).max(1) as f64,
            v.reconnects.unwrap_or(0)
        );
    }
    let report_path = config.report_path();
    let run_json = serde_json::json!({
        "seconds": report.seconds,
        "interrupted": report.interrupted,
        "stopped_on_failure": report.stopped_on_failure,
        "videos": report.videos,
    });
    vidpose::fsutil::write_atomic(
        &report_path,
        serde_json::to_string_pretty(&run_json)?.as_bytes(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            report_path.display(),
            vidpose::fsutil::describe_write_error(&e)
        )
    })?;
    if let Some(path) = &config.output.metrics_json {
        let json = serde_json::json!({
            "stages": report.stages,
            "seconds": report.seconds,
            "peak_frames_in_flight": report.peak_frames_in_flight,
            "written": report.written.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            "skipped": report.skipped,
            "failed": report.failed,
        });
        vidpose::fsutil::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())
            .with_context(|| format!("{}: cannot write the metrics", path.display()))?;
    }
    Ok(ExitCode::from(exit_status(
        &report,
        cancel.load(Ordering::SeqCst),
    )))
}

/// 1 when `--fail-fast` stopped the run, 130 when a signal did (even one that came after the
/// last frame was decoded, with every video finished: a script must see that the run was
/// stopped), 1 when some video failed, else 0.
fn exit_status(report: &pipeline::RunReport, signalled: bool) -> u8 {
    if report.stopped_on_failure {
        1
    } else if report.interrupted || signalled {
        130
    } else if report.failed.is_empty() {
        0
    } else {
        1
    }
}

/// One line per video that did not simply get written: what happened and why.
fn summary_table(report: &pipeline::RunReport) -> String {
    let notable: Vec<_> = report
        .videos
        .iter()
        .filter(|v| v.status != "written")
        .collect();
    if notable.is_empty() {
        return String::new();
    }
    let width = notable
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut text = format!("\n{:<width$}  {:<11}  reason\n", "video", "status");
    for v in notable {
        text.push_str(&format!(
            "{:<width$}  {:<11}  {}\n",
            v.name,
            v.status,
            v.reason.as_deref().unwrap_or("")
        ));
    }
    text
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let report = vidpose::posetrack::eval::evaluate_dirs(&args.gt, &args.pred)?;
    println!(
        "{} sequence(s), {} labeled frame(s)\n\nAverage Precision (AP) metric:",
        report.num_sequences, report.num_frames
    );
    print!("{}", report.ap_table());
    match (report.mot_table(), &report.mot) {
        (Some(table), _) => {
            println!("\nMultiple Object Tracking (MOT) metrics:");
            print!("{table}");
        }
        (None, Err(why)) => eprintln!("\nno tracking metrics: {why}"),
        (None, Ok(_)) => {}
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        vidpose::fsutil::write_atomic(path, text.as_bytes())
            .with_context(|| format!("{}: cannot write the metrics", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn models(args: ModelsArgs) -> Result<ExitCode> {
    let cards = models::builtin_cards();
    let chosen = |names: &[String]| -> Result<Vec<&models::ModelCard>> {
        if names.is_empty() {
            return Ok(cards.iter().collect());
        }
        names
            .iter()
            .map(|n| models::find(&cards, n).map_err(anyhow::Error::from))
            .collect()
    };
    match args.action {
        ModelsAction::List => {
            let width = cards.iter().map(|c| c.name.len()).max().unwrap_or(4);
            println!(
                "{:<width$} {:<6} {:<10} {:<8} file",
                "name", "task", "input", "present"
            );
            for c in &cards {
                let present = c.path_in(&args.dir).exists();
                println!(
                    "{:<width$} {:<6} {:<10} {:<8} {}",
                    c.name,
                    c.task,
                    c.input_label(),
                    if present { "yes" } else { "no" },
                    c.path_in(&args.dir).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Fetch { names } => {
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let names = if names.is_empty() {
                // What the configuration here runs, not every card (several GB).
                let file = Path::new("pipeline.yaml");
                let config = Config::load(file.exists().then_some(file), &[])?;
                let needed = config.models_needed();
                eprintln!(
                    "fetching what {} needs: {}",
                    if file.exists() {
                        "pipeline.yaml"
                    } else {
                        "the default configuration"
                    },
                    needed.join(", ")
                );
                needed
            } else {
                names
            };
            for card in chosen(&names)? {
                let path = models::fetch(card, &args.dir, progress)?;
                eprintln!("{}: {}", card.name, path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Verify { names } => {
            let mut bad = 0;
            for card in chosen(&names)? {
                let state = models::verify(card, &args.dir)?;
                let text = match &state {
                    models::Verified::Missing => {
                        bad += 1;
                        "missing".to_string()
                    }
                    models::Verified::Ok { sha256 } => format!("ok (sha256 {sha256})"),
                    models::Verified::Mismatch { sha256 } => {
                        bad += 1;
                        format!(
                            "MISMATCH: sha256 {sha256} does not start with {}",
                            card.sha256_prefix
                        )
                    }
                };
                println!(
                    "{}: {}: {text}",
                    card.name,
                    card.path_in(&args.dir).display()
                );
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn bench_pose(
    checkpoint: &std::path::Path,
    model: &str,
    batch: usize,
    runs: usize,
    warmup: usize,
    device: &str,
) -> Result<ExitCode> {
    let cards = models::builtin_cards();
    let card = models::find(&cards, model)?;
    let config = card
        .pose_config()
        .with_context(|| format!("{model} is not a pose model"))?;
    let device = vidpose::nn::device::parse_device(device)?.open()?;
    let est = vidpose::pose::PoseEstimator::load(
        checkpoint,
        config,
        vidpose::pose::PoseOptions::default(),
        &device,
    )?;
    let mut ms: Vec<f64> = est
        .time_forward(batch, warmup, runs.max(1))?
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let all = ms.clone();
    ms.sort_by(f64::total_cmp);
    let json = serde_json::json!({
        "model": model,
        "batch": batch,
        "threads": rayon::current_num_threads(),
        "median_ms": ms[ms.len() / 2],
        "runs_ms": all,
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
struct BenchRunArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Decode at most N frames of each video (`input.max_frames`).
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
    /// Also write the report as JSON to FILE (for --compare later).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print the change against an earlier --json report.
    #[arg(long, value_name = "OLD.json")]
    compare: Option<PathBuf>,
    /// Draw each stage's busy time over the run as an SVG timeline in FILE.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
}

fn bench_run(mut args: BenchRunArgs) -> Result<ExitCode> {
    use vidpose::bench::report::{peak_rss_mib, timeline_svg, BenchReport};
    // Read the earlier report first: a bad file should not cost a whole run.
    let old: Option<BenchReport> = match &args.compare {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("{}: cannot read the earlier report", path.display()))?;
            Some(serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{}: not a `vidpose bench run --json` report",
                    path.display()
                )
            })?)
        }
        None => None,
    };
    let scratch = match args.run.output {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!("vidpose-bench-{}", std::process::id()));
            args.run.output = Some(dir.clone());
            Some(dir)
        }
    };
    args.run.overwrite = true;
    if let Some(n) = args.frames {
        args.run.overrides.push(format!("input.max_frames={n}"));
    }
    args.run.overrides.push("pipeline.progress=false".into());
    let config = load_config(&args.run)?;
    if config.input.paths.is_empty() {
        bail!("nothing to run: give --input PATH or set input.paths in the configuration");
    }
    let jobs = discover::discover(&config.input.paths)?;
    if let Some(dir) = &scratch {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let overlay = overlay_settings(&config);
    let sink = run_sinks(&config, overlay, false)?;
    let result = pipeline::run(&config, jobs, sink, Arc::new(AtomicBool::new(false)));
    if let Some(dir) = &scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    let run = result?;
    for (video, reason) in &run.failed {
        eprintln!("{video}: failed: {reason}");
    }
    let report = BenchReport::from_run(&run, peak_rss_mib());
    print!("{}", report.table());
    if let Some(old) = &old {
        print!(
            "\nagainst {}:\n{}",
            args.compare.as_ref().unwrap().display(),
            report.compare(old)
        );
    }
    if let Some(path) = &args.json {
        vidpose::fsutil::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: {}",
                    path.display(),
                    vidpose::fsutil::describe_write_error(&e)
                )
            })?;
    }
    if let Some(path) = &args.timeline {
        vidpose::fsutil::write_atomic(path, timeline_svg(&run.stages).as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                vidpose::fsutil::describe_write_error(&e)
            )
        })?;
    }
    Ok(if run.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Args)]
struct DetectBenchArgs {
    /// A checkpoint of the model (published or random-initialised).
    checkpoint: PathBuf,
    /// Model card name.
    #[arg(long, default_value = "cascade_rcnn_x101_64x4d_fpn_20e_coco")]
    model: String,
    /// A video, image or image folder whose first frame is used; default: a synthetic
    /// 1920x1080 frame.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Frames per forward pass (copies of the frame).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Untimed runs first (buffers, caches).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
}

fn bench_detect(args: DetectBenchArgs) -> Result<ExitCode> {
    let cards = models::builtin_cards();
    let card = models::find(&cards, &args.model)?;
    let config = card
        .detector_config()
        .with_context(|| format!("{} is not a detector", args.model))?;
    let frame = match &args.image {
        Some(path) => vidpose::bench::first_frame(path)?,
        None => vidpose::bench::synthetic_frame(1920, 1080),
    };
    let started = std::time::Instant::now();
    let model =
        vidpose::detect::CascadeRcnn::load(&args.checkpoint, &config, &candle_core::Device::Cpu)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let times =
        vidpose::bench::detect_times(&model, &frame, args.batch, args.warmup, args.runs.max(1))?;
    let mut ms: Vec<f64> = times.runs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let all = ms.clone();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let json = serde_json::json!({
        "model": args.model,
        "image": [frame.width, frame.height],
        "batch": args.batch.max(1),
        "threads": rayon::current_num_threads(),
        "load_ms": load_ms,
        "detections": times.detections,
        "median_ms": median,
        "median_ms_per_frame": median / args.batch.max(1) as f64,
        "runs_ms": all,
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes, each cause said once: many messages already include their
/// cause's text, which anyhow's `{:#}` would repeat.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if !vidpose::nn::memory::keep_freed_memory() {
        tracing::debug!("the allocator kept its defaults: CPU passes may fault in fresh pages");
    }
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Models(args) => models(args),
        Command::Eval(args) => eval(args),
        Command::Bench(BenchCommand::Pose {
            checkpoint,
            model,
            batch,
            runs,
            warmup,
            device,
        }) => bench_pose(&checkpoint, &model, batch, runs, warmup, &device),
        Command::Bench(BenchCommand::Detect(args)) => bench_detect(args),
        Command::Bench(BenchCommand::Run(args)) => bench_run(args),
        Command::Bench(BenchCommand::Decode {
            path,
            threads,
            json,
        }) => vidpose::bench::decode_throughput(&path, threads)
            .map_err(anyhow::Error::from)
            .and_then(|b| {
                if json {
                    println!("{}", serde_json::to_string(&b)?);
                } else {
                    println!(
                        "{}: {} frames {}x{} in {:.3} s = {:.1} frames/s (decode + RGB)",
                        path.display(),
                        b.frames,
                        b.width,
                        b.height,
                        b.seconds,
                        b.fps
                    );
                }
                Ok(ExitCode::SUCCESS)
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_after_the_last_frame_still_exits_130() {
        let finished = pipeline::RunReport::default();
        assert_eq!(exit_status(&finished, false), 0);
        assert_eq!(exit_status(&finished, true), 130);
        let failed = pipeline::RunReport {
            failed: vec![("a".into(), "broken".into())],
            ..Default::default()
        };
        assert_eq!(exit_status(&failed, false), 1);
        let stopped = pipeline::RunReport {
            stopped_on_failure: true,
            interrupted: true,
            ..failed
        };
        assert_eq!(exit_status(&stopped, true), 1);
    }
}
