//! Model cards (`models/*.yaml`) and checkpoint download/verification.
//!
//! A card names one published checkpoint: architecture, input size, URL and the sha256 prefix
//! that MMLab puts in the file name. `fetch` downloads to a `<file>.partial-<host>-<pid>` next to the
//! destination, hashes while writing, and renames only when the hash prefix matches, so a
//! checkpoint under its final name is always complete. HTTP(S) transfers go through the system
//! `curl` (TLS without extra crates); `file://` URLs are copied.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub mod load;

use crate::detect::CascadeRcnnConfig;
use crate::pose::{HrNetConfig, PoseModelConfig};

/// Why a model card, checkpoint or device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or folder (card, checkpoint, models directory) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A card file is not valid YAML of the card's shape.
    #[error("model card {path}: {message}")]
    Card {
        /// The card file.
        path: PathBuf,
        /// What is wrong, with its place in the file.
        message: String,
    },
    /// No card has this name.
    #[error("unknown model `{name}`; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names of the cards there are, comma-separated.
        known: String,
    },
    /// The transfer failed: `curl` missing or failing, an unreadable `file://` source, a URL
    /// scheme other than http, https and file.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The checkpoint's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The downloaded file's sha256 does not start with the card's prefix; the file was deleted.
    #[error("{url}: sha256 starts with {got}, expected {expected}; download discarded")]
    HashMismatch {
        /// The checkpoint's URL.
        url: String,
        /// The downloaded file's hash, cut to the prefix's length.
        got: String,
        /// The card's prefix, lowercase.
        expected: String,
    },
    /// The checkpoint a configuration runs is not on disk.
    #[error("{section} checkpoint {path} not found: download it with `vidpose models fetch {name}` (into {dir}), or set {section}.checkpoint")]
    MissingCheckpoint {
        /// The pipeline.yaml section naming the model (`pose`, `detector`).
        section: String,
        /// The checkpoint looked for.
        path: PathBuf,
        /// The card's name, for the `vidpose models fetch` hint.
        name: String,
        /// The models directory `fetch` downloads into.
        dir: PathBuf,
    },
    /// The card exists but describes a model for the other task (a detector named as
    /// `pose.model`, or the reverse), or an architecture vidpose cannot build.
    #[error("model card `{name}` is not a {expected} model")]
    WrongTask {
        /// The card's name.
        name: String,
        /// The task it was wanted for: `pose` or `detector`.
        expected: String,
    },
    /// The configured device cannot be opened (no CUDA build, no such GPU).
    #[error(
        "device `{device}` cannot be used: {reason} (CUDA needs a build with `--features cuda`)"
    )]
    Device {
        /// The device as configured (`cpu`, `cuda:0`).
        device: String,
        /// Why it cannot be opened.
        reason: String,
    },
    /// The checkpoint is there but building the model from it failed.
    #[error("{what} `{name}`: {reason}")]
    Load {
        /// `pose model` or `detector`.
        what: &'static str,
        /// The card's name.
        name: String,
        /// The loader's error, as text.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelTask {
    /// Keypoints of a person box (HRNet).
    Pose,
    /// Person boxes in a frame (Cascade R-CNN).
    Detect,
}

impl std::fmt::Display for ModelTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelTask::Pose => "pose",
            ModelTask::Detect => "detect",
        })
    }
}

/// One `models/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelCard {
    /// The name configurations use (`pose.model`, `detector.model`).
    pub name: String,
    /// Pose model or detector.
    pub task: ModelTask,
    /// `hrnet-w32`, `hrnet-w48`, `cascade-rcnn-x101-64x4d-fpn`, ...
    pub architecture: String,
    /// Pose models: the crop fed to the model, (width, height).
    #[serde(default)]
    pub input_size: Option<(u32, u32)>,
    /// Detectors: the frame is resized to fit (longest side, shortest side), keeping its ratio.
    #[serde(default)]
    pub image_scale: Option<(u32, u32)>,
    /// Where the published checkpoint is downloaded from.
    pub url: String,
    /// File name under the models directory.
    pub file: String,
    /// Leading hex digits of the file's sha256.
    pub sha256_prefix: String,
    /// The MMPose config the checkpoint was trained with.
    #[serde(default)]
    pub mmpose_config: Option<String>,
    /// The MMDetection config the checkpoint was trained with.
    #[serde(default)]
    pub mmdet_config: Option<String>,
}

