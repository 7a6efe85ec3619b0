//! Turning input paths into jobs: one job per video file, image, or numbered-image folder.

use std::path::{Path, PathBuf};

use super::VideoError;

const VIDEO_EXTENSIONS: [&str; 13] = [
    "mp4", "m4v", "mkv", "webm", "avi", "mov", "mpg", "mpeg", "ts", "mts", "flv", "wmv", "3gp",
];
const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];
/// How deep a batch folder is searched for videos and sequences.
const MAX_DEPTH: usize = 4;

/// What a job decodes.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Any container FFmpeg reads.
    VideoFile(PathBuf),
    /// `000000.jpg`, `000001.jpg`, ...: `(number, path)` sorted by number.
    ImageFolder {
        /// The folder holding the images.
        dir: PathBuf,
        /// The numbered images, by number; gaps are allowed.
        files: Vec<(u64, PathBuf)>,
    },
    /// One image file given as an input, decoded as a one-frame video (frame number 0).
    SingleImage(PathBuf),
    /// A live source read through FFmpeg: a network URL (`rtsp://`, `rtmp://`, `http(s)://`
    /// including HLS, `srt://`, `udp://`, `tcp://`) or a V4L2 webcam (`/dev/videoN`).
    Stream {
        /// The URL (or device path) as given to FFmpeg.
        url: String,
        /// The FFmpeg input format to force (`video4linux2` for a webcam); `None` lets FFmpeg
        /// choose from the URL.
        format: Option<String>,
    },
    /// An input found in a batch that cannot be decoded (two images with the same number, a
    /// number too large): opening it returns `message`, so the run reports it as this job's
    /// failure and the other jobs still run.
    Invalid {
        /// The folder at fault.
        path: PathBuf,
        /// Why it cannot be decoded.
        message: String,
    },
}

/// A PoseTrack sequence recognised from its folder name (`SSSSSS_<source>_<split>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoseTrackSequence {
    /// The folder name, e.g. `003418_mpii_test`.
    pub name: String,
    /// `images/<split>` as found above the sequence folder, e.g. `val`.
    pub split: Option<String>,
    /// 1 mpii, 2 bonn, 3 mpiinew.
    pub source_id: u64,
    /// The six-digit sequence number `SSSSSS` at the start of the folder name.
    pub number: u64,
}

impl PoseTrackSequence {
    /// Recognises a folder named `SSSSSS_<mpii|bonn|mpiinew>_<split>`; `None` for any other name.
    pub fn parse(dir: &Path) -> Option<Self> {
        let name = dir.file_name()?.to_str()?.to_string();
        let mut parts = name.splitn(3, '_');
        let number = parts.next()?.to_string();
        let source = parts.next()?;
        parts.next()?;
        if number.len() != 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let source_id = match source {
            "mpii" => 1,
            "bonn" => 2,
            "mpiinew" => 3,
            _ => return None,
        };
        let split = dir
            .parent()
            .filter(|p| p.parent().and_then(|g| g.file_name()) == Some("images".as_ref()))
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str())
            .map(str::to_string);
        Some(Self {
            name,
            split,
            source_id,
            number: number.parse().ok()?,
        })
    }

    /// The dataset's image id: `T SSSSSS FFFF`.
    pub fn image_id(&self, frame: u64) -> u64 {
        self.source_id * 10_000_000_000 + self.number * 10_000 + frame
    }

    /// The dataset's `file_name`: `images/<split>/<seq>/<frame>.jpg`.
    pub fn file_name(&self, frame: u64) -> String {
        let split = self.split.as_deref().unwrap_or("val");
        format!("images/{split}/{}/{frame:06}.jpg", self.name)
    }
}

/// One unit of work: decoded, processed and written on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoJob {
    /// Output base name: the video's file stem or the sequence folder's name.
    pub name: String,
    /// What is decoded: a video file, an image, a numbered-image folder, or a broken input.
    pub kind: SourceKind,
    /// Set when the job is a PoseTrack sequence folder: its output then uses the dataset's ids.
    pub posetrack: Option<PoseTrackSequence>,
}

impl VideoJob {
    /// The input file or folder the job reads.
    pub fn path(&self) -> &Path {
        match &self.kind {
            SourceKind::VideoFile(p) | SourceKind::SingleImage(p) => p,
            SourceKind::ImageFolder { dir, .. } => dir,
            SourceKind::Stream { url, .. } => Path::new(url),
            SourceKind::Invalid { path, .. } => path,
        }
    }

