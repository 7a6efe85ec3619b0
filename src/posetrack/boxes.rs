//! Person boxes given in files instead of detected: PoseTrack 2018 / COCO annotation files
//! (ground-truth boxes) and COCO detection results mapped to frames through an annotation
//! file's `images`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::format;
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
    Annotation([f64; 4]),
    /// A detection result, converted as read (float32, no clipping).
    Detection(BBox),
}

/// A frame of one of the files' sequences: the sequence's index among
/// [`GivenBoxes::sequences`] and the frame's number. Ordered by sequence, then number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FrameRef {
    sequence: u32,
    number: u64,
}

/// One person box read from a file, kept as given until the frame's size is known.
#[derive(Debug, Clone, PartialEq)]
struct GivenBox {
    frame: FrameRef,
    corners: Corners,
    /// The box's score: a detection's `score`, an annotation's `score` or 1.
    score: f32,
    /// The track id of a ground-truth annotation.
    track_id: Option<i64>,
}

impl GivenBox {
    /// The box's corners on an image of `size` (width, height); `None` for a ground-truth box
    /// left empty by the clipping, which MMPose drops (`_is_valid_instance`).
    fn bbox(&self, (width, height): (f64, f64)) -> Option<BBox> {
        match &self.corners {
            Corners::Detection(b) => Some(*b),
            Corners::Annotation(xywh) => {
                let b = BBox::from_annotation_xywh(*xywh, width, height);
                (b.width() > 0.0 && b.height() > 0.0).then_some(b)
            }
        }
    }
}

