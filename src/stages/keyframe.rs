//! Detection every k frames (`detector.interval`), with each tracked person's box carried from
//! its last pose in between, as MMDeploy's PoseTracker (`det_interval`) and rtmlib
//! (`det_frequency`) do.
//!
//! The box of frame t comes from the poses of frame t-1, which only exist once frame t-1 has
//! been through the pose model and the tracker: the track stage reports each frame's people
//! back ([`ReportPeople`]) and this stage waits for that report before it handles the next
//! frame. A video is then processed one frame at a time; the detector, which costs far more
//! than the pose model, runs on one frame in k. With several videos in flight each has its
//! own carried people, and a report that comes for another video than the one waited for is
//! kept for that video's next frame.

use std::collections::HashMap;

use crossbeam::channel::{Receiver, Sender};

use crate::detect::{cascade, CascadeRcnn};
use crate::geometry::{fix_aspect_ratio, BBox};
use crate::person::Person;
use crate::pipeline::messages::{Frame, Msg, VideoFailure};
use crate::pipeline::metrics::StageMetrics;
use crate::pipeline::stage::Stage;
use crate::track::motion::{MotionModel, Velocity};
use crate::track::nms::KEYPOINT_SCORE_THRESHOLD;

/// MMPose's box padding around a person (`GetBBoxCenterScale`), here around its keypoints.
const CARRY_PADDING: f32 = 1.25;
/// A carried person and a detection are the same person when the box around the carried
/// keypoints overlaps the detection this much (keypoints lie inside a detection box, so the
/// tight keypoint box of one person covers most of its detection).
const SAME_PERSON_IOU: f32 = 0.4;
/// Fewest confident keypoints a carried box is made from.
const MIN_CARRY_KEYPOINTS: usize = 2;

/// How the stage chooses detection frames and carries people between them.
#[derive(Debug, Clone, Copy)]
pub struct KeyframeSettings {
    /// Detect on frames 0, k, 2k, ... (k >= 1).
    pub interval: u32,
    /// A carried pose whose mean keypoint score is below this is dropped, and the next frame
    /// is detected.
    pub refresh_score: f32,
    /// A carried person that no detection has confirmed for more frames than this is dropped.
    pub max_carry_frames: u32,
    /// Detections scoring below this are dropped.
    pub score_threshold: f32,
    /// Whether carried boxes move on by the person's velocity.
    pub motion: MotionModel,
    /// Width / height of the pose model's input, the aspect carried boxes are given.
    pub aspect: f32,
}

/// The people of one finished frame, as the tracker left them.
#[derive(Debug)]
pub struct FramePeople {
    /// The video's position in the run.
    pub video: usize,
    /// The frame's position in the video.
    pub index: u64,
    /// Its tracked people.
    pub persons: Vec<Person>,
}

/// A person followed from frame to frame without the detector.
#[derive(Debug, Clone)]
struct Carried {
    last: Person,
    /// Smoothed motion of the box around its keypoints.
    velocity: Velocity,
    /// Frames since a detection last confirmed it.
    unconfirmed: u32,
}

/// One video's carrying state.
#[derive(Debug, Default)]
struct VideoState {
    last_detection: Option<u64>,
    /// Detect the next frame whatever the interval: a carried pose degraded, or the report of
    /// the previous frame never came.
    refresh: bool,
    /// By track id.
    carried: HashMap<u64, Carried>,
    /// Detection failed on a frame: the video's End becomes that failure.
    failure: Option<VideoFailure>,
}

/// Runs the detector on key frames and carries people between them, for each video in
/// flight on its own.
pub struct KeyframeStage {
    detector: Option<CascadeRcnn>,
    settings: KeyframeSettings,
    reports: Receiver<FramePeople>,
    /// The state of the video whose frame is being handled (`current`) ...
    state: VideoState,
    current: Option<usize>,
    /// ... and of the other videos in flight, by id.
    parked: HashMap<usize, VideoState>,
    /// Reports that came for another video than the one waited for, the latest per video.
    early_reports: HashMap<usize, FramePeople>,
}

impl KeyframeStage {
    /// A stage running `detector` (none: boxes come from files only) on key frames, fed the
    /// tracked people of each frame through `reports`.
    pub fn new(
        detector: Option<CascadeRcnn>,
        settings: KeyframeSettings,
        reports: Receiver<FramePeople>,
    ) -> Self {
        Self {
            detector,
            settings,
            reports,
            state: VideoState::default(),
            current: None,
            parked: HashMap::new(),
            early_reports: HashMap::new(),
        }
    }

    /// Makes `video`'s state the current one (a new state if it has none).
    fn switch_to(&mut self, video: usize) {
        if self.current == Some(video) {
            return;
        }
        let state = self.parked.remove(&video).unwrap_or_default();
        let previous = std::mem::replace(&mut self.state, state);
        if let Some(id) = self.current.replace(video) {
            self.parked.insert(id, previous);
        }
    }

