//! The reconciler's brain, as a pure function: from everything stored about one
//! service (read at one revision) to the writes that move it one step closer to
//! what was asked. No I/O, no clocks: `now` comes in, so every rule is unit-tested.
//!
//! The scale state machine lives here too: operations advance step by step with
//! their progress in `status.operation`, so a new leader resumes where the old
//! one was.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use crate::model::duration;
use crate::model::{
    ConditionKind, ConditionStatus, DesiredState, InstanceRecord, InstanceStatus, NodeRecord,
    OperationKind, OperationPhase, OperationProgress, OperationRecord, Phase, ScalePlan,
    ServiceStatus, SpecError, StoredService,
};

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
    pub operation: Option<(OperationRecord, i64)>,
    pub status: ServiceStatus,
    /// Whether a status key exists (`status` is the zero value when not).
    pub has_status: bool,
    pub instances: Vec<(InstanceRecord, i64)>,
    pub statuses: HashMap<String, InstanceStatus>,
    /// Nodes whose lease is alive.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// For nodes that are gone: how long they have been gone (as far as we know).
    pub node_lost_for: HashMap<String, Duration>,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// How long a node may be gone before its instances are replaced elsewhere.
    pub node_lost_grace: Duration,
    pub new_id: fn(&str) -> String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<InstanceRecord>,
    /// Records to rewrite with `desired: Stopped` (CAS on their revision).
    pub stop: Vec<(InstanceRecord, i64)>,
    /// Records to delete: `(id, revision)`.
    pub remove: Vec<(String, i64)>,
    pub status: ServiceStatus,
    /// Roll the spec back: the new stored spec and the revision to compare against.
    pub rollback: Option<(StoredService, i64)>,
    /// Every instance is gone and the service is being deleted: remove its keys.
    pub purge: bool,
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn requeue(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(50));
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// How long an instance that ended for good keeps its slot before it is replaced.
pub const REPLACE_AFTER: Duration = Duration::from_secs(5);

/// How long a stopped record whose agent never reported on it is kept.
pub const UNREPORTED_GRACE: Duration = Duration::from_secs(60);

