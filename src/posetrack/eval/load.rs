//! Reading a ground-truth and a prediction folder into the evaluator's frames, cleaned as
//! poseval's `load_data_dir` does it (`poseval/eval_helpers.py`):
//!
//! * sequences are the GT folder's `*.json` files (sorted by name); the prediction with the same
//!   file name must exist;
//! * frames are paired by **position**, not by image id; the counts must agree;
//! * keypoints are converted to poseval's 15 joints by category name (ears dropped), and a keypoint
//!   written `x == 0 && y == 0 && v == 0` is no keypoint;
//! * frames whose GT has no person are dropped together with the prediction frame at that index;
//! * in frames with ignore regions, every GT and predicted point strictly inside a region is removed,
//!   and so is a person left without points.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::region::Polygon;
use super::{EvalError, JOINT_NAMES, NUM_JOINTS};
use crate::posetrack::{Annotation, Image, PoseTrackFile};

/// poseval makes track ids global by adding `sequence index × 10000`; ids must stay below it.
pub const MAX_TRACK_ID: i64 = 10_000;

/// The 2018 keypoint names of poseval's 15 joints, in poseval's joint order: its own names,
/// except that the joint it calls "neck" is the 2018 "head_bottom".
const JOINT_SOURCE_NAMES: [&str; NUM_JOINTS] = {
    const NECK: usize = 12;
    let mut names = JOINT_NAMES;
    names[NECK] = "head_bottom";
    names
};

/// What is wrong in a ground-truth or prediction file ([`EvalError::Invalid`] names the file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidFile {
    /// `categories` does not hold exactly one entry; the count found.
    #[error("`categories` must hold exactly one entry (the PoseTrack `person`), found {0}")]
    CategoryCount(usize),
    /// The single category is not named `person`; the name found.
    #[error("the category is named {0:?}, expected \"person\"")]
    CategoryName(String),
    /// The category's `keypoints` list is not 17 names long; the length found.
    #[error("the category lists {0} keypoints, expected the 17 PoseTrack 2018 names")]
    KeypointCount(usize),
    /// A keypoint name poseval scores (2018 naming, e.g. `head_bottom`) is not in the category.
    #[error("the category's keypoints lack {0:?}")]
    MissingKeypoint(&'static str),
    /// An image's `file_name` is not a PoseTrack frame path poseval can take ids from.
    #[error("images[{index}].file_name {file_name:?}: {problem}")]
    FileName {
        /// Position of the image in `images`.
        index: usize,
        /// The `file_name` as written.
        file_name: String,
        /// What is wrong with it.
        problem: FrameNameError,
    },
    /// A person (entry of `annotations`) lacks something the evaluation needs.
    #[error("annotations[{index}]: {problem}")]
    Person {
        /// Position of the person in `annotations`.
        index: usize,
        /// What it lacks.
        problem: PersonError,
    },
    /// Two predicted people of one frame share a `track_id`.
    #[error(
        "track_id {track_id} appears twice in frame {frame} ({file_name}); track ids must be \
         unique per frame"
    )]
    DuplicateTrackId {
        /// The repeated `track_id`, as written in the file.
        track_id: i64,
        /// Position of the frame among the sequence's images.
        frame: usize,
        /// The frame's `file_name`.
        file_name: String,
    },
    /// A ground-truth ignore region (`ignore_regions_x`/`_y`) has fewer than 3 points.
    #[error(
        "images[{index}]: ignore region {region} has fewer than 3 points (poseval cannot read it)"
    )]
    IgnoreRegion {
        /// Position of the frame among the sequence's images.
        index: usize,
        /// Position of the region in the image's ignore-region lists.
        region: usize,
    },
}

/// Why a frame's `file_name` is not one poseval can derive ids from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameNameError {
    /// The folder name does not start with digits followed by `_`.
    #[error("the folder name must start with the sequence number (e.g. 000342_mpii_test)")]
    SequenceNumber,
    /// The folder name's second `_`-separated part is not `mpii`, `bonn` or `mpiinew`.
    #[error("the folder name's source must be mpii, bonn or mpiinew")]
    Source,
    /// The file name (before the first `.`) is not a number below 10000.
    #[error("the file name must be the frame number below 10000 (e.g. 000012.jpg)")]
    FrameNumber,
}

