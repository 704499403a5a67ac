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

/// A world of `nodes` running a service with `extra` spec lines at `scale`.
fn with_spec(scale: u32, nodes: &[&str], extra: &str) -> Sim {
    let mut s = Sim::new(scale, nodes);
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, extra)),
        revision: 10,
    };
    s
}

fn label(s: &mut Sim, node: &str, k: &str, v: &str) {
    s.o.nodes
        .get_mut(node)
        .unwrap()
        .labels
        .insert(k.into(), v.into());
}

fn cordon(s: &mut Sim, node: &str, draining: bool) {
    s.o.node_states.insert(
        node.into(),
        NodeState {
            cordoned: true,
            draining,
            by: "me@here".into(),
            at: t(0),
            reason: String::new(),
        },
    );
}

fn nodes_of(p: &Plan) -> Vec<String> {
    let mut nodes: Vec<String> = p.create.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    nodes
}

fn unschedulable(p: &Plan) -> String {
    let c = p
        .status
        .condition(ConditionKind::ReplicaFailure)
        .expect("a ReplicaFailure condition");
    assert_eq!(c.status, crate::model::ConditionStatus::True, "{c:?}");
    assert_eq!(c.reason, "Unschedulable");
    c.message.clone()
}

#[test]
fn node_selector_places_only_on_matching_nodes() {
    let mut s = with_spec(
        4,
        &["n1", "n2", "n3"],
        "  placement:\n    nodeSelector: {disk: ssd}\n",
    );
    label(&mut s, "n1", "disk", "ssd");
    label(&mut s, "n2", "disk", "hdd");
    label(&mut s, "n3", "disk", "ssd");
    label(&mut s, "n3", "zone", "a");
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n1", "n1", "n3", "n3"]);
    assert!(!p.status.is_true(ConditionKind::ReplicaFailure));
}

#[test]
fn no_matching_node_is_unschedulable_and_says_why_then_recovers() {
    let mut s = with_spec(
        3,
        &["n1", "n2", "n3"],
        "  placement:\n    nodeSelector: {disk: ssd}\n",
    );
    cordon(&mut s, "n3", false);
    let p = s.step();
    assert!(p.create.is_empty());
    assert_eq!(
        unschedulable(&p),
        "3 instance(s) not placed: 0 of 3 nodes are available: 1 node cordoned, \
         2 nodes don't match nodeSelector {disk: ssd}"
    );
    assert!(p.requeue_after.is_some());
    // A matching node joins: placed, and the condition turns False.
    s.o.nodes.extend([super::node("n4")]);
    label(&mut s, "n4", "disk", "ssd");
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n4", "n4", "n4"]);
    assert!(!p.status.is_true(ConditionKind::ReplicaFailure));
}

#[test]
fn max_per_node_bounds_each_node_and_reports_the_rest() {
    let mut s = with_spec(5, &["n1", "n2"], "  placement:\n    maxPerNode: 2\n");
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n1", "n1", "n2", "n2"]);
    assert_eq!(
        unschedulable(&p),
        "1 instance(s) not placed: 0 of 2 nodes are available: 2 nodes already run \
         maxPerNode (2) of its instances"
    );
    // Counted with the instances already there.
    let p = s.step();
    assert!(p.create.is_empty());
    s.o.nodes.extend([super::node("n3")]);
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n3"]);
}

#[test]
fn cordoned_and_draining_nodes_take_nothing_new_and_keep_what_they_run() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    cordon(&mut s, "n1", false);
    cordon(&mut s, "n2", true);
    s.scale_op(3, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert!(p.create.is_empty());
    assert!(p.stop.is_empty(), "a cordon stops nothing");
    assert_eq!(
        unschedulable(&p),
        // The one on the draining node wants a replacement too.
        "2 instance(s) not placed: 0 of 2 nodes are available: 1 node cordoned, 1 node draining"
    );
    s.o.node_states.remove("n1");
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n1", "n1"]);
}

