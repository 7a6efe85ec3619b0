//! Synthetic tracking sequences made from real PoseTrack 2018 poses.
//!
//! The real person poses of `samples/posetrack18/annotations/val/*.json` are normalised around
//! their own centre and moved along scripted paths (smooth walks, abrupt jumps, crossings,
//! occlusions, people leaving the frame and coming back). Each sequence is written as
//!
//! * `images/val/<seq>/000000.png ...`: grey frames whose first pixel holds the sequence index and
//!   the frame number, so a fake pose model knows which frame it is looking at;
//! * `gt/<seq>.json` (and `gt_by_seq/<seq>/<seq>.json`): the ground truth, PoseTrack 2018 JSON;
//! * `detections.json` + `images.json`: COCO detection results (the GT boxes with jitter, misses
//!   that grow with occlusion, low-scoring false positives) and the image list mapping their ids
//!   to frames, as `detector.boxes` / `detector.boxes_images` read them.
//!
//! [`SyntheticPoseModel`] plays HRNet: for a box it returns the keypoints of the GT person the box
//! overlaps best, with noise, low scores on occluded joints, and sometimes the occluder's pose for
//! an occluded person. Everything is deterministic: every random draw comes from a
//! [`Rng`] seeded from fixed numbers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::person::Keypoint;
use vidpose::posetrack::{Category, PoseTrackFile};

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;
const NUM_KP: usize = 17;
/// Background grey level of the frames.
const BACKGROUND: u8 = 96;

// PoseTrack 2018 keypoint slots.
const NOSE: usize = 0;
const HEAD_BOTTOM: usize = 1;
const HEAD_TOP: usize = 2;
const LEFT_EAR: usize = 3;
const RIGHT_EAR: usize = 4;
/// Elbows, wrists, knees, ankles: the joints that swing while walking.
const LIMBS: [usize; 8] = [7, 8, 9, 10, 13, 14, 15, 16];

/// splitmix64: a tiny, good-enough deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from several numbers (sequence, frame, ...).
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut r = Rng(0x5EED_0F7E_A5A5);
        for &p in parts {
            r.0 ^= p;
            r.next_u64();
        }
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// A real pose normalised around its centre: the centre of its keypoints' extent is (0, 0) and
/// the extent is 1 high. Joints the annotation lacks are filled in from the most complete pose.
#[derive(Debug, Clone)]
pub struct Template {
    /// `<file stem>#<annotation index>`.
    pub source: String,
    pub joints: [[f64; 2]; NUM_KP],
    /// Head box `x1, y1, x2, y2`, normalised the same way.
    pub head: [f64; 4],
}

