//! PoseTrack 2018: the JSON format (`format`), boxes and annotations read as MMPose reads them
//! (`boxes`), sequences on disk (`sequence`), the submission written per video
//! (`submission`), and the official evaluator's metrics (`eval`).

pub mod boxes;
pub mod eval;
pub mod format;
pub(crate) mod sequence;
pub(crate) mod submission;

pub use format::{Annotation, Category, Image, PoseTrackError, PoseTrackFile};
