//! One reconcile: read everything about a service at one revision, ask
//! [`plan`](super::plan) what to do, and write it — every write fenced by the
//! leader key, every record compare-and-swapped on the revision it was read at.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tracing::{debug, info, warn};

use super::election::Leadership;
use super::metrics::ControllerMetrics;
use super::nodes::NodeTracker;
use super::plan::{self, Observed, Plan, PlanConfig, RecordKind, SpecState, Unparseable};
use crate::model::{
    InstanceRecord, InstanceStatus, NodeRecord, OperationRecord, Revision, ServiceRef, SourceRef,
    StoredService, Versioned,
};
use crate::store::batch::{self, Write};
use crate::store::{Kv, Store, StoreError, op};

/// What the worker does after a reconcile (kube-runtime's `Action`).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing pending: wait for the next change (or the periodic resync).
    AwaitChange,
    /// Look again after this long (a step interval, a deadline, a grace period).
    RequeueAfter(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Someone wrote between our read and our write; read again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Our leader key is gone: stop acting.
    #[error("no longer the leader")]
    Deposed,
    /// The reconcile panicked (a bug): reported and retried with back-off, so the
    /// key is never left stuck "active" in the queue.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
}

/// Shared by all workers of one leadership term.
pub struct Context {
    pub store: Store,
    pub leadership: Arc<Leadership>,
    pub config: PlanConfig,
    pub metrics: Arc<ControllerMetrics>,
    /// Node health and records from the informer (kept across terms; a new term
    /// counts node loss from its start, see `Informer::new_term`).
    pub nodes: Arc<Mutex<NodeTracker>>,
    /// Configs' and secrets' versions, from the same watch (`sources.rs`).
    pub sources: Arc<Mutex<super::sources::SourceIndex>>,
    /// Share of nodes lost at once above which replacements pause.
    pub disruption_threshold: f64,
    /// Unparseable records already logged and counted: each key at its mod revision.
    pub unparseable_seen: Mutex<std::collections::HashSet<Versioned<String>>>,
}

impl Context {
    /// Logs and counts a record that does not parse, once per stored version (it
    /// is seen again on every reconcile of its service).
    fn first_sighting(&self, key: &str, revision: i64, kind: &'static str, error: &str) {
        let first = {
            let mut seen = self.unparseable_seen.lock().unwrap();
            if seen.len() >= 10_000 {
                // Bounded memory; at worst a record is logged once more.
                seen.clear();
            }
            seen.insert(Versioned::new(key.to_string(), revision))
        };
        if first {
            warn!(%key, revision, kind, %error, "stored record does not parse");
            self.metrics.unparseable(kind);
        }
    }
}

/// Parses a stored record; one that does not parse is collected (the planner gives
/// it its defined outcome), and logged and counted the first time it is seen.
fn parsed<T: serde::de::DeserializeOwned>(
    ctx: &Context,
    kind: RecordKind,
    kv: &Kv,
    unparseable: &mut Vec<Unparseable>,
) -> Option<T> {
    parsed_with(ctx, kind, kv, unparseable, |bytes| {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    })
}

/// [`parsed`] with the record's own parser (one that says more than serde can).
fn parsed_with<T>(
    ctx: &Context,
    kind: RecordKind,
    kv: &Kv,
    unparseable: &mut Vec<Unparseable>,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) -> Option<T> {
    match parse(&kv.value) {
        Ok(value) => Some(value),
        Err(error) => {
            ctx.first_sighting(&kv.key, kv.mod_revision, kind.as_str(), &error);
            unparseable.push(Unparseable {
                kind,
                key: kv.key.clone(),
                name: kv.key.rsplit('/').next().unwrap_or_default().to_string(),
                revision: kv.mod_revision,
                error,
            });
            None
        }
    }
}

pub async fn reconcile(ctx: &Context, key: &ServiceRef) -> Result<Action, ReconcileError> {
    let (ns, name) = (&key.namespace, &key.name);
    let (observed, endpoints) = observe(ctx, ns, name).await?;
    let plan = plan::plan(&observed, &ctx.config);
    apply(ctx, key, &observed, plan, endpoints).await
}