/// The real poses of `samples/posetrack18/annotations/val`, in file and annotation order; poses
/// much wider than tall (close-ups, people lying down) are left out.
pub fn load_templates() -> Vec<Template> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/posetrack18/annotations/val");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    type Raw = (String, [Option<[f64; 2]>; NUM_KP], [f64; 4]);
    let mut raw: Vec<Raw> = Vec::new();
    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let doc = PoseTrackFile::read(file).unwrap();
        for (n, a) in doc.annotations.iter().enumerate() {
            let (Some(k), Some(h)) = (&a.keypoints, a.bbox_head) else {
                continue;
            };
            let mut joints = [None; NUM_KP];
            for (j, joint) in joints.iter_mut().enumerate() {
                if k[3 * j + 2] > 0.0 {
                    *joint = Some([k[3 * j], k[3 * j + 1]]);
                }
            }
            raw.push((
                format!("{stem}#{n}"),
                joints,
                [h[0], h[1], h[0] + h[2], h[1] + h[3]],
            ));
        }
    }
    assert!(!raw.is_empty(), "no poses in {}", dir.display());
    let count = |j: &[Option<[f64; 2]>; NUM_KP]| j.iter().filter(|p| p.is_some()).count();
    let donor = raw
        .iter()
        .max_by_key(|(_, j, _)| count(j))
        .map(|(_, j, _)| *j)
        .unwrap();
    let mut out = Vec::new();
    for (source, mut joints, head) in raw {
        fill_from_donor(&mut joints, &donor);
        fill_ears(&mut joints);
        let Some(joints) = all_present(&joints) else {
            continue;
        };
        let (lo_x, hi_x) = min_max(joints.iter().map(|p| p[0]));
        let (lo_y, hi_y) = min_max(joints.iter().map(|p| p[1]));
        let (w, h) = (hi_x - lo_x, hi_y - lo_y);
        if h <= 0.0 || w > 1.1 * h {
            continue;
        }
        let (cx, cy) = ((lo_x + hi_x) / 2.0, (lo_y + hi_y) / 2.0);
        let norm = |p: [f64; 2]| [(p[0] - cx) / h, (p[1] - cy) / h];
        let mut n = [[0.0; 2]; NUM_KP];
        for (dst, src) in n.iter_mut().zip(joints) {
            *dst = norm(src);
        }
        let (a, b) = (norm([head[0], head[1]]), norm([head[2], head[3]]));
        out.push(Template {
            source,
            joints: n,
            head: [a[0], a[1], b[0], b[1]],
        });
    }
    out
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

fn all_present(joints: &[Option<[f64; 2]>; NUM_KP]) -> Option<[[f64; 2]; NUM_KP]> {
    let mut out = [[0.0; 2]; NUM_KP];
    for (o, j) in out.iter_mut().zip(joints) {
        *o = (*j)?;
    }
    Some(out)
}

/// Missing joints (ears aside) from `donor`, scaled and shifted to fit the joints both have
/// (least squares).
fn fill_from_donor(joints: &mut [Option<[f64; 2]>; NUM_KP], donor: &[Option<[f64; 2]>; NUM_KP]) {
    let common: Vec<([f64; 2], [f64; 2])> = (0..NUM_KP)
        .filter(|&j| j != LEFT_EAR && j != RIGHT_EAR)
        .filter_map(|j| Some((donor[j]?, joints[j]?)))
        .collect();
    if common.len() < 2 {
        return;
    }
    let n = common.len() as f64;
    let mean = |pick: fn(&([f64; 2], [f64; 2])) -> f64| common.iter().map(pick).sum::<f64>() / n;
    let (dx, dy) = (mean(|c| c.0[0]), mean(|c| c.0[1]));
    let (tx, ty) = (mean(|c| c.1[0]), mean(|c| c.1[1]));
    let num: f64 = common
        .iter()
        .map(|(d, t)| (d[0] - dx) * (t[0] - tx) + (d[1] - dy) * (t[1] - ty))
        .sum();
    let den: f64 = common
        .iter()
        .map(|(d, _)| (d[0] - dx).powi(2) + (d[1] - dy).powi(2))
        .sum();
    if den <= 0.0 {
        return;
    }
    let s = num / den;
    for j in 0..NUM_KP {
        if j == LEFT_EAR || j == RIGHT_EAR || joints[j].is_some() {
            continue;
        }
        if let Some(d) = donor[j] {
            joints[j] = Some([tx + s * (d[0] - dx), ty + s * (d[1] - dy)]);
        }
    }
}

/// Ears beside the middle of the head (PoseTrack annotates none).
fn fill_ears(joints: &mut [Option<[f64; 2]>; NUM_KP]) {
    let (Some(top), Some(bottom)) = (joints[HEAD_TOP], joints[HEAD_BOTTOM]) else {
        return;
    };
    let mid = [(top[0] + bottom[0]) / 2.0, (top[1] + bottom[1]) / 2.0];
    let half = 0.3 * (top[0] - bottom[0]).hypot(top[1] - bottom[1]);
    joints[LEFT_EAR].get_or_insert([mid[0] + half, mid[1]]);
    joints[RIGHT_EAR].get_or_insert([mid[0] - half, mid[1]]);
    let _ = NOSE;
}

