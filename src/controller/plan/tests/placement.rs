//! Placement: where new instances go, which ones a scale-down stops, and what
//! the status says when nodes run out.

use super::*;

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
    let unready = s.o.instances[0].value.id.clone();
    s.o.statuses.get_mut(&unready).unwrap().ready = false;
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].value.id, unready);
    s.agents(true);
    let p = s.step();
    assert_eq!(p.remove.len(), 1);
    assert_eq!(s.running(), 2);
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
