//! Instance log files: `<data-dir>/logs/<ns>_<svc>_<id>.log`, capped with one
//! rotation (`.1`), and removed some time after their instance ended.
//!
//! The process writes to the file itself (opened O_APPEND), never through a pipe to
//! the agent: a pipe would break (SIGPIPE) when the agent dies, and instances must
//! outlive the agent. So rotation is copy-then-truncate: with O_APPEND the writer's
//! next write lands at the new end of the truncated file.
//!
//! This file holds the blocking file operations; `keeper.rs` decides when they run
//! (off the async threads) and which logs are in use; `retention.rs` is the pure
//! policy that picks which logs of ended instances go. `read.rs` reads a log for
//! `rune logs` (tail, since, following across rotation) and `http.rs` serves it,
//! over TLS when configured (`tls.rs`).

pub mod http;
mod keeper;
pub mod read;
mod retention;
pub mod tls;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::InstanceRef;
pub use keeper::Logs;
pub use retention::{EndedLog, Retention, expired};

/// Default cap of one log file.
pub const LOG_CAP: u64 = 10 * 1024 * 1024;

/// Opens (creating, mode 0600) the log for appending, owned by `owner` (uid, gid)
/// when given: the instance's user, when it runs as another than the agent's.
pub fn open(path: &Path, owner: Option<(u32, u32)>) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if let Some((uid, gid)) = owner {
        let meta = f.metadata()?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
    }
    Ok(f)
}

/// Where rotation copies `path` to.
fn rotated(path: &Path) -> PathBuf {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    PathBuf::from(rotated)
}

/// A log and its rotation, whichever exist.
fn both(path: &Path) -> [PathBuf; 2] {
    [path.to_path_buf(), rotated(path)]
}

/// Rotates `path` to `path.1` when it has grown past `cap`. Returns whether it did.
pub fn rotate_if_needed(path: &Path, cap: u64) -> io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= cap {
        return Ok(false);
    }
    std::fs::copy(path, rotated(path))?;
    // The copy is the agent's; it stays the instance user's like the live log.
    let meta = std::fs::metadata(path)?;
    {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(rotated(path), Some(meta.uid()), Some(meta.gid()));
    }
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Deletes a log and its rotation; either may be missing already.
fn remove(path: &Path) -> io::Result<()> {
    for p in both(path) {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Stamps an ended instance's log and rotation with its end time and returns their
/// size: the mtime is what a restarted agent takes for the end time, so the age
/// limit holds across restarts whenever the process last wrote.
fn seal(path: &Path, ended: SystemTime) -> u64 {
    both(path)
        .iter()
        .filter_map(|p| {
            let f = File::options().write(true).open(p).ok()?;
            let _ = f.set_modified(ended);
            Some(f.metadata().ok()?.len())
        })
        .sum()
}

/// One instance's log files found in the logs dir: its latest mtime and their size.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub instance: InstanceRef,
    pub modified: SystemTime,
    pub bytes: u64,
}

/// Every instance log in `dir` (a log and its rotation count as one). Files whose
/// names name no instance are not ours to judge: left out.
fn scan(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found: std::collections::BTreeMap<InstanceRef, Found> = Default::default();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name
            .strip_suffix(".log.1")
            .or_else(|| name.strip_suffix(".log"))
        else {
            continue;
        };
        let (Some(instance), Ok(meta)) = (InstanceRef::from_file_name(stem), entry.metadata())
        else {
            continue;
        };
        let modified = meta.modified()?;
        let f = found.entry(instance.clone()).or_insert(Found {
            instance,
            modified,
            bytes: 0,
        });
        f.modified = f.modified.max(modified);
        f.bytes += meta.len();
    }
    Ok(found.into_values().collect())
}

/// A size flag's value: bytes, or a number with `KiB`, `MiB` or `GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "unknown unit {other:?}: use KiB, MiB, GiB or bytes"
            ));
        }
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_once_past_the_cap_and_appends_continue_at_the_start() {
        let dir = std::env::temp_dir().join(format!("rune-logs-{}", std::process::id()));
        let path = dir.join("logs/ns_svc_id.log");
        let mut f = open(&path, None).unwrap();
        f.write_all(&[b'a'; 100]).unwrap();
        assert!(!rotate_if_needed(&path, 100).unwrap());
        f.write_all(b"b").unwrap();
        assert!(rotate_if_needed(&path, 100).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let old = std::fs::read(dir.join("logs/ns_svc_id.log.1")).unwrap();
        assert_eq!(old.len(), 101);
        f.write_all(b"next").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"next");

        // Sealed: both files stamped with the end time, sizes summed; then both go.
        let ended = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(seal(&path, ended), 105);
        let found = scan(&dir.join("logs")).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].modified, found[0].bytes), (ended, 105));
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(scan(&dir.join("logs")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_parse_in_bytes_and_binary_units() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("100MiB"), Ok(100 << 20));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        for bad in ["", "MiB", "10MB", "1.5GiB", "-1", "99999999999999GiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
