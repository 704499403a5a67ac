//! Configs and secrets from the command line: `rune create config|secret`, `rune get
//! configs|secrets`, `rune delete config|secret`, `rune secrets rotate-key|generate-key`,
//! and the writes `rune cast` makes for `config:` and `secret:` documents.
//!
//! Every write is compare-and-swap on the key as read (`store::cas`) and bumps the
//! stored `version` only when the data changed. A secret is sealed with the key
//! file's first key before it leaves this process; its values are printed only on
//! `--show-values`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use super::output::{Format, age, print_document, print_table, table};
use crate::exit::{self, Error};
use crate::model::names::Label;
use crate::model::source::{SourceDocument, check_data};
use crate::model::{SourceKind, StoredSource, limits};
use crate::secrets::{self, KeyFileArgs, Keyring};
use crate::store::cas::{Decision, Guard};
use crate::store::{Kv, Store, cmp, op};

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a config: keys and values instances read as env or files.
    #[command(after_help = "Examples:
  rune create config app --from-literal mode=fast --from-file app.conf
  rune create config app --from-env-file app.env --overwrite")]
    Config(CreateArgs),
    /// Create a secret, encrypted in etcd with the key file's first key.
    #[command(after_help = "Examples:
  rune create secret db --from-literal password=s3cret --secrets-key-file keys
  rune create secret tls --from-file tls.crt --from-file key=tls.key

The key file (--secrets-key-file / RUNE_SECRETS_KEY_FILE) holds lines `<id> <base64
of 32 bytes>`; `rune secrets generate-key` prints one.")]
    Secret(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Its name (a DNS-1123 label).
    pub name: String,
    /// A key and its value (repeatable).
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A file's contents, under its file name or KEY (repeatable).
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// `KEY=VALUE` lines of a file (`#` comments and blank lines skipped).
    #[arg(long = "from-env-file", value_name = "PATH")]
    pub from_env_file: Vec<PathBuf>,
    /// Replace it if it exists (without: exit 4 when it does).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every secret with the key file's first key, so older keys can
    /// be removed from the file afterwards.
    #[command(after_help = "Rotating the key:
  1. put a new key line first in the key file (`rune secrets generate-key`),
     on every agent's node and where the CLI runs; keep the old line below it;
  2. rune secrets rotate-key
  3. remove the old line.")]
    RotateKey,
    /// Print a new key line `<id> <base64 of 32 random bytes>` for a key file.
    GenerateKey {
        /// The key's id (default: `key-` and the time).
        #[arg(long)]
        id: Option<String>,
    },
}

/// `rune get configs|secrets`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// One of them (default: all of the namespace).
    pub name: Option<String>,
    #[arg(
        short,
        long,
        default_value = "default",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: String,
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
    /// Print the values (a secret's need the key file).
    #[arg(long)]
    pub show_values: bool,
}

/// `rune delete config|secret NAME`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

impl From<secrets::SecretsError> for Error {
    fn from(e: secrets::SecretsError) -> Self {
        Error::usage(e.to_string())
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated(u64),
    Unchanged,
}

/// Whether a write may replace what exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `rune create` without `--overwrite`: exit 4 when it exists.
    Create,
    /// `--overwrite`, and `rune cast`.
    Replace,
}

pub async fn create(
    store: &Store,
    keys: &KeyFileArgs,
    kind: SourceKind,
    args: CreateArgs,
) -> exit::Result<()> {
    Label::new(&format!("{kind} name"), &args.name).map_err(Error::usage)?;
    Label::new("namespace", &args.namespace).map_err(Error::usage)?;
    let data = gather(&args)?;
    let what = format!("{kind} {}/{}", args.namespace, args.name);
    check_data(&what, &data).map_err(Error::usage)?;
    let keyring = match kind {
        SourceKind::Secret => Some(keys.keyring()?),
        SourceKind::Config => None,
    };
    let mode = if args.overwrite {
        Mode::Replace
    } else {
        Mode::Create
    };
    let change = write(
        store,
        kind,
        &args.namespace,
        &args.name,
        &data,
        mode,
        keyring.as_ref(),
        false,
    )
    .await?;
    println!("{}", said(&what, change, ""));
    Ok(())
}

/// `config default/app created`, `... updated (version 3)`, `... unchanged`.
pub fn said(what: &str, change: Change, suffix: &str) -> String {
    match change {
        Change::Created => format!("{what} created{suffix}"),
        Change::Updated(v) => format!("{what} updated (version {v}){suffix}"),
        Change::Unchanged => format!("{what} unchanged{suffix}"),
    }
}

