//! The PoseTrack 2018 submission of one video: an image entry per frame (the annotation
//! file's own when it lists the frame), the people of each frame as annotations, and image
//! ids made unique when the file is assembled.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{Annotation, Category, Image, PoseTrackError};
use crate::fsutil;
use crate::person::Person;
use crate::track::nms::instance_score;
use crate::video::{SourceKind, VideoJob};

/// One frame's entries, as spooled: a JSON line each.
#[derive(Serialize, Deserialize)]
struct SpooledFrame {
    image: Image,
    annotations: Vec<Annotation>,
}

/// A video's submission, built frame by frame.
///
/// Frames go to a spool file beside the output as they come (one JSON line each), so a long
/// video's results never sit in memory: only each frame's image id does, for the assembly.
/// The spool is a `*.partial-<host>-<pid>` file, removed when the submission is written or
/// dropped (and, if the run is killed, by the next run's clean-up of stale partial files).
pub struct Submission {
    output: PathBuf,
    spool_path: PathBuf,
    spool: BufWriter<File>,
    /// Per frame: its image id, and whether the entry came from an annotation file.
    ids: Vec<(u64, bool)>,
}

impl Submission {
    /// Starts the submission that [`Submission::finish`] writes to `output`.
    pub fn create(output: &Path) -> Result<Self, PoseTrackError> {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".frames");
        let spool_path = fsutil::temp_path(&output.with_file_name(name));
        let write_error = |source| PoseTrackError::Write {
            path: spool_path.clone(),
            source,
        };
        if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let spool = BufWriter::new(File::create(&spool_path).map_err(write_error)?);
        Ok(Self {
            output: output.to_path_buf(),
            spool_path,
            spool,
            ids: Vec::new(),
        })
    }

    /// Adds the next frame; `from_reference` when `image` is the annotation file's entry.
    pub fn push(
        &mut self,
        image: Image,
        annotations: Vec<Annotation>,
        from_reference: bool,
    ) -> Result<(), PoseTrackError> {
        self.ids.push((image.id, from_reference));
        let frame = SpooledFrame { image, annotations };
        serde_json::to_writer(&mut self.spool, &frame)
            .map_err(std::io::Error::from)
            .and_then(|()| self.spool.write_all(b"\n"))
            .map_err(|source| PoseTrackError::Write {
                path: self.spool_path.clone(),
                source,
            })
    }

    /// Writes the file atomically: image ids unique, `nframes` filled in, annotations pointing
    /// at their image.
    pub fn finish(mut self) -> Result<PathBuf, PoseTrackError> {
        self.spool.flush().map_err(|source| PoseTrackError::Write {
            path: self.spool_path.clone(),
            source,
        })?;
        let ids = unique_ids(&self.ids);
        let n = ids.len() as u64;
        let (spool_path, output) = (&self.spool_path, &self.output);
        fsutil::write_atomic_with(output, |out| {
            // The images, then the annotations: two reads of the spool.
            out.write_all(b"{\"images\":[")?;
            for_each_frame(spool_path, |k, frame| {
                let mut image = frame.image;
                if image.id != ids[k] {
                    image.id = ids[k];
                    image.frame_id = Some(ids[k]);
                }
                image.nframes.get_or_insert(n);
                if k > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &image)?;
                Ok(())
            })?;
            out.write_all(b"],\"annotations\":[")?;
            let mut first = true;
            for_each_frame(spool_path, |k, frame| {
                let id = ids[k];
                for (i, mut a) in frame.annotations.into_iter().enumerate() {
                    a.image_id = id;
                    a.id = Some(id * 100 + i as u64);
                    if !std::mem::take(&mut first) {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, &a)?;
                }
                Ok(())
            })?;
            out.write_all(b"],\"categories\":")?;
            serde_json::to_writer(&mut *out, &[Category::person()])?;
            out.write_all(b"}")
        })
        .map_err(|source| PoseTrackError::Write {
            path: output.clone(),
            source,
        })?;
        Ok(self.output.clone())
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool_path);
    }
}

/// Reads the spool back, frame by frame.
fn for_each_frame(
    spool: &Path,
    mut each: impl FnMut(usize, SpooledFrame) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for (k, line) in BufReader::new(File::open(spool)?).lines().enumerate() {
        let frame: SpooledFrame = serde_json::from_str(&line?)?;
        each(k, frame)?;
    }
    Ok(())
}

