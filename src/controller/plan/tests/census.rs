//! The census: finished records are removed, but only once they are finished:
//! after a lost node's grace, an ended instance's pause, or its agent's report.

use super::*;

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
