//! `pipeline.yaml`: the schema, its defaults, `--set` overrides and validation.
//!
//! Every key is documented in the default `pipeline.yaml` at the repository root; the doc
//! comments here say the same in fewer words. Errors name the file, the key path and what
//! was expected.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::models::ModelTask;
use crate::nn::device::{DeviceSpec, Precision};
use crate::pose::codec::HeatmapDecoding;
use crate::track::{TrackerConfig, TrackerKind};
use crate::yaml::{self, BadChoice};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The configuration file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not YAML, or its top level is not a mapping of sections.
    #[error("{file}: malformed YAML: {message}")]
    Syntax {
        /// The configuration file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, has the wrong type or an out-of-range value, or contradicts another.
    #[error("{file}: key `{key}`: {message}")]
    Key {
        /// The configuration file, marked `(with --set overrides)` when there were some.
        file: PathBuf,
        /// Dotted key path, e.g. `pose.batch_size`.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A `--set` argument is not `KEY=VALUE` with a dotted key and a YAML value.
    #[error("--set {arg}: {message}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where a configuration value came from, for error messages.
fn origin(file: &Path, overrides: &[String]) -> PathBuf {
    if overrides.is_empty() {
        file.to_path_buf()
    } else {
        PathBuf::from(format!("{} (with --set overrides)", file.display()))
    }
}

/// A whole `pipeline.yaml`, one field per section; missing keys take their defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `input:` what to process.
    pub input: InputConfig,
    /// `output:` where results go.
    pub output: OutputConfig,
    /// `cpu` or `cuda:N`.
    pub device: DeviceSpec,
    /// Where `vidpose models fetch` puts checkpoints; models named by card load from here.
    pub models_dir: PathBuf,
    /// `detector:` where person boxes come from.
    pub detector: DetectorConfig,
    /// `pose:` the keypoint model.
    pub pose: PoseConfig,
    /// `tracker:` how people are linked across frames.
    pub tracker: TrackerConfig,
    /// `render:` the optional overlay video.
    pub render: RenderConfig,
    /// `pipeline:` queues and memory bounds between stages.
    pub pipeline: PipelineConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            input: InputConfig::default(),
            output: OutputConfig::default(),
            device: DeviceSpec::Cpu,
            models_dir: PathBuf::from("models"),
            detector: DetectorConfig::default(),
            pose: PoseConfig::default(),
            tracker: TrackerConfig::default(),
            render: RenderConfig::default(),
            pipeline: PipelineConfig::default(),
        }
    }
}

/// `input:` the videos and image folders to process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Videos, image files, numbered-image folders, or folders holding many of them.
    pub paths: Vec<PathBuf>,
    /// Frame rate given to image folders (they carry none).
    pub image_fps: f64,
    /// Decode a numbered-image folder whose numbering has gaps (each gap is logged) instead of
    /// refusing it.
    pub allow_gaps: bool,
    /// FFmpeg decoding threads per video; 0: an eighth of `pipeline.threads` (1 to 4) when a
    /// model runs, every core otherwise.
    pub decode_threads: usize,
    /// Process only shard `index` of `count` (by a hash of each video's name), e.g. `0/4`.
    pub shard: Option<Shard>,
    /// Decode at most this many frames of each video (benchmarks, quick looks); the outputs
    /// then cover those frames only. `None`: every frame.
    pub max_frames: Option<u64>,
    /// Live mode: `auto` (on for stream URLs and webcams), `true` or `false`.
    #[serde(deserialize_with = "live_mode")]
    pub live: LiveMode,
    /// FFmpeg options given when opening a live source (`rtsp_transport: tcp`, ...).
    #[serde(deserialize_with = "scalar_map")]
    pub ffmpeg_options: std::collections::BTreeMap<String, String>,
    /// Longest wait, in seconds, for a live source to open or send its next packet.
    pub timeout_s: f64,
    /// Reconnection when a live stream drops.
    pub reconnect: ReconnectConfig,
    /// Read each input for at most this many seconds (`--duration`); `None`: to its end.
    pub duration: Option<f64>,
    /// Inputs in flight at once, their frames sharing the models' batches: `auto` (every live
    /// input at once, the files one after another beside them) or a number.
    #[serde(deserialize_with = "concurrency")]
    pub concurrent: Concurrency,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            image_fps: 25.0,
            allow_gaps: false,
            decode_threads: 0,
            shard: None,
            max_frames: None,
            live: LiveMode::Auto,
            ffmpeg_options: Default::default(),
            timeout_s: 10.0,
            reconnect: ReconnectConfig::default(),
            duration: None,
            concurrent: Concurrency::Auto,
        }
    }
}

