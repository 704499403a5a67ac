//! `rune rollout history|undo`: a service's spec revisions (`revisions/<ns>/<svc>/<n>`,
//! written by the controller, the last ten kept) as Kubernetes' `kubectl rollout`
//! shows a Deployment's: who changed the spec and why, what changed between two
//! revisions, and writing an old revision's spec back.
//!
//! Undo writes the spec only (compare-and-swap, as `rune cast`); the controller
//! records it as the next revision (numbers are never reused), and the service's
//! update settings say how running instances follow, as for any spec change.

use serde::Serialize;
use serde_json::Value;

use super::output::{Format, age, print_document, print_table, table};
use crate::exit::{self, Error};
use crate::model::diff;
use crate::model::revision::template;
use crate::model::{DesiredState, InstanceRecord, Revision, ServiceSpec, StoredService};
use crate::store::cas::{Decision, Guard};
use crate::store::{Kv, Store, op};

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// List the service's revisions: when, by whom, why, which one is live.
    #[command(after_help = "Examples:
  rune rollout history api
  rune rollout history api --revision 3           # that revision's spec (castable YAML)
  rune rollout history api --revision 3 --diff 4  # what changed from 3 to 4

LIVE marks the revision of the spec as it is now; INSTANCES counts the instances that
run each revision (a Recreate service runs the old one until `rune restart`). A
revision's CHANGE-CAUSE is the `--reason` of the cast (or undo) that made it; specs
written by other means show `-` unless they set `changeCause`.")]
    History(HistoryArgs),
    /// Write an earlier revision's spec back (default: the one before the live one),
    /// keeping the live scale.
    #[command(after_help = "Examples:
  rune rollout undo api
  rune rollout undo api --to-revision 2 --reason \"v2 leaks memory\"

The spec is written back compare-and-swap; the controller records it as a new
revision. Running instances follow as for any spec change: a service with
`update: {strategy: Rolling}` is rolled out at once; a Recreate service keeps its
instances until `rune restart NAME`.")]
    Undo(UndoArgs),
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The service.
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Print this revision's spec.
    #[arg(long, value_name = "N")]
    pub revision: Option<u64>,
    /// With --revision N: the field-by-field difference from N to M.
    #[arg(long, value_name = "M", requires = "revision")]
    pub diff: Option<u64>,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    /// The service.
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// The revision to go back to (default: the one before the live one).
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,
    /// Why: the change-cause of the revision the undo makes (default: "undo to
    /// revision N").
    #[arg(long, value_parser = super::cast::parse_reason)]
    pub reason: Option<String>,
}

pub async fn run(store: &Store, cmd: RolloutCommand) -> exit::Result<()> {
    match cmd {
        RolloutCommand::History(a) => history(store, a).await,
        RolloutCommand::Undo(a) => undo(store, a).await,
    }
}

/// What is stored about a service's revisions, read at one revision.
struct Revisions {
    stored: StoredService,
    /// The spec key as read: what an undo is guarded on.
    spec: Kv,
    /// Sorted by number.
    revisions: Vec<Revision>,
    instances: Vec<InstanceRecord>,
}

impl Revisions {
    async fn read(store: &Store, ns: &str, name: &str) -> exit::Result<Revisions> {
        let state = store.service_state_full(ns, name).await?;
        let Some(kv) = &state.spec else {
            return Err(super::get::not_found(ns, name));
        };
        let stored = StoredService::parse(&kv.key, &kv.value, ns, name)
            .map_err(|e| Error::usage(format!("the stored spec is invalid; fix it first: {e}")))?;
        let mut revisions: Vec<Revision> = Vec::new();
        for kv in &state.revisions {
            match kv.json::<Revision>() {
                Ok(r) => revisions.push(r),
                Err(e) => eprintln!("warning: {}: does not parse, left out: {e}", kv.key),
            }
        }
        revisions.sort_by_key(|r| r.revision);
        let instances = state
            .instances
            .iter()
            .filter_map(|kv| InstanceRecord::parse(&kv.value).ok())
            .collect();
        Ok(Revisions {
            stored,
            spec: kv.clone(),
            revisions,
            instances,
        })
    }

