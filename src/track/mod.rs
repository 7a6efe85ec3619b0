//! Linking poses across the frames of a video into tracks.
//!
//! Per frame: OKS-NMS removes duplicate poses (`nms`), then [`Tracker::update`] matches the poses
//! to the live tracks by OKS and box IoU (`similarity`) with an optimal assignment, starts tracks
//! for the poses left over and ends tracks unseen for too long.

pub(crate) mod motion;
pub(crate) mod nms;
pub(crate) mod similarity;
pub(crate) mod tracker;

pub use motion::MotionModel;
pub use tracker::{
    apply_keypoint_threshold, TrackError, Tracker, TrackerConfig, TrackerKind, MAX_TRACK_ID,
};
