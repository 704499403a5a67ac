//! The batches of a rolling operation: which new instances to create and which
//! old ones to stop on this look, so that at most `desired + maxSurge` records
//! exist (stopping ones count: they hold their process and port) and at least
//! `desired - maxUnavailable` stay available. Computed from the records alone,
//! which exist before any process, so a successor controller plans the same batch.

use std::time::Duration;

use super::super::census::Census;
use super::super::placement::{Rules, new_instance, place, unschedulable, victims_among};
use super::super::{Plan, PlanConfig};
use super::{Observed, available, updated};
use crate::model::revision::template;
use crate::model::{ConditionKind, ConditionStatus, DesiredState, InstanceRecord, StoredService};

/// What the operation's message says while a pinned port keeps it from surging.
pub(super) const PINNED_NOTE: &str = "the service pins a port and no node is free to start a new instance \
                           beside an old one: replacing one at a time (stop one, then start one)";

/// Creates and stops the next batch of a running rolling operation.
pub(in crate::controller::plan) fn converge(
    observed: &Observed,
    cfg: &PlanConfig,
    census: &Census,
    stored: &StoredService,
    revision: u64,
    plan: &mut Plan,
) {
    let Some(progress) = plan.status.running_operation().cloned() else {
        return;
    };
    let Some(rolling) = progress.rolling.clone() else {
        return;
    };
    let wanted = template(&stored.service);
    let desired = progress.to as usize;
    let (new, old): (Vec<_>, Vec<_>) = census
        .active
        .iter()
        .cloned()
        .partition(|active| updated(observed, &progress, active.value, &wanted));
    // Old ones stopped on a node lost since (past its grace) hold nothing a live
    // node could give: waiting on them would stall the rollout until the node
    // returns, then fail it at its progressDeadline and roll a healthy revision back.
    let total = census.remaining - census.stranded;
    let rules = Rules::of(stored);
    // Start new ones while at most desired + maxSurge records exist.
    let creatable = (desired + rolling.max_surge as usize)
        .saturating_sub(total)
        .min(desired.saturating_sub(new.len()));
    let placed = place(observed, census, creatable, &rules);
    let operation_id = Some(progress.id.clone());
    for node in &placed.chosen {
        let record = new_instance(observed, cfg, stored, node, revision, &operation_id);
        plan.create.push(record);
    }
    // A pinned port cannot surge on a node that runs an old instance: when no
    // node is free, make room by stopping one first.
    let pinned_fallback = rules.one_per_node && placed.chosen.len() < creatable;
    let max_unavailable = if pinned_fallback {
        rolling.max_unavailable.max(1)
    } else {
        rolling.max_unavailable
    } as usize;
    let is_available = |record: &InstanceRecord| available(observed, record, rolling.min_ready);
    // Stop old ones while at least desired - maxUnavailable stay available; new
    // ones not available yet hold back as many stops.
    let min_available = desired.saturating_sub(max_unavailable);
    let new_unavailable = new.iter().filter(|a| !is_available(a.value)).count();
    let mut budget = census
        .active
        .len()
        .saturating_sub(min_available + new_unavailable);
    let mut available_total = census
        .active
        .iter()
        .filter(|a| is_available(a.value))
        .count();
    let mut order = old.clone();
    order.sort_by_key(|a| (is_available(a.value), a.value.created_at));
    let mut stops = vec![];
    for leaving in order {
        if budget == 0 {
            break;
        }
        if is_available(leaving.value) {
            if available_total <= min_available {
                continue;
            }
            available_total -= 1;
        }
        budget -= 1;
        stops.push(leaving);
    }
    // More updated instances than desired (the scale went down meanwhile).
    if new.len() > desired {
        stops.extend(victims_among(observed, new.clone(), new.len() - desired));
    }
    let stopped = stops.len() as u32;
    for leaving in stops {
        plan.stop.push(leaving.map(|record| InstanceRecord {
            desired: DesiredState::Stopped,
            ..record.clone()
        }));
    }
    if let Some(op) = plan.status.operation.as_mut() {
        if let Some(r) = op.rolling.as_mut()
            && stopped > 0
        {
            r.stopped += stopped;
            r.last_progress_at = observed.now;
        }
        if pinned_fallback && !op.message.contains(PINNED_NOTE) {
            op.message = format!("{}; {PINNED_NOTE}", op.message);
        }
    }
    if placed.chosen.len() < creatable && !pinned_fallback {
        // No node takes a new instance (cordoned, selectors, capacity): say why,
        // as a scale would; the rollout waits (and fails at its progressDeadline).
        let missing = creatable - placed.chosen.len();
        let message = unschedulable(observed, missing, &rules, &placed);
        plan.status.set_condition(
            ConditionKind::ReplicaFailure,
            ConditionStatus::True,
            "Unschedulable",
            &message,
            observed.now,
        );
    } else {
        plan.status.set_condition(
            ConditionKind::ReplicaFailure,
            ConditionStatus::False,
            "Scheduled",
            "",
            observed.now,
        );
    }
    plan.requeue(Duration::from_secs(2));
}