/// What is stored about the service, and its `endpoints/` key as read (which
/// the planner does not need: the endpoints follow from its plan).
async fn observe(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(Observed, Option<Kv>), StoreError> {
    let mut state = ctx.store.service_state_full(ns, name).await?;
    let endpoints = state.endpoints.take();
    let spec = match &state.spec {
        None => SpecState::Missing,
        Some(kv) => match StoredService::parse(&kv.key, &kv.value, ns, name).and_then(|stored| {
            stored.check_scale(&kv.key, ctx.config.max_scale)?;
            Ok(stored)
        }) {
            Ok(stored) => SpecState::Valid {
                stored: Box::new(stored),
                revision: kv.mod_revision,
            },
            Err(e) => SpecState::Invalid(e),
        },
    };
    let mut unparseable = Vec::new();
    let operation = state.operation.as_ref().and_then(|kv| {
        parsed::<OperationRecord>(ctx, RecordKind::Operation, kv, &mut unparseable)
            .map(|record| Versioned::new(record, kv.mod_revision))
    });
    let operation_revision = state.operation.as_ref().map(|kv| kv.mod_revision);
    let has_status = state.status.is_some();
    let status = state
        .status
        .as_ref()
        .and_then(|kv| parsed(ctx, RecordKind::Status, kv, &mut unparseable))
        .unwrap_or_default();
    let instances = state
        .instances
        .iter()
        .filter_map(|kv| {
            parsed_with(
                ctx,
                RecordKind::Instance,
                kv,
                &mut unparseable,
                InstanceRecord::parse,
            )
            .map(|record| Versioned::new(record, kv.mod_revision))
        })
        .collect::<Vec<_>>();
    let statuses = state
        .instance_statuses
        .iter()
        .filter_map(|kv| {
            parsed::<InstanceStatus>(ctx, RecordKind::InstanceStatus, kv, &mut unparseable)
        })
        .map(|s| (s.id.clone(), s))
        .collect();
    let revisions = state
        .revisions
        .iter()
        .filter_map(|kv| {
            parsed::<Revision>(ctx, RecordKind::Revision, kv, &mut unparseable)
                .map(|revision| Versioned::new(revision, kv.mod_revision))
        })
        .collect();
    // The nodes come from the leader's watch (the tracker), not from this read:
    // a reconcile reads its own service's keys only, however many nodes there are.
    // They may trail this read by a few events; placement on a node that just
    // went away is then a lost node's instance, handled as one.
    let nodes: BTreeMap<String, NodeRecord> = ctx.nodes.lock().unwrap().records();
    // Cordoned and draining nodes, from the same watch.
    let node_states = ctx.nodes.lock().unwrap().states();
    // The tracker's verdict, narrowed to the nodes this service's records name.
    let health = ctx
        .nodes
        .lock()
        .unwrap()
        .health(tokio::time::Instant::now(), ctx.disruption_threshold);
    let node_lost_for = instances
        .iter()
        .map(|instance| &instance.value)
        .filter(|record| !nodes.contains_key(&record.node))
        .map(|record| {
            let lost = health
                .lost_for
                .get(&record.node)
                .copied()
                .unwrap_or_default();
            (record.node.clone(), lost)
        })
        .collect();
    let source_versions = source_versions(ctx, ns, &spec, &statuses);
    let observed = Observed {
        source_versions,
        spec,
        operation,
        status,
        has_status,
        instances,
        statuses,
        revisions,
        nodes,
        node_states,
        node_lost_for,
        disruption: health.disrupted,
        operation_revision,
        unparseable,
        now: Timestamp::now(),
    };
    Ok((observed, endpoints))
}

/// The current version of every config and secret the spec or a running
/// instance names, from the informer's watch (metadata only; the controller never
/// decrypts): no etcd request. A change of one re-enqueues its users, so a version
/// the watch has not delivered yet is caught up on that reconcile.
fn source_versions(
    ctx: &Context,
    ns: &str,
    spec: &SpecState,
    statuses: &std::collections::HashMap<String, InstanceStatus>,
) -> BTreeMap<String, Option<u64>> {
    let mut refs: std::collections::BTreeSet<SourceRef> = match spec {
        SpecState::Valid { stored, .. } => stored.service.sources(),
        _ => Default::default(),
    };
    refs.extend(
        statuses
            .values()
            .flat_map(|s| s.sources.keys())
            .filter_map(|s| SourceRef::parse(s)),
    );
    if refs.is_empty() {
        return BTreeMap::new();
    }
    let index = ctx.sources.lock().unwrap();
    refs.into_iter()
        .map(|r| (r.to_string(), index.version(ns, &r)))
        .collect()
}

async fn apply(
    ctx: &Context,
    key: &ServiceRef,
    o: &Observed,
    plan: Plan,
    endpoints: Option<Kv>,
) -> Result<Action, ReconcileError> {
    let (ns, name) = (key.namespace.as_str(), key.name.as_str());
    let k = ctx.store.keys();
    let mut writes: Vec<Write> = Vec::new();
    // The endpoints before any record that says Stopped: an instance leaves them
    // before its agent learns it must stop (see `controller::endpoints`).
    let endpoints_key = k.endpoints_of(ns, name);
    // A service without a spec gets no new key (one already purged must not come
    // back as a stray key); an existing key follows it down to empty.
    let gone = matches!(o.spec, SpecState::Missing) && endpoints.is_none();
    if !plan.purge && !gone {
        let list = super::endpoints::compute(o, &plan);
        let current = endpoints.as_ref().map(|kv| kv.value.as_slice());
        if let Some(next) = super::endpoints::change(ns, name, current, list, o.now) {
            let read_at = endpoints.as_ref().map_or(0, |kv| kv.mod_revision);
            writes.push(Write::put_json(&endpoints_key, &next).if_mod_rev(&endpoints_key, read_at));
        }
    }
    // The revision first: transactions commit in order, so no record names a
    // revision that is not stored yet.
    if let Some(new) = &plan.new_revision {
        let key = k.revision(ns, name, new.revision);
        writes.push(Write::put_json(&key, new).if_absent(&key));
    }
    // Each instance record and its node-scoped copy for the agent
    // (`assignments/<node>/…`) change together, in one transaction.
    for rec in &plan.create {
        let key = k.instance(ns, name, &rec.id);
        let copy = k.assignment(&rec.node, ns, name, &rec.id);
        writes.push(
            Write::put_json(&key, rec)
                .if_absent(&key)
                .and(Write::put_json(&copy, rec)),
        );
    }
    for stopped in &plan.stop {
        let rec = &stopped.value;
        let key = k.instance(ns, name, &rec.id);
        let copy = k.assignment(&rec.node, ns, name, &rec.id);
        writes.push(
            Write::put_json(&key, rec)
                .if_mod_rev(&key, stopped.revision)
                .and(Write::put_json(&copy, rec)),
        );
    }
    let node_of: BTreeMap<&str, &str> = o
        .instances
        .iter()
        .map(|i| (i.value.id.as_str(), i.value.node.as_str()))
        .collect();
    for removed in &plan.remove {
        let key = k.instance(ns, name, &removed.value);
        let mut write = Write::delete(&key).if_mod_rev(&key, removed.revision);
        match node_of.get(removed.value.as_str()) {
            Some(node) => {
                write = write.and(Write::delete(&k.assignment(node, ns, name, &removed.value)))
            }
            // A record that does not parse names no node we can read: look for
            // its copy under every node (rare: a record damaged by hand).
            None => {
                for copy in assignment_copies(ctx, ns, name, &removed.value).await? {
                    write = write.and(Write::delete(&copy));
                }
            }
        }
        writes.push(write);
    }
    for old in &plan.prune_revisions {
        let key = k.revision(ns, name, old.value);
        writes.push(Write::delete(&key).if_mod_rev(&key, old.revision));
    }
    // Instance intent first (in transactions bounded by count and bytes), then the
    // status and spec that describe it, together, in the last transaction.
    let mut last = Write::default();
    if let Some(rollback) = &plan.rollback {
        let key = k.service(ns, name);
        last = last
            .and(Write::put(&key, rollback.value.to_json()).if_mod_rev(&key, rollback.revision));
    }
    let status_key = k.status(ns, name);
    if plan.purge {
        let spec_rev = match &o.spec {
            SpecState::Valid { revision, .. } => Some(*revision),
            _ => None,
        };
        // Nothing may have been (re)created since we read: a cast that lands in
        // between must not be wiped (revision 0: the key must still be absent).
        let spec_key = k.service(ns, name);
        let op_key = k.operation(ns, name);
        last = last
            .and(Write::delete(&spec_key).if_mod_rev(&spec_key, spec_rev.unwrap_or(0)))
            .and(Write::delete(&op_key).if_mod_rev(&op_key, o.operation_revision.unwrap_or(0)))
            .and(Write::delete(&status_key))
            .and(Write::delete(&endpoints_key))
            // Controller-owned and run by no instance any more (none is left).
            .and(Write::delete_prefix(&k.revisions_of(ns, name)));
    } else if plan.status != o.status {
        // The status says how operations ended: it may only be written while the
        // operation record is still the one it was decided from. A CLI that sees a
        // newer record before our verdict lands concludes "superseded"; recording
        // the old operation as Succeeded after that would contradict it. So a
        // record written meanwhile fails this write, and we decide again
        // (revision 0: the record must still be absent).
        let op_key = k.operation(ns, name);
        last = last.and(
            Write::put_json(&status_key, &plan.status)
                .if_mod_rev(&op_key, o.operation_revision.unwrap_or(0)),
        );
    }
    writes.push(last);
    let txns = batch::split(writes);
    let batches = txns.len();
    for txn in txns {
        commit(ctx, txn).await?;
    }
    crate::events::record_all(super::events::from_plan(ns, name, o, &plan));
    if !plan.create.is_empty() || !plan.stop.is_empty() || plan.rollback.is_some() || plan.purge {
        info!(
            service = %key,
            revision = plan.new_revision.as_ref().map(|r| r.revision),
            created = plan.create.len(),
            stopping = plan.stop.len(),
            removed = plan.remove.len(),
            rolled_back = plan.rollback.is_some(),
            purged = plan.purge,
            desired = plan.status.desired_replicas,
            "reconciled"
        );
    } else {
        debug!(service = %key, batches, "reconciled, nothing to do");
    }
    if plan.purge {
        return Ok(Action::AwaitChange);
    }
    Ok(match plan.requeue_after {
        Some(d) => Action::RequeueAfter(d),
        None => Action::AwaitChange,
    })
}

/// The keys of every node-scoped copy of one instance record, whatever node they
/// are under (a keys-only scan of `assignments/`).
async fn assignment_copies(
    ctx: &Context,
    ns: &str,
    name: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let k = ctx.store.keys();
    let suffix = format!("/{ns}/{name}/{id}");
    let keys = ctx.store.list_keys(&k.assignments()).await?;
    Ok(keys
        .into_iter()
        .filter(|key| key.ends_with(&suffix))
        .collect())
}

/// One fenced transaction: applies only while we lead and every record is as read.
async fn commit(ctx: &Context, txn: Write) -> Result<(), ReconcileError> {
    let (guards, ops) = txn.into_parts();
    let mut compares = vec![ctx.leadership.fence()];
    compares.extend(guards);
    let leader_key = ctx.leadership.key.clone();
    let res = ctx
        .store
        .txn(compares, ops, vec![op::get(&leader_key)])
        .await?;
    if res.succeeded {
        return Ok(());
    }
    let still_leader = res
        .ranges
        .first()
        .and_then(|r| r.first())
        .is_some_and(|kv| kv.create_revision == ctx.leadership.create_revision);
    if !still_leader {
        return Err(ReconcileError::Deposed);
    }
    Err(ReconcileError::Conflict(
        "a record changed since it was read".into(),
    ))
}
