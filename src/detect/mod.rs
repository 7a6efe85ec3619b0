//! Person detection: boxes given in files (and, later, Cascade R-CNN).

pub mod given;
