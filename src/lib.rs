#![warn(missing_docs)]
//! vidpose: videos in, tracked human poses out.
//!
//! Stages (see `pipeline`): decode (`video`) -> detect (`detect`) -> pose (`pose`) -> track
//! (`track`) -> sink (`posetrack`, overlay video, metrics).

pub mod bench;
pub mod config;
pub mod detect;
pub mod fsutil;
pub mod geometry;
pub mod image;
pub(crate) mod keypoints;
pub mod models;
pub mod nn;
pub mod person;
pub mod pipeline;
pub mod pose;
pub mod posetrack;
pub(crate) mod render;
pub mod sinks;
pub mod stages;
pub mod track;
pub mod video;
pub(crate) mod yaml;