fn until(now: Timestamp, then: Timestamp) -> Duration {
    then.duration_since(now)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

/// Instances sorted by what the controller must do with them.
struct Census<'a> {
    /// `desired: Running` and still counted: up, coming up, or on a node that has
    /// not been gone for the grace period yet.
    active: Vec<(&'a InstanceRecord, i64)>,
    /// Every record that still exists after this plan's removals.
    remaining: usize,
    /// Ended for good (Exited/Failed), with why: for health gating.
    ended: Vec<(&'a InstanceRecord, String)>,
}

pub fn plan(o: &Observed, cfg: &PlanConfig) -> Plan {
    let mut p = Plan {
        status: o.status.clone(),
        ..Plan::default()
    };
    let census = census(o, cfg, &mut p);
    match &o.spec {
        SpecState::Invalid(e) => {
            // Leave every instance exactly as it is; only report.
            p.stop.clear();
            p.remove.clear();
            let msg = e.to_string();
            p.status.set_condition(
                ConditionKind::SpecInvalid,
                ConditionStatus::True,
                "ParseError",
                &msg,
                o.now,
            );
            count(o, &census, &mut p.status);
            // The operation cannot go on, but its deadline still holds.
            let st = &mut p.status;
            if let Some(mut op) = st.operation.clone().filter(|op| !op.phase.is_terminal()) {
                if o.now >= op.deadline {
                    op.phase = OperationPhase::Failed;
                    op.finished_at = Some(o.now);
                    op.message =
                        format!("failed: the spec became invalid and the deadline passed: {msg}");
                    st.last_scale_at = Some(o.now);
                    st.last_scale_reason = op.message.clone();
                    st.record_history(&op, &msg);
                    st.operation = Some(op);
                } else {
                    p.requeue(until(o.now, op.deadline));
                }
            }
        }
        SpecState::Missing => terminate(o, &census, &mut p),
        SpecState::Valid { stored, .. } if stored.deletion_timestamp.is_some() => {
            terminate(o, &census, &mut p)
        }
        SpecState::Valid { stored, revision } => {
            p.status.observed_generation = *revision;
            p.status.first_seen_at.get_or_insert(o.now);
            p.status.set_condition(
                ConditionKind::SpecInvalid,
                ConditionStatus::False,
                "Valid",
                "",
                o.now,
            );
            let ready: Vec<String> = census
                .active
                .iter()
                .filter(|(r, _)| o.statuses.get(&r.id).is_some_and(|s| s.ready))
                .map(|(r, _)| r.id.clone())
                .collect();
            take_up_operations(o, stored, *revision, &ready, &mut p.status);
            let target = advance(o, &census, stored, *revision, &mut p);
            converge(o, cfg, &census, stored, *revision, target, &mut p);
            count(o, &census, &mut p.status);
            settle(o, &mut p);
        }
    }
    p
}

fn census<'a>(o: &'a Observed, cfg: &PlanConfig, p: &mut Plan) -> Census<'a> {
    let mut c = Census {
        active: vec![],
        remaining: 0,
        ended: vec![],
    };
    for (rec, rev) in &o.instances {
        let st = o.statuses.get(&rec.id);
        let node_alive = o.nodes.contains_key(&rec.node);
        if rec.desired == DesiredState::Stopped {
            // Gone once its agent reports the process ended (the agent reports
            // Exited for every stopped record, started or not), or its node is gone
            // (a returning agent stops processes that have no record). A record the
            // agent never reported on is given up after UNREPORTED_GRACE.
            let ended = match st {
                Some(s) => !s.phase.is_live(),
                None => o.now >= duration::add(rec.created_at, UNREPORTED_GRACE),
            };
            if ended || !node_alive {
                p.remove.push((rec.id.clone(), *rev));
            } else {
                c.remaining += 1;
            }
            continue;
        }
        if !node_alive {
            let lost = o.node_lost_for.get(&rec.node).copied().unwrap_or_default();
            if lost >= cfg.node_lost_grace {
                p.remove.push((rec.id.clone(), *rev));
                continue;
            }
            p.requeue(cfg.node_lost_grace - lost);
        }
        if let Some(s) = st
            && matches!(s.phase, Phase::Exited | Phase::Failed)
        {
            let how = s
                .last_exit
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "ended".into());
            let why = format!(
                "instance {} {}: {how}",
                rec.id,
                if s.ready_at.is_none() {
                    "exited before it was ready"
                } else {
                    "exited"
                }
            );
            c.ended.push((rec, why));
            // An instance its agent will not restart (policy Never/OnFailure) is
            // replaced, but not before REPLACE_AFTER: a command that fails at once
            // must not turn into a tight create/delete loop.
            let ended_at = s.last_exit.as_ref().map(|e| e.at).unwrap_or(o.now);
            let replace_at = duration::add(ended_at, REPLACE_AFTER);
            if o.now >= replace_at {
                p.remove.push((rec.id.clone(), *rev));
                continue;
            }
            p.requeue(until(o.now, replace_at));
        }
        c.active.push((rec, *rev));
        c.remaining += 1;
    }
    c
}

/// A service that is being deleted (or whose spec key vanished): stop everything,
/// then purge its keys.
fn terminate(o: &Observed, c: &Census, p: &mut Plan) {
    let spec_exists = !matches!(o.spec, SpecState::Missing);
    if !spec_exists && o.instances.is_empty() && o.operation.is_none() && !o.has_status {
        // Already purged (an event about its last keys brought us here): writing
        // a status now would bring a deleted service back as a stray key.
        return;
    }
    for (rec, rev) in &c.active {
        let mut r = (*rec).clone();
        r.desired = DesiredState::Stopped;
        p.stop.push((r, *rev));
    }
    p.status.desired_replicas = 0;
    p.status.set_condition(
        ConditionKind::Terminating,
        ConditionStatus::True,
        "Deleting",
        &format!("stopping {} instance(s)", c.remaining),
        o.now,
    );
    count(o, c, &mut p.status);
    if c.remaining == 0 {
        p.purge = spec_exists || o.operation.is_some() || o.has_status;
    } else {
        p.requeue(Duration::from_secs(2));
    }
}

