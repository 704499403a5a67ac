//! Instance log files: `<data-dir>/logs/<ns>_<svc>_<id>.log`, capped with one
//! rotation (`.1`).
//!
//! The process writes to the file itself (opened O_APPEND), never through a pipe to
//! the agent: a pipe would break (SIGPIPE) when the agent dies, and instances must
//! outlive the agent. So rotation is copy-then-truncate: with O_APPEND the writer's
//! next write lands at the new end of the truncated file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Default cap of one log file.
pub const LOG_CAP: u64 = 10 * 1024 * 1024;

pub fn log_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("logs").join(format!("{name}.log"))
}

/// Opens (creating) the log for appending.
pub fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
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
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    std::fs::copy(path, PathBuf::from(rotated))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_once_past_the_cap_and_appends_continue_at_the_start() {
        let dir = std::env::temp_dir().join(format!("rune-logs-{}", std::process::id()));
        let path = log_path(&dir, "ns_svc_id");
        let mut f = open(&path).unwrap();
        f.write_all(&[b'a'; 100]).unwrap();
        assert!(!rotate_if_needed(&path, 100).unwrap());
        f.write_all(b"b").unwrap();
        assert!(rotate_if_needed(&path, 100).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let old = std::fs::read(dir.join("logs/ns_svc_id.log.1")).unwrap();
        assert_eq!(old.len(), 101);
        f.write_all(b"next").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"next");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