/// `input.concurrent`: how many inputs are decoded and processed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Every live input at once (a stream cannot wait for another to end), the files one
    /// after another beside them: a run of files alone goes as it always did.
    Auto,
    /// At most this many inputs at once, taken in order, live or not.
    Inputs(usize),
}

/// `auto` or a whole number (checked against its bounds by `validate`).
fn concurrency<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Concurrency, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Count(i64),
        Word(String),
        Other(serde::de::IgnoredAny),
    }
    let expected = format!("expected auto or a number of inputs from 1 to {MAX_CONCURRENT_INPUTS}");
    match Raw::deserialize(d)? {
        Raw::Count(n) if n >= 1 => Ok(Concurrency::Inputs(n as usize)),
        Raw::Count(n) => Err(serde::de::Error::custom(format!("{expected}, got {n}"))),
        Raw::Word(w) if w == "auto" => Ok(Concurrency::Auto),
        Raw::Word(w) => Err(serde::de::Error::custom(format!("{expected}, got `{w}`"))),
        Raw::Other(_) => Err(serde::de::Error::custom(expected)),
    }
}

/// `input.live`: whether frames are dropped at the source to keep latency bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveMode {
    /// On for live sources (stream URLs, webcams), off for files.
    Auto,
    /// On for every input.
    On,
    /// Off for every input: a live stream is then read at the pipeline's pace.
    Off,
}

impl LiveMode {
    /// Whether live mode applies to an input that is (`is_stream`) or is not a live source.
    pub fn applies(self, is_stream: bool) -> bool {
        match self {
            LiveMode::Auto => is_stream,
            LiveMode::On => true,
            LiveMode::Off => false,
        }
    }
}

/// `auto`, `true` or `false`.
fn live_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LiveMode, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Word(String),
    }
    match Raw::deserialize(d)? {
        Raw::Flag(true) => Ok(LiveMode::On),
        Raw::Flag(false) => Ok(LiveMode::Off),
        Raw::Word(w) if w == "auto" => Ok(LiveMode::Auto),
        Raw::Word(w) => Err(serde::de::Error::custom(format!(
            "expected auto, true or false, got `{w}`"
        ))),
    }
}

/// A mapping of option names to scalar values (numbers and booleans kept as their text).
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Flag(bool),
    }
    let raw = std::collections::BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Flag(b) => u8::from(b).to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `input.reconnect:` what happens when a live stream drops.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// Attempts after each drop before the stream is taken as ended; 0 never reconnects.
    pub attempts: u32,
    /// Seconds before the first attempt; doubled after each failed one.
    pub initial_backoff_s: f64,
    /// Longest wait between two attempts, in seconds.
    pub max_backoff_s: f64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff_s: 0.5,
            max_backoff_s: 8.0,
        }
    }
}

/// `output:` where the PoseTrack JSON files, metrics and run report are written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Folder receiving one PoseTrack JSON (and overlay video) per input video.
    pub dir: PathBuf,
    /// Write per-stage metrics as JSON to this file.
    pub metrics_json: Option<PathBuf>,
    /// Replace outputs that already exist instead of skipping their videos.
    pub overwrite: bool,
    /// Stop the whole run at the first video that fails (the default goes on with the others).
    pub fail_fast: bool,
    /// Where the run report (each video's status, reason, frames and time) is written;
    /// null = `<output.dir>/run.json`.
    pub report: Option<PathBuf>,
    /// Per-frame results as JSON Lines, written as each frame completes; `-` = stdout.
    pub jsonl: Option<PathBuf>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("out"),
            metrics_json: None,
            overwrite: false,
            fail_fast: false,
            report: None,
            jsonl: None,
        }
    }
}