#[test]
fn capacity_counts_every_service_on_the_node() {
    let mut s = Sim::new(3, &["n1", "n2"]);
    s.o.nodes.get_mut("n1").unwrap().capacity = 1;
    s.o.nodes.get_mut("n2").unwrap().capacity = 3;
    s.o.nodes.get_mut("n2").unwrap().instances = 2;
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n1", "n2"]);
    assert_eq!(
        unschedulable(&p),
        "1 instance(s) not placed: 0 of 2 nodes are available: 2 nodes at capacity"
    );
}

#[test]
fn placement_is_part_of_the_revision() {
    let mut s = with_spec(
        1,
        &["n1", "n2"],
        "  placement:\n    nodeSelector: {disk: ssd}\n",
    );
    label(&mut s, "n1", "disk", "ssd");
    s.step();
    let first = s.o.revisions.len();
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(1, "  placement:\n    nodeSelector: {disk: hdd}\n")),
        revision: 20,
    };
    let p = s.step();
    assert!(
        p.new_revision.is_some(),
        "a new nodeSelector is a new revision"
    );
    assert!(p.stop.is_empty(), "the running instance stays where it is");
    assert_eq!(s.o.revisions.len(), first + 1);
}

fn stopped_ids(p: &Plan) -> Vec<String> {
    p.stop.iter().map(|r| r.value.id.clone()).collect()
}

#[test]
fn a_drain_starts_replacements_first_and_stops_each_once_one_is_ready() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.extend([super::node("n3")]);
    let on_n1: Vec<String> =
        s.o.instances
            .iter()
            .filter(|i| i.value.node == "n1")
            .map(|i| i.value.id.clone())
            .collect();
    assert_eq!(on_n1.len(), 1);
    cordon(&mut s, "n1", true);
    let p = s.step();
    assert_eq!(
        nodes_of(&p),
        ["n3"],
        "the replacement goes to the empty node"
    );
    assert!(
        p.stop.is_empty(),
        "nothing stops before its replacement is ready"
    );
    s.agents(false);
    let p = s.step();
    assert!(p.stop.is_empty() && p.create.is_empty(), "still not ready");
    s.agents(true);
    let p = s.step();
    assert_eq!(stopped_ids(&p), on_n1);
    assert!(p.create.is_empty());
    s.agents(true);
    s.step();
    assert!(s.o.instances.iter().all(|i| i.value.node != "n1"));
    assert_eq!(s.running(), 2);
}

#[test]
fn a_drain_never_takes_ready_instances_to_min_available_or_below() {
    // Three on n1, which drains; minAvailable 3 holds every stop until more than
    // three are ready, however many replacements are ready.
    let mut s = with_spec(3, &["n1"], "  disruption: {minAvailable: 3}\n");
    s.step();
    s.agents(true);
    s.step();
    s.o.nodes.extend([super::node("n2")]);
    cordon(&mut s, "n1", true);
    let p = s.step();
    assert_eq!(nodes_of(&p), ["n2", "n2", "n2"]);
    // One replacement ready: one old one may go (4 ready, 3 stay).
    s.agents(false);
    let first =
        s.o.instances
            .iter()
            .find(|i| i.value.node == "n2")
            .unwrap()
            .value
            .id
            .clone();
    s.o.statuses.get_mut(&first).unwrap().ready = true;
    for i in s.o.instances.iter().filter(|i| i.value.node == "n1") {
        s.o.statuses.get_mut(&i.value.id).unwrap().ready = true;
    }
    let p = s.step();
    assert_eq!(p.stop.len(), 1, "{:?}", stopped_ids(&p));
    // Every replacement ready: the rest go.
    s.agents(true);
    let p = s.step();
    assert_eq!(p.stop.len(), 2);
}

#[test]
fn a_drain_with_nowhere_to_go_stops_nothing_and_says_why() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    cordon(&mut s, "n1", true);
    cordon(&mut s, "n2", true);
    let p = s.step();
    assert!(p.stop.is_empty());
    assert_eq!(
        unschedulable(&p),
        "2 instance(s) not placed: 0 of 2 nodes are available: 2 nodes draining"
    );
}
