//! Inputs that used to crash a batch, decode wrongly or fail everything: names that are not
//! UTF-8, rotated phone videos, damaged and cut-off files, broken sequences and link loops in
//! a batch folder. Each input is built here, with the `ffmpeg` command where a codec or
//! container feature is needed.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::*;
use vidpose::image::RgbImage;
use vidpose::video::{decode, discover, DecodedFrame, SourceKind, VideoError};

/// Runs the `ffmpeg` command quietly; false (the test then skips) when it is not installed.
fn ffmpeg(args: &[&OsStr]) -> bool {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .status();
    match status {
        Ok(s) => {
            assert!(s.success(), "ffmpeg {args:?} failed");
            true
        }
        Err(_) => {
            eprintln!("skipped: the ffmpeg command is not installed");
            false
        }
    }
}

/// `args` as ffmpeg arguments.
macro_rules! ff {
    ($($a:expr),* $(,)?) => { ffmpeg(&[$(AsRef::<OsStr>::as_ref(&$a)),*]) };
}

/// A clip of FFmpeg's test pattern: every frame different and no symmetry, so a turn or a
/// mirror shows.
fn testsrc(path: &Path, frames: u32, size: &str, codec: &str, extra: &[&str]) -> bool {
    let src = format!("testsrc=size={size}:rate=25");
    let n = frames.to_string();
    let mut args: Vec<&OsStr> = ["-f", "lavfi", "-i", &src, "-frames:v", &n, "-c:v", codec]
        .into_iter()
        .map(OsStr::new)
        .collect();
    args.extend(extra.iter().map(OsStr::new));
    args.push(path.as_os_str());
    ffmpeg(&args)
}

fn open_all(path: &Path) -> Result<Vec<DecodedFrame>, VideoError> {
    let jobs = discover::discover(&[path.to_path_buf()])?;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let mut d = decode::open(&jobs[0], 25.0, 2)?;
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame()? {
        frames.push(f);
    }
    Ok(frames)
}

/// Log lines written while `f` runs on this thread (warnings and above).
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (out, logs)
}

#[cfg(unix)]
fn non_utf8(prefix: &str, suffix: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe");
    bytes.extend_from_slice(suffix.as_bytes());
    std::ffi::OsString::from_vec(bytes)
}

// ---------------------------------------------------------------------------------------------
// 1. Names that are not UTF-8

#[cfg(unix)]
#[test]
fn video_with_a_non_utf8_name_in_a_non_utf8_folder_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(non_utf8("caméra", ""));
    std::fs::create_dir(&folder).unwrap();
    let plain = dir.path().join("plain.mp4");
    make_mp4(&plain, 6, 64, 48, 25.0);
    let video = folder.join(non_utf8("clip", ".mp4"));
    std::fs::rename(&plain, &video).unwrap();
    assert!(video.to_str().is_none());

    let frames = open_all(&video).unwrap();
    assert_eq!(frames.len(), 6);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.number, i as u64);
        assert!((mean_level(&f.image) - level(i) as f64).abs() < 6.0);
    }
    // The same file found in a batch beside an ordinary one.
    make_mp4(&plain, 2, 32, 32, 25.0);
    std::fs::rename(&plain, folder.join("other.mp4")).unwrap();
    let jobs = discover::discover(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for job in &jobs {
        let mut d = decode::open(job, 25.0, 1).unwrap();
        assert!(d.next_frame().unwrap().is_some());
    }
}

#[cfg(unix)]
#[test]
fn bench_decode_on_a_non_utf8_name_succeeds() {
    // It used to panic inside ffmpeg-next (exit 101).
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.mp4");
    make_mp4(&plain, 4, 64, 48, 25.0);
    let video = dir.path().join(non_utf8("clip", ".mp4"));
    std::fs::rename(&plain, &video).unwrap();
    let out = vidpose()
        .args(["bench", "decode"])
        .arg(&video)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 frames 64x48"), "{stdout}");
}

