//! `rune describe service|instance NAME`: one screen about one thing — its spec
//! highlights, status, conditions, instances, last operations and recent events —
//! as `kubectl describe` does. Gathering (`load_*`) is apart from rendering
//! (`render_*`, pure), so the layout is unit-tested from fixed data.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use jiff::Timestamp;

use super::events::{events_table, load as load_events};
use super::output::age;
use crate::exit::{self, Error};
use crate::model::event::{Event, instance_object};
use crate::model::{
    Command, HistoryEntry, InstanceRecord, InstanceRef, InstanceStatus, Phase, Probe,
    ServiceStatus, StoredService,
};
use crate::store::{Read, Store};

/// How many of the newest events `describe` shows.
const RECENT_EVENTS: usize = 20;
/// How many of the last operations `describe service` shows.
const RECENT_OPERATIONS: usize = 5;

#[derive(Debug, clap::Subcommand)]
pub enum DescribeCommand {
    /// A service: spec highlights, status, conditions, instances by node, the last
    /// operations and recent events.
    #[command(
        visible_alias = "svc",
        after_help = "Examples:
  rune describe service api
  rune describe service api -n prod"
    )]
    Service {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// An instance (its ID as `rune get instances` shows it, or NS/SERVICE/ID):
    /// record, status, last exit, probe error, node and its events.
    #[command(
        visible_alias = "inst",
        after_help = "Examples:
  rune describe instance api-0a1b2c3d4e
  rune describe instance default/api/api-0a1b2c3d4e"
    )]
    Instance {
        id: String,
        /// The namespace to look for the instance in.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

pub async fn run(store: &Store, cmd: DescribeCommand) -> exit::Result<()> {
    match cmd {
        DescribeCommand::Service { name, namespace } => {
            let d = load_service(store, &namespace, &name).await?;
            print!("{}", render_service(&d, Timestamp::now()));
        }
        DescribeCommand::Instance { id, namespace } => {
            let d = load_instance(store, &namespace, &id).await?;
            print!("{}", render_instance(&d));
        }
    }
    Ok(())
}

/// Everything `describe service` shows.
#[derive(Debug, Clone)]
pub struct ServiceDescription {
    pub namespace: String,
    pub name: String,
    pub spec: Result<StoredService, String>,
    /// The spec key's mod revision (0: no spec key).
    pub spec_revision: i64,
    /// The newest spec revision number (`revisions/…`), if any.
    pub revision: Option<u64>,
    pub status: ServiceStatus,
    /// Each instance record with its report; the report is `Unknown` for a node
    /// that is not registered.
    pub instances: Vec<(InstanceRecord, Option<InstanceStatus>)>,
    pub events: Vec<Event>,
}

/// Everything `describe instance` shows.
#[derive(Debug, Clone)]
pub struct InstanceDescription {
    pub record: InstanceRecord,
    pub status: Option<InstanceStatus>,
    pub node_registered: bool,
    pub events: Vec<Event>,
}

pub async fn load_service(store: &Store, ns: &str, name: &str) -> exit::Result<ServiceDescription> {
    let state = store.service_state_full(ns, name).await?;
    if state.spec.is_none() && state.status.is_none() && state.instances.is_empty() {
        return Err(super::get::not_found(ns, name));
    }
    let spec = match &state.spec {
        Some(kv) => StoredService::parse(&kv.key, &kv.value, ns, name).map_err(|e| e.to_string()),
        None => Err("no spec stored (the service is being removed)".to_string()),
    };
    let spec_revision = state.spec.as_ref().map_or(0, |kv| kv.mod_revision);
    let revision = state
        .revisions
        .iter()
        .filter_map(|kv| kv.json::<crate::model::Revision>().ok())
        .map(|r| r.revision)
        .max();
    let registered = registered_nodes(store).await?;
    let statuses: BTreeMap<String, InstanceStatus> = state
        .instance_statuses
        .iter()
        .filter_map(|kv| kv.json::<InstanceStatus>().ok())
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut instances: Vec<(InstanceRecord, Option<InstanceStatus>)> = state
        .instances
        .iter()
        .filter_map(|kv| InstanceRecord::parse(&kv.value).ok())
        .map(|r| {
            let s = report(&r, statuses.get(&r.id), registered.contains(&r.node));
            (r, s)
        })
        .collect();
    instances.sort_by(|a, b| (&a.0.node, a.0.created_at).cmp(&(&b.0.node, b.0.created_at)));
    let (events, _) = load_events(store, &store.keys().events_of(ns, name)).await?;
    Ok(ServiceDescription {
        namespace: ns.to_string(),
        name: name.to_string(),
        spec,
        spec_revision,
        revision,
        status: state.status(),
        instances,
        events,
    })
}

async fn registered_nodes(store: &Store) -> exit::Result<HashSet<String>> {
    let prefix = store.keys().nodes();
    Ok(store
        .list_keys(&prefix)
        .await?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The report to show: a lost node's is `Unknown` (as `rune get instances`).
fn report(
    r: &InstanceRecord,
    s: Option<&InstanceStatus>,
    registered: bool,
) -> Option<InstanceStatus> {
    if registered {
        return s.cloned();
    }
    Some(InstanceStatus {
        phase: Phase::Unknown,
        message: format!("node {} is lost: state unknown", r.node),
        ..s.cloned()
            .unwrap_or_else(|| InstanceStatus::pending(&r.id, &r.node))
    })
}

pub async fn load_instance(store: &Store, ns: &str, id: &str) -> exit::Result<InstanceDescription> {
    let k = store.keys();
    // NS/SVC/ID names the key; a bare ID is looked for among the namespace's
    // instance records (keys only).
    let key = match InstanceRef::parse(id).filter(|_| id.matches('/').count() == 2) {
        Some(r) => k.instance(&r.service.namespace, &r.service.name, &r.id),
        None => {
            let suffix = format!("/{id}");
            let prefix = format!("{}{ns}/", k.instances());
            store
                .list_keys(&prefix)
                .await?
                .into_iter()
                .find(|key| key.ends_with(&suffix))
                .ok_or_else(|| {
                    Error::conflict(format!("instance {id} not found in namespace {ns}"))
                })?
        }
    };
    let Some(kv) = store.get(&key).await? else {
        return Err(Error::conflict(format!("instance {id} not found")));
    };
    let record = InstanceRecord::parse(&kv.value)
        .map_err(|e| Error::usage(format!("{key}: the record does not parse: {e}")))?;
    let (rns, svc, rid) = (&record.namespace, &record.service, &record.id);
    let status_key = k.instance_status(rns, svc, rid);
    let node_key = k.node(&record.node);
    let (r, _) = store
        .snapshot(&[Read::Key(&status_key), Read::Key(&node_key)])
        .await?;
    let node_registered = !r[1].is_empty();
    let status = report(
        &record,
        r[0].first()
            .and_then(|kv| kv.json::<InstanceStatus>().ok())
            .as_ref(),
        node_registered,
    );
    let object = instance_object(rid);
    let (events, _) = load_events(store, &k.events_of(rns, svc)).await?;
    let events = events.into_iter().filter(|e| e.object == object).collect();
    Ok(InstanceDescription {
        record,
        status,
        node_registered,
        events,
    })
}

fn command_line(c: &Command, args: &[String]) -> String {
    let mut words: Vec<String> = match c {
        Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), format!("{s:?}")],
        Command::Argv(v) => v.iter().map(|w| quote(w)).collect(),
    };
    words.extend(args.iter().map(|w| quote(w)));
    words.join(" ")
}

fn quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:${}@,".contains(c))
    {
        w.to_string()
    } else {
        format!("{w:?}")
    }
}

