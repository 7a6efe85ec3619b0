//! Shared candle building blocks: checkpoint loading and conv + batch-norm layers.

pub mod checkpoint;
pub mod conv;
pub mod cpu_conv;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
pub use conv::ConvBn;