    /// The revision of the spec as it is now: the newest whose spec is the
    /// stored spec's template. `None` until the controller recorded it.
    fn live(&self) -> Option<&Revision> {
        let wanted = template(&self.stored.service);
        self.revisions.iter().rev().find(|r| r.spec == wanted)
    }

    fn get(&self, n: u64) -> exit::Result<&Revision> {
        self.revisions
            .iter()
            .find(|r| r.revision == n)
            .ok_or_else(|| {
                let kept: Vec<String> = self
                    .revisions
                    .iter()
                    .map(|r| r.revision.to_string())
                    .collect();
                Error::usage(format!(
                    "service {}/{} has no revision {n} (kept: {})",
                    self.stored.service.namespace(),
                    self.stored.service.name(),
                    if kept.is_empty() {
                        "none yet".to_string()
                    } else {
                        kept.join(", ")
                    }
                ))
            })
    }

    /// Instances (whose record says Running) that run revision `n`.
    fn running(&self, n: u64) -> usize {
        self.instances
            .iter()
            .filter(|i| i.revision == n && i.desired == DesiredState::Running)
            .count()
    }
}

/// One row of the history, for `-o json|yaml`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRow<'a> {
    revision: u64,
    created_at: jiff::Timestamp,
    changed_by: Option<&'a str>,
    change_cause: Option<&'a str>,
    live: bool,
    instances: usize,
}

async fn history(store: &Store, a: HistoryArgs) -> exit::Result<()> {
    let r = Revisions::read(store, &a.namespace, &a.name).await?;
    match (a.revision, a.diff) {
        (Some(n), Some(m)) => {
            let (old, new) = (r.get(n)?, r.get(m)?);
            let changes = diff::diff(&as_value(&old.spec), &as_value(&new.spec));
            if changes.is_empty() {
                println!("revision {n} → revision {m}: no differences");
            } else {
                println!("revision {n} → revision {m}:");
                print!("{}", diff::render(&changes));
            }
            Ok(())
        }
        (Some(n), None) => show(r.get(n)?, a.output),
        (None, _) => list(&r, a.output),
    }
}

/// A revision's spec as a castable `service:` document, its history in comments.
fn show(rev: &Revision, output: Format) -> exit::Result<()> {
    #[derive(Serialize)]
    struct Doc<'a> {
        service: &'a ServiceSpec,
    }
    if output == Format::Json {
        return print_document(output, rev);
    }
    println!(
        "# revision {}, {} by {}: {}",
        rev.revision,
        rev.created_at,
        rev.changed_by.as_deref().unwrap_or("-"),
        rev.change_cause.as_deref().unwrap_or("-")
    );
    print_document(Format::Yaml, &Doc { service: &rev.spec })
}

fn list(r: &Revisions, output: Format) -> exit::Result<()> {
    let live = r.live().map(|l| l.revision);
    let rows: Vec<HistoryRow> = r
        .revisions
        .iter()
        .map(|rev| HistoryRow {
            revision: rev.revision,
            created_at: rev.created_at,
            changed_by: rev.changed_by.as_deref(),
            change_cause: rev.change_cause.as_deref(),
            live: Some(rev.revision) == live,
            instances: r.running(rev.revision),
        })
        .collect();
    if matches!(output, Format::Json | Format::Yaml) {
        return print_document(output, &rows);
    }
    let mut t = table(&["REVISION", "AGE", "BY", "CHANGE-CAUSE", "LIVE", "INSTANCES"]);
    for row in &rows {
        t.add_row([
            row.revision.to_string(),
            age(Some(row.created_at)),
            row.changed_by.unwrap_or("-").to_string(),
            row.change_cause.unwrap_or("-").to_string(),
            if row.live { "*" } else { "" }.to_string(),
            row.instances.to_string(),
        ]);
    }
    print_table(&t);
    if live.is_none() {
        println!("(the spec's latest change has no revision yet: the controller records it)");
    }
    Ok(())
}

fn as_value(spec: &ServiceSpec) -> Value {
    serde_json::to_value(spec).expect("specs serialize")
}

