//! The tracker fed with ground-truth poses (ids removed) must rebuild the tracks: the evaluator
//! then scores its output AP 100 and MOTA 100.

use std::path::Path;

use vidpose::geometry::BBox;
use vidpose::person::{Keypoint, Person, NUM_KEYPOINTS};
use vidpose::posetrack::eval::{evaluate_dirs, NUM_JOINTS};
use vidpose::posetrack::{Annotation, PoseTrackFile};
use vidpose::track::{Tracker, TrackerConfig};

fn to_person(a: &Annotation) -> Person {
    let k = a.keypoints.as_ref().unwrap();
    let kps: [Keypoint; NUM_KEYPOINTS] = std::array::from_fn(|i| {
        let present = !(k[3 * i] == 0.0 && k[3 * i + 1] == 0.0 && k[3 * i + 2] == 0.0);
        Keypoint {
            x: k[3 * i] as f32,
            y: k[3 * i + 1] as f32,
            score: if present { 0.9 } else { 0.0 },
        }
    });
    let b = a.bbox.unwrap();
    Person {
        bbox: BBox::from_xywh([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]),
        bbox_score: 1.0,
        keypoints: Some(kps),
        track_id: None,
    }
}

fn to_annotation(p: &Person, image_id: u64) -> Annotation {
    let kps = p.keypoints.unwrap();
    Annotation {
        image_id,
        id: None,
        track_id: p.track_id.map(|t| t as i64),
        bbox: Some(p.bbox.to_xywh().map(f64::from)),
        bbox_head: None,
        keypoints: Some(
            kps.iter()
                .flat_map(|k| [k.x as f64, k.y as f64, k.score as f64])
                .collect(),
        ),
        scores: Some(kps.iter().map(|k| k.score as f64).collect()),
        score: Some(p.bbox_score as f64),
        category_id: Some(1),
        extra: Default::default(),
    }
}

#[test]
fn tracking_ground_truth_poses_scores_100() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/perfect");
    let out = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(case.join("gt")).unwrap() {
        let path = entry.unwrap().path();
        let gt = PoseTrackFile::read(&path).unwrap();
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut pred = PoseTrackFile {
            images: gt.images.clone(),
            annotations: Vec::new(),
            categories: gt.categories.clone(),
        };
        for image in &gt.images {
            let mut persons: Vec<Person> = gt
                .annotations
                .iter()
                .filter(|a| a.image_id == image.id)
                .map(to_person)
                .collect();
            tracker.update(&mut persons).unwrap();
            pred.annotations
                .extend(persons.iter().map(|p| to_annotation(p, image.id)));
        }
        pred.write_atomic(&out.path().join(path.file_name().unwrap()))
            .unwrap();
    }
    let report = evaluate_dirs(&case.join("gt"), out.path()).unwrap();
    assert_eq!(report.ap.ap[NUM_JOINTS], 100.0);
    let mot = report.mot.as_ref().unwrap();
    assert_eq!(
        mot.mota[NUM_JOINTS],
        100.0,
        "{}",
        report.mot_table().unwrap_or_default()
    );
}
