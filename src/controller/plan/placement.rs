//! Placement: bring the number of active instances to what the operation's step
//! (or the settled scale) asks for. New instances go to the nodes with the fewest
//! of this service, then the fewest overall; a scale-down stops the not-ready
//! first, then the newest, and instances of lost nodes last. Only nodes that fit the
//! service's rules take new instances: not cordoned or draining (`node-state/`), labels
//! matching `placement.nodeSelector`, fewer than `placement.maxPerNode` of the service
//! (one when it pins a port), below the node's capacity. When nodes run out, the
//! `ReplicaFailure` condition (reason `Unschedulable`) says why, node by node, rather
//! than the service silently staying short. A spec with `resources` goes only to
//! nodes whose cgroups enforce every limit it sets, within their memory and CPU left:
//! never silently unlimited.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::census::Census;
use super::{Observed, Plan, PlanConfig};
use crate::model::{
    ConditionKind, ConditionStatus, DesiredState, InstanceRecord, NodeRecord, Resources,
    StoredService, Versioned, node,
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
    // Instances on draining nodes are leaving: they are not counted towards the
    // target (so replacements are placed elsewhere), and they stop as `drain` allows.
    let (drainers, keep): (Vec<_>, Vec<_>) = census
        .active
        .iter()
        .cloned()
        .partition(|active| draining(observed, &active.value.node));
    let active = keep.len() as u32;
    if active > target {
        for victim in victims_among(observed, keep.clone(), (active - target) as usize) {
            plan.stop.push(victim.map(|record| InstanceRecord {
                desired: DesiredState::Stopped,
                ..record.clone()
            }));
        }
        plan.requeue(Duration::from_secs(5));
    }
    drain(observed, stored, &keep, &drainers, target, plan);
    if active < target {
        let want = (target - active) as usize;
        let rules = Rules::of(stored);
        let placed = place(observed, census, want, &rules);
        let operation_id = plan.status.running_operation().map(|op| op.id.clone());
        for node in &placed.chosen {
            let record = new_instance(observed, cfg, stored, node, revision, &operation_id);
            plan.create.push(record);
        }
        if placed.chosen.len() < want {
            let message = unschedulable(observed, want - placed.chosen.len(), &rules, &placed);
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

/// Why `missing` instances found no node, in the words of Kubernetes'
/// FailedScheduling: "0 of 3 nodes are available: 1 node cordoned, 2 nodes don't
/// match nodeSelector {disk: ssd}". Each node is counted once, by the first rule
/// it fails, in the order the rules are checked.
/// The record of a new instance of `stored` on `node`, running `revision`: what
/// every scale-up, replacement and rolling batch writes before anything starts.
pub(super) fn new_instance(
    observed: &Observed,
    cfg: &PlanConfig,
    stored: &StoredService,
    node: &str,
    revision: u64,
    operation_id: &Option<String>,
) -> InstanceRecord {
    InstanceRecord {
        id: (cfg.new_id)(stored.service.name()),
        namespace: stored.service.namespace().to_string(),
        service: stored.service.name().to_string(),
        node: node.to_string(),
        desired: DesiredState::Running,
        revision,
        created_at: observed.now,
        operation_id: operation_id.clone(),
        node_lost: false,
    }
}

pub(super) fn unschedulable(
    observed: &Observed,
    missing: usize,
    rules: &Rules,
    placed: &Placed,
) -> String {
    if observed.nodes.is_empty() {
        return format!("no ready nodes to place {missing} instance(s): is rune-agent running?");
    }
    let mut counts: BTreeMap<Unfit, usize> = BTreeMap::new();
    for why in placed.unfit.values() {
        *counts.entry(*why).or_default() += 1;
    }
    // Resources alone kept them out: say what about them.
    if counts.keys().all(|why| *why == Unfit::Resources)
        && let Some(message) = resources_unschedulable(observed, missing, rules.resources.as_ref())
    {
        return message;
    }
    let nodes = |n: usize| {
        if n == 1 {
            "1 node".to_string()
        } else {
            format!("{n} nodes")
        }
    };
    let reasons: Vec<String> = counts
        .iter()
        .map(|(why, n)| {
            let node_s = nodes(*n);
            let (verb, run) = if *n == 1 {
                ("doesn't", "runs")
            } else {
                ("don't", "run")
            };
            match why {
                Unfit::Cordoned => format!("{node_s} cordoned"),
                Unfit::Draining => format!("{node_s} draining"),
                Unfit::Selector => format!(
                    "{node_s} {verb} match nodeSelector {}",
                    node::format_selector(&rules.selector)
                ),
                Unfit::MaxPerNode if rules.max_per_node.is_none() => format!(
                    "{node_s} already {run} one of its instances (the service pins a port, \
                     so each node runs at most one)"
                ),
                Unfit::MaxPerNode => format!(
                    "{node_s} already {run} maxPerNode ({}) of its instances",
                    rules.limit().unwrap_or(0)
                ),
                Unfit::Full => format!("{node_s} at capacity"),
                Unfit::Resources => format!(
                    "{node_s} cannot enforce or fit its resources (cgroups, memory and CPU left)"
                ),
            }
        })
        .collect();
    let total = observed.nodes.len();
    format!(
        "{missing} instance(s) not placed: {} of {total} nodes are available: {}",
        total - placed.unfit.len(),
        reasons.join(", ")
    )
}

/// Why a node cannot take one more instance of the service (in the order checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Unfit {
    Cordoned,
    Draining,
    Selector,
    MaxPerNode,
    Full,
    Resources,
}

/// The service's placement rules.
pub(super) struct Rules {
    pub selector: BTreeMap<String, String>,
    pub max_per_node: Option<u32>,
    /// A pinned port can be bound once per host: one instance per node then.
    pub one_per_node: bool,
    /// What each instance asks for (cgroup limits).
    pub resources: Option<Resources>,
}

impl Rules {
    pub fn of(stored: &StoredService) -> Rules {
        let placement = stored.service.placement.clone().unwrap_or_default();
        Rules {
            selector: placement.node_selector,
            max_per_node: placement.max_per_node,
            one_per_node: stored.service.ports.iter().any(|port| port.port.is_some()),
            resources: stored.service.resources.clone(),
        }
    }

    /// Most instances of the service on one node, if any limit.
    fn limit(&self) -> Option<u32> {
        match (self.max_per_node, self.one_per_node) {
            (Some(n), true) => Some(n.min(1)),
            (Some(n), false) => Some(n),
            (None, true) => Some(1),
            (None, false) => None,
        }
    }
}

/// Where new instances went, and why the other nodes could take no more.
pub(super) struct Placed {
    pub chosen: Vec<String>,
    /// Nodes that could not take one more when placement stopped.
    pub unfit: BTreeMap<String, Unfit>,
}

/// Whether `node` is being drained (`rune node drain`).
fn draining(observed: &Observed, node: &str) -> bool {
    observed.node_states.get(node).is_some_and(|s| s.draining)
}

/// Stops instances of draining nodes, start-first: each one only once a ready
/// instance elsewhere stands in for it (ready instances off draining nodes beyond
/// what `target` needs besides the drainers), and a ready one only while more than
/// `disruption.minAvailable` are ready. Not-ready ones go first, then the oldest.
fn drain(
    observed: &Observed,
    stored: &StoredService,
    keep: &[Versioned<&InstanceRecord>],
    drainers: &[Versioned<&InstanceRecord>],
    target: u32,
    plan: &mut Plan,
) {
    if drainers.is_empty() {
        return;
    }
    let ready = |record: &InstanceRecord| {
        observed
            .statuses
            .get(&record.id)
            .is_some_and(|status| status.ready)
    };
    let ready_keep = keep.iter().filter(|active| ready(active.value)).count();
    let mut ready_total = ready_keep + drainers.iter().filter(|a| ready(a.value)).count();
    let min_available = stored
        .service
        .disruption
        .as_ref()
        .map_or(0, |d| d.min_available as usize);
    // Replacements still missing (not placed or not ready) hold as many drainers.
    let missing = (target as usize).saturating_sub(ready_keep);
    let mut budget = drainers.len().saturating_sub(missing);
    let mut order = drainers.to_vec();
    order.sort_by_key(|active| (ready(active.value), active.value.created_at));
    for leaving in order {
        if budget == 0 {
            break;
        }
        let was_ready = ready(leaving.value);
        if was_ready && ready_total <= min_available {
            continue;
        }
        budget -= 1;
        if was_ready {
            ready_total -= 1;
        }
        plan.stop.push(leaving.map(|record| InstanceRecord {
            desired: DesiredState::Stopped,
            ..record.clone()
        }));
    }
    plan.requeue(Duration::from_secs(2));
}

/// The `n` instances a scale-down removes: not-ready first, then the newest.
pub(super) fn victims<'a>(
    observed: &Observed,
    census: &Census<'a>,
    n: usize,
) -> Vec<Versioned<&'a InstanceRecord>> {
    victims_among(observed, census.active.clone(), n)
}

