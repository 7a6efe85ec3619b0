//! Top-down pose estimation: crop each person box (`crop`), run HRNet (`hrnet`) and its heatmap
//! head (`head`), decode heatmaps to keypoints (`codec`). `estimator` ties them together; on a
//! GPU, `ops` runs the crop and the decoding there.

pub mod codec;
pub mod crop;
pub(crate) mod estimator;
pub(crate) mod head;
pub(crate) mod hrnet;
pub mod ops;

pub use codec::Decoding;
pub use estimator::{PoseError, PoseEstimator, PoseModelConfig, PoseOptions};
pub use hrnet::{HrNet, HrNetConfig};