/// Starts the operation a CLI wrote, or the one a spec write implies (GitOps).
fn take_up_operations(
    o: &Observed,
    stored: &StoredService,
    revision: i64,
    ready: &[String],
    st: &mut ServiceStatus,
) {
    if let Some((rec, rev)) = &o.operation
        && *rev > st.observed_operation
        // Never run an old restart again (e.g. after the status was lost).
        && !rec.expired(o.now)
    {
        st.observed_operation = *rev;
        let reason = rec.reason();
        let progress = start(rec, *rev, st.current_replicas, ready, o.now);
        begin(st, progress, reason, o.now);
    }
    let scale = stored.service.desired_scale();
    if scale != st.desired_replicas {
        // A spec write changed `scale` without an operation record: run it with the
        // spec's `scaling:` defaults, as if it had been asked for with those flags.
        let d = stored.service.scaling_defaults();
        let plan = ScalePlan {
            mode: d.mode,
            from: st.desired_replicas,
            to: scale,
            step: d.step,
            interval: d.interval,
        };
        let implied = OperationRecord {
            id: format!("spec-{revision}"),
            kind: OperationKind::Scale,
            from: st.desired_replicas,
            to: scale,
            mode: d.mode,
            step: d.step,
            interval: d.interval,
            rollback_on_fail: d.rollback_on_fail,
            timeout: plan.default_timeout(),
            requested_at: o.now,
            requested_by: "spec".into(),
            reason: String::new(),
        };
        let reason = if o.status.observed_generation == 0 {
            format!("spec change: service created with scale {scale}")
        } else {
            format!(
                "spec change: scale {} -> {scale} (spec revision {revision})",
                st.desired_replicas
            )
        };
        let progress = start(&implied, revision, st.current_replicas, ready, o.now);
        begin(st, progress, reason, o.now);
    }
}

/// The progress record of an operation that starts now from `current` instances,
/// `ready` of them ready.
fn start(
    rec: &OperationRecord,
    spec_revision: i64,
    current: u32,
    ready: &[String],
    now: Timestamp,
) -> OperationProgress {
    OperationProgress {
        id: rec.id.clone(),
        kind: rec.kind,
        phase: OperationPhase::Progressing,
        from: current,
        to: rec.to,
        mode: rec.mode,
        step_size: rec.step.max(1),
        interval: rec.interval,
        rollback_on_fail: rec.rollback_on_fail,
        requested_by: rec.requested_by.clone(),
        reason: rec.reason.clone(),
        step: 0,
        steps: 0,
        step_target: 0,
        step_started_at: None,
        step_ready_at: None,
        started_at: now,
        deadline: rec.deadline(current, now),
        finished_at: None,
        message: "starting".into(),
        spec_revision,
        superseded_by: None,
        ready_at_start: ready.to_vec(),
    }
}

/// Makes `progress` the current operation, superseding a running one.
fn begin(st: &mut ServiceStatus, progress: OperationProgress, reason: String, now: Timestamp) {
    if let Some(mut old) = st.operation.take()
        && !old.phase.is_terminal()
    {
        old.phase = OperationPhase::Superseded;
        old.superseded_by = Some(progress.id.clone());
        old.message = format!("superseded by {} ({})", progress.id, reason);
        old.finished_at = Some(now);
        st.record_history(&old, &old.message.clone());
    }
    st.desired_replicas = progress.to;
    st.last_scale_at = Some(now);
    st.last_scale_reason = reason;
    st.operation = Some(progress);
}