/// The data of `--from-literal`, `--from-file` and `--from-env-file`; a key given
/// twice is an error.
fn gather(args: &CreateArgs) -> exit::Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    let mut add = |k: &str, v: String, from: &str| -> exit::Result<()> {
        crate::model::source::check_key_name(k)
            .map_err(|e| Error::usage(format!("{from}: {e}")))?;
        if data.insert(k.to_string(), v).is_some() {
            return Err(Error::usage(format!("{from}: key {k:?} is given twice")));
        }
        Ok(())
    };
    for (i, lit) in args.from_literal.iter().enumerate() {
        // Not quoted: without its '=' it may be a secret's value alone.
        let Some((k, v)) = lit.split_once('=') else {
            return Err(Error::usage(format!(
                "--from-literal (number {} given): expected KEY=VALUE, and it has no '='",
                i + 1
            )));
        };
        add(k, v.to_string(), &format!("--from-literal {k}"))?;
    }
    for spec in &args.from_file {
        let (key, path) = match spec.split_once('=') {
            Some((k, p)) => (k.to_string(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(spec);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, p)
            }
        };
        let text = read_value(&path)?;
        add(&key, text, &format!("--from-file {}", path.display()))?;
    }
    for path in &args.from_env_file {
        let text = read_value(path)?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let from = format!("{}:{}", path.display(), i + 1);
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::usage(format!("{from}: expected KEY=VALUE")));
            };
            add(k.trim_end(), v.to_string(), &from)?;
        }
    }
    Ok(data)
}

/// A file's contents as a value: UTF-8, and read only up to one byte past the
/// bound, so an oversized file is refused by its size.
fn read_value(path: &Path) -> exit::Result<String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| Error::usage(format!("{shown}: {e}")))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, limits::MAX_SOURCE_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(|e| Error::usage(format!("{shown}: {e}")))?;
    if bytes.len() > limits::MAX_SOURCE_BYTES {
        return Err(Error::usage(format!(
            "{shown} is over the limit of {} per config or secret",
            limits::size(limits::MAX_SOURCE_BYTES)
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::usage(format!(
            "{shown} is not UTF-8 text; configs and secrets hold text values"
        ))
    })
}

/// Writes `data` as config or secret `ns/name`: created at version 1, or replaced
/// with the version bumped when the data changed. Compare-and-swap on the key.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    store: &Store,
    kind: SourceKind,
    ns: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    mode: Mode,
    keyring: Option<&Keyring>,
    dry_run: bool,
) -> exit::Result<Change> {
    let key = store.keys().source(kind, ns, name);
    let what = format!("{kind} {ns}/{name}");
    let outcome = store
        .read_modify_write(&what, async || {
            let current = store.get(&key).await?;
            let now = Timestamp::now();
            let (version, created_at, change) = match &current {
                None => (1, now, Change::Created),
                Some(_) if mode == Mode::Create => {
                    return Err(Error::conflict(format!(
                        "{what} already exists (--overwrite replaces it)"
                    )));
                }
                Some(kv) => {
                    let old = StoredSource::parse(&kv.key, &kv.value).ok();
                    if let Some(old) = &old
                        && same_data(kind, ns, name, old, data, keyring)
                    {
                        return Ok(Decision::Done(Change::Unchanged));
                    }
                    let version = old.as_ref().map_or(1, |o| o.version + 1);
                    let created = old.as_ref().map_or(now, |o| o.created_at);
                    (version, created, Change::Updated(version))
                }
            };
            if dry_run {
                return Ok(Decision::Done(change));
            }
            let mut stored = StoredSource {
                name: name.to_string(),
                namespace: ns.to_string(),
                version,
                created_at,
                updated_at: now,
                keys: StoredSource::sizes(data),
                data: None,
                sealed: None,
            };
            match kind {
                SourceKind::Config => stored.data = Some(data.clone()),
                SourceKind::Secret => {
                    let ring = keyring.expect("secrets are written with a keyring");
                    stored.sealed = Some(ring.seal(&secrets::aad(ns, name), data));
                }
            }
            Ok(Decision::Write {
                guard: Guard::on(&key, current.as_ref()),
                ops: vec![op::put(&key, stored.to_json())],
                answer: change,
            })
        })
        .await?;
    Ok(outcome.answer())
}