/// What is wrong with one person (annotation) of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    /// The person has no `track_id`.
    #[error("no `track_id`")]
    NoTrackId,
    /// `track_id` is 10000 (`MAX_TRACK_ID`) or more; the id found.
    #[error("track_id {0} is too large: PoseTrack requires track ids below {MAX_TRACK_ID}")]
    TrackIdTooLarge(i64),
    /// The person has no `keypoints` array.
    #[error("no `keypoints`")]
    NoKeypoints,
    /// A predicted person has no (or an empty) `scores` array.
    #[error(
        "no per-keypoint `scores` (17 confidences are required; without \
         them poseval scores every joint -9999 and AP is meaningless)"
    )]
    NoScores,
    /// A predicted person's `scores` has not one value per keypoint.
    #[error("`scores` has {found} values, expected {expected}")]
    ScoreCount {
        /// Values in `scores`.
        found: usize,
        /// Keypoints of the category (17).
        expected: usize,
    },
    /// A ground-truth person has no `bbox_head`.
    #[error("no `bbox_head` (the head box sets the PCKh distance scale)")]
    NoHeadBox,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    /// Keypoint confidence (predictions only).
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalPerson {
    /// Track id made global: `track_id + sequence index × 10000`.
    pub track_id: i64,
    pub joints: [Option<Point>; NUM_JOINTS],
    /// GT head box `x1, y1, x2, y2` (PCKh normalisation).
    pub head: [f64; 4],
}