impl ModelCard {
    /// The pose model this card describes, for `hrnet-wN` pose cards.
    pub fn pose_config(&self) -> Option<PoseModelConfig> {
        let width: usize = self.architecture.strip_prefix("hrnet-w")?.parse().ok()?;
        (self.task == ModelTask::Pose).then_some(PoseModelConfig {
            backbone: HrNetConfig::with_width(width),
            input_size: self.input_size?,
        })
    }

    /// The detector this card describes, for Cascade R-CNN cards.
    pub fn detector_config(&self) -> Option<CascadeRcnnConfig> {
        if self.task != ModelTask::Detect {
            return None;
        }
        match self.architecture.as_str() {
            "cascade-rcnn-x101-64x4d-fpn" => Some(CascadeRcnnConfig::x101()),
            "cascade-rcnn-r50-fpn" => Some(CascadeRcnnConfig::r50()),
            _ => None,
        }
    }

    /// The input as MMPose and MMDetection name it: pose crops as height x width (256x192),
    /// detector scales as longest x shortest side (1333x800).
    pub fn input_label(&self) -> String {
        match (self.input_size, self.image_scale) {
            (Some((w, h)), _) => format!("{h}x{w}"),
            (None, Some((long, short))) => format!("{long}x{short}"),
            (None, None) => "-".into(),
        }
    }

    /// Where the checkpoint lies in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }

    /// The checkpoint a configuration runs this card with: `given`, else the card's file in
    /// `models_dir`. When it is absent, the error says how to get it; `section` is the
    /// pipeline.yaml section naming the model (`pose`, `detector`).
    pub fn checkpoint(
        &self,
        given: Option<&Path>,
        models_dir: &Path,
        section: &str,
    ) -> Result<PathBuf, ModelError> {
        let path = given.map_or_else(|| self.path_in(models_dir), Path::to_path_buf);
        if path.exists() {
            return Ok(path);
        }
        Err(ModelError::MissingCheckpoint {
            section: section.into(),
            path,
            name: self.name.clone(),
            dir: models_dir.to_path_buf(),
        })
    }
}

/// The names of the built-in cards for `task` (`pose`, `detect`), in card order: the models a
/// configuration may name.
pub fn card_names(task: ModelTask) -> Vec<String> {
    builtin_cards()
        .into_iter()
        .filter(|c| c.task == task)
        .map(|c| c.name)
        .collect()
}

/// All cards in `dir` (`*.yaml`), sorted by name.
pub fn load_cards(dir: &Path) -> Result<Vec<ModelCard>, ModelError> {
    let mut cards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let card = crate::yaml::from_str(&text).map_err(|crate::yaml::YamlError(message)| {
            ModelError::Card {
                path: path.clone(),
                message,
            }
        })?;
        cards.push(card);
    }
    cards.sort_by(|a: &ModelCard, b| a.name.cmp(&b.name));
    Ok(cards)
}

/// The cards of the published checkpoints, built into the binary so that `vidpose models`
/// works from any folder. The same files live in the repository's `models/`.
pub fn builtin_cards() -> Vec<ModelCard> {
    const CARDS: [(&str, &str); 6] = [
        (
            "cascade_rcnn_r50_fpn_1x_coco.yaml",
            include_str!("../../models/cascade_rcnn_r50_fpn_1x_coco.yaml"),
        ),
        (
            "cascade_rcnn_x101_64x4d_fpn_20e_coco.yaml",
            include_str!("../../models/cascade_rcnn_x101_64x4d_fpn_20e_coco.yaml"),
        ),
        (
            "hrnet_w32_256x192.yaml",
            include_str!("../../models/hrnet_w32_256x192.yaml"),
        ),
        (
            "hrnet_w32_384x288.yaml",
            include_str!("../../models/hrnet_w32_384x288.yaml"),
        ),
        (
            "hrnet_w48_256x192.yaml",
            include_str!("../../models/hrnet_w48_256x192.yaml"),
        ),
        (
            "hrnet_w48_384x288.yaml",
            include_str!("../../models/hrnet_w48_384x288.yaml"),
        ),
    ];
    CARDS
        .iter()
        .map(|(file, text)| {
            crate::yaml::from_str(text)
                .unwrap_or_else(|e| panic!("built-in model card {file} is invalid: {e}"))
        })
        .collect()
}