fn probe(p: &Probe) -> String {
    let mut s = p.kind.to_string();
    if let Some(port) = &p.port {
        let port = serde_json::to_value(port).map(|v| match v {
            serde_json::Value::String(s) => s,
            v => v.to_string(),
        });
        let _ = write!(s, " :{}", port.unwrap_or_default());
    }
    if let Some(path) = &p.path {
        s.push_str(path);
    }
    if let Some(cmd) = &p.command {
        let _ = write!(s, " [{}]", cmd.join(" "));
    }
    let _ = write!(
        s,
        " every {}s, timeout {}s, delay {}s, failure {} success {}",
        p.interval_seconds,
        p.timeout_seconds,
        p.initial_delay_seconds,
        p.failure_threshold,
        p.success_threshold
    );
    s
}

fn when(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => format!("{t} ({} ago)", age(Some(t))),
        None => "-".into(),
    }
}

/// Indents a table's lines by two spaces under a section title.
fn section(out: &mut String, title: &str, body: Option<String>, empty: &str) {
    let _ = writeln!(out, "{title}:");
    match body {
        Some(body) => {
            for line in body.lines() {
                let _ = writeln!(out, "  {}", line.trim_end());
            }
        }
        None => {
            let _ = writeln!(out, "  {empty}");
        }
    }
}

