//! Boxes from files: each frame's people looked up in its video's boxes or annotation file.

use std::collections::{HashMap, HashSet};

use crate::pipeline::messages::{Msg, VideoFailure};
use crate::pipeline::metrics::StageMetrics;
use crate::pipeline::stage::Stage;

/// Person boxes looked up in the video's box file. Checks at the end of each video that the
/// file has no boxes for frames the video does not have.
pub struct GivenBoxesStage {
    /// The frame numbers seen, per video in flight (by id).
    seen: HashMap<usize, HashSet<u64>>,
    name: &'static str,
}

impl GivenBoxesStage {
    /// The stage that gives the people: `detect` in the metrics.
    pub fn new() -> Self {
        Self::named("detect")
    }

    /// Before the detector (`detector.kind: auto`), where `detect` names the detector.
    pub fn named(name: &'static str) -> Self {
        Self {
            seen: Default::default(),
            name,
        }
    }
}

impl Default for GivenBoxesStage {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage for GivenBoxesStage {
    fn name(&self) -> &'static str {
        self.name
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        match msg {
            Msg::Start(v) => {
                self.seen.insert(v.id, HashSet::new());
                out.push(Msg::Start(v));
            }
            Msg::Frame(mut frame) => {
                metrics.batches += 1;
                if let Some(boxes) = &frame.video.boxes {
                    let name = &frame.video.job.name;
                    let number = frame.decoded.number;
                    let image = &frame.decoded.image;
                    frame.persons = boxes
                        .persons(name, number, image.width, image.height)
                        .into_iter()
                        .map(|(mut p, track)| {
                            p.track_id = track.and_then(|t| u64::try_from(t).ok());
                            p
                        })
                        .collect();
                    frame.reference_image = boxes.image(name, number);
                }
                self.seen
                    .entry(frame.video.id)
                    .or_default()
                    .insert(frame.decoded.number);
                out.push(Msg::Frame(frame));
            }
            Msg::End(v, Ok(())) => {
                let seen = self.seen.remove(&v.id).unwrap_or_default();
                // A video cut short (`input.max_frames`, `input.duration`) has boxes beyond its last frame.
                // So is a live one: it drops frames and stops at any time.
                let cut = v.live.is_some()
                    || v.cut_short.load(std::sync::atomic::Ordering::SeqCst)
                    || v.frame_limit
                        .is_some_and(|limit| seen.len() as u64 >= limit);
                let outcome = match &v.boxes {
                    Some(boxes) if !cut => {
                        let orphans: Vec<u64> = boxes
                            .frames_with_boxes(&v.job.name)
                            .into_iter()
                            .filter(|n| !seen.contains(n))
                            .collect();
                        if orphans.is_empty() {
                            Ok(())
                        } else {
                            Err(VideoFailure::Boxes(format!(
                                "{}: has boxes for frame(s) {} of `{}`, which the video does not have ({} frames decoded)",
                                boxes.source().display(),
                                list_numbers(&orphans),
                                v.job.name,
                                seen.len()
                            )))
                        }
                    }
                    _ => Ok(()),
                };
                out.push(Msg::End(v, outcome));
            }
            Msg::End(v, outcome) => {
                self.seen.remove(&v.id);
                out.push(Msg::End(v, outcome));
            }
        }
    }
}

fn list_numbers(n: &[u64]) -> String {
    let shown: Vec<String> = n.iter().take(5).map(|x| x.to_string()).collect();
    if n.len() > 5 {
        format!("{}, ... ({} in all)", shown.join(", "), n.len())
    } else {
        shown.join(", ")
    }
}
