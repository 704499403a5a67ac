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
    ConditionKind, ConditionStatus, DesiredState, InstanceRecord, StoredService, Versioned,
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
        let placed = place(observed, census, want, one_per_node);
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
            let message = unschedulable(observed, want - placed.len(), one_per_node);
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
fn place(observed: &Observed, census: &Census, want: usize, one_per_node: bool) -> Vec<String> {
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
            .min_by_key(|(name, _)| {
                (
                    mine.get(name.as_str()).copied().unwrap_or(0),
                    total[name.as_str()],
                    name.as_str(),
                )
            });
        let Some((name, _)) = best else { break };
        *mine.entry(name.as_str()).or_default() += 1;
        *total.get_mut(name.as_str()).unwrap() += 1;
        chosen.push(name.clone());
    }
    chosen
}
