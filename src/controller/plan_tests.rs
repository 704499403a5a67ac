use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::model::{ExitInfo, ScaleMode, parse_cast_file};

static IDS: AtomicU32 = AtomicU32::new(0);

fn id(svc: &str) -> String {
    format!("{svc}-{}", IDS.fetch_add(1, Ordering::SeqCst))
}

fn cfg() -> PlanConfig {
    PlanConfig {
        node_lost_grace: Duration::from_secs(30),
        new_id: id,
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn node(name: &str) -> (String, NodeRecord) {
    (
        name.to_string(),
        NodeRecord {
            name: name.into(),
            address: String::new(),
            agent_version: String::new(),
            started_at: t(0),
            instances: 0,
            capacity: 0,
            lease_id: 1,
        },
    )
}

fn stored(scale: u32, extra: &str) -> StoredService {
    let text = format!("service:\n  name: api\n  scale: {scale}\n  command: x\n{extra}");
    StoredService::new(parse_cast_file("t", &text).unwrap().remove(0))
}

/// A world the tests step through: apply each plan's writes, report agents' state.
struct Sim {
    o: Observed,
    rev: i64,
}

impl Sim {
    fn new(scale: u32, nodes: &[&str]) -> Sim {
        Sim {
            o: Observed {
                spec: SpecState::Valid {
                    stored: Box::new(stored(scale, "")),
                    revision: 10,
                },
                operation: None,
                status: ServiceStatus::default(),
                has_status: false,
                instances: vec![],
                statuses: HashMap::new(),
                nodes: nodes.iter().map(|n| node(n)).collect(),
                node_lost_for: HashMap::new(),
                now: t(0),
            },
            rev: 10,
        }
    }

    /// A service already at `scale`, every instance ready.
    fn converged(scale: u32, nodes: &[&str]) -> Sim {
        let mut s = Sim::new(scale, nodes);
        s.step();
        s.agents(true);
        s.step();
        s
    }

    fn step(&mut self) -> Plan {
        let p = plan(&self.o, &cfg());
        self.rev += 1;
        for r in &p.create {
            self.o.instances.push((r.clone(), self.rev));
        }
        for (r, _) in &p.stop {
            let rev = self.rev;
            if let Some(e) = self.o.instances.iter_mut().find(|(i, _)| i.id == r.id) {
                *e = (r.clone(), rev);
            }
        }
        for (id, _) in &p.remove {
            self.o.instances.retain(|(i, _)| &i.id != id);
            self.o.statuses.remove(id);
        }
        if let Some((s, _)) = &p.rollback {
            self.o.spec = SpecState::Valid {
                stored: Box::new(s.clone()),
                revision: self.rev,
            };
        }
        self.o.status = p.status.clone();
        p
    }

    /// Every agent does its job: running instances become ready, stopped ones exit.
    fn agents(&mut self, ready: bool) {
        for (r, _) in &self.o.instances {
            let phase = if r.desired == DesiredState::Stopped {
                Phase::Exited
            } else {
                Phase::Running
            };
            let s = self
                .o
                .statuses
                .entry(r.id.clone())
                .or_insert_with(|| status(&r.id, phase, false));
            s.phase = phase;
            s.ready = ready && phase == Phase::Running;
            if s.ready {
                s.ready_at.get_or_insert(t(0));
            }
        }
    }

    fn running(&self) -> usize {
        self.o
            .instances
            .iter()
            .filter(|(i, _)| i.desired == DesiredState::Running)
            .count()
    }

    fn scale_op(&mut self, to: u32, mode: ScaleMode, step: u32, interval: u64, rollback: bool) {
        let from = match &self.o.spec {
            SpecState::Valid { stored, .. } => stored.service.desired_scale(),
            _ => 0,
        };
        self.rev += 1;
        let mut s = stored(to, "");
        s.service.scale = Some(to);
        self.o.spec = SpecState::Valid {
            stored: Box::new(s),
            revision: self.rev,
        };
        self.o.operation = Some((
            OperationRecord {
                id: format!("op-{}", self.rev),
                kind: OperationKind::Scale,
                from,
                to,
                mode,
                step,
                interval: Duration::from_secs(interval),
                rollback_on_fail: rollback,
                timeout: Duration::from_secs(300),
                requested_at: self.o.now,
                requested_by: "me@here".into(),
                reason: String::new(),
            },
            self.rev,
        ));
    }

    fn phase(&self) -> OperationPhase {
        self.o.status.operation.as_ref().unwrap().phase
    }
}

fn status(id: &str, phase: Phase, ready: bool) -> InstanceStatus {
    InstanceStatus {
        phase,
        pid: Some(1),
        ready,
        ..InstanceStatus::pending(id, "n1")
    }
}

#[test]
fn a_new_service_converges_and_reports_status_in_contract_order() {
    let mut s = Sim::new(3, &["n1"]);
    let p = s.step();
    assert_eq!(p.create.len(), 3);
    assert_eq!(p.status.desired_replicas, 3);
    assert!(
        p.status.last_scale_reason.contains("created"),
        "{}",
        p.status.last_scale_reason
    );
    s.agents(true);
    let p = s.step();
    assert!(p.create.is_empty());
    assert_eq!((p.status.ready_replicas, p.status.current_replicas), (3, 3));
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert_eq!(p.status.stable_replicas, Some(3));
    // Idempotent: nothing more to do.
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty() && p.remove.is_empty());
}

#[test]
fn placement_spreads_over_nodes() {
    let mut s = Sim::new(4, &["n1", "n2"]);
    let p = s.step();
    let on_n1 = p.create.iter().filter(|r| r.node == "n1").count();
    assert_eq!(on_n1, 2);
}

#[test]
fn no_nodes_is_a_replica_failure_not_a_crash() {
    let mut s = Sim::new(2, &[]);
    let p = s.step();
    assert!(p.create.is_empty());
    assert!(p.status.is_true(ConditionKind::ReplicaFailure));
    assert!(p.requeue_after.is_some());
}

#[test]
fn scale_down_stops_unready_first_then_newest_and_removes_after_exit() {
    let mut s = Sim::converged(3, &["n1"]);
    let unready = s.o.instances[0].0.id.clone();
    s.o.statuses.get_mut(&unready).unwrap().ready = false;
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].0.id, unready);
    s.agents(true);
    let p = s.step();
    assert_eq!(p.remove.len(), 1);
    assert_eq!(s.running(), 2);
}

