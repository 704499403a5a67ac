//! Placement: bring the number of active instances to what the operation's step
//! (or the settled scale) asks for. New instances go to the nodes with the fewest
//! of this service, then the fewest overall; a scale-down stops the not-ready
//! first, then the newest, and instances of lost nodes last. When nodes run out, the `ReplicaFailure` condition says
//! why, rather than the service silently staying short.

use std::collections::HashMap;
use std::time::Duration;

use super::census::Census;
use super::{Observed, Plan, PlanConfig};
use crate::model::{
    ConditionKind, ConditionStatus, DesiredState, InstanceRecord, NodeRecord, Resources,
    StoredService, Versioned,
};

/// Creates (on spec revision `revision`) or stops instances until `target` are
/// active.
pub(super) fn converge(
    observed: &Observed,
    cfg: &PlanConfig,
    census: &Census,
    stored: &StoredService,
    revision: u64,
    target: u32,
    plan: &mut Plan,
) {
    let active = census.active.len() as u32;
    if active > target {
        for victim in victims(observed, census, (active - target) as usize) {
            plan.stop.push(victim.map(|record| InstanceRecord {
                desired: DesiredState::Stopped,
                ..record.clone()
            }));
        }
        plan.requeue(Duration::from_secs(5));
    }
    if active < target {
        let want = (target - active) as usize;
        // A pinned port can be bound once per host: one instance per node then.
        let one_per_node = stored.service.ports.iter().any(|port| port.port.is_some());
        let resources = stored.service.resources.as_ref();
        let placed = place(observed, census, want, one_per_node, resources);
        let operation_id = plan.status.running_operation().map(|op| op.id.clone());
        for node in &placed {
            plan.create.push(InstanceRecord {
                id: (cfg.new_id)(stored.service.name()),
                namespace: stored.service.namespace().to_string(),
                service: stored.service.name().to_string(),
                node: node.clone(),
                desired: DesiredState::Running,
                revision,
                created_at: observed.now,
                operation_id: operation_id.clone(),
                node_lost: false,
            });
        }
        if placed.len() < want {
            let message = resources_unschedulable(observed, want - placed.len(), resources)
                .unwrap_or_else(|| unschedulable(observed, want - placed.len(), one_per_node));
            plan.status.set_condition(
                ConditionKind::ReplicaFailure,
                ConditionStatus::True,
                "Unschedulable",
                &message,
                observed.now,
            );
            plan.requeue(Duration::from_secs(5));
            return;
        }
    }
    plan.status.set_condition(
        ConditionKind::ReplicaFailure,
        ConditionStatus::False,
        "Scheduled",
        "",
        observed.now,
    );
}

/// Why `missing` instances found no node.
fn unschedulable(observed: &Observed, missing: usize, one_per_node: bool) -> String {
    if observed.nodes.is_empty() {
        format!("no ready nodes to place {missing} instance(s): is rune-agent running?")
    } else if one_per_node {
        format!(
            "{missing} instance(s) not placed: the service pins a port, so each node runs at most one of its instances"
        )
    } else {
        format!("not enough node capacity for {missing} instance(s)")
    }
}

/// The `n` instances a scale-down removes: not-ready first, then the newest.
pub(super) fn victims<'a>(
    observed: &Observed,
    census: &Census<'a>,
    n: usize,
) -> Vec<Versioned<&'a InstanceRecord>> {
    let mut all = census.active.clone();
    all.sort_by_key(|active| {
        let record = active.value;
        let ready = observed
            .statuses
            .get(&record.id)
            .is_some_and(|status| status.ready);
        // Instances on a lost node go last: nobody could confirm they stopped, so
        // choosing them would hold the scale-down up until the node returns.
        let node_lost = !observed.nodes.contains_key(&record.node);
        (node_lost, ready, std::cmp::Reverse(record.created_at))
    });
    all.truncate(n);
    all
}

