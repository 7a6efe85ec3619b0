//! Live inputs: loopback streams served by the `ffmpeg` CLI (each test starts and stops its
//! own server), live mode's drops and bounded latency, reconnection, JSON Lines output,
//! `--duration`, and bad URLs. Every test skips itself when `ffmpeg` is not installed.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use vidpose::config::Config;
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::person::Keypoint;
use vidpose::pipeline::messages::{Frame, VideoFailure, VideoMeta};
use vidpose::pipeline::sink::{FrameSink, Sinks};
use vidpose::pipeline::{self, RunReport};
use vidpose::sinks::JsonlSink;
use vidpose::video::discover;

fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: the ffmpeg command is not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens on 127.0.0.1:`port` (from /proc, without connecting: the
/// server takes one client only).
fn listening(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 3 && f[1] == local && f[3] == "0A"
    })
}

/// Waits (10 s at most) for an FFmpeg server to listen on `port`.
fn wait_until_listening(port: u16) {
    let started = Instant::now();
    while !listening(port) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ffmpeg does not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An FFmpeg process serving a test pattern at 25 fps over HTTP (MPEG-TS), killed on drop.
struct Server(Child);

impl Server {
    fn http(port: u16, seconds: f64) -> Self {
        Self::http_sized(port, seconds, "96x64")
    }

    fn http_sized(port: u16, seconds: f64, size: &str) -> Self {
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"))
            .args(["-c:v", "mpeg2video", "-g", "5", "-bf", "0", "-q:v", "5"])
            .args(["-f", "mpegts", "-flush_packets", "1", "-muxdelay", "0"])
            .args(["-listen", "1"])
            .arg(format!("http://127.0.0.1:{port}/live.ts"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg starts");
        wait_until_listening(port);
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/live.ts")
}

fn name(port: u16) -> String {
    format!("127.0.0.1_{port}_live")
}

/// A boxes file giving `video` one person (track 3) in frames 0..`frames`.
fn boxes_file(path: &Path, video: &str, frames: u64) {
    let images: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{video}/{i:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .map(|i| serde_json::json!({"image_id": i + 1, "bbox": [10.0, 8.0, 30.0, 40.0], "track_id": 3, "category_id": 1}))
        .collect();
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn config(dir: &Path, port: u16, extra: &[&str]) -> Config {
    let boxes = dir.join("boxes.json");
    boxes_file(&boxes, &name(port), 3000);
    config_many(dir, &boxes, extra)
}

/// Keypoints spread over the box, after `delay` per call.
struct FakePose {
    delay: Duration,
}

impl vidpose::stages::pose::PoseModel for FakePose {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; 17]>, Box<dyn std::error::Error + Send + Sync>> {
        std::thread::sleep(self.delay);
        Ok(items
            .iter()
            .map(|(_, b)| {
                std::array::from_fn(|j| Keypoint {
                    x: b.x1 + b.width() * (0.2 + 0.6 * (j % 4) as f32 / 3.0),
                    y: b.y1 + b.height() * (0.1 + 0.8 * (j / 4) as f32 / 4.0),
                    score: 0.9,
                })
            })
            .collect())
    }
}

/// When each frame reached the end of the chain, with its timestamp.
type Log = Arc<Mutex<Vec<(Instant, f64)>>>;

/// Records the frames' arrivals.
struct Arrivals(Log);

impl FrameSink for Arrivals {
    fn start(&mut self, _: &Arc<VideoMeta>) -> Result<(), VideoFailure> {
        Ok(())
    }
    fn frame(&mut self, frame: &mut Frame) -> Result<(), VideoFailure> {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), frame.decoded.pts));
        Ok(())
    }
    fn end(&mut self, _: &Arc<VideoMeta>, _: bool) -> Result<Vec<PathBuf>, VideoFailure> {
        Ok(Vec::new())
    }
}

/// Runs the stream at `port` with the fake pose model, JSON Lines into `jsonl`.
fn run_live(cfg: &Config, port: u16, delay: Duration, jsonl: &Path) -> RunReport {
    run_live_with(cfg, port, delay, jsonl, None)
}

fn run_live_with(
    cfg: &Config,
    port: u16,
    delay: Duration,
    jsonl: &Path,
    arrivals: Option<Log>,
) -> RunReport {
    let jobs = discover::discover(&[PathBuf::from(url(port))]).unwrap();
    let mut sinks = Sinks::new().with(Box::new(JsonlSink::create(jsonl).unwrap()));
    if let Some(a) = arrivals {
        sinks = sinks.with(Box::new(Arrivals(a)));
    }
    let sinks = sinks.with(Box::new(vidpose::sinks::standard(None, false)));
    pipeline::run_with_pose(
        cfg,
        jobs,
        Some(Box::new(FakePose { delay })),
        Box::new(sinks),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn an_http_stream_runs_live_into_json_lines_and_posetrack() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server::http(port, 2.0);
    let cfg = config(dir.path(), port, &[]);
    let jsonl = dir.path().join("frames.jsonl");
    let report = run_live(&cfg, port, Duration::ZERO, &jsonl);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let video = &report.videos[0];
    assert_eq!(video.name, name(port));
    assert_eq!(video.status, "written");
    assert!(video.frames >= 40, "{} frames", video.frames);
    let lines = lines(&jsonl);
    assert_eq!(lines.len() as u64, video.frames);
    let mut last = -1i64;
    for line in &lines {
        assert_eq!(line["video"], name(port));
        let frame = line["frame"].as_i64().unwrap();
        assert!(frame > last, "frame numbers go up: {frame} after {last}");
        last = frame;
        let t = line["timestamp"].as_f64().unwrap();
        assert!((t * 25.0 - frame as f64).abs() < 1.0, "{line}");
        assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
        let people = line["people"].as_array().unwrap();
        assert_eq!(people.len(), 1, "{line}");
        assert_eq!(people[0]["box"], serde_json::json!([10.0, 8.0, 40.0, 48.0]));
        assert_eq!(people[0]["keypoints"].as_array().unwrap().len(), 17);
        assert!(people[0]["track_id"].is_u64());
    }
    // The PoseTrack JSON of the finite stream is written too.
    let out = dir.path().join("out").join(format!("{}.json", name(port)));
    let file = vidpose::posetrack::PoseTrackFile::read(&out).unwrap();
    assert_eq!(file.images.len() as u64, video.frames);
}

#[test]
fn a_stream_that_drops_is_reconnected_and_the_video_goes_on() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = Server::http(port, 30.0);
    let cfg = config(
        dir.path(),
        port,
        &[
            "input.reconnect.attempts=5",
            "input.reconnect.initial_backoff_s=0.1",
            "input.reconnect.max_backoff_s=0.3",
        ],
    );
    let jsonl = dir.path().join("frames.jsonl");
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| run_live(&cfg, port, Duration::ZERO, &jsonl));
        let t = Instant::now();
        while lines(&jsonl).len() < 20 {
            assert!(t.elapsed() < Duration::from_secs(10), "no frames came");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = lines(&jsonl).len();
        drop(first); // killed mid-stream
        std::thread::sleep(Duration::from_millis(300));
        let _second = Server::http(port, 1.5);
        let report = run.join().unwrap();
        assert!(
            lines(&jsonl).len() > before + 20,
            "frames after the reconnect"
        );
        report
    });
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let video = &report.videos[0];
    assert_eq!(report.videos.len(), 1, "one video across the reconnect");
    assert!(video.reconnects.unwrap() >= 1, "{video:?}");
    let lines = lines(&jsonl);
    let frames: Vec<i64> = lines.iter().map(|l| l["frame"].as_i64().unwrap()).collect();
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "{frames:?}");
    // The Hungarian tracker lives on: the one person keeps its id through the outage.
    let ids: std::collections::BTreeSet<u64> = lines
        .iter()
        .map(|l| l["people"][0]["track_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[test]
fn a_too_slow_pipeline_drops_frames_and_keeps_latency_bounded() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server::http(port, 3.0);
    let cfg = config(
        dir.path(),
        port,
        &["pipeline.max_frames_in_flight=2", "pose.batch_size=1"],
    );
    let jsonl = dir.path().join("frames.jsonl");
    // 100 ms per frame against 40 ms between frames.
    let report = run_live(&cfg, port, Duration::from_millis(100), &jsonl);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let video = &report.videos[0];
    let dropped = video.dropped_frames.unwrap();
    let total = video.frames + dropped;
    assert!(total >= 60, "{video:?}");
    assert!(
        dropped as f64 > 0.3 * total as f64,
        "{dropped} of {total} dropped"
    );
    let mut latency: Vec<f64> = lines(&jsonl)
        .iter()
        .map(|l| l["latency_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(latency.len() as u64, video.frames);
    let p95 = percentile(&mut latency, 0.95);
    eprintln!(
        "slow model: {dropped} of {total} frames dropped ({:.0}%), latency p95 {p95:.0} ms",
        100.0 * dropped as f64 / total as f64
    );
    // Two frames in flight at 100 ms each, plus slack: never the seconds a backlog would make.
    assert!(p95 < 600.0, "p95 {p95} ms");
}

#[test]
fn cli_streams_json_lines_to_stdout_per_line_and_stops_after_duration() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server::http(port, 20.0);
    let boxes = dir.path().join("boxes.json");
    boxes_file(&boxes, &name(port), 3000);
    let out = dir.path().join("out");
    let started = Instant::now();
    let mut child = vidpose()
        .args([
            "run",
            "--input",
            &url(port),
            "--jsonl",
            "-",
            "--duration",
            "2",
        ])
        .arg("--output")
        .arg(&out)
        .args(["--set", "detector.kind=boxes", "--set"])
        .arg(format!("detector.boxes={}", boxes.display()))
        .args(["--set", "pose.model=none", "--set", "tracker.kind=given"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // The first line is out while the run is still going: written and flushed per frame.
    assert!(child.try_wait().unwrap().is_none(), "the run already ended");
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["video"], name(port));
    assert_eq!(line["people"][0]["track_id"], 3);
    let rest: Vec<String> = stdout.lines().map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // 2 s of a 25 fps stream from its opening (what FFmpeg read while probing comes at once).
    assert!(
        (35..=100).contains(&(rest.len() + 1)),
        "{} lines",
        rest.len() + 1
    );
    assert!(out.join(format!("{}.json", name(port))).exists());
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["videos"][0]["status"], "written");
    assert!(run["videos"][0]["dropped_frames"].is_u64(), "{run}");
    assert!(stderr.contains("live:"), "{stderr}");
}

#[test]
fn bad_live_inputs_fail_fast_with_the_url_and_the_reason() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // An unknown scheme: a usage error before any work.
    let output = vidpose()
        .args(["run", "--input", "foo://camera/1", "--output"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("foo://camera/1") && stderr.contains("unknown URL scheme"),
        "{stderr}"
    );

    // Nobody listening: refused at once, not retried.
    let port = free_port();
    let cfg = config(dir.path(), port, &["input.reconnect.attempts=5"]);
    let t = Instant::now();
    let report = run_live(&cfg, port, Duration::ZERO, &dir.path().join("a.jsonl"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let reason = &report.failed[0].1;
    assert!(
        reason.contains(&url(port)) && reason.contains("refused"),
        "{reason}"
    );

    // A server that accepts and never sends: the timeout ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let conn = silent.accept();
        std::thread::sleep(Duration::from_secs(4));
        drop(conn);
    });
    let cfg = config(dir.path(), port, &["input.timeout_s=0.5"]);
    let t = Instant::now();
    let report = run_live(&cfg, port, Duration::ZERO, &dir.path().join("b.jsonl"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let reason = &report.failed[0].1;
    assert!(
        reason.contains(&url(port)) && reason.contains("no data within 0.5 s"),
        "{reason}"
    );
    drop(held);
}

/// A boxes file per video in a folder: `video` gets one person at `bbox` ([x, y, w, h]) in
/// frames 0..3000.
fn boxes_folder(dir: &Path, videos: &[(&str, [f64; 4])]) -> PathBuf {
    let folder = dir.join("boxes");
    std::fs::create_dir_all(&folder).unwrap();
    for (video, bbox) in videos {
        let images: Vec<_> = (0..3000)
            .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{video}/{i:06}.jpg")}))
            .collect();
        let anns: Vec<_> = (0..3000)
            .map(|i| serde_json::json!({"image_id": i + 1, "bbox": bbox, "category_id": 1}))
            .collect();
        let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
        let path = folder.join(format!("{video}.json"));
        std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    folder
}

fn config_many(dir: &Path, boxes: &Path, extra: &[&str]) -> Config {
    let mut overrides = vec![
        format!("output.dir='{}'", dir.join("out").display()),
        format!("detector.boxes='{}'", boxes.display()),
        "detector.kind=boxes".to_string(),
        "pipeline.progress=false".to_string(),
        "input.timeout_s=3".to_string(),
        "input.reconnect.attempts=0".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    std::fs::create_dir_all(dir.join("out")).unwrap();
    Config::load(None, &overrides).unwrap()
}

/// [`FakePose`] that also records the boxes of each call.
struct LoggedPose {
    inner: FakePose,
    calls: Arc<Mutex<Vec<Vec<BBox>>>>,
}

impl vidpose::stages::pose::PoseModel for LoggedPose {
    fn estimate(
        &mut self,
        items: &[(&RgbImage, BBox)],
    ) -> Result<Vec<[Keypoint; 17]>, Box<dyn std::error::Error + Send + Sync>> {
        self.calls
            .lock()
            .unwrap()
            .push(items.iter().map(|(_, b)| *b).collect());
        self.inner.estimate(items)
    }
}

/// Runs `inputs` at once with the fake pose model (`delay` per call), JSON Lines into `jsonl`;
/// returns the report and the boxes of each pose call.
fn run_inputs(
    cfg: &Config,
    inputs: &[PathBuf],
    delay: Duration,
    jsonl: &Path,
) -> (RunReport, Vec<Vec<BBox>>) {
    let jobs = discover::discover(inputs).unwrap();
    let sinks = Sinks::new()
        .with(Box::new(JsonlSink::create(jsonl).unwrap()))
        .with(Box::new(vidpose::sinks::standard(None, false)));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let model = LoggedPose {
        inner: FakePose { delay },
        calls: calls.clone(),
    };
    let report = pipeline::run_with_pose(
        cfg,
        jobs,
        Some(Box::new(model)),
        Box::new(sinks),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let calls = calls.lock().unwrap().clone();
    (report, calls)
}

/// The lines of `video`.
fn lines_of<'a>(lines: &'a [serde_json::Value], video: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["video"] == video).collect()
}

#[test]
fn two_streams_run_at_once_with_their_own_tracks_outputs_and_metrics() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let _s1 = Server::http(p1, 3.0);
    let _s2 = Server::http(p2, 3.0);
    let boxes = boxes_folder(
        dir.path(),
        &[
            (&name(p1), [10.0, 8.0, 30.0, 40.0]),
            (&name(p2), [50.0, 20.0, 30.0, 30.0]),
        ],
    );
    // A batch waits up to 100 ms: long enough to gather frames of both streams.
    let cfg = config_many(dir.path(), &boxes, &["pose.batch_timeout_ms=100"]);
    let jsonl = dir.path().join("frames.jsonl");
    let t = Instant::now();
    let (report, calls) = run_inputs(
        &cfg,
        &[PathBuf::from(url(p1)), PathBuf::from(url(p2))],
        Duration::ZERO,
        &jsonl,
    );
    // At once: the two 3 s streams take about 3 s, not 6.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let all = lines(&jsonl);
    // Their lines interleave in time: the file switches from one video to the other often.
    let switches = all
        .windows(2)
        .filter(|w| w[0]["video"] != w[1]["video"])
        .count();
    assert!(switches >= 20, "{switches} switches between the videos");
    for (port, x1) in [(p1, 10.0), (p2, 50.0)] {
        let video = report.videos.iter().find(|v| v.name == name(port)).unwrap();
        assert_eq!(video.status, "written");
        assert!(video.frames >= 40, "{video:?}");
        // Live mode counts drops per stream (some go in the start-up burst, when FFmpeg hands
        // over at once what it read while probing, more on a loaded machine).
        assert!(video.dropped_frames.is_some(), "{video:?}");
        assert!(video.latency_p50_ms.unwrap() <= video.latency_p95_ms.unwrap());
        let mine = lines_of(&all, &name(port));
        assert_eq!(mine.len() as u64, video.frames);
        let frames: Vec<i64> = mine.iter().map(|l| l["frame"].as_i64().unwrap()).collect();
        assert!(frames.windows(2).all(|w| w[1] > w[0]), "{frames:?}");
        // Each has its own tracker: its one person is track 0 in every frame, at its place.
        for line in &mine {
            assert_eq!(line["people"][0]["track_id"], 0, "{line}");
            assert_eq!(line["people"][0]["box"][0], x1, "{line}");
        }
        let out = dir.path().join("out").join(format!("{}.json", name(port)));
        let file = vidpose::posetrack::PoseTrackFile::read(&out).unwrap();
        assert_eq!(file.images.len() as u64, video.frames);
    }
    // The pose model's batches mixed the two streams' crops.
    let mixed = calls
        .iter()
        .filter(|c| c.iter().any(|b| b.x1 < 30.0) && c.iter().any(|b| b.x1 > 30.0))
        .count();
    assert!(mixed > 0, "no batch held crops of both streams: {calls:?}");
}

#[test]
fn one_stream_gone_for_good_ends_alone_and_the_others_go_on() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (dying, steady, refused) = (free_port(), free_port(), free_port());
    let first = Server::http(dying, 30.0);
    let _steady = Server::http(steady, 4.0);
    let boxes = boxes_folder(
        dir.path(),
        &[
            (&name(dying), [10.0, 8.0, 30.0, 40.0]),
            (&name(steady), [50.0, 20.0, 30.0, 30.0]),
            (&name(refused), [10.0, 8.0, 30.0, 40.0]),
        ],
    );
    let cfg = config_many(dir.path(), &boxes, &[]);
    let jsonl = dir.path().join("frames.jsonl");
    let inputs: Vec<PathBuf> = [dying, steady, refused]
        .iter()
        .map(|&p| PathBuf::from(url(p)))
        .collect();
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| run_inputs(&cfg, &inputs, Duration::ZERO, &jsonl).0);
        let t = Instant::now();
        while lines_of(&lines(&jsonl), &name(dying)).len() < 15 {
            assert!(t.elapsed() < Duration::from_secs(10), "no frames came");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(first); // gone, and no reconnection allowed
        run.join().unwrap()
    });
    let status = |port: u16| {
        let v = report.videos.iter().find(|v| v.name == name(port)).unwrap();
        (v.status, v.frames)
    };
    // The refused one failed at once, alone; the dead one ended as complete.
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(
        report.failed[0].1.contains("refused"),
        "{:?}",
        report.failed
    );
    assert_eq!(status(refused), ("failed", 0));
    assert_eq!(status(dying).0, "written");
    // The steady one went on after the other was gone, to its own end.
    let all = lines(&jsonl);
    let last_dying = all.iter().rposition(|l| l["video"] == name(dying)).unwrap();
    let after = lines_of(&all[last_dying..], &name(steady)).len();
    assert!(
        after >= 25,
        "{after} frames of the steady stream after the other died"
    );
    let (state, frames) = status(steady);
    assert_eq!(state, "written");
    assert!(frames >= 70, "{frames} frames of a 4 s stream");
}

#[test]
fn a_slow_pipeline_shares_its_frames_between_a_stream_and_a_file() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server::http(port, 20.0);
    let clip = dir.path().join("clip.mp4");
    make_mp4(&clip, 250, 96, 64, 25.0);
    let boxes = boxes_folder(
        dir.path(),
        &[
            (&name(port), [10.0, 8.0, 30.0, 40.0]),
            ("clip", [50.0, 20.0, 30.0, 30.0]),
        ],
    );
    // 50 ms a frame, two frames in flight: the file's decoder, which waits for every freed
    // permit, would take them all without a share per input.
    let cfg = config_many(
        dir.path(),
        &boxes,
        &[
            "pipeline.max_frames_in_flight=2",
            "pose.batch_size=1",
            "input.duration=2.5",
        ],
    );
    let jsonl = dir.path().join("frames.jsonl");
    let (report, _) = run_inputs(
        &cfg,
        &[PathBuf::from(url(port)), clip],
        Duration::from_millis(50),
        &jsonl,
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let frames = |n: &str| report.videos.iter().find(|v| v.name == n).unwrap().frames;
    let (stream, file) = (frames(&name(port)), frames("clip"));
    eprintln!("slow model, stream and file at once: stream {stream} frames, file {file}");
    assert!(stream >= 10 && file >= 10, "stream {stream}, file {file}");
    let ratio = stream as f64 / file as f64;
    assert!((0.5..=2.0).contains(&ratio), "stream {stream}, file {file}");
}

/// Glass-to-result latency on a 25 fps loopback stream, and the drop rate with a model too
/// slow for it: `cargo test --test live -- --ignored --nocapture`.
#[test]
#[ignore]
fn latency_and_drop_figures() {
    if !have_ffmpeg() {
        return;
    }
    for (label, delay) in [
        ("fast model (0 ms)", 0),
        ("20 ms model", 20),
        ("slow model (100 ms)", 100),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let _server = Server::http(port, 8.0);
        let cfg = config(
            dir.path(),
            port,
            &["pipeline.max_frames_in_flight=4", "pose.batch_size=1"],
        );
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let connect = Instant::now();
        let report = run_live_with(
            &cfg,
            port,
            Duration::from_millis(delay),
            &dir.path().join("f.jsonl"),
            Some(arrivals.clone()),
        );
        // The server paces frame k at (its start) + pts_k, and starts when we connect: the
        // glass time of a frame is at the latest `connect + pts`.
        let mut glass: Vec<f64> = arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, pts)| *pts >= 1.0) // past start-up (probing)
            .map(|(at, pts)| (at.duration_since(connect).as_secs_f64() - pts) * 1e3)
            .collect();
        let mut internal: Vec<f64> = lines(&dir.path().join("f.jsonl"))
            .iter()
            .map(|l| l["latency_ms"].as_f64().unwrap())
            .collect();
        let v = &report.videos[0];
        let dropped = v.dropped_frames.unwrap_or(0);
        println!(
            "{label}: glass-to-result p50 {:.0} ms p95 {:.0} ms; decoded-to-result p50 {:.0} ms p95 {:.0} ms; {} processed, {dropped} dropped ({:.0}%)",
            percentile(&mut glass, 0.5),
            percentile(&mut glass, 0.95),
            percentile(&mut internal, 0.5),
            percentile(&mut internal, 0.95),
            v.frames,
            100.0 * dropped as f64 / (v.frames + dropped).max(1) as f64
        );
    }
}