/// A frame listed in an annotation file's `images`.
#[derive(Debug)]
struct ListedFrame {
    frame: FrameRef,
    /// The image entry's JSON text in [`GivenBoxes::texts`], parsed again only when the frame
    /// is reached (most of its fields only matter to the output).
    text: Range<usize>,
    /// `width` and `height` from the entry, which ground-truth boxes are clipped to.
    image_size: Option<(f64, f64)>,
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
///
/// Packed into a few flat arrays sorted by frame: a boxes file covers the whole input, so what
/// it costs per frame is what a long run's memory grows by (about 0.2 KB per frame and box,
/// where every entry kept parsed cost 2.5 KB).
#[derive(Debug, Default)]
pub struct GivenBoxes {
    source: PathBuf,
    /// Files of a boxes folder that could not be used, with why.
    unreadable: Vec<String>,
    sequences: Vec<String>,
    /// Every listed frame, sorted, each once.
    listed: Vec<ListedFrame>,
    /// The listed frames' image entries, back to back.
    texts: String,
    /// Every box, sorted by frame (a frame's boxes in the order the files give them).
    boxes: Vec<GivenBox>,
}

/// The two lists of an annotation file, each entry left as text until it is read on its own:
/// a file covering a long input is never held parsed as a whole.
#[derive(Deserialize)]
struct EntryLists<'a> {
    #[serde(borrow)]
    images: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    annotations: Vec<&'a RawValue>,
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

fn read_bytes(path: &Path) -> Result<Vec<u8>, BoxesError> {
    std::fs::read(path).map_err(|source| BoxesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Broken JSON is "not JSON"; JSON of the wrong shape is the PoseTrack reader's complaint.
fn parse_error(path: &Path, source: serde_json::Error) -> BoxesError {
    if source.is_syntax() || source.is_eof() {
        BoxesError::NotJson {
            path: path.to_path_buf(),
            source,
        }
    } else {
        format::PoseTrackError::Parse {
            path: path.to_path_buf(),
            source,
        }
        .into()
    }
}

fn invalid_entry(path: &Path, message: String) -> BoxesError {
    format::PoseTrackError::Invalid {
        path: path.to_path_buf(),
        message,
    }
    .into()
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
        let given = Self::read(path, images_file, score_threshold);
        // The file's text and parse buffers are gone: their pages go back rather than stay
        // resident for the whole run (the heap is otherwise never trimmed, see nn::memory).
        crate::nn::memory::release_free_memory();
        given
    }

    fn read(
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
            given.sort();
            return Ok(given);
        }
        let bytes = read_bytes(path)?;
        let text = format::strip_bom(&bytes);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                let images_file = images_file.ok_or_else(|| BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: "a detection-results list needs the annotation file that maps its image ids to frames: set detector.boxes_images".into(),
                })?;
                given.add_detections(path, text, images_file, score_threshold)?;
            }
            Some(b'{') => given.add_annotations(path, text, score_threshold)?,
            _ => {
                serde_json::from_slice::<serde::de::IgnoredAny>(text)
                    .map_err(|e| parse_error(path, e))?;
                return Err(BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: "expected an annotation file (an object with `images` and `annotations`) or a detection-results list".into(),
                });
            }
        }
        given.sort();
        Ok(given)
    }

    /// Adds one file of a folder: all of it, or nothing when any of it is wrong.
    fn add_annotation_file(&mut self, path: &Path, score_threshold: f32) -> Result<(), BoxesError> {
        let bytes = read_bytes(path)?;
        let kept = (
            self.listed.len(),
            self.texts.len(),
            self.boxes.len(),
            self.sequences.len(),
        );
        let added = self.add_annotations(path, format::strip_bom(&bytes), score_threshold);
        if added.is_err() {
            self.listed.truncate(kept.0);
            self.texts.truncate(kept.1);
            self.boxes.truncate(kept.2);
            self.sequences.truncate(kept.3);
        }
        added
    }

    fn sequence_index(&mut self, name: String) -> u32 {
        // A file holds one sequence, a folder one per file: a scan is enough.
        match self.sequences.iter().position(|s| *s == name) {
            Some(i) => i as u32,
            None => {
                self.sequences.push(name);
                (self.sequences.len() - 1) as u32
            }
        }
    }

    /// Stores the image entries of an annotation file's text, checked one at a time (as
    /// [`format::PoseTrackFile::read`] checks them), and returns where their ids point.
    /// `strict`: an image whose `file_name` names no frame is an error rather than skipped.
    fn add_images(
        &mut self,
        path: &Path,
        images: &[&RawValue],
        strict: bool,
    ) -> Result<HashMap<u64, FrameRef>, BoxesError> {
        let mut frames = HashMap::with_capacity(images.len());
        self.listed.reserve_exact(images.len());
        self.texts
            .reserve_exact(images.iter().map(|raw| raw.get().len()).sum());
        for (n, raw) in images.iter().enumerate() {
            let image: format::Image = serde_json::from_str(raw.get())
                .map_err(|e| invalid_entry(path, format!("images[{n}]: {e}")))?;
            let Some((sequence, number)) = frame_key(&image.file_name) else {
                if !strict {
                    continue;
                }
                return Err(BoxesError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "image {}: file_name `{}` is not of the form <sequence>/<number>.<ext>",
                        image.id, image.file_name
                    ),
                });
            };
            let frame = FrameRef {
                sequence: self.sequence_index(sequence),
                number,
            };
            if frames.insert(image.id, frame).is_some() {
                return Err(invalid_entry(
                    path,
                    format!("duplicate image id in `images` ({})", image.id),
                ));
            }
            let size = |k: &str| image.extra.get(k).and_then(|v| v.as_f64());
            let start = self.texts.len();
            self.texts.push_str(raw.get());
            self.listed.push(ListedFrame {
                frame,
                text: start..self.texts.len(),
                image_size: size("width").zip(size("height")),
            });
        }
        Ok(frames)
    }

    fn add_annotations(
        &mut self,
        path: &Path,
        text: &[u8],
        score_threshold: f32,
    ) -> Result<(), BoxesError> {
        let lists: EntryLists = serde_json::from_slice(text).map_err(|e| parse_error(path, e))?;
        let frames = self.add_images(path, &lists.images, true)?;
        self.boxes.reserve(lists.annotations.len());
        let mut skipped: Vec<(&str, usize)> = Vec::new();
        for (n, raw) in lists.annotations.iter().enumerate() {
            let ann: format::Annotation = serde_json::from_str(raw.get())
                .map_err(|e| invalid_entry(path, format!("annotations[{n}]: {e}")))?;
            let Some(&frame) = frames.get(&ann.image_id) else {
                return Err(invalid_entry(
                    path,
                    format!(
                        "annotations[{n}] refers to image_id {} which is not in `images`",
                        ann.image_id
                    ),
                ));
            };
            if let Some(rule) = ann.broken_rule(n) {
                return Err(invalid_entry(path, rule));
            }
            if ann.category_id.is_some_and(|c| c != 1) {
                continue;
            }
            let Some(b) = &ann.bbox else { continue };
            check_box(path, &format!("annotations[{n}]"), b)?;
            if let Some(reason) = skipped_by_mmpose(&ann) {
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
            self.boxes.push(GivenBox {
                frame,
                corners: Corners::Annotation(*b),
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
        text: &[u8],
        images_file: &Path,
        score_threshold: f32,
    ) -> Result<(), BoxesError> {
        let list: Vec<&RawValue> =
            serde_json::from_slice(text).map_err(|e| parse_error(path, e))?;
        let frames = {
            let bytes = read_bytes(images_file)?;
            let lists: EntryLists = serde_json::from_slice(format::strip_bom(&bytes))
                .map_err(|e| parse_error(images_file, e))?;
            self.add_images(images_file, &lists.images, false)?
        };
        self.boxes.reserve(list.len());
        for (n, raw) in list.iter().enumerate() {
            let det: Detection =
                serde_json::from_str(raw.get()).map_err(|e| BoxesError::Invalid {
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
            let frame = *frames
                .get(&det.image_id)
                .ok_or_else(|| BoxesError::Invalid {
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
            self.boxes.push(GivenBox {
                frame,
                corners: Corners::Detection(bbox),
                score: det.score as f32,
                track_id: None,
            });
        }
        Ok(())
    }

    /// Orders frames and boxes for lookup once every file is in. A frame listed by two files
    /// of a folder keeps the later file's entry; its boxes come from both.
    fn sort(&mut self) {
        // Stable sorts: equal frames stay in file order.
        self.boxes.sort_by_key(|b| b.frame);
        self.listed.sort_by_key(|f| f.frame);
        self.listed.reverse();
        self.listed.dedup_by_key(|f| f.frame);
        self.listed.reverse();
        self.boxes.shrink_to_fit();
        self.listed.shrink_to_fit();
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
        self.sequences.iter().any(|s| s == name)
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
        let Some(frame) = self.frame_ref(seq, number) else {
            return Vec::new();
        };
        let size = self
            .listed_frame(frame)
            .and_then(|f| f.image_size)
            .unwrap_or((frame_width as f64, frame_height as f64));
        let first = self.boxes.partition_point(|b| b.frame < frame);
        self.boxes[first..]
            .iter()
            .take_while(|b| b.frame == frame)
            .filter_map(|b| Some((Person::from_box(b.bbox(size)?, b.score), b.track_id)))
            .collect()
    }

    /// The annotation file's image entry for a frame, if it has one.
    pub fn image(&self, seq: &str, number: u64) -> Option<format::Image> {
        let listed = self.listed_frame(self.frame_ref(seq, number)?)?;
        // Read once already when the file was loaded, so this cannot fail.
        serde_json::from_str(&self.texts[listed.text.clone()]).ok()
    }

    /// Frame numbers of `seq` listed in the annotation file's `images`, sorted.
    pub fn listed_frames(&self, seq: &str) -> Vec<u64> {
        self.numbers_of(seq, self.listed.iter().map(|f| f.frame))
    }

    /// Frame numbers of `seq` that carry boxes, sorted.
    pub fn frames_with_boxes(&self, seq: &str) -> Vec<u64> {
        let mut numbers = self.numbers_of(seq, self.boxes.iter().map(|b| b.frame));
        numbers.dedup();
        numbers
    }

    fn frame_ref(&self, seq: &str, number: u64) -> Option<FrameRef> {
        let sequence = self.sequences.iter().position(|s| s == seq)? as u32;
        Some(FrameRef { sequence, number })
    }

    fn listed_frame(&self, frame: FrameRef) -> Option<&ListedFrame> {
        let i = self.listed.binary_search_by_key(&frame, |f| f.frame).ok()?;
        Some(&self.listed[i])
    }

    fn numbers_of(&self, seq: &str, frames: impl Iterator<Item = FrameRef>) -> Vec<u64> {
        let Some(sequence) = self.frame_ref(seq, 0).map(|f| f.sequence) else {
            return Vec::new();
        };
        frames
            .filter(|f| f.sequence == sequence)
            .map(|f| f.number)
            .collect()
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
    fn frames_and_boxes_are_found_whatever_the_files_order() {
        let dir = tempfile::tempdir().unwrap();
        let image = |id: u64, n: u64| serde_json::json!({"id": id, "file_name": format!("seq/{n:06}.jpg"), "vid_id": "7", "ignore_regions_x": [[1.0, 2.0]]});
        let ann = |id: u64, x: f64, track: i64| serde_json::json!({"image_id": id, "bbox": [x, 0.0, 10.0, 10.0], "track_id": track});
        // Images and annotations out of frame order; frame 5 has two boxes, frame 3 none.
        let doc = serde_json::json!({
            "images": [image(30, 5), image(10, 3), image(20, 1)],
            "annotations": [ann(30, 7.0, 2), ann(20, 1.0, 0), ann(30, 3.0, 1)],
        });
        let file = write(&dir, "seq.json", &doc.to_string());
        let boxes = GivenBoxes::load(&file, None, 0.0).unwrap();
        assert_eq!(boxes.listed_frames("seq"), vec![1, 3, 5]);
        assert_eq!(boxes.frames_with_boxes("seq"), vec![1, 5]);
        let tracks = |n| -> Vec<Option<i64>> {
            boxes
                .persons("seq", n, 100, 100)
                .iter()
                .map(|p| p.1)
                .collect()
        };
        assert_eq!(
            tracks(5),
            vec![Some(2), Some(1)],
            "the file's order within a frame"
        );
        assert_eq!(tracks(1), vec![Some(0)]);
        assert!(tracks(3).is_empty() && tracks(4).is_empty());
        assert!(boxes.persons("other", 1, 100, 100).is_empty());
        // The image entry comes back whole, fields vidpose does not read included.
        let entry = boxes.image("seq", 5).unwrap();
        assert_eq!(serde_json::to_value(&entry).unwrap(), image(30, 5));
        assert!(boxes.image("seq", 4).is_none());
    }

    #[test]
    fn a_broken_file_of_a_folder_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("anns");
        std::fs::create_dir(&folder).unwrap();
        let doc = |seq: &str, image_id: u64| {
            serde_json::json!({
                "images": [{"id": 1, "file_name": format!("{seq}/000000.jpg")}, {"id": 2, "file_name": format!("{seq}/000001.jpg")}],
                "annotations": [{"image_id": 1, "bbox": [0, 0, 5, 5]}, {"image_id": image_id, "bbox": [0, 0, 5, 5]}],
            })
            .to_string()
        };
        std::fs::write(folder.join("a.json"), doc("a", 2)).unwrap();
        // Its second annotation points at no image: found only after its first box was read.
        std::fs::write(folder.join("b.json"), doc("b", 9)).unwrap();
        std::fs::write(folder.join("c.json"), doc("c", 1)).unwrap();
        let boxes = GivenBoxes::load(&folder, None, 0.0).unwrap();
        assert!(!boxes.has_sequence("b"));
        assert!(boxes.listed_frames("b").is_empty() && boxes.persons("b", 0, 9, 9).is_empty());
        assert_eq!(boxes.unreadable().len(), 1);
        assert!(
            boxes.unreadable()[0].contains("b.json")
                && boxes.unreadable()[0].contains("image_id 9")
        );
        assert_eq!(boxes.frames_with_boxes("a"), vec![0, 1]);
        assert_eq!(boxes.persons("c", 0, 9, 9).len(), 2);
        assert_eq!(boxes.listed_frames("c"), vec![0, 1]);
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