/// Picks nodes for `want` new instances: fewest of this service, then fewest overall.
fn place(
    observed: &Observed,
    census: &Census,
    want: usize,
    one_per_node: bool,
    resources: Option<&Resources>,
) -> Vec<String> {
    let mut added: HashMap<&str, u32> = HashMap::new();
    let mut mine: HashMap<&str, u32> = HashMap::new();
    for active in &census.active {
        *mine.entry(active.value.node.as_str()).or_default() += 1;
    }
    let mut total: HashMap<&str, u32> = observed
        .nodes
        .iter()
        .map(|(name, node)| (name.as_str(), node.instances))
        .collect();
    let mut chosen = Vec::new();
    for _ in 0..want {
        let best = observed
            .nodes
            .iter()
            .filter(|(name, node)| node.capacity == 0 || total[name.as_str()] < node.capacity)
            .filter(|(name, _)| !one_per_node || mine.get(name.as_str()).copied().unwrap_or(0) == 0)
            .filter(|(name, node)| {
                fits_resources(
                    node,
                    resources,
                    added.get(name.as_str()).copied().unwrap_or(0),
                )
            })
            .min_by_key(|(name, _)| {
                (
                    mine.get(name.as_str()).copied().unwrap_or(0),
                    total[name.as_str()],
                    name.as_str(),
                )
            });
        let Some((name, _)) = best else { break };
        *mine.entry(name.as_str()).or_default() += 1;
        *added.entry(name.as_str()).or_default() += 1;
        *total.get_mut(name.as_str()).unwrap() += 1;
        chosen.push(name.clone());
    }
    chosen
}

/// Whether `node` can take one more instance asking for `resources`, `added` of
/// which this plan already put there: it must enforce every limit asked (a cgroup
/// controller for each: never silently unlimited), and the memory and CPU asked
/// must fit in what it has left (its agent reports what its instances ask for).
/// A spec without `resources` fits anywhere.
pub(super) fn fits_resources(node: &NodeRecord, resources: Option<&Resources>, added: u32) -> bool {
    let Some(r) = resources.filter(|r| !r.is_empty()) else {
        return true;
    };
    let Some(cgroups) = &node.cgroups else {
        return false;
    };
    if !cgroups.missing(r).is_empty() {
        return false;
    }
    let Some(room) = &node.allocatable else {
        return true;
    };
    let n = u64::from(added) + 1;
    let memory = r.memory.is_none_or(|m| {
        room.requested_memory_bytes
            .saturating_add(m.0.saturating_mul(n))
            <= room.memory_bytes
    });
    let cpu = r.cpu.is_none_or(|c| {
        room.requested_cpu_millis
            .saturating_add(u64::from(c.0).saturating_mul(n))
            <= room.cpu_millis
    });
    memory && cpu
}

/// Why `missing` instances with `resources` found no node, when that is why.
fn resources_unschedulable(
    observed: &Observed,
    missing: usize,
    resources: Option<&Resources>,
) -> Option<String> {
    let r = resources.filter(|r| !r.is_empty())?;
    if observed.nodes.is_empty() {
        return None;
    }
    let asked: Vec<&str> = [
        r.memory.map(|_| "memory"),
        r.cpu.map(|_| "cpu"),
        r.pids.map(|_| "pids"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let enforcing = observed
        .nodes
        .values()
        .filter(|n| n.cgroups.is_some_and(|c| c.missing(r).is_empty()))
        .count();
    Some(if enforcing == 0 {
        format!(
            "{missing} instance(s) not placed: the spec sets resources ({}) and no ready node \
             can enforce them (no cgroup controller for it; see rune-agent --cgroup-parent); \
             instances never run without the limits they ask for",
            asked.join(", ")
        )
    } else {
        format!(
            "{missing} instance(s) not placed: not enough node capacity for resources ({}) on \
             the {enforcing} node(s) that enforce them",
            asked.join(", ")
        )
    })
}
