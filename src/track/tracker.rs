//! The tracker: optimal assignment of each frame's poses to the live tracks.

use serde::Deserialize;

use super::motion::{MotionModel, Velocity};
use super::nms::{instance_score, oks_nms, KEYPOINT_SCORE_THRESHOLD};
use super::similarity::{person_iou, person_oks};
use crate::person::Person;

/// PoseTrack requires track ids below this.
pub const MAX_TRACK_ID: u64 = 10_000;

/// Costs are similarities in [0, 1]; the assignment crate wants integers.
const COST_SCALE: f32 = 1e6;

/// Why a video's people could not be tracked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackError {
    /// The video would need a track id of [`MAX_TRACK_ID`] or more.
    #[error(
        "more than {MAX_TRACK_ID} tracks in one video: PoseTrack track ids must stay below \
         {MAX_TRACK_ID} (raise tracker.min_score / min_keypoints or max_age to start fewer tracks)"
    )]
    TooManyTracks,
}

/// Tracker settings (`tracker:` in `pipeline.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// `hungarian`: link people across frames by optimal assignment on pose and box similarity
    /// (needs a pose model). `given`: keep the track ids that come with the boxes (ground-truth
    /// annotations) and number the others within their frame. Default `hungarian`.
    pub kind: TrackerKind,
    /// Weight of pose similarity (OKS with the PoseTrack sigmas) in the match score. Default 0.5.
    pub oks_weight: f32,
    /// Weight of box IoU in the match score. Default 0.5. The match cost of a (track, pose) pair is
    /// `1 - (oks_weight·OKS + iou_weight·IoU) / (oks_weight + iou_weight)`, in [0, 1].
    pub iou_weight: f32,
    /// A pair whose cost is above this is not a match, even when the assignment chose it.
    /// Default 0.7 (a combined similarity of at least 0.3, MMPose's tracking threshold).
    pub max_cost: f32,
    /// A track unmatched for more than this many consecutive frames ends; a person reappearing
    /// after a gap of up to `max_age` frames keeps the id. Default 5.
    pub max_age: u32,
    /// Minimum instance score (box score × mean keypoint score above 0.2) for an unmatched pose to
    /// start a track; weaker unmatched poses are removed from the frame's output. Default 0.0.
    pub min_score: f32,
    /// Minimum number of keypoints scoring above 0.2 for an unmatched pose to start a track
    /// (MMPose's tracking uses 3). Default 3.
    pub min_keypoints: usize,
    /// Output keypoints scoring below this are zeroed (written `0,0,0`, which PoseTrack reads as
    /// "no joint"). 0 keeps every joint, best for AP; raising it trades AP for MOTA. Default 0.0.
    pub keypoint_threshold: f32,
    /// OKS-NMS before tracking: a pose whose OKS with a higher-scoring pose of the same frame is
    /// above this is dropped (MMPose: 0.9). 1.0 or more disables it. Default 0.9.
    pub nms_oks_threshold: f32,
    /// Where a track is expected before matching: `none` (where it was last seen) or
    /// `constant_velocity` (moved on by its smoothed velocity). Default `none`.
    pub motion: MotionModel,
}

/// Which tracker links people across frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerKind {
    /// Optimal assignment on pose (OKS) and box (IoU) similarity; needs a pose model.
    Hungarian,
    /// The track ids the boxes file gives (ground-truth annotations); the others are numbered
    /// within their frame.
    Given,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            kind: TrackerKind::Hungarian,
            oks_weight: 0.5,
            iou_weight: 0.5,
            max_cost: 0.7,
            max_age: 5,
            min_score: 0.0,
            min_keypoints: 3,
            keypoint_threshold: 0.0,
            nms_oks_threshold: 0.9,
            motion: MotionModel::None,
        }
    }
}

