//! The health gate: which instances an operation may blame for failing its
//! health checks.

use super::*;

#[test]
fn an_instance_unready_before_the_scale_does_not_fail_it() {
    let mut s = Sim::converged(2, &["n1"]);
    let sick = s.o.instances[0].value.id.clone();
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
    let old = s.o.instances[0].value.id.clone();
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
fn a_start_that_failed_fails_the_step_at_once() {
    // A config, secret or key missing: the agent reports the failed start as the
    // instance's last exit, and restarts none (it never started), so the step
    // fails on that exit, not on a restart count that never comes.
    let mut s = Sim::converged(1, &["n1"]);
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    s.step();
    let new = s.o.instances.last().unwrap().value.id.clone();
    let mut st = status(&new, Phase::Pending, false);
    st.pid = None;
    st.last_exit = Some(ExitInfo {
        code: Some(127),
        signal: None,
        at: t(1),
        reason: "cannot start: secret default/db not found".into(),
    });
    s.o.statuses.insert(new, st);
    s.step();
    assert_eq!(s.phase(), OperationPhase::RolledBack);
    assert!(
        s.o.status.last_scale_reason.contains(
            "exited before it was ready: exit code 127 (cannot start: secret default/db not found)"
        ),
        "{}",
        s.o.status.last_scale_reason
    );
}
