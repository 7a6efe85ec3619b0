//! The source stage: decoding videos and numbered-image folders, and refusing bad input with
//! errors that name the file.

mod common;

use std::path::Path;

use common::*;
use vidpose::video::{decode, discover, SourceKind, VideoError};

fn decode_all(path: &Path) -> Result<Vec<vidpose::video::DecodedFrame>, VideoError> {
    let jobs = discover::discover(&[path.to_path_buf()])?;
    assert_eq!(jobs.len(), 1);
    let mut d = decode::open(&jobs[0], 25.0, 2)?;
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame()? {
        frames.push(f);
    }
    Ok(frames)
}

#[test]
fn mp4_frames_come_out_complete_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    make_mp4(&path, 12, 96, 64, 30.0);
    let frames = decode_all(&path).unwrap();
    assert_eq!(frames.len(), 12);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.number, i as u64);
        assert_eq!((f.image.width, f.image.height), (96, 64));
        assert_eq!(f.image.data.len(), 96 * 64 * 3);
        // Lossy coding moves grey levels by a few units at most; neighbours differ by 23.
        assert!(
            (mean_level(&f.image) - level(i) as f64).abs() < 6.0,
            "frame {i}"
        );
        assert!(
            (f.pts - i as f64 / 30.0).abs() < 1e-3,
            "frame {i} pts {}",
            f.pts
        );
        assert_eq!(f.file_name, "clip.mp4");
    }
}

#[test]
fn odd_width_rows_are_unpadded() {
    // Width 90 gives RGB rows of 270 bytes, which FFmpeg pads to an aligned stride.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.mp4");
    make_mp4(&path, 3, 90, 50, 25.0);
    let frames = decode_all(&path).unwrap();
    assert_eq!(frames.len(), 3);
    let f = &frames[1];
    assert_eq!(f.image.data.len(), 90 * 50 * 3);
    // Every row must hold the same flat level: a stride mistake would shear the picture.
    let first_row = &f.image.data[..270];
    let last_row = &f.image.data[49 * 270..];
    let mean = |r: &[u8]| r.iter().map(|&v| v as f64).sum::<f64>() / r.len() as f64;
    assert!((mean(first_row) - mean(last_row)).abs() < 4.0);
}

#[test]
fn numbered_jpeg_folder_starting_at_1000() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("seq");
    let numbers: Vec<u64> = (1000..1007).collect();
    make_jpeg_folder(&seq, &numbers);
    std::fs::write(seq.join("notes.txt"), "not a frame").unwrap();
    let frames = decode_all(&seq).unwrap();
    assert_eq!(frames.len(), 7);
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f.number, 1000 + k as u64);
        assert_eq!(f.file_name, format!("{:06}.jpg", 1000 + k));
        assert!((mean_level(&f.image) - level(k) as f64).abs() < 4.0);
        assert!((f.pts - k as f64 / 25.0).abs() < 1e-9);
    }
}

#[test]
fn batch_folder_becomes_one_job_per_video_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    make_mp4(&dir.path().join("b.mp4"), 2, 32, 32, 25.0);
    make_jpeg_folder(&dir.path().join("a_seq"), &[0, 1]);
    make_jpeg_folder(&dir.path().join("nested/c_seq"), &[5]);
    let jobs = discover::discover(&[dir.path().to_path_buf()]).unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["a_seq", "b", "c_seq"]);
    assert!(matches!(jobs[1].kind, SourceKind::VideoFile(_)));
}

#[test]
fn gaps_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    make_jpeg_folder(dir.path(), &[0, 1, 2, 5, 6]);
    let jobs = discover::discover(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(jobs[0].gaps(), vec![(2, 5)]);
}

fn assert_names(e: &VideoError, path: &Path, words: &[&str]) {
    let s = e.to_string();
    assert!(s.contains(&path.display().to_string()), "{s}");
    for w in words {
        assert!(s.contains(w), "expected `{w}` in: {s}");
    }
}

#[test]
fn missing_file() {
    let p = Path::new("/nonexistent/video.mp4");
    let e = decode_all(p).unwrap_err();
    assert_names(&e, p, &["no such file"]);
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.mp4");
    std::fs::write(&p, b"").unwrap();
    let e = decode_all(&p).unwrap_err();
    assert_names(&e, &p, &["empty"]);
}

#[test]
fn text_file_named_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.mp4");
    std::fs::write(&p, "these are my holiday notes, not a video\n".repeat(50)).unwrap();
    let e = decode_all(&p).unwrap_err();
    assert_names(&e, &p, &["FFmpeg"]);
}

#[test]
fn truncated_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.mp4");
    make_mp4(&p, 20, 64, 48, 25.0);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = decode_all(&p).unwrap_err();
    assert_names(&e, &p, &[]);
}

#[test]
fn truncated_mp4_with_index_first() {
    // The index (moov) at the front, as streaming encoders write it: the cut shows up as
    // frames that the container declares but the file no longer holds.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.mp4");
    make_mp4(&p, 40, 64, 48, 25.0);
    let fast = dir.path().join("fast.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&p)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&fast)
        .status();
    let Ok(status) = status else {
        eprintln!("skipped: the ffmpeg command is not installed");
        return;
    };
    assert!(status.success());
    let bytes = std::fs::read(&fast).unwrap();
    std::fs::write(&fast, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let e = decode_all(&fast).unwrap_err();
    assert_names(&e, &fast, &["truncated"]);
}

#[test]
fn folder_with_no_images() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "nothing here").unwrap();
    let e = discover::discover(&[dir.path().to_path_buf()]).unwrap_err();
    assert_names(&e, dir.path(), &["no numbered images"]);
}

#[test]
fn damaged_jpeg_in_a_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_jpeg_folder(dir.path(), &[0, 1]);
    let bad = dir.path().join("000002.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 definitely not a jpeg").unwrap();
    let e = decode_all(dir.path()).unwrap_err();
    assert_names(&e, &bad, &[]);
}
