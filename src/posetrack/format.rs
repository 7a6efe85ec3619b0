//! Reading and writing PoseTrack 2018 JSON files (one file = one sequence).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keypoints::{KEYPOINT_NAMES, SKELETON};

/// Why a PoseTrack file could not be read or written; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PoseTrackError {
    /// The file could not be read (missing, unreadable).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not JSON of the PoseTrack 2018 shape (or, on writing, could not be
    /// serialized).
    #[error("{path}: not a PoseTrack 2018 JSON file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_json's error, with line and column.
        source: serde_json::Error,
    },
    /// Well-formed JSON that breaks a rule: duplicate image ids, an annotation whose
    /// `image_id` is not in `images`, a box with a negative size, keypoints not 51 numbers.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which entry breaks which rule.
        message: String,
    },
    /// The file could not be written (full disk, no permission, ...).
    #[error("{path}: {}", crate::fsutil::describe_write_error(.source))]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One frame of a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Image id, unique in the file; annotations refer to it by `image_id`.
    pub id: u64,
    /// Frame path relative to the dataset root, e.g. `images/val/000342_mpii_test/000000.jpg`.
    pub file_name: String,
    /// Sequence id (`"000342"` for PoseTrack sequences, the video's name otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vid_id: Option<String>,
    /// Frame id as PoseTrack numbers it; vidpose writes the image id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_id: Option<u64>,
    /// Number of frames in the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nframes: Option<u64>,
    /// Whether the frame has ground-truth poses (PoseTrack labels only some frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_labeled: Option<bool>,
    /// x coordinates (pixels) of the ignore-region polygons, one list per polygon; the
    /// evaluator drops points inside them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_regions_x: Option<Vec<Vec<f64>>>,
    /// y coordinates (pixels) of the same polygons, paired with `ignore_regions_x`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_regions_y: Option<Vec<Vec<f64>>>,
    /// Fields vidpose does not interpret (`width`, `height`, `mask_file`, ...), kept on copy.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Image {
    /// An entry with an id, a file name and a sequence id, the id also its `frame_id`, and
    /// nothing else.
    pub fn new(id: u64, file_name: String, vid_id: String) -> Self {
        Self {
            id,
            file_name,
            vid_id: Some(vid_id),
            frame_id: Some(id),
            nframes: None,
            is_labeled: None,
            ignore_regions_x: None,
            ignore_regions_y: None,
            extra: Default::default(),
        }
    }
}

/// One person in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// The `id` of the image (frame) this person is in.
    pub image_id: u64,
    /// Annotation id, unique in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Identity across frames; `None` for an untracked person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<i64>,
    /// `[x, y, w, h]`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "four_numbers"
    )]
    pub bbox: Option<[f64; 4]>,
    /// Head box, `[x, y, w, h]`: the PCKh distance scale in ground truth; vidpose writes none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "four_numbers"
    )]
    pub bbox_head: Option<[f64; 4]>,
    /// 17 x (x, y, v-or-score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<f64>>,
    /// 17 per-keypoint confidences, required in predictions by the evaluator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f64>>,
    /// Instance score; vidpose writes MMPose's (box score x mean confident keypoint score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// 1 (`person`); other categories are skipped when reading boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<u64>,
    /// Fields vidpose does not interpret (`iscrowd`, `num_keypoints`, ...), kept on copy.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Annotation {
    /// Which of the rules an annotation keeps on its own (a box without non-finite values or
    /// negative size, 51 keypoint numbers) `annotations[n]` breaks, in words; `None` if none.
    pub fn broken_rule(&self, n: usize) -> Option<String> {
        if let Some(b) = self.bbox {
            if b.iter().any(|v| !v.is_finite()) || b[2] < 0.0 || b[3] < 0.0 {
                return Some(format!(
                    "annotations[{n}].bbox {b:?} has a non-finite value or a negative size"
                ));
            }
        }
        if let Some(k) = &self.keypoints {
            if k.len() != 51 {
                return Some(format!(
                    "annotations[{n}].keypoints has {} numbers, expected 51 (17 x (x, y, v))",
                    k.len()
                ));
            }
        }
        None
    }
}

/// A box as `[x, y, w, h]`, with an error that says so when the list has another length.
fn four_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[f64; 4]>, D::Error> {
    let Some(values) = Option::<Vec<f64>>::deserialize(d)? else {
        return Ok(None);
    };
    <[f64; 4]>::try_from(values.as_slice())
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "a box has {} numbers; expected 4: [x, y, w, h]",
                values.len()
            ))
        })
}

/// JSON text without a leading UTF-8 byte-order mark, which some editors write and JSON
/// parsers refuse.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// An entry of `categories`: the object class and its keypoint names and skeleton (COCO style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// Category id that annotations give as `category_id`; 1 for `person`.
    pub id: u64,
    /// Class name, `person`.
    pub name: String,
    /// Parent class, `person` for PoseTrack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
    /// Keypoint names in annotation order (`nose`, `head_bottom`, ...).
    #[serde(default)]
    pub keypoints: Vec<String>,
    /// Limbs as pairs of 1-based keypoint indices.
    #[serde(default)]
    pub skeleton: Vec<Vec<u32>>,
}

impl Category {
    /// The single `person` category with the 17 PoseTrack keypoints.
    pub fn person() -> Self {
        Self {
            id: 1,
            name: "person".into(),
            supercategory: Some("person".into()),
            keypoints: KEYPOINT_NAMES.iter().map(|s| s.to_string()).collect(),
            skeleton: SKELETON.iter().map(|p| p.to_vec()).collect(),
        }
    }
}

/// A PoseTrack 2018 JSON file: one sequence's frames and the people in them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoseTrackFile {
    /// The frames, one entry each.
    pub images: Vec<Image>,
    /// The people, in any frame order; each points at its frame by `image_id`.
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    /// Object classes; vidpose writes the single `person` category.
    #[serde(default)]
    pub categories: Vec<Category>,
}

impl PoseTrackFile {
    /// Reads and checks a PoseTrack 2018 file; errors name the file and the problem.
    pub fn read(path: &Path) -> Result<Self, PoseTrackError> {
        let bytes = std::fs::read(path).map_err(|source| PoseTrackError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file: PoseTrackFile =
            serde_json::from_slice(strip_bom(&bytes)).map_err(|source| PoseTrackError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        file.validate(path)?;
        Ok(file)
    }

    fn validate(&self, path: &Path) -> Result<(), PoseTrackError> {
        let invalid = |message: String| PoseTrackError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let ids: std::collections::HashSet<u64> = self.images.iter().map(|i| i.id).collect();
        if ids.len() != self.images.len() {
            return Err(invalid("duplicate image id in `images`".into()));
        }
        for (n, a) in self.annotations.iter().enumerate() {
            if !ids.contains(&a.image_id) {
                return Err(invalid(format!(
                    "annotations[{n}] refers to image_id {} which is not in `images`",
                    a.image_id
                )));
            }
            if let Some(rule) = a.broken_rule(n) {
                return Err(invalid(rule));
            }
        }
        Ok(())
    }

    /// Writes atomically: a temporary file in the same folder, then a rename.
    pub fn write_atomic(&self, path: &Path) -> Result<(), PoseTrackError> {
        // Streamed: a long video's file is never held in memory as text as well.
        crate::fsutil::write_atomic_with(path, |out| {
            serde_json::to_writer(out, self).map_err(std::io::Error::from)
        })
        .map_err(|source| PoseTrackError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}