/// Two 25 fps 320x240 streams at once through the narrow models (the committed random-weight
/// HRNet, and the narrow Cascade R-CNN or two given boxes a frame): per-stream frames, drops
/// and decoded-to-result latency. `cargo test --test live two_streams_figures -- --ignored
/// --nocapture` (add `--release` for figures that mean something).
#[test]
#[ignore]
fn two_streams_figures() {
    if !have_ffmpeg() {
        return;
    }
    for detector in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (free_port(), free_port());
        let _s1 = Server::http_sized(p1, 10.0, "320x240");
        let _s2 = Server::http_sized(p2, 10.0, "320x240");
        let boxes: Vec<(String, [f64; 4])> = [p1, p2]
            .iter()
            .flat_map(|&p| {
                [
                    (name(p), [20.0, 30.0, 80.0, 160.0]),
                    (name(p), [180.0, 40.0, 90.0, 170.0]),
                ]
            })
            .collect();
        let folder = dir.path().join("boxes");
        std::fs::create_dir_all(&folder).unwrap();
        for p in [p1, p2] {
            let anns: Vec<_> = (0..3000)
                .flat_map(|i| {
                    boxes.iter().filter(|(n, _)| *n == name(p)).map(move |(_, b)| {
                        serde_json::json!({"image_id": i + 1, "bbox": b, "category_id": 1})
                    })
                })
                .collect();
            let images: Vec<_> = (0..3000)
                .map(|i| serde_json::json!({"id": i + 1, "file_name": format!("{}/{i:06}.jpg", name(p))}))
                .collect();
            let doc = serde_json::json!({"images": images, "annotations": anns, "categories": []});
            std::fs::write(
                folder.join(format!("{}.json", name(p))),
                serde_json::to_vec(&doc).unwrap(),
            )
            .unwrap();
        }
        let mut extra = vec!["pose.model=hrnet_w32_256x192".to_string()];
        if detector {
            extra.push("detector.kind=cascade_rcnn".into());
            extra.push("detector.batch_size=4".into());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let cfg = config_many(dir.path(), &folder, &extra);
        let jobs = discover::discover(&[PathBuf::from(url(p1)), PathBuf::from(url(p2))]).unwrap();
        let jsonl = dir.path().join("f.jsonl");
        let sinks = Sinks::new()
            .with(Box::new(JsonlSink::create(&jsonl).unwrap()))
            .with(Box::new(vidpose::sinks::standard(None, false)));
        let pose = narrow_estimator(vidpose::pose::PoseOptions::default());
        let det = detector.then(|| {
            use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/cascade/narrow_r.safetensors");
            let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 1, 64, 8, 16, (240, 160));
            CascadeRcnn::load(&fixture, &cfg, &candle_core::Device::Cpu).unwrap()
        });
        let report = pipeline::run_with_models(
            &cfg,
            jobs,
            det,
            Some(Box::new(pose)),
            Box::new(sinks),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let all = lines(&jsonl);
        let people: usize = all
            .iter()
            .map(|l| l["people"].as_array().unwrap().len())
            .sum();
        let pose_stage = report.stages.iter().find(|s| s.stage == "pose").unwrap();
        println!(
            "{}: {:.1} people a frame, mean pose batch {:.1} crops",
            if detector {
                "narrow Cascade R-CNN + narrow HRNet"
            } else {
                "given boxes + narrow HRNet"
            },
            people as f64 / all.len().max(1) as f64,
            pose_stage.mean_batch
        );
        for v in &report.videos {
            let dropped = v.dropped_frames.unwrap_or(0);
            println!(
                "  {}: {} processed, {dropped} dropped ({:.0}%), latency p50 {:.0} ms p95 {:.0} ms",
                v.name,
                v.frames,
                100.0 * dropped as f64 / (v.frames + dropped).max(1) as f64,
                v.latency_p50_ms.unwrap_or(0.0),
                v.latency_p95_ms.unwrap_or(0.0)
            );
        }
    }
}