    /// Why the job cannot run, for a job found broken during discovery.
    pub fn invalid_reason(&self) -> Option<String> {
        match &self.kind {
            SourceKind::Invalid { path, message } => Some(format!("{}: {message}", path.display())),
            _ => None,
        }
    }

    /// Whether the job reads a live source (a stream URL or a webcam).
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, SourceKind::Stream { .. })
    }

    /// Gaps in an image folder's numbering: `(last number before, first number after)`.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        match &self.kind {
            SourceKind::ImageFolder { files, .. } => files
                .windows(2)
                .filter(|w| w[1].0 != w[0].0 + 1)
                .map(|w| (w[0].0, w[1].0))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn extension_in(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.contains(&e.to_ascii_lowercase().as_str()))
}

/// True for a still image by extension (jpg, jpeg, png, bmp, webp; any case).
pub fn is_image_file(path: &Path) -> bool {
    extension_in(path, &IMAGE_EXTENSIONS)
}

/// True for a video container by extension (mp4, mkv, mov, avi, webm, ...; any case).
pub fn is_video_file(path: &Path) -> bool {
    extension_in(path, &VIDEO_EXTENSIONS)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An entry of a folder, its links followed.
struct Entry {
    path: PathBuf,
    is_dir: bool,
}

/// Why a folder of numbered images cannot be a sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NumberingError {
    #[error("image number `{0}` is too large")]
    TooLarge(String),
    #[error(
        "two images carry number {number}: {} and {}; remove or renumber one",
        .first.display(),
        .second.display()
    )]
    Duplicate {
        number: u64,
        first: PathBuf,
        second: PathBuf,
    },
}

/// The numbered images among `entries` of a folder (`123.jpg` -> 123), sorted by number; `Err`
/// says why the folder cannot be a sequence.
fn numbered_images(entries: &[Entry]) -> Result<Vec<(u64, PathBuf)>, NumberingError> {
    let mut files = Vec::new();
    for path in entries
        .iter()
        .filter(|e| !e.is_dir && is_image_file(&e.path))
        .map(|e| &e.path)
    {
        let s = stem(path);
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n = s.parse().map_err(|_| NumberingError::TooLarge(s.clone()))?;
            files.push((n, path.clone()));
        }
    }
    files.sort();
    if let Some(w) = files.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(NumberingError::Duplicate {
            number: w[0].0,
            first: w[0].1.clone(),
            second: w[1].1.clone(),
        });
    }
    Ok(files)
}

