//! The plan of a run: per video, its outputs, its boxes and whether it can run at all, decided
//! before anything is decoded. This is where the configuration meets the PoseTrack layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::messages::VideoMeta;
use super::outputs::ProtectedInputs;
use super::report::RunReport;
use super::PipelineError;
use crate::config::{Concurrency, Config, DetectorKind};
use crate::fsutil::same_file;
use crate::posetrack::boxes::GivenBoxes;
use crate::posetrack::sequence::{annotation_for, frames_mismatch};
use crate::stages::source::{PlannedVideo, SourceSettings};
use crate::video::stream::{Reconnect, StreamOptions};
use crate::video::{SourceKind, StreamInfo, VideoJob};

/// Output base paths of a job: `<dir>/<name>.json` and, when rendering, `<dir>/<name>.mp4`.
pub fn output_paths(dir: &Path, job: &VideoJob, render: bool) -> (PathBuf, Option<PathBuf>) {
    (
        dir.join(format!("{}.json", job.name)),
        render.then(|| dir.join(format!("{}.mp4", job.name))),
    )
}

/// Whether each video gets an overlay file: rendering is on and not streamed instead.
fn overlay_file(config: &Config) -> bool {
    config.render.enabled && config.render.stream.is_none()
}

/// The stream information used before a video is opened.
fn placeholder_info() -> StreamInfo {
    StreamInfo {
        fps: 25.0,
        frames_hint: None,
    }
}

/// A planned video that will run and has no given boxes: the detector must find its people.
pub fn goes_to_detector(p: &PlannedVideo) -> bool {
    p.meta.boxes.is_none() && p.problem.is_none()
}

/// Every input file of the run, wherever it lies, with how messages name it: videos, frames,
/// annotation files, boxes files (each file of a boxes folder).
fn input_files(config: &Config, jobs: &[VideoJob]) -> Vec<(PathBuf, &'static str)> {
    let mut inputs = Vec::new();
    for job in jobs {
        match &job.kind {
            SourceKind::ImageFolder { files, .. } => {
                inputs.extend(files.iter().map(|(_, f)| (f.clone(), "the input frame")));
            }
            _ => inputs.push((job.path().to_path_buf(), "the input")),
        }
        if let Some(annotation) = annotation_for(job) {
            inputs.push((annotation, "the annotation file"));
        }
    }
    if config.detector.kind != DetectorKind::CascadeRcnn && config.detector.boxes != "auto" {
        let boxes = Path::new(&config.detector.boxes);
        match std::fs::read_dir(boxes) {
            Ok(entries) => inputs.extend(entries.flatten().map(|e| (e.path(), "the boxes file"))),
            Err(_) => inputs.push((boxes.to_path_buf(), "the boxes file")),
        }
    }
    if let Some(images) = &config.detector.boxes_images {
        inputs.push((images.clone(), "the annotation file"));
    }
    inputs
}

/// Every input of the run that lies in the output folder.
fn protect_inputs(config: &Config, inputs: &[(PathBuf, &'static str)]) -> ProtectedInputs {
    let mut protected = ProtectedInputs::new(&config.output.dir);
    for (path, what) in inputs {
        protected.add(path, what);
    }
    protected
}

/// A file the run writes besides the videos' outputs (`--metrics-json`, `--jsonl`, the run
/// report) may
/// name neither an input nor one of those outputs: it would replace it, and the next run would
/// then skip that video.
fn check_side_file(
    config: &Config,
    jobs: &[VideoJob],
    what: &str,
    file: &Path,
    inputs: &[(PathBuf, &'static str)],
    protected: &ProtectedInputs,
) -> Result<(), PipelineError> {
    if let Some(input) = protected.replaced_by(file) {
        return Err(PipelineError::Output(format!(
            "{what} {}: writing it would replace {input}",
            file.display()
        )));
    }
    // An input outside the output folder too (`--jsonl clip.mp4` from the video's folder).
    if file.exists() {
        if let Some((_, input)) = inputs.iter().find(|(path, _)| same_file(file, path)) {
            return Err(PipelineError::Output(format!(
                "{what} {}: writing it would replace {input}",
                file.display()
            )));
        }
    }
    for job in jobs {
        let (json, video) = output_paths(&config.output.dir, job, overlay_file(config));
        for out in [Some(json), video].into_iter().flatten() {
            if same_file(file, &out) {
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

/// How the source decodes, from `input:`.
pub fn source_settings(config: &Config) -> SourceSettings {
    let input = &config.input;
    let seconds = std::time::Duration::from_secs_f64;
    SourceSettings {
        image_fps: input.image_fps,
        decode_threads: input.decode_threads,
        max_frames: input.max_frames,
        stream: StreamOptions {
            ffmpeg_options: input
                .ffmpeg_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: seconds(input.timeout_s),
            reconnect: Reconnect {
                attempts: input.reconnect.attempts,
                initial_backoff: seconds(input.reconnect.initial_backoff_s),
                max_backoff: seconds(input.reconnect.max_backoff_s),
            },
            decode_threads: input.decode_threads,
            ..StreamOptions::default()
        },
        duration: input.duration.map(seconds),
        concurrent: match input.concurrent {
            Concurrency::Auto => None,
            Concurrency::Inputs(n) => Some(n),
        },
    }
}

/// Decides, per job, its outputs, its boxes, and whether it can run at all.
pub fn plan(
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
    let inputs = input_files(config, &jobs);
    let protected = protect_inputs(config, &inputs);
    if let Some(metrics) = &config.output.metrics_json {
        check_side_file(
            config,
            &jobs,
            "--metrics-json",
            metrics,
            &inputs,
            &protected,
        )?;
    }
    if let Some(lines) = config
        .output
        .jsonl
        .as_ref()
        .filter(|p| p.as_os_str() != "-")
    {
        check_side_file(config, &jobs, "--jsonl", lines, &inputs, &protected)?;
    }
    check_side_file(
        config,
        &jobs,
        "the run report",
        &config.report_path(),
        &inputs,
        &protected,
    )?;
    let mut planned = Vec::new();
    for (id, job) in jobs.into_iter().enumerate() {
        let (output_json, output_video) =
            output_paths(&config.output.dir, &job, overlay_file(config));
        let replaced = [Some(&output_json), output_video.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|out| Some((out.clone(), protected.replaced_by(out)?.to_string())));
        if let Some((out, input)) = replaced {
            let reason = format!(
                "{}: writing it would replace {input}; vidpose never writes over its inputs: choose another --output folder",
                out.display()
            );
            report.fail_early(&job, reason);
            continue;
        }
        if output_json.exists() && !config.output.overwrite {
            tracing::info!(
                "{}: skipped, {} exists (use --overwrite to redo it)",
                job.name,
                output_json.display()
            );
            report.skip(&job, format!("{} exists", output_json.display()));
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
            match annotation_for(&job) {
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
        if let (Some(boxes), SourceKind::ImageFolder { files, .. }) = (&boxes, &job.kind) {
            if let Some(p) = frames_mismatch(boxes, &job.name, files) {
                problem.get_or_insert(p);
            }
        }
        let live = config
            .input
            .live
            .applies(job.is_stream())
            .then(Default::default);
        planned.push(PlannedVideo {
            meta: VideoMeta {
                id,
                info: placeholder_info(),
                job,
                output_json,
                output_video,
                boxes,
                frame_limit: config.input.max_frames,
                live,
                cut_short: Default::default(),
            },
            problem,
        });
    }
    Ok(planned)
}
