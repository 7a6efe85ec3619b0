//! Per-joint CLEAR-MOT (poseval's `evaluateTracking`, `poseval/evaluateTracking.py`).
//!
//! Each joint type of each sequence is a separate tracking problem: objects are the GT people having
//! that joint, hypotheses the predicted people having it, and a pair can match when the joint's
//! distance is at most 0.5 head sizes. The frame-by-frame matching is the one of motmetrics'
//! `MOTAccumulator` (the library poseval calls), reproduced here with its bookkeeping:
//! correspondences from earlier frames are kept while still within the threshold, the rest is an
//! optimal assignment (most matches, then least distance), and a match that contradicts an object's
//! previous correspondence is a switch.
//!
//! poseval's quirks, kept on purpose:
//! * the last labeled frame of every sequence is not scored;
//! * a frame with GT but no predicted person (or no GT left after ignore regions) is scored as one
//!   placeholder object and one placeholder hypothesis (both id 0) that cannot match, for every joint:
//!   one miss and one false positive per joint, whatever the number of people;
//! * MOTP uses motmetrics' sum of the event distances, which counts every in-threshold
//!   (object, hypothesis) distance of the frame once more besides the matches' own.

use std::collections::{HashMap, HashSet};

use super::ap::{distances, DIST_THRESHOLD};
use super::load::{EvalFrame, Sequence};
use super::{mean_skipping_nan, MotMetrics, MotUnavailable, NUM_JOINTS};

/// One frame of one joint: object ids, hypothesis ids and their distances (`None`: cannot match).
struct JointFrame {
    objects: Vec<i64>,
    hypotheses: Vec<i64>,
    /// Row-major, objects × hypotheses.
    dist: Vec<Option<f64>>,
}

fn joint_frames(frame: &EvalFrame) -> Vec<JointFrame> {
    if frame.gt.is_empty() || frame.pred.is_empty() {
        return (0..NUM_JOINTS)
            .map(|_| JointFrame {
                objects: vec![0],
                hypotheses: vec![0],
                dist: vec![None],
            })
            .collect();
    }
    let dist = distances(frame);
    (0..NUM_JOINTS)
        .map(|j| {
            let gts: Vec<usize> = (0..frame.gt.len())
                .filter(|&g| frame.gt[g].joints[j].is_some())
                .collect();
            let preds: Vec<usize> = (0..frame.pred.len())
                .filter(|&p| frame.pred[p].joints[j].is_some())
                .collect();
            let mut d = Vec::with_capacity(gts.len() * preds.len());
            for &g in &gts {
                for &p in &preds {
                    let v = dist[p][g][j];
                    d.push((v <= DIST_THRESHOLD).then_some(v));
                }
            }
            JointFrame {
                objects: gts.iter().map(|&g| frame.gt[g].track_id).collect(),
                hypotheses: preds.iter().map(|&p| frame.pred[p].track_id).collect(),
                dist: d,
            }
        })
        .collect()
}

/// Event counts of one joint, summed over frames (and sequences).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MotCounts {
    /// GT joints scored (poseval's placeholder object included); MOTA's and recall's denominator.
    pub objects: u64,
    /// GT joints matched to the same predicted track as before (or matched for the first time).
    pub matches: u64,
    /// GT joints matched to a different predicted track than at their previous match.
    pub switches: u64,
    /// GT joints left unmatched.
    pub misses: u64,
    /// Predicted joints left unmatched.
    pub false_positives: u64,
    /// motmetrics' `events['D'].sum()`: see the module documentation.
    pub sum_distance: f64,
}

impl MotCounts {
    fn add(&mut self, o: &MotCounts) {
        self.objects += o.objects;
        self.matches += o.matches;
        self.switches += o.switches;
        self.misses += o.misses;
        self.false_positives += o.false_positives;
        self.sum_distance += o.sum_distance;
    }
}

