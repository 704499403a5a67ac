//! The census: every instance record of the service, sorted by what the planner
//! must do with it. It runs first because every other concern counts from it,
//! and it removes the records that are finished (so nobody counts them): stopped
//! ones whose process ended, and ones that ended for good once they have held
//! their slot for a while. Records on a lost node are never removed here: only
//! their agent can say the process ended (or an operator, with `rune node
//! forget`). Past the grace period a running one is given up (`node_lost`) and
//! replaced, unless too many nodes are lost at once.

use std::time::Duration;

use super::{Observed, Plan, PlanConfig, UNREPORTED_GRACE, replace_after, until};
use crate::model::{DesiredState, InstanceRecord, InstanceStatus, Phase, Versioned, duration};

/// Instances sorted by what the controller must do with them.
pub(super) struct Census<'a> {
    /// `desired: Running` and still counted: up, coming up, or on a node that has
    /// not been gone for the grace period yet.
    pub active: Vec<Versioned<&'a InstanceRecord>>,
    /// Every record that still exists after this plan's removals.
    pub remaining: usize,
    /// Ended for good (Exited/Failed), with why: for health gating.
    pub ended: Vec<(&'a InstanceRecord, String)>,
    /// Asked to stop while their node is lost: nobody can confirm they stopped.
    /// Whatever promises that every process is gone (a stop, a restart's first
    /// step, a deletion) waits for them until the node's agent returns or the
    /// node is forgotten.
    pub unconfirmed: Vec<&'a InstanceRecord>,
    /// Asked to stop, on a live node, and not ended yet: they still hold their
    /// process (and a pinned port) until their agent reports them gone.
    pub stopping: Vec<&'a InstanceRecord>,
    /// Those of `unconfirmed` given up with their node (`node_lost`) and replaced:
    /// unlike the others they are not in `remaining`, so scaling goes on without
    /// them.
    pub lost: usize,
    /// Those of `unconfirmed` still in `remaining` whose node has been gone for the
    /// grace period: a rolling operation does not wait on them (see `rolling`).
    pub stranded: usize,
}