#[cfg(unix)]
#[test]
fn image_folders_with_non_utf8_names_decode() {
    let dir = tempfile::tempdir().unwrap();
    // JPEG frames go through the OpenCV-exact decoder, BMP frames through FFmpeg.
    let jpegs = dir.path().join(non_utf8("seq", "_jpg"));
    make_jpeg_folder(&jpegs, &[0, 1, 2]);
    let bmps = dir.path().join(non_utf8("seq", "_bmp"));
    std::fs::create_dir(&bmps).unwrap();
    for k in 0..3u64 {
        write_bmp(
            &bmps.join(format!("{k:06}.bmp")),
            &test_frame(40, 30, level(k as usize)),
        );
    }
    for seq in [&jpegs, &bmps] {
        let frames = open_all(seq).unwrap();
        assert_eq!(frames.len(), 3, "{}", seq.display());
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(f.number, k as u64);
            assert!((mean_level(&f.image) - level(k) as f64).abs() < 4.0);
        }
    }
    // BMP is lossless: FFmpeg's picture is exactly the one written.
    let frames = open_all(&bmps).unwrap();
    assert_eq!(frames[1].image.data, test_frame(40, 30, level(1)).data);
    let jobs = discover::discover(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(jobs.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. Rotation metadata

/// Writes the track header's matrix `(a, b, c, d)` (16.16 fixed point) into an mp4: how a
/// phone marks a rotated or mirrored recording. FFmpeg's display matrix maps a source pixel
/// `(x, y)` to `(a x + c y, b x + d y)`.
fn set_track_matrix(path: &Path, out: &Path, [a, b, c, d]: [i32; 4]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    assert_eq!(bytes[at + 8], 0, "version 0 track header expected");
    // size, type, version/flags, 5 x u32 times and ids, 8 reserved, 4 x u16
    let matrix = at + 48;
    let values = [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30];
    for (i, v) in values.iter().enumerate() {
        bytes[matrix + 4 * i..matrix + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(out, bytes).unwrap();
}

/// `image` transformed so that output pixel `(x, y)` is source pixel `map(x, y, w, h)`.
fn remap(
    image: &RgbImage,
    swap: bool,
    map: impl Fn(usize, usize, usize, usize) -> (usize, usize),
) -> RgbImage {
    let (w, h) = (image.width as usize, image.height as usize);
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut out = RgbImage::new(ow as u32, oh as u32);
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = map(x, y, w, h);
            out.data[(y * ow + x) * 3..][..3]
                .copy_from_slice(&image.data[(sy * w + sx) * 3..][..3]);
        }
    }
    out
}

#[test]
fn rotated_and_mirrored_videos_come_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.mp4");
    if !testsrc(&plain, 3, "64x48", "mpeg4", &["-q:v", "2"]) {
        return;
    }
    let upright = open_all(&plain).unwrap();
    type Map = fn(usize, usize, usize, usize) -> (usize, usize);
    // `rotate=N` is the legacy tag; OpenCV (and FFmpeg) show `rotate=90` turned 90 degrees
    // counter-clockwise, `rotate=270` clockwise.
    let tagged: [(&str, bool, Map); 3] = [
        ("90", true, |x, y, w, _| (w - 1 - y, x)),
        ("180", false, |x, y, w, h| (w - 1 - x, h - 1 - y)),
        ("270", true, |x, y, _, h| (y, h - 1 - x)),
    ];
    let mut cases: Vec<(PathBuf, bool, Map)> = Vec::new();
    for (angle, swap, map) in tagged {
        let path = dir.path().join(format!("rotate{angle}.mp4"));
        let tag = format!("rotate={angle}");
        assert!(ff!["-i", plain, "-c", "copy", "-metadata:s:v", tag, path]);
        cases.push((path, swap, map));
    }
    let matrices: [(&str, [i32; 4], bool, Map); 4] = [
        ("clockwise", [0, 1, -1, 0], true, |x, y, _, h| {
            (y, h - 1 - x)
        }),
        // Mirrored matrices are read by their angle alone, as OpenCV reads them: a left-right
        // mirror as a half turn, the diagonal mirrors as quarter turns.
        ("mirror_lr", [-1, 0, 0, 1], false, |x, y, w, h| {
            (w - 1 - x, h - 1 - y)
        }),
        ("transpose", [0, 1, 1, 0], true, |x, y, _, h| (y, h - 1 - x)),
        ("antitranspose", [0, -1, -1, 0], true, |x, y, w, _| {
            (w - 1 - y, x)
        }),
    ];
    for (name, m, swap, map) in matrices {
        let path = dir.path().join(format!("{name}.mp4"));
        set_track_matrix(&plain, &path, m);
        cases.push((path, swap, map));
    }
    for (path, swap, map) in cases {
        let frames = open_all(&path).unwrap();
        assert_eq!(frames.len(), upright.len());
        for (f, u) in frames.iter().zip(&upright) {
            let want = remap(&u.image, swap, map);
            assert_eq!(
                (f.image.width, f.image.height),
                (want.width, want.height),
                "{}",
                path.display()
            );
            assert!(f.image.data == want.data, "{}: pixels", path.display());
            assert_eq!((f.number, f.pts), (u.number, u.pts));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Frames lost in the middle, repeated timestamps

#[test]
fn damaged_matroska_keeps_true_frame_numbers_and_warns_of_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mkv");
    if !testsrc(&whole, 75, "64x48", "mpeg4", &["-g", "5"]) {
        return;
    }
    let mut bytes = std::fs::read(&whole).unwrap();
    let n = bytes.len();
    bytes[n * 2 / 5..n * 3 / 5].fill(0);
    let damaged = dir.path().join("damaged.mkv");
    std::fs::write(&damaged, bytes).unwrap();

    let (frames, logs) = with_logs(|| open_all(&damaged).unwrap());
    assert!(frames.len() < 75 && frames.len() > 20, "{}", frames.len());
    for f in &frames {
        // Every frame keeps the number its time gives it, the ones after the hole included.
        assert_eq!(f.number, (f.pts * 25.0).round() as u64, "pts {}", f.pts);
    }
    let (before, after) = frames
        .windows(2)
        .map(|w| (w[0].number, w[1].number))
        .find(|(a, b)| b - a > 1)
        .expect("a gap");
    assert!(after > before + 5, "{before} -> {after}");
    assert!(frames.last().unwrap().number == 74);
    let range = format!("frames {} to {} are missing", before + 1, after - 1);
    assert!(
        logs.contains(&range) && logs.contains(&damaged.display().to_string()),
        "expected `{range}` for {} in:\n{logs}",
        damaged.display()
    );
}

#[test]
fn repeated_timestamp_gets_the_next_number_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let intra = dir.path().join("intra.mkv");
    if !testsrc(&intra, 10, "32x24", "mjpeg", &[]) {
        return;
    }
    // Frame 5 carries frame 4's timestamp; frame 6 and later keep theirs.
    let dup = dir.path().join("dup.mkv");
    assert!(ff![
        "-i",
        intra,
        "-c",
        "copy",
        "-bsf:v",
        "setts=ts='if(eq(N,5),PREV_OUTPTS,PTS)'",
        dup
    ]);
    let (frames, logs) = with_logs(|| open_all(&dup).unwrap());
    let numbers: Vec<u64> = frames.iter().map(|f| f.number).collect();
    assert_eq!(numbers, (0..10).collect::<Vec<u64>>());
    assert!((frames[5].pts - frames[4].pts).abs() < 1e-9);
    assert!(
        logs.contains("dup.mkv")
            && logs.contains(
                "the frame after frame 4 has timestamp 0.160 s, not after 0.160 s; numbered 5"
            ),
        "{logs}"
    );
    assert!(!logs.contains("missing"), "{logs}");
}

#[test]
fn ordinary_files_with_b_frames_number_consecutively_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    for (name, rate) in [("b.mp4", "30000/1001"), ("b.mkv", "25"), ("b.ts", "24")] {
        let path = dir.path().join(name);
        let src = format!("testsrc=size=64x48:rate={rate}");
        if !ff![
            "-f",
            "lavfi",
            "-i",
            src,
            "-frames:v",
            "40",
            "-c:v",
            "libx264",
            "-bf",
            "3",
            path
        ] {
            return;
        }
        let (frames, logs) = with_logs(|| open_all(&path).unwrap());
        let numbers: Vec<u64> = frames.iter().map(|f| f.number).collect();
        assert_eq!(numbers, (0..40).collect::<Vec<u64>>(), "{name}");
        assert!(logs.is_empty(), "{name}: {logs}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A cut-off fast-start mp4

#[test]
fn cut_fast_start_h264_mp4_is_called_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    if !testsrc(&whole, 40, "64x48", "libx264", &["-movflags", "+faststart"]) {
        return;
    }
    let bytes = std::fs::read(&whole).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp");
    assert!(
        bytes.windows(4).position(|w| w == b"moov") < bytes.windows(4).position(|w| w == b"mdat")
    );
    // Cuts in the index (moov) and in the frames (mdat).
    for percent in [10, 20, 40, 60, 90] {
        let cut = dir.path().join(format!("cut{percent}.mp4"));
        std::fs::write(&cut, &bytes[..bytes.len() * percent / 100]).unwrap();
        let e = open_all(&cut).unwrap_err().to_string();
        assert!(
            e.contains(&cut.display().to_string()) && e.contains("truncated"),
            "{percent}%: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Faults inside a batch folder fail only their own entry

fn boxes_file(path: &Path, videos: &[(&str, u64)]) {
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for (video, frames) in videos {
        for i in 0..*frames {
            let id = images.len() + 1;
            images.push(serde_json::json!({"id": id, "file_name": format!("{video}/{i:06}.jpg")}));
            anns.push(serde_json::json!({"image_id": id, "bbox": [1.0, 2.0, 10.0, 20.0], "track_id": 0, "category_id": 1}));
        }
    }
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn two_images_with_one_number_fail_only_their_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch");
    make_jpeg_folder(&batch.join("a"), &[0, 1]);
    std::fs::copy(batch.join("a/000001.jpg"), batch.join("a/1.jpg")).unwrap();
    make_jpeg_folder(&batch.join("b"), &[0, 1, 2]);
    make_mp4(&batch.join("c.mp4"), 2, 64, 48, 25.0);

    let jobs = discover::discover(std::slice::from_ref(&batch)).unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(matches!(jobs[0].kind, SourceKind::Invalid { .. }));
    let e = decode::open(&jobs[0], 25.0, 1).err().unwrap().to_string();
    for part in [
        batch.join("a").display().to_string(),
        "two images carry number 1".into(),
        batch.join("a/000001.jpg").display().to_string(),
        batch.join("a/1.jpg").display().to_string(),
    ] {
        assert!(e.contains(&part), "expected `{part}` in: {e}");
    }

    // Through the pipeline: `a` is the one failure, `b` and `c` are written.
    let boxes = dir.path().join("boxes.json");
    boxes_file(&boxes, &[("a", 2), ("b", 3), ("c", 2)]);
    let out = dir.path().join("out");
    let config = vidpose::config::Config::load(
        None,
        &[
            format!("output.dir='{}'", out.display()),
            "detector.kind=boxes".into(),
            format!("detector.boxes='{}'", boxes.display()),
            "pipeline.progress=false".into(),
            "pose.model=none".into(),
            "tracker.kind=given".into(),
        ],
    )
    .unwrap();
    let sink = Box::new(vidpose::sinks::standard(None, false));
    let report =
        vidpose::pipeline::run(&config, jobs, sink, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, "a");
    assert!(
        report.failed[0].1.contains("two images carry number 1"),
        "{}",
        report.failed[0].1
    );
    assert!(out.join("b.json").exists() && out.join("c.json").exists());
}

#[cfg(unix)]
#[test]
fn link_loops_in_a_batch_folder_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch");
    make_jpeg_folder(&batch.join("b"), &[0, 1]);
    make_mp4(&batch.join("c.mp4"), 2, 64, 48, 25.0);
    let link =
        |target: &str, name: &str| std::os::unix::fs::symlink(target, batch.join(name)).unwrap();
    link(".", "again"); // back to the batch folder itself
    link("self.mp4", "self.mp4"); // a link to itself
    link("ping", "pong"); // a loop of two
    link("pong", "ping");
    link("b", "b_alias"); // a second name for a sequence

    let (jobs, logs) = with_logs(|| discover::discover(std::slice::from_ref(&batch)).unwrap());
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["b", "c"], "{logs}");
    for name in ["again", "self.mp4", "ping", "pong", "b_alias"] {
        let path = batch.join(name).display().to_string();
        assert!(
            logs.contains(&format!("{path}: skipped")),
            "no warning for {path} in:\n{logs}"
        );
    }
}
