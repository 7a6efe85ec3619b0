//! Per-joint average precision (poseval's `evaluateAP`, `poseval/evaluateAP.py` and `eval_helpers.py`):
//! PCKh@0.5 with 0.6 × the GT head-box diagonal, poseval's greedy person matching, all-points AP.

use super::load::{EvalFrame, Sequence};
use super::{mean_skipping_nan, ApMetrics, NUM_JOINTS};

/// A joint matches when its distance, in head sizes, is at most this (PCKh@0.5).
pub const DIST_THRESHOLD: f64 = 0.5;

/// 0.6 × the head box diagonal (poseval's `getHeadSize`).
pub(crate) fn head_size(head: &[f64; 4]) -> f64 {
    0.6 * (head[2] - head[0]).hypot(head[3] - head[1])
}

/// `dist[p][g][j]`: distance of prediction `p`'s joint `j` to GT `g`'s, in head sizes of `g`;
/// infinite where either lacks the joint.
pub(crate) fn distances(frame: &EvalFrame) -> Vec<Vec<[f64; NUM_JOINTS]>> {
    frame
        .pred
        .iter()
        .map(|p| {
            frame
                .gt
                .iter()
                .map(|g| {
                    let hs = head_size(&g.head);
                    let mut d = [f64::INFINITY; NUM_JOINTS];
                    for (j, dj) in d.iter_mut().enumerate() {
                        if let (Some(a), Some(b)) = (p.joints[j], g.joints[j]) {
                            // Division as numpy does it: a zero head size gives inf (or NaN for 0/0),
                            // which never matches.
                            *dj = (a.x - b.x).hypot(a.y - b.y) / hs;
                        }
                    }
                    d
                })
                .collect()
        })
        .collect()
}

/// For each prediction of the frame, the GT person it is matched to.
///
/// poseval's rule: PCK of each (prediction, GT) pair = matched joints / annotated GT joints; each
/// prediction keeps only its best GT (first on ties); then each GT takes the prediction with the
/// highest remaining PCK (first on ties) if that PCK is not zero. Scores play no part.
pub(crate) fn match_people(
    frame: &EvalFrame,
    dist: &[Vec<[f64; NUM_JOINTS]>],
) -> Vec<Option<usize>> {
    let n_gt = frame.gt.len();
    let annotated: Vec<usize> = frame
        .gt
        .iter()
        .map(|g| g.joints.iter().filter(|j| j.is_some()).count())
        .collect();
    let mut pck: Vec<Vec<f64>> = dist
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(g, d)| {
                    let hits = d.iter().filter(|&&v| v <= DIST_THRESHOLD).count() as f64;
                    if annotated[g] > 0 {
                        hits / annotated[g] as f64
                    } else {
                        hits
                    }
                })
                .collect()
        })
        .collect();
    for row in pck.iter_mut() {
        let best = argmax(row.iter().copied());
        for (g, v) in row.iter_mut().enumerate() {
            if Some(g) != best {
                *v = 0.0;
            }
        }
    }
    let mut matched = vec![None; dist.len()];
    for g in 0..n_gt {
        if let Some(p) = argmax(pck.iter().map(|row| row[g])) {
            if pck[p][g] != 0.0 {
                matched[p] = Some(g);
            }
        }
    }
    matched
}

