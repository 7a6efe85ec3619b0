//! The staged pipeline: decode -> detect -> pose -> track -> sink, each stage a thread, joined
//! by bounded channels; frames in flight are capped by permits.

pub mod batching;
pub mod detect_stage;
pub mod messages;
pub mod metrics;
pub mod outputs;
pub mod permits;
pub mod pose_stage;
pub mod reorder;
pub mod sink;
pub mod stage;
pub mod stages;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver};

use crate::config::{Config, DetectorKind};
use crate::detect::given::GivenBoxes;
use crate::video::VideoJob;
use messages::{Envelope, Msg, VideoFailure, VideoMeta};
use metrics::{StageMetrics, StageSummary};
use permits::FramePermits;
use sink::FrameSink;
use stage::{run_stage, Stage};
use stages::{PlannedVideo, SourceSettings};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Boxes(#[from] crate::detect::given::BoxesError),
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    #[error("a pipeline stage stopped unexpectedly: {0}")]
    Stage(String),
    /// The outputs cannot be written, or would replace an input: found before any work.
    #[error("{0}")]
    Output(String),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Files written, per finished video.
    pub written: Vec<PathBuf>,
    /// Videos skipped because their output already exists.
    pub skipped: Vec<String>,
    /// `(video, reason)` for every video that failed.
    pub failed: Vec<(String, String)>,
    pub stages: Vec<StageSummary>,
    /// Most decoded frames alive at once.
    pub peak_frames_in_flight: usize,
    pub interrupted: bool,
    /// `--fail-fast` stopped the run after a failure.
    pub stopped_on_failure: bool,
    pub seconds: f64,
    /// One entry per video, in the order they ended.
    pub videos: Vec<VideoOutcome>,
}

/// How one video's run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoOutcome {
    pub name: String,
    #[serde(serialize_with = "lossy_path")]
    pub input: PathBuf,
    /// `written`, `skipped`, `failed` or `interrupted`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub frames: u64,
    pub seconds: f64,
    #[serde(serialize_with = "lossy_paths")]
    pub outputs: Vec<PathBuf>,
}

/// A path in JSON even when it is not valid UTF-8 (serde refuses those): the lossy form, which
/// replaces the invalid bytes with U+FFFD.
fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn lossy_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

impl VideoOutcome {
    fn new(job: &VideoJob, status: &'static str, reason: Option<String>) -> Self {
        Self {
            name: job.name.clone(),
            input: job.path().to_path_buf(),
            status,
            reason,
            frames: 0,
            seconds: 0.0,
            outputs: Vec::new(),
        }
    }
}

/// The per-sequence annotation file of a PoseTrack layout: `<root>/images/<split>/<seq>/`
/// -> `<root>/annotations/<split>/<seq>.json`.
pub fn posetrack_annotation_for(job: &VideoJob) -> Option<PathBuf> {
    let seq = job.posetrack.as_ref()?;
    let split = seq.split.as_ref()?;
    let root = job.path().parent()?.parent()?.parent()?;
    Some(
        root.join("annotations")
            .join(split)
            .join(format!("{}.json", seq.name)),
    )
}

/// A PoseTrack submission needs every frame the annotation file lists: a listed frame missing
/// from the folder fails the sequence (the evaluator would reject its output); frames the file
/// does not list are only worth a warning.
fn frames_mismatch(
    boxes: &GivenBoxes,
    name: &str,
    files: &[(u64, std::path::PathBuf)],
) -> Option<String> {
    let listed = boxes.listed_frames(name);
    if listed.is_empty() {
        return None;
    }
    let on_disk: std::collections::HashSet<u64> = files.iter().map(|f| f.0).collect();
    let missing: Vec<u64> = listed
        .iter()
        .copied()
        .filter(|n| !on_disk.contains(n))
        .collect();
    if let Some(first) = missing.first() {
        return Some(format!(
            "{}: lists {} frame(s) of `{name}` that the folder does not have (first: number {first}); the output would not pair with the annotation file",
            boxes.source().display(),
            missing.len()
        ));
    }
    if listed.len() < files.len() {
        tracing::warn!(
            "{name}: the folder has {} frames, {} lists {}; the extra frames are written too",
            files.len(),
            boxes.source().display(),
            listed.len()
        );
    }
    None
}