/// `detector.kind`: where person boxes come from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Per video: the boxes file when it covers the video (`detector.boxes`; `auto` = the
    /// PoseTrack annotation file), the Cascade R-CNN otherwise.
    Auto,
    /// Person boxes read from annotation or detection files.
    Boxes,
    /// MMDetection's Cascade R-CNN X101-64x4d FPN.
    CascadeRcnn,
}

/// `detector:` person boxes, from files or from the Cascade R-CNN.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Boxes files, the Cascade R-CNN, or per video whichever applies.
    pub kind: DetectorKind,
    /// `auto` (PoseTrack layout: `annotations/<split>/<seq>.json` beside `images/`), a
    /// PoseTrack/COCO annotation file, a folder of them, or a COCO detection-results file.
    pub boxes: String,
    /// For COCO detection results: the annotation file whose `images` map ids to file names.
    pub boxes_images: Option<PathBuf>,
    /// Boxes scoring below this are dropped.
    pub score_threshold: f32,
    /// For `cascade_rcnn`: the model card (`models/*.yaml`), which fixes the architecture.
    pub model: String,
    /// The checkpoint; `None` = the model card's file in `models_dir`.
    pub checkpoint: Option<PathBuf>,
    /// Frames per forward pass, gathered across frames and videos.
    pub batch_size: usize,
    /// The Cascade R-CNN's weights and activations: `f32`, `f16` or `bf16`.
    pub dtype: Precision,
    /// A partial batch is run after waiting this long for more frames.
    pub batch_timeout_ms: u64,
    /// Detect on frames 0, k, 2k, ...; in between, each tracked person's box comes from its
    /// last pose. 1 detects every frame.
    pub interval: u32,
    /// With `interval` > 1: a carried pose whose mean keypoint score falls below this is
    /// dropped and the next frame is detected.
    pub refresh_score: f32,
    /// With `interval` > 1: a carried person no detection has confirmed for more frames than
    /// this is dropped.
    pub max_carry_frames: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            kind: DetectorKind::Auto,
            boxes: "auto".into(),
            boxes_images: None,
            score_threshold: 0.4,
            model: "cascade_rcnn_x101_64x4d_fpn_20e_coco".into(),
            checkpoint: None,
            batch_size: 1,
            dtype: Precision::F32,
            batch_timeout_ms: 20,
            interval: 1,
            refresh_score: 0.3,
            max_carry_frames: 25,
        }
    }
}

/// `pose:` the HRNet keypoint model run on each person box.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoseConfig {
    /// A model card (`hrnet_w32_256x192`, `hrnet_w32_384x288`, `hrnet_w48_256x192`,
    /// `hrnet_w48_384x288`: the cards in `models/`), or `None` for boxes only (`none` in YAML).
    #[serde(deserialize_with = "card_or_none")]
    pub model: Option<String>,
    /// The checkpoint; `None` = the model card's file in `models_dir`.
    pub checkpoint: Option<PathBuf>,
    /// Average with the horizontally flipped crop, as MMPose's PoseTrack18 configs do.
    pub flip_test: bool,
    /// `msra` (MMPose default) or `dark`.
    pub decode: HeatmapDecoding,
    /// Crops per forward pass, gathered across frames and videos.
    pub batch_size: usize,
    /// HRNet's weights and activations: `f32`, `f16` or `bf16`.
    pub dtype: Precision,
    /// A partial batch is run after waiting this long for more crops.
    pub batch_timeout_ms: u64,
}

impl Default for PoseConfig {
    fn default() -> Self {
        Self {
            model: Some("hrnet_w32_256x192".into()),
            checkpoint: None,
            flip_test: true,
            decode: HeatmapDecoding::Msra,
            batch_size: 8,
            dtype: Precision::F32,
            batch_timeout_ms: 20,
        }
    }
}

/// `render:` the overlay video drawn from the results.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    /// Write `<name>.mp4` with the results drawn over the frames.
    pub enabled: bool,
    /// `auto` (H.264 if FFmpeg has an encoder, else MPEG-4), `h264` or `mpeg4`.
    pub codec: crate::video::encode::VideoCodec,
    /// Constant quality for H.264 (`crf`), lower is better.
    pub crf: u32,
    /// Send the overlay live to this FFmpeg output URL instead of writing `<name>.mp4`
    /// (`udp://`, `tcp://`, `srt://`, `rtp://`, `rtmp(s)://`, `rtsp://`, `http(s)://`); `{name}`
    /// is replaced by the input's name, so several inputs can each have their own.
    pub stream: Option<String>,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            codec: crate::video::encode::VideoCodec::Auto,
            crf: 23,
            stream: None,
        }
    }
}

