//! The pose stage: person crops from several frames (and videos) batched into one forward
//! pass, flushed on a full batch, a short idle timeout, or the end of input; results go back
//! to their frames, which leave in the order they came.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::messages::{Frame, Msg};
use super::metrics::StageMetrics;
use super::stage::Stage;
use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::person::{Keypoint, NUM_KEYPOINTS};

/// A top-down pose model: keypoints for each (image, person box) pair, in order.
pub trait PoseModel: Send {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, String>;
}

enum Pending {
    /// Start/End markers keep their place between frames.
    Marker(Msg),
    /// A frame and how many of its persons have keypoints.
    Frame(Box<Frame>, usize),
}

impl Pending {
    fn is_done(&self) -> bool {
        match self {
            Pending::Marker(_) => true,
            Pending::Frame(f, done) => *done == f.persons.len(),
        }
    }
}

pub struct PoseStage {
    model: Box<dyn PoseModel>,
    batch_size: usize,
    timeout: Duration,
    pending: VecDeque<Pending>,
    /// Crops waiting for a forward pass.
    waiting: usize,
    /// Videos whose crops failed: their End becomes an error.
    failed: HashMap<usize, String>,
}

impl PoseStage {
    pub fn new(model: Box<dyn PoseModel>, batch_size: usize, timeout: Duration) -> Self {
        Self {
            model,
            batch_size: batch_size.max(1),
            timeout,
            pending: VecDeque::new(),
            waiting: 0,
            failed: HashMap::new(),
        }
    }

    /// Runs full batches, and with `flush` the last partial one too.
    fn run_batches(&mut self, flush: bool, metrics: &mut StageMetrics) {
        while self.waiting >= self.batch_size || (flush && self.waiting > 0) {
            // (position in `pending`, person index) of the next crops, oldest first.
            let mut slots = Vec::with_capacity(self.batch_size);
            for (pos, p) in self.pending.iter().enumerate() {
                if let Pending::Frame(f, done) = p {
                    for person in *done..f.persons.len() {
                        if slots.len() == self.batch_size {
                            break;
                        }
                        slots.push((pos, person));
                    }
                }
                if slots.len() == self.batch_size {
                    break;
                }
            }
            let result = {
                let items: Vec<(&RgbImage, BBox)> = slots
                    .iter()
                    .map(|&(pos, person)| match &self.pending[pos] {
                        Pending::Frame(f, _) => (&f.decoded.image, f.persons[person].bbox),
                        Pending::Marker(_) => unreachable!("slots point at frames"),
                    })
                    .collect();
                self.model.estimate(&items)
            };
            metrics.batches += 1;
            let result = result.and_then(|k| {
                if k.len() == slots.len() {
                    Ok(k)
                } else {
                    Err(format!(
                        "the pose model returned {} results for {} crops",
                        k.len(),
                        slots.len()
                    ))
                }
            });
            match result {
                Ok(keypoints) => {
                    for (&(pos, person), k) in slots.iter().zip(keypoints) {
                        if let Pending::Frame(f, done) = &mut self.pending[pos] {
                            f.persons[person].keypoints = Some(k);
                            *done += 1;
                        }
                    }
                }
                Err(e) => {
                    for &(pos, _) in &slots {
                        if let Pending::Frame(f, done) = &mut self.pending[pos] {
                            self.failed
                                .entry(f.video.id)
                                .or_insert_with(|| format!("pose estimation failed: {e}"));
                            *done += 1;
                        }
                    }
                }
            }
            self.waiting -= slots.len();
        }
    }

    /// Moves every finished message at the front of the queue to `out`.
    fn emit_ready(&mut self, out: &mut Vec<Msg>) {
        while self.pending.front().is_some_and(Pending::is_done) {
            match self.pending.pop_front().expect("front exists") {
                Pending::Marker(Msg::End(video, Ok(()))) if self.failed.contains_key(&video.id) => {
                    let reason = self.failed.remove(&video.id).unwrap_or_default();
                    out.push(Msg::End(video, Err(reason)));
                }
                Pending::Marker(msg) => out.push(msg),
                Pending::Frame(f, _) => out.push(Msg::Frame(f)),
            }
        }
    }
}

impl Stage for PoseStage {
    fn name(&self) -> &'static str {
        "pose"
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Frame(f) => {
                self.waiting += f.persons.len();
                self.pending.push_back(Pending::Frame(f, 0));
            }
            marker => self.pending.push_back(Pending::Marker(marker)),
        }
        self.run_batches(false, metrics);
        self.emit_ready(out);
    }

    fn idle_timeout(&self) -> Option<Duration> {
        (self.waiting > 0).then_some(self.timeout)
    }

    fn on_idle(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        self.run_batches(true, metrics);
        self.emit_ready(out);
    }

    fn finish(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        self.on_idle(out, metrics);
    }
}

impl PoseModel for crate::pose::PoseEstimator {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, String> {
        crate::pose::PoseEstimator::estimate(self, items).map_err(|e| e.to_string())
    }
}

/// The candle device named by `device` (`cpu`, `cuda:N`).
pub fn candle_device(spec: crate::config::DeviceSpec) -> Result<candle_core::Device, String> {
    match spec {
        crate::config::DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
        crate::config::DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| {
            format!(
                "device `cuda:{n}` cannot be used: {e} (CUDA needs a build with `--features cuda`)"
            )
        }),
    }
}

/// Loads the pose model the configuration names; `None` for `pose.model: none`.
pub fn load_pose_model(
    config: &crate::config::Config,
) -> Result<Option<crate::pose::PoseEstimator>, String> {
    use crate::pose::{Decoding, PoseEstimator, PoseOptions};
    let pose = &config.pose;
    if pose.model == "none" {
        return Ok(None);
    }
    let cards = crate::models::builtin_cards();
    let card = crate::models::find(&cards, &pose.model).map_err(|e| e.to_string())?;
    let model_config = card
        .pose_config()
        .ok_or_else(|| format!("model card `{}` is not a pose model", card.name))?;
    let checkpoint = match &pose.checkpoint {
        Some(path) => path.clone(),
        None => card.path_in(&pose.models_dir),
    };
    if !checkpoint.exists() {
        return Err(format!(
            "pose checkpoint {} not found: download it with `vidpose models fetch {}` (into {}), or set pose.checkpoint",
            checkpoint.display(),
            card.name,
            pose.models_dir.display()
        ));
    }
    let decoding = match pose.decode.as_str() {
        // MMPose's kernel rule for the sigma of each input size (2 at 256x192, 3 at 384x288).
        "dark" if model_config.input_size.1 >= 384 => Decoding::Dark { blur_kernel: 17 },
        "dark" => Decoding::Dark { blur_kernel: 11 },
        _ => Decoding::Msra,
    };
    let options = PoseOptions {
        flip_test: pose.flip_test,
        decoding,
        batch_size: pose.batch_size,
    };
    let device = candle_device(
        crate::config::parse_device(&config.device).map_err(|e| format!("device: {e}"))?,
    )?;
    let estimator = PoseEstimator::load(&checkpoint, model_config, options, &device)
        .map_err(|e| format!("pose model `{}`: {e}", card.name))?;
    Ok(Some(estimator))
}
