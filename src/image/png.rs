//! PNG reduced to 8-bit RGB as OpenCV's `IMREAD_COLOR` reduces it: palettes and low bit depths
//! expanded, 16-bit samples cut to their high byte, grey repeated into R, G and B, alpha dropped
//! (not blended), EXIF orientation (`eXIf`) applied.

use std::io::Cursor;

use png::{ColorType, Transformations};

use super::{check_size, orientation, Decoded, Fault, RgbImage, MAX_PIXELS};

pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, Fault> {
    let fault = |e: png::DecodingError| Fault::Png(e.to_string());
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // EXPAND: palette to RGB(A), grey below 8 bits to 8; STRIP_16: the high byte, as libpng's
    // png_set_strip_16 that OpenCV calls.
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    decoder.set_limits(png::Limits {
        bytes: (MAX_PIXELS * 8) as usize,
    });
    let mut reader = decoder.read_info().map_err(fault)?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_size(width as u64, height as u64)?;
    let rotation = reader
        .info()
        .exif_metadata
        .as_deref()
        .map_or(1, orientation::from_tiff);
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Fault::Png("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(fault)?;
    let channels = match frame.color_type {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => return Err(Fault::Png("palette left unexpanded".into())),
    };
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for row in buf.chunks(frame.line_size).take(h) {
        for px in row[..w * channels].chunks_exact(channels) {
            if channels < 3 {
                data.extend_from_slice(&[px[0]; 3]);
            } else {
                data.extend_from_slice(&px[..3]);
            }
        }
    }
    let image = RgbImage {
        width: frame.width,
        height: frame.height,
        data,
    };
    Ok(Decoded {
        image: orientation::apply(image, rotation),
        warning: None,
    })
}
