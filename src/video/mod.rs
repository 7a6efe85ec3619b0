//! Video input and output through FFmpeg: finding inputs, decoding to RGB, encoding overlays.

pub mod decode;
pub mod discover;
pub mod encode;
pub mod stream;

use std::path::PathBuf;

pub use decode::{DecodedFrame, FrameDecoder, StreamInfo};
pub use discover::{discover, PoseTrackSequence, SourceKind, VideoJob};

/// Why an input could not be found, read or decoded, or the overlay video not written; each
/// variant names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// An input path given on the command line does not exist.
    #[error("{path}: no such file or folder")]
    Missing {
        /// The input path as given.
        path: PathBuf,
    },
    /// The file system refused a read (metadata, folder listing).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An input folder yields no usable job: nothing to decode, a broken numbered-image
    /// sequence, or an output name two jobs would share.
    #[error("{path}: {message}")]
    Folder {
        /// The folder (or the job's path, for a name clash).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// FFmpeg cannot open the file or find a decodable video stream in it (empty, truncated,
    /// unknown format, no decoder).
    #[error("{path}: {message}")]
    Open {
        /// The video or image file.
        path: PathBuf,
        /// FFmpeg's reason, with a truncation note when the mp4 boxes run past the end.
        message: String,
    },
    /// Decoding stopped partway: a damaged or truncated stream, or fewer frames than declared.
    #[error("{path}: {message}")]
    Decode {
        /// The video or image file.
        path: PathBuf,
        /// Which frame failed and why.
        message: String,
    },
    /// A live input (URL or webcam) is not one vidpose reads, cannot be opened, or failed
    /// beyond what reconnecting could mend.
    #[error("{url}: {message}")]
    Stream {
        /// The URL (credentials left out) or device path.
        url: String,
        /// What is wrong: FFmpeg's reason, or the timeout that ran out.
        message: String,
    },
    /// A JPEG or PNG frame could not be read by the built-in (OpenCV-compatible) decoder.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// FFmpeg could not create, encode or finish the overlay mp4.
    #[error("{path}: cannot write the overlay video: {message}")]
    Encode {
        /// The mp4 (final name, not the temporary one).
        path: PathBuf,
        /// The muxer's or encoder's reason.
        message: String,
    },
}
