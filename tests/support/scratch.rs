//! Scratch space: unique names and directories removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where scratch data goes: /dev/shm (tmpfs: etcd's fsyncs cost nothing) when there
/// is one, else the temp dir.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique within this machine for this run: `<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A directory, created at once and removed on drop (also while a panic unwinds)
/// unless [`ScratchDir::keep`] said otherwise.
pub struct ScratchDir {
    pub path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    pub fn create(path: PathBuf) -> ScratchDir {
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir { path, keep: false }
    }

    /// Leaves the directory in place on drop (and says where) when `keep` is true.
    pub fn keep(mut self, keep: bool) -> ScratchDir {
        self.keep = keep;
        self
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
