//! `rune cast FILE...`: create or update services, compare-and-swap on each spec.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::exit::{self, Error};
use crate::model::document::check_stored_size;
use crate::model::document::parse_cast_documents;
use crate::model::source::SourceDocument;
use crate::model::{ServiceSpec, SourceKind, StoredService, limits};
use crate::store::cas::{Decision, Guard};
use crate::store::{Store, op};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune cast manifests/web.yaml
  rune cast manifests/*.yaml --dry-run
  cat api.json | rune cast -
  rune cast api.yaml --reason \"LOG_LEVEL=debug for ticket 42\"
  rune diff api.yaml            # what a cast would change, field by field

A spec without `scale:` keeps the live scale on update (so a GitOps repository can
leave scale to operators) and starts at 1 when the service is new.")]
pub struct CastArgs {
    /// Spec files (YAML or JSON; `-` reads standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Show what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Why: the change-cause recorded with the spec and shown by `rune rollout
    /// history` for the revision this cast makes (at most 1024 characters).
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<String>,
}

/// `--reason`: at most [`limits::MAX_CHANGE_CAUSE`] characters.
pub(crate) fn parse_reason(text: &str) -> Result<String, String> {
    let n = text.chars().count();
    if n > limits::MAX_CHANGE_CAUSE {
        return Err(format!(
            "the reason is {n} characters, over the limit of {}",
            limits::MAX_CHANGE_CAUSE
        ));
    }
    Ok(text.to_string())
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

pub async fn run(store: &Store, args: CastArgs) -> exit::Result<()> {
    run_with_keys(store, &Default::default(), args).await
}

/// `rune cast` with the secrets key file (for `secret:` documents). Configs and
/// secrets are written before the services, so a service that uses them finds
/// them at its first start.
pub async fn run_with_keys(
    store: &Store,
    keys: &crate::secrets::KeyFileArgs,
    args: CastArgs,
) -> exit::Result<()> {
    // Parse everything first: one bad file means nothing is written.
    let Documents { specs, sources } = read_documents(&args.files)?;
    if sources.iter().any(|(kind, _)| *kind == SourceKind::Secret) {
        // Before anything is written: a missing key file writes nothing.
        keys.keyring()?;
    }
    for (kind, doc) in &sources {
        println!(
            "{}",
            super::configs::cast(store, keys, *kind, doc, args.dry_run).await?
        );
    }
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    let change = Cause {
        by: super::scale::requested_by(),
        reason: args.reason.clone(),
    };
    for spec in specs {
        let what = format!("service {}/{}", spec.namespace(), spec.name());
        let change = cast_one(store, spec, &change, args.dry_run).await?;
        let verb = match change {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        };
        println!("{what} {verb}{suffix}");
    }
    Ok(())
}

/// Who casts and why: recorded in the stored spec (`changedBy`, `changeCause`).
struct Cause {
    by: String,
    reason: Option<String>,
}

/// Every spec of `files` (`-`: standard input), each checked against the stored
/// size limit: all of them, or the first error.
pub(crate) fn read_specs(files: &[PathBuf]) -> exit::Result<Vec<ServiceSpec>> {
    Ok(read_documents(files)?.specs)
}

/// What cast files hold: services, and the configs and secrets they use.
struct Documents {
    specs: Vec<ServiceSpec>,
    sources: Vec<(SourceKind, SourceDocument)>,
}

/// Every document of `files`, as [`read_specs`].
fn read_documents(files: &[PathBuf]) -> exit::Result<Documents> {
    let mut specs = Vec::new();
    let mut sources = Vec::new();
    for path in files {
        let (name, text) = if path.as_os_str() == "-" {
            let text = read_bounded(std::io::stdin())
                .map_err(|e| Error::usage(format!("reading standard input: {e}")))?;
            ("<stdin>".to_string(), text)
        } else {
            let text = std::fs::File::open(path)
                .and_then(read_bounded)
                .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
            (path.display().to_string(), text)
        };
        let file = parse_cast_documents(&name, &text)?;
        let configs = file.configs.into_iter().map(|d| (SourceKind::Config, d));
        sources.extend(configs.chain(file.secrets.into_iter().map(|d| (SourceKind::Secret, d))));
        for spec in file.services {
            let what = format!("{name}: service {}/{}", spec.namespace(), spec.name());
            let stored = StoredService::new(spec.clone()).to_json();
            check_stored_size(&what, stored.len())?;
            specs.push(spec);
        }
    }
    Ok(Documents { specs, sources })
}

/// Writes one spec; retries when another writer got in between read and write.
async fn cast_one(
    store: &Store,
    spec: ServiceSpec,
    cause: &Cause,
    dry_run: bool,
) -> exit::Result<Change> {
    let what = format!("service {}/{}", spec.namespace(), spec.name());
    let outcome = store
        .read_modify_write(&what, async || decide(store, &spec, cause, dry_run).await)
        .await?;
    Ok(outcome.answer())
}

/// One attempt: read the stored spec and decide what casting `spec` changes,
/// guarded on the spec as read (absent: still absent).
async fn decide(
    store: &Store,
    spec: &ServiceSpec,
    cause: &Cause,
    dry_run: bool,
) -> exit::Result<Decision<Change>> {
    let key = store.keys().service(spec.namespace(), spec.name());
    let current = store.get(&key).await?;
    let (mut next, change_if_different) = match &current {
        None => {
            let mut s = spec.clone();
            s.scale = Some(s.scale.unwrap_or(1));
            let mut stored = StoredService::new(s);
            stored.created_at = Some(Timestamp::now());
            (stored, Change::Created)
        }
        Some(kv) => {
            let existing =
                StoredService::parse(&key, &kv.value, spec.namespace(), spec.name()).ok();
            if existing
                .as_ref()
                .is_some_and(|e| e.deletion_timestamp.is_some())
            {
                return Err(Error::conflict(format!(
                    "service {}/{} is being deleted; cast it again once the deletion \
                     finishes (rune get services shows it until then)",
                    spec.namespace(),
                    spec.name()
                )));
            }
            let mut s = spec.clone();
            if s.scale.is_none() {
                s.scale = Some(live_scale(store, spec, existing.as_ref()).await?);
            }
            let mut stored = StoredService::new(s);
            stored.created_at = existing.as_ref().and_then(|e| e.created_at);
            // A cause alone is no change: the same spec with another reason
            // writes nothing.
            if let Some(e) = &existing {
                stored.change_cause = e.change_cause.clone();
                stored.changed_by = e.changed_by.clone();
            }
            if existing.as_ref() == Some(&stored) {
                return Ok(Decision::Done(Change::Unchanged));
            }
            (stored, Change::Updated)
        }
    };
    if dry_run {
        return Ok(Decision::Done(change_if_different));
    }
    next.deletion_timestamp = None;
    next.changed_by = Some(cause.by.clone());
    next.change_cause = cause.reason.clone();
    Ok(Decision::Write {
        guard: Guard::on(&key, current.as_ref()),
        ops: vec![op::put(&key, next.to_json())],
        answer: change_if_different,
    })
}

/// Reads at most one byte more than a cast file may hold, so an oversized file is
/// refused by its size (naming the limit) without reading all of it into memory.
fn read_bounded(r: impl std::io::Read) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r.take(limits::MAX_FILE_BYTES as u64 + 1), &mut bytes)?;
    if bytes.len() > limits::MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "over the limit of {} per file",
            limits::size(limits::MAX_FILE_BYTES)
        )));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::other(format!("not UTF-8: {e}")))
}

/// The scale to keep when a cast omits `scale:`: the stored spec's, or, when the
/// stored spec is unreadable, what the controller last reported.
pub(crate) async fn live_scale(
    store: &Store,
    spec: &ServiceSpec,
    existing: Option<&StoredService>,
) -> exit::Result<u32> {
    if let Some(e) = existing {
        return Ok(e.service.desired_scale());
    }
    let state = store.service_state(spec.namespace(), spec.name()).await?;
    Ok(state
        .status
        .as_ref()
        .map(|_| state.status().desired_replicas)
        .unwrap_or(1))
}
