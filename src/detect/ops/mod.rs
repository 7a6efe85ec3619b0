//! Detector operators missing from candle, as custom ops: RoIAlign has a CPU and a CUDA
//! kernel; NMS runs on the host (a CUDA tensor's rows are copied back, see [`Nms`]).

pub mod nms;
pub mod roi_align;

pub use nms::{batched_nms, nms, Nms};
pub use roi_align::{roi_align, RoiAlign};
