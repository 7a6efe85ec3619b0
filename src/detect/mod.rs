//! Person detection: MMDetection's Cascade R-CNN.

pub mod box_coder;
pub(crate) mod cascade;
pub(crate) mod fpn;
pub mod ops;
pub mod preprocess;
pub(crate) mod resnet;
pub(crate) mod roi_head;
pub(crate) mod rpn;

pub use cascade::{CascadeRcnn, CascadeRcnnConfig, DetectError, Detection};