impl EvalPerson {
    pub fn has_points(&self) -> bool {
        self.joints.iter().any(Option::is_some)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EvalFrame {
    pub gt: Vec<EvalPerson>,
    pub pred: Vec<EvalPerson>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sequence {
    /// GT file stem, e.g. `000342_mpii_test`.
    pub name: String,
    pub gt_path: PathBuf,
    /// Frames left after cleaning (the labeled ones), in file order.
    pub frames: Vec<EvalFrame>,
}

/// Loads every GT file of `gt_dir` with its prediction from `pred_dir`.
pub(crate) fn load_dirs(gt_dir: &Path, pred_dir: &Path) -> Result<Vec<Sequence>, EvalError> {
    for dir in [gt_dir, pred_dir] {
        if !dir.is_dir() {
            return Err(EvalError::NotADirectory(dir.to_path_buf()));
        }
    }
    let list_err = |source| EvalError::ListDir {
        dir: gt_dir.to_path_buf(),
        source,
    };
    let mut gt_files = Vec::new();
    for entry in std::fs::read_dir(gt_dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            gt_files.push(path);
        }
    }
    // poseval uses glob order (whatever the file system gives); sorted order is reproducible.
    gt_files.sort();
    if gt_files.is_empty() {
        return Err(EvalError::NoGroundTruth(gt_dir.to_path_buf()));
    }
    let mut sequences = Vec::with_capacity(gt_files.len());
    for (index, gt_path) in gt_files.iter().enumerate() {
        let file_name = gt_path.file_name().unwrap_or_default();
        let pred_path = pred_dir.join(file_name);
        if !pred_path.is_file() {
            return Err(EvalError::MissingPrediction {
                gt: gt_path.clone(),
                pred: pred_path,
            });
        }
        let gt = PoseTrackFile::read(gt_path)?;
        let pred = PoseTrackFile::read(&pred_path)?;
        sequences.push(load_pair(index, gt_path, &gt, &pred_path, &pred)?);
    }
    Ok(sequences)
}

/// Converts and cleans one sequence; `index` is its position among the GT files.
pub(crate) fn load_pair(
    index: usize,
    gt_path: &Path,
    gt: &PoseTrackFile,
    pred_path: &Path,
    pred: &PoseTrackFile,
) -> Result<Sequence, EvalError> {
    let offset = index as i64 * MAX_TRACK_ID;
    let gt_frames = convert(gt_path, gt, Role::GroundTruth, offset)?;
    let pred_frames = convert(pred_path, pred, Role::Prediction, offset)?;
    if gt_frames.len() != pred_frames.len() {
        return Err(EvalError::FrameCount {
            pred: pred_path.to_path_buf(),
            pred_frames: pred_frames.len(),
            gt_frames: gt_frames.len(),
        });
    }
    let mut frames = Vec::new();
    for (g, p) in gt_frames.into_iter().zip(pred_frames) {
        // Frames without GT people are not scored, nor is what was predicted there.
        if g.people.is_empty() {
            continue;
        }
        let mut frame = EvalFrame {
            gt: g.people,
            pred: p.people,
        };
        if !g.ignore.is_empty() {
            remove_ignored(&mut frame.gt, &g.ignore);
            remove_ignored(&mut frame.pred, &g.ignore);
        }
        frames.push(frame);
    }
    let name = gt_path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Sequence {
        name,
        gt_path: gt_path.to_path_buf(),
        frames,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    GroundTruth,
    Prediction,
}

struct RawFrame {
    people: Vec<EvalPerson>,
    ignore: Vec<Polygon>,
}

/// One file's frames in the internal layout, before cleaning.
fn convert(
    path: &Path,
    file: &PoseTrackFile,
    role: Role,
    offset: i64,
) -> Result<Vec<RawFrame>, EvalError> {
    let invalid = |problem: InvalidFile| EvalError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let table = joint_table(file).map_err(invalid)?;
    let images = first_video(file).map_err(invalid)?;
    let mut frames = Vec::with_capacity(images.len());
    for (n, image) in images.iter().enumerate() {
        let mut people = Vec::new();
        let mut ids = HashSet::new();
        for (a, ann) in file.annotations.iter().enumerate() {
            if ann.image_id != image.id {
                continue;
            }
            let person = convert_person(ann, &table, role, offset)
                .map_err(|problem| invalid(InvalidFile::Person { index: a, problem }))?;
            if role == Role::Prediction && !ids.insert(person.track_id) {
                return Err(invalid(InvalidFile::DuplicateTrackId {
                    track_id: person.track_id - offset,
                    frame: n,
                    file_name: image.file_name.clone(),
                }));
            }
            people.push(person);
        }
        let ignore = if role == Role::GroundTruth {
            ignore_regions(image)
                .map_err(|region| invalid(InvalidFile::IgnoreRegion { index: n, region }))?
        } else {
            Vec::new()
        };
        frames.push(RawFrame { people, ignore });
    }
    Ok(frames)
}

/// For every keypoint slot of the file's category, the poseval joint it feeds (ears: none).
fn joint_table(file: &PoseTrackFile) -> Result<Vec<Option<usize>>, InvalidFile> {
    let [category] = file.categories.as_slice() else {
        return Err(InvalidFile::CategoryCount(file.categories.len()));
    };
    if category.name != "person" {
        return Err(InvalidFile::CategoryName(category.name.clone()));
    }
    if category.keypoints.len() != 17 {
        return Err(InvalidFile::KeypointCount(category.keypoints.len()));
    }
    let table: Vec<Option<usize>> = category
        .keypoints
        .iter()
        .map(|name| JOINT_SOURCE_NAMES.iter().position(|j| j == name))
        .collect();
    for (j, name) in JOINT_SOURCE_NAMES.iter().enumerate() {
        if !table.contains(&Some(j)) {
            return Err(InvalidFile::MissingKeypoint(name));
        }
    }
    Ok(table)
}

/// The images of the file's first video, in file order. poseval groups images by the sequence
/// number in their folder name and scores only the first group; it also needs every `file_name`
/// to be `.../<SSSSSS>_<mpii|bonn|mpiinew>.../<frame>.jpg`.
fn first_video(file: &PoseTrackFile) -> Result<Vec<&Image>, InvalidFile> {
    let mut first = None;
    let mut out = Vec::with_capacity(file.images.len());
    for (n, image) in file.images.iter().enumerate() {
        let video = video_id(&image.file_name).map_err(|problem| InvalidFile::FileName {
            index: n,
            file_name: image.file_name.clone(),
            problem,
        })?;
        match &first {
            None => first = Some(video),
            Some(v) if *v != video => continue,
            Some(_) => {}
        }
        out.push(image);
    }
    Ok(out)
}

/// The sequence number of a frame path, checked the way poseval derives image ids from it.
fn video_id(file_name: &str) -> Result<u64, FrameNameError> {
    let path = Path::new(file_name);
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tok = folder.split('_');
    let seq = tok
        .next()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or(FrameNameError::SequenceNumber)?;
    match tok.next() {
        Some("mpii" | "bonn" | "mpiinew") => {}
        _ => return Err(FrameNameError::Source),
    }
    let stem = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let frame = stem.split('.').next().unwrap_or_default();
    match frame.parse::<u64>() {
        Ok(f) if f < 10_000 && frame.bytes().all(|b| b.is_ascii_digit()) => Ok(seq),
        _ => Err(FrameNameError::FrameNumber),
    }
}

fn convert_person(
    ann: &Annotation,
    table: &[Option<usize>],
    role: Role,
    offset: i64,
) -> Result<EvalPerson, PersonError> {
    let track_id = ann.track_id.ok_or(PersonError::NoTrackId)?;
    if track_id >= MAX_TRACK_ID {
        return Err(PersonError::TrackIdTooLarge(track_id));
    }
    let keypoints = ann.keypoints.as_deref().ok_or(PersonError::NoKeypoints)?;
    let scores = match role {
        Role::GroundTruth => None,
        Role::Prediction => match ann.scores.as_deref() {
            None | Some([]) => return Err(PersonError::NoScores),
            Some(s) if s.len() != table.len() => {
                return Err(PersonError::ScoreCount {
                    found: s.len(),
                    expected: table.len(),
                })
            }
            Some(s) => Some(s),
        },
    };
    let head = match (role, ann.bbox_head) {
        (_, Some([x, y, w, h])) => [x, y, x + w, y + h],
        (Role::GroundTruth, None) => return Err(PersonError::NoHeadBox),
        (Role::Prediction, None) => [0.0; 4],
    };
    let mut joints = [None; NUM_JOINTS];
    for (slot, joint) in table.iter().enumerate() {
        let Some(joint) = *joint else { continue };
        let (x, y, v) = (
            keypoints[3 * slot],
            keypoints[3 * slot + 1],
            keypoints[3 * slot + 2],
        );
        if x == 0.0 && y == 0.0 && v == 0.0 {
            continue;
        }
        let score = scores.map_or(0.0, |s| s[slot]);
        // A later slot with the same name wins, as in poseval's by-id lookup of the first point;
        // categories have distinct names, so this never happens in valid files.
        if joints[joint].is_none() {
            joints[joint] = Some(Point { x, y, score });
        }
    }
    Ok(EvalPerson {
        track_id: track_id + offset,
        joints,
        head,
    })
}

/// The image's ignore regions; `Err(k)`: region `k` has fewer than 3 points.
fn ignore_regions(image: &Image) -> Result<Vec<Polygon>, usize> {
    let (Some(xs), Some(ys)) = (&image.ignore_regions_x, &image.ignore_regions_y) else {
        return Ok(Vec::new());
    };
    xs.iter()
        .zip(ys)
        .enumerate()
        .map(|(k, (x, y))| {
            let vertices: Vec<(f64, f64)> = x.iter().copied().zip(y.iter().copied()).collect();
            Polygon::new(vertices).ok_or(k)
        })
        .collect()
}

/// Drops points strictly inside any region, then people left without points.
fn remove_ignored(people: &mut Vec<EvalPerson>, regions: &[Polygon]) {
    for person in people.iter_mut() {
        for joint in person.joints.iter_mut() {
            if let Some(p) = joint {
                if regions.iter().any(|r| r.contains(p.x, p.y)) {
                    *joint = None;
                }
            }
        }
    }
    people.retain(EvalPerson::has_points);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_differ_from_poseval_names_only_at_the_neck() {
        let differ: Vec<(&str, &str)> = JOINT_NAMES
            .iter()
            .zip(JOINT_SOURCE_NAMES)
            .filter(|(a, b)| *a != b)
            .map(|(a, b)| (*a, b))
            .collect();
        assert_eq!(differ, [("neck", "head_bottom")]);
        // every source name is a PoseTrack 2018 keypoint
        for name in JOINT_SOURCE_NAMES {
            assert!(crate::keypoints::KEYPOINT_NAMES.contains(&name), "{name}");
        }
    }

    #[test]
    fn video_ids_follow_poseval() {
        assert_eq!(video_id("images/val/000342_mpii_test/000000.jpg"), Ok(342));
        assert_eq!(video_id("images/val/000001_mpiinew_test/000012.jpg"), Ok(1));
        assert!(video_id("images/val/foo/000000.jpg").is_err());
        assert!(video_id("images/val/000342_coco_test/000000.jpg").is_err());
        assert!(video_id("images/val/000342_mpii_test/frame.jpg").is_err());
        assert!(video_id("images/val/000342_mpii_test/012345.jpg").is_err());
    }
}
