//! Atomic file output: an interrupted run never leaves a partial file under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `<name>.partial-<host>-<pid>`. The
/// host keeps runs on several machines sharing one output folder (job-array shards) from
/// taking each other's files for stale ones.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}-{}", host_tag(), std::process::id()));
    path.with_file_name(name)
}

/// This machine's name as it may appear in a file name (letters, digits, `-` and `.` kept,
/// other characters replaced).
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let tag: String = name
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if tag.is_empty() {
            "host".into()
        } else {
            tag
        }
    })
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `fill` into a buffered writer: a large file
/// (a long video's PoseTrack JSON) is streamed out instead of being built in memory first.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A write failure in words a user can act on: the usual causes get a hint.
pub fn describe_write_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::StorageFull => " (the disk is full)",
        ErrorKind::PermissionDenied => " (no permission to write there)",
        ErrorKind::ReadOnlyFilesystem => " (the file system is read-only)",
        ErrorKind::NotADirectory => " (a file stands where a folder is needed)",
        ErrorKind::IsADirectory => " (a folder stands where the file would go)",
        _ => "",
    };
    format!("cannot write: {e}{hint}")
}

/// Why the output folder cannot take the run's files.
#[derive(Debug, thiserror::Error)]
pub enum OutputDirError {
    /// A file exists where the output folder should be.
    #[error("{0}: the output folder is a file, not a folder")]
    IsAFile(PathBuf),
    /// The folder (or a parent) could not be created.
    #[error("{path}: cannot create the output folder: {}", describe_write_error(.source))]
    Create {
        /// The output folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The folder exists but a test file could not be written in it.
    #[error("{path}: the output folder {}", describe_write_error(.source))]
    NotWritable {
        /// The output folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Checks before any work that files can be created in `dir` (creating it if needed).
pub fn check_writable_dir(dir: &Path) -> Result<(), OutputDirError> {
    if dir.exists() && !dir.is_dir() {
        return Err(OutputDirError::IsAFile(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|source| OutputDirError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    let probe = dir.join(format!(".vidpose-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|source| OutputDirError::NotWritable {
        path: dir.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Removes temporary files (`*.partial-<host>-<pid>`) that runs killed before they could clean up
/// left in `dir`: this machine's, whose process no longer exists. Returns how many were removed.
pub fn remove_stale_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Only this machine's files: another host's process ids mean nothing here.
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.rsplit_once(".partial-"))
            .and_then(|(_, tag)| tag.rsplit_once('-'))
            .filter(|(host, _)| *host == host_tag())
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id()
            && !process_alive(pid)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Whether a process with this id runs (on Linux, by its /proc entry; elsewhere assumed alive, so
/// nothing is removed).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Whether two paths name the same file, whether or not it exists yet (relative paths, `..`
/// and symbolic links in the folders are resolved).
pub fn same_file(a: &Path, b: &Path) -> bool {
    fn resolved(p: &Path) -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    }
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    #[test]
    fn stale_temporary_files_of_dead_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194304 + 1 (above Linux's pid_max); our own run's files stay.
        // Another machine's file with a dead-looking pid stays too.
        let dead = dir
            .path()
            .join(format!("a.mp4.partial-{}-4194305", host_tag()));
        let ours = temp_path(&dir.path().join("b.json"));
        let other_host = dir.path().join("d.json.partial-elsewhere-4194305");
        let other = dir.path().join("c.json");
        for p in [&dead, &ours, &other, &other_host] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(
            remove_stale_partials(dir.path()),
            usize::from(cfg!(target_os = "linux"))
        );
        assert_eq!(dead.exists(), !cfg!(target_os = "linux"));
        assert!(ours.exists() && other.exists() && other_host.exists());
    }

    #[test]
    fn same_file_resolves_paths_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let a = sub.join("x.json");
        let b = sub.join("..").join("sub").join("x.json");
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &sub.join("y.json")));
    }

    #[test]
    fn write_errors_say_write_and_why() {
        use std::io::{Error, ErrorKind};
        for (kind, hint) in [
            (ErrorKind::StorageFull, "disk is full"),
            (ErrorKind::PermissionDenied, "no permission"),
            (ErrorKind::ReadOnlyFilesystem, "read-only"),
        ] {
            let text = describe_write_error(&Error::from(kind));
            assert!(
                text.starts_with("cannot write") && text.contains(hint),
                "{text}"
            );
            assert!(!text.contains("cannot read"));
        }
    }

    #[test]
    fn an_output_folder_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        std::fs::write(&file, b"").unwrap();
        assert!(check_writable_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("is a file"));
        assert!(check_writable_dir(&dir.path().join("new")).is_ok());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        std::fs::write(&p, b"old").unwrap();
        // A folder squatting on the temporary name makes the write fail.
        std::fs::create_dir(temp_path(&p)).unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }
}