    /// Whether `video` has started and not ended here.
    fn in_flight(&self, video: usize) -> bool {
        self.current == Some(video) || self.parked.contains_key(&video)
    }

    /// Waits for the tracked people of frame `index` of `video` (the current one).
    fn wait_for_report(&mut self, video: usize, index: u64) {
        if let Some(report) = self.early_reports.remove(&video) {
            if report.index == index {
                self.take_report(report.persons);
                return;
            }
        }
        loop {
            match self.reports.recv() {
                Ok(report) if report.video == video && report.index == index => {
                    self.take_report(report.persons);
                    return;
                }
                // Another video in flight: its next frame will want it.
                Ok(report) if report.video != video && self.in_flight(report.video) => {
                    self.early_reports.insert(report.video, report);
                }
                // An ended video's last frames, or an earlier frame: stale.
                Ok(_) => continue,
                Err(_) => {
                    // The track stage is gone (the run is ending): detect instead of carrying.
                    self.state.refresh = true;
                    return;
                }
            }
        }
    }

    /// The people of the last frame become the carried ones.
    fn take_report(&mut self, persons: Vec<Person>) {
        let mut carried = HashMap::new();
        for person in persons {
            let (Some(id), Some(kps)) = (person.track_id, person.keypoints.as_ref()) else {
                continue;
            };
            let mean = kps.iter().map(|k| k.score).sum::<f32>() / kps.len() as f32;
            if mean < self.settings.refresh_score {
                self.state.refresh = true;
                continue;
            }
            let Some(now) = keypoint_box(&person) else {
                continue;
            };
            let mut entry = match self.state.carried.remove(&id) {
                Some(previous) => previous,
                None => Carried {
                    last: person.clone(),
                    velocity: Velocity::default(),
                    unconfirmed: 0,
                },
            };
            if let Some(before) = keypoint_box(&entry.last) {
                entry.velocity.observe(&before, &now, 1);
            }
            entry.last = person;
            carried.insert(id, entry);
        }
        self.state.carried = carried;
    }

    /// Where a carried person's pose is expected in the next frame.
    fn expected(&self, c: &Carried) -> Person {
        match self.settings.motion {
            MotionModel::None => c.last.clone(),
            MotionModel::ConstantVelocity => c.velocity.predict(&c.last, 1),
        }
    }

    /// The box a carried person is looked for in the next frame, clipped to the frame; `None`
    /// when it left the frame.
    fn carried_box(&self, c: &Carried, width: u32, height: u32) -> Option<BBox> {
        let tight = keypoint_box(&self.expected(c))?;
        let (cx, cy) = tight.center();
        let [w, h] = fix_aspect_ratio(
            [
                tight.width() * CARRY_PADDING,
                tight.height() * CARRY_PADDING,
            ],
            self.settings.aspect,
        );
        let (max_x, max_y) = (
            width.saturating_sub(1) as f32,
            height.saturating_sub(1) as f32,
        );
        let b = BBox::new(
            (cx - w / 2.0).clamp(0.0, max_x),
            (cy - h / 2.0).clamp(0.0, max_y),
            (cx + w / 2.0).clamp(0.0, max_x),
            (cy + h / 2.0).clamp(0.0, max_y),
        );
        (b.width() > 1.0 && b.height() > 1.0).then_some(b)
    }

    /// The carried people as boxes for the pose model, with their track id as a hint.
    fn carried_people(&self, width: u32, height: u32) -> Vec<(u64, Person)> {
        let mut people: Vec<(u64, Person)> = self
            .state
            .carried
            .iter()
            .filter_map(|(&id, c)| {
                let bbox = self.carried_box(c, width, height)?;
                let mut p = Person::from_box(bbox, c.last.bbox_score);
                p.track_id = Some(id);
                Some((id, p))
            })
            .collect();
        // Hash-map order would make runs differ.
        people.sort_by_key(|(id, _)| *id);
        people
    }