fn events_section(out: &mut String, events: &[Event]) {
    let recent = &events[events.len().saturating_sub(RECENT_EVENTS)..];
    let body = (!recent.is_empty()).then(|| events_table(recent, false).to_string());
    section(out, "Events", body, "<none>");
}

pub fn render_service(d: &ServiceDescription, _now: Timestamp) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    };
    field(&mut out, "Name", &d.name);
    field(&mut out, "Namespace", &d.namespace);
    match &d.spec {
        Ok(stored) => {
            let s = &stored.service;
            field(&mut out, "Command", &command_line(&s.command, &s.args));
            let ports = s
                .ports
                .iter()
                .map(|p| match p.port {
                    Some(n) => format!("{}={n}", p.name),
                    None => format!("{} (auto)", p.name),
                })
                .collect::<Vec<_>>();
            field(
                &mut out,
                "Ports",
                &if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(", ")
                },
            );
            field(
                &mut out,
                "Readiness",
                &s.health.readiness.as_ref().map_or("<none>".into(), probe),
            );
            field(
                &mut out,
                "Liveness",
                &s.health.liveness.as_ref().map_or("<none>".into(), probe),
            );
            field(
                &mut out,
                "Restart policy",
                &format!(
                    "{:?}, stopGracePeriod {}{}",
                    s.restart_policy,
                    humantime::format_duration(s.stop_grace_period),
                    if s.shutdown_delay.is_zero() {
                        String::new()
                    } else {
                        format!(
                            ", shutdownDelay {}",
                            humantime::format_duration(s.shutdown_delay)
                        )
                    }
                ),
            );
            let scaling = match &s.scaling {
                Some(sc) => format!(
                    "{}, step {}, interval {}, rollbackOnFail {}",
                    sc.mode,
                    sc.step,
                    humantime::format_duration(sc.interval),
                    sc.rollback_on_fail
                ),
                None => "<defaults: immediate>".into(),
            };
            field(&mut out, "Scaling", &scaling);
            if let Some(u) = &s.update {
                let update = format!(
                    "{:?}, maxSurge {}, maxUnavailable {}, minReadySeconds {}, onFailure {}, \
                     progressDeadline {}",
                    u.strategy,
                    u.max_surge,
                    u.max_unavailable,
                    u.min_ready_seconds,
                    u.on_failure,
                    humantime::format_duration(u.progress_deadline)
                );
                field(&mut out, "Update", &update);
            }
            if let Some(t) = stored.deletion_timestamp {
                field(&mut out, "Terminating since", &when(Some(t)));
            }
        }
        Err(e) => field(&mut out, "Spec", &format!("invalid: {e}")),
    }
    let revision = match d.revision {
        Some(n) => format!("{n} (spec key at etcd revision {})", d.spec_revision),
        None => format!("- (spec key at etcd revision {})", d.spec_revision),
    };
    field(&mut out, "Revision", &revision);
    let st = &d.status;
    let _ = writeln!(out, "Status:");
    let _ = writeln!(
        out,
        "  Replicas:       {} desired | {} ready | {} current",
        st.desired_replicas, st.ready_replicas, st.current_replicas
    );
    if let Some(update) = st.update_revision {
        let current = st
            .current_revision
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  Revisions:      {} updated to {update} | current {current}",
            st.updated_replicas
        );
    }
    let reason = if st.last_scale_reason.is_empty() {
        String::new()
    } else {
        format!(": {}", st.last_scale_reason)
    };
    let _ = writeln!(out, "  Last scale:     {}{reason}", when(st.last_scale_at));
    if let Some(op) = st.operation.as_ref().filter(|p| !p.phase.is_terminal()) {
        let _ = writeln!(
            out,
            "  Operation:      {} {} → {} {:?}, step {}/{}",
            op.kind, op.from, op.to, op.phase, op.step, op.steps
        );
        if op.rolling.is_some() {
            let _ = writeln!(out, "                  {}", op.message);
        }
    }
    if !st.last_failure.is_empty() {
        let _ = writeln!(out, "  Last failure:   {}", st.last_failure);
    }
    let conditions = (!st.conditions.is_empty()).then(|| {
        let mut t = super::output::table(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]);
        for c in &st.conditions {
            t.add_row(vec![
                format!("{:?}", c.kind),
                format!("{:?}", c.status),
                c.reason.clone(),
                age(Some(c.last_transition_time)),
                c.message.clone(),
            ]);
        }
        t.to_string()
    });
    section(&mut out, "Conditions", conditions, "<none>");
    let instances = (!d.instances.is_empty()).then(|| {
        let mut t = super::output::table(&[
            "NODE", "ID", "PHASE", "READY", "RESTARTS", "REVISION", "DESIRED", "AGE",
        ]);
        for (r, s) in &d.instances {
            t.add_row(vec![
                r.node.clone(),
                r.id.clone(),
                s.as_ref().map_or("-".into(), |s| s.phase.to_string()),
                s.as_ref().is_some_and(|s| s.ready).to_string(),
                s.as_ref().map_or(0, |s| s.restarts).to_string(),
                r.revision.to_string(),
                format!("{:?}", r.desired),
                age(Some(r.created_at)),
            ]);
        }
        t.to_string()
    });
    section(&mut out, "Instances", instances, "<none>");
    let mut ops: Vec<HistoryEntry> = Vec::new();
    if let Some(p) = st.operation.as_ref().filter(|p| !p.phase.is_terminal()) {
        ops.push(p.history_entry(&p.message));
    }
    ops.extend(st.history.iter().cloned());
    ops.truncate(RECENT_OPERATIONS);
    let operations = (!ops.is_empty()).then(|| {
        let mut t = super::output::table(&[
            "KIND",
            "FROM",
            "TO",
            "MODE",
            "RESULT",
            "STARTED",
            "REASON / ERROR",
        ]);
        for e in &ops {
            t.add_row(vec![
                e.kind.to_string(),
                e.from.to_string(),
                e.to.to_string(),
                e.mode.to_string(),
                e.result.to_string(),
                format!("{} ago", age(Some(e.started_at))),
                e.remarks(),
            ]);
        }
        t.to_string()
    });
    section(&mut out, "Operations", operations, "<none>");
    events_section(&mut out, &d.events);
    out
}

