//! The census: every instance record of the service, sorted by what the planner
//! must do with it. It runs first because every other concern counts from it,
//! and it removes the records that are finished (so nobody counts them): stopped
//! ones whose process ended, ones on a node gone longer than the grace period,
//! and ones that ended for good once they have held their slot for a while.

use super::{Observed, Plan, PlanConfig, REPLACE_AFTER, UNREPORTED_GRACE, until};
use crate::model::{DesiredState, InstanceRecord, InstanceStatus, Phase, duration};

/// Instances sorted by what the controller must do with them.
pub(super) struct Census<'a> {
    /// `desired: Running` and still counted: up, coming up, or on a node that has
    /// not been gone for the grace period yet.
    pub active: Vec<(&'a InstanceRecord, i64)>,
    /// Every record that still exists after this plan's removals.
    pub remaining: usize,
    /// Ended for good (Exited/Failed), with why: for health gating.
    pub ended: Vec<(&'a InstanceRecord, String)>,
}

impl<'a> Census<'a> {
    /// Sorts the observed records; puts the finished ones in `plan.remove`, and asks
    /// for a requeue when one will be finished later.
    pub fn take(observed: &'a Observed, cfg: &PlanConfig, plan: &mut Plan) -> Census<'a> {
        let mut census = Census {
            active: vec![],
            remaining: 0,
            ended: vec![],
        };
        for (record, revision) in &observed.instances {
            let reported = observed.statuses.get(&record.id);
            let node_alive = observed.nodes.contains_key(&record.node);
            if record.desired == DesiredState::Stopped {
                // Gone once its agent reports the process ended (the agent reports
                // Exited for every stopped record, started or not), or its node is gone
                // (a returning agent stops processes that have no record). A record the
                // agent never reported on is given up after UNREPORTED_GRACE.
                let ended = match reported {
                    Some(status) => !status.phase.is_live(),
                    None => observed.now >= duration::add(record.created_at, UNREPORTED_GRACE),
                };
                if ended || !node_alive {
                    plan.remove.push((record.id.clone(), *revision));
                } else {
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
                if lost >= cfg.node_lost_grace {
                    plan.remove.push((record.id.clone(), *revision));
                    continue;
                }
                plan.requeue(cfg.node_lost_grace - lost);
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
                census.ended.push((record, why));
                // An instance its agent will not restart (policy Never/OnFailure) is
                // replaced, but not before REPLACE_AFTER: a command that fails at once
                // must not turn into a tight create/delete loop.
                let ended_at = status
                    .last_exit
                    .as_ref()
                    .map(|exit| exit.at)
                    .unwrap_or(observed.now);
                let replace_at = duration::add(ended_at, REPLACE_AFTER);
                if observed.now >= replace_at {
                    plan.remove.push((record.id.clone(), *revision));
                    continue;
                }
                plan.requeue(until(observed.now, replace_at));
            }
            census.active.push((record, *revision));
            census.remaining += 1;
        }
        census
    }

    /// Active instances that are ready, on a node that is still there: what
    /// `readyReplicas` and a step's completion count.
    pub fn ready_count(&self, observed: &Observed) -> u32 {
        self.active
            .iter()
            .filter(|(record, _)| {
                observed.nodes.contains_key(&record.node)
                    && observed
                        .statuses
                        .get(&record.id)
                        .is_some_and(|status| status.ready)
            })
            .count() as u32
    }

    /// Active instances whose last report says ready, whether or not their node is
    /// still there: the ones an operation starting now expects to stay ready.
    pub fn ready_ids(&self, observed: &Observed) -> Vec<String> {
        self.active
            .iter()
            .filter(|(record, _)| {
                observed
                    .statuses
                    .get(&record.id)
                    .is_some_and(|status| status.ready)
            })
            .map(|(record, _)| record.id.clone())
            .collect()
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
