//! Local state in the data dir, so a restarted agent (even after SIGKILL) adopts its
//! instances instead of duplicating them, and reclaims its own lease:
//! `lease-id`, `agent.lock`, and `instances/<ns>_<svc>_<id>.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::revisions::Assigned;
use crate::model::{ExitInfo, Phase};

/// What identifies and describes a running instance process across agent restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persisted {
    pub key: String,
    pub pid: Option<u32>,
    /// /proc/<pid>/stat field 22: with the pid, the process's identity (pids recycle).
    pub start_time: Option<u64>,
    /// Declaration order, so the first stays `PORT`.
    pub ports: Vec<(String, u16)>,
    pub restarts: u32,
    pub started_at: Option<Timestamp>,
    pub ready_at: Option<Timestamp>,
    /// The record last seen with its spec, so a restarted agent supervises before
    /// etcd answers. One this agent cannot read (written before spec revisions)
    /// counts as none: the process is then adopted once its record is listed, or
    /// stopped when it has none — never left running unsupervised.
    #[serde(default, deserialize_with = "lenient")]
    pub record: Option<Assigned>,
    /// Set when the instance ended for good (Exited or Failed): not to be restarted.
    #[serde(default)]
    pub ended: Option<Phase>,
    #[serde(default)]
    pub last_exit: Option<ExitInfo>,
    /// The configs' and secrets' versions the process started with (its status
    /// says them again after an agent restart).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sources: std::collections::BTreeMap<String, u64>,
}

fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Assigned>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the data dir, or tightens an existing one: it and its directories
    /// are 0700, since instance logs and state (each instance's environment) are no
    /// business of other users, instances running as them included.
    pub fn new(root: &Path) -> io::Result<DataDir> {
        for dir in [
            root.to_path_buf(),
            root.join("instances"),
            root.join("logs"),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR)
                .create(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the data dir's lock: two agents on one data dir would fight over the same
    /// processes. The lock dies with the process, also on SIGKILL.
    pub fn lock(&self) -> Result<File, String> {
        let path = self.root.join("agent.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "data dir {} is in use by another rune-agent",
                self.root.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn lease_id(&self) -> Option<i64> {
        std::fs::read_to_string(self.root.join("lease-id"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn set_lease_id(&self, id: i64) -> io::Result<()> {
        write_atomic(&self.root.join("lease-id"), id.to_string().as_bytes())
    }

    fn instance_path(&self, file_name: &str) -> PathBuf {
        self.root
            .join("instances")
            .join(format!("{file_name}.json"))
    }

    pub fn save(&self, file_name: &str, p: &Persisted) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(p).expect("state serializes");
        write_atomic(&self.instance_path(file_name), &json)
    }

    pub fn remove(&self, file_name: &str) {
        let _ = std::fs::remove_file(self.instance_path(file_name));
    }

    /// One persisted instance, if its state file exists and parses.
    pub fn load(&self, file_name: &str) -> Option<Persisted> {
        let bytes = std::fs::read(self.instance_path(file_name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every persisted instance, by its key (`ns/svc/id`).
    pub fn load_all(&self) -> BTreeMap<String, Persisted> {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(self.root.join("instances")) else {
            return out;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Persisted>(&b).map_err(|e| e.to_string()))
            {
                Ok(p) => {
                    out.insert(p.key.clone(), p);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring bad state file")
                }
            }
        }
        out
    }
}

/// The data dir and its directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Its state files.
pub const PRIVATE_FILE: u32 = 0o600;

/// Write-then-rename, so a crash never leaves a half-written file; mode 0600 (also
/// when a leftover temporary file had another).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_state_and_lease_and_locks() {
        let root = std::env::temp_dir().join(format!("rune-state-{}", std::process::id()));
        let d = DataDir::new(&root).unwrap();
        assert_eq!(d.lease_id(), None);
        d.set_lease_id(42).unwrap();
        assert_eq!(d.lease_id(), Some(42));
        let p = Persisted {
            key: "ns/svc/id".into(),
            pid: Some(7),
            start_time: Some(99),
            ports: vec![("http".into(), 8080)],
            restarts: 2,
            started_at: None,
            ready_at: None,
            record: None,
            ended: Some(Phase::Failed),
            last_exit: None,
            sources: Default::default(),
        };
        d.save("ns_svc_id", &p).unwrap();
        assert_eq!(d.load_all().get("ns/svc/id"), Some(&p));
        d.remove("ns_svc_id");
        assert!(d.load_all().is_empty());
        let _held = d.lock().unwrap();
        assert!(d.lock().unwrap_err().contains("in use"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for dir in [root.clone(), root.join("instances"), root.join("logs")] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        assert_eq!(mode(&root.join("lease-id")), 0o600);
        assert_eq!(mode(&root.join("agent.lock")), 0o600);
        d.save("ns_svc_id", &p).unwrap();
        assert_eq!(mode(&root.join("instances/ns_svc_id.json")), 0o600);
        // An existing, open data dir is tightened.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        DataDir::new(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
