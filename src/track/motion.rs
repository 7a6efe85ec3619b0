//! Motion prediction for tracks: where a person seen some frames ago is expected now.
//!
//! The constant-velocity model moves a track's last pose (box and keypoints together) by the
//! smoothed per-frame displacement of its box centre. One translation for the whole body is
//! robust to the per-joint noise of a pose model, and covers what breaks matching most: people
//! walking or running past each other and short occlusions.

use serde::Deserialize;

use crate::geometry::BBox;
use crate::person::Person;

/// How a track's position is predicted before matching (`tracker.motion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotionModel {
    /// A track is matched where it was last seen.
    #[default]
    None,
    /// A track is matched where its smoothed velocity has carried it.
    ConstantVelocity,
}

/// Weight of the newest displacement in the smoothed velocity: one bad pose cannot fling a
/// track away, and a change of direction is followed within a few frames.
const SMOOTHING: f32 = 0.5;

/// A track's velocity: pixels per frame of its box centre.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Velocity {
    dx: f32,
    dy: f32,
    known: bool,
}

impl Velocity {
    /// Takes in that the track moved from `before` to `now` over `frames` frames.
    pub fn observe(&mut self, before: &BBox, now: &BBox, frames: u32) {
        let frames = frames.max(1) as f32;
        let (bx, by) = before.center();
        let (nx, ny) = now.center();
        let (dx, dy) = ((nx - bx) / frames, (ny - by) / frames);
        if !(dx.is_finite() && dy.is_finite()) {
            return;
        }
        if self.known {
            self.dx += SMOOTHING * (dx - self.dx);
            self.dy += SMOOTHING * (dy - self.dy);
        } else {
            (self.dx, self.dy, self.known) = (dx, dy, true);
        }
    }

    /// `last` moved on by `frames` frames of this velocity (unchanged before a second sighting).
    pub fn predict(&self, last: &Person, frames: u32) -> Person {
        let mut moved = last.clone();
        if !self.known {
            return moved;
        }
        let (sx, sy) = (self.dx * frames as f32, self.dy * frames as f32);
        let b = &mut moved.bbox;
        (b.x1, b.y1, b.x2, b.y2) = (b.x1 + sx, b.y1 + sy, b.x2 + sx, b.y2 + sy);
        for k in moved.keypoints.iter_mut().flatten() {
            k.x += sx;
            k.y += sy;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::person::{Keypoint, NUM_KEYPOINTS};

    fn at(x: f32) -> Person {
        let mut p = Person::from_box(BBox::new(x, 10.0, x + 20.0, 50.0), 1.0);
        p.keypoints = Some(
            [Keypoint {
                x: x + 10.0,
                y: 30.0,
                score: 0.9,
            }; NUM_KEYPOINTS],
        );
        p
    }

    #[test]
    fn predicts_along_the_smoothed_velocity() {
        let mut v = Velocity::default();
        assert_eq!(
            v.predict(&at(0.0), 3),
            at(0.0),
            "no velocity before a second sighting"
        );
        v.observe(&at(0.0).bbox, &at(8.0).bbox, 2);
        assert_eq!(v.predict(&at(8.0), 1), at(12.0));
        // A sudden stop halves the velocity, not more.
        v.observe(&at(8.0).bbox, &at(8.0).bbox, 1);
        let p = v.predict(&at(8.0), 2);
        assert_eq!(p, at(12.0));
        assert_eq!(p.keypoints.unwrap()[5].x, 22.0);
    }

    #[test]
    fn ignores_degenerate_boxes() {
        let mut v = Velocity::default();
        v.observe(&BBox::new(f32::NAN, 0.0, 1.0, 1.0), &at(0.0).bbox, 1);
        assert_eq!(v.predict(&at(0.0), 1), at(0.0));
    }
}
