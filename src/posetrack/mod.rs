//! PoseTrack 2018: the JSON format (ground truth and submissions).

pub mod eval;
pub mod format;

pub use format::{Annotation, Category, Image, PoseTrackError, PoseTrackFile};
