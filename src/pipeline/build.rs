//! From a configuration to a running chain: the plan, the models it needs, the stages in
//! order, and the sinks given by the caller. The one place that reads the configuration; the
//! stages get plain settings.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::StageMetrics;
use super::permits::FramePermits;
use super::plan::{goes_to_detector, plan};
use super::report::RunReport;
use super::run::{execute, SinkSettings, StagePanicked};
use super::sink::FrameSink;
use super::stage::Stage;
use super::threads::ThreadBudget;
use crate::config::{Config, DetectorKind};
use crate::detect::CascadeRcnn;
use crate::fsutil::{check_writable_dir, remove_stale_partials, OutputDirError};
use crate::models::load::{self, ModelSource, PoseSettings};
use crate::models::ModelError;
use crate::posetrack::boxes::BoxesError;
use crate::stages::boxes::GivenBoxesStage;
use crate::stages::detect::DetectStage;
use crate::stages::keyframe::{KeyframeSettings, KeyframeStage, ReportPeople};
use crate::stages::pose::{PoseModel, PoseStage};
use crate::stages::source::{run_source, PlannedVideo};
use crate::stages::track::{GivenTrackStage, HungarianTrackStage};
use crate::track::TrackerKind;
use crate::video::VideoJob;

/// Why a run could not start (a video that fails is reported in the [`RunReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The boxes file cannot be used.
    #[error(transparent)]
    Boxes(#[from] BoxesError),
    /// A model cannot be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A stage thread panicked.
    #[error(transparent)]
    Stage(#[from] StagePanicked),
    /// The output folder cannot be written.
    #[error(transparent)]
    OutputDir(#[from] OutputDirError),
    /// The outputs would replace an input: found before any work.
    #[error("{0}")]
    Output(String),
}

/// Where the run's detector comes from.
enum Detector {
    /// Loaded from the configuration once the plan shows a video that needs it.
    LoadIfNeeded,
    /// The caller's (none: boxes from files only); boxed, the model is large.
    Given(Option<Box<CascadeRcnn>>),
}

/// Runs the pipeline over `jobs` with the models the configuration names, writing through
/// `sink`. `cancel` (set by Ctrl-C) stops decoding; videos not finished by then are reported
/// as interrupted and leave no output.
pub fn run(
    config: &Config,
    jobs: Vec<VideoJob>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    // Before the models load: the compute pool is sized once per process.
    let models = config.pose.model.is_some() || config.detector.kind != DetectorKind::Boxes;
    ThreadBudget::new(config.pipeline.threads, config.input.decode_threads, models).apply();
    let pose = match &config.pose.model {
        Some(card) => Some(Box::new(load::pose_model(
            ModelSource {
                card,
                checkpoint: config.pose.checkpoint.as_deref(),
                models_dir: &config.models_dir,
                device: config.device,
                dtype: config.pose.dtype,
            },
            PoseSettings {
                flip_test: config.pose.flip_test,
                decode: config.pose.decode,
                batch_size: config.pose.batch_size,
            },
        )?) as Box<dyn PoseModel>),
        None => None,
    };
    run_planned(config, jobs, Detector::LoadIfNeeded, pose, sink, cancel)
}

/// Runs the pipeline with the given pose model (none: boxes only) and boxes from files.
pub fn run_with_pose(
    config: &Config,
    jobs: Vec<VideoJob>,
    pose: Option<Box<dyn PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    run_with_models(config, jobs, None, pose, sink, cancel)
}

/// Runs the pipeline with explicit models: a detector (none: boxes from files) and a pose model.
pub fn run_with_models(
    config: &Config,
    jobs: Vec<VideoJob>,
    detector: Option<CascadeRcnn>,
    pose: Option<Box<dyn PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    let detector = Detector::Given(detector.map(Box::new));
    run_planned(config, jobs, detector, pose, sink, cancel)
}

/// Whether some video will go to the detector: always with `detector.kind: cascade_rcnn`, never
/// with `boxes`, and with `auto` when no boxes file covers it. Decided by the run's own plan,
/// so that the answer and the run agree.
pub fn needs_detector(config: &Config, jobs: &[VideoJob]) -> Result<bool, PipelineError> {
    let planned = plan(config, jobs.to_vec(), &mut RunReport::default())?;
    Ok(planned.iter().any(goes_to_detector))
}

/// The middle of the chain for `config`: boxes from files, the detector, the pose model and
/// the tracker, each present only when the run uses it. With `detector.interval` > 1 the
/// detector runs on key frames only and the tracker reports each frame's people back to it.
pub fn stages(
    config: &Config,
    detector: Option<CascadeRcnn>,
    pose: Option<Box<dyn PoseModel>>,
    permits: &FramePermits,
) -> Vec<Box<dyn Stage>> {
    let det = &config.detector;
    let key_frames = det.interval > 1 && pose.is_some();
    // Given boxes first: with `detector.kind: auto` the detector then skips the videos they
    // cover.
    let mut chain: Vec<Box<dyn Stage>> = match (&detector, det.kind) {
        (None, _) if !key_frames => vec![Box::new(GivenBoxesStage::new())],
        (Some(_), DetectorKind::CascadeRcnn) => Vec::new(),
        _ => vec![Box::new(GivenBoxesStage::named("boxes"))],
    };
    let mut reports = None;
    if key_frames {
        let (tx, rx) = crossbeam::channel::unbounded();
        reports = Some(tx);
        let settings = KeyframeSettings {
            interval: det.interval,
            refresh_score: det.refresh_score,
            max_carry_frames: det.max_carry_frames,
            score_threshold: det.score_threshold,
            motion: config.tracker.motion,
            aspect: pose_aspect(config),
        };
        chain.push(Box::new(KeyframeStage::new(detector, settings, rx)));
    } else if let Some(model) = detector {
        chain.push(Box::new(
            DetectStage::with_detector(
                model,
                det.score_threshold,
                det.batch_size,
                Duration::from_millis(det.batch_timeout_ms),
            )
            .with_permits(permits.clone()),
        ));
    }
    if let Some(model) = pose {
        // With key frames the next frame waits for this one's poses: no waiting for a batch.
        let timeout = match key_frames {
            true => Duration::ZERO,
            false => Duration::from_millis(config.pose.batch_timeout_ms),
        };
        chain.push(Box::new(
            PoseStage::with_model(model, config.pose.batch_size, timeout)
                .with_permits(permits.clone()),
        ));
    }
    let track: Box<dyn Stage> = match config.tracker.kind {
        TrackerKind::Given => Box::new(GivenTrackStage::new(config.tracker.nms_oks_threshold)),
        TrackerKind::Hungarian => Box::new(HungarianTrackStage::new(config.tracker.clone())),
    };
    chain.push(match reports {
        Some(tx) => Box::new(ReportPeople::new(track, tx)),
        None => track,
    });
    chain
}

/// Width / height of the configured pose model's input (MMPose's 192x256 when unknown).
fn pose_aspect(config: &Config) -> f32 {
    let cards = crate::models::builtin_cards();
    config
        .pose
        .model
        .as_deref()
        .and_then(|name| crate::models::find(&cards, name).ok())
        .and_then(|card| card.input_size)
        .map_or(0.75, |(w, h)| w as f32 / h as f32)
}

/// Checks the output folder before any work: writable, and (for overlays) nameable for FFmpeg.
/// Removes temporary files an earlier killed run left there.
fn prepare_output_dir(config: &Config) -> Result<(), PipelineError> {
    let dir = &config.output.dir;
    check_writable_dir(dir)?;
    if config.render.enabled && dir.to_str().is_none() {
        return Err(PipelineError::Output(format!(
            "{}: the output folder's name is not valid UTF-8, which FFmpeg cannot write overlay videos to; choose another folder or set render.enabled: false",
            dir.display()
        )));
    }
    let stale = remove_stale_partials(dir);
    if stale > 0 {
        tracing::info!(
            "{}: removed {stale} temporary file(s) left by an earlier run that was killed",
            dir.display()
        );
    }
    Ok(())
}

/// Most videos decoded at once: `concurrent` (`None`: every live input, plus one for the
/// files), never more than there are.
fn in_flight(planned: &[PlannedVideo], concurrent: Option<usize>) -> usize {
    let n = match concurrent {
        Some(n) => n,
        None => {
            let live = planned.iter().filter(|p| p.meta.live.is_some()).count();
            live + usize::from(live < planned.len())
        }
    };
    n.clamp(1, planned.len().max(1))
}

fn run_planned(
    config: &Config,
    jobs: Vec<VideoJob>,
    detector: Detector,
    pose: Option<Box<dyn PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let mut report = RunReport::default();
    prepare_output_dir(config)?;
    let mut planned = plan(config, jobs, &mut report)?;
    let detector = match detector {
        Detector::Given(d) => d.map(|d| *d),
        Detector::LoadIfNeeded if planned.iter().any(goes_to_detector) => {
            let det = &config.detector;
            Some(load::detector(ModelSource {
                card: &det.model,
                checkpoint: det.checkpoint.as_deref(),
                models_dir: &config.models_dir,
                device: config.device,
                dtype: det.dtype,
            })?)
        }
        Detector::LoadIfNeeded => None,
    };
    if detector.is_none() {
        // `detector.kind: auto` without a loaded detector (a library caller that passed none):
        // a video no boxes file covers would silently get no people.
        for p in planned.iter_mut().filter(|p| goes_to_detector(p)) {
            p.problem.get_or_insert(format!(
                "no boxes file covers `{}` and no detector is loaded (detector.kind: auto)",
                p.meta.job.name
            ));
        }
    }
    let budget = ThreadBudget::new(
        config.pipeline.threads,
        config.input.decode_threads,
        detector.is_some() || pose.is_some(),
    );
    budget.apply();
    let inputs = in_flight(&planned, super::plan::source_settings(config).concurrent);
    tracing::info!(
        "threads: {} compute (the detector and the pose model share them), {} FFmpeg decoding for each of {inputs} input(s) at once, on {} core(s)",
        rayon::current_num_threads(),
        budget.decode_per_input(config.input.decode_threads, inputs),
        budget.cores
    );
    let permits = FramePermits::new(config.pipeline.max_frames_in_flight);
    let chain = stages(config, detector, pose, &permits);
    let mut settings = super::plan::source_settings(config);
    let decode = budget.decode_per_input(config.input.decode_threads, inputs);
    settings.decode_threads = decode;
    settings.stream.decode_threads = decode;
    let source_permits = permits.clone();
    let source_cancel = cancel.clone();
    let source = move |tx| run_source(planned, settings, source_permits, source_cancel, tx);
    let metrics = execute(
        source,
        chain,
        sink,
        config.pipeline.channel_capacity,
        &mut report,
        SinkSettings {
            fail_fast: config.output.fail_fast,
            cancel: &cancel,
        },
    )?;
    report.stages = metrics.iter().map(StageMetrics::summary).collect();
    report.peak_frames_in_flight = permits.peak();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
