//! What the status reports besides the operation: the replica counts, the
//! conditions (SpecInvalid, Available, Progressing) and the stable scale a
//! rollback returns to. Kept apart so the status a user reads is decided in one
//! place, after the other concerns made their writes.

use std::time::Duration;

use super::census::Census;
use super::{MAX_REPLACE_AFTER, Observed, Plan, replace_after};
use crate::model::{ConditionKind, ConditionStatus, ServiceStatus, duration};

/// A valid spec: the status reflects its revision, and the service has been seen.
pub(super) fn spec_valid(observed: &Observed, revision: i64, status: &mut ServiceStatus) {
    status.observed_generation = revision;
    status.first_seen_at.get_or_insert(observed.now);
    status.set_condition(
        ConditionKind::SpecInvalid,
        ConditionStatus::False,
        "Valid",
        "",
        observed.now,
    );
}

/// A spec that does not parse: say why (`error`).
pub(super) fn spec_invalid(observed: &Observed, error: &str, status: &mut ServiceStatus) {
    status.set_condition(
        ConditionKind::SpecInvalid,
        ConditionStatus::True,
        "ParseError",
        error,
        observed.now,
    );
}

/// Fills the replica counts: current (every active instance) and ready.
pub(super) fn count_replicas(observed: &Observed, census: &Census, status: &mut ServiceStatus) {
    status.current_replicas = census.active.len() as u32;
    status.ready_replicas = census.ready_count(observed);
}

/// The `NodeLost` condition: which instances sit on lost nodes, and whether
/// replacements wait for the grace period, are paused by a disruption, or happened.
pub(super) fn node_lost(observed: &Observed, census: &Census, status: &mut ServiceStatus) {
    let unknown: Vec<&str> = census
        .active
        .iter()
        .filter(|active| !observed.nodes.contains_key(&active.value.node))
        .map(|active| active.value.id.as_str())
        .collect();
    if unknown.is_empty() && census.unconfirmed.is_empty() && census.lost == 0 {
        if status.condition(ConditionKind::NodeLost).is_some() {
            status.set_condition(
                ConditionKind::NodeLost,
                ConditionStatus::False,
                "AllNodesReady",
                "",
                observed.now,
            );
        }
        return;
    }
    let (reason, mut message) = match &observed.disruption {
        Some(why) if !unknown.is_empty() => ("ReplacementsPaused", why.clone()),
        _ if !unknown.is_empty() => (
            "WaitingForGrace",
            format!(
                "{} instance(s) on lost nodes ({}): replaced if their node stays lost",
                unknown.len(),
                unknown.join(", ")
            ),
        ),
        _ => (
            "Replaced",
            format!(
                "{} instance(s) of lost nodes were replaced; their state stays unknown until \
                 their agent returns",
                census.lost
            ),
        ),
    };
    if let Some(why) = census.waiting_on_lost_nodes() {
        message = format!("{message}; {why}");
    }
    status.set_condition(
        ConditionKind::NodeLost,
        ConditionStatus::True,
        reason,
        &message,
        observed.now,
    );
}

/// The `InstancesFailing` condition: instances keep ending for good and their
/// replacements are backed off (CrashLoopBackOff).
pub(super) fn failing(observed: &Observed, status: &mut ServiceStatus) {
    let failures = status.consecutive_failures;
    if failures == 0 {
        if status.is_true(ConditionKind::InstancesFailing) {
            status.set_condition(
                ConditionKind::InstancesFailing,
                ConditionStatus::False,
                "Recovered",
                "",
                observed.now,
            );
        }
        return;
    }
    let message = format!(
        "{failures} instance(s) in a row ended for good (the last: {}); each replacement \
         waits longer (now {}, up to {})",
        status.last_failure,
        duration::format(replace_after(failures)),
        duration::format(MAX_REPLACE_AFTER)
    );
    status.set_condition(
        ConditionKind::InstancesFailing,
        ConditionStatus::True,
        "CrashLoopBackOff",
        &message,
        observed.now,
    );
}

/// After a plan: the stable and last non-zero scales, the Available and Progressing
/// conditions, and a requeue while the service still converges.
pub(super) fn settle(observed: &Observed, plan: &mut Plan) {
    let status = &mut plan.status;
    let running = status.running_operation().is_some();
    let converged = status.current_replicas == status.desired_replicas
        && status.ready_replicas == status.desired_replicas
        && plan.stop.is_empty()
        && plan.create.is_empty();
    if converged && !running {
        status.stable_replicas = Some(status.desired_replicas);
    }
    if converged {
        // Every instance is ready: whatever failed before is forgiven.
        status.consecutive_failures = 0;
        status.last_failure.clear();
    }
    if status.desired_replicas > 0 {
        status.last_nonzero_replicas = Some(status.desired_replicas);
    }
    let (available, reason) = if status.ready_replicas >= status.desired_replicas {
        (ConditionStatus::True, "MinimumReplicasAvailable")
    } else {
        (ConditionStatus::False, "ReplicasNotReady")
    };
    let counts = format!(
        "{} of {} ready",
        status.ready_replicas, status.desired_replicas
    );
    status.set_condition(
        ConditionKind::Available,
        available,
        reason,
        &counts,
        observed.now,
    );
    if running {
        let message = status
            .operation
            .as_ref()
            .map(|op| op.message.clone())
            .unwrap_or_default();
        status.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::True,
            "OperationInProgress",
            &message,
            observed.now,
        );
    } else if converged {
        status.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::False,
            "Complete",
            "",
            observed.now,
        );
    } else {
        status.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::True,
            "Converging",
            &counts,
            observed.now,
        );
        plan.requeue(Duration::from_secs(10));
    }
}