/// Advances the running operation, if any; returns the instance count to converge to.
fn advance(o: &Observed, c: &Census, stored: &StoredService, revision: i64, pl: &mut Plan) -> u32 {
    let st = &mut pl.status;
    let Some(mut p) = st.operation.clone().filter(|p| !p.phase.is_terminal()) else {
        return st.desired_replicas;
    };
    if p.step == 0 {
        p.steps = p.step_count();
        p.step = 1;
        p.step_target = p.target_of(1);
        p.step_started_at = Some(o.now);
    }
    let ready = ready_count(o, c);
    let mut wake = None;
    let outcome = 'step: {
        if o.now >= p.deadline {
            break 'step Err(format!(
                "timed out at step {} of {}: {ready} of {} instances ready",
                p.step, p.steps, p.step_target
            ));
        }
        if let Some(why) = health_failure(o, c, &p) {
            break 'step Err(why);
        }
        let complete = c.remaining as u32 == p.step_target && ready == p.step_target;
        if !complete {
            p.message = progress_message(&p, c.remaining as u32, ready);
            wake = Some(until(o.now, p.deadline));
            break 'step Ok(());
        }
        let ready_at = *p.step_ready_at.get_or_insert(o.now);
        if p.step >= p.steps {
            p.phase = OperationPhase::Succeeded;
            p.finished_at = Some(o.now);
            p.message = format!("{} ready", p.to);
            break 'step Ok(());
        }
        // None only when the hold runs past the calendar's end: then do not wait.
        let next_at = p.next_step_at().unwrap_or(ready_at);
        if o.now < next_at {
            p.message = format!(
                "step {} of {} done ({} ready); next step in {}",
                p.step,
                p.steps,
                ready,
                crate::model::duration::format(Duration::from_secs(
                    until(o.now, next_at).as_secs_f64().ceil() as u64
                ))
            );
            wake = Some(until(o.now, next_at));
            break 'step Ok(());
        }
        p.step += 1;
        p.step_target = p.target_of(p.step);
        p.step_started_at = Some(o.now);
        p.step_ready_at = None;
        p.message = progress_message(&p, c.remaining as u32, ready);
        wake = Some(Duration::from_millis(50));
        break 'step Ok(());
    };
    let target = match outcome {
        Ok(()) => {
            if p.phase == OperationPhase::Succeeded {
                st.record_history(&p, "");
            }
            if p.phase.is_terminal() {
                st.desired_replicas
            } else {
                p.step_target
            }
        }
        Err(why) => fail(o, stored, revision, &mut p, st, &mut pl.rollback, why),
    };
    st.operation = Some(p);
    if let Some(d) = wake {
        pl.requeue(d);
    }
    target
}

fn progress_message(p: &OperationProgress, current: u32, ready: u32) -> String {
    let what = match (p.kind, p.step) {
        (OperationKind::Restart, 1) => "stopping every instance".to_string(),
        (OperationKind::Restart, _) => format!("starting {} instance(s)", p.to),
        _ => format!("scaling to {}", p.step_target),
    };
    format!(
        "step {} of {}: {what}: {current} current, {ready} ready",
        p.step, p.steps
    )
}

/// Ends an operation that failed health checks or its deadline: roll back, pin, or
/// (when the spec changed since) report it superseded. Returns the count to converge to.
fn fail(
    o: &Observed,
    stored: &StoredService,
    revision: i64,
    p: &mut OperationProgress,
    st: &mut ServiceStatus,
    rollback: &mut Option<(StoredService, i64)>,
    why: String,
) -> u32 {
    p.finished_at = Some(o.now);
    // Only back to a scale at which every instance was once ready: a new service
    // that never got there is pinned (Failed), not rolled back to 0.
    let stable = st.stable_replicas.unwrap_or(p.to);
    let can_roll_back = p.rollback_on_fail && p.kind == OperationKind::Scale && stable != p.to;
    if can_roll_back && revision != p.spec_revision {
        p.phase = OperationPhase::Superseded;
        p.message = format!("{why}; not rolled back: the spec changed since (revision {revision})");
        st.record_history(p, &why);
        return st.desired_replicas;
    }
    if can_roll_back {
        let mut back = stored.clone();
        back.service.scale = Some(stable);
        *rollback = Some((back, p.spec_revision));
        p.phase = OperationPhase::RolledBack;
        p.message = format!("rolled back to {stable}: {why}");
        st.desired_replicas = stable;
        st.last_scale_at = Some(o.now);
        st.last_scale_reason = p.message.clone();
        st.record_history(p, &why);
        return stable;
    }
    p.phase = OperationPhase::Failed;
    p.message = format!("failed: {why}; keeping {} (no rollback)", p.to);
    st.last_scale_at = Some(o.now);
    st.last_scale_reason = p.message.clone();
    st.record_history(p, &why);
    st.desired_replicas
}