/// The state motmetrics' accumulator keeps between frames.
#[derive(Default)]
struct Accumulator {
    /// Object -> hypothesis of its last match.
    last_hyp: HashMap<i64, i64>,
    /// Hypothesis -> object of its last match made by assignment (not carried over).
    last_obj: HashMap<i64, i64>,
    /// Objects and hypotheses matched at least once.
    matched_objects: HashSet<i64>,
    matched_hyps: HashSet<i64>,
    counts: MotCounts,
}

impl Accumulator {
    fn update(&mut self, f: &JointFrame) {
        let (no, nh) = (f.objects.len(), f.hypotheses.len());
        let mut dist = f.dist.clone();
        // Every finite distance is recorded once as a raw event, and raw events count in the sum.
        self.counts.sum_distance += dist.iter().flatten().sum::<f64>();
        let mut obj_done = vec![false; no];
        let mut hyp_done = vec![false; nh];
        if no > 0 && nh > 0 {
            // 1. Keep earlier correspondences still within the threshold.
            for i in 0..no {
                let o = f.objects[i];
                let Some(&h_prev) = self.last_hyp.get(&o) else {
                    continue;
                };
                let Some(j) = (0..nh).find(|&j| !hyp_done[j] && f.hypotheses[j] == h_prev) else {
                    continue;
                };
                if let Some(d) = dist[i * nh + j] {
                    obj_done[i] = true;
                    hyp_done[j] = true;
                    self.counts.matches += 1;
                    self.counts.sum_distance += d;
                    self.matched_objects.insert(o);
                    self.matched_hyps.insert(f.hypotheses[j]);
                }
            }
            for i in 0..no {
                for j in 0..nh {
                    if obj_done[i] || hyp_done[j] {
                        dist[i * nh + j] = None;
                    }
                }
            }
            // 2. Optimal assignment of the rest, pairs in row order.
            for (i, j) in assign(&dist, no, nh) {
                let Some(d) = dist[i * nh + j] else { continue };
                let (o, h) = (f.objects[i], f.hypotheses[j]);
                let switch = self.last_hyp.get(&o).is_some_and(|&p| p != h);
                if switch && !self.matched_hyps.contains(&h) {
                    self.counts.sum_distance += d; // ASCEND event
                }
                if self.last_obj.get(&h).is_some_and(|&p| p != o) {
                    if !self.matched_objects.contains(&o) {
                        self.counts.sum_distance += d; // MIGRATE event
                    }
                    self.counts.sum_distance += d; // TRANSFER event
                }
                self.matched_hyps.insert(h);
                self.matched_objects.insert(o);
                if switch {
                    self.counts.switches += 1;
                } else {
                    self.counts.matches += 1;
                }
                self.counts.sum_distance += d;
                obj_done[i] = true;
                hyp_done[j] = true;
                self.last_hyp.insert(o, h);
                self.last_obj.insert(h, o);
            }
        }
        self.counts.objects += no as u64;
        self.counts.misses += obj_done.iter().filter(|d| !**d).count() as u64;
        self.counts.false_positives += hyp_done.iter().filter(|d| !**d).count() as u64;
    }
}

/// Minimum-cost assignment on the valid pairs that first maximises the number of pairs, as
/// motmetrics' scipy path does (invalid pairs priced above any all-valid solution). Returns
/// `(row, column)` pairs in row order; invalid pairs are filtered by the caller.
fn assign(dist: &[Option<f64>], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 || dist.iter().all(Option::is_none) {
        return Vec::new();
    }
    // The hungarian crate wants integers; 1e9 resolves distances below 0.5 to 5e-10.
    const SCALE: f64 = 1e9;
    let scaled: Vec<Option<i64>> = dist
        .iter()
        .map(|d| d.map(|v| (v * SCALE).round() as i64))
        .collect();
    let max = scaled.iter().flatten().copied().max().unwrap_or(0);
    let r = rows.min(cols) as i64;
    let invalid = 2 * r * (max + 1) + 1;
    let costs: Vec<i64> = scaled.iter().map(|c| c.unwrap_or(invalid)).collect();
    hungarian::minimize(&costs, rows, cols)
        .into_iter()
        .enumerate()
        .filter_map(|(i, j)| j.map(|j| (i, j)))
        .collect()
}

