//! MMPose `HeatmapHead` as configured for the HRNet top-down models: no deconvolutions, one 1x1
//! convolution (`final_layer`, with bias) from the backbone's W channels to one heatmap per
//! keypoint, no activation.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv::{Conv, ConvSpec};

#[derive(Debug, Clone)]
pub struct HeatmapHead {
    final_layer: Conv,
}

impl HeatmapHead {
    /// `vb` at `head` (0.x `keypoint_head` keys are renamed on load).
    pub fn new(vb: VarBuilder, in_channels: usize, num_keypoints: usize) -> Result<Self> {
        Ok(Self {
            final_layer: Conv::with_bias(
                vb.pp("final_layer"),
                ConvSpec::k1(in_channels, num_keypoints, false),
            )?,
        })
    }
}

impl Module for HeatmapHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.final_layer.forward(x)
    }
}
