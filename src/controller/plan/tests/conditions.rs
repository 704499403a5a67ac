//! The status a user reads: counts and conditions, for a healthy service and
//! for an invalid spec.

use super::*;

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
fn an_invalid_spec_leaves_instances_alone() {
    let mut s = Sim::converged(2, &["n1"]);
    s.o.spec = SpecState::Invalid(SpecError::new("k", "bad"));
    // Even an instance that ended is not touched while the spec is invalid.
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty() && p.remove.is_empty());
    assert!(p.status.is_true(ConditionKind::SpecInvalid));
    assert_eq!(p.status.ready_replicas, 2);
}
