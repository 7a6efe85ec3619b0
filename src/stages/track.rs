//! Tracking stages: track ids kept from the boxes file, or people linked across frames by the
//! Hungarian tracker.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pipeline::messages::{Msg, VideoFailure};
use crate::pipeline::metrics::StageMetrics;
use crate::pipeline::stage::Stage;
use crate::track::nms::oks_nms;
use crate::track::{Tracker, TrackerConfig, MAX_TRACK_ID};

/// Keeps track ids given with the boxes (ground truth); people without one are numbered within
/// their frame after the given ids, so ids stay unique per frame.
pub struct GivenTrackStage {
    /// The pose NMS MMPose applies before writing PoseTrack results (`tracker.nms_oks_threshold`;
    /// 1.0 disables it).
    pub nms_oks_threshold: f32,
    /// Per video in flight (by id): its replaced ids.
    videos: HashMap<usize, GivenIds>,
}

/// One video's ids that PoseTrack cannot take, and what replaced them.
struct GivenIds {
    /// Given ids PoseTrack cannot take (10000 and above), mapped to free ids for the video.
    remapped: HashMap<u64, u64>,
    /// The next id handed out for a remapped one, counting down from 9999.
    next_spare: u64,
    /// Whether this video's replaced ids were already reported.
    warned: bool,
}

impl Default for GivenIds {
    fn default() -> Self {
        Self {
            remapped: HashMap::new(),
            next_spare: MAX_TRACK_ID - 1,
            warned: false,
        }
    }
}

impl GivenTrackStage {
    /// Keeps given ids after OKS NMS at `nms_oks_threshold` (1.0: no NMS).
    pub fn new(nms_oks_threshold: f32) -> Self {
        Self {
            nms_oks_threshold,
            videos: HashMap::new(),
        }
    }
}

impl GivenIds {
    /// An id no person of this frame has, for one whose given id cannot be kept.
    fn spare(&mut self, used: &std::collections::HashSet<u64>) -> Option<u64> {
        while used.contains(&self.next_spare) {
            self.next_spare = self.next_spare.checked_sub(1)?;
        }
        let id = self.next_spare;
        self.next_spare = self.next_spare.saturating_sub(1);
        Some(id)
    }
}

impl Stage for GivenTrackStage {
    fn name(&self) -> &'static str {
        "track"
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                self.videos.insert(v.id, GivenIds::default());
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if self.nms_oks_threshold < 1.0 {
                    oks_nms(&mut frame.persons, self.nms_oks_threshold);
                }
                let ids = self.videos.entry(frame.video.id).or_default();
                // PoseTrack wants ids below 10000 and unique within a frame (the evaluator
                // refuses the file otherwise): keep the given ids that qualify, map larger
                // ones to a spare id kept for the whole video, renumber a repeat.
                let mut used = std::collections::HashSet::new();
                let mut changed = 0;
                for p in frame.persons.iter_mut() {
                    let Some(given) = p.track_id else { continue };
                    let id = if given < MAX_TRACK_ID {
                        given
                    } else if let Some(&id) = ids.remapped.get(&given) {
                        id
                    } else {
                        match ids.spare(&used) {
                            Some(id) => {
                                ids.remapped.insert(given, id);
                                id
                            }
                            None => {
                                p.track_id = None;
                                continue;
                            }
                        }
                    };
                    p.track_id = if used.insert(id) {
                        Some(id)
                    } else {
                        None // a repeat: numbered below
                    };
                    changed += usize::from(p.track_id != Some(given));
                }
                let mut next = 0;
                for p in frame.persons.iter_mut().filter(|p| p.track_id.is_none()) {
                    while used.contains(&next) {
                        next += 1;
                    }
                    p.track_id = Some(next);
                    used.insert(next);
                }
                if changed > 0 && !ids.warned {
                    ids.warned = true;
                    tracing::warn!(
                        "{} frame {}: {changed} given track id(s) of 10000 or more, or repeated in the frame, replaced (PoseTrack needs ids below 10000, unique per frame; later frames are not reported)",
                        frame.video.job.name,
                        frame.decoded.number
                    );
                }
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, outcome) => {
                self.videos.remove(&v.id);
                out.push(Msg::End(v, outcome));
            }
        }
    }
}

/// Links people across frames with the Hungarian tracker, one tracker per video (videos in
/// flight at once each have theirs). A video whose tracker fails (more tracks than PoseTrack
/// ids allow) ends with that error.
pub struct HungarianTrackStage {
    config: TrackerConfig,
    /// Per video in flight (by id): its tracker, or why it failed.
    videos: HashMap<usize, Result<Tracker, VideoFailure>>,
}

impl HungarianTrackStage {
    /// A stage that starts a new tracker with `config` for every video.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            videos: HashMap::new(),
        }
    }
}

impl Stage for HungarianTrackStage {
    fn name(&self) -> &'static str {
        "track"
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                // Ids start again at 0 in every video.
                self.videos
                    .insert(v.id, Ok(Tracker::new(self.config.clone())));
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if let Some(state) = self.videos.get_mut(&frame.video.id) {
                    if let Ok(tracker) = state {
                        if let Err(e) = tracker.update(&mut frame.persons) {
                            *state = Err(VideoFailure::Track(Arc::new(e)));
                        }
                    }
                }
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, outcome) => {
                let outcome = match (outcome, self.videos.remove(&v.id)) {
                    (Ok(()), Some(Err(e))) => Err(e),
                    (outcome, _) => outcome,
                };
                out.push(Msg::End(v, outcome));
            }
        }
    }
}