pub(crate) fn evaluate(sequences: &[Sequence]) -> Result<MotMetrics, MotUnavailable> {
    let mut totals = [MotCounts::default(); NUM_JOINTS];
    for seq in sequences {
        if seq.frames.is_empty() {
            // No labeled frame: poseval never sees this sequence.
            continue;
        }
        if seq.frames.len() == 1 {
            return Err(MotUnavailable::SingleLabeledFrame(seq.gt_path.clone()));
        }
        let mut accs: Vec<Accumulator> = (0..NUM_JOINTS).map(|_| Accumulator::default()).collect();
        for frame in &seq.frames[..seq.frames.len() - 1] {
            for (acc, jf) in accs.iter_mut().zip(joint_frames(frame)) {
                acc.update(&jf);
            }
        }
        for (total, acc) in totals.iter_mut().zip(&accs) {
            total.add(&acc.counts);
        }
    }
    let mut m = MotMetrics {
        mota: [0.0; NUM_JOINTS + 1],
        motp: [0.0; NUM_JOINTS + 1],
        precision: [0.0; NUM_JOINTS + 1],
        recall: [0.0; NUM_JOINTS + 1],
        counts: totals,
    };
    for (j, c) in totals.iter().enumerate() {
        let objects = if c.objects > 0 {
            c.objects as f64
        } else {
            f64::NAN
        };
        let detections = (c.matches + c.switches) as f64;
        let fp = c.false_positives as f64;
        m.mota[j] = 100.0 * (1.0 - (c.misses + c.switches + c.false_positives) as f64 / objects);
        m.motp[j] = if detections == 0.0 {
            0.0
        } else {
            100.0 * (1.0 - c.sum_distance / detections)
        };
        let predicted = if fp + detections > 0.0 {
            fp + detections
        } else {
            f64::NAN
        };
        m.precision[j] = 100.0 * detections / predicted;
        m.recall[j] = 100.0 * detections / objects;
    }
    for v in [&mut m.mota, &mut m.motp, &mut m.precision, &mut m.recall] {
        v[NUM_JOINTS] = mean_skipping_nan(&v[..NUM_JOINTS]);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(objects: &[i64], hypotheses: &[i64], dist: &[Option<f64>]) -> JointFrame {
        JointFrame {
            objects: objects.to_vec(),
            hypotheses: hypotheses.to_vec(),
            dist: dist.to_vec(),
        }
    }

    #[test]
    fn correspondence_is_kept_while_valid() {
        let mut acc = Accumulator::default();
        acc.update(&frame(&[1], &[10], &[Some(0.1)]));
        // Hypothesis 11 is closer, but 1-10 is still within the threshold: no switch.
        acc.update(&frame(&[1], &[10, 11], &[Some(0.4), Some(0.0)]));
        assert_eq!(acc.counts.matches, 2);
        assert_eq!(acc.counts.switches, 0);
        assert_eq!(acc.counts.false_positives, 1);
        // 1-10 no longer valid: 1 goes to 11, a switch.
        acc.update(&frame(&[1], &[10, 11], &[None, Some(0.2)]));
        assert_eq!(acc.counts.switches, 1);
        assert_eq!(acc.counts.objects, 3);
    }

    #[test]
    fn assignment_maximises_matches_first() {
        // Greedy on the smallest distance would match (0, 0) only.
        let pairs = assign(&[Some(0.0), Some(0.1), Some(0.2), None], 2, 2);
        assert_eq!(pairs, vec![(0, 1), (1, 0)]);
    }
}