/// The card called `name`.
pub fn find<'a>(cards: &'a [ModelCard], name: &str) -> Result<&'a ModelCard, ModelError> {
    cards
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ModelError::Unknown {
            name: name.to_string(),
            known: cards
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// State of a card's checkpoint in a models directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// No file under the card's name.
    Missing,
    /// The file's hash starts with the card's prefix.
    Ok {
        /// The file's full sha256, lowercase hex.
        sha256: String,
    },
    /// The file is there but its hash does not match the card: a different or damaged file.
    Mismatch {
        /// The file's full sha256, lowercase hex.
        sha256: String,
    },
}

/// Hash the checkpoint of `card` in `dir` and compare with the card.
pub fn verify(card: &ModelCard, dir: &Path) -> Result<Verified, ModelError> {
    let path = card.path_in(dir);
    if !path.exists() {
        return Ok(Verified::Missing);
    }
    let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io_err(&path))?;
    let sha256 = hex(&h.finalize());
    Ok(if sha256.starts_with(&card.sha256_prefix.to_lowercase()) {
        Verified::Ok { sha256 }
    } else {
        Verified::Mismatch { sha256 }
    })
}

/// Download `card`'s checkpoint into `dir` unless a verified copy is there; returns its path.
pub fn fetch(card: &ModelCard, dir: &Path, progress: bool) -> Result<PathBuf, ModelError> {
    let dest = card.path_in(dir);
    if let Verified::Ok { .. } = verify(card, dir)? {
        return Ok(dest);
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    download(&card.url, &dest, &card.sha256_prefix, progress)?;
    Ok(dest)
}

/// Download `url` to `dest` through a temporary file in the same directory; the file appears
/// under `dest` only when complete and its sha256 starts with `sha256_prefix`.
pub fn download(
    url: &str,
    dest: &Path,
    sha256_prefix: &str,
    progress: bool,
) -> Result<(), ModelError> {
    let tmp = crate::fsutil::temp_path(dest);
    let result = download_to(url, &tmp, sha256_prefix, progress);
    match result {
        Ok(()) => std::fs::rename(&tmp, dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(dest)(e)
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn download_to(
    url: &str,
    tmp: &Path,
    sha256_prefix: &str,
    progress: bool,
) -> Result<(), ModelError> {
    let fail = |reason: String| ModelError::Download {
        url: url.to_string(),
        reason,
    };
    let mut out = std::fs::File::create(tmp).map_err(io_err(tmp))?;
    let mut hasher = Sha256::new();
    let (mut reader, total, mut child): (Box<dyn Read>, Option<u64>, Option<std::process::Child>) =
        if let Some(path) = url.strip_prefix("file://") {
            let f = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len, None)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let mut child = Command::new("curl")
                .args([
                    "--fail",
                    "--silent",
                    "--show-error",
                    "--location",
                    "--retry",
                    "2",
                    "--",
                    url,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| fail(format!("cannot run curl: {e}")))?;
            let stdout = child.stdout.take().expect("piped stdout");
            (Box::new(stdout), content_length(url), Some(child))
        } else {
            return Err(fail(
                "only http://, https:// and file:// URLs are supported".into(),
            ));
        };
    let bar = if progress {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut buf = vec![0u8; 1 << 16];
    let copy = (|| -> std::io::Result<()> {
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
    })();
    drop(reader);
    if let Some(mut child) = child.take() {
        let status = child.wait().map_err(|e| fail(e.to_string()))?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bar.abandon();
            return Err(fail(format!("curl {status}: {}", err.trim())));
        }
    }
    copy.map_err(|e| fail(e.to_string()))?;
    out.sync_all().map_err(io_err(tmp))?;
    bar.finish();
    let got = hex(&hasher.finalize());
    let expected = sha256_prefix.to_lowercase();
    if !got.starts_with(&expected) {
        return Err(ModelError::HashMismatch {
            url: url.to_string(),
            got: got[..expected.len().min(got.len())].to_string(),
            expected,
        });
    }
    Ok(())
}

/// Size announced by the server (for the progress bar); `None` when unknown.
fn content_length(url: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args(["--silent", "--head", "--location", "--", url])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
