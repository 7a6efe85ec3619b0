//! Shared candle building blocks: checkpoint loading, the device, and conv + batch-norm layers.

pub mod checkpoint;
pub mod conv;
pub mod cpu_conv;
pub mod device;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
pub use conv::ConvBn;
