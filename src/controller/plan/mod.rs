//! The reconciler's brain, as a pure function: from everything stored about one
//! service (read at one revision) to the writes that move it one step closer to
//! what was asked. No I/O, no clocks: `now` comes in, so every rule is unit-tested.
//!
//! [`plan`] is the table of contents; each concern has its own file, the way
//! Nomad's reconciler is split:
//! - `census`: sorts the instance records by what must happen to them and removes
//!   the finished ones; every other concern counts from it.
//! - `operation`: the scale state machine: take up an operation, step it, hold the
//!   interval, succeed, roll back, pin or supersede. Its progress lives in
//!   `status.operation`, so a new leader resumes where the old one was. The
//!   arithmetic of a plan (steps, targets, timeouts) is `model::operation`'s,
//!   shared with the CLI.
//! - `health`: when the instances of a step count as failing their health checks.
//! - `placement`: which nodes new instances go to, which instances a scale-down stops.
//! - `conditions`: the replica counts, the conditions and the stable scale.
//! - `deletion`: a service being deleted: stop everything, then purge its keys.
//! - `revisions`: the spec revisions instances run (create on change, keep the last
//!   ten and those still run).
//! - `records`: stored records that do not parse, and their defined outcomes.
//! - `rolling`: rolling restarts and rollouts: batches bounded by maxSurge and
//!   maxUnavailable, health-gated, rolled back or paused on failure.
//! - `stale`: instances that run older configs or secrets than the current ones.

mod census;
mod conditions;
mod deletion;
mod health;
mod operation;
mod placement;
mod records;
mod revisions;
mod rolling;
mod stale;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use crate::model::{
    InstanceRecord, InstanceStatus, NodeRecord, NodeState, OperationRecord, Revision, ServiceSpec,
    ServiceStatus, SpecError, StoredService, Versioned,
};
use census::Census;
pub use records::{RecordKind, Unparseable};

/// The stored spec as the controller sees it.
#[derive(Debug, Clone)]
pub enum SpecState {
    /// No spec key: the service was removed by other means; its instances go too.
    Missing,
    Invalid(SpecError),
    Valid {
        stored: Box<StoredService>,
        revision: i64,
    },
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub spec: SpecState,
    pub operation: Option<Versioned<OperationRecord>>,
    /// The operation key's mod revision, also when its value does not parse (a
    /// purge must not delete an operation written after the read).
    pub operation_revision: Option<i64>,
    pub status: ServiceStatus,
    /// Whether a status key exists (`status` is the zero value when not).
    pub has_status: bool,
    pub instances: Vec<Versioned<InstanceRecord>>,
    pub statuses: HashMap<String, InstanceStatus>,
    /// The service's spec revisions that parse, at their keys' mod revisions.
    pub revisions: Vec<Versioned<Revision>>,
    /// Nodes whose lease is alive.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The operator's node states (`node-state/<node>`): cordoned or draining nodes
    /// take no new instances. A node without one is schedulable.
    pub node_states: HashMap<String, NodeState>,
    /// For nodes that are gone: how long they have been gone (as far as we know).
    pub node_lost_for: HashMap<String, Duration>,
    /// Set when too many nodes are lost at once to be machine failures (see
    /// `controller::nodes`): nothing is replaced meanwhile. Says why.
    pub disruption: Option<String>,
    /// Stored records that do not parse; see `records` for what becomes of them.
    pub unparseable: Vec<Unparseable>,
    pub now: Timestamp,
    /// The current version of each config and secret (`"secret/db"`) the spec or
    /// an instance status names; `None`: not stored (any more). For `Stale`.
    pub source_versions: BTreeMap<String, Option<u64>>,
}

impl Observed {
    /// The spec an instance runs: its revision's. `None` when that revision is
    /// gone or does not parse (the instance's agent reports it failed).
    pub fn spec_of(&self, record: &InstanceRecord) -> Option<&ServiceSpec> {
        self.revisions
            .iter()
            .find(|r| r.value.revision == record.revision)
            .map(|r| &r.value.spec)
    }

    /// Whether any revision key exists (parsed or not): a purge must remove them.
    fn has_revisions(&self) -> bool {
        !self.revisions.is_empty()
            || self
                .unparseable
                .iter()
                .any(|bad| bad.kind == RecordKind::Revision)
    }
}