/// The secret a `secrets/` key holds, for errors, and the associated data its value
/// must open with: from the key, as the agent takes it, never from the value's own
/// `namespace`/`name` (a value copied under another key must not open there).
fn bound_to(store: &Store, key: &str) -> exit::Result<(String, String)> {
    match store.keys().source_of(key) {
        Some((ns, r)) => Ok((
            format!("secret {ns}/{}", r.name),
            secrets::aad(&ns, &r.name),
        )),
        None => Err(Error::usage(format!("{key} is not a secret's key"))),
    }
}

/// Whether `old` holds exactly `data` (a secret that does not open counts as
/// changed: it is written again, sealed with the current key).
fn same_data(
    kind: SourceKind,
    ns: &str,
    name: &str,
    old: &StoredSource,
    data: &BTreeMap<String, String>,
    keyring: Option<&Keyring>,
) -> bool {
    match kind {
        SourceKind::Config => old.data.as_ref() == Some(data),
        SourceKind::Secret => match (keyring, &old.sealed) {
            (Some(ring), Some(sealed)) => ring
                .open(name, &secrets::aad(ns, name), sealed)
                .is_ok_and(|d| &d == data),
            _ => false,
        },
    }
}

/// `rune cast`'s `config:` and `secret:` documents: written as `--overwrite` does.
pub async fn cast(
    store: &Store,
    keys: &KeyFileArgs,
    kind: SourceKind,
    doc: &SourceDocument,
    dry_run: bool,
) -> exit::Result<String> {
    let keyring = match kind {
        SourceKind::Secret => Some(keys.keyring()?),
        SourceKind::Config => None,
    };
    let (ns, name) = (doc.namespace.as_str(), doc.name.as_str());
    let change = write(
        store,
        kind,
        ns,
        name,
        &doc.data,
        Mode::Replace,
        keyring.as_ref(),
        dry_run,
    )
    .await?;
    let suffix = if dry_run { " (dry run)" } else { "" };
    Ok(said(&format!("{kind} {ns}/{name}"), change, suffix))
}

/// How `get -o yaml|json` shows one: the metadata, and the values when shown.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct View {
    kind: SourceKind,
    name: String,
    namespace: String,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    keys: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted_with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<BTreeMap<String, String>>,
}

pub async fn get(
    store: &Store,
    keys: &KeyFileArgs,
    kind: SourceKind,
    args: GetArgs,
) -> exit::Result<()> {
    let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
    let kvs: Vec<Kv> = match &args.name {
        Some(name) => {
            let ns = ns.unwrap_or("default");
            let key = store.keys().source(kind, ns, name);
            match store.get(&key).await? {
                Some(kv) => vec![kv],
                None => return Err(Error::conflict(format!("{kind} {ns}/{name} not found"))),
            }
        }
        None => store.list(&store.keys().sources_of(kind, ns)).await?.0,
    };
    let keyring = match (kind, args.show_values) {
        (SourceKind::Secret, true) => Some(keys.keyring()?),
        _ => None,
    };
    let mut views = Vec::new();
    for kv in &kvs {
        let stored = StoredSource::parse(&kv.key, &kv.value).map_err(Error::usage)?;
        let data = match (kind, args.show_values, &keyring) {
            (SourceKind::Config, show, _) if show || args.output != Format::Table => {
                stored.data.clone()
            }
            (SourceKind::Secret, true, Some(ring)) => {
                let sealed = stored
                    .sealed
                    .as_ref()
                    .ok_or_else(|| Error::usage(format!("{} holds no sealed data", kv.key)))?;
                let (what, aad) = bound_to(store, &kv.key)?;
                Some(ring.open(&what, &aad, sealed)?)
            }
            _ => None,
        };
        views.push(View {
            kind,
            encrypted_with: stored.sealed.as_ref().map(|s| s.key_id.clone()),
            name: stored.name,
            namespace: stored.namespace,
            version: stored.version,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            keys: stored.keys,
            data,
        });
    }
    match args.output {
        Format::Table | Format::Wide => {
            let mut header = vec!["NAME", "KEYS", "SIZE", "VERSION", "AGE"];
            if args.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            let mut t = table(&header);
            for v in &views {
                let keys: Vec<&str> = v.keys.keys().map(String::as_str).collect();
                let size: u64 = v.keys.values().sum();
                let mut row = vec![
                    v.name.clone(),
                    if keys.is_empty() {
                        "-".into()
                    } else {
                        keys.join(",")
                    },
                    limits::size(size as usize),
                    v.version.to_string(),
                    age(Some(v.created_at)),
                ];
                if args.all_namespaces {
                    row.insert(0, v.namespace.clone());
                }
                t.add_row(row);
            }
            if views.is_empty() {
                eprintln!("No {}s found.", kind);
                return Ok(());
            }
            print_table(&t);
            if args.show_values {
                for v in &views {
                    for (k, value) in v.data.iter().flatten() {
                        println!("{}/{k}={}", v.name, value.escape_debug());
                    }
                }
            }
            Ok(())
        }
        format => {
            if args.name.is_some() {
                print_document(format, &views[0])
            } else {
                print_document(format, &views)
            }
        }
    }
}