pub fn render_instance(d: &InstanceDescription) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    };
    let r = &d.record;
    field(&mut out, "ID", &r.id);
    field(&mut out, "Namespace", &r.namespace);
    field(&mut out, "Service", &r.service);
    let node = if d.node_registered {
        r.node.clone()
    } else {
        format!("{} (lost: not registered)", r.node)
    };
    field(&mut out, "Node", &node);
    field(&mut out, "Desired", &format!("{:?}", r.desired));
    field(&mut out, "Revision", &r.revision.to_string());
    field(&mut out, "Created", &when(Some(r.created_at)));
    if let Some(op) = &r.operation_id {
        field(&mut out, "Operation", op);
    }
    if r.node_lost {
        field(&mut out, "Node lost", "given up and replaced");
    }
    let _ = writeln!(out, "Status:");
    match &d.status {
        None => {
            let _ = writeln!(out, "  <no report from the agent yet>");
        }
        Some(s) => {
            let line = |out: &mut String, name: &str, value: String| {
                let _ = writeln!(out, "  {:<16}{value}", format!("{name}:"));
            };
            line(&mut out, "Phase", s.phase.to_string());
            line(&mut out, "Ready", s.ready.to_string());
            line(&mut out, "PID", s.pid.map_or("-".into(), |p| p.to_string()));
            let ports = s
                .ports
                .iter()
                .map(|(n, p)| format!("{n}={p}"))
                .collect::<Vec<_>>();
            let ports = match (ports.is_empty(), s.port) {
                (false, _) => ports.join(", "),
                (true, Some(p)) => p.to_string(),
                (true, None) => "-".into(),
            };
            line(&mut out, "Ports", ports);
            line(&mut out, "Restarts", s.restarts.to_string());
            line(&mut out, "Started", when(s.started_at));
            line(&mut out, "Ready since", when(s.ready_at));
            line(
                &mut out,
                "Last exit",
                s.last_exit
                    .as_ref()
                    .map_or("-".into(), |e| format!("{e} at {}", e.at)),
            );
            let probe = if s.probe_error.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} ({} readiness failures in a row)",
                    s.probe_error, s.readiness_failures
                )
            };
            line(&mut out, "Probe error", probe);
            if !s.message.is_empty() {
                line(&mut out, "Message", s.message.clone());
            }
        }
    }
    events_section(&mut out, &d.events);
    out
}

#[cfg(test)]
mod tests;