/// Whether some video will go to the detector: always with `detector.kind: cascade_rcnn`, never
/// with `boxes`, and with `auto` when no boxes file covers it. Decided by the run's own plan,
/// so that the answer and the run agree.
pub fn needs_detector(config: &Config, jobs: &[VideoJob]) -> Result<bool, PipelineError> {
    let planned = plan(config, jobs.to_vec(), &mut RunReport::default())?;
    Ok(planned.iter().any(goes_to_detector))
}

/// A planned video that will run and has no given boxes: the detector must find its people.
fn goes_to_detector(p: &PlannedVideo) -> bool {
    p.meta.boxes.is_none() && p.problem.is_none()
}

/// Every input of the run that lies in the output folder: videos, frames, boxes and annotation
/// files.
fn protect_inputs(config: &Config, jobs: &[VideoJob]) -> outputs::ProtectedInputs {
    let mut protected = outputs::ProtectedInputs::new(&config.output.dir);
    for job in jobs {
        match &job.kind {
            crate::video::SourceKind::ImageFolder { files, .. } => {
                for (_, f) in files {
                    protected.add(f, "the input frame");
                }
            }
            _ => protected.add(job.path(), "the input"),
        }
        if let Some(annotation) = posetrack_annotation_for(job) {
            protected.add(&annotation, "the annotation file");
        }
    }
    if config.detector.kind != DetectorKind::CascadeRcnn && config.detector.boxes != "auto" {
        let boxes = Path::new(&config.detector.boxes);
        if boxes.is_dir() {
            protected.add_folder(boxes, "the boxes file");
        } else {
            protected.add(boxes, "the boxes file");
        }
    }
    if let Some(images) = &config.detector.boxes_images {
        protected.add(images, "the annotation file");
    }
    protected
}

/// A file the run writes besides the videos' outputs (`--metrics-json`, the run report) may
/// name neither an input nor one of those outputs: it would replace it, and the next run would
/// then skip that video.
fn check_side_file(
    config: &Config,
    jobs: &[VideoJob],
    what: &str,
    file: &Path,
    protected: &outputs::ProtectedInputs,
) -> Result<(), PipelineError> {
    if let Some(input) = protected.replaced_by(file) {
        return Err(PipelineError::Output(format!(
            "{what} {}: writing it would replace {input}",
            file.display()
        )));
    }
    for job in jobs {
        let (json, video) = stages::output_paths(&config.output.dir, job, config.render.enabled);
        for out in [Some(json), video].into_iter().flatten() {
            if crate::fsutil::same_file(file, &out) {
                return Err(PipelineError::Output(format!(
                    "{what} {} is the output of `{}`; choose another file",
                    file.display(),
                    job.name
                )));
            }
        }
    }
    Ok(())
}