#[test]
fn gradual_scale_goes_step_by_step_holding_the_interval() {
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(6, ScaleMode::Gradual, 2, 30, true);
    let mut seen = vec![];
    for i in 0..40 {
        s.o.now = t(i * 10);
        s.step();
        s.agents(true);
        seen.push(s.running());
        if s.phase() == OperationPhase::Succeeded {
            break;
        }
    }
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert!(
        seen.contains(&3) && seen.contains(&5),
        "intermediate counts: {seen:?}"
    );
    assert_eq!(s.running(), 6);
    let op = s.o.status.operation.as_ref().unwrap();
    assert_eq!((op.step, op.steps), (3, 3));
}

#[test]
fn a_failing_step_rolls_back_to_the_last_stable_scale() {
    let mut s = Sim::converged(2, &["n1"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert_eq!(p.create.len(), 2);
    // One new instance crashes before it is ready.
    let new = p.create[0].id.clone();
    s.agents(true);
    let st = s.o.statuses.get_mut(&new).unwrap();
    st.ready = false;
    st.ready_at = None;
    st.restarts = 1;
    st.last_exit = Some(ExitInfo {
        code: Some(3),
        signal: None,
        at: t(1),
        reason: String::new(),
    });
    let p = s.step();
    let (back, cas) = p.rollback.clone().expect("rolls back");
    assert_eq!(back.service.scale, Some(2));
    assert_eq!(
        cas,
        s.o.operation.as_ref().unwrap().1,
        "CAS on the operation's own spec write"
    );
    assert_eq!(s.phase(), OperationPhase::RolledBack);
    assert!(
        s.o.status.last_scale_reason.contains(&new),
        "{}",
        s.o.status.last_scale_reason
    );
    assert!(s.o.status.last_scale_reason.contains("exit code 3"));
    assert_eq!(p.status.desired_replicas, 2);
    assert_eq!(p.stop.len(), 2, "the failed scale's instances are stopped");
    assert_eq!(s.o.status.history[0].result, OperationPhase::RolledBack);
}

#[test]
fn without_rollback_a_failure_pins_the_new_scale() {
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(3, ScaleMode::Immediate, 1, 0, false);
    s.step();
    s.o.now = t(301);
    let p = s.step();
    assert!(p.rollback.is_none());
    assert_eq!(s.phase(), OperationPhase::Failed);
    assert!(s.o.status.last_scale_reason.contains("timed out"));
    assert_eq!(p.status.desired_replicas, 3);
}

#[test]
fn a_newer_operation_supersedes_the_running_one() {
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(10, ScaleMode::Gradual, 1, 30, true);
    s.step();
    let first = s.o.status.operation.as_ref().unwrap().id.clone();
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    s.step();
    let st = &s.o.status;
    assert_eq!(st.history[0].id, first);
    assert_eq!(st.history[0].result, OperationPhase::Superseded);
    assert_eq!(st.operation.as_ref().unwrap().to, 2);
}

#[test]
fn a_gitops_scale_runs_with_the_spec_defaults_and_says_so() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(
            5,
            "  scaling: {mode: gradual, step: 2, interval: 10s}\n",
        )),
        revision: 99,
    };
    s.step();
    let op = s.o.status.operation.as_ref().unwrap();
    assert_eq!(op.mode, ScaleMode::Gradual);
    assert_eq!(op.id, "spec-99");
    assert!(s.o.status.last_scale_reason.contains("spec change"));
}

