//! vidpose: videos in, tracked human poses out.
//!
//! Stages (see `pipeline`): decode (`video`) -> detect (`detect`) -> pose (`pose`) -> track
//! (`track`) -> sink (`posetrack`, overlay video, metrics).

pub mod fsutil;
pub mod geometry;
pub mod image;
pub mod person;
pub mod posetrack;
pub mod track;
