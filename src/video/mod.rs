//! Video input and output through FFmpeg: finding inputs, decoding to RGB, encoding overlays.

pub mod decode;
pub mod discover;
pub mod encode;

use std::path::PathBuf;

pub use decode::{DecodedFrame, FrameDecoder, StreamInfo};
pub use discover::{discover, PoseTrackSequence, SourceKind, VideoJob};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: no such file or folder")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Folder { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{path}: cannot write the overlay video: {message}")]
    Encode { path: PathBuf, message: String },
}