/// An FFmpeg process receiving an MPEG-TS stream on a TCP port into `file`, ending when the
/// sender closes the connection.
fn tcp_receiver(port: u16, file: &Path) -> Child {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "mpegts", "-i"])
        .arg(format!("tcp://127.0.0.1:{port}?listen=1"))
        .args(["-c", "copy", "-y"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    wait_until_listening(port);
    child
}

#[test]
fn the_overlay_streams_live_to_a_url() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server::http(port, 2.0);
    let sink_port = free_port();
    let received = dir.path().join("received.ts");
    let mut receiver = tcp_receiver(sink_port, &received);
    let cfg = config(
        dir.path(),
        port,
        &[&format!("render.stream='tcp://127.0.0.1:{sink_port}'")],
    );
    let overlay = vidpose::sinks::OverlaySettings {
        codec: cfg.render.codec,
        crf: cfg.render.crf,
        stream: cfg.render.stream.clone(),
    };
    let jobs = discover::discover(&[PathBuf::from(url(port))]).unwrap();
    let report = pipeline::run_with_pose(
        &cfg,
        jobs,
        Some(Box::new(FakePose {
            delay: Duration::ZERO,
        })),
        Box::new(vidpose::sinks::standard(Some(overlay), false)),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let frames = report.videos[0].frames;
    assert!(frames >= 40, "{frames} frames");
    // The receiver ends when vidpose closes the stream.
    let started = Instant::now();
    while receiver.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = receiver.kill();
            panic!("the overlay stream was not closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(&received)
        .output()
        .unwrap();
    // MPEG-TS lists the stream under its program too: the first line is enough.
    let text = String::from_utf8_lossy(&probe.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(first, format!("96,64,{frames}"), "every frame arrived");
    // Streamed instead of written: no overlay file.
    assert!(!dir
        .path()
        .join("out")
        .join(format!("{}.mp4", name(port)))
        .exists());
}

#[test]
fn an_overlay_url_of_an_unknown_scheme_is_refused() {
    let e = Config::load(None, &["render.stream='ftp://example.org/x'".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("render.stream") && e.contains("ftp://"), "{e}");
}