impl TrackerConfig {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), crate::yaml::BadChoice> {
        use crate::yaml::BadChoice;
        let finite_non_negative = [
            ("oks_weight", self.oks_weight),
            ("iou_weight", self.iou_weight),
            ("max_cost", self.max_cost),
            ("min_score", self.min_score),
            ("keypoint_threshold", self.keypoint_threshold),
            ("nms_oks_threshold", self.nms_oks_threshold),
        ];
        for (key, v) in finite_non_negative {
            if !v.is_finite() || v < 0.0 {
                return Err(BadChoice(format!(
                    "tracker.{key} must be a non-negative number, got {v}"
                )));
            }
        }
        if self.oks_weight + self.iou_weight <= 0.0 {
            return Err(BadChoice(
                "tracker.oks_weight and tracker.iou_weight cannot both be 0".into(),
            ));
        }
        Ok(())
    }
}

/// A live track: the last pose matched to it.
#[derive(Debug, Clone)]
struct Track {
    id: u64,
    last: Person,
    /// Consecutive frames without a match.
    missed: u32,
    velocity: Velocity,
}

impl Track {
    /// The pose the track is matched against in the next frame.
    fn expected(&self, motion: MotionModel) -> Person {
        match motion {
            MotionModel::None => self.last.clone(),
            MotionModel::ConstantVelocity => self.velocity.predict(&self.last, self.missed + 1),
        }
    }
}

/// Links the poses of one video's frames, fed in order. Use one tracker per video.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// A tracker with no tracks yet; ids start at 0.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 0,
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Number of tracks alive (seen within the last `max_age` frames).
    pub fn live_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Processes the next frame: removes duplicate poses (OKS-NMS), gives each remaining person a
    /// `track_id`, and removes unmatched people too weak to start a track; then zeroes keypoints
    /// below `keypoint_threshold`. Ids start at 0, are never reused within the tracker's life and
    /// stay below [`MAX_TRACK_ID`]; running out of ids is an error (the frame is then left with the
    /// people that already had an id assigned in it).
    pub fn update(&mut self, persons: &mut Vec<Person>) -> Result<(), TrackError> {
        if self.cfg.nms_oks_threshold < 1.0 {
            oks_nms(persons, self.cfg.nms_oks_threshold);
        }
        for p in persons.iter_mut() {
            p.track_id = None;
        }
        let assignment = self.assign(persons);
        let mut matched_track = vec![false; self.tracks.len()];
        for (t, p) in assignment {
            matched_track[t] = true;
            let track = &mut self.tracks[t];
            persons[p].track_id = Some(track.id);
            track
                .velocity
                .observe(&track.last.bbox, &persons[p].bbox, track.missed + 1);
            track.last = persons[p].clone();
            track.missed = 0;
        }
        // Age the unmatched tracks; end those unseen for more than max_age frames.
        let max_age = self.cfg.max_age;
        let mut t = 0;
        self.tracks.retain_mut(|track| {
            let matched = matched_track[t];
            t += 1;
            if !matched {
                track.missed += 1;
            }
            track.missed <= max_age
        });
        // Births, in input order.
        let mut out_of_ids = false;
        for p in persons.iter_mut().filter(|p| p.track_id.is_none()) {
            if !self.can_start(p) {
                continue;
            }
            if self.next_id >= MAX_TRACK_ID {
                out_of_ids = true;
                break;
            }
            p.track_id = Some(self.next_id);
            self.tracks.push(Track {
                id: self.next_id,
                last: p.clone(),
                missed: 0,
                velocity: Velocity::default(),
            });
            self.next_id += 1;
        }
        persons.retain(|p| p.track_id.is_some());
        if self.cfg.keypoint_threshold > 0.0 {
            apply_keypoint_threshold(persons, self.cfg.keypoint_threshold);
        }
        if out_of_ids {
            Err(TrackError::TooManyTracks)
        } else {
            Ok(())
        }
    }

    /// Match cost of a track and a pose, in [0, 1].
    fn cost(&self, track: &Person, pose: &Person) -> f32 {
        let (wo, wi) = (self.cfg.oks_weight, self.cfg.iou_weight);
        let sim = (wo * person_oks(track, pose) + wi * person_iou(track, pose)) / (wo + wi);
        // NaN (degenerate input) counts as no similarity.
        if sim.is_nan() {
            1.0
        } else {
            (1.0 - sim).clamp(0.0, 1.0)
        }
    }

    /// Optimal (track, person) pairs whose cost passes the gate.
    fn assign(&self, persons: &[Person]) -> Vec<(usize, usize)> {
        let (rows, cols) = (self.tracks.len(), persons.len());
        if rows == 0 || cols == 0 {
            return Vec::new();
        }
        let expected: Vec<Person> = self
            .tracks
            .iter()
            .map(|t| t.expected(self.cfg.motion))
            .collect();
        let costs: Vec<f32> = expected
            .iter()
            .flat_map(|t| persons.iter().map(move |p| (t, p)))
            .map(|(t, p)| self.cost(t, p))
            .collect();
        let scaled: Vec<i64> = costs
            .iter()
            .map(|c| (c * COST_SCALE).round() as i64)
            .collect();
        hungarian::minimize(&scaled, rows, cols)
            .into_iter()
            .enumerate()
            .filter_map(|(t, p)| p.map(|p| (t, p)))
            // Gating after the assignment: a chosen pair that is too dissimilar is not a match.
            .filter(|&(t, p)| costs[t * cols + p] <= self.cfg.max_cost)
            .collect()
    }

    fn can_start(&self, p: &Person) -> bool {
        let visible = p.keypoints.as_ref().map_or(0, |k| {
            k.iter()
                .filter(|k| k.score > KEYPOINT_SCORE_THRESHOLD)
                .count()
        });
        visible >= self.cfg.min_keypoints && instance_score(p) >= self.cfg.min_score
    }
}