#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// How long a node may be gone before its instances are replaced elsewhere.
    pub node_lost_grace: Duration,
    pub new_id: fn(&str) -> String,
    /// `--max-scale`: a spec asking more is `SpecInvalid` (checked where the spec
    /// is read, in reconcile's `observe`).
    pub max_scale: u32,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// A new spec revision, written before the records that name it.
    pub new_revision: Option<Revision>,
    /// Revisions to delete (CAS on their revision): past the last ten, run by none.
    pub prune_revisions: Vec<Versioned<u64>>,
    pub create: Vec<InstanceRecord>,
    /// Records to rewrite with `desired: Stopped` (CAS on their revision).
    pub stop: Vec<Versioned<InstanceRecord>>,
    /// Records to delete: each instance's id, at the revision it was read at.
    pub remove: Vec<Versioned<String>>,
    pub status: ServiceStatus,
    /// Roll the spec back: the new stored spec, with the spec key's revision to
    /// compare against (the spec the failed operation ran, as read; a spec written
    /// since is never overwritten).
    pub rollback: Option<Versioned<StoredService>>,
    /// Every instance is gone and the service is being deleted: remove its keys
    /// (its revisions too).
    pub purge: bool,
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Asks to look again within `after` (the earliest of all such asks wins).
    fn requeue(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(50));
        self.requeue_after = Some(
            self.requeue_after
                .map_or(after, |earlier| earlier.min(after)),
        );
    }
}

/// How long an instance that ended for good keeps its slot before it is replaced,
/// after `failures` such instances in a row: 10 s doubling to 5 min (Kubernetes'
/// CrashLoopBackOff), so a command that fails at once never turns into a tight
/// create/delete loop, nor a log file every few seconds.
pub fn replace_after(failures: u32) -> Duration {
    Duration::from_secs(10)
        .saturating_mul(2u32.saturating_pow(failures.min(5)))
        .min(MAX_REPLACE_AFTER)
}

/// The longest replacement back-off.
pub const MAX_REPLACE_AFTER: Duration = Duration::from_secs(300);

/// How long a stopped record whose agent never reported on it is kept.
pub const UNREPORTED_GRACE: Duration = Duration::from_secs(60);

/// The time from `now` until `then`; zero when `then` has passed.
fn until(now: Timestamp, then: Timestamp) -> Duration {
    then.duration_since(now)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

/// What to write for one service, given everything `observed` about it.
pub fn plan(observed: &Observed, cfg: &PlanConfig) -> Plan {
    let mut plan = Plan {
        status: observed.status.clone(),
        ..Plan::default()
    };
    let census = Census::take(observed, cfg, &mut plan);
    match &observed.spec {
        SpecState::Invalid(error) => {
            // Leave every instance exactly as it is; only report.
            plan.stop.clear();
            plan.remove.clear();
            let why = error.to_string();
            conditions::spec_invalid(observed, &why, &mut plan.status);
            conditions::count_replicas(observed, &census, &mut plan.status);
            operation::fail_at_deadline(observed, &why, &mut plan);
        }
        SpecState::Missing => deletion::terminate(observed, &census, &mut plan),
        SpecState::Valid { stored, .. } if stored.deletion_timestamp.is_some() => {
            deletion::terminate(observed, &census, &mut plan)
        }
        SpecState::Valid { stored, revision } => {
            conditions::spec_valid(observed, *revision, &mut plan.status);
            let current = revisions::current(observed, stored, *revision, &mut plan);
            operation::take_up(
                observed,
                &census,
                stored,
                *revision,
                current,
                &mut plan.status,
            );
            let target = operation::advance(observed, &census, stored, *revision, &mut plan);
            let rolling_op = plan
                .status
                .operation
                .as_ref()
                .filter(|op| op.rolling.is_some());
            if rolling_op.is_some_and(|op| !op.phase.is_terminal()) {
                rolling::converge(observed, cfg, &census, stored, current, &mut plan);
            } else if rolling_op.is_none() || plan.rollback.is_none() {
                // (A rolled-back rollout's spec write comes first: the next look
                // rolls the previous revision out.)
                placement::converge(observed, cfg, &census, stored, current, target, &mut plan);
            }
            revisions::prune(observed, &mut plan);
            conditions::count_replicas(observed, &census, &mut plan.status);
            conditions::node_lost(observed, &census, &mut plan.status);
            conditions::settle(observed, &mut plan);
            conditions::failing(observed, &mut plan.status);
            rolling::report(observed, &census, stored, current, &mut plan.status);
            stale::stale(observed, &census, &mut plan.status);
        }
    }
    records::report(observed, &mut plan);
    plan
}

#[cfg(test)]
mod tests;
