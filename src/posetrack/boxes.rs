//! Person boxes given in files instead of detected: PoseTrack 2018 / COCO annotation files
//! (ground-truth boxes) and COCO detection results mapped to frames through an annotation
//! file's `images`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::format::{self, PoseTrackFile};
use crate::geometry::BBox;
use crate::person::Person;

/// Why a boxes file (or folder) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BoxesError {
    /// The file or folder could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not JSON: {source}")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// serde_json's error, with line and column.
        source: serde_json::Error,
    },
    /// JSON of the wrong shape or content: a box that is not `[x, y, w, h]` with finite
    /// values, an unknown `image_id`, a folder without `.json` files, a list without
    /// `detector.boxes_images`.
    #[error("{path}: {message}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// Which entry is wrong and how.
        message: String,
    },
    /// An annotation file (or the `images` file of detection results) failed to read as
    /// PoseTrack JSON.
    #[error(transparent)]
    PoseTrack(#[from] format::PoseTrackError),
}

/// A frame is named by its sequence (folder or video stem) and its number.
pub type FrameKey = (String, u64);

/// `images/val/003418_mpii_test/000012.jpg` -> `("003418_mpii_test", 12)`.
pub fn frame_key(file_name: &str) -> Option<FrameKey> {
    let path = Path::new(file_name);
    let number = path.file_stem()?.to_str()?.parse().ok()?;
    let seq = path.parent()?.file_name()?.to_str()?.to_string();
    Some((seq, number))
}

/// Where a box came from, which fixes how MMPose's test loop turns it into crop corners.
#[derive(Debug, Clone, PartialEq)]
enum Corners {
    /// A ground-truth `[x, y, w, h]`; its corners are clipped to the image, whose size the
    /// annotation file gives (`width`, `height`) or, failing that, the decoded frame.
    Annotation {
        xywh: [f64; 4],
        image_size: Option<(f64, f64)>,
    },
    /// A detection result, converted as read (float32, no clipping).
    Detection(BBox),
}

/// One person box read from a file, kept as given until the frame's size is known.
#[derive(Debug, Clone, PartialEq)]
pub struct GivenBox {
    corners: Corners,
    /// The box's score: a detection's `score`, an annotation's `score` or 1.
    pub score: f32,
    /// The track id of a ground-truth annotation.
    pub track_id: Option<i64>,
}

impl GivenBox {
    /// The box's corners on a `frame_width` x `frame_height` frame; `None` for a ground-truth
    /// box left empty by the clipping, which MMPose drops (`_is_valid_instance`).
    pub fn bbox(&self, frame_width: u32, frame_height: u32) -> Option<BBox> {
        match &self.corners {
            Corners::Detection(b) => Some(*b),
            Corners::Annotation { xywh, image_size } => {
                let (w, h) = image_size.unwrap_or((frame_width as f64, frame_height as f64));
                let b = BBox::from_annotation_xywh(*xywh, w, h);
                (b.width() > 0.0 && b.height() > 0.0).then_some(b)
            }
        }
    }
}

/// Why MMPose's top-down datasets leave a ground-truth annotation out of the test set
/// (`BaseCocoStyleDataset.parse_data_info` and `_is_valid_instance`), checked in its order;
/// `None` when it is kept. The box-size rule needs the image and is applied in
/// [`GivenBox::bbox`].
///
/// One departure: MMPose also drops an annotation without `keypoints`, which would make a file
/// of plain person boxes (a common way to hand boxes over) give nothing. Keypoint datasets
/// (PoseTrack, COCO keypoints) give every annotation `keypoints`, so keeping box-only ones
/// changes nothing there.
fn skipped_by_mmpose(ann: &format::Annotation) -> Option<&'static str> {
    let keypoints = ann.keypoints.as_ref()?;
    if ann.extra.get("iscrowd").is_some_and(json_truthy) {
        return Some("crowd (`iscrowd`)");
    }
    // (x, y) in float32, as the dataset holds them.
    let xy = |j: usize| (keypoints[3 * j] as f32, keypoints[3 * j + 1] as f32);
    let joints = keypoints.len() / 3;
    let labelled = match ann.extra.get("num_keypoints") {
        Some(n) => n.as_f64().is_none_or(|n| n != 0.0),
        None => (0..joints).any(|j| {
            let (x, y) = xy(j);
            x.max(y) != 0.0
        }),
    };
    if !labelled {
        return Some("no labelled keypoint (`num_keypoints` 0)");
    }
    if (0..joints).all(|j| {
        let (x, y) = xy(j);
        x <= 0.0 && y <= 0.0
    }) {
        return Some("no keypoint coordinate above 0");
    }
    None
}

