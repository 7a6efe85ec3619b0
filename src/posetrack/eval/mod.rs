//! A PoseTrack 2018 evaluator that reproduces the official tool, poseval (commit 4258a15, with
//! motmetrics), including its quirks: per-joint AP (PCKh@0.5) and per-joint CLEAR-MOT (MOTA, MOTP,
//! precision, recall). The rules are poseval's own (`poseval/evaluate.py`, `evaluateAP.py`,
//! `evaluateTracking.py`, `eval_helpers.py`); each module names the function it follows.
//!
//! ```no_run
//! # fn main() -> Result<(), vidpose::posetrack::eval::EvalError> {
//! let report = vidpose::posetrack::eval::evaluate_dirs(
//!     "data/posetrack18/annotations/val".as_ref(),
//!     "out/submission".as_ref(),
//! )?;
//! print!("{}", report.ap_table());
//! if let Some(table) = report.mot_table() {
//!     print!("{table}");
//! }
//! # Ok(()) }
//! ```
//!
//! Departures from poseval, all on input it would mishandle: a prediction without per-keypoint
//! `scores` is rejected (poseval scores its joints -9999 and prints a meaningless AP); files are
//! taken in sorted name order (poseval: file-system order, which matters only in one tracking corner
//! case); ignore regions with fewer than 3 points and sequences with a single labeled frame (poseval
//! crashes on both) give an error, the latter for the tracking metrics only.

mod ap;
mod load;
mod mot;
mod region;
mod table;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use load::{FrameNameError, InvalidFile, PersonError};
pub use mot::MotCounts;

use crate::posetrack::PoseTrackError;

/// poseval scores 15 joints (the 17 PoseTrack 2018 keypoints without the ears).
pub const NUM_JOINTS: usize = 15;

/// poseval's joint names, in the order of every per-joint array of this module (the total follows).
pub const JOINT_NAMES: [&str; NUM_JOINTS] = [
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "neck",
    "nose",
    "head_top",
];

/// Why the evaluation could not run: unreadable folders or files, or input poseval rejects.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A ground-truth or prediction file cannot be read or parsed as PoseTrack JSON.
    #[error(transparent)]
    File(#[from] PoseTrackError),
    /// A file parses but breaks a rule of the PoseTrack 2018 format poseval relies on.
    #[error("{path}: {problem}")]
    Invalid {
        /// The ground-truth or prediction file.
        path: PathBuf,
        /// The rule it breaks.
        problem: InvalidFile,
    },
    /// The ground-truth or prediction path is not a folder.
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    /// The ground-truth folder cannot be listed.
    #[error("{dir}: cannot list: {source}")]
    ListDir {
        /// The ground-truth folder.
        dir: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The ground-truth folder holds no `*.json` file.
    #[error("{0}: no ground-truth files (*.json)")]
    NoGroundTruth(PathBuf),
    /// A ground-truth file has no prediction file of the same name.
    #[error(
        "{pred}: missing; every ground-truth file ({gt}) needs a prediction file of the same name"
    )]
    MissingPrediction {
        /// The ground-truth file.
        gt: PathBuf,
        /// Where its prediction was looked for.
        pred: PathBuf,
    },
    /// The prediction lists a different number of frames than the ground truth (counting only
    /// the first sequence of each file, as poseval does).
    #[error("{pred}: {pred_frames} prediction frames but {gt_frames} ground-truth frames; \
             frames are paired by position, so `images` must list every ground-truth frame in order")]
    FrameCount {
        /// The prediction file.
        pred: PathBuf,
        /// Frames in the prediction file.
        pred_frames: usize,
        /// Frames in the ground-truth file.
        gt_frames: usize,
    },
}

/// Why the tracking metrics cannot be computed; the AP is scored all the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MotUnavailable {
    /// A sequence (the GT file named) has a single labeled frame, which poseval cannot score.
    #[error(
        "{0}: only one labeled frame; tracking metrics need at least two \
             (poseval skips the last labeled frame of every sequence)"
    )]
    SingleLabeledFrame(PathBuf),
}

/// Per-joint AP in percent; index [`NUM_JOINTS`] is the total (mean of the joints, NaN skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct ApMetrics {
    /// Average precision (VOC all-points) of PCKh@0.5 matches, ranked by keypoint score.
    pub ap: [f64; NUM_JOINTS + 1],
    /// Precision at the lowest score (all predictions kept).
    pub precision: [f64; NUM_JOINTS + 1],
    /// Recall at the lowest score.
    pub recall: [f64; NUM_JOINTS + 1],
    /// Annotated GT joints per joint type, after ignore regions.
    pub num_gt: [usize; NUM_JOINTS],
}

/// Per-joint tracking metrics in percent; index [`NUM_JOINTS`] is the total (mean, NaN skipped).
/// NaN where undefined (no GT joint of that type: MOTA, recall; nothing predicted: precision).
#[derive(Debug, Clone, PartialEq)]
pub struct MotMetrics {
    /// `100 (1 - (misses + switches + false positives) / objects)`; can be negative.
    pub mota: [f64; NUM_JOINTS + 1],
    /// `100 (1 - Σd / detections)` with Σd as poseval takes it from motmetrics (see [`MotCounts`]).
    pub motp: [f64; NUM_JOINTS + 1],
    /// `100 detections / (detections + false positives)`, detections being matches and switches.
    pub precision: [f64; NUM_JOINTS + 1],
    /// `100 detections / objects`.
    pub recall: [f64; NUM_JOINTS + 1],
    /// The event counts behind the rates, per joint (no total).
    pub counts: [MotCounts; NUM_JOINTS],
}

/// The result of one evaluation, as poseval reports it: AP and, when possible, tracking metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Sequences scored (GT files).
    pub num_sequences: usize,
    /// Labeled frames scored (frames with GT people).
    pub num_frames: usize,
    /// Per-joint AP, precision and recall.
    pub ap: ApMetrics,
    /// Tracking metrics, or why they cannot be computed (the reason names the file).
    pub mot: Result<MotMetrics, MotUnavailable>,
}

impl EvalReport {
    /// poseval's AP table (two lines).
    pub fn ap_table(&self) -> String {
        table::ap_table(&self.ap)
    }

    /// poseval's MOT table (three lines), `None` when tracking could not be scored.
    pub fn mot_table(&self) -> Option<String> {
        self.mot.as_ref().ok().map(table::mot_table)
    }

    /// Everything as JSON (NaN written as `null`).
    pub fn to_json(&self) -> Value {
        let mut v = table::to_json(self);
        v["num_sequences"] = self.num_sequences.into();
        v["num_frames"] = self.num_frames.into();
        v
    }
}

/// Scores the prediction folder against the GT folder: one prediction file per GT `*.json`, with
/// the same name. Fails on input poseval rejects, naming the file.
pub fn evaluate_dirs(gt_dir: &Path, pred_dir: &Path) -> Result<EvalReport, EvalError> {
    let sequences = load::load_dirs(gt_dir, pred_dir)?;
    Ok(evaluate_sequences(&sequences))
}

fn evaluate_sequences(sequences: &[load::Sequence]) -> EvalReport {
    EvalReport {
        num_sequences: sequences.len(),
        num_frames: sequences.iter().map(|s| s.frames.len()).sum(),
        ap: ap::evaluate(sequences),
        mot: mot::evaluate(sequences),
    }
}

/// numpy's `x[~isnan(x)].mean()`: NaN when every value is NaN.
fn mean_skipping_nan(values: &[f64]) -> f64 {
    let kept: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if kept.is_empty() {
        f64::NAN
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}