/// [`victims`] among `all`.
pub(super) fn victims_among<'a>(
    observed: &Observed,
    mut all: Vec<Versioned<&'a InstanceRecord>>,
    n: usize,
) -> Vec<Versioned<&'a InstanceRecord>> {
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

/// Picks nodes for `want` new instances: only nodes that fit the rules (not
/// cordoned or draining, labels matching, under `maxPerNode` and capacity); of those
/// the fewest of this service, then the fewest overall.
pub(super) fn place(observed: &Observed, census: &Census, want: usize, rules: &Rules) -> Placed {
    let mut mine: HashMap<&str, u32> = HashMap::new();
    for active in &census.active {
        *mine.entry(active.value.node.as_str()).or_default() += 1;
    }
    // A pinned port stays bound until a stopping instance's process is gone.
    if rules.one_per_node {
        for stopping in &census.stopping {
            *mine.entry(stopping.node.as_str()).or_default() += 1;
        }
    }
    let mut total: HashMap<&str, u32> = observed
        .nodes
        .iter()
        .map(|(name, node)| (name.as_str(), node.instances))
        .collect();
    let limit = rules.limit();
    // Placed on each node by this plan: what their resources add to the node's.
    let mut added: HashMap<&str, u32> = HashMap::new();
    let unfit = |name: &str,
                 node: &NodeRecord,
                 mine: &HashMap<&str, u32>,
                 total: &HashMap<&str, u32>,
                 added: &HashMap<&str, u32>| {
        if let Some(state) = observed.node_states.get(name) {
            if state.draining {
                return Some(Unfit::Draining);
            }
            if state.cordoned {
                return Some(Unfit::Cordoned);
            }
        }
        if !node::selector_matches(&rules.selector, &node.labels) {
            return Some(Unfit::Selector);
        }
        if limit.is_some_and(|limit| mine.get(name).copied().unwrap_or(0) >= limit) {
            return Some(Unfit::MaxPerNode);
        }
        if node.capacity != 0 && total[name] >= node.capacity {
            return Some(Unfit::Full);
        }
        let added = added.get(name).copied().unwrap_or(0);
        if !fits_resources(node, rules.resources.as_ref(), added) {
            return Some(Unfit::Resources);
        }
        None
    };
    let mut chosen = Vec::new();
    for _ in 0..want {
        let best = observed
            .nodes
            .iter()
            .filter(|(name, node)| unfit(name, node, &mine, &total, &added).is_none())
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
    let unfit = if chosen.len() < want {
        observed
            .nodes
            .iter()
            .filter_map(|(name, node)| {
                Some((name.clone(), unfit(name, node, &mine, &total, &added)?))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    Placed { chosen, unfit }
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
