//! Frames decoded byte for byte as the reference decodes them: images as `cv2.imdecode`
//! (`IMREAD_COLOR`, what MMPose's `LoadImage` calls), videos as `cv2.VideoCapture`. The expected
//! SHA-256 of OpenCV's RGB bytes come from `scripts/make_decode_fixtures.py`
//! (`tests/fixtures/decode/expected.json`); the real PoseTrack/COCO files in `../shared/data` are
//! checked when present.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use vidpose::image::{read_still, RgbImage};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn digest(img: &RgbImage) -> (u64, u64, String) {
    let hash = Sha256::digest(&img.data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    (img.width as u64, img.height as u64, hex)
}

fn wanted(entry: &Value) -> (u64, u64, String) {
    (
        entry["width"].as_u64().unwrap(),
        entry["height"].as_u64().unwrap(),
        entry["sha256"].as_str().unwrap().to_string(),
    )
}

/// Checks one image against OpenCV's result; returns a line describing a mismatch.
fn check_image(path: &Path, entry: &Value) -> Option<String> {
    let result = read_still(path);
    match (entry.is_null(), result) {
        (true, Err(e)) => {
            let message = e.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            None
        }
        (true, Ok(Some(_))) => Some(format!(
            "{}: OpenCV refuses it, vidpose decoded it",
            path.display()
        )),
        (_, Ok(None)) => Some(format!("{}: not decoded as JPEG/PNG", path.display())),
        (false, Err(e)) => Some(format!("{}: {e}", path.display())),
        (false, Ok(Some(decoded))) => {
            let (mine, theirs) = (digest(&decoded.image), wanted(entry));
            (mine != theirs).then(|| {
                format!(
                    "{}: {}x{} {} vs OpenCV {}x{} {}",
                    path.display(),
                    mine.0,
                    mine.1,
                    mine.2,
                    theirs.0,
                    theirs.1,
                    theirs.2
                )
            })
        }
    }
}

/// Decodes every frame of a video or image folder through the pipeline's decoder.
fn decode_all(path: &Path) -> Vec<RgbImage> {
    let jobs = vidpose::video::discover(&[path.to_path_buf()]).unwrap();
    let mut decoder = vidpose::video::decode::open(&jobs[0], 25.0, 2).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = decoder.next_frame().unwrap() {
        frames.push(f.image);
    }
    frames
}

fn check_video(path: &Path, entry: &Value) -> Vec<String> {
    let theirs: Vec<_> = entry.as_array().unwrap().iter().map(wanted).collect();
    let mine: Vec<_> = decode_all(path).iter().map(digest).collect();
    if mine.len() != theirs.len() {
        return vec![format!(
            "{}: {} frames vs OpenCV's {}",
            path.display(),
            mine.len(),
            theirs.len()
        )];
    }
    mine.iter()
        .zip(&theirs)
        .enumerate()
        .filter(|(_, (m, t))| m != t)
        .map(|(i, (m, t))| format!("{} frame {i}: {m:?} vs OpenCV {t:?}", path.display()))
        .collect()
}