/// A centre path: `None` where the person is not in the scene at all.
pub type Path2 = Box<dyn Fn(usize) -> Option<(f64, f64)>>;

/// Straight lines between `(frame, x, y)` points (frames ascending); two points on consecutive
/// frames make a jump. Absent before the first point and after the last.
pub fn waypoints(points: &[(usize, f64, f64)]) -> Path2 {
    let points = points.to_vec();
    Box::new(move |f| {
        let first = points.first()?;
        let last = points.last()?;
        if f < first.0 || f > last.0 {
            return None;
        }
        let i = points.iter().rposition(|p| p.0 <= f)?;
        let a = points[i];
        let Some(&b) = points.get(i + 1) else {
            return Some((a.1, a.2));
        };
        let t = (f - a.0) as f64 / (b.0 - a.0) as f64;
        Some((a.1 + t * (b.1 - a.1), a.2 + t * (b.2 - a.2)))
    })
}

/// An actor of a scenario.
pub struct Actor {
    /// Index into the templates (modulo their count).
    pub template: usize,
    /// Height of the person's keypoint extent in pixels.
    pub height: f64,
    /// Larger is nearer the camera: a nearer person occludes a farther one.
    pub depth: f64,
    pub path: Path2,
}

fn actor(template: usize, height: f64, depth: f64, path: Path2) -> Actor {
    Actor {
        template,
        height,
        depth,
        path,
    }
}

/// A scripted sequence.
pub struct Scenario {
    pub name: &'static str,
    pub frames: usize,
    pub actors: Vec<Actor>,
}