/// Zeroes (x, y and score) every keypoint scoring below `threshold`: PoseTrack files then carry
/// `0,0,0`, which the evaluator treats as a joint not predicted.
pub fn apply_keypoint_threshold(persons: &mut [Person], threshold: f32) {
    for kps in persons.iter_mut().filter_map(|p| p.keypoints.as_mut()) {
        for k in kps.iter_mut().filter(|k| k.score < threshold) {
            *k = Default::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;
    use crate::person::{Keypoint, NUM_KEYPOINTS};

    /// A standing person of `height` px whose head top is at (x, y).
    fn person(x: f32, y: f32, height: f32) -> Person {
        const T: [(f32, f32); NUM_KEYPOINTS] = [
            (0.0, 0.08),
            (0.0, 0.15),
            (0.0, 0.0),
            (0.03, 0.06),
            (-0.03, 0.06),
            (0.12, 0.2),
            (-0.12, 0.2),
            (0.16, 0.35),
            (-0.16, 0.35),
            (0.18, 0.48),
            (-0.18, 0.48),
            (0.08, 0.52),
            (-0.08, 0.52),
            (0.09, 0.75),
            (-0.09, 0.75),
            (0.1, 0.97),
            (-0.1, 0.97),
        ];
        let kps = T.map(|(dx, dy)| Keypoint {
            x: x + dx * height,
            y: y + dy * height,
            score: 0.9,
        });
        Person {
            bbox: BBox::new(
                x - 0.25 * height,
                y - 0.05 * height,
                x + 0.25 * height,
                y + height,
            ),
            bbox_score: 0.95,
            keypoints: Some(kps),
            track_id: None,
        }
    }

    fn ids(persons: &[Person]) -> Vec<u64> {
        persons.iter().map(|p| p.track_id.unwrap()).collect()
    }

    /// Track id of the person nearest to x.
    fn id_near(persons: &[Person], x: f32) -> u64 {
        persons
            .iter()
            .min_by(|a, b| {
                let da = (a.bbox.center().0 - x).abs();
                let db = (b.bbox.center().0 - x).abs();
                da.total_cmp(&db)
            })
            .and_then(|p| p.track_id)
            .unwrap()
    }

    #[test]
    fn ids_are_stable_for_people_standing_still() {
        let mut tr = Tracker::new(TrackerConfig::default());
        for _ in 0..5 {
            let mut f = vec![person(200.0, 100.0, 300.0), person(800.0, 120.0, 280.0)];
            tr.update(&mut f).unwrap();
            assert_eq!(ids(&f), vec![0, 1]);
        }
    }

    #[test]
    fn crossing_people_keep_their_ids() {
        let mut tr = Tracker::new(TrackerConfig::default());
        // A walks right (taller, higher in the image), B walks left; they cross at frame 10.
        let (mut a_id, mut b_id) = (None, None);
        for f in 0..21 {
            let t = f as f32;
            let ax = 300.0 + 30.0 * t;
            let bx = 900.0 - 30.0 * t;
            let mut frame = vec![person(bx, 160.0, 260.0), person(ax, 100.0, 340.0)];
            tr.update(&mut frame).unwrap();
            assert_eq!(frame.len(), 2, "frame {f}");
            // frame[1] is A, frame[0] is B (input order is kept).
            let (a, b) = (frame[1].track_id, frame[0].track_id);
            if f == 0 {
                (a_id, b_id) = (a, b);
            }
            assert_eq!((a, b), (a_id, b_id), "frame {f}");
        }
    }

    #[test]
    fn short_occlusion_keeps_the_id_and_long_one_does_not() {
        let cfg = TrackerConfig {
            max_age: 3,
            ..Default::default()
        };
        let mut tr = Tracker::new(cfg);
        let walk = |f: u32| person(200.0 + 10.0 * f as f32, 100.0, 300.0);
        let other = |_: u32| person(1200.0, 100.0, 300.0);
        let mut f = 0;
        let mut frame = vec![walk(f), other(f)];
        tr.update(&mut frame).unwrap();
        assert_eq!(ids(&frame), vec![0, 1]);
        // Hidden for 3 frames (= max_age): same id when back.
        for _ in 0..3 {
            f += 1;
            let mut frame = vec![other(f)];
            tr.update(&mut frame).unwrap();
            assert_eq!(ids(&frame), vec![1]);
        }
        f += 1;
        let mut frame = vec![walk(f), other(f)];
        tr.update(&mut frame).unwrap();
        assert_eq!(ids(&frame), vec![0, 1]);
        // Hidden for 4 frames (> max_age): a new id, never a reused one.
        for _ in 0..4 {
            f += 1;
            let mut frame = vec![other(f)];
            tr.update(&mut frame).unwrap();
        }
        f += 1;
        let mut frame = vec![walk(f), other(f)];
        tr.update(&mut frame).unwrap();
        assert_eq!(ids(&frame), vec![2, 1]);
    }

    #[test]
    fn people_entering_and_leaving() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let a = person(200.0, 100.0, 300.0);
        let b = person(700.0, 100.0, 300.0);
        let c = person(1300.0, 100.0, 300.0);
        let mut f = vec![a.clone()];
        tr.update(&mut f).unwrap();
        let mut f = vec![a.clone(), b.clone()];
        tr.update(&mut f).unwrap();
        assert_eq!(ids(&f), vec![0, 1]);
        let mut f = vec![b.clone(), c.clone()];
        tr.update(&mut f).unwrap();
        assert_eq!(id_near(&f, 700.0), 1);
        assert_eq!(id_near(&f, 1300.0), 2);
        let mut f = vec![c.clone()];
        tr.update(&mut f).unwrap();
        assert_eq!(ids(&f), vec![2]);
    }

    #[test]
    fn identical_poses_are_one_person() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let p = person(400.0, 100.0, 300.0);
        let mut f = vec![p.clone(), p.clone(), person(1000.0, 100.0, 300.0)];
        tr.update(&mut f).unwrap();
        assert_eq!(ids(&f), vec![0, 1]);
        // Without NMS both copies get tracks, and keep them frame after frame.
        let mut tr = Tracker::new(TrackerConfig {
            nms_oks_threshold: 1.0,
            ..Default::default()
        });
        for _ in 0..3 {
            let mut f = vec![p.clone(), p.clone()];
            tr.update(&mut f).unwrap();
            let mut got = ids(&f);
            got.sort();
            assert_eq!(got, vec![0, 1]);
        }
    }

    #[test]
    fn empty_frames_age_tracks() {
        let mut tr = Tracker::new(TrackerConfig {
            max_age: 2,
            ..Default::default()
        });
        let mut f: Vec<Person> = Vec::new();
        tr.update(&mut f).unwrap();
        assert!(f.is_empty());
        let mut f = vec![person(300.0, 100.0, 300.0)];
        tr.update(&mut f).unwrap();
        for _ in 0..2 {
            let mut empty = Vec::new();
            tr.update(&mut empty).unwrap();
            assert_eq!(tr.live_tracks(), 1);
        }
        let mut empty = Vec::new();
        tr.update(&mut empty).unwrap();
        assert_eq!(tr.live_tracks(), 0);
    }

    #[test]
    fn far_jumps_are_gated() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut f = vec![person(100.0, 100.0, 200.0)];
        tr.update(&mut f).unwrap();
        // The only track and the only pose, but nowhere near each other: a new track.
        let mut f = vec![person(1500.0, 600.0, 200.0)];
        tr.update(&mut f).unwrap();
        assert_eq!(ids(&f), vec![1]);
    }

    #[test]
    fn weak_people_do_not_start_tracks_and_weak_joints_are_zeroed() {
        let mut tr = Tracker::new(TrackerConfig {
            min_score: 0.5,
            keypoint_threshold: 0.5,
            ..Default::default()
        });
        let mut weak = person(900.0, 100.0, 300.0);
        weak.bbox_score = 0.3;
        let mut strong = person(200.0, 100.0, 300.0);
        if let Some(k) = strong.keypoints.as_mut() {
            k[3].score = 0.1;
            k[4].score = 0.1;
        }
        let mut f = vec![weak, strong];
        tr.update(&mut f).unwrap();
        assert_eq!(ids(&f), vec![0]);
        let k = f[0].keypoints.unwrap();
        assert_eq!(k[3], Keypoint::default());
        assert!(k[0].score > 0.0);
        // A person without keypoints cannot start a track (min_keypoints 3).
        let mut f = vec![Person::from_box(BBox::new(0.0, 0.0, 10.0, 10.0), 0.99)];
        tr.update(&mut f).unwrap();
        assert!(f.is_empty());
    }

    #[test]
    fn running_out_of_ids_is_an_error() {
        let mut tr = Tracker::new(TrackerConfig {
            max_age: 0,
            ..Default::default()
        });
        tr.next_id = MAX_TRACK_ID - 1;
        let mut f = vec![person(200.0, 100.0, 300.0), person(900.0, 100.0, 300.0)];
        assert_eq!(tr.update(&mut f), Err(TrackError::TooManyTracks));
        assert_eq!(ids(&f), vec![MAX_TRACK_ID - 1]);
    }

    #[test]
    fn config_deserialises_with_defaults_and_validates() {
        let cfg: TrackerConfig = serde_json::from_str(r#"{"max_age": 9}"#).unwrap();
        assert_eq!(cfg.max_age, 9);
        assert_eq!(cfg.oks_weight, TrackerConfig::default().oks_weight);
        assert!(cfg.validate().is_ok());
        assert!(serde_json::from_str::<TrackerConfig>(r#"{"max_agee": 9}"#).is_err());
        let bad = TrackerConfig {
            oks_weight: 0.0,
            iou_weight: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn constant_velocity_follows_a_fast_runner_through_a_gap() {
        // 35 px a frame, a person 200 px tall: after a missed frame the last pose is 70 px
        // away, too far to match where it was; moved on by its velocity it matches.
        let run = |motion| {
            let mut tr = Tracker::new(TrackerConfig {
                motion,
                ..TrackerConfig::default()
            });
            let mut ids = Vec::new();
            for f in 0..12 {
                let mut frame = if f == 6 {
                    Vec::new()
                } else {
                    vec![person(100.0 + 35.0 * f as f32, 100.0, 200.0)]
                };
                tr.update(&mut frame).unwrap();
                ids.extend(frame.iter().map(|p| p.track_id.unwrap()));
            }
            ids
        };
        let still = run(MotionModel::None);
        assert!(still.iter().any(|&id| id != still[0]), "{still:?}");
        let moving = run(MotionModel::ConstantVelocity);
        assert!(moving.iter().all(|&id| id == 0), "{moving:?}");
    }
}