/// The entries of `dir`, sorted. An entry whose link cannot be followed (a link to itself, a
/// loop, a target that is gone) is left out with a warning: it is no input, and no reason to
/// stop the batch.
fn read_dir_sorted(dir: &Path) -> Result<Vec<Entry>, VideoError> {
    let io = |source| VideoError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        match std::fs::metadata(&path) {
            Ok(meta) => entries.push(Entry {
                is_dir: meta.is_dir(),
                path,
            }),
            Err(e) => tracing::warn!("{}: skipped: cannot follow it ({e})", path.display()),
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// State of one discovery: the folders and files already taken, so that links back into the
/// tree (`ln -s . again`) neither loop nor find the same video twice.
#[derive(Default)]
struct Walk {
    seen: std::collections::HashSet<PathBuf>,
    jobs: Vec<VideoJob>,
}

impl Walk {
    /// False, with a warning, for a path already taken under another name.
    fn first_visit(&mut self, path: &Path) -> bool {
        let Ok(real) = std::fs::canonicalize(path) else {
            return true; // followed a moment ago; let opening it report what is wrong
        };
        if self.seen.insert(real.clone()) {
            return true;
        }
        tracing::warn!(
            "{}: skipped: it is {}, which this run already takes (a link back into the folder tree?)",
            path.display(),
            real.display()
        );
        false
    }

    /// Finds the jobs under one input path; false when it was taken already. Only the input
    /// itself can fail the whole discovery; a fault below it fails or skips just the entry it
    /// is in.
    fn path(&mut self, path: &Path, depth: usize) -> Result<bool, VideoError> {
        if !self.first_visit(path) {
            return Ok(false);
        }
        if path.is_file() {
            let kind = if is_image_file(path) {
                SourceKind::SingleImage(path.to_path_buf())
            } else {
                SourceKind::VideoFile(path.to_path_buf())
            };
            self.jobs.push(VideoJob {
                name: stem(path),
                kind,
                posetrack: None,
            });
            return Ok(true);
        }
        let entries = match read_dir_sorted(path) {
            Ok(entries) => entries,
            Err(e) if depth == 0 => return Err(e),
            Err(e) => {
                tracing::warn!("skipped: {e}");
                return Ok(true);
            }
        };
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "frames".into());
        match numbered_images(&entries) {
            Ok(files) if files.is_empty() => {}
            Ok(files) => {
                self.jobs.push(VideoJob {
                    name,
                    posetrack: PoseTrackSequence::parse(path),
                    kind: SourceKind::ImageFolder {
                        dir: path.to_path_buf(),
                        files,
                    },
                });
                return Ok(true);
            }
            Err(e) => {
                self.jobs.push(VideoJob {
                    name,
                    posetrack: PoseTrackSequence::parse(path),
                    kind: SourceKind::Invalid {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    },
                });
                return Ok(true);
            }
        }
        for entry in entries {
            let wanted = (!entry.is_dir && is_video_file(&entry.path))
                || (entry.is_dir && depth < MAX_DEPTH);
            if wanted {
                self.path(&entry.path, depth + 1)?;
            }
        }
        Ok(true)
    }
}

/// Expands the input paths into jobs, in a stable order (sorted by path within each input).
/// An input that is missing, or a folder holding no images or videos, is an error; so are two
/// jobs that would write the same output name. A broken sequence inside an input becomes a
/// [`SourceKind::Invalid`] job, failing alone; links that cannot be followed or lead back to
/// what was already found are skipped with a warning.
pub fn discover(inputs: &[PathBuf]) -> Result<Vec<VideoJob>, VideoError> {
    let mut walk = Walk::default();
    let mut streams = Vec::new();
    for input in inputs {
        if let Some(kind) = stream_source(input)? {
            streams.push(kind);
            continue;
        }
        if !input.exists() {
            return Err(VideoError::Missing {
                path: input.clone(),
            });
        }
        let before = walk.jobs.len();
        let taken = walk.path(input, 0)?;
        if taken && walk.jobs.len() == before {
            return Err(VideoError::Folder {
                path: input.clone(),
                message:
                    "holds no numbered images (000000.jpg, ...), video files or sequence folders"
                        .into(),
            });
        }
    }
    let mut jobs = walk.jobs;
    // A stream's name is made unique among the run's inputs with a suffix.
    let mut taken: std::collections::HashSet<String> =
        jobs.iter().map(|j| j.name.clone()).collect();
    for kind in streams {
        let SourceKind::Stream { url, .. } = &kind else {
            continue;
        };
        let base = stream_name(url);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        jobs.push(VideoJob {
            name,
            kind,
            posetrack: None,
        });
    }
    let mut seen: std::collections::HashMap<&str, &Path> = Default::default();
    for job in &jobs {
        if let Some(other) = seen.insert(&job.name, job.path()) {
            return Err(VideoError::Folder {
                path: job.path().to_path_buf(),
                message: format!(
                    "its output name `{}` is also the name of {}; rename one or run them separately",
                    job.name,
                    other.display()
                ),
            });
        }
    }
    Ok(jobs)
}

/// URL schemes FFmpeg reads live sources from.
pub const STREAM_SCHEMES: [&str; 10] = [
    "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp",
];

/// The live source an input names: a URL of a known scheme, or a V4L2 device (`/dev/video*`);
/// `Ok(None)` for a file or folder path; an error for a URL of a scheme FFmpeg is not asked
/// to read.
pub fn stream_source(input: &Path) -> Result<Option<SourceKind>, VideoError> {
    let Some(text) = input.to_str() else {
        return Ok(None);
    };
    if let Some((scheme, _)) = text.split_once("://") {
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme {
            let lower = scheme.to_ascii_lowercase();
            if !STREAM_SCHEMES.contains(&lower.as_str()) {
                return Err(VideoError::Stream {
                    url: redact(text),
                    message: format!(
                        "unknown URL scheme `{scheme}`; live inputs take {} URLs, or a webcam /dev/videoN",
                        STREAM_SCHEMES.join(", ")
                    ),
                });
            }
            return Ok(Some(SourceKind::Stream {
                url: text.to_string(),
                format: None,
            }));
        }
    }
    if text.starts_with("/dev/video") {
        if !input.exists() {
            return Err(VideoError::Stream {
                url: text.to_string(),
                message: "no such webcam (V4L2 device)".into(),
            });
        }
        return Ok(Some(SourceKind::Stream {
            url: text.to_string(),
            format: Some("video4linux2".into()),
        }));
    }
    Ok(None)
}

/// A URL with its user and password (`user:secret@`) left out, for messages and reports.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The output name of a stream: its host, port and path (`rtsp://cam1:554/live/main` ->
/// `cam1_554_live_main`; a webcam `/dev/video0` -> `video0`), without credentials, query or
/// the last segment's extension, every character other than letters, digits, `.` and `-`
/// turned into `_`.
pub fn stream_name(url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None => url.trim_start_matches("/dev/"),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit('@').next().unwrap_or("");
    let mut path = path.trim_matches('/').to_string();
    if let Some(dot) = path.rfind('.') {
        if !path[dot..].contains('/') && dot > path.rfind('/').map_or(0, |s| s + 1) {
            path.truncate(dot);
        }
    }
    let raw = format!("{host}/{path}");
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    let name = name.trim_matches(['_', '.']).to_string();
    if name.is_empty() {
        "stream".into()
    } else {
        name
    }
}

/// Keeps shard `index` of `count`: jobs are assigned by a hash of their name, so the split is
/// the same on every machine and does not depend on the order of the inputs.
pub fn shard(jobs: Vec<VideoJob>, index: usize, count: usize) -> Vec<VideoJob> {
    jobs.into_iter()
        .filter(|j| fnv1a(j.name.as_bytes()) % count as u64 == index as u64)
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posetrack_sequence_names() {
        let s = PoseTrackSequence::parse(Path::new("/d/images/val/003418_mpii_test")).unwrap();
        assert_eq!(s.split.as_deref(), Some("val"));
        assert_eq!(s.image_id(0), 10034180000);
        assert_eq!(s.file_name(7), "images/val/003418_mpii_test/000007.jpg");
        let s = PoseTrackSequence::parse(Path::new("000001_mpiinew_test")).unwrap();
        assert_eq!(s.image_id(12), 30000010012);
        assert!(PoseTrackSequence::parse(Path::new("clip_01")).is_none());
        assert!(PoseTrackSequence::parse(Path::new("12345_mpii_test")).is_none());
    }

    #[test]
    fn stream_urls_become_jobs_with_safe_unique_names() {
        assert_eq!(
            stream_name("rtsp://user:pw@cam1.local:554/live/main?x=1"),
            "cam1.local_554_live_main"
        );
        assert_eq!(
            stream_name("http://127.0.0.1:8080/live.ts"),
            "127.0.0.1_8080_live"
        );
        assert_eq!(
            stream_name("https://h.example/hls/index.m3u8"),
            "h.example_hls_index"
        );
        assert_eq!(stream_name("udp://@:1234"), "1234");
        assert_eq!(stream_name("/dev/video0"), "video0");
        assert_eq!(redact("rtsp://user:pw@cam:554/a@b"), "rtsp://cam:554/a@b");
        let inputs = [
            PathBuf::from("udp://127.0.0.1:5000"),
            PathBuf::from("tcp://127.0.0.1:5000?listen"),
        ];
        let jobs = discover(&inputs).unwrap();
        assert_eq!(jobs[0].name, "127.0.0.1_5000");
        assert_eq!(jobs[1].name, "127.0.0.1_5000_2");
        assert!(jobs.iter().all(VideoJob::is_stream));
        let e = discover(&[PathBuf::from("foo://x/y")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("foo://x/y") && e.contains("unknown URL scheme `foo`"),
            "{e}"
        );
        // A relative path with a colon is still a file.
        assert!(stream_source(Path::new("a:b.mp4")).unwrap().is_none());
    }

    #[test]
    fn shards_partition_the_jobs() {
        let jobs: Vec<VideoJob> = (0..20)
            .map(|i| VideoJob {
                name: format!("v{i}"),
                kind: SourceKind::SingleImage(PathBuf::from(format!("v{i}.jpg"))),
                posetrack: None,
            })
            .collect();
        let mut total = 0;
        for i in 0..3 {
            total += shard(jobs.clone(), i, 3).len();
        }
        assert_eq!(total, 20);
    }
}
