//! Pose NMS by OKS, as MMPose post-processes top-down PoseTrack results.

use super::similarity::{oks, oks_area};
use crate::person::Person;

/// Keypoints above this score count in the instance score (MMPose's `keypoint_score_thr`).
pub const KEYPOINT_SCORE_THRESHOLD: f32 = 0.2;

/// MMPose's `bbox_keypoint` instance score: box score × mean of the keypoint scores above 0.2
/// (0 when none is). A person without keypoints scores its box score.
pub fn instance_score(person: &Person) -> f32 {
    let Some(kps) = &person.keypoints else {
        return person.bbox_score;
    };
    // In float32 and in MMPose's order (`CocoMetric.compute_metrics`): the mean first, then
    // the product, so the written score matches to the bit.
    let (sum, n) = kps
        .iter()
        .filter(|k| k.score > KEYPOINT_SCORE_THRESHOLD)
        .fold((0.0f32, 0usize), |(s, n), k| (s + k.score, n + 1));
    let mean = if n == 0 { 0.0 } else { sum / n as f32 };
    person.bbox_score * mean
}

/// Greedy OKS-NMS: in order of instance score, a pose is dropped when its OKS with a kept pose is
/// above `threshold` (MMPose uses 0.9). People without keypoints are kept. The survivors keep their
/// input order.
pub fn oks_nms(persons: &mut Vec<Person>, threshold: f32) {
    let scores: Vec<f32> = persons.iter().map(instance_score).collect();
    let areas: Vec<f32> = persons.iter().map(|p| oks_area(&p.bbox)).collect();
    let mut order: Vec<usize> = (0..persons.len())
        .filter(|&i| persons[i].keypoints.is_some())
        .collect();
    // Highest score first; equal scores in input order.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut keep = vec![true; persons.len()];
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        let Some(ki) = &persons[i].keypoints else {
            continue;
        };
        let duplicate = kept.iter().any(|&k| {
            persons[k]
                .keypoints
                .as_ref()
                .is_some_and(|kk| oks(kk, ki, areas[k], areas[i]) > threshold)
        });
        if duplicate {
            keep[i] = false;
        } else {
            kept.push(i);
        }
    }
    let mut index = 0;
    persons.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;
    use crate::person::{Keypoint, NUM_KEYPOINTS};

    fn person(x: f32, bbox_score: f32, kp_score: f32) -> Person {
        let kps: [Keypoint; NUM_KEYPOINTS] = std::array::from_fn(|k| Keypoint {
            x: x + 3.0 * k as f32,
            y: 100.0 + 12.0 * k as f32,
            score: kp_score,
        });
        Person {
            bbox: BBox::new(x - 20.0, 90.0, x + 70.0, 320.0),
            bbox_score,
            keypoints: Some(kps),
            track_id: None,
        }
    }

    #[test]
    fn instance_score_ignores_weak_keypoints() {
        let mut p = person(0.0, 0.5, 0.8);
        assert!((instance_score(&p) - 0.4).abs() < 1e-6);
        if let Some(k) = p.keypoints.as_mut() {
            k[0].score = 0.1; // below 0.2: not averaged
        }
        assert!((instance_score(&p) - 0.4).abs() < 1e-6);
        assert_eq!(instance_score(&person(0.0, 0.5, 0.1)), 0.0);
    }

    #[test]
    fn duplicates_go_and_distinct_people_stay() {
        let mut v = vec![
            person(100.0, 0.6, 0.9),
            person(101.0, 0.9, 0.9), // same person, better score: kept
            person(600.0, 0.5, 0.9),
        ];
        oks_nms(&mut v, 0.9);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].bbox_score, 0.9);
        assert_eq!(v[1].bbox_score, 0.5);
    }
}