/// The scenarios, one sequence each.
pub fn scenarios() -> Vec<Scenario> {
    use std::f64::consts::TAU;
    vec![
        // Three people apart from each other on smooth paths: tracking should be near perfect.
        Scenario {
            name: "smooth",
            frames: 80,
            actors: vec![
                actor(
                    0,
                    130.0,
                    0.0,
                    waypoints(&[(0, 60.0, 170.0), (79, 200.0, 190.0)]),
                ),
                actor(
                    1,
                    150.0,
                    0.0,
                    Box::new(|f| {
                        let t = f as f64;
                        Some((
                            330.0 + 45.0 * (TAU * t / 50.0).sin(),
                            180.0 + 15.0 * (TAU * t / 25.0).sin(),
                        ))
                    }),
                ),
                actor(
                    2,
                    120.0,
                    0.0,
                    waypoints(&[(0, 600.0, 150.0), (79, 500.0, 230.0)]),
                ),
            ],
        },
        // Sudden jumps, direction reversals and a fast walker.
        Scenario {
            name: "abrupt",
            frames: 80,
            actors: vec![
                actor(
                    3,
                    140.0,
                    0.0,
                    waypoints(&[
                        (0, 60.0, 150.0),
                        (24, 156.0, 150.0),
                        (25, 206.0, 150.0), // a 50 px jump
                        (49, 302.0, 150.0),
                        (79, 122.0, 150.0), // reversal at 6 px/frame
                    ]),
                ),
                actor(
                    4,
                    130.0,
                    0.0,
                    waypoints(&[
                        (0, 480.0, 160.0),
                        (29, 490.0, 160.0),
                        (30, 425.0, 150.0), // a 65 px jump
                        (54, 430.0, 150.0),
                        (55, 510.0, 165.0), // an 80 px jump back
                        (79, 520.0, 160.0),
                    ]),
                ),
                actor(
                    5,
                    90.0,
                    0.0,
                    waypoints(&[
                        (0, 20.0, 300.0),
                        (50, 620.0, 300.0), // 12 px/frame
                        (55, 600.0, 300.0),
                        (79, 300.0, 300.0), // 12.5 px/frame back
                    ]),
                ),
            ],
        },
        // Two people walking through each other, and past a slow third one.
        Scenario {
            name: "crossing",
            frames: 90,
            actors: vec![
                actor(
                    6,
                    150.0,
                    1.0,
                    waypoints(&[(0, 40.0, 185.0), (89, 600.0, 185.0)]),
                ),
                actor(
                    7,
                    140.0,
                    0.0,
                    waypoints(&[(0, 600.0, 175.0), (89, 40.0, 175.0)]),
                ),
                actor(
                    8,
                    125.0,
                    0.5,
                    waypoints(&[(0, 220.0, 195.0), (89, 350.0, 190.0)]),
                ),
            ],
        },
        // A near person walking in front of a standing one, twice.
        Scenario {
            name: "occlusion",
            frames: 90,
            actors: vec![
                actor(
                    9,
                    125.0,
                    0.0,
                    Box::new(|f| Some((300.0 + 5.0 * (f as f64 * 0.2).sin(), 175.0))),
                ),
                actor(
                    10,
                    165.0,
                    1.0,
                    waypoints(&[(0, 140.0, 195.0), (89, 440.0, 195.0)]),
                ),
                actor(
                    11,
                    110.0,
                    0.0,
                    Box::new(|f| Some((560.0, 150.0 + 3.0 * (f as f64 * 0.3).sin()))),
                ),
                actor(
                    12,
                    150.0,
                    1.0,
                    waypoints(&[(20, 690.0, 170.0), (89, 520.0, 170.0)]),
                ),
            ],
        },
        // Runners passing behind people standing nearer the camera: hidden (and mostly missed)
        // for a few frames while they cover 17-19 px a frame, so they come out far from where
        // they were last seen.
        Scenario {
            name: "fast_hidden",
            frames: 70,
            actors: vec![
                actor(
                    2,
                    170.0,
                    1.0,
                    Box::new(|f| Some((230.0, 190.0 + 2.0 * (f as f64 * 0.2).sin()))),
                ),
                actor(3, 165.0, 1.0, Box::new(|_| Some((430.0, 185.0)))),
                actor(
                    4,
                    120.0,
                    0.0,
                    waypoints(&[(0, 40.0, 170.0), (30, 570.0, 170.0), (69, 600.0, 172.0)]),
                ),
                actor(
                    5,
                    115.0,
                    0.0,
                    waypoints(&[
                        (0, 600.0, 160.0),
                        (28, 600.0, 160.0),
                        (58, 40.0, 160.0),
                        (69, 40.0, 162.0),
                    ]),
                ),
            ],
        },
        // People leaving the frame and coming back: after ~12 frames on the right, after ~4 on
        // the left.
        Scenario {
            name: "exit_reenter",
            frames: 100,
            actors: vec![
                actor(
                    13,
                    130.0,
                    0.0,
                    waypoints(&[
                        (0, 480.0, 180.0),
                        (20, 680.0, 180.0),
                        (26, 680.0, 180.0),
                        (50, 480.0, 185.0),
                        (99, 560.0, 180.0),
                    ]),
                ),
                actor(
                    0,
                    120.0,
                    0.0,
                    waypoints(&[
                        (0, 150.0, 200.0),
                        (12, -30.0, 200.0),
                        (14, -30.0, 200.0),
                        (26, 150.0, 200.0),
                        (99, 220.0, 195.0),
                    ]),
                ),
                actor(
                    1,
                    140.0,
                    0.0,
                    Box::new(|f| Some((340.0, 170.0 + 4.0 * (f as f64 * 0.15).sin()))),
                ),
            ],
        },
    ]
}

