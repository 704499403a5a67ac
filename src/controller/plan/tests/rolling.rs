//! Rolling restarts and rollouts, step by step: every batch within
//! `desired + maxSurge` records and `desired - maxUnavailable` available, the
//! pinned-port fallback, a successor controller resuming from records alone,
//! superseding, rollback and pause.

use super::*;
use crate::model::operation::RollingRequest;

const ROLLING: &str = "  update: {strategy: Rolling}\n";

/// A converged Rolling service with `extra` spec lines.
fn rolling_sim(scale: u32, nodes: &[&str], extra: &str) -> Sim {
    let mut s = Sim::new(scale, nodes);
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, extra)),
        revision: 10,
    };
    s.step();
    s.agents(true);
    s.step();
    assert_eq!(s.running(), scale as usize);
    s
}

pub(super) fn current_stored(s: &Sim) -> StoredService {
    match &s.o.spec {
        SpecState::Valid { stored, .. } => (**stored).clone(),
        _ => panic!("no valid spec"),
    }
}

/// `rune restart --rolling` with these overrides: the operation record, with the
/// spec rewritten in the same transaction.
pub(super) fn restart(s: &mut Sim, request: Option<RollingRequest>) -> String {
    let stored = current_stored(s);
    let scale = stored.service.desired_scale();
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored),
        revision: s.rev,
    };
    let id = format!("restart-{}", s.rev);
    s.o.operation_revision = Some(s.rev);
    s.o.operation = Some(Versioned::new(
        OperationRecord {
            id: id.clone(),
            kind: OperationKind::Restart,
            from: scale,
            to: scale,
            mode: ScaleMode::Immediate,
            step: 1,
            interval: Duration::ZERO,
            rollback_on_fail: false,
            timeout: Duration::from_secs(300),
            requested_at: s.o.now,
            requested_by: "me@here".into(),
            reason: String::new(),
            supersedes: vec![],
            rolling: request,
        },
        s.rev,
    ));
    id
}

/// A cast of the same service with `extra` spec lines (a new template).
pub(super) fn cast(s: &mut Sim, scale: u32, extra: &str) {
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, extra)),
        revision: s.rev,
    };
}

fn surge(n: u32, unavailable: u32) -> Option<RollingRequest> {
    Some(RollingRequest {
        max_surge: Some(crate::model::Count::Absolute(n)),
        max_unavailable: Some(crate::model::Count::Absolute(unavailable)),
        min_ready: None,
    })
}

/// Records that exist (running or stopping), and ready running ones.
fn census_of(s: &Sim) -> (usize, usize) {
    let ready =
        s.o.instances
            .iter()
            .filter(|i| i.value.desired == DesiredState::Running)
            .filter(|i| s.o.statuses.get(&i.value.id).is_some_and(|st| st.ready))
            .count();
    (s.o.instances.len(), ready)
}

/// Steps the world until the operation ends, checking the bounds after every
/// plan; returns the most records and the fewest ready seen.
fn run(s: &mut Sim, desired: usize, max_surge: usize, max_unavailable: usize) -> (usize, usize) {
    let (mut most, mut fewest) = (0, usize::MAX);
    for i in 0..200 {
        s.o.now = t(100 + i);
        s.step();
        let (records, ready) = census_of(s);
        most = most.max(records);
        fewest = fewest.min(ready);
        assert!(
            records <= desired + max_surge,
            "{records} records > {desired} + {max_surge} at look {i}"
        );
        assert!(
            ready + max_unavailable >= desired,
            "{ready} ready < {desired} - {max_unavailable} at look {i}"
        );
        if s.phase().is_terminal() {
            return (most, fewest);
        }
        s.agents(true);
    }
    panic!("did not finish: {:?}", s.o.status.operation);
}