fn ready_count(o: &Observed, c: &Census) -> u32 {
    c.active
        .iter()
        .filter(|(r, _)| {
            o.nodes.contains_key(&r.node) && o.statuses.get(&r.id).is_some_and(|s| s.ready)
        })
        .count() as u32
}

/// The contract's "fails health checks": one of the step's instances exits before
/// it is ready, reaches failureThreshold consecutive readiness failures, or turns
/// unready while the operation runs. Judged are the instances this operation
/// created and those that were ready when it started — never ones that were already
/// unready, and never ones the step removes anyway.
fn health_failure(o: &Observed, c: &Census, p: &OperationProgress) -> Option<String> {
    let created = |r: &InstanceRecord| r.operation_id.as_deref() == Some(p.id.as_str());
    let was_ready = |r: &InstanceRecord| p.ready_at_start.contains(&r.id);
    let leaving = victims(o, c, c.active.len().saturating_sub(p.step_target as usize));
    let leaves = |r: &InstanceRecord| leaving.iter().any(|(v, _)| v.id == r.id);
    for (rec, why) in &c.ended {
        // An ended instance still holding its slot is in `active`; one already
        // removed only matters while the step still wants instances.
        let removed = !c.active.iter().any(|(a, _)| a.id == rec.id);
        if (created(rec) || was_ready(rec)) && !leaves(rec) && !(removed && p.step_target == 0) {
            return Some(why.clone());
        }
    }
    for (rec, _) in &c.active {
        if leaves(rec) {
            continue;
        }
        let Some(s) = o.statuses.get(&rec.id) else {
            continue;
        };
        if created(rec) && s.restarts > 0 && s.ready_at.is_none() {
            let how = s
                .last_exit
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "ended".into());
            return Some(format!(
                "instance {} exited before it was ready: {how}",
                rec.id
            ));
        }
        if let Some(probe) = &rec.spec.health.readiness
            && created(rec)
            && !s.ready
            && s.readiness_failures >= probe.failure_threshold
        {
            return Some(format!(
                "instance {} failed its {} readiness probe {} times: {}",
                rec.id, probe.kind, s.readiness_failures, s.probe_error
            ));
        }
        if !s.ready && ((created(rec) && s.ready_at.is_some()) || was_ready(rec)) {
            let why = if s.probe_error.is_empty() {
                s.last_exit
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| format!("phase {}", s.phase))
            } else {
                s.probe_error.clone()
            };
            return Some(format!("instance {} turned unready: {why}", rec.id));
        }
    }
    None
}

/// Creates or stops instances until `target` are active.
fn converge(
    o: &Observed,
    cfg: &PlanConfig,
    c: &Census,
    stored: &StoredService,
    revision: i64,
    target: u32,
    p: &mut Plan,
) {
    let active = c.active.len() as u32;
    if active > target {
        for (rec, rev) in victims(o, c, (active - target) as usize) {
            let mut r = rec.clone();
            r.desired = DesiredState::Stopped;
            p.stop.push((r, rev));
        }
        p.requeue(Duration::from_secs(5));
    }
    if active < target {
        let want = (target - active) as usize;
        // A pinned port can be bound once per host: one instance per node then.
        let one_per_node = stored.service.ports.iter().any(|p| p.port.is_some());
        let placed = place(o, c, want, one_per_node);
        let op_id = p
            .status
            .operation
            .as_ref()
            .filter(|op| !op.phase.is_terminal())
            .map(|op| op.id.clone());
        for node in &placed {
            let mut spec = stored.service.clone();
            spec.scale = None;
            p.create.push(InstanceRecord {
                id: (cfg.new_id)(stored.service.name()),
                namespace: stored.service.namespace().to_string(),
                service: stored.service.name().to_string(),
                node: node.clone(),
                desired: DesiredState::Running,
                spec,
                spec_revision: revision,
                created_at: o.now,
                operation_id: op_id.clone(),
            });
        }
        if placed.len() < want {
            let msg = if o.nodes.is_empty() {
                format!(
                    "no ready nodes to place {} instance(s): is rune-agent running?",
                    want - placed.len()
                )
            } else if one_per_node {
                format!(
                    "{} instance(s) not placed: the service pins a port, so each node runs at most one of its instances",
                    want - placed.len()
                )
            } else {
                format!(
                    "not enough node capacity for {} instance(s)",
                    want - placed.len()
                )
            };
            p.status.set_condition(
                ConditionKind::ReplicaFailure,
                ConditionStatus::True,
                "Unschedulable",
                &msg,
                o.now,
            );
            p.requeue(Duration::from_secs(5));
            return;
        }
    }
    p.status.set_condition(
        ConditionKind::ReplicaFailure,
        ConditionStatus::False,
        "Scheduled",
        "",
        o.now,
    );
}