/// Python's truth value of a JSON value.
fn json_truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

/// Boxes indexed by frame, plus the annotation file's image entries so that outputs can keep
/// the dataset's ids and names.
#[derive(Debug, Default)]
pub struct GivenBoxes {
    source: PathBuf,
    /// Files of a boxes folder that could not be used, with why.
    unreadable: Vec<String>,
    boxes: HashMap<FrameKey, Vec<GivenBox>>,
    images: HashMap<FrameKey, format::Image>,
}

/// One entry of a COCO detection-results list.
#[derive(Debug, Deserialize)]
struct Detection {
    image_id: u64,
    #[serde(deserialize_with = "first_four")]
    bbox: [f64; 4],
    #[serde(default = "one")]
    score: f64,
    #[serde(default = "one_u64")]
    category_id: u64,
}

/// `[x, y, w, h]`: MMPose reads the first four numbers of a detection's `bbox` (`bbox[:4]`), so
/// a fifth (a score, say) is ignored as it ignores it.
fn first_four<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[f64; 4], D::Error> {
    let values = Vec::<f64>::deserialize(d)?;
    match values.get(..4) {
        Some(&[x, y, w, h]) => Ok([x, y, w, h]),
        _ => Err(serde::de::Error::custom(format!(
            "bbox has {} numbers; expected [x, y, w, h]",
            values.len()
        ))),
    }
}

fn one() -> f64 {
    1.0
}

fn one_u64() -> u64 {
    1
}

fn read_json(path: &Path) -> Result<serde_json::Value, BoxesError> {
    let bytes = std::fs::read(path).map_err(|source| BoxesError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(format::strip_bom(&bytes)).map_err(|source| BoxesError::NotJson {
        path: path.to_path_buf(),
        source,
    })
}

fn check_box(path: &Path, what: &str, b: &[f64; 4]) -> Result<(), BoxesError> {
    // Boxes are computed in float32 (as MMPose does): a value beyond its range would become
    // infinite and be written as null.
    let fits = |v: &f64| v.is_finite() && v.abs() <= f32::MAX as f64;
    let corners_fit = fits(&(b[0] + b[2])) && fits(&(b[1] + b[3]));
    if !b.iter().all(fits) || !corners_fit || b[2] < 0.0 || b[3] < 0.0 {
        return Err(BoxesError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "{what}: bbox {b:?} must be [x, y, w, h] with finite values within float32 range and w, h >= 0"
            ),
        });
    }
    Ok(())
}

