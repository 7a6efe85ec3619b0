//! Drawing results over frames for the overlay video: boxes, skeletons, track colours.

use crate::geometry::BBox;
use crate::image::RgbImage;
use crate::person::Person;

/// Keypoints below this score are not drawn.
const MIN_KEYPOINT_SCORE: f32 = 0.3;

/// A stable colour per track id (golden-ratio hue steps keep neighbours apart).
pub fn track_colour(track_id: Option<u64>) -> [u8; 3] {
    let Some(id) = track_id else {
        return [255, 255, 255];
    };
    let hue = (id as f32 * 0.618_034).fract() * 6.0;
    let x = 1.0 - ((hue % 2.0) - 1.0).abs();
    let (r, g, b) = match hue as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    let scale = |c: f32| (64.0 + c * 191.0) as u8;
    [scale(r), scale(g), scale(b)]
}

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
    let (x0, x1) = (x0.max(0), x1.min(img.width as i64 - 1));
    let (y0, y1) = (y0.max(0), y1.min(img.height as i64 - 1));
    for y in y0..=y1 {
        for x in x0..=x1 {
            img.put_pixel(x, y, c);
        }
    }
}

/// A rectangle outline `thickness` pixels wide, clipped to the image.
pub fn draw_box(img: &mut RgbImage, b: &BBox, colour: [u8; 3], thickness: i64) {
    if !b.is_finite() {
        return;
    }
    let (x0, y0, x1, y1) = (
        b.x1.round() as i64,
        b.y1.round() as i64,
        b.x2.round() as i64,
        b.y2.round() as i64,
    );
    let t = thickness - 1;
    fill_rect(img, x0, y0, x1, y0 + t, colour);
    fill_rect(img, x0, y1 - t, x1, y1, colour);
    fill_rect(img, x0, y0, x0 + t, y1, colour);
    fill_rect(img, x1 - t, y0, x1, y1, colour);
}

/// A line of square dots (Bresenham), clipped to the image.
pub fn draw_line(img: &mut RgbImage, from: (f32, f32), to: (f32, f32), colour: [u8; 3], r: i64) {
    if ![from.0, from.1, to.0, to.1].iter().all(|v| v.is_finite()) {
        return;
    }
    let (mut x, mut y) = (from.0.round() as i64, from.1.round() as i64);
    let (x1, y1) = (to.0.round() as i64, to.1.round() as i64);
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    // Bounded by the longest possible line so a huge coordinate cannot stall the encoder.
    let limit = (img.width + img.height) as i64 * 4;
    for _ in 0..limit.max(1) {
        fill_rect(img, x - r, y - r, x + r, y + r, colour);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// A 3x5 pixel font for digits, one row per `u8` (3 low bits used).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// Writes a number with its top-left corner at `(x, y)`, each font pixel `scale` wide.
pub fn draw_number(img: &mut RgbImage, x: i64, y: i64, n: u64, colour: [u8; 3], scale: i64) {
    for (i, ch) in n.to_string().bytes().enumerate() {
        let glyph = DIGITS[(ch - b'0') as usize];
        let gx = x + i as i64 * 4 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let px = gx + col * scale;
                    let py = y + row as i64 * scale;
                    fill_rect(img, px, py, px + scale - 1, py + scale - 1, colour);
                }
            }
        }
    }
}

/// Draws one person: box, track id, and skeleton when keypoints are known.
pub fn draw_person(img: &mut RgbImage, p: &Person) {
    let colour = track_colour(p.track_id);
    let thickness = (img.width.max(img.height) as i64 / 500).max(2);
    draw_box(img, &p.bbox, colour, thickness);
    if let Some(id) = p.track_id {
        let scale = thickness + 1;
        draw_number(
            img,
            p.bbox.x1.round() as i64 + thickness + 2,
            p.bbox.y1.round() as i64 + thickness + 2,
            id,
            colour,
            scale,
        );
    }
    if let Some(kps) = &p.keypoints {
        for &(a, b) in &crate::keypoints::DRAWING_LINKS {
            let (ka, kb) = (kps[a], kps[b]);
            if ka.score >= MIN_KEYPOINT_SCORE && kb.score >= MIN_KEYPOINT_SCORE {
                draw_line(img, (ka.x, ka.y), (kb.x, kb.y), colour, thickness / 2);
            }
        }
        for k in kps.iter().filter(|k| k.score >= MIN_KEYPOINT_SCORE) {
            let (x, y) = (k.x.round() as i64, k.y.round() as i64);
            fill_rect(
                img,
                x - thickness,
                y - thickness,
                x + thickness,
                y + thickness,
                [255, 255, 255],
            );
        }
    }
}

/// `img` scaled to fit in `width` x `height`, centred on black (bilinear, aspect kept): a frame
/// whose size differs from the overlay's first frame is shown whole.
pub fn fit_into(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let scale =
        (width as f64 / img.width.max(1) as f64).min(height as f64 / img.height.max(1) as f64);
    let (dx, dy) = (
        (width as f64 - img.width as f64 * scale) / 2.0,
        (height as f64 - img.height as f64 * scale) / 2.0,
    );
    // Output pixel -> source pixel.
    let inv = [1.0 / scale, 0.0, -dx / scale, 0.0, 1.0 / scale, -dy / scale];
    RgbImage {
        width,
        height,
        data: crate::pose::crop::warp_affine_linear(img, &inv, width as usize, height as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_outline_is_clipped() {
        let mut img = RgbImage::new(20, 10);
        draw_box(&mut img, &BBox::new(-5.0, 2.0, 30.0, 8.0), [255, 0, 0], 1);
        assert_eq!(img.pixel(10, 2), Some([255, 0, 0]));
        assert_eq!(img.pixel(10, 5), Some([0, 0, 0]));
    }

    #[test]
    fn colours_differ_between_tracks() {
        assert_ne!(track_colour(Some(0)), track_colour(Some(1)));
        assert_eq!(track_colour(Some(7)), track_colour(Some(7)));
    }
}
