//! The operation state machine, step by step: ramps, holds, rollbacks, pins,
//! supersessions, restarts, and old records that must not run again.

use super::*;

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
fn a_stored_spec_without_scale_keeps_the_current_scale() {
    let mut s = Sim::converged(5, &["n1"]);
    let mut unscaled = stored(5, "");
    unscaled.service.scale = None;
    s.o.spec = SpecState::Valid {
        stored: Box::new(unscaled.clone()),
        revision: 99,
    };
    let p = s.step();
    assert!(p.stop.is_empty() && p.create.is_empty(), "{p:?}");
    assert_eq!(s.o.status.desired_replicas, 5);

    // A new service without a scale starts at 1.
    let mut fresh = Sim::new(1, &["n1"]);
    fresh.o.spec = SpecState::Valid {
        stored: Box::new(unscaled),
        revision: 10,
    };
    let p = fresh.step();
    assert_eq!(p.create.len(), 1);
}