#[test]
fn a_rolling_restart_replaces_every_instance_within_its_bounds() {
    let mut s = rolling_sim(4, &["n1", "n2"], "");
    let old: Vec<String> = s.o.instances.iter().map(|i| i.value.id.clone()).collect();
    let id = restart(&mut s, surge(1, 0));
    let (most, fewest) = run(&mut s, 4, 1, 0);
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert_eq!(
        (most, fewest),
        (5, 4),
        "it used its surge, never went below"
    );
    assert_eq!(s.running(), 4);
    for instance in &s.o.instances {
        assert!(!old.contains(&instance.value.id));
        assert_eq!(instance.value.operation_id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(s.o.status.updated_replicas, 4);
    let op = s.o.status.operation.as_ref().unwrap();
    assert_eq!(op.rolling.as_ref().unwrap().updated, 4);
}

#[test]
fn batches_follow_max_surge_and_max_unavailable() {
    // Surge 2: two new ones at a time.
    let mut s = rolling_sim(4, &["n1", "n2"], "");
    restart(&mut s, surge(2, 0));
    let p = s.step();
    assert_eq!((p.create.len(), p.stop.len()), (2, 0));
    run(&mut s, 4, 2, 0);
    assert_eq!(s.phase(), OperationPhase::Succeeded);

    // No surge, one unavailable: stop one, then start one.
    let mut s = rolling_sim(4, &["n1", "n2"], "");
    restart(&mut s, surge(0, 1));
    let p = s.step();
    assert_eq!((p.create.len(), p.stop.len()), (0, 1));
    let (most, fewest) = run(&mut s, 4, 0, 1);
    assert_eq!((most, fewest), (4, 3));
    assert_eq!(s.phase(), OperationPhase::Succeeded);
}

#[test]
fn percentages_come_from_the_spec_and_round_as_kubernetes() {
    let extra = "  update: {strategy: Rolling, maxSurge: 25%, maxUnavailable: 25%}\n";
    let mut s = rolling_sim(8, &["n1", "n2"], extra);
    restart(&mut s, None);
    let p = s.step();
    let rolling =
        s.o.status
            .operation
            .as_ref()
            .unwrap()
            .rolling
            .clone()
            .unwrap();
    assert_eq!((rolling.max_surge, rolling.max_unavailable), (2, 2));
    assert_eq!((p.create.len(), p.stop.len()), (2, 2));
    run(&mut s, 8, 2, 2);
    assert_eq!(s.phase(), OperationPhase::Succeeded);
}

#[test]
fn a_new_instance_counts_only_after_min_ready() {
    let mut s = rolling_sim(1, &["n1"], "");
    restart(
        &mut s,
        Some(RollingRequest {
            min_ready: Some(Duration::from_secs(10)),
            ..RollingRequest::default()
        }),
    );
    s.o.now = t(100);
    let p = s.step();
    let new = p.create[0].id.clone();
    s.agents(true);
    s.o.statuses.get_mut(&new).unwrap().ready_at = Some(t(100));
    s.o.now = t(105);
    let p = s.step();
    assert!(p.stop.is_empty(), "ready for 5s of 10: the old one stays");
    assert!(p.requeue_after.unwrap() <= Duration::from_secs(5));
    s.o.now = t(110);
    let p = s.step();
    assert_eq!(p.stop.len(), 1);
}

#[test]
fn a_pinned_port_surges_onto_a_free_node() {
    let extra = "  ports: [{name: http, port: 8080}]\n";
    let mut s = rolling_sim(2, &["n1", "n2", "n3"], extra);
    restart(&mut s, surge(1, 0));
    let p = s.step();
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].node, "n3", "the free node");
    let message = &s.o.status.operation.as_ref().unwrap().message;
    assert!(!message.contains("pins a port"), "{message}");
    finish_one_per_node(&mut s, 2, 1);
}

#[test]
fn a_pinned_port_with_no_free_node_stops_one_then_starts_one_and_says_so() {
    let extra = "  ports: [{name: http, port: 8080}]\n";
    let mut s = rolling_sim(2, &["n1", "n2"], extra);
    restart(&mut s, surge(1, 0));
    s.o.now = t(100);
    let p = s.step();
    assert_eq!((p.create.len(), p.stop.len()), (0, 1));
    let message = &s.o.status.operation.as_ref().unwrap().message;
    assert!(message.contains("pins a port"), "{message}");
    assert!(message.contains("stop one, then start one"), "{message}");
    finish_one_per_node(&mut s, 2, 1);
}

