//! Shared candle building blocks: checkpoint loading, the device, and the convolution layer
//! with its kernels.

pub(crate) mod checkpoint;
pub(crate) mod conv;
pub(crate) mod cpu_conv;
pub mod device;
pub(crate) mod grouped_conv;
pub(crate) mod winograd;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
pub use conv::{Conv, ConvSpec};
