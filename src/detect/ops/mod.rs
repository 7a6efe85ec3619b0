//! Detector operators missing from candle, as custom ops (CPU now; the op boundary leaves
//! room for CUDA kernels).

pub mod nms;
pub mod roi_align;

pub use nms::{batched_nms, nms, Nms};
pub use roi_align::{roi_align, RoiAlign};