/// Decides, per job, its outputs, its boxes, and whether it can run at all.
fn plan(
    config: &Config,
    jobs: Vec<VideoJob>,
    report: &mut RunReport,
) -> Result<Vec<PlannedVideo>, PipelineError> {
    let fixed_boxes = match (config.detector.kind, config.detector.boxes.as_str()) {
        (DetectorKind::CascadeRcnn, _) | (_, "auto") => None,
        (_, path) => Some(Arc::new(GivenBoxes::load(
            Path::new(path),
            config.detector.boxes_images.as_deref(),
            config.detector.score_threshold,
        )?)),
    };
    let protected = protect_inputs(config, &jobs);
    if let Some(metrics) = &config.output.metrics_json {
        check_side_file(config, &jobs, "--metrics-json", metrics, &protected)?;
    }
    check_side_file(
        config,
        &jobs,
        "the run report",
        &config.report_path(),
        &protected,
    )?;
    let mut planned = Vec::new();
    for (id, job) in jobs.into_iter().enumerate() {
        let (output_json, output_video) =
            stages::output_paths(&config.output.dir, &job, config.render.enabled);
        let replaced = [Some(&output_json), output_video.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|out| Some((out.clone(), protected.replaced_by(out)?.to_string())));
        if let Some((out, input)) = replaced {
            let reason = format!(
                "{}: writing it would replace {input}; vidpose never writes over its inputs: choose another --output folder",
                out.display()
            );
            tracing::error!("{}: {reason}", job.name);
            report.failed.push((job.name.clone(), reason.clone()));
            report
                .videos
                .push(VideoOutcome::new(&job, "failed", Some(reason)));
            continue;
        }
        if output_json.exists() && !config.output.overwrite {
            tracing::info!(
                "{}: skipped, {} exists (use --overwrite to redo it)",
                job.name,
                output_json.display()
            );
            report.skipped.push(job.name.clone());
            report.videos.push(VideoOutcome::new(
                &job,
                "skipped",
                Some(format!("{} exists", output_json.display())),
            ));
            continue;
        }
        // A job discovery already found broken (two files with one number, say) says so first.
        let mut problem = job.invalid_reason();
        let gaps = job.gaps();
        if let Some(&(before, after)) = gaps.first() {
            let message = format!(
                "{}: the numbering has {} gap(s), the first after image {before} (next is {after})",
                job.path().display(),
                gaps.len()
            );
            if config.input.allow_gaps {
                tracing::warn!("{message}; decoding anyway (input.allow_gaps)");
            } else {
                problem = Some(format!(
                    "{message}; missing frames would shift every later frame (set input.allow_gaps: true to decode it anyway)"
                ));
            }
        }
        // With `detector.kind: auto`, a video no boxes file covers goes to the detector.
        let auto = config.detector.kind == DetectorKind::Auto;
        let boxes = if config.detector.kind == DetectorKind::CascadeRcnn {
            None
        } else if let Some(fixed) = &fixed_boxes {
            if fixed.has_sequence(&job.name) {
                Some(fixed.clone())
            } else if auto {
                None
            } else {
                let unreadable = match fixed.unreadable() {
                    [] => String::new(),
                    files => format!("; files set aside as unreadable: {}", files.join("; ")),
                };
                problem.get_or_insert(format!(
                    "{}: holds no frames of `{}` (frames are matched by <sequence>/<number> in file_name){unreadable}",
                    fixed.source().display(),
                    job.name
                ));
                Some(fixed.clone())
            }
        } else {
            match posetrack_annotation_for(&job) {
                Some(path) if auto && !path.exists() => None,
                None if auto => None,
                Some(path) => {
                    match GivenBoxes::load(&path, None, config.detector.score_threshold) {
                        Ok(b) => Some(Arc::new(b)),
                        Err(e) => {
                            problem.get_or_insert(format!(
                            "detector.boxes is `auto`, and the sequence's annotation file cannot be used: {e}"
                        ));
                            None
                        }
                    }
                }
                None => {
                    problem.get_or_insert(format!(
                        "detector.boxes is `auto`, which finds boxes only for PoseTrack sequences (<root>/images/<split>/<seq>/ with <root>/annotations/<split>/<seq>.json); give a boxes file for `{}` with --set detector.boxes=FILE",
                        job.name
                    ));
                    None
                }
            }
        };
        if let (Some(boxes), crate::video::SourceKind::ImageFolder { files, .. }) =
            (&boxes, &job.kind)
        {
            if let Some(p) = frames_mismatch(boxes, &job.name, files) {
                problem.get_or_insert(p);
            }
        }
        planned.push(PlannedVideo {
            meta: VideoMeta {
                id,
                info: stages::placeholder_info(),
                job,
                output_json,
                output_video,
                boxes,
            },
            problem,
        });
    }
    Ok(planned)
}