impl GivenBoxes {
    /// Loads `path`: an annotation file, a folder of them, or (with `images_file`) a COCO
    /// detection-results list. Boxes below `score_threshold` are dropped.
    pub fn load(
        path: &Path,
        images_file: Option<&Path>,
        score_threshold: f32,
    ) -> Result<Self, BoxesError> {
        let mut given = GivenBoxes {
            source: path.to_path_buf(),
            ..Default::default()
        };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| BoxesError::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: "the folder holds no .json annotation files".into(),
                });
            }
            // One broken or unrelated file must not stop the sequences the others cover: it is
            // set aside, and a sequence left without boxes says which files could not be read.
            let mut first_error = None;
            let count = files.len();
            for file in files {
                if let Err(e) = given.add_annotation_file(&file, score_threshold) {
                    tracing::warn!("{e}; the other files of the folder are still used");
                    given.unreadable.push(e.to_string());
                    first_error.get_or_insert(e);
                }
            }
            if given.unreadable.len() == count {
                return Err(first_error.expect("every file failed"));
            }
            return Ok(given);
        }
        match read_json(path)? {
            serde_json::Value::Array(list) => {
                let images_file = images_file.ok_or_else(|| BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: "a detection-results list needs the annotation file that maps its image ids to frames: set detector.boxes_images".into(),
                })?;
                given.add_detections(path, list, images_file, score_threshold)?;
            }
            serde_json::Value::Object(_) => given.add_annotation_file(path, score_threshold)?,
            _ => {
                return Err(BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: "expected an annotation file (an object with `images` and `annotations`) or a detection-results list".into(),
                })
            }
        }
        Ok(given)
    }

    fn add_annotation_file(&mut self, path: &Path, score_threshold: f32) -> Result<(), BoxesError> {
        let file = PoseTrackFile::read(path)?;
        let mut keys = HashMap::new();
        for image in &file.images {
            let key = frame_key(&image.file_name).ok_or_else(|| BoxesError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "image {}: file_name `{}` is not of the form <sequence>/<number>.<ext>",
                    image.id, image.file_name
                ),
            })?;
            keys.insert(image.id, key.clone());
            self.boxes.entry(key.clone()).or_default();
            self.images.insert(key, image.clone());
        }
        let mut skipped: Vec<(&str, usize)> = Vec::new();
        for (n, ann) in file.annotations.iter().enumerate() {
            if ann.category_id.is_some_and(|c| c != 1) {
                continue;
            }
            let Some(b) = &ann.bbox else { continue };
            check_box(path, &format!("annotations[{n}]"), b)?;
            if let Some(reason) = skipped_by_mmpose(ann) {
                match skipped.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, count)) => *count += 1,
                    None => skipped.push((reason, 1)),
                }
                continue;
            }
            let score = ann.score.unwrap_or(1.0) as f32;
            if score < score_threshold {
                continue;
            }
            // image ids were checked against `images` by the reader.
            let key = &keys[&ann.image_id];
            let image = &self.images[key];
            let size = |k: &str| image.extra.get(k).and_then(|v| v.as_f64());
            let image_size = size("width").zip(size("height"));
            self.boxes
                .get_mut(key)
                .expect("added above")
                .push(GivenBox {
                    corners: Corners::Annotation {
                        xywh: *b,
                        image_size,
                    },
                    score,
                    track_id: ann.track_id,
                });
        }
        if !skipped.is_empty() {
            let reasons: Vec<String> = skipped
                .iter()
                .map(|(r, n)| format!("{n} with {r}"))
                .collect();
            tracing::info!(
                "{}: {} annotation(s) left out, as MMPose's test set leaves them out: {}",
                path.display(),
                skipped.iter().map(|(_, n)| n).sum::<usize>(),
                reasons.join(", ")
            );
        }
        Ok(())
    }

    fn add_detections(
        &mut self,
        path: &Path,
        list: Vec<serde_json::Value>,
        images_file: &Path,
        score_threshold: f32,
    ) -> Result<(), BoxesError> {
        let images = PoseTrackFile::read(images_file)?;
        let mut keys = HashMap::new();
        for image in images.images {
            if let Some(key) = frame_key(&image.file_name) {
                keys.insert(image.id, key.clone());
                self.boxes.entry(key.clone()).or_default();
                self.images.insert(key, image);
            }
        }
        for (n, value) in list.into_iter().enumerate() {
            let det: Detection =
                serde_json::from_value(value).map_err(|e| BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("entry {n}: {e} (expected {{image_id, bbox: [x, y, w, h], score, category_id}})"),
                })?;
            check_box(path, &format!("entry {n}"), &det.bbox)?;
            let b = det.bbox;
            let bbox = BBox::from_xywh([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]);
            if !det.score.is_finite() {
                return Err(BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("entry {n}: score is not a finite number"),
                });
            }
            let key = keys.get(&det.image_id).ok_or_else(|| BoxesError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "entry {n}: image_id {} is not an image of {}",
                    det.image_id,
                    images_file.display()
                ),
            })?;
            // MMPose compares the float32 score with the threshold (`filter_data`).
            if det.category_id != 1 || (det.score as f32) < score_threshold {
                continue;
            }
            self.boxes
                .get_mut(key)
                .expect("added above")
                .push(GivenBox {
                    corners: Corners::Detection(bbox),
                    score: det.score as f32,
                    track_id: None,
                });
        }
        Ok(())
    }

    /// The file or folder the boxes were loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Files of a boxes folder that were set aside as unreadable, with why.
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }

    /// Whether the file knows any frame of the sequence or video `name`.
    pub fn has_sequence(&self, name: &str) -> bool {
        self.boxes.keys().any(|(s, _)| s == name)
    }

    /// Persons for one frame of `frame_width` x `frame_height` pixels (empty when the file
    /// lists none), boxed as MMPose's test loop boxes them.
    pub fn persons(
        &self,
        seq: &str,
        number: u64,
        frame_width: u32,
        frame_height: u32,
    ) -> Vec<(Person, Option<i64>)> {
        self.boxes
            .get(&(seq.to_string(), number))
            .map(|list| {
                list.iter()
                    .filter_map(|b| {
                        let bbox = b.bbox(frame_width, frame_height)?;
                        Some((Person::from_box(bbox, b.score), b.track_id))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The annotation file's image entry for a frame, if it has one.
    pub fn image(&self, seq: &str, number: u64) -> Option<&format::Image> {
        self.images.get(&(seq.to_string(), number))
    }

    /// Frame numbers of `seq` listed in the annotation file's `images`, sorted.
    pub fn listed_frames(&self, seq: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .images
            .keys()
            .filter(|(s, _)| s == seq)
            .map(|(_, n)| *n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Frame numbers of `seq` that carry boxes, sorted.
    pub fn frames_with_boxes(&self, seq: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .boxes
            .iter()
            .filter(|((s, _), b)| s == seq && !b.is_empty())
            .map(|((_, n), _)| *n)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 17 joints, all at (x, y) with visibility 1.
    fn keypoints(x: f64, y: f64) -> serde_json::Value {
        (0..17).flat_map(|_| [x, y, 1.0]).collect::<Vec<_>>().into()
    }

    #[test]
    fn ground_truth_follows_mmposes_test_set_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seq.json");
        let ann = |bbox: [f64; 4], extra: serde_json::Value| {
            let mut a = serde_json::json!({"image_id": 1, "bbox": bbox, "category_id": 1});
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            a
        };
        let doc = serde_json::json!({
            "images": [{"id": 1, "file_name": "seq/000000.jpg", "width": 100, "height": 50}],
            "annotations": [
                ann([10.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(15.0, 15.0), "track_id": 0})),
                ann([10.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(15.0, 15.0), "iscrowd": 1})),
                ann([10.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(15.0, 15.0), "num_keypoints": 0})),
                ann([10.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(0.0, 0.0)})),
                ann([10.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(-3.0, -1.0), "num_keypoints": 2})),
                // Entirely right of the 100-pixel-wide image: empty after clipping.
                ann([120.0, 10.0, 20.0, 20.0], serde_json::json!({"keypoints": keypoints(15.0, 15.0)})),
                // Crossing the bottom-right corner: clipped to pixel 99, 49.
                ann([90.0, 40.0, 30.0, 30.0], serde_json::json!({"keypoints": keypoints(95.0, 45.0), "track_id": 1})),
                // Plain box, no keypoints: kept.
                ann([5.0, 5.0, 10.0, 10.0], serde_json::json!({"track_id": 2})),
            ],
        });
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let boxes = GivenBoxes::load(&file, None, 0.4).unwrap();
        // The frame size does not matter: the file gives the image's.
        let people = boxes.persons("seq", 0, 4000, 3000);
        let found: Vec<(Option<i64>, BBox)> = people.iter().map(|(p, t)| (*t, p.bbox)).collect();
        assert_eq!(
            found,
            vec![
                (Some(0), BBox::new(10.0, 10.0, 30.0, 30.0)),
                (Some(1), BBox::new(90.0, 40.0, 99.0, 49.0)),
                (Some(2), BBox::new(5.0, 5.0, 15.0, 15.0)),
            ]
        );
    }

    #[test]
    fn ground_truth_without_image_size_clips_to_the_frame() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seq.json");
        let doc = serde_json::json!({
            "images": [{"id": 1, "file_name": "seq/000000.jpg"}],
            "annotations": [{"image_id": 1, "bbox": [-5.0, 2.5, 80.0, 10.0], "keypoints": keypoints(9.0, 9.0)}],
        });
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let boxes = GivenBoxes::load(&file, None, 0.4).unwrap();
        let people = boxes.persons("seq", 0, 64, 48);
        assert_eq!(people[0].0.bbox, BBox::new(0.0, 2.5, 63.0, 12.5));
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn readers_say_what_is_wrong_with_a_box() {
        let dir = tempfile::tempdir().unwrap();
        let images = r#"{"images": [{"id": 1, "file_name": "seq/000000.jpg"}]"#;
        // Too large for float32: it would be written as null.
        let huge = write(
            &dir,
            "huge.json",
            &format!(r#"{images}, "annotations": [{{"image_id": 1, "bbox": [0, 0, 1e300, 5]}}]}}"#),
        );
        let e = GivenBoxes::load(&huge, None, 0.4).unwrap_err().to_string();
        assert!(e.contains("huge.json") && e.contains("float32"), "{e}");
        // Five numbers in a ground-truth box: say so, not "trailing characters".
        let five = write(
            &dir,
            "five.json",
            &format!(r#"{images}, "annotations": [{{"image_id": 1, "bbox": [0, 0, 4, 5, 6]}}]}}"#),
        );
        let e = GivenBoxes::load(&five, None, 0.4).unwrap_err().to_string();
        assert!(e.contains("five.json") && e.contains("5 numbers"), "{e}");
        // A byte-order mark before the JSON is not an error.
        let bom = write(
            &dir,
            "bom.json",
            &format!("{}{images}, \"annotations\": []}}", '\u{feff}'),
        );
        GivenBoxes::load(&bom, None, 0.4).unwrap();
        // A detection's bbox is read as MMPose reads it: its first four numbers.
        let dets = write(
            &dir,
            "dets.json",
            r#"[{"image_id": 1, "bbox": [1, 2, 3, 4, 0.9], "score": 0.8}, {"image_id": 1, "bbox": [1, 2, 3], "score": 0.8}]"#,
        );
        let e = GivenBoxes::load(&dets, Some(&bom), 0.4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 1") && e.contains("3 numbers"), "{e}");
        let dets = write(
            &dir,
            "dets.json",
            r#"[{"image_id": 1, "bbox": [1, 2, 3, 4, 0.9], "score": 0.8}]"#,
        );
        let boxes = GivenBoxes::load(&dets, Some(&bom), 0.4).unwrap();
        let people = boxes.persons("seq", 0, 100, 100);
        assert_eq!(people[0].0.bbox, BBox::new(1.0, 2.0, 4.0, 6.0));
    }

    #[test]
    fn frame_keys() {
        assert_eq!(
            frame_key("images/val/003418_mpii_test/000012.jpg"),
            Some(("003418_mpii_test".into(), 12))
        );
        assert_eq!(frame_key("clip/7.png"), Some(("clip".into(), 7)));
        assert_eq!(frame_key("x.jpg"), None);
        assert_eq!(frame_key("a/b.jpg"), None);
    }
}
