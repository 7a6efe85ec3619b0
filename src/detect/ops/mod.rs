//! Detector operators missing from candle, as custom ops (CPU now; the op boundary leaves
//! room for CUDA kernels).

pub mod grouped_conv;
pub mod nms;
pub mod roi_align;

pub use grouped_conv::GroupedConv;
pub use nms::{batched_nms, nms, Nms};
pub use roi_align::{roi_align, RoiAlign};
