//! A person as it moves through the stages: a box, then keypoints, then a track id.

use crate::geometry::BBox;

pub use crate::keypoints::NUM_KEYPOINTS;

/// One keypoint in image pixels with its confidence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub bbox: BBox,
    /// Detector (or given-box) confidence.
    pub bbox_score: f32,
    /// Filled by the pose stage.
    pub keypoints: Option<[Keypoint; NUM_KEYPOINTS]>,
    /// Filled by the tracker.
    pub track_id: Option<u64>,
}

impl Person {
    pub fn from_box(bbox: BBox, bbox_score: f32) -> Self {
        Self {
            bbox,
            bbox_score,
            keypoints: None,
            track_id: None,
        }
    }
}