/// Feeds the sink; a failure of one video is recorded and the others go on (unless
/// `fail_fast`, which then stops the run through `cancel`).
fn run_sink(
    mut sink: Box<dyn FrameSink>,
    rx: Receiver<Envelope>,
    report: &mut RunReport,
    fail_fast: bool,
    cancel: &AtomicBool,
) -> StageMetrics {
    let mut metrics = StageMetrics::new("sink");
    let started = Instant::now();
    let mut failure: Option<VideoFailure> = None;
    let mut video_started = Instant::now();
    let mut frames = 0u64;
    loop {
        let t = Instant::now();
        let Ok(env) = rx.recv() else { break };
        metrics.wait_input += t.elapsed();
        match env.msg {
            Msg::Start(video) => {
                video_started = Instant::now();
                frames = 0;
                failure = sink.start(&video).err();
            }
            Msg::Frame(frame) => {
                metrics.items += 1;
                metrics.batches += 1;
                frames += 1;
                metrics.record_latency(frame.entered_stage.elapsed());
                if failure.is_none() {
                    failure = sink.frame(*frame).err();
                }
            }
            Msg::End(video, outcome) => {
                let mut reason = failure.take().or(outcome.err());
                if report.stopped_on_failure {
                    // Already queued when the run was stopped: not written either.
                    reason = Some(VideoFailure::Interrupted);
                }
                let mut entry = VideoOutcome::new(&video.job, "written", None);
                entry.frames = frames;
                entry.seconds = video_started.elapsed().as_secs_f64();
                let failed = match sink.end(&video, reason.is_none()) {
                    Ok(files) if reason.is_none() => {
                        tracing::info!("{}: done", video.job.name);
                        entry.outputs = files.clone();
                        report.written.extend(files);
                        None
                    }
                    Ok(_) => reason,
                    Err(e) => Some(e),
                };
                if let Some(failure) = failed {
                    if failure == VideoFailure::Interrupted {
                        report.interrupted = true;
                        entry.status = "interrupted";
                    } else {
                        entry.status = "failed";
                    }
                    tracing::error!("{}: failed: {failure}", video.job.name);
                    report
                        .failed
                        .push((video.job.name.clone(), failure.to_string()));
                    entry.reason = Some(failure.to_string());
                }
                if entry.status == "failed" && fail_fast && !cancel.swap(true, Ordering::SeqCst) {
                    tracing::error!("stopping the run after this failure (--fail-fast)");
                    report.stopped_on_failure = true;
                }
                report.videos.push(entry);
            }
        }
    }
    metrics.busy = started.elapsed().saturating_sub(metrics.wait_input);
    metrics
}

/// Runs the pipeline over `jobs` with the models the configuration names. `cancel` (set by
/// Ctrl-C) stops decoding; videos not finished by then are reported as interrupted and leave
/// no output.
pub fn run(
    config: &Config,
    jobs: Vec<VideoJob>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    let pose = pose_stage::load_pose_model(config)?;
    let pose = pose.map(|p| Box::new(p) as Box<dyn pose_stage::PoseModel>);
    run_planned(config, jobs, Detector::LoadIfNeeded, pose, sink, cancel)
}

/// Where the run's detector comes from.
enum Detector {
    /// Loaded from the configuration once the plan shows a video that needs it.
    LoadIfNeeded,
    /// The caller's (none: boxes from files only); boxed, the model is large.
    Given(Option<Box<crate::detect::CascadeRcnn>>),
}

/// Runs the pipeline with the given pose model (none: boxes only) and boxes from files.
pub fn run_with_pose(
    config: &Config,
    jobs: Vec<VideoJob>,
    pose: Option<Box<dyn pose_stage::PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    run_with_models(config, jobs, None, pose, sink, cancel)
}

/// Runs the pipeline with explicit models: a detector (none: boxes from files) and a pose model.
pub fn run_with_models(
    config: &Config,
    jobs: Vec<VideoJob>,
    detector: Option<crate::detect::CascadeRcnn>,
    pose: Option<Box<dyn pose_stage::PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    run_planned(
        config,
        jobs,
        Detector::Given(detector.map(Box::new)),
        pose,
        sink,
        cancel,
    )
}