/// The spec to write back: revision `rev`'s, with every field that is no part of
/// a revision (`scale`, `scaling`, `disruption`: whatever [`template`] leaves out)
/// taken from the live spec, so the live scale stays.
fn restored(live: &ServiceSpec, rev: &ServiceSpec) -> exit::Result<ServiceSpec> {
    let (live_value, live_template) = (as_value(live), as_value(&template(live)));
    let mut next = as_value(rev);
    if let (Value::Object(live), Value::Object(kept), Value::Object(next)) =
        (live_value, live_template, &mut next)
    {
        for (field, value) in live {
            if !kept.contains_key(&field) {
                next.insert(field, value);
            }
        }
    }
    serde_json::from_value(next)
        .map_err(|e| Error::usage(format!("revision's spec no longer valid: {e}")))
}

async fn undo(store: &Store, a: UndoArgs) -> exit::Result<()> {
    let (ns, name) = (a.namespace.as_str(), a.name.as_str());
    let what = format!("service {ns}/{name}");
    let by = super::scale::requested_by();
    let mut chosen = None;
    let outcome = store
        .read_modify_write(&what, async || {
            let r = Revisions::read(store, ns, name).await?;
            if r.stored.deletion_timestamp.is_some() {
                return Err(Error::conflict(format!("{what} is being deleted")));
            }
            let live = r.live().map(|l| l.revision);
            let current = template(&r.stored.service);
            let target = match a.to_revision {
                Some(n) => r.get(n)?.clone(),
                None => r
                    .revisions
                    .iter()
                    .rev()
                    .filter(|rev| live.is_none_or(|l| rev.revision < l))
                    .find(|rev| rev.spec != current)
                    .cloned()
                    .ok_or_else(|| {
                        Error::conflict(format!(
                            "{what} has no earlier revision to go back to (rune rollout history {name})"
                        ))
                    })?,
            };
            let running: std::collections::BTreeSet<u64> = r
                .instances
                .iter()
                .filter(|i| i.desired == DesiredState::Running)
                .map(|i| i.revision)
                .collect();
            let already = running.iter().all(|n| {
                r.revisions
                    .iter()
                    .any(|rev| rev.revision == *n && rev.spec == target.spec)
            });
            // Read as a value, so this needs no knowledge of the `update:` type.
            let rolling = as_value(&r.stored.service)["update"]["strategy"] == "Rolling";
            chosen = Some((target.revision, running, already, rolling));
            if target.spec == current {
                return Ok(Decision::Done(false));
            }
            let mut next = r.stored.clone();
            next.service = restored(&r.stored.service, &target.spec)?;
            next.changed_by = Some(by.clone());
            next.change_cause = Some(
                a.reason
                    .clone()
                    .unwrap_or_else(|| format!("undo to revision {}", target.revision)),
            );
            let key = store.keys().service(ns, name);
            Ok(Decision::Write {
                guard: Guard::on(&key, Some(&r.spec)),
                ops: vec![op::put(&key, next.to_json())],
                answer: true,
            })
        })
        .await?;
    let (target, running, already, rolling) = chosen.expect("decided");
    let written = outcome.answer();
    if !written {
        println!("{what}: the spec already is revision {target}'s; nothing written");
        return Ok(());
    }
    println!(
        "{what}: spec of revision {target} written back (the controller records it as a new revision); scale kept"
    );
    if running.is_empty() {
        println!("no instance runs now; new ones start from this spec");
        return Ok(());
    }
    if already {
        println!("the instances already run this spec; nothing to replace");
        return Ok(());
    }
    let revisions: Vec<String> = running.iter().map(u64::to_string).collect();
    if rolling {
        println!(
            "update strategy Rolling: the controller rolls the instances (revision {}) out to \
             it now; `rune get service {name} -w` follows it",
            revisions.join(", ")
        );
    } else {
        println!(
            "update strategy Recreate: the instances keep running the spec they started with \
             (revision {}) until `rune restart {name}`",
            revisions.join(", ")
        );
    }
    Ok(())
}