/// `pipeline:` channel sizes and the bound on frames in memory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity of each channel between stages.
    pub channel_capacity: usize,
    /// Decoded frames alive at once, all stages together; the source waits beyond this.
    pub max_frames_in_flight: usize,
    /// Show a progress bar per video when stderr is a terminal.
    pub progress: bool,
    /// Cores the run uses (0: every core): the models share one compute pool of this many
    /// threads; FFmpeg decoding gets `input.decode_threads`, by default an eighth of them (1 to
    /// 4) when a model runs.
    pub threads: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 4,
            max_frames_in_flight: 16,
            progress: true,
            threads: 0,
        }
    }
}

impl Config {
    /// Where the run report goes: `output.report`, else `<output.dir>/run.json`, or
    /// `run.shard-I-of-N.json` for a shard (shards of one job array share the folder).
    pub fn report_path(&self) -> PathBuf {
        self.output.report.clone().unwrap_or_else(|| {
            let name = match self.input.shard {
                Some(s) => format!("run.shard-{}-of-{}.json", s.index, s.count),
                None => "run.json".into(),
            };
            self.output.dir.join(name)
        })
    }

    /// The model cards this configuration runs: its pose model (unless `none`) and, unless
    /// every box comes from files (`detector.kind: boxes`), its detector.
    pub fn models_needed(&self) -> Vec<String> {
        let mut names = Vec::new();
        names.extend(self.pose.model.clone());
        if self.detector.kind != DetectorKind::Boxes {
            names.push(self.detector.model.clone());
        }
        names
    }