/// Runs a pinned-port rollout to its end: never two records (running or
/// stopping: both hold the port) on one node.
fn finish_one_per_node(s: &mut Sim, desired: usize, max_surge: usize) {
    for i in 0..100 {
        s.o.now = t(101 + i);
        s.agents(true);
        s.step();
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for instance in &s.o.instances {
            *per_node.entry(instance.value.node.as_str()).or_default() += 1;
        }
        assert!(
            per_node.values().all(|n| *n <= 1),
            "two on one node: {per_node:?}"
        );
        assert!(s.o.instances.len() <= desired + max_surge);
        if s.phase().is_terminal() {
            break;
        }
    }
    assert_eq!(s.phase(), OperationPhase::Succeeded);
}

#[test]
fn a_successor_controller_resumes_from_the_records_with_no_extra_instance() {
    let mut s = rolling_sim(4, &["n1", "n2"], "");
    restart(&mut s, surge(2, 0));
    s.o.now = t(100);
    // The leader wrote its batch's records, then died before its status write.
    let before = s.o.status.clone();
    let p = s.step();
    assert_eq!(p.create.len(), 2);
    s.o.status = before;
    // Its successor reads the same keys: the batch is there, nothing more starts.
    for _ in 0..3 {
        let p = s.step();
        assert!(p.create.is_empty(), "already at desired + maxSurge");
        assert_eq!(s.o.instances.len(), 6);
    }
    run(&mut s, 4, 2, 0);
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert_eq!(s.running(), 4);
}

