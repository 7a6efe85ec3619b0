//! Person detection: boxes given in files, or MMDetection's Cascade R-CNN.

pub mod given;
pub mod ops;