/// One ground-truth person in one frame.
#[derive(Debug, Clone)]
pub struct GtPerson {
    pub track_id: i64,
    pub joints: [[f64; 2]; NUM_KP],
    /// Inside the frame (the others are not annotated).
    pub labelled: [bool; NUM_KP],
    /// Covered by a nearer person's box.
    pub occluded: [bool; NUM_KP],
    /// The visible box `x1, y1, x2, y2` (clipped to the frame).
    pub bbox: [f64; 4],
    pub head: [f64; 4],
    /// Largest fraction of the box covered by one nearer person.
    pub occlusion: f64,
    /// The track id of the person covering most of this one, if any.
    pub occluder: Option<i64>,
    pub height: f64,
}

/// One generated sequence.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// `9000NN_mpii_test`.
    pub name: String,
    pub scenario: &'static str,
    pub number: u64,
    pub frames: Vec<Vec<GtPerson>>,
}

impl Sequence {
    pub fn image_id(&self, frame: usize) -> u64 {
        10_000_000_000 + self.number * 10_000 + frame as u64
    }

    pub fn file_name(&self, frame: usize) -> String {
        format!("images/val/{}/{frame:06}.png", self.name)
    }
}

/// Noise and error rates of the fake detector.
#[derive(Debug, Clone)]
pub struct DetectorNoise {
    /// Miss probability of an unoccluded person.
    pub miss: f64,
    /// Added to the miss probability at full occlusion (linearly from 30 % covered).
    pub occluded_miss: f64,
    /// Box centre and size jitter, as a fraction of the box size (standard deviation).
    pub jitter: f64,
    /// Expected false positives per frame.
    pub false_positives: f64,
}

impl Default for DetectorNoise {
    fn default() -> Self {
        Self {
            miss: 0.03,
            occluded_miss: 0.9,
            jitter: 0.04,
            false_positives: 0.15,
        }
    }
}

/// A generated data set on disk.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    /// `images/val`: one numbered-PNG folder per sequence.
    pub images: PathBuf,
    pub gt_dir: PathBuf,
    /// Per sequence: `(scenario, folder holding only its GT file)`.
    pub gt_by_scenario: Vec<(String, PathBuf)>,
    pub detections: PathBuf,
    pub images_file: PathBuf,
    pub sequences: Arc<Vec<Sequence>>,
    pub seed: u64,
}

