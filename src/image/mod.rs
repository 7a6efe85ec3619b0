//! Decoded frames in memory, and still images decoded exactly as OpenCV's `cv2.imread` (the
//! reference's image loader) decodes them: JPEG through libjpeg-turbo with the same settings,
//! PNG reduced to 8-bit RGB the same way, EXIF orientation applied.

mod jpeg;
pub(crate) mod orientation;
mod png;

use std::path::{Path, PathBuf};

/// An 8-bit RGB image, rows packed tightly (`stride == width * 3`).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R G B per pixel, row by row from the top-left.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
        }
    }

    /// The RGB triple at `(x, y)`; `None` outside the image.
    pub fn pixel(&self, x: i64, y: i64) -> Option<[u8; 3]> {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Sets the pixel at `(x, y)`; a point outside the image is ignored, so drawing may run
    /// off the edges.
    pub fn put_pixel(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&rgb);
    }
}

/// OpenCV's default limit on decoded pixels (`CV_IO_MAX_IMAGE_PIXELS`): a header claiming more is
/// refused before any memory is taken.
pub const MAX_PIXELS: u64 = 1 << 30;

/// Why a still image could not be decoded; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// libjpeg-turbo refused the data (damaged beyond what OpenCV recovers from).
    #[error("{path}: damaged or unsupported JPEG: {message}")]
    Jpeg {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The PNG decoder refused the data.
    #[error("{path}: damaged or unsupported PNG: {message}")]
    Png {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The header announces more than [`MAX_PIXELS`] pixels; nothing was decoded.
    #[error("{path}: {width}x{height} pixels is more than the {MAX_PIXELS} an image may have")]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Width from the header, pixels.
        width: u64,
        /// Height from the header, pixels.
        height: u64,
    },
}

/// The still-image formats decoded here rather than by FFmpeg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StillFormat {
    /// Data starting `FF D8 FF`.
    Jpeg,
    /// Data starting with the PNG signature `\x89PNG\r\n\x1a\n`.
    Png,
}

impl StillFormat {
    /// By content, not by file name: a `.jpg` holding a PNG is read as a PNG, as OpenCV does.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else {
            None
        }
    }
}

/// A decoded still image and what the decoder had to say about it.
#[derive(Debug)]
pub struct Decoded {
    /// The pixels, EXIF orientation applied.
    pub image: RgbImage,
    /// A recoverable fault (a truncated JPEG, say): the image is what OpenCV returns for the
    /// same file, but the caller should tell the user.
    pub warning: Option<String>,
}

/// Decodes a JPEG or PNG file as `cv2.imread(path, cv2.IMREAD_COLOR)` does, as RGB.
/// `Ok(None)`: the file is neither, and another decoder should be used.
pub fn read_still(path: &Path) -> Result<Option<Decoded>, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_still(&bytes, path)
}

/// [`read_still`] on bytes already in memory; `path` names them in errors.
pub fn decode_still(bytes: &[u8], path: &Path) -> Result<Option<Decoded>, ImageError> {
    let decoded = match StillFormat::sniff(bytes) {
        Some(StillFormat::Jpeg) => jpeg::decode(bytes),
        Some(StillFormat::Png) => png::decode(bytes),
        None => return Ok(None),
    };
    match decoded {
        Ok(decoded) => Ok(Some(decoded)),
        Err(Fault::Unsupported(message)) => {
            tracing::warn!(
                "{}: {message}; decoded by FFmpeg instead, whose pixels can differ from OpenCV's",
                path.display()
            );
            Ok(None)
        }
        Err(fault) => Err(fault.at(path)),
    }
}

/// A decoder fault before the file name is known.
#[derive(Debug)]
enum Fault {
    /// Valid, but outside what this decoder handles: another decoder should try.
    Unsupported(String),
    Jpeg(String),
    Png(String),
    TooLarge(u64, u64),
}

impl Fault {
    fn at(self, path: &Path) -> ImageError {
        let path = path.to_path_buf();
        match self {
            Fault::Jpeg(message) | Fault::Unsupported(message) => {
                ImageError::Jpeg { path, message }
            }
            Fault::Png(message) => ImageError::Png { path, message },
            Fault::TooLarge(width, height) => ImageError::TooLarge {
                path,
                width,
                height,
            },
        }
    }
}

fn check_size(width: u64, height: u64) -> Result<(), Fault> {
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(Fault::TooLarge(width, height));
    }
    Ok(())
}