#[test]
fn images_decode_as_opencv_decodes_them() {
    let expected = expected();
    let images = expected["images"].as_object().unwrap();
    assert!(images.len() >= 25, "fixture list looks cut short");
    let failures: Vec<String> = images
        .iter()
        .filter_map(|(name, entry)| check_image(&fixtures().join("images").join(name), entry))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn recoverable_jpeg_faults_warn_and_fatal_ones_name_the_file() {
    let dir = fixtures().join("images");
    let stray = read_still(&dir.join("extraneous_bytes.jpg"))
        .unwrap()
        .unwrap();
    assert!(stray.warning.unwrap().contains("extraneous"));
    assert!(read_still(&dir.join("rgb420.jpg"))
        .unwrap()
        .unwrap()
        .warning
        .is_none());
    let cut = read_still(&dir.join("truncated_baseline.jpg")).unwrap_err();
    assert!(cut
        .to_string()
        .contains("truncated_baseline.jpg: damaged or unsupported JPEG"));
    // Not an image at all: left to the next decoder.
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("notes.jpg");
    std::fs::write(&text, "hello").unwrap();
    assert!(read_still(&text).unwrap().is_none());
    // A header claiming more pixels than OpenCV allows is refused before allocating.
    let mut huge = std::fs::read(dir.join("rgb420.jpg")).unwrap();
    let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
    let big = tmp.path().join("huge.jpg");
    std::fs::write(&big, huge).unwrap();
    let err = read_still(&big).unwrap_err().to_string();
    assert!(
        err.contains("huge.jpg") && err.contains("60000x60000"),
        "{err}"
    );
}

#[test]
fn videos_decode_as_opencv_videocapture_converts_them() {
    let expected = expected();
    let videos = expected["videos"].as_object().unwrap();
    assert!(videos.len() >= 8);
    // Phone-style display matrices: VideoCapture turns these frames upright.
    assert!(videos.contains_key("h264_46x26_rotate90.mp4"));
    let failures: Vec<String> = videos
        .iter()
        .flat_map(|(name, entry)| check_video(&fixtures().join("videos").join(name), entry))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn real_posetrack_and_coco_files_decode_as_opencv_decodes_them() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let expected = expected();
    let mut failures = Vec::new();
    let images = expected["shared_images"].as_object().unwrap();
    assert!(images.len() >= 12);
    for (rel, entry) in images {
        let path = data.join(rel);
        if path.exists() {
            failures.extend(check_image(&path, entry));
        }
    }
    for (rel, entry) in expected["shared_videos"].as_object().unwrap() {
        let path = data.join(rel);
        if path.exists() {
            failures.extend(check_video(&path, entry));
        }
    }
    // A PoseTrack sequence folder goes through the same decoder as single files.
    let seq = data.join("posetrack18/videos/000001_mpiinew_test");
    for (i, frame) in decode_all(&seq).iter().enumerate() {
        let rel = format!("posetrack18/videos/000001_mpiinew_test/{i:06}.jpg");
        if digest(frame) != wanted(&images[&rel]) {
            failures.push(format!("{rel} decoded in its folder differs from OpenCV"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The top-down crop's warp against `cv2.warpAffine(INTER_LINEAR)` on a cut of a real frame, at
/// the models' widths and at widths where OpenCV's vector loop leaves a scalar tail.
#[test]
fn crop_warps_match_cv2_warpaffine() {
    let expected = expected();
    let source = &expected["warp_source"];
    let frame =
        read_still(&Path::new(env!("CARGO_MANIFEST_DIR")).join(source["frame"].as_str().unwrap()))
            .unwrap()
            .unwrap()
            .image;
    let span = |key: &str| -> (usize, usize) {
        let v = source[key].as_array().unwrap();
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    let ((r0, r1), (c0, c1)) = (span("rows"), span("cols"));
    let mut src = RgbImage::new((c1 - c0) as u32, (r1 - r0) as u32);
    for y in r0..r1 {
        let row = (y * frame.width as usize + c0) * 3;
        src.data[(y - r0) * (c1 - c0) * 3..(y - r0 + 1) * (c1 - c0) * 3]
            .copy_from_slice(&frame.data[row..row + (c1 - c0) * 3]);
    }
    assert_eq!(digest(&src), wanted(source));
    let cases = expected["warps"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let m: Vec<f64> = case["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let inv = vidpose::geometry::invert_affine_f64(&m.try_into().unwrap()).unwrap();
        let (w, h, _) = wanted(case);
        let out = vidpose::pose::crop::warp_affine_linear(&src, &inv, w as usize, h as usize);
        let img = RgbImage {
            width: w as u32,
            height: h as u32,
            data: out,
        };
        if digest(&img) != wanted(case) {
            failures.push(format!("warp {i}: {w}x{h} differs from cv2.warpAffine"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
