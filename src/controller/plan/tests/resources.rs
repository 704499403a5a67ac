//! Placement of specs with `resources`: only on nodes that enforce every limit
//! asked, within their memory and CPU; never silently unlimited.

use super::*;
use crate::controller::plan::placement::fits_resources;
use crate::model::node::{Allocatable, CgroupSupport};

const ALL: CgroupSupport = CgroupSupport {
    version: 1,
    memory: true,
    cpu: true,
    pids: true,
};

fn limited(s: &mut Sim, scale: u32, resources: &str) {
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, &format!("  resources: {resources}\n"))),
        revision: 10,
    };
}

fn room(memory: u64, cpu: u64, requested_memory: u64) -> Option<Allocatable> {
    Some(Allocatable {
        memory_bytes: memory,
        cpu_millis: cpu,
        requested_memory_bytes: requested_memory,
        requested_cpu_millis: 0,
    })
}

#[test]
fn resources_without_cgroups_anywhere_fail_to_place_with_a_reason() {
    let mut s = Sim::new(2, &["n1", "n2"]);
    limited(&mut s, 2, "{memory: 64Mi}");
    let p = s.step();
    assert!(p.create.is_empty());
    let f = p.status.condition(ConditionKind::ReplicaFailure).unwrap();
    assert_eq!(f.reason, "Unschedulable");
    assert!(
        f.message.contains("no ready node can enforce them") && f.message.contains("memory"),
        "{}",
        f.message
    );
}

#[test]
fn resources_go_only_to_nodes_with_the_controllers_asked_for() {
    let mut s = Sim::new(3, &["n1", "n2", "n3"]);
    s.o.nodes.get_mut("n1").unwrap().cgroups = Some(ALL);
    s.o.nodes.get_mut("n2").unwrap().cgroups = Some(CgroupSupport { pids: false, ..ALL });
    limited(&mut s, 3, "{memory: 64Mi, pids: 100}");
    let p = s.step();
    assert_eq!(p.create.len(), 3);
    assert!(p.create.iter().all(|r| r.node == "n1"), "{:?}", p.create);
    // Without resources, every node will do.
    let mut s = Sim::new(3, &["n1", "n2", "n3"]);
    let p = s.step();
    assert_eq!(p.create.len(), 3);
    assert!(p.create.iter().any(|r| r.node != "n1"));
}

#[test]
fn resources_fit_in_what_the_node_has_left() {
    let mut s = Sim::new(4, &["n1", "n2"]);
    for n in ["n1", "n2"] {
        let node = s.o.nodes.get_mut(n).unwrap();
        node.cgroups = Some(ALL);
        node.allocatable = room(1 << 30, 2000, 512 << 20);
    }
    limited(&mut s, 4, "{memory: 256Mi, cpu: 500m}");
    let p = s.step();
    assert_eq!(p.create.len(), 4);
    // n2 now reports its two instances' memory: it is full.
    s.agents(true);
    s.o.nodes.get_mut("n2").unwrap().allocatable = room(1 << 30, 2000, 1 << 30);
    limited(&mut s, 6, "{memory: 256Mi, cpu: 500m}");
    s.o.nodes.get_mut("n1").unwrap().allocatable = room(1 << 30, 2000, 1 << 30);
    let p = s.step();
    assert!(p.create.is_empty(), "{:?}", p.create);
    let f = p.status.condition(ConditionKind::ReplicaFailure).unwrap();
    assert!(
        f.message
            .contains("not enough node capacity for resources (memory, cpu)"),
        "{}",
        f.message
    );
}

#[test]
fn the_filter_counts_what_the_plan_adds() {
    let (_, mut n) = node("n1");
    let r: crate::model::Resources = serde_json::from_str(r#"{"cpu": "1"}"#).unwrap();
    assert!(!fits_resources(&n, Some(&r), 0), "no cgroups");
    assert!(fits_resources(&n, None, 0));
    assert!(fits_resources(&n, Some(&Default::default()), 0));
    n.cgroups = Some(ALL);
    n.allocatable = room(1 << 30, 2000, 0);
    assert!(fits_resources(&n, Some(&r), 0));
    assert!(fits_resources(&n, Some(&r), 1));
    assert!(!fits_resources(&n, Some(&r), 2));
    n.cgroups = Some(CgroupSupport { cpu: false, ..ALL });
    assert!(!fits_resources(&n, Some(&r), 0));
}

#[test]
fn changing_resources_makes_a_new_revision() {
    let mut s = Sim::new(1, &["n1"]);
    s.o.nodes.get_mut("n1").unwrap().cgroups = Some(ALL);
    limited(&mut s, 1, "{memory: 64Mi}");
    let p = s.step();
    let first = p.new_revision.as_ref().expect("a first revision");
    assert_eq!(
        first.spec.resources.as_ref().and_then(|r| r.memory),
        Some(crate::model::Memory(64 << 20))
    );
    s.agents(true);
    s.step();
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(1, "  resources: {memory: 128Mi}\n")),
        revision: s.rev,
    };
    let p = s.step();
    let next = p
        .new_revision
        .as_ref()
        .expect("resources are part of the revision");
    assert_eq!(next.revision, 2);
    assert!(p.create.is_empty(), "running instances keep their limits");
}