/// The ground truth of one scenario, frame by frame.
pub fn simulate(scenario: &Scenario, number: u64, templates: &[Template]) -> Sequence {
    let (fw, fh) = (WIDTH as f64, HEIGHT as f64);
    let mut frames = Vec::with_capacity(scenario.frames);
    for f in 0..scenario.frames {
        // Every actor's full (unclipped) pose and box.
        let mut placed = Vec::new();
        for (id, a) in scenario.actors.iter().enumerate() {
            let Some((cx, cy)) = (a.path)(f) else {
                continue;
            };
            let t = &templates[a.template % templates.len()];
            let h = a.height;
            let mut joints = [[0.0; 2]; NUM_KP];
            for (j, out) in joints.iter_mut().enumerate() {
                // Limbs swing a little, left and right in opposite phase.
                let swing = if LIMBS.contains(&j) {
                    let phase = if j % 2 == 1 {
                        0.0
                    } else {
                        std::f64::consts::PI
                    };
                    0.03 * h * (phase + 0.35 * f as f64 + id as f64).sin()
                } else {
                    0.0
                };
                *out = [cx + h * t.joints[j][0] + swing, cy + h * t.joints[j][1]];
            }
            let (lo_x, hi_x) = min_max(joints.iter().map(|p| p[0]));
            let (lo_y, hi_y) = min_max(joints.iter().map(|p| p[1]));
            let pad = 0.08 * h;
            let full = [lo_x - pad, lo_y - pad, hi_x + pad, hi_y + pad];
            let head = [
                cx + h * t.head[0],
                cy + h * t.head[1],
                cx + h * t.head[2],
                cy + h * t.head[3],
            ];
            placed.push((id as i64, a.depth, h, joints, full, head));
        }
        let mut people = Vec::new();
        for &(id, depth, h, joints, full, head) in &placed {
            let clipped = [
                full[0].max(0.0),
                full[1].max(0.0),
                full[2].min(fw),
                full[3].min(fh),
            ];
            let area = |b: &[f64; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
            if area(&clipped) < 0.25 * area(&full) {
                continue;
            }
            let labelled: [bool; NUM_KP] = std::array::from_fn(|j| {
                let [x, y] = joints[j];
                (0.0..fw).contains(&x) && (0.0..fh).contains(&y)
            });
            if labelled.iter().filter(|&&l| l).count() < 3 {
                continue;
            }
            let mut occluded = [false; NUM_KP];
            let mut occlusion = 0.0;
            let mut occluder = None;
            for &(other, other_depth, _, _, other_full, _) in &placed {
                if other == id || other_depth <= depth {
                    continue;
                }
                let inter = [
                    clipped[0].max(other_full[0]),
                    clipped[1].max(other_full[1]),
                    clipped[2].min(other_full[2]),
                    clipped[3].min(other_full[3]),
                ];
                let covered = area(&inter) / area(&clipped);
                if covered > occlusion {
                    occlusion = covered;
                    occluder = Some(other);
                }
                for (j, o) in occluded.iter_mut().enumerate() {
                    let [x, y] = joints[j];
                    *o |= (other_full[0]..other_full[2]).contains(&x)
                        && (other_full[1]..other_full[3]).contains(&y);
                }
            }
            people.push(GtPerson {
                track_id: id,
                joints,
                labelled,
                occluded,
                bbox: clipped,
                head,
                occlusion,
                occluder: occluder.filter(|_| occlusion > 0.0),
                height: h,
            });
        }
        frames.push(people);
    }
    Sequence {
        name: format!("{number:06}_mpii_test"),
        scenario: scenario.name,
        number,
        frames,
    }
}

/// The frame image: grey, with the sequence index and the frame number in the first pixel.
pub fn frame_image(sequence_index: usize, frame: usize) -> RgbImage {
    let mut img = RgbImage::new(WIDTH, HEIGHT);
    img.data.fill(BACKGROUND);
    img.put_pixel(
        0,
        0,
        [
            sequence_index as u8,
            (frame >> 8) as u8,
            (frame & 0xff) as u8,
        ],
    );
    img
}

/// `(sequence index, frame)` read back from a frame image.
pub fn frame_of(img: &RgbImage) -> (usize, usize) {
    let p = img.pixel(0, 0).expect("an empty image");
    (p[0] as usize, ((p[1] as usize) << 8) | p[2] as usize)
}

fn write_png(path: &Path, img: &RgbImage) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&img.data).unwrap();
    w.finish().unwrap();
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn xywh(b: &[f64; 4]) -> [f64; 4] {
    [
        round2(b[0]),
        round2(b[1]),
        round2(b[2] - b[0]),
        round2(b[3] - b[1]),
    ]
}

fn image_json(seq: &Sequence, f: usize) -> serde_json::Value {
    json!({
        "id": seq.image_id(f),
        "frame_id": seq.image_id(f),
        "vid_id": format!("{:06}", seq.number),
        "nframes": seq.frames.len(),
        "file_name": seq.file_name(f),
        "is_labeled": true,
        "width": WIDTH,
        "height": HEIGHT,
    })
}

/// The sequence's ground truth as a PoseTrack 2018 file.
pub fn gt_json(seq: &Sequence) -> serde_json::Value {
    let images: Vec<_> = (0..seq.frames.len()).map(|f| image_json(seq, f)).collect();
    let mut annotations = Vec::new();
    for (f, people) in seq.frames.iter().enumerate() {
        for (k, p) in people.iter().enumerate() {
            let mut kp = Vec::with_capacity(3 * NUM_KP);
            for j in 0..NUM_KP {
                if p.labelled[j] {
                    kp.extend([round2(p.joints[j][0]), round2(p.joints[j][1]), 1.0]);
                } else {
                    kp.extend([0.0, 0.0, 0.0]);
                }
            }
            annotations.push(json!({
                "image_id": seq.image_id(f),
                "id": seq.image_id(f) * 100 + k as u64,
                "track_id": p.track_id,
                "keypoints": kp,
                "bbox": xywh(&p.bbox),
                "bbox_head": xywh(&p.head),
                "scores": [],
                "category_id": 1,
            }));
        }
    }
    json!({"images": images, "annotations": annotations, "categories": [Category::person()]})
}

