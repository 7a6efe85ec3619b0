//! The PoseTrack 2018 submission of one video: an image entry per frame (the annotation
//! file's own when it lists the frame), the people of each frame as annotations, and image
//! ids made unique when the file is assembled.

use std::collections::HashSet;
use std::path::Path;

use super::format::{Annotation, Category, Image, PoseTrackFile};
use crate::person::Person;
use crate::track::nms::instance_score;
use crate::video::{SourceKind, VideoJob};

/// One frame's entries; `from_reference` when the image entry came from an annotation file.
struct FrameEntry {
    image: Image,
    annotations: Vec<Annotation>,
    from_reference: bool,
}

/// A video's submission, built frame by frame.
#[derive(Default)]
pub struct Submission {
    frames: Vec<FrameEntry>,
}

impl Submission {
    /// Adds the next frame; `from_reference` when `image` is the annotation file's entry.
    pub fn push(&mut self, image: Image, annotations: Vec<Annotation>, from_reference: bool) {
        self.frames.push(FrameEntry {
            image,
            annotations,
            from_reference,
        });
    }

    /// The file: image ids unique, `nframes` filled in, annotations pointing at their image.
    pub fn finish(self) -> PoseTrackFile {
        assemble(self.frames)
    }
}

/// Where a frame sits in its video.
#[derive(Debug, Clone, Copy)]
pub struct FramePlace<'a> {
    /// Position within the decoded frames, from 0.
    pub index: u64,
    /// The frame's number: from its file name, or from its timestamp in a video file.
    pub number: u64,
    /// The frame's file name in a folder of images.
    pub file_name: &'a str,
}

/// The image entry for a frame the annotation file does not list: the PoseTrack scheme for
/// PoseTrack sequences, else the frame's position and file name.
pub fn image_entry(job: &VideoJob, frame: FramePlace<'_>) -> Image {
    let number = frame.number;
    match &job.posetrack {
        Some(seq) => {
            let id = seq.image_id(number);
            // The frame's own extension: a sequence of PNG frames is named `.png`.
            let file_name = match Path::new(&frame.file_name).extension() {
                Some(ext) => Path::new(&seq.file_name(number))
                    .with_extension(ext)
                    .to_string_lossy()
                    .into_owned(),
                None => seq.file_name(number),
            };
            Image {
                id,
                file_name,
                vid_id: Some(format!("{:06}", seq.number)),
                frame_id: Some(id),
                nframes: None,
                is_labeled: None,
                ignore_regions_x: None,
                ignore_regions_y: None,
                extra: Default::default(),
            }
        }
        None => {
            // A video's frames are numbered from their timestamps: after frames lost to damage,
            // the later ones keep their true index (and the boxes keyed by it).
            let index = match &job.kind {
                SourceKind::VideoFile(_) | SourceKind::Stream { .. } => frame.number,
                _ => frame.index,
            };
            Image {
                id: index,
                file_name: match &job.kind {
                    SourceKind::VideoFile(_) | SourceKind::Stream { .. } => {
                        format!("{}/{:06}.jpg", job.name, index)
                    }
                    _ => format!("{}/{}", job.name, frame.file_name),
                },
                vid_id: Some(job.name.clone()),
                frame_id: Some(index),
                nframes: None,
                is_labeled: None,
                ignore_regions_x: None,
                ignore_regions_y: None,
                extra: Default::default(),
            }
        }
    }
}

/// Builds the file: image ids made unique (an annotation file that covers only some frames
/// could share ids with the numbering of the others), `nframes` filled in, and annotations
/// pointing at their image.
fn assemble(mut frames: Vec<FrameEntry>) -> PoseTrackFile {
    let mut seen = HashSet::new();
    if !frames.iter().all(|f| seen.insert(f.image.id)) {
        let reference_ids: HashSet<u64> = frames
            .iter()
            .filter(|f| f.from_reference)
            .map(|f| f.image.id)
            .collect();
        let first_free = reference_ids.iter().max().map_or(0, |m| m + 1);
        for (id, f) in (first_free..).zip(frames.iter_mut().filter(|f| !f.from_reference)) {
            f.image.id = id;
            f.image.frame_id = Some(id);
        }
    }
    let n = frames.len() as u64;
    let mut file = PoseTrackFile {
        images: Vec::with_capacity(frames.len()),
        annotations: Vec::new(),
        categories: vec![Category::person()],
    };
    for f in frames {
        let id = f.image.id;
        for (i, mut a) in f.annotations.into_iter().enumerate() {
            a.image_id = id;
            a.id = Some(id * 100 + i as u64);
            file.annotations.push(a);
        }
        let mut image = f.image;
        image.nframes.get_or_insert(n);
        file.images.push(image);
    }
    file
}

/// The frame's persons, highest instance score first as MMPose's PoseTrack18 metric writes
/// them (the evaluator pairs predictions with people in file order when they tie, so the order
/// can move the AP); `image_id` and `id` are set by `assemble`.
pub fn annotations(persons: &[Person]) -> Vec<Annotation> {
    let mut persons: Vec<(f32, &Person)> = persons.iter().map(|p| (instance_score(p), p)).collect();
    // Stable: equal scores keep the tracker's order.
    persons.sort_by(|a, b| b.0.total_cmp(&a.0));
    persons
        .into_iter()
        .map(|(score, p)| {
            let [x, y, w, h] = p.bbox.to_xywh();
            let (keypoints, scores) = match &p.keypoints {
                Some(k) => (
                    Some(
                        k.iter()
                            .flat_map(|k| [k.x as f64, k.y as f64, k.score as f64])
                            .collect(),
                    ),
                    Some(k.iter().map(|k| k.score as f64).collect()),
                ),
                None => (None, None),
            };
            Annotation {
                image_id: 0,
                id: None,
                track_id: p.track_id.map(|t| t as i64),
                bbox: Some([x as f64, y as f64, w as f64, h as f64]),
                bbox_head: None,
                keypoints,
                scores,
                // MMPose's instance score (box score x mean confident keypoint score), as its
                // PoseTrack18 metric writes it; the box score alone without keypoints.
                score: Some(score as f64),
                category_id: Some(1),
                extra: Default::default(),
            }
        })
        .collect()
}