    /// Detections plus the carried people no detection covers (the detector misses people the
    /// tracker still follows), each person once.
    fn merge(&mut self, detections: Vec<Person>, width: u32, height: u32) -> Vec<Person> {
        let carried = self.carried_people(width, height);
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ci, (id, _)) in carried.iter().enumerate() {
            let Some(tight) = keypoint_box(&self.expected(&self.state.carried[id])) else {
                continue;
            };
            for (di, d) in detections.iter().enumerate() {
                let iou = tight.iou(&d.bbox);
                if iou >= SAME_PERSON_IOU {
                    pairs.push((iou, ci, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut carried_taken, mut detection_taken) =
            (vec![false; carried.len()], vec![false; detections.len()]);
        for (_, ci, di) in pairs {
            if !carried_taken[ci] && !detection_taken[di] {
                carried_taken[ci] = true;
                detection_taken[di] = true;
                if let Some(c) = self.state.carried.get_mut(&carried[ci].0) {
                    c.unconfirmed = 0;
                }
            }
        }
        let mut people = detections;
        for (ci, (id, person)) in carried.into_iter().enumerate() {
            let keep = !carried_taken[ci]
                && self
                    .state
                    .carried
                    .get(&id)
                    .is_some_and(|c| c.unconfirmed < self.settings.max_carry_frames);
            if keep {
                people.push(person);
            }
        }
        people
    }

    /// Whether frame `index` is detected.
    fn is_key_frame(&self, index: u64) -> bool {
        let due = self
            .state
            .last_detection
            .is_none_or(|last| index >= last + u64::from(self.settings.interval));
        due || self.state.refresh
    }

    fn handle_frame(&mut self, frame: &mut Frame, metrics: &mut StageMetrics) {
        if frame.index > 0 {
            self.wait_for_report(frame.video.id, frame.index - 1);
        }
        let (width, height) = (frame.decoded.image.width, frame.decoded.image.height);
        if !self.is_key_frame(frame.index) {
            for c in self.state.carried.values_mut() {
                c.unconfirmed += 1;
            }
            frame.persons = self
                .carried_people(width, height)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            return;
        }
        metrics.batches += 1;
        metrics.work_items += 1;
        self.state.last_detection = Some(frame.index);
        self.state.refresh = false;
        for c in self.state.carried.values_mut() {
            c.unconfirmed += 1;
        }
        // Given boxes (set by the boxes stage) stand for the detector on videos they cover.
        let detections = match (&frame.video.boxes, &self.detector) {
            (None, Some(detector)) if self.state.failure.is_none() => {
                let img = &frame.decoded.image;
                frame.on_device = detector.upload(img);
                match detector.detect_uploaded(img, frame.on_device.as_ref()) {
                    Ok(d) => cascade::persons(d, self.settings.score_threshold),
                    Err(e) => {
                        self.state.failure = Some(VideoFailure::Detect {
                            frame: frame.decoded.number,
                            source: std::sync::Arc::new(e),
                        });
                        Vec::new()
                    }
                }
            }
            _ => std::mem::take(&mut frame.persons),
        };
        frame.persons = self.merge(detections, width, height);
    }
}

impl Stage for KeyframeStage {
    fn name(&self) -> &'static str {
        "detect"
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                self.switch_to(v.id);
                self.state = VideoState::default();
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                self.switch_to(frame.video.id);
                self.handle_frame(&mut frame, metrics);
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, outcome) => {
                self.switch_to(v.id);
                let ended = std::mem::take(&mut self.state);
                self.current = None;
                self.early_reports.remove(&v.id);
                let outcome = match (outcome, ended.failure) {
                    (Ok(()), Some(e)) => Err(e),
                    (outcome, _) => outcome,
                };
                out.push(Msg::End(v, outcome));
            }
        }
    }
}

/// The box around a person's confident keypoints; `None` with fewer than two.
fn keypoint_box(person: &Person) -> Option<BBox> {
    let kps = person.keypoints.as_ref()?;
    let confident: Vec<_> = kps
        .iter()
        .filter(|k| k.score > KEYPOINT_SCORE_THRESHOLD && k.x.is_finite() && k.y.is_finite())
        .collect();
    if confident.len() < MIN_CARRY_KEYPOINTS {
        return None;
    }
    let fold = |f: fn(f32, f32) -> f32, init: f32, get: fn(&&crate::person::Keypoint) -> f32| {
        confident.iter().map(get).fold(init, f)
    };
    Some(BBox::new(
        fold(f32::min, f32::INFINITY, |k| k.x),
        fold(f32::min, f32::INFINITY, |k| k.y),
        fold(f32::max, f32::NEG_INFINITY, |k| k.x),
        fold(f32::max, f32::NEG_INFINITY, |k| k.y),
    ))
}

/// Reports the people of every frame a stage (the tracker) lets through to the key-frame
/// stage, which waits for them before carrying people into the next frame.
pub struct ReportPeople {
    inner: Box<dyn Stage>,
    reports: Sender<FramePeople>,
}

impl ReportPeople {
    /// `inner` with its output frames' people sent to `reports`.
    pub fn new(inner: Box<dyn Stage>, reports: Sender<FramePeople>) -> Self {
        Self { inner, reports }
    }

    fn report(&self, out: &[Msg], from: usize) {
        for msg in &out[from..] {
            if let Msg::Frame(f) = msg {
                // The key-frame stage may be gone at the end of a run: nothing waits then.
                let _ = self.reports.send(FramePeople {
                    video: f.video.id,
                    index: f.index,
                    persons: f.persons.clone(),
                });
            }
        }
    }
}

impl Stage for ReportPeople {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        let from = out.len();
        self.inner.process(msg, out, metrics);
        self.report(out, from);
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.inner.idle_timeout()
    }

    fn on_idle(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        let from = out.len();
        self.inner.on_idle(out, metrics);
        self.report(out, from);
    }

    fn finish(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        let from = out.len();
        self.inner.finish(out, metrics);
        self.report(out, from);
    }
}
