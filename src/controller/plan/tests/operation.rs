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
    crash_before_ready(&mut s, &new, 3);
    let p = s.step();
    let Versioned {
        value: back,
        revision: cas,
    } = p.rollback.clone().expect("rolls back");
    assert_eq!(back.service.scale, Some(2));
    assert_eq!(
        cas,
        s.o.operation.as_ref().unwrap().revision,
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
    let old: Vec<String> =
        s.o.instances
            .iter()
            .map(|instance| instance.value.id.clone())
            .collect();
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    if let Some(Versioned { value: op, .. }) = &mut s.o.operation {
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
    assert!(
        s.o.instances
            .iter()
            .all(|instance| !old.contains(&instance.value.id))
    );
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
fn an_expired_operation_record_that_already_ran_is_history_not_a_request() {
    let mut s = Sim::converged(2, &["n1"]);
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    let (record_id, record_revision) = {
        let Versioned {
            value: op,
            revision,
        } = s.o.operation.as_mut().unwrap();
        op.kind = OperationKind::Restart;
        (op.id.clone(), *revision)
    };
    // The restart ran (its instances carry its id), then the status was lost; its
    // time ran out long ago.
    for instance in &mut s.o.instances {
        instance.value.operation_id = Some(record_id.clone());
    }
    s.o.status = ServiceStatus::default();
    s.o.now = t(3600);
    let p = s.step();
    assert!(
        p.stop.is_empty(),
        "no stop-the-world restart from an old record"
    );
    assert_eq!(
        p.status.observed_operation, record_revision,
        "seen, not run"
    );
    assert!(p.status.operation.iter().all(|op| op.id != record_id));
    assert!(p.status.history.iter().all(|entry| entry.id != record_id));
}

#[test]
fn an_operation_picked_up_after_its_deadline_runs_late_with_its_own_parameters() {
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(3, ScaleMode::Gradual, 1, 10, false);
    let id = s.o.operation.as_ref().unwrap().value.id.clone();
    // No controller until long after the record's 300s ran out.
    s.o.now = t(1000);
    s.step();
    let op = s.o.status.operation.clone().unwrap();
    assert_eq!(op.id, id, "the requested operation, not a spec-implied one");
    assert_eq!((op.mode, op.step_size), (ScaleMode::Gradual, 1));
    assert!(!op.rollback_on_fail);
    assert_eq!(op.started_at, t(1000));
    assert_eq!(op.deadline, t(1300), "the whole timeout from the pickup");
    assert_eq!(
        op.note,
        format!(
            "started late: requested at {}, picked up at {}",
            t(0),
            t(1000)
        )
    );
    for i in 0..10 {
        s.agents(true);
        s.o.now = t(1000 + i * 10);
        s.step();
        if s.phase() == OperationPhase::Succeeded {
            break;
        }
    }
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    assert_eq!(s.running(), 3);
    let entry = &s.o.status.history[0];
    assert_eq!(entry.id, id);
    assert!(entry.note.starts_with("started late"), "{}", entry.note);
}

#[test]
fn operations_overwritten_before_a_controller_saw_them_are_recorded_as_superseded() {
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    let Versioned {
        value: first,
        revision: first_revision,
    } = s.o.operation.clone().unwrap();
    s.scale_op(3, ScaleMode::Immediate, 1, 0, true);
    let second = {
        let Versioned { value: op, .. } = s.o.operation.as_mut().unwrap();
        op.supersedes = first.carried_over(first_revision, s.o.status.observed_operation);
        op.id.clone()
    };
    s.step();
    let st = &s.o.status;
    assert_eq!(st.operation.as_ref().unwrap().id, second);
    assert_eq!(st.history[0].id, first.id);
    assert_eq!(st.history[0].result, OperationPhase::Superseded);
    assert!(st.history[0].error.contains(&second));
    // Seen once, recorded once.
    s.step();
    s.agents(true);
    s.step();
    assert_eq!(s.phase(), OperationPhase::Succeeded);
    let ids: Vec<&str> = s.o.status.history.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(
        ids.iter().filter(|id| **id == first.id).count(),
        1,
        "{ids:?}"
    );
    assert_eq!(ids[..2], [second.as_str(), first.id.as_str()]);
}

/// Instance `id` (reported on already) exits with `code` before it is ready: its
/// agent restarts it, and the running operation fails its health checks.
fn crash_before_ready(s: &mut Sim, id: &str, code: i32) {
    let st = s.o.statuses.get_mut(id).unwrap();
    st.ready = false;
    st.ready_at = None;
    st.restarts = 1;
    st.last_exit = Some(ExitInfo {
        code: Some(code),
        signal: None,
        at: s.o.now,
        reason: String::new(),
    });
}

#[test]
fn with_no_stable_scale_a_failure_rolls_back_to_the_scale_desired_before() {
    // `rune cast` (scale 2) then at once `rune scale 4`: no controller saw the
    // cast, so nothing was ever stable.
    let mut s = Sim::new(2, &["n1"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert_eq!(p.create.len(), 4);
    s.agents(false);
    crash_before_ready(&mut s, &p.create[0].id, 1);
    let p = s.step();
    let back = p.rollback.expect("rolls back").value;
    assert_eq!(back.service.scale, Some(2));
    assert_eq!(s.phase(), OperationPhase::RolledBack);
    assert!(s.o.status.last_scale_reason.starts_with("rolled back to 2"));
}

#[test]
fn a_scale_that_supersedes_the_casts_unsettled_operation_carries_it_on() {
    let mut s = Sim::new(2, &["n1"]);
    // The cast's spec-implied operation, 0 -> 2, not settled yet.
    let cast = s.step().create;
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    s.step();
    assert_eq!(s.o.status.history[0].result, OperationPhase::Superseded);
    // The cast's instances were still coming up, not unready before the scale:
    // when one of them crashes, the scale fails at once (not at its deadline).
    s.agents(false);
    crash_before_ready(&mut s, &cast[0].id, 1);
    let p = s.step();
    assert!(
        s.o.status.last_scale_reason.contains(&cast[0].id),
        "{}",
        s.o.status.last_scale_reason
    );
    assert_eq!(p.rollback.expect("rolls back").value.service.scale, Some(2));
    assert_eq!(p.status.desired_replicas, 2);
}

#[test]
fn a_stop_reports_how_many_instances_are_left() {
    let mut s = Sim::converged(3, &["n1"]);
    s.scale_op(0, ScaleMode::Immediate, 1, 0, true);
    if let Some(Versioned { value: op, .. }) = &mut s.o.operation {
        op.kind = OperationKind::Stop;
    }
    s.step();
    assert_eq!(s.o.status.counts(), "3 running, stopping");
    // One process ended; two are still stopping.
    let first = s.o.instances[0].value.id.clone();
    s.o.statuses.get_mut(&first).unwrap().phase = Phase::Exited;
    s.step();
    assert_eq!(s.o.status.counts(), "2 of 3 left");
    let op = s.o.status.operation.as_ref().unwrap();
    assert!(
        op.message.contains("stopping every instance: 2 of 3 left"),
        "{}",
        op.message
    );
    s.agents(true);
    s.step();
    assert_eq!(s.phase(), OperationPhase::Succeeded);
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