#[test]
fn an_invalid_spec_leaves_instances_alone() {
    let mut s = Sim::converged(2, &["n1"]);
    s.o.spec = SpecState::Invalid(SpecError::new("k", "bad"));
    // Even an instance that ended is not touched while the spec is invalid.
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty() && p.remove.is_empty());
    assert!(p.status.is_true(ConditionKind::SpecInvalid));
    assert_eq!(p.status.ready_replicas, 2);
}

#[test]
fn lost_nodes_are_replaced_only_after_the_grace_period() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.remove("n2");
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(5));
    let p = s.step();
    assert!(p.create.is_empty(), "within grace");
    assert!(p.requeue_after.unwrap() <= Duration::from_secs(25));
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(31));
    let p = s.step();
    assert_eq!(p.remove.len(), 1);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].node, "n1");
}

#[test]
fn restart_stops_everything_then_starts_from_the_current_spec() {
    let mut s = Sim::converged(2, &["n1"]);
    let old: Vec<String> = s.o.instances.iter().map(|(i, _)| i.id.clone()).collect();
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    if let Some((op, _)) = &mut s.o.operation {
        op.kind = OperationKind::Restart;
    }
    let p = s.step();
    assert_eq!(p.stop.len(), 2);
    assert!(
        p.create.is_empty(),
        "nothing starts until everything stopped"
    );
    s.agents(true);
    s.step(); // removals
    s.step(); // next step: start
    s.agents(true);
    s.step();
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert!(s.o.instances.iter().all(|(i, _)| !old.contains(&i.id)));
    assert_eq!(s.running(), 2);
}

#[test]
fn deletion_stops_then_purges() {
    let mut s = Sim::converged(2, &["n1"]);
    if let SpecState::Valid { stored, .. } = &mut s.o.spec {
        stored.deletion_timestamp = Some(t(5));
    }
    let p = s.step();
    assert_eq!(p.stop.len(), 2);
    assert!(!p.purge);
    s.agents(false);
    s.step();
    let p = s.step();
    assert!(p.purge);
}

#[test]
fn an_instance_that_ended_for_good_is_replaced_after_a_pause_not_in_a_tight_loop() {
    let mut s = Sim::converged(1, &["n1"]);
    let id = s.o.instances[0].0.id.clone();
    let st = s.o.statuses.get_mut(&id).unwrap();
    st.phase = Phase::Failed;
    st.ready = false;
    st.last_exit = Some(ExitInfo {
        code: Some(1),
        signal: None,
        at: t(0),
        reason: String::new(),
    });
    let p = s.step();
    assert!(
        p.create.is_empty() && p.remove.is_empty(),
        "keeps its slot for a while"
    );
    assert!(p.requeue_after.unwrap() <= REPLACE_AFTER);
    s.o.now = t(REPLACE_AFTER.as_secs() as i64);
    let p = s.step();
    assert_eq!((p.remove.len(), p.create.len()), (1, 1));
}