/// The fake detector's output for one frame: `(xywh, score)`.
pub fn detect(
    person_boxes: &[(&[f64; 4], f64)],
    noise: &DetectorNoise,
    rng: &mut Rng,
) -> Vec<([f64; 4], f64)> {
    let mut out = Vec::new();
    for &(b, occlusion) in person_boxes {
        let miss = noise.miss + noise.occluded_miss * ((occlusion - 0.3) / 0.5).clamp(0.0, 1.0);
        if rng.chance(miss) {
            continue;
        }
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        let cx = (b[0] + b[2]) / 2.0 + noise.jitter * w * rng.normal();
        let cy = (b[1] + b[3]) / 2.0 + noise.jitter * h * rng.normal();
        let w = w * (1.0 + noise.jitter * rng.normal()).max(0.5);
        let h = h * (1.0 + noise.jitter * rng.normal()).max(0.5);
        let score = (0.93 - 0.4 * occlusion + 0.04 * rng.normal()).clamp(0.41, 0.999);
        out.push(([cx - w / 2.0, cy - h / 2.0, w, h], score));
    }
    // False positives: Poisson-ish, a few above the default 0.4 score threshold.
    let mut budget = noise.false_positives;
    while budget > 0.0 && rng.chance(budget.min(1.0)) {
        budget -= 1.0;
        let h = rng.range(50.0, 160.0);
        let w = h * rng.range(0.3, 0.6);
        let x = rng.range(0.0, WIDTH as f64 - w);
        let y = rng.range(0.0, HEIGHT as f64 - h);
        out.push(([x, y, w, h], rng.range(0.15, 0.6)));
    }
    out
}