    /// Loads `file` (or the defaults when `file` is `None`) and applies `--set KEY=VALUE`
    /// overrides before checking types and values.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let display = file.unwrap_or(Path::new("<defaults>"));
        let mut doc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    file: path.to_path_buf(),
                    source,
                })?;
                yaml::parse(&text).map_err(|yaml::YamlError(message)| ConfigError::Syntax {
                    file: path.to_path_buf(),
                    message,
                })?
            }
            None => yaml::Value::Mapping(Default::default()),
        };
        if doc.is_null() {
            doc = yaml::Value::Mapping(Default::default());
        }
        // The file's own fault, before any --set is blamed for it.
        if !doc.is_mapping() {
            return Err(ConfigError::Syntax {
                file: display.to_path_buf(),
                message: "expected sections such as `input:` and `pose:` at the top level, found a list or a single value".into(),
            });
        }
        for arg in overrides {
            apply_override(&mut doc, arg)?;
        }
        let file = origin(display, overrides);
        let config: Config =
            yaml::from_value_with_path(doc).map_err(|(key, message)| ConfigError::Key {
                file: file.clone(),
                key,
                message,
            })?;
        config.validate(&file)?;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Key {
            file: file.to_path_buf(),
            key: key.into(),
            message,
        };
        if !(self.input.image_fps.is_finite() && self.input.image_fps > 0.0) {
            return Err(bad(
                "input.image_fps",
                format!(
                    "expected a positive frame rate, got {}",
                    self.input.image_fps
                ),
            ));
        }
        let seconds = |key: &str, value: f64, max: f64| {
            if value.is_finite() && value >= 0.0 && value <= max {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("expected seconds from 0 to {max}, got {value}"),
                ))
            }
        };
        seconds("input.timeout_s", self.input.timeout_s, 3600.0)?;
        if self.input.timeout_s == 0.0 {
            return Err(bad("input.timeout_s", "expected more than 0 s".into()));
        }
        let reconnect = &self.input.reconnect;
        seconds(
            "input.reconnect.initial_backoff_s",
            reconnect.initial_backoff_s,
            3600.0,
        )?;
        seconds(
            "input.reconnect.max_backoff_s",
            reconnect.max_backoff_s,
            3600.0,
        )?;
        if let Some(d) = self.input.duration {
            if !(d.is_finite() && d > 0.0) {
                return Err(bad(
                    "input.duration",
                    format!("expected a positive number of seconds, got {d}"),
                ));
            }
        }
        if let Some(key) = self.input.ffmpeg_options.keys().find(|k| k.is_empty()) {
            return Err(bad(
                "input.ffmpeg_options",
                format!("an option name is empty (`{key}`)"),
            ));
        }
        if !(0.0..=1.0).contains(&self.detector.score_threshold) {
            return Err(bad(
                "detector.score_threshold",
                format!(
                    "expected a number in [0, 1], got {}",
                    self.detector.score_threshold
                ),
            ));
        }
        if self.detector.batch_size == 0 {
            return Err(bad("detector.batch_size", "expected at least 1".into()));
        }
        // candle's CPU matrix product has no bf16: such a model would fail on its first frame
        for (key, dtype) in [
            ("detector.dtype", self.detector.dtype),
            ("pose.dtype", self.pose.dtype),
        ] {
            if dtype == Precision::Bf16 && self.device == DeviceSpec::Cpu {
                return Err(bad(
                    key,
                    "bf16 needs a CUDA device (`device: cuda:N`); on the CPU use f32 or f16".into(),
                ));
            }
        }
        // The model cards are the one list of models.
        for (key, task, value, none_allowed) in [
            (
                "detector.model",
                ModelTask::Detect,
                Some(&self.detector.model),
                false,
            ),
            (
                "pose.model",
                ModelTask::Pose,
                self.pose.model.as_ref(),
                true,
            ),
        ] {
            let names = crate::models::card_names(task);
            let Some(value) = value else { continue };
            if !names.contains(value) {
                return Err(bad(
                    key,
                    format!(
                        "unknown model `{value}`; expected {}one of {}",
                        if none_allowed { "`none` or " } else { "" },
                        names.join(", ")
                    ),
                ));
            }
        }
        if !(1..=MAX_DETECTOR_INTERVAL).contains(&self.detector.interval) {
            return Err(bad(
                "detector.interval",
                format!(
                    "expected 1 (every frame) to {MAX_DETECTOR_INTERVAL}, got {}",
                    self.detector.interval
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.detector.refresh_score) {
            return Err(bad(
                "detector.refresh_score",
                format!(
                    "expected a number in [0, 1], got {}",
                    self.detector.refresh_score
                ),
            ));
        }
        if self.detector.interval > 1 && self.pose.model.is_none() {
            return Err(bad(
                "detector.interval",
                "between detections people are carried by their poses, which needs a pose model; with `pose.model: none` use interval 1".into(),
            ));
        }
        if self.pose.batch_size == 0 {
            return Err(bad("pose.batch_size", "expected at least 1".into()));
        }
        self.tracker.validate().map_err(|m| bad("tracker", m.0))?;
        if self.tracker.kind == TrackerKind::Hungarian && self.pose.model.is_none() {
            return Err(bad(
                "tracker.kind",
                "`hungarian` links people by their poses and needs a pose model; with `pose.model: none` use `tracker.kind: given`".into(),
            ));
        }
        if self.render.crf > 51 {
            return Err(bad(
                "render.crf",
                format!("expected 0..=51, got {}", self.render.crf),
            ));
        }
        if let Some(url) = &self.render.stream {
            if crate::video::encode::stream_muxer(url).is_none() {
                return Err(bad(
                    "render.stream",
                    format!("`{url}` is not a stream URL vidpose can send to: expected udp://, tcp://, srt://, rtp://, rtmp(s)://, rtsp:// or http(s)://"),
                ));
            }
        }
        if self.pipeline.channel_capacity == 0 {
            return Err(bad(
                "pipeline.channel_capacity",
                "expected at least 1".into(),
            ));
        }
        if self.pipeline.max_frames_in_flight == 0 {
            return Err(bad(
                "pipeline.max_frames_in_flight",
                "expected at least 1".into(),
            ));
        }
        // Upper bounds: beyond these a setting only exhausts memory or never finishes.
        let concurrent = match self.input.concurrent {
            Concurrency::Inputs(n) => n as u64,
            Concurrency::Auto => 0,
        };
        let limits: [(&str, u64, u64, &str); 8] = [
            (
                "input.concurrent",
                concurrent,
                MAX_CONCURRENT_INPUTS,
                "inputs",
            ),
            (
                "input.decode_threads",
                self.input.decode_threads as u64,
                MAX_DECODE_THREADS,
                "threads",
            ),
            (
                "detector.batch_size",
                self.detector.batch_size as u64,
                MAX_DETECTOR_BATCH,
                "frames",
            ),
            (
                "detector.batch_timeout_ms",
                self.detector.batch_timeout_ms,
                MAX_BATCH_TIMEOUT_MS,
                "ms",
            ),
            (
                "pose.batch_size",
                self.pose.batch_size as u64,
                MAX_POSE_BATCH,
                "crops",
            ),
            (
                "pose.batch_timeout_ms",
                self.pose.batch_timeout_ms,
                MAX_BATCH_TIMEOUT_MS,
                "ms",
            ),
            (
                "pipeline.channel_capacity",
                self.pipeline.channel_capacity as u64,
                MAX_CHANNEL_CAPACITY,
                "messages",
            ),
            (
                "pipeline.max_frames_in_flight",
                self.pipeline.max_frames_in_flight as u64,
                MAX_FRAMES_IN_FLIGHT,
                "frames",
            ),
        ];
        for (key, value, max, unit) in limits {
            if value > max {
                return Err(bad(
                    key,
                    format!("expected at most {max} {unit}, got {value}"),
                ));
            }
        }
        if self.detector.kind != DetectorKind::Boxes
            && self.detector.batch_size > self.pipeline.max_frames_in_flight
        {
            return Err(bad(
                "detector.batch_size",
                format!(
                    "a batch of {} frames cannot fill while at most {} frames are in flight (pipeline.max_frames_in_flight); lower it or raise that",
                    self.detector.batch_size, self.pipeline.max_frames_in_flight
                ),
            ));
        }
        Ok(())
    }
}

/// Most FFmpeg decoding threads per video (0 means one per core).
pub const MAX_DECODE_THREADS: u64 = 64;
/// Most inputs in flight at once (`input.concurrent`): each holds a decoding thread.
pub const MAX_CONCURRENT_INPUTS: u64 = 256;
/// Longest detection interval, in frames.
pub const MAX_DETECTOR_INTERVAL: u32 = 10_000;
/// Most frames per detector forward pass.
pub const MAX_DETECTOR_BATCH: u64 = 64;
/// Most person crops per pose forward pass.
pub const MAX_POSE_BATCH: u64 = 1024;
/// Longest wait for a fuller batch: one minute.
pub const MAX_BATCH_TIMEOUT_MS: u64 = 60_000;
/// Most messages queued between two stages.
pub const MAX_CHANNEL_CAPACITY: u64 = 1024;
/// Most decoded frames alive at once (a 1080p frame is 6 MB).
pub const MAX_FRAMES_IN_FLIGHT: u64 = 1024;

/// Shard `index` of `count` (`input.shard: I/N`, `--shard I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, counted from 0; always below `count`.
    pub index: usize,
    /// Number of shards the videos are dealt into, by a hash of each video's name.
    pub count: usize,
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (index, count) = parse_shard(&text).map_err(serde::de::Error::custom)?;
        Ok(Shard { index, count })
    }
}

/// `pose.model`: a card name, or `none` (also YAML's null) for boxes only.
fn card_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    Ok(name.filter(|n| n != "none"))
}

/// `I/N` with `I < N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize), BadChoice> {
    let err = || BadChoice(format!("expected `I/N` with 0 <= I < N, got `{s}`"));
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| err())?,
        n.trim().parse().map_err(|_| err())?,
    );
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

/// Applies one `KEY=VALUE`: the value is read as YAML (so `false`, `3`, `[a, b]` keep their
/// types) and placed at the dotted key path, creating sections as needed.
fn apply_override(doc: &mut yaml::Value, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Override {
        arg: arg.into(),
        message: message.into(),
    };
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE, e.g. pose.flip_test=false"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(err("the key must be a dotted path such as detector.boxes"));
    }
    let value = yaml::parse(value).map_err(|m| err(&format!("value is not valid YAML: {m}")))?;
    yaml::set_path(doc, key, value).map_err(|m| err(&m.0))
}
