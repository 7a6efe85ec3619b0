//! EXIF orientation (tag 0x0112), which `cv2.imread` applies unless told not to: a phone photo
//! stored sideways is turned upright before anything else sees it.

use super::RgbImage;

const ORIENTATION_TAG: u16 = 0x0112;

/// The orientation recorded in a JPEG's `Exif` APP1 segment; 1 (as stored) when there is none.
pub fn from_jpeg(bytes: &[u8]) -> u16 {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return 1;
        }
        let marker = bytes[pos + 1];
        // Fill bytes, and markers without a length.
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        // Start of scan or end of image: the metadata segments are all before.
        if marker == 0xDA || marker == 0xD9 {
            return 1;
        }
        let length = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        if length < 2 || pos + 2 + length > bytes.len() {
            return 1;
        }
        let segment = &bytes[pos + 4..pos + 2 + length];
        if marker == 0xE1 {
            if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                return from_tiff(tiff);
            }
        }
        pos += 2 + length;
    }
    1
}

/// The orientation in a TIFF-structured EXIF block (a JPEG's APP1 after `Exif\0\0`, a PNG's
/// `eXIf` chunk); 1 when it is missing or malformed.
pub fn from_tiff(tiff: &[u8]) -> u16 {
    read_orientation(tiff).unwrap_or(1)
}

fn read_orientation(tiff: &[u8]) -> Option<u16> {
    let big_endian = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    // An unsigned field of `len` bytes at `at`, in the block's byte order.
    let field = |at: usize, len: usize| -> Option<u32> {
        let bytes = tiff.get(at..at.checked_add(len)?)?;
        let fold = |acc: u32, b: &u8| (acc << 8) | u32::from(*b);
        Some(if big_endian {
            bytes.iter().fold(0, fold)
        } else {
            bytes.iter().rev().fold(0, fold)
        })
    };
    let u16_at = |at: usize| field(at, 2).map(|v| v as u16);
    let u32_at = |at: usize| field(at, 4);
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    for i in 0..entries {
        let entry = ifd + 2 + 12 * i;
        if u16_at(entry)? == ORIENTATION_TAG {
            // SHORT, one value, stored in the first half of the value field.
            return u16_at(entry + 8);
        }
    }
    None
}

/// Turns the stored pixels upright for EXIF `orientation` (1-8); other values leave them as
/// they are, as OpenCV does.
pub fn apply(img: RgbImage, orientation: u16) -> RgbImage {
    if !(2..=8).contains(&orientation) {
        return img;
    }
    let (w, h) = (img.width as usize, img.height as usize);
    // Orientations 5-8 swap the axes.
    let (out_w, out_h) = if orientation >= 5 { (h, w) } else { (w, h) };
    // For each output pixel (x, y), the stored pixel it shows.
    let source = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),         // mirrored left-right
            3 => (w - 1 - x, h - 1 - y), // turned 180°
            4 => (x, h - 1 - y),         // mirrored top-bottom
            5 => (y, x),                 // transposed
            6 => (y, h - 1 - x),         // stored turned 90° anticlockwise
            7 => (w - 1 - y, h - 1 - x), // transverse
            _ => (w - 1 - y, x),         // 8: stored turned 90° clockwise
        }
    };
    let mut data = Vec::with_capacity(img.data.len());
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = source(x, y);
            let i = (sy * w + sx) * 3;
            data.extend_from_slice(&img.data[i..i + 3]);
        }
    }
    RgbImage {
        width: out_w as u32,
        height: out_h as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixel (x, y) holds [x, y, 0].
    fn grid() -> RgbImage {
        let mut img = RgbImage::new(3, 2);
        for y in 0..2 {
            for x in 0..3 {
                img.put_pixel(x, y, [x as u8, y as u8, 0]);
            }
        }
        img
    }

    #[test]
    fn every_orientation_lands_the_stored_corner_where_exif_says() {
        // Where the stored top-left pixel (0, 0) ends up, and the output size.
        let expected = [
            (1, (0, 0), (3, 2)),
            (2, (2, 0), (3, 2)),
            (3, (2, 1), (3, 2)),
            (4, (0, 1), (3, 2)),
            (5, (0, 0), (2, 3)),
            (6, (1, 0), (2, 3)),
            (7, (1, 2), (2, 3)),
            (8, (0, 2), (2, 3)),
        ];
        for (o, (x, y), (w, h)) in expected {
            let out = apply(grid(), o);
            assert_eq!((out.width, out.height), (w, h), "orientation {o}");
            assert_eq!(out.pixel(x, y), Some([0, 0, 0]), "orientation {o}");
        }
        assert_eq!(apply(grid(), 0), grid());
        assert_eq!(apply(grid(), 9), grid());
    }

    #[test]
    fn tiff_in_both_byte_orders_and_broken_blocks() {
        let le = [
            b'I', b'I', 42, 0, 8, 0, 0, 0, // header, IFD at 8
            1, 0, // one entry
            0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, // orientation SHORT 6
        ];
        assert_eq!(from_tiff(&le), 6);
        let be = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0,
        ];
        assert_eq!(from_tiff(&be), 3);
        assert_eq!(from_tiff(&le[..12]), 1);
        assert_eq!(from_tiff(b"XX"), 1);
        assert_eq!(from_jpeg(&[0xFF, 0xD8, 0xFF, 0xE1, 0x00]), 1);
    }
}