fn run_planned(
    config: &Config,
    jobs: Vec<VideoJob>,
    detector: Detector,
    pose: Option<Box<dyn pose_stage::PoseModel>>,
    sink: Box<dyn FrameSink>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let mut report = RunReport::default();
    crate::fsutil::check_writable_dir(&config.output.dir)
        .map_err(|e| PipelineError::Output(e.to_string()))?;
    if config.render.enabled && config.output.dir.to_str().is_none() {
        return Err(PipelineError::Output(format!(
            "{}: the output folder's name is not valid UTF-8, which FFmpeg cannot write overlay videos to; choose another folder or set render.enabled: false",
            config.output.dir.display()
        )));
    }
    let stale = crate::fsutil::remove_stale_partials(&config.output.dir);
    if stale > 0 {
        tracing::info!(
            "{}: removed {stale} temporary file(s) left by an earlier run that was killed",
            config.output.dir.display()
        );
    }
    let mut planned = plan(config, jobs, &mut report)?;
    let detector = match detector {
        Detector::Given(d) => d.map(|d| *d),
        Detector::LoadIfNeeded if planned.iter().any(goes_to_detector) => {
            detect_stage::load_detector(config)?
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
    let cap = config.pipeline.channel_capacity;
    let permits = FramePermits::new(config.pipeline.max_frames_in_flight);
    // Given boxes first: with `detector.kind: auto` the detector then skips the videos they
    // cover.
    let mut middle: Vec<Box<dyn Stage>> = match (&detector, config.detector.kind) {
        (None, _) => vec![Box::new(stages::GivenBoxesStage::new())],
        (Some(_), DetectorKind::Auto) => vec![Box::new(stages::GivenBoxesStage::named("boxes"))],
        (Some(_), _) => Vec::new(),
    };
    if let Some(model) = detector {
        middle.push(Box::new(
            detect_stage::DetectStage::with_detector(
                model,
                config.detector.score_threshold,
                config.detector.batch_size,
                Duration::from_millis(config.detector.batch_timeout_ms),
            )
            .with_permits(permits.clone()),
        ));
    }
    if let Some(model) = pose {
        middle.push(Box::new(
            pose_stage::PoseStage::with_model(
                model,
                config.pose.batch_size,
                Duration::from_millis(config.pose.batch_timeout_ms),
            )
            .with_permits(permits.clone()),
        ));
    }
    middle.push(match config.tracker.kind {
        crate::track::TrackerKind::Given => Box::new(stages::GivenTrackStage::new(
            config.tracker.nms_oks_threshold,
        )),
        crate::track::TrackerKind::Hungarian => {
            Box::new(stages::HungarianTrackStage::new(config.tracker.clone()))
        }
    });
    let settings = SourceSettings {
        image_fps: config.input.image_fps,
        decode_threads: config.input.decode_threads,
    };
    let stage_metrics = std::thread::scope(|scope| -> Result<Vec<StageMetrics>, PipelineError> {
        let (tx, mut rx) = bounded::<Envelope>(cap);
        let source_permits = permits.clone();
        let source_cancel = cancel.clone();
        let source = scope.spawn(move || {
            stages::run_source(planned, settings, source_permits, source_cancel, tx)
        });
        let mut handles = Vec::new();
        for stage in middle {
            let (tx, next_rx) = bounded::<Envelope>(cap);
            let input = std::mem::replace(&mut rx, next_rx);
            handles.push(scope.spawn(move || run_stage(stage, input, tx)));
        }
        let sink_metrics = run_sink(sink, rx, &mut report, config.output.fail_fast, &cancel);
        let join = |h: std::thread::ScopedJoinHandle<'_, StageMetrics>| {
            h.join().map_err(|p| {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                PipelineError::Stage(what)
            })
        };
        let mut all = vec![join(source)?];
        for h in handles {
            all.push(join(h)?);
        }
        all.push(sink_metrics);
        Ok(all)
    })?;
    report.stages = stage_metrics.iter().map(StageMetrics::summary).collect();
    report.peak_frames_in_flight = permits.peak();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