/// The `n` instances a scale-down removes: not-ready first, then the newest.
fn victims<'a>(o: &Observed, c: &Census<'a>, n: usize) -> Vec<(&'a InstanceRecord, i64)> {
    let mut all = c.active.clone();
    all.sort_by_key(|(r, _)| {
        let ready = o.statuses.get(&r.id).is_some_and(|s| s.ready);
        (ready, std::cmp::Reverse(r.created_at))
    });
    all.truncate(n);
    all
}

/// Picks nodes for `want` new instances: fewest of this service, then fewest overall.
fn place(o: &Observed, c: &Census, want: usize, one_per_node: bool) -> Vec<String> {
    let mut mine: HashMap<&str, u32> = HashMap::new();
    for (r, _) in &c.active {
        *mine.entry(r.node.as_str()).or_default() += 1;
    }
    let mut total: HashMap<&str, u32> = o
        .nodes
        .iter()
        .map(|(n, rec)| (n.as_str(), rec.instances))
        .collect();
    let mut out = Vec::new();
    for _ in 0..want {
        let best = o
            .nodes
            .iter()
            .filter(|(n, rec)| rec.capacity == 0 || total[n.as_str()] < rec.capacity)
            .filter(|(n, _)| !one_per_node || mine.get(n.as_str()).copied().unwrap_or(0) == 0)
            .min_by_key(|(n, _)| {
                (
                    mine.get(n.as_str()).copied().unwrap_or(0),
                    total[n.as_str()],
                    n.as_str(),
                )
            });
        let Some((name, _)) = best else { break };
        *mine.entry(name.as_str()).or_default() += 1;
        *total.get_mut(name.as_str()).unwrap() += 1;
        out.push(name.clone());
    }
    out
}

/// Fills the replica counts and the Available/Progressing conditions.
fn count(o: &Observed, c: &Census, st: &mut ServiceStatus) {
    st.current_replicas = c.active.len() as u32;
    st.ready_replicas = ready_count(o, c);
}

/// After a plan: stable scale, Available/Progressing conditions, requeues.
fn settle(o: &Observed, p: &mut Plan) {
    let st = &mut p.status;
    let running = st
        .operation
        .as_ref()
        .is_some_and(|op| !op.phase.is_terminal());
    let converged = st.current_replicas == st.desired_replicas
        && st.ready_replicas == st.desired_replicas
        && p.stop.is_empty()
        && p.create.is_empty();
    if converged && !running {
        st.stable_replicas = Some(st.desired_replicas);
    }
    if st.desired_replicas > 0 {
        st.last_nonzero_replicas = Some(st.desired_replicas);
    }
    let (avail, why) = if st.ready_replicas >= st.desired_replicas {
        (ConditionStatus::True, "MinimumReplicasAvailable")
    } else {
        (ConditionStatus::False, "ReplicasNotReady")
    };
    let msg = format!("{} of {} ready", st.ready_replicas, st.desired_replicas);
    st.set_condition(ConditionKind::Available, avail, why, &msg, o.now);
    if running {
        let m = st
            .operation
            .as_ref()
            .map(|op| op.message.clone())
            .unwrap_or_default();
        st.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::True,
            "OperationInProgress",
            &m,
            o.now,
        );
    } else if converged {
        st.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::False,
            "Complete",
            "",
            o.now,
        );
    } else {
        st.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::True,
            "Converging",
            &msg,
            o.now,
        );
        p.requeue(Duration::from_secs(10));
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