impl<'a> Census<'a> {
    /// Sorts the observed records; puts the finished ones in `plan.remove`, and asks
    /// for a requeue when one will be finished later.
    pub fn take(observed: &'a Observed, cfg: &PlanConfig, plan: &mut Plan) -> Census<'a> {
        let mut census = Census {
            active: vec![],
            remaining: 0,
            ended: vec![],
            unconfirmed: vec![],
            stopping: vec![],
            lost: 0,
            stranded: 0,
        };
        for instance in &observed.instances {
            let record = &instance.value;
            let reported = observed.statuses.get(&record.id);
            let node_alive = observed.nodes.contains_key(&record.node);
            if record.desired == DesiredState::Stopped {
                if !node_alive {
                    // Its agent is the only one who can stop it and say so.
                    census.unconfirmed.push(record);
                    if record.node_lost {
                        census.lost += 1;
                    } else {
                        census.remaining += 1;
                        let lost = observed.node_lost_for.get(&record.node);
                        if lost.is_some_and(|lost| *lost >= cfg.node_lost_grace) {
                            census.stranded += 1;
                        }
                    }
                    continue;
                }
                // Gone once its agent reports the process ended (the agent reports
                // Exited for every stopped record, started or not). A record the
                // agent never reported on is given up after UNREPORTED_GRACE.
                let ended = match reported {
                    Some(status) => !status.phase.is_live(),
                    None => observed.now >= duration::add(record.created_at, UNREPORTED_GRACE),
                };
                if ended {
                    plan.remove
                        .push(Versioned::new(record.id.clone(), instance.revision));
                } else {
                    census.stopping.push(record);
                    census.remaining += 1;
                }
                continue;
            }
            if !node_alive {
                let lost = observed
                    .node_lost_for
                    .get(&record.node)
                    .copied()
                    .unwrap_or_default();
                if lost >= cfg.node_lost_grace && observed.disruption.is_none() {
                    // Replaced elsewhere; the record stays (Unknown) so that the
                    // returning agent stops the process, and nobody thinks it gone.
                    plan.stop
                        .push(instance.as_ref().map(|record| InstanceRecord {
                            desired: DesiredState::Stopped,
                            node_lost: true,
                            ..record.clone()
                        }));
                    census.unconfirmed.push(record);
                    census.lost += 1;
                    continue;
                }
                let wait = cfg.node_lost_grace.saturating_sub(lost);
                plan.requeue(if observed.disruption.is_some() {
                    Duration::from_secs(10)
                } else {
                    wait
                });
            }
            if let Some(status) = reported
                && matches!(status.phase, Phase::Exited | Phase::Failed)
            {
                let why = if status.ready_at.is_none() {
                    "exited before it was ready"
                } else {
                    "exited"
                };
                let why = format!("instance {} {why}: {}", record.id, how_it_ended(status));
                census.ended.push((record, why.clone()));
                // An instance its agent will not restart (policy Never/OnFailure) is
                // replaced, after a back-off that grows with each one in a row.
                let ended_at = status
                    .last_exit
                    .as_ref()
                    .map(|exit| exit.at)
                    .unwrap_or(observed.now);
                let failures = plan.status.consecutive_failures;
                let replace_at = duration::add(ended_at, replace_after(failures));
                if observed.now >= replace_at {
                    plan.remove
                        .push(Versioned::new(record.id.clone(), instance.revision));
                    plan.status.consecutive_failures = failures.saturating_add(1);
                    plan.status.last_failure = why;
                    continue;
                }
                plan.requeue(until(observed.now, replace_at));
            }
            census.active.push(instance.as_ref());
            census.remaining += 1;
        }
        census
    }

    /// Active instances that are ready, on a node that is still there: what
    /// `readyReplicas` and a step's completion count.
    pub fn ready_count(&self, observed: &Observed) -> u32 {
        self.active
            .iter()
            .filter(|active| {
                observed.nodes.contains_key(&active.value.node)
                    && observed
                        .statuses
                        .get(&active.value.id)
                        .is_some_and(|status| status.ready)
            })
            .count() as u32
    }

    /// Active instances whose last report says ready, whether or not their node is
    /// still there: the ones an operation starting now expects to stay ready.
    pub fn ready_ids(&self, observed: &Observed) -> Vec<String> {
        self.active
            .iter()
            .filter(|active| {
                observed
                    .statuses
                    .get(&active.value.id)
                    .is_some_and(|status| status.ready)
            })
            .map(|active| active.value.id.clone())
            .collect()
    }
}

impl Census<'_> {
    /// Records that still exist, for a step that promises none is left (target
    /// 0): given-up ones count too, since nobody confirmed their process ended.
    pub fn left_for_target(&self, target: u32) -> u32 {
        let left = self.remaining as u32;
        if target == 0 {
            left + self.lost as u32
        } else {
            left
        }
    }

    /// Why an operation still waits on instances of lost nodes, naming the nodes
    /// and the instances; `None` when it does not.
    pub fn waiting_on_lost_nodes(&self) -> Option<String> {
        if self.unconfirmed.is_empty() {
            return None;
        }
        let mut by_node: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for record in &self.unconfirmed {
            by_node
                .entry(record.node.as_str())
                .or_default()
                .push(record.id.as_str());
        }
        let parts: Vec<String> = by_node
            .iter()
            .map(|(node, ids)| format!("node {node} ({})", ids.join(", ")))
            .collect();
        let nodes: Vec<&str> = by_node.keys().copied().collect();
        Some(format!(
            "{} instance(s) on lost {}: {}; their agent must confirm they stopped, or \
             `rune node forget {}` declares them gone",
            self.unconfirmed.len(),
            if nodes.len() == 1 { "node" } else { "nodes" },
            parts.join("; "),
            nodes.join(" ")
        ))
    }
}

/// The last exit as people read it (`exit code 3`), or `ended` when none is known.
pub(super) fn how_it_ended(status: &InstanceStatus) -> String {
    status
        .last_exit
        .as_ref()
        .map(|exit| exit.to_string())
        .unwrap_or_else(|| "ended".into())
}
