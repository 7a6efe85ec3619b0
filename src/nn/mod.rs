//! Shared candle building blocks: checkpoint loading, the device, and the convolution layer
//! with its kernels.

pub mod checkpoint;
pub mod conv;
pub mod cpu_conv;
pub mod device;
pub mod grouped_conv;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
pub use conv::{Conv, ConvSpec};
