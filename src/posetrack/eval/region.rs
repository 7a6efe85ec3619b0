//! Ignore regions: polygons of a GT frame inside which nothing is scored.

/// A closed polygon (the last vertex joins the first).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Polygon {
    vertices: Vec<(f64, f64)>,
}

impl Polygon {
    /// `None` for fewer than 3 vertices, which shapely (and so poseval) refuses.
    pub fn new(vertices: Vec<(f64, f64)>) -> Option<Self> {
        (vertices.len() >= 3).then_some(Self { vertices })
    }

    /// Strictly inside, as shapely's `contains`: a point on the boundary is outside. Even-odd rule,
    /// which is also what GEOS's point locator gives for a self-intersecting ring.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let n = self.vertices.len();
        let mut inside = false;
        for i in 0..n {
            let (x1, y1) = self.vertices[i];
            let (x2, y2) = self.vertices[(i + 1) % n];
            if on_segment(x, y, x1, y1, x2, y2) {
                return false;
            }
            // Half-open rule on y so that a vertex on the ray is counted once.
            if (y1 > y) != (y2 > y) {
                let cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1);
                if x < cross_x {
                    inside = !inside;
                }
            }
        }
        inside
    }
}

fn on_segment(x: f64, y: f64, x1: f64, y1: f64, x2: f64, y2: f64) -> bool {
    let cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1);
    cross == 0.0 && x >= x1.min(x2) && x <= x1.max(x2) && y >= y1.min(y2) && y <= y1.max(y2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_containment() {
        let sq = Polygon::new(vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]).unwrap();
        assert!(sq.contains(5.0, 5.0));
        assert!(!sq.contains(10.0, 5.0), "edge");
        assert!(!sq.contains(0.0, 0.0), "vertex");
        assert!(!sq.contains(11.0, 5.0));
        assert!(!sq.contains(5.0, -0.1));
        let tri = Polygon::new(vec![(0.0, 0.0), (10.0, 0.0), (5.0, 10.0)]).unwrap();
        assert!(tri.contains(5.0, 5.0));
        assert!(!tri.contains(2.5, 5.0), "on the slanted edge");
        assert!(!tri.contains(1.0, 8.0));
        // A ray through a vertex.
        let diamond = Polygon::new(vec![(5.0, 0.0), (10.0, 5.0), (5.0, 10.0), (0.0, 5.0)]).unwrap();
        assert!(diamond.contains(2.0, 5.0));
        assert!(!diamond.contains(-1.0, 5.0));
        assert!(Polygon::new(vec![(0.0, 0.0), (1.0, 1.0)]).is_none());
    }
}