/// The frames' final image ids: as given, unless two frames share one (an annotation file that
/// covers only some frames could share ids with the numbering of the others); then the frames
/// not from the annotation file are renumbered after its largest id.
fn unique_ids(frames: &[(u64, bool)]) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut ids: Vec<u64> = frames.iter().map(|f| f.0).collect();
    if ids.iter().all(|id| seen.insert(*id)) {
        return ids;
    }
    let first_free = frames
        .iter()
        .filter(|f| f.1)
        .map(|f| f.0)
        .max()
        .map_or(0, |m| m + 1);
    let own = ids.iter_mut().zip(frames).filter(|(_, f)| !f.1);
    for (next, (id, _)) in (first_free..).zip(own) {
        *id = next;
    }
    ids
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
            Image::new(id, file_name, format!("{:06}", seq.number))
        }
        None => {
            // A video's frames are numbered from their timestamps: after frames lost to damage,
            // the later ones keep their true index (and the boxes keyed by it).
            let index = match &job.kind {
                SourceKind::VideoFile(_) | SourceKind::Stream { .. } => frame.number,
                _ => frame.index,
            };
            let file_name = match &job.kind {
                SourceKind::VideoFile(_) | SourceKind::Stream { .. } => {
                    format!("{}/{:06}.jpg", job.name, index)
                }
                _ => format!("{}/{}", job.name, frame.file_name),
            };
            Image::new(index, file_name, job.name.clone())
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posetrack::format::PoseTrackFile;

    fn image(id: u64) -> Image {
        Image::new(id, format!("seq/{id:06}.jpg"), "seq".into())
    }

    fn person(x: f64) -> Annotation {
        Annotation {
            image_id: 0,
            id: None,
            track_id: Some(3),
            bbox: Some([x, 1.5, 10.0, 20.0]),
            bbox_head: None,
            keypoints: Some((0..51).map(|i| i as f64 * 0.1 + x).collect()),
            scores: Some(vec![0.25; 17]),
            score: Some(0.123456789),
            category_id: Some(1),
            extra: Default::default(),
        }
    }

    #[test]
    fn spooled_frames_make_the_file_an_in_memory_build_would() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out/seq.json");
        let mut sub = Submission::create(&output).unwrap();
        // The annotation file's frame 7 and two frames of the vidpose numbering, one of which
        // collides with it: the latter two are renumbered after 7.
        let mut listed = image(7);
        listed.nframes = Some(40);
        listed.extra.insert("width".into(), 640.into());
        sub.push(image(6), vec![person(1.0), person(2.0)], false)
            .unwrap();
        sub.push(listed.clone(), vec![], true).unwrap();
        sub.push(image(7), vec![person(3.0)], false).unwrap();
        let spool = sub.spool_path.clone();
        assert!(spool.exists());
        assert_eq!(sub.finish().unwrap(), output);
        assert!(!spool.exists(), "the spool is removed");

        let renumbered = |old: u64, new: u64| {
            let mut i = image(old);
            i.id = new;
            i.frame_id = Some(new);
            i.nframes = Some(3);
            i
        };
        let with_ids = |mut a: Annotation, image: u64, id: u64| {
            a.image_id = image;
            a.id = Some(id);
            a
        };
        let expected = PoseTrackFile {
            images: vec![renumbered(6, 8), listed, renumbered(7, 9)],
            annotations: vec![
                with_ids(person(1.0), 8, 800),
                with_ids(person(2.0), 8, 801),
                with_ids(person(3.0), 9, 900),
            ],
            categories: vec![Category::person()],
        };
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "byte for byte what serializing the whole file gives"
        );
        assert_eq!(PoseTrackFile::read(&output).unwrap(), expected);
    }

    #[test]
    fn a_dropped_submission_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("seq.json");
        let mut sub = Submission::create(&output).unwrap();
        sub.push(image(0), vec![person(1.0)], false).unwrap();
        drop(sub);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn ids_stay_as_given_unless_they_collide() {
        assert_eq!(
            unique_ids(&[(3, false), (1, true), (2, false)]),
            vec![3, 1, 2]
        );
        assert_eq!(
            unique_ids(&[(1, false), (1, true), (2, false)]),
            vec![2, 1, 3]
        );
        assert_eq!(unique_ids(&[(0, false), (0, false)]), vec![0, 1]);
    }
}
