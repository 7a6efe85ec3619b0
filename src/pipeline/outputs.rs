//! What a run may write: never over one of its own inputs (a video, a frame, a boxes or
//! annotation file), whatever `--output` and `--metrics-json` point at.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The inputs that lie in the output folder, by file name.
pub struct ProtectedInputs {
    out_dir: Option<PathBuf>,
    names: HashMap<OsString, String>,
    parents: HashMap<PathBuf, Option<PathBuf>>,
}

impl ProtectedInputs {
    /// For outputs written into `out_dir` (which should exist by now).
    pub fn new(out_dir: &Path) -> Self {
        Self {
            out_dir: out_dir.canonicalize().ok(),
            names: HashMap::new(),
            parents: HashMap::new(),
        }
    }

    /// Records an input file, described as `what` in messages.
    pub fn add(&mut self, path: &Path, what: &str) {
        let (Some(out_dir), Some(name)) = (&self.out_dir, path.file_name()) else {
            return;
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let canonical = self
            .parents
            .entry(parent)
            .or_insert_with_key(|p| p.canonicalize().ok());
        if canonical.as_ref() == Some(out_dir) {
            self.names
                .entry(name.to_os_string())
                .or_insert_with(|| format!("{what} {}", path.display()));
        }
    }

    /// The input an output file would replace, described.
    pub fn replaced_by(&self, output: &Path) -> Option<&str> {
        let out_dir = self.out_dir.as_ref()?;
        let parent = output.parent()?.canonicalize().ok()?;
        if &parent != out_dir {
            return None;
        }
        self.names.get(output.file_name()?).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_in_the_output_folder_are_protected() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("clip.mp4");
        std::fs::write(&video, b"x").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mut protected = ProtectedInputs::new(dir.path());
        protected.add(&video, "the input video");
        protected.add(&elsewhere.path().join("other.mp4"), "the input video");
        // The same folder reached another way.
        let overlay = dir.path().join(".").join("clip.mp4");
        assert_eq!(
            protected.replaced_by(&overlay),
            Some(format!("the input video {}", video.display()).as_str())
        );
        assert_eq!(protected.replaced_by(&dir.path().join("clip.json")), None);
        assert_eq!(protected.replaced_by(&dir.path().join("other.mp4")), None);
    }
}
