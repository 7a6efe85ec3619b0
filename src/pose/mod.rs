//! Top-down pose estimation: crop each person box (`crop`), run HRNet (`hrnet`) and its heatmap
//! head (`head`), decode heatmaps to keypoints (`codec`). `estimator` ties them together.

pub mod codec;
pub mod crop;
pub(crate) mod estimator;
pub(crate) mod head;
pub(crate) mod hrnet;

pub use codec::Decoding;
pub use estimator::{PoseError, PoseEstimator, PoseModelConfig, PoseOptions};
pub use hrnet::{HrNet, HrNetConfig};
