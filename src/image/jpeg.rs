//! JPEG through libjpeg-turbo, set up as OpenCV sets up libjpeg for `IMREAD_COLOR`: accurate
//! integer IDCT, fancy (smooth) chroma upsampling, colour conversion by the library, CMYK
//! converted with OpenCV's own formula, EXIF orientation applied.
//!
//! TurboJPEG's defaults are those settings (no `TJFLAG_FASTDCT`, no `TJFLAG_FASTUPSAMPLE`), and
//! libjpeg-turbo's decoder output does not depend on its version or SIMD path for them, so the
//! system library gives the bytes OpenCV's bundled copy gives.

use std::ffi::CStr;
use std::os::raw::c_ulong;

use turbojpeg_sys as tj;

use super::{check_size, orientation, Decoded, Fault, RgbImage};

/// One TurboJPEG decompressor, destroyed on drop.
struct Decompressor(tj::tjhandle);

impl Decompressor {
    fn new() -> Result<Self, Fault> {
        // SAFETY: no arguments; a null handle is checked.
        let handle = unsafe { tj::tjInitDecompress() };
        if handle.is_null() {
            return Err(Fault::Jpeg("cannot start the JPEG decoder".into()));
        }
        Ok(Self(handle))
    }

    fn last_error(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(tj::tjGetErrorStr2(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    /// After a failed call: a warning leaves a usable image, as libjpeg's does for OpenCV.
    fn failure_is_warning(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { tj::tjGetErrorCode(self.0) == tj::TJERR_TJERR_WARNING as i32 }
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: created by tjInitDecompress and destroyed once.
        unsafe {
            tj::tjDestroy(self.0);
        }
    }
}

struct Header {
    width: usize,
    height: usize,
    cmyk: bool,
}

fn read_header(dec: &Decompressor, bytes: &[u8]) -> Result<Header, Fault> {
    let (mut width, mut height, mut subsamp, mut colorspace) = (0, 0, 0, 0);
    // SAFETY: the buffer and its length come from one slice; outputs are plain ints.
    let rc = unsafe {
        tj::tjDecompressHeader3(
            dec.0,
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            &mut width,
            &mut height,
            &mut subsamp,
            &mut colorspace,
        )
    };
    if rc != 0 {
        let message = dec.last_error();
        // TurboJPEG names chroma layouts it has no constant for this way; libjpeg (OpenCV)
        // still decodes them, so another decoder must.
        if message.contains("subsampling") {
            return Err(Fault::Unsupported(message));
        }
        return Err(Fault::Jpeg(message));
    }
    if width <= 0 || height <= 0 {
        return Err(Fault::Jpeg(format!("image size {width}x{height}")));
    }
    check_size(width as u64, height as u64)?;
    let cmyk = colorspace == tj::TJCS_TJCS_CMYK as i32 || colorspace == tj::TJCS_TJCS_YCCK as i32;
    Ok(Header {
        width: width as usize,
        height: height as usize,
        cmyk,
    })
}

/// libjpeg's `JWRN_JPEG_EOF` message.
const PREMATURE_END: &str = "Premature end of JPEG file";

/// Decodes into `channels`-byte pixels of `format`; returns the decoder's warning, if any.
fn decompress(
    dec: &Decompressor,
    bytes: &[u8],
    header: &Header,
    format: tj::TJPF,
    channels: usize,
) -> Result<(Vec<u8>, Option<String>), Fault> {
    let mut pixels = vec![0u8; header.width * header.height * channels];
    // SAFETY: `pixels` holds width * height * channels bytes, the pitch (0 = packed) and the
    // size TurboJPEG writes for this pixel format.
    let rc = unsafe {
        tj::tjDecompress2(
            dec.0,
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            pixels.as_mut_ptr(),
            header.width as i32,
            0,
            header.height as i32,
            format,
            0,
        )
    };
    if rc == 0 {
        return Ok((pixels, None));
    }
    let message = dec.last_error();
    // A file that ends early is a warning to libjpeg, which then invents the missing data;
    // OpenCV's in-memory source (`cv2.imdecode`, what MMPose's loader calls) cannot supply
    // more and refuses the image, so it is an error here too. Other warnings (stray bytes
    // between segments, say) leave the picture OpenCV returns.
    if dec.failure_is_warning() && !message.contains(PREMATURE_END) {
        Ok((pixels, Some(message)))
    } else {
        Err(Fault::Jpeg(message))
    }
}

/// OpenCV's CMYK to RGB (libjpeg hands over Adobe's inverted CMYK as stored): each of C, M, Y
/// becomes `k - (255 - v) * k / 256` in integer arithmetic.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let k = px[3] as i32;
        let ink = |v: u8| (k - (((255 - v as i32) * k) >> 8)) as u8;
        rgb.extend_from_slice(&[ink(px[0]), ink(px[1]), ink(px[2])]);
    }
    rgb
}

pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, Fault> {
    let dec = Decompressor::new()?;
    let header = read_header(&dec, bytes)?;
    let (data, warning) = if header.cmyk {
        let (cmyk, warning) = decompress(&dec, bytes, &header, tj::TJPF_TJPF_CMYK, 4)?;
        (cmyk_to_rgb(&cmyk), warning)
    } else {
        // Greyscale comes out with R = G = B, as libjpeg's grey-to-RGB conversion gives OpenCV.
        decompress(&dec, bytes, &header, tj::TJPF_TJPF_RGB, 3)?
    };
    let image = RgbImage {
        width: header.width as u32,
        height: header.height as u32,
        data,
    };
    let image = orientation::apply(image, orientation::from_jpeg(bytes));
    Ok(Decoded { image, warning })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_formula_keeps_black_and_white() {
        // k = 255 and no ink: white; k = 0: black whatever the inks say.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), vec![255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[10, 200, 30, 0]), vec![0, 0, 0]);
        // k = 200, c = 100: 200 - (155 * 200 >> 8) = 200 - 121 = 79.
        assert_eq!(cmyk_to_rgb(&[100, 255, 0, 200])[0], 79);
    }
}
