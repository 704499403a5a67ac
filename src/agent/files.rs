//! Configs and secrets for an instance, at each process start: resolve the spec's
//! refs (`env` values and `files`) to the current versions in etcd, opening
//! secrets with the key file, and write the files under the instance's private
//! directory `$RUNE_FILES` (`<files-dir>/<ns>_<svc>_<id>`, mode 0700, owned by the
//! instance's user; `--files-dir` is 0711, outside the data dir, which is 0700): each
//! key at `<path>/<key>`, 0400 for a secret's, 0444 for a config's.
//!
//! Anything missing — a config or secret, a key of one, the key that sealed a
//! secret — is an error naming it, and the process is not started (the supervisor
//! reports it as a failed start, which the controller's health rules see). The
//! files go with the instance (`remove`). The key file is read at each start, so a
//! key added or retired needs no agent restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::model::source::EnvValue;
use crate::model::{ServiceSpec, SourceKind, SourceRef, StoredSource};
use crate::secrets::{self, Keyring};
use crate::store::Store;

/// What every supervisor shares to resolve refs.
pub struct Sources {
    /// Set once the agent reached etcd (supervision starts before).
    pub store: OnceLock<Store>,
    /// `--secrets-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--files-dir`: 0711 (instance users pass through to their own directory,
    /// and list nothing); tmpfs by default (`/run`), so secrets never reach a disk.
    pub root: PathBuf,
}

/// What a start resolved: the env values taken from configs and secrets, the
/// versions used, and the data of the `files` sources.
#[derive(Debug, Default)]
pub struct Resolved {
    pub env: BTreeMap<String, String>,
    /// `"secret/db" → 2`: what the instance status reports.
    pub versions: BTreeMap<String, u64>,
    data: BTreeMap<SourceRef, BTreeMap<String, String>>,
}

/// How long a start waits for etcd (to be connected, or to answer) before it
/// counts as failed; the supervisor's back-off then tries again.
const ETCD_PATIENCE: Duration = Duration::from_secs(20);

impl Sources {
    /// The instance's files directory.
    pub fn dir(&self, file_name: &str) -> PathBuf {
        self.root.join(file_name)
    }

    /// Resolves every ref of `spec` (namespace `ns`) to the current versions.
    pub async fn resolve(&self, ns: &str, spec: &ServiceSpec) -> Result<Resolved, String> {
        let refs = spec.sources();
        let mut out = Resolved::default();
        if refs.is_empty() {
            return Ok(out);
        }
        let store = self.store().await?;
        let mut keyring: Option<Keyring> = None;
        for r in refs {
            let key = store.keys().source(r.kind, ns, &r.name);
            let kv = get(&store, &key)
                .await?
                .ok_or_else(|| format!("{} {ns}/{} not found ({key})", r.kind, r.name))?;
            let stored = StoredSource::parse(&key, &kv.value)?;
            let data = match r.kind {
                SourceKind::Config => stored
                    .data
                    .clone()
                    .ok_or_else(|| format!("{key} holds no data"))?,
                SourceKind::Secret => {
                    if keyring.is_none() {
                        keyring = Some(
                            Keyring::load(self.key_file.as_deref())
                                .map_err(|e| format!("secret {ns}/{}: {e}", r.name))?,
                        );
                    }
                    let ring = keyring.as_ref().expect("loaded above");
                    let sealed = stored
                        .sealed
                        .as_ref()
                        .ok_or_else(|| format!("{key} holds no sealed data"))?;
                    let what = format!("secret {ns}/{}", r.name);
                    ring.open(&what, &secrets::aad(ns, &r.name), sealed)
                        .map_err(|e| e.to_string())?
                }
            };
            out.versions.insert(r.to_string(), stored.version);
            out.data.insert(r, data);
        }
        for (var, value) in &spec.env {
            if let EnvValue::From { source, key } = value {
                let data = &out.data[source];
                let v = data
                    .get(key)
                    .ok_or_else(|| missing_key(ns, source, key, data))?;
                out.env.insert(var.clone(), v.clone());
            }
        }
        Ok(out)
    }

