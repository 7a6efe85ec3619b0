//! Person detection: MMDetection's Cascade R-CNN.

pub mod box_coder;
pub mod cascade;
pub mod fpn;
pub mod ops;
pub mod preprocess;
pub mod resnet;
pub mod roi_head;
pub mod rpn;

pub use cascade::{CascadeRcnn, CascadeRcnnConfig, DetectError, Detection};