/// Index of the first maximum (numpy's `argmax`).
fn argmax(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        // Only a strictly larger value replaces the first maximum.
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Scores and labels of every predicted joint, and the number of GT joints, per joint type.
#[derive(Debug, Default)]
struct Pool {
    scored: Vec<Vec<(f64, bool)>>,
    n_gt: [usize; NUM_JOINTS],
}

fn pool(sequences: &[Sequence]) -> Pool {
    let mut pool = Pool {
        scored: vec![Vec::new(); NUM_JOINTS],
        n_gt: [0; NUM_JOINTS],
    };
    for frame in sequences.iter().flat_map(|s| &s.frames) {
        for g in &frame.gt {
            for (j, joint) in g.joints.iter().enumerate() {
                pool.n_gt[j] += usize::from(joint.is_some());
            }
        }
        if frame.pred.is_empty() {
            continue;
        }
        // With no GT left (all inside ignore regions) everything predicted is a false positive.
        let dist = distances(frame);
        let matched = if frame.gt.is_empty() {
            vec![None; frame.pred.len()]
        } else {
            match_people(frame, &dist)
        };
        for (p, pred) in frame.pred.iter().enumerate() {
            for (j, joint) in pred.joints.iter().enumerate() {
                if let Some(point) = joint {
                    let label = matched[p].is_some_and(|g| dist[p][g][j] <= DIST_THRESHOLD);
                    pool.scored[j].push((point.score, label));
                }
            }
        }
    }
    pool
}

/// AP, final precision and final recall of one joint (fractions, not percent).
fn joint_metrics(scored: &[(f64, bool)], n_gt: usize) -> Option<(f64, f64, f64)> {
    if scored.is_empty() {
        return None;
    }
    // numpy's `argsort()[::-1]`: ascending, then reversed. A stable ascending sort reproduces
    // numpy's order of tied scores for short lists; longer ones may differ there.
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored[a].0.total_cmp(&scored[b].0));
    order.reverse();
    let total = n_gt as f64;
    let mut precision = Vec::with_capacity(order.len());
    let mut recall = Vec::with_capacity(order.len());
    let mut tp = 0usize;
    for (rank, &i) in order.iter().enumerate() {
        tp += usize::from(scored[i].1);
        // 0 / 0 is NaN and k / 0 infinite, as in numpy; poseval carries them through.
        recall.push(tp as f64 / total);
        precision.push(tp as f64 / (rank + 1) as f64);
    }
    let ap = voc_ap(&recall, &precision);
    Some((ap, *precision.last()?, *recall.last()?))
}

/// VOC all-points AP: precision made non-increasing from the right, summed where recall changes.
fn voc_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut mrec = Vec::with_capacity(recall.len() + 2);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(precision.len() + 2);
    mpre.push(0.0);
    mpre.extend_from_slice(precision);
    mpre.push(0.0);
    for i in (0..mpre.len() - 1).rev() {
        // Python's max(a, b) returns a unless b > a.
        if mpre[i + 1] > mpre[i] {
            mpre[i] = mpre[i + 1];
        }
    }
    let mut ap = 0.0;
    for i in 1..mrec.len() {
        // `!=` is true for NaN, as numpy's `~np.equal`.
        if mrec[i] != mrec[i - 1] {
            ap += (mrec[i] - mrec[i - 1]) * mpre[i];
        }
    }
    ap
}

pub(crate) fn evaluate(sequences: &[Sequence]) -> ApMetrics {
    let pool = pool(sequences);
    let mut m = ApMetrics {
        ap: [0.0; NUM_JOINTS + 1],
        precision: [0.0; NUM_JOINTS + 1],
        recall: [0.0; NUM_JOINTS + 1],
        num_gt: pool.n_gt,
    };
    for j in 0..NUM_JOINTS {
        // A joint without any prediction keeps 0, as poseval's zero-initialised arrays.
        if let Some((ap, pre, rec)) = joint_metrics(&pool.scored[j], pool.n_gt[j]) {
            m.ap[j] = ap * 100.0;
            m.precision[j] = pre * 100.0;
            m.recall[j] = rec * 100.0;
        }
    }
    m.ap[NUM_JOINTS] = mean_skipping_nan(&m.ap[..NUM_JOINTS]);
    m.precision[NUM_JOINTS] = mean_skipping_nan(&m.precision[..NUM_JOINTS]);
    m.recall[NUM_JOINTS] = mean_skipping_nan(&m.recall[..NUM_JOINTS]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_ap_of_simple_curves() {
        // All true positives: AP 1.
        assert!((voc_ap(&[0.5, 1.0], &[1.0, 1.0]) - 1.0).abs() < 1e-12);
        // TP, FP, TP with 2 GT: 0.5·1 + 0.5·(2/3).
        let ap = voc_ap(&[0.5, 0.5, 1.0], &[1.0, 0.5, 2.0 / 3.0]);
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn scores_rank_predictions() {
        let scored = [(0.9, false), (0.8, true), (0.1, true)];
        let (ap, pre, rec) = joint_metrics(&scored, 4).unwrap();
        // Precision is made non-increasing from the right: 2/3 over recall 0..0.5.
        assert!((ap - 0.5 * (2.0 / 3.0)).abs() < 1e-12);
        assert!((pre - 2.0 / 3.0).abs() < 1e-12);
        assert!((rec - 0.5).abs() < 1e-12);
    }
}