    async fn store(&self) -> Result<Store, String> {
        let deadline = tokio::time::Instant::now() + ETCD_PATIENCE;
        loop {
            if let Some(s) = self.store.get() {
                return Ok(s.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return Err("etcd not reached yet: configs and secrets cannot be read".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes the instance's files afresh (whatever an earlier start left goes
    /// first). `owner`: uid and gid to give the directory and files.
    pub fn materialise(
        &self,
        file_name: &str,
        spec: &ServiceSpec,
        resolved: &Resolved,
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711))?;
        let dir = self.dir(file_name);
        write_files(&dir, spec, resolved, owner)?;
        Ok(dir)
    }

    /// Removes the files directories of instances not in `known` (file names).
    pub fn sweep(&self, known: &std::collections::HashSet<String>) {
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return;
        };
        for d in dirs.flatten() {
            if !known.contains(&*d.file_name().to_string_lossy()) {
                remove(&d.path());
            }
        }
    }

    /// The instance is gone: so are its files.
    pub fn remove(&self, file_name: &str) {
        remove(&self.dir(file_name));
    }
}

fn missing_key(ns: &str, source: &SourceRef, key: &str, data: &BTreeMap<String, String>) -> String {
    let has: Vec<&str> = data.keys().map(String::as_str).collect();
    format!(
        "{} {ns}/{} has no key {key:?} (it has {})",
        source.kind,
        source.name,
        if has.is_empty() {
            "none".to_string()
        } else {
            has.join(", ")
        }
    )
}

/// One get, retried while etcd does not answer, up to [`ETCD_PATIENCE`].
async fn get(store: &Store, key: &str) -> Result<Option<crate::store::Kv>, String> {
    let deadline = tokio::time::Instant::now() + ETCD_PATIENCE;
    loop {
        match store.get(key).await {
            Ok(kv) => return Ok(kv),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("cannot read {key}: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The one function that writes an instance's files: `dir` (0700) with each
/// `files` source's keys under its path, 0400 (secret) or 0444 (config).
/// `owner`: the instance's user and group, when it runs as another user than the
/// agent. Everything is written as the agent and given away only at the end, so
/// nothing the instance's user could plant meanwhile (a symlink) is followed.
pub fn write_files(
    dir: &Path,
    spec: &ServiceSpec,
    resolved: &Resolved,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    remove(dir);
    mkdir(dir)?;
    let mut created = vec![dir.to_path_buf()];
    for f in &spec.files {
        let sub = dir.join(&f.path);
        // Parents of a nested path (`a/b`), each private like the root.
        let mut at = dir.to_path_buf();
        for part in Path::new(&f.path).components() {
            at.push(part);
            if !at.exists() {
                mkdir(&at)?;
                created.push(at.clone());
            }
        }
        let mode = match f.source.kind {
            SourceKind::Secret => 0o400,
            SourceKind::Config => 0o444,
        };
        let data = resolved
            .data
            .get(&f.source)
            .ok_or_else(|| std::io::Error::other(format!("{} was not resolved", f.source)))?;
        for (key, value) in data {
            // Checked again here: a config written straight into etcd (a GitOps
            // tool may) never had the CLI's check, and a key is a file name.
            crate::model::source::check_key_name(key)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", f.source)))?;
            let path = sub.join(key);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)?;
            file.write_all(value.as_bytes())?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
    }
    // Directories last, deepest first: until now only the agent could write here.
    if let Some((uid, gid)) = owner {
        for at in created.iter().rev() {
            std::os::unix::fs::lchown(at, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

fn mkdir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Removes a files directory; read-only files in it are no obstacle to its owner.
fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove instance files"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn spec(yaml: &str) -> ServiceSpec {
        crate::model::parse_cast_file("t", yaml).unwrap().remove(0)
    }

    #[test]
    fn files_are_private_and_read_only() {
        let s = spec(
            "service:\n  name: a\n  command: x\n  files:\n    - {secret: db, path: db}\n    - {config: app, path: conf/app}\n",
        );
        let mut r = Resolved::default();
        r.data.insert(
            SourceRef::new(SourceKind::Secret, "db"),
            BTreeMap::from([("password".into(), "hunter2".into())]),
        );
        r.data.insert(
            SourceRef::new(SourceKind::Config, "app"),
            BTreeMap::from([("mode".into(), "fast".into())]),
        );
        let root = std::env::temp_dir().join(format!("rune-files-{}", std::process::id()));
        let dir = root.join("ns_a_i1");
        std::fs::create_dir_all(&root).unwrap();
        for _ in 0..2 {
            // Twice: a restart writes them again over what the last start left.
            write_files(&dir, &s, &r, None).unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            std::fs::read_to_string(dir.join("db/password")).unwrap(),
            "hunter2"
        );
        assert_eq!(mode(&dir.join("db/password")), 0o400);
        assert_eq!(mode(&dir.join("conf/app/mode")), 0o444);
        let sources = Sources {
            store: OnceLock::new(),
            key_file: None,
            root: root.clone(),
        };
        sources.sweep(&["ns_a_i1".to_string()].into());
        assert!(dir.exists(), "known: kept");
        sources.sweep(&Default::default());
        assert!(!dir.exists(), "unknown: swept");
        let _ = std::fs::remove_dir_all(root);
    }

    /// Keys of a config written straight into etcd become file names only if they
    /// are names: never a path out of `$RUNE_FILES`.
    #[test]
    fn keys_that_are_not_names_write_nothing_outside() {
        let s =
            spec("service:\n  name: a\n  command: x\n  files:\n    - {config: app, path: app}\n");
        let root = std::env::temp_dir().join(format!("rune-files-keys-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let outside = root.join("outside");
        for key in ["../../outside", outside.to_str().unwrap(), "..", "a/b"] {
            let mut r = Resolved::default();
            r.data.insert(
                SourceRef::new(SourceKind::Config, "app"),
                BTreeMap::from([(key.to_string(), "planted".to_string())]),
            );
            let e = write_files(&root.join("ns_a_i1"), &s, &r, None).unwrap_err();
            assert!(
                e.to_string().contains("config/app: invalid key name"),
                "{key}: {e}"
            );
            assert!(!outside.exists(), "{key}");
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_missing_key_names_what_there_is() {
        let r = SourceRef::new(SourceKind::Secret, "db");
        let data = BTreeMap::from([("user".to_string(), "u".to_string())]);
        assert_eq!(
            missing_key("default", &r, "password", &data),
            "secret default/db has no key \"password\" (it has user)"
        );
    }
}
