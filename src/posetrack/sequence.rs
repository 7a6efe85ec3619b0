//! A PoseTrack sequence on disk: where its annotation file lies, and whether the frames in its
//! folder are the ones that file lists.

use std::collections::HashSet;
use std::path::PathBuf;

use super::boxes::GivenBoxes;
use crate::video::VideoJob;

/// The per-sequence annotation file of a PoseTrack layout: `<root>/images/<split>/<seq>/`
/// -> `<root>/annotations/<split>/<seq>.json`.
pub fn annotation_for(job: &VideoJob) -> Option<PathBuf> {
    let seq = job.posetrack.as_ref()?;
    let split = seq.split.as_ref()?;
    let root = job.path().parent()?.parent()?.parent()?;
    Some(
        root.join("annotations")
            .join(split)
            .join(format!("{}.json", seq.name)),
    )
}

/// A PoseTrack submission needs every frame the annotation file lists: a listed frame missing
/// from the folder fails the sequence (the evaluator would reject its output), and the returned
/// message says so; frames the file does not list are only worth a warning.
pub fn frames_mismatch(boxes: &GivenBoxes, name: &str, files: &[(u64, PathBuf)]) -> Option<String> {
    let listed = boxes.listed_frames(name);
    if listed.is_empty() {
        return None;
    }
    let on_disk: HashSet<u64> = files.iter().map(|f| f.0).collect();
    let missing: Vec<u64> = listed
        .iter()
        .copied()
        .filter(|n| !on_disk.contains(n))
        .collect();
    if let Some(first) = missing.first() {
        return Some(format!(
            "{}: lists {} frame(s) of `{name}` that the folder does not have (first: number {first}); the output would not pair with the annotation file",
            boxes.source().display(),
            missing.len()
        ));
    }
    if listed.len() < files.len() {
        tracing::warn!(
            "{name}: the folder has {} frames, {} lists {}; the extra frames are written too",
            files.len(),
            boxes.source().display(),
            listed.len()
        );
    }
    None
}