/// Writes every scenario under `root` with detections made with `noise`.
pub fn generate(root: &Path, seed: u64, noise: &DetectorNoise) -> Dataset {
    let templates = load_templates();
    assert!(templates.len() >= 8, "{} usable poses", templates.len());
    let images = root.join("images/val");
    let gt_dir = root.join("gt");
    std::fs::create_dir_all(&gt_dir).unwrap();
    let mut sequences = Vec::new();
    let mut gt_by_scenario = Vec::new();
    let mut all_images = Vec::new();
    let mut detections = Vec::new();
    for (s, scenario) in scenarios().iter().enumerate() {
        let seq = simulate(scenario, 900_001 + s as u64, &templates);
        let dir = images.join(&seq.name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..seq.frames.len() {
            write_png(&dir.join(format!("{f:06}.png")), &frame_image(s, f));
            all_images.push(image_json(&seq, f));
            let boxes: Vec<_> = seq.frames[f]
                .iter()
                .map(|p| (&p.bbox, p.occlusion))
                .collect();
            let mut rng = Rng::from_parts(&[seed, 1, s as u64, f as u64]);
            for (bbox, score) in detect(&boxes, noise, &mut rng) {
                detections.push(json!({
                    "image_id": seq.image_id(f),
                    "category_id": 1,
                    "bbox": bbox.map(round2),
                    "score": (score * 1e4).round() / 1e4,
                }));
            }
        }
        let gt = serde_json::to_vec(&gt_json(&seq)).unwrap();
        let file = format!("{}.json", seq.name);
        std::fs::write(gt_dir.join(&file), &gt).unwrap();
        let alone = root.join("gt_by_seq").join(&seq.name);
        std::fs::create_dir_all(&alone).unwrap();
        std::fs::write(alone.join(&file), &gt).unwrap();
        gt_by_scenario.push((scenario.name.to_string(), alone));
        sequences.push(seq);
    }
    let images_file = root.join("images.json");
    std::fs::write(
        &images_file,
        serde_json::to_vec(
            &json!({"images": all_images, "annotations": [], "categories": [Category::person()]}),
        )
        .unwrap(),
    )
    .unwrap();
    let detections_file = root.join("detections.json");
    std::fs::write(&detections_file, serde_json::to_vec(&detections).unwrap()).unwrap();
    Dataset {
        root: root.to_path_buf(),
        images,
        gt_dir,
        gt_by_scenario,
        detections: detections_file,
        images_file,
        sequences: Arc::new(sequences),
        seed,
    }
}

/// A pose "model" that knows the ground truth: see the module documentation.
pub struct SyntheticPoseModel {
    pub sequences: Arc<Vec<Sequence>>,
    pub seed: u64,
    /// Probability that an occluded person's box gets the occluder's pose (above 50 % covered).
    pub confusion: f64,
}

impl SyntheticPoseModel {
    pub fn new(dataset: &Dataset) -> Self {
        Self {
            sequences: dataset.sequences.clone(),
            seed: dataset.seed,
            confusion: 0.3,
        }
    }

    fn one(&self, img: &RgbImage, bbox: BBox) -> [Keypoint; NUM_KP] {
        let (s, f) = frame_of(img);
        let people: &[GtPerson] = self
            .sequences
            .get(s)
            .and_then(|seq| seq.frames.get(f))
            .map_or(&[], |v| v.as_slice());
        // Seeded by the frame and the box alone, so batching cannot change the result.
        let mut rng = Rng::from_parts(&[
            self.seed,
            2,
            s as u64,
            f as u64,
            bbox.x1.to_bits() as u64,
            bbox.y1.to_bits() as u64,
            bbox.x2.to_bits() as u64,
            bbox.y2.to_bits() as u64,
        ]);
        let as_box = |b: &[f64; 4]| BBox::new(b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32);
        let best = people
            .iter()
            .map(|p| (p, as_box(&p.bbox).iou(&bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|(_, iou)| *iou >= 0.3)
            .map(|(p, _)| p);
        let Some(mut person) = best else {
            // Nobody there: weak keypoints spread over the box.
            return std::array::from_fn(|_| Keypoint {
                x: rng.range(bbox.x1 as f64, bbox.x2 as f64) as f32,
                y: rng.range(bbox.y1 as f64, bbox.y2 as f64) as f32,
                score: rng.range(0.05, 0.35) as f32,
            });
        };
        // A mostly hidden person's crop is dominated by the one in front.
        if person.occlusion > 0.5 && rng.chance(self.confusion) {
            if let Some(front) = person
                .occluder
                .and_then(|id| people.iter().find(|p| p.track_id == id))
            {
                person = front;
            }
        }
        let h = person.height;
        std::array::from_fn(|j| {
            let [x, y] = person.joints[j];
            let (sigma, lo, hi) = if !person.labelled[j] {
                (0.03, 0.05, 0.25)
            } else if person.occluded[j] {
                (0.06, 0.1, 0.45)
            } else {
                (0.015, 0.7, 0.97)
            };
            let mut x = x + sigma * h * rng.normal();
            let mut y = y + sigma * h * rng.normal();
            if !person.labelled[j] {
                x = x.clamp(0.0, WIDTH as f64 - 1.0);
                y = y.clamp(0.0, HEIGHT as f64 - 1.0);
            }
            Keypoint {
                x: x as f32,
                y: y as f32,
                score: rng.range(lo, hi) as f32,
            }
        })
    }
}

impl vidpose::stages::pose::PoseModel for SyntheticPoseModel {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; NUM_KP]>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(items.iter().map(|(img, b)| self.one(img, *b)).collect())
    }
}
