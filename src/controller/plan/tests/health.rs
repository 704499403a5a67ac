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