#[test]
fn a_spec_change_of_a_rolling_service_rolls_out_and_a_recreate_one_waits() {
    let mut s = rolling_sim(3, &["n1"], ROLLING);
    cast(&mut s, 3, &format!("{ROLLING}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    s.step();
    let op = s.o.status.operation.clone().unwrap();
    assert_eq!(op.kind, OperationKind::Rollout);
    assert!(
        s.o.status
            .last_scale_reason
            .contains("rolling out revision 2"),
        "{}",
        s.o.status.last_scale_reason
    );
    assert_eq!(s.o.status.update_revision, Some(2));
    assert_eq!(s.o.status.current_revision, Some(1));
    s.agents(true);
    run(&mut s, 3, 1, 0);
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert!(s.o.instances.iter().all(|i| i.value.revision == 2));
    assert_eq!(s.o.status.current_revision, Some(2));
    assert_eq!(s.o.status.updated_replicas, 3);

    let mut s = rolling_sim(3, &["n1"], "");
    cast(&mut s, 3, "  env: {V: '2'}\n");
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty(), "Recreate: waits");
    assert_eq!(s.o.status.updated_replicas, 0);
    assert_eq!(
        (s.o.status.current_revision, s.o.status.update_revision),
        (Some(1), Some(2))
    );
}

#[test]
fn changing_only_the_update_settings_rolls_nothing_out() {
    let mut s = rolling_sim(2, &["n1"], ROLLING);
    cast(
        &mut s,
        2,
        "  update: {strategy: Rolling, maxSurge: 3, minReadySeconds: 5}\n",
    );
    let p = s.step();
    assert!(p.new_revision.is_none());
    assert!(p.create.is_empty() && p.stop.is_empty());
}

#[test]
fn a_newer_scale_supersedes_a_rollout_which_then_resumes() {
    let mut s = rolling_sim(2, &["n1"], ROLLING);
    cast(&mut s, 2, &format!("{ROLLING}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    s.step();
    let rollout = s.o.status.operation.clone().unwrap().id;
    // `rune scale api 3`, keeping the spec's template.
    s.rev += 1;
    let mut scaled = stored(3, &format!("{ROLLING}  env: {{V: '2'}}\n"));
    scaled.service.scale = Some(3);
    s.o.spec = SpecState::Valid {
        stored: Box::new(scaled),
        revision: s.rev,
    };
    s.o.operation_revision = Some(s.rev);
    s.o.operation = Some(Versioned::new(
        OperationRecord {
            id: "scale-3".into(),
            kind: OperationKind::Scale,
            from: 2,
            to: 3,
            mode: ScaleMode::Immediate,
            step: 1,
            interval: Duration::ZERO,
            rollback_on_fail: true,
            timeout: Duration::from_secs(300),
            requested_at: s.o.now,
            requested_by: "me@here".into(),
            reason: String::new(),
            supersedes: vec![],
            rolling: None,
        },
        s.rev,
    ));
    s.step();
    let entry = s.o.status.history.iter().find(|h| h.id == rollout).unwrap();
    assert_eq!(entry.result, OperationPhase::Superseded);
    assert_eq!(s.o.status.operation.as_ref().unwrap().id, "scale-3");
    for i in 0..100 {
        s.o.now = t(101 + i);
        s.agents(true);
        s.step();
        if s.o.instances.iter().all(|r| r.value.revision == 2) && s.running() == 3 {
            break;
        }
    }
    assert!(
        s.o.status.history.iter().any(|h| h.id == "scale-3"),
        "the scale finished"
    );
    assert_eq!(s.running(), 3);
    assert!(
        s.o.instances.iter().all(|r| r.value.revision == 2),
        "the rollout resumed after the scale"
    );
}

#[test]
fn a_bad_revision_is_rolled_back_to_the_previous_one_keeping_the_live_scale() {
    let mut s = rolling_sim(2, &["n1"], ROLLING);
    cast(&mut s, 2, &format!("{ROLLING}  env: {{BAD: '1'}}\n"));
    let cast_revision = s.rev;
    s.o.now = t(100);
    let p = s.step();
    assert_eq!(p.create.len(), 1);
    let new = p.create[0].id.clone();
    s.agents(true);
    let st = s.o.statuses.get_mut(&new).unwrap();
    (st.ready, st.ready_at) = (false, None);
    st.restarts = 1;
    st.last_exit = Some(ExitInfo {
        code: Some(3),
        signal: None,
        at: t(100),
        reason: String::new(),
    });
    let p = s.step();
    assert_eq!(s.phase(), OperationPhase::RolledBack);
    let back = p.rollback.clone().expect("writes the spec back");
    assert_eq!(back.revision, cast_revision, "CAS on the rollout's spec");
    assert!(back.value.service.env.is_empty(), "the previous template");
    assert_eq!(back.value.service.scale, Some(2), "the live scale");
    assert!(back.value.service.is_rolling(), "update: is kept");
    let reason = &s.o.status.last_scale_reason;
    assert!(
        reason.contains(&new) && reason.contains("exit code 3"),
        "{reason}"
    );
    assert!(reason.contains("rolled back to revision 1"), "{reason}");
    // The written-back template rolls out like any spec change, replacing the
    // bad instance; instances of revision 1 count as updated already.
    s.o.now = t(101);
    s.step();
    let op = s.o.status.operation.clone().unwrap();
    assert_eq!(op.kind, OperationKind::Rollout);
    assert!(op.rolling.as_ref().unwrap().revert);
    assert!(s.o.status.last_scale_reason.starts_with("rollback:"));
    for i in 0..50 {
        s.o.now = t(102 + i);
        s.agents(true);
        if let Some(st) = s.o.statuses.get_mut(&new) {
            st.ready = false;
        }
        s.step();
        if s.phase().is_terminal() {
            break;
        }
    }
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert!(s.o.instances.iter().all(|i| i.value.id != new));
    assert_eq!(s.running(), 2);
}

#[test]
fn on_failure_pause_stops_where_it_is_until_a_new_cast() {
    let pause = "  update: {strategy: Rolling, onFailure: pause, maxSurge: 1}\n";
    let mut s = rolling_sim(3, &["n1"], pause);
    cast(&mut s, 3, &format!("{pause}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    let p = s.step();
    let new = p.create[0].id.clone();
    s.agents(true);
    s.step();
    // The second new one fails its readiness probe over and over.
    s.o.now = t(101);
    let p = s.step();
    let sick = p
        .create
        .first()
        .map(|r| r.id.clone())
        .unwrap_or_else(|| new.clone());
    s.agents(true);
    if let Some(st) = s.o.statuses.get_mut(&sick) {
        st.ready = false;
        st.ready_at = None;
        st.restarts = 1;
    }
    let p = s.step();
    assert_eq!(s.phase(), OperationPhase::Failed);
    assert!(p.rollback.is_none());
    let message = &s.o.status.operation.as_ref().unwrap().message;
    assert!(message.contains("paused"), "{message}");
    let paused = s.o.status.condition(ConditionKind::Progressing).unwrap();
    assert_eq!(paused.reason, "RolloutPaused");
    // Nothing more rolls.
    for i in 0..5 {
        s.o.now = t(110 + i);
        let p = s.step();
        assert!(p.create.iter().all(|r| r.revision != 2) || p.create.is_empty());
        assert_eq!(s.phase(), OperationPhase::Failed);
    }
    // A new cast resumes.
    cast(&mut s, 3, &format!("{pause}  env: {{V: '3'}}\n"));
    s.step();
    assert_eq!(
        s.o.status.operation.as_ref().unwrap().kind,
        OperationKind::Rollout
    );
    assert!(!s.phase().is_terminal());
}

#[test]
fn a_rollout_without_progress_fails_at_its_progress_deadline() {
    let extra = "  update: {strategy: Rolling, progressDeadline: 30s, onFailure: pause}\n";
    let mut s = rolling_sim(1, &["n1"], extra);
    cast(&mut s, 1, &format!("{extra}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    let p = s.step();
    // The new one never becomes ready (and never fails a probe either).
    s.agents(true);
    let st = s.o.statuses.get_mut(&p.create[0].id).unwrap();
    (st.ready, st.ready_at) = (false, None);
    // Its record appearing was the last progress.
    s.o.now = t(101);
    s.step();
    s.o.now = t(130);
    s.step();
    assert!(!s.phase().is_terminal());
    s.o.now = t(132);
    s.step();
    assert_eq!(s.phase(), OperationPhase::Failed);
    assert!(
        s.o.status.last_scale_reason.contains("progressDeadline"),
        "{}",
        s.o.status.last_scale_reason
    );
}

#[test]
fn a_restart_of_a_rolling_service_rolls_without_the_flag() {
    let mut s = rolling_sim(2, &["n1"], ROLLING);
    restart(&mut s, None);
    let p = s.step();
    assert_eq!(
        (p.create.len(), p.stop.len()),
        (1, 0),
        "surge first, no stop"
    );
    assert!(s.o.status.operation.as_ref().unwrap().rolling.is_some());
    // A Recreate service's restart without the flag is the seed's stop-the-world.
    let mut s = rolling_sim(2, &["n1"], "");
    restart(&mut s, None);
    let p = s.step();
    assert_eq!((p.create.len(), p.stop.len()), (0, 2));
}

#[test]
fn a_rollout_with_nowhere_to_surge_says_why_and_stops_nothing() {
    let mut s = rolling_sim(2, &["n1"], "");
    s.o.node_states.insert(
        "n1".into(),
        NodeState {
            cordoned: true,
            draining: false,
            by: "me@here".into(),
            at: t(0),
            reason: String::new(),
        },
    );
    restart(&mut s, surge(1, 0));
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty());
    let c = s.o.status.condition(ConditionKind::ReplicaFailure).unwrap();
    assert_eq!(c.reason, "Unschedulable");
    assert!(c.message.contains("cordoned"), "{}", c.message);
}

#[test]
fn a_failed_rollout_back_to_the_previous_spec_pauses_instead_of_rolling_back_forever() {
    // Cast v2, then back to the spec the instances ran (revision 1) mid-rollout:
    // the rollout to that spec has "revision 1" as its previous revision, the
    // same template. Failing, it has nothing to roll back to: it pauses, rather
    // than write the same spec back and roll it out again, failing again.
    let extra = "  update: {strategy: Rolling, progressDeadline: 30s}\n";
    let mut s = rolling_sim(2, &["n1"], extra);
    cast(&mut s, 2, &format!("{extra}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    s.step();
    s.agents(true);
    s.step();
    s.agents(true);
    s.step();
    cast(&mut s, 2, extra);
    s.o.now = t(101);
    s.step();
    let op = s.o.status.operation.clone().unwrap();
    assert_eq!(op.kind, OperationKind::Rollout);
    let rolling = op.rolling.clone().unwrap();
    assert_ne!(rolling.previous_revision, Some(rolling.update_revision));
    // The new instances of this rollout never become ready.
    let mut rolled_back = 0;
    for i in 0..300 {
        s.o.now = t(102 + i);
        s.agents(false);
        let p = s.step();
        rolled_back += usize::from(p.rollback.is_some());
    }
    assert_eq!(rolled_back, 0, "{:#?}", s.o.status.history);
    assert_eq!(s.phase(), OperationPhase::Failed);
    let message = &s.o.status.operation.as_ref().unwrap().message;
    assert!(message.contains("paused"), "{message}");
}

#[test]
fn an_old_instance_stopped_on_a_node_lost_since_does_not_fail_a_healthy_rollout() {
    // The rollout stopped an old instance, then its node went away before the
    // agent confirmed the stop: every new instance is up and available, yet the
    // rollout waited on that record (it held a surge slot) until its
    // progressDeadline and rolled the healthy new revision back. Past the node's
    // grace (30s here), the rollout goes on without it.
    let extra = "  update: {strategy: Rolling, progressDeadline: 60s}\n";
    let mut s = rolling_sim(2, &["n1", "n2", "n3"], extra);
    cast(&mut s, 2, &format!("{extra}  env: {{V: '2'}}\n"));
    let mut lost = None;
    for i in 0..200 {
        s.o.now = t(100 + i);
        let p = s.step();
        assert!(p.rollback.is_none(), "{:#?}", s.o.status.history);
        if s.phase().is_terminal() {
            break;
        }
        // The first old instance stopped: its node goes before it exits.
        if lost.is_none()
            && let Some(stopped) = p.stop.first()
        {
            let node = stopped.value.node.clone();
            s.o.nodes.remove(&node);
            lost = Some(node);
        }
        if let Some(node) = &lost {
            s.o.node_lost_for
                .insert(node.clone(), Duration::from_secs(i as u64));
        }
        let alive: Vec<String> = s.o.nodes.keys().cloned().collect();
        for instance in &s.o.instances {
            if !alive.contains(&instance.value.node) {
                continue;
            }
            let record = &instance.value;
            let st =
                s.o.statuses
                    .entry(record.id.clone())
                    .or_insert_with(|| status(&record.id, Phase::Running, false));
            if record.desired == DesiredState::Stopped {
                (st.phase, st.ready) = (Phase::Exited, false);
            } else {
                st.ready = true;
                st.ready_at.get_or_insert(t(0));
            }
        }
    }
    assert!(lost.is_some());
    assert_eq!(
        s.phase(),
        OperationPhase::Succeeded,
        "{:#?}",
        s.o.status.operation
    );
}

#[test]
fn an_old_instance_crashing_mid_rollout_is_replaced_not_blamed_on_the_new_revision() {
    // An instance of the revision being replaced crashes while the rollout runs:
    // that says nothing about the new revision. Failing the rollout for it rolled
    // back to the very revision that crashed.
    let mut s = rolling_sim(3, &["n1"], ROLLING);
    let old = s.o.instances[0].value.id.clone();
    cast(&mut s, 3, &format!("{ROLLING}  env: {{V: '2'}}\n"));
    s.o.now = t(100);
    s.step();
    let st = s.o.statuses.get_mut(&old).unwrap();
    (st.phase, st.ready) = (Phase::Failed, false);
    st.last_exit = Some(ExitInfo {
        code: Some(1),
        signal: None,
        at: t(100),
        reason: String::new(),
    });
    for i in 0..200 {
        s.o.now = t(101 + i);
        let p = s.step();
        assert!(p.rollback.is_none(), "{}", s.o.status.last_scale_reason);
        if s.phase().is_terminal() {
            break;
        }
        s.agents(true);
        if let Some(st) = s.o.statuses.get_mut(&old) {
            (st.phase, st.ready) = (Phase::Failed, false);
        }
    }
    assert_eq!(
        s.phase(),
        OperationPhase::Succeeded,
        "{:?}",
        s.o.status.operation
    );
    assert_eq!(s.running(), 3);
    assert!(s.o.instances.iter().all(|i| i.value.id != old));
}
