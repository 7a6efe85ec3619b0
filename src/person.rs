//! A person as it moves through the stages: a box, then keypoints, then a track id.

use crate::geometry::BBox;

pub use crate::keypoints::NUM_KEYPOINTS;

/// One keypoint in image pixels with its confidence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Keypoint {
    /// Column, image pixels.
    pub x: f32,
    /// Row, image pixels.
    pub y: f32,
    /// The heatmap maximum (MMPose's keypoint score); 0 for a box too degenerate to crop.
    pub score: f32,
}

/// One person in one frame, filled in stage by stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// The person box in the frame, x1/y1/x2/y2 pixels.
    pub bbox: BBox,
    /// Detector (or given-box) confidence.
    pub bbox_score: f32,
    /// Filled by the pose stage.
    pub keypoints: Option<[Keypoint; NUM_KEYPOINTS]>,
    /// Filled by the tracker.
    pub track_id: Option<u64>,
}

impl Person {
    /// A person known only by its box, before pose estimation and tracking.
    pub fn from_box(bbox: BBox, bbox_score: f32) -> Self {
        Self {
            bbox,
            bbox_score,
            keypoints: None,
            track_id: None,
        }
    }
}
