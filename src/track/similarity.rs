//! Similarity of two poses: object keypoint similarity (OKS) with the PoseTrack sigmas, and box IoU.

use crate::geometry::BBox;
use crate::keypoints::OKS_SIGMAS;
use crate::person::{Keypoint, Person, NUM_KEYPOINTS};

/// Box padding of MMPose's `GetBBoxCenterScale` for top-down models.
pub const BOX_PADDING: f32 = 1.25;

/// Width / height of the HRNet PoseTrack models' input (192 × 256), to which MMPose fixes the
/// padded box before cropping.
pub const POSE_INPUT_ASPECT: f32 = 192.0 / 256.0;

/// The area OKS is normalised by, as MMPose's PoseTrack evaluation takes it: the product of the
/// padded, aspect-fixed box scale. This is larger than the box area (at least 1.25² of it), so OKS
/// is more tolerant than with the raw box area; it is what MMPose's OKS-NMS was tuned with, and using
/// one definition keeps NMS and tracking consistent.
pub fn oks_area(bbox: &BBox) -> f32 {
    let (w, h) = bbox.padded_scale(BOX_PADDING, POSE_INPUT_ASPECT);
    w * h
}

/// MMPose's `oks_iou` without a visibility threshold: mean over all 17 keypoints of
/// `exp(-d² / (2σ)² / ((area_a + area_b) / 2 + eps) / 2)`.
pub fn oks(
    a: &[Keypoint; NUM_KEYPOINTS],
    b: &[Keypoint; NUM_KEYPOINTS],
    area_a: f32,
    area_b: f32,
) -> f32 {
    let area = (area_a + area_b) / 2.0 + f32::EPSILON;
    let sum: f32 = a
        .iter()
        .zip(b)
        .zip(OKS_SIGMAS)
        .map(|((p, q), sigma)| {
            let var = (2.0 * sigma).powi(2);
            let d2 = (p.x - q.x).powi(2) + (p.y - q.y).powi(2);
            (-(d2 / var / area / 2.0)).exp()
        })
        .sum();
    sum / NUM_KEYPOINTS as f32
}

/// OKS of two people; 0 when either has no keypoints yet.
pub fn person_oks(a: &Person, b: &Person) -> f32 {
    match (&a.keypoints, &b.keypoints) {
        (Some(ka), Some(kb)) => oks(ka, kb, oks_area(&a.bbox), oks_area(&b.bbox)),
        _ => 0.0,
    }
}

/// Box IoU of two people.
pub fn person_iou(a: &Person, b: &Person) -> f32 {
    a.bbox.iou(&b.bbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(dx: f32) -> [Keypoint; NUM_KEYPOINTS] {
        std::array::from_fn(|k| Keypoint {
            x: 100.0 + 10.0 * k as f32 + dx,
            y: 50.0 + 15.0 * k as f32,
            score: 1.0,
        })
    }

    #[test]
    fn oks_is_one_for_equal_poses_and_falls_with_distance() {
        let a = pose(0.0);
        assert!((oks(&a, &a, 1e4, 1e4) - 1.0).abs() < 1e-6);
        let near = oks(&a, &pose(5.0), 1e4, 1e4);
        let far = oks(&a, &pose(50.0), 1e4, 1e4);
        assert!(near < 1.0 && far < near && far > 0.0);
        // Larger people tolerate larger offsets.
        assert!(oks(&a, &pose(50.0), 1e5, 1e5) > far);
    }

    #[test]
    fn area_is_the_padded_aspect_fixed_scale() {
        // 100 x 100 box -> 125 x 125 -> widened? no: w > h·0.75, so height becomes 125 / 0.75.
        let area = oks_area(&BBox::new(0.0, 0.0, 100.0, 100.0));
        assert!((area - 125.0 * 125.0 / 0.75).abs() < 1e-2);
        // Tall box: width grows to h·0.75.
        let area = oks_area(&BBox::new(0.0, 0.0, 30.0, 200.0));
        assert!((area - 250.0 * 187.5).abs() < 1e-2);
    }
}