#[test]
fn an_instance_unready_before_the_scale_does_not_fail_it() {
    let mut s = Sim::converged(2, &["n1"]);
    let sick = s.o.instances[0].0.id.clone();
    let st = s.o.statuses.get_mut(&sick).unwrap();
    st.ready = false;
    st.readiness_failures = 5;
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    s.step();
    assert_eq!(
        s.phase(),
        OperationPhase::Progressing,
        "adding capacity is not blocked"
    );
}

#[test]
fn an_instance_ready_at_the_start_that_crashes_fails_the_operation() {
    let mut s = Sim::converged(2, &["n1"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    s.step();
    let old = s.o.instances[0].0.id.clone();
    let st = s.o.statuses.get_mut(&old).unwrap();
    st.ready = false;
    st.phase = Phase::Pending; // restarting under policy Always
    s.step();
    assert_eq!(s.phase(), OperationPhase::RolledBack);
    assert!(
        s.o.status.last_scale_reason.contains("turned unready"),
        "{}",
        s.o.status.last_scale_reason
    );
}

#[test]
fn a_new_service_that_never_became_ready_is_pinned_not_rolled_back_to_zero() {
    let mut s = Sim::new(1, &["n1"]);
    let p = s.step();
    let id = p.create[0].id.clone();
    s.agents(false);
    let st = s.o.statuses.get_mut(&id).unwrap();
    st.restarts = 1;
    let p = s.step();
    assert!(p.rollback.is_none());
    assert_eq!(s.phase(), OperationPhase::Failed);
    assert_eq!(p.status.desired_replicas, 1);
}

#[test]
fn an_expired_operation_record_is_not_run_again() {
    let mut s = Sim::converged(2, &["n1"]);
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    if let Some((op, _)) = &mut s.o.operation {
        op.kind = OperationKind::Restart;
    }
    // The status was lost; the old restart's time ran out long ago.
    s.o.status = ServiceStatus::default();
    s.o.now = t(3600);
    let p = s.step();
    assert!(
        p.stop.is_empty(),
        "no stop-the-world restart from an old record"
    );
}

#[test]
fn a_stopped_record_waits_for_its_agents_report() {
    let mut s = Sim::new(1, &["n1"]);
    s.step();
    let id = s.o.instances[0].0.id.clone();
    s.o.instances[0].0.desired = DesiredState::Stopped;
    let p = s.step();
    assert!(
        p.remove.is_empty(),
        "no status yet: the process may be starting"
    );
    s.o.now = t(UNREPORTED_GRACE.as_secs() as i64);
    let p = s.step();
    assert_eq!(p.remove.first().map(|r| r.0.clone()), Some(id));
}

#[test]
fn nothing_is_purged_twice() {
    let mut s = Sim::new(1, &["n1"]);
    s.o.spec = SpecState::Missing;
    let p = s.step();
    assert!(!p.purge, "no keys left to remove");
    assert_eq!(
        p.status,
        ServiceStatus::default(),
        "and no status brought back"
    );
    s.o.has_status = true;
    let p = s.step();
    assert!(p.purge);
}

#[test]
fn a_lost_node_during_a_step_is_looked_at_after_the_grace_not_the_deadline() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    s.o.nodes.remove("n2");
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(10));
    let p = s.step();
    assert!(
        p.requeue_after.unwrap() <= Duration::from_secs(20),
        "{:?}",
        p.requeue_after
    );
}

#[test]
fn a_pinned_port_places_at_most_one_instance_per_node() {
    let mut s = Sim::new(3, &["n1", "n2"]);
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(3, "  ports: [{name: http, port: 8080}]\n")),
        revision: 10,
    };
    let p = s.step();
    let mut nodes: Vec<_> = p.create.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    let f = p.status.condition(ConditionKind::ReplicaFailure).unwrap();
    assert!(f.message.contains("pins a port"), "{}", f.message);
}