pub async fn delete(store: &Store, kind: SourceKind, args: DeleteArgs) -> exit::Result<()> {
    let (ns, name) = (&args.namespace, &args.name);
    let key = store.keys().source(kind, ns, name);
    let what = format!("{kind} {ns}/{name}");
    let Some(kv) = store.get(&key).await? else {
        return Err(Error::conflict(format!("{what} not found")));
    };
    let done = store
        .txn(
            vec![cmp::mod_rev(&key, kv.mod_revision)],
            vec![op::delete(&key)],
            vec![],
        )
        .await?;
    if !done.succeeded {
        return Err(Error::conflict(format!(
            "{what} changed while deleting it; try again"
        )));
    }
    println!("{what} deleted");
    Ok(())
}

pub async fn secrets(store: &Store, keys: &KeyFileArgs, cmd: SecretsCommand) -> exit::Result<()> {
    match cmd {
        SecretsCommand::GenerateKey { id } => generate_key(id),
        SecretsCommand::RotateKey => rotate_key(store, keys).await,
    }
}

/// Needs no etcd.
pub fn generate_key(id: Option<String>) -> exit::Result<()> {
    let id = id.unwrap_or_else(|| format!("key-{}", Timestamp::now().strftime("%Y%m%d%H%M%S")));
    println!("{}", secrets::generate_key_line(&id).map_err(Error::usage)?);
    Ok(())
}

/// Re-seals every secret not sealed with the first key, one compare-and-swap each;
/// the data and its version stay (instances need no restart). A secret that does
/// not open is named and the rest go on; the exit says something failed.
async fn rotate_key(store: &Store, keys: &KeyFileArgs) -> exit::Result<()> {
    let ring = keys.keyring()?;
    let (kvs, _) = store.list(&store.keys().secrets()).await?;
    let mut failed = Vec::new();
    let (mut rotated, mut current) = (0, 0);
    for kv in kvs {
        let what = kv.key.clone();
        let outcome = store
            .read_modify_write(&what, async || {
                let Some(kv) = store.get(&kv.key).await? else {
                    return Ok(Decision::Done(false));
                };
                let mut stored = StoredSource::parse(&kv.key, &kv.value).map_err(Error::usage)?;
                let Some(sealed) = &stored.sealed else {
                    return Err(Error::usage(format!("{} holds no sealed data", kv.key)));
                };
                if sealed.key_id == ring.primary() {
                    return Ok(Decision::Done(false));
                }
                let (shown, aad) = bound_to(store, &kv.key)?;
                let data = ring.open(&shown, &aad, sealed)?;
                stored.sealed = Some(ring.seal(&aad, &data));
                Ok(Decision::Write {
                    guard: Guard::on(&kv.key, Some(&kv)),
                    ops: vec![op::put(&kv.key, stored.to_json())],
                    answer: true,
                })
            })
            .await;
        match outcome.map(|o| o.answer()) {
            Ok(true) => {
                rotated += 1;
                println!("{what}: re-encrypted with key {:?}", ring.primary());
            }
            Ok(false) => current += 1,
            Err(e) => {
                eprintln!("error: {e}");
                failed.push(what);
            }
        }
    }
    println!(
        "{rotated} secret(s) re-encrypted, {current} already with key {:?}",
        ring.primary()
    );
    if !failed.is_empty() {
        return Err(Error::usage(format!(
            "{} secret(s) not re-encrypted: {}",
            failed.len(),
            failed.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal given without its key is refused without echoing it: it may be
    /// a secret's value, and errors end up in terminals and CI logs.
    #[test]
    fn a_literal_without_a_key_is_not_echoed() {
        let args = CreateArgs {
            name: "db".into(),
            from_literal: vec!["user=admin".into(), "hunter2".into()],
            from_file: vec![],
            from_env_file: vec![],
            overwrite: false,
            namespace: "default".into(),
        };
        let e = gather(&args).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(
            e.contains("--from-literal (number 2 given): expected KEY=VALUE"),
            "{e}"
        );
    }
}
