//! Rolling updates: a rolling restart (`rune restart --rolling`, any restart of a
//! `Rolling` service) or a rollout of a new spec revision (a spec change of a
//! `Rolling` service). Instances are replaced batch by batch, as a Deployment's
//! RollingUpdate does: start new ones while at most `desired + maxSurge` records
//! exist (stopping ones count: they still hold their process and port), stop old
//! ones only while at least `desired - maxUnavailable` stay available (ready for
//! `minReadySeconds`).
//!
//! Every decision is computed from the instance records alone (written before
//! any process exists) and `status.operation.rolling`, so a controller killed
//! mid-rollout and its successor plan the same next batch: never an instance
//! beyond the surge.
//!
//! A failure (the scale's health rules, the operation's timeout, or no progress
//! for `progressDeadline`) rolls back — the previous revision's template written
//! back into the spec, compare-and-swap on the spec the rollout ran, which then
//! rolls out like any spec change — or pauses, as `onFailure` says.

use std::time::Duration;

use jiff::Timestamp;

mod batch;

use batch::PINNED_NOTE;
pub(super) use batch::converge;

use super::census::Census;
use super::{Observed, health, until};
use crate::model::operation::{RollingProgress, RollingRequest};
use crate::model::revision::template;
use crate::model::{
    ConditionKind, ConditionStatus, InstanceRecord, OnFailure, OperationKind, OperationPhase,
    OperationProgress, OperationRecord, ScaleMode, ServiceSpec, ServiceStatus, StoredService,
    Versioned, duration, limits,
};

/// How long a spec-driven rollout may take in all; `progressDeadline` is what
/// catches a stuck one.
const ROLLOUT_TIMEOUT: Duration = limits::MAX_TIMEOUT;

/// Whether `record` runs `wanted` (the current spec's template): compared by
/// content, so the revision a rollback makes counts as the one it copies.
fn same_template(observed: &Observed, record: &InstanceRecord, wanted: &ServiceSpec) -> bool {
    observed.spec_of(record) == Some(wanted)
}

/// Whether `record` counts as updated by the rolling operation `progress`.
fn updated(
    observed: &Observed,
    progress: &OperationProgress,
    record: &InstanceRecord,
    wanted: &ServiceSpec,
) -> bool {
    progress.counts_as_updated(
        record.operation_id.as_deref(),
        same_template(observed, record, wanted),
    )
}

/// Ready, on a live node, and for at least `min_ready`.
fn available(observed: &Observed, record: &InstanceRecord, min_ready: Duration) -> bool {
    observed.nodes.contains_key(&record.node)
        && observed.statuses.get(&record.id).is_some_and(|status| {
            status.ready
                && status
                    .ready_at
                    .is_some_and(|at| duration::add(at, min_ready) <= observed.now)
        })
}

/// Makes `progress` rolling: the spec's `update:` with `request`'s overrides,
/// towards revision `current`.
pub(super) fn attach(
    progress: &mut OperationProgress,
    request: &RollingRequest,
    stored: &StoredService,
    current: u64,
    status: &ServiceStatus,
    revert: bool,
    now: Timestamp,
) {
    let spec = stored.service.update_settings();
    let (bounds, min_ready) = request.settle(&spec, progress.to);
    progress.rolling = Some(RollingProgress {
        max_surge: bounds.max_surge,
        max_unavailable: bounds.max_unavailable,
        min_ready,
        on_failure: spec.on_failure,
        progress_deadline: spec.progress_deadline,
        update_revision: current,
        previous_revision: status.current_revision.filter(|r| *r != current),
        revert,
        updated: 0,
        last_progress_at: now,
        stopped: 0,
    });
}

/// Whether a restart record runs rolling: asked so, or the spec says `Rolling`.
pub(super) fn request_of(
    record: &OperationRecord,
    stored: &StoredService,
) -> Option<RollingRequest> {
    match (&record.rolling, record.kind) {
        (Some(request), _) => Some(request.clone()),
        (None, OperationKind::Restart) if stored.service.is_rolling() => {
            Some(RollingRequest::default())
        }
        _ => None,
    }
}

/// The rollout a `Rolling` service's spec implies, with its reason: some active
/// instance runs another template than the spec's, and nothing already rolls
/// towards it. Not while another kind of operation runs (it rolls out after), nor
/// after a rollout to this same revision failed (it paused: a cast or a restart
/// resumes).
pub(super) fn implied(
    observed: &Observed,
    census: &Census,
    stored: &StoredService,
    spec_revision: i64,
    current: u64,
    status: &ServiceStatus,
) -> Option<(OperationProgress, String)> {
    if !stored.service.is_rolling() || observed.status.observed_generation == 0 {
        return None;
    }
    let wanted = template(&stored.service);
    let stale = census
        .active
        .iter()
        .filter(|active| !same_template(observed, active.value, &wanted))
        .count();
    if stale == 0 {
        return None;
    }
    let last = status.operation.as_ref();
    if let Some(op) = last.filter(|op| !op.phase.is_terminal()) {
        match &op.rolling {
            Some(rolling) if rolling.update_revision == current => return None,
            Some(_) => {}
            None => return None,
        }
    }
    let last_rolling = last
        .filter(|op| op.phase.is_terminal())
        .and_then(|op| op.rolling.as_ref().map(|r| (op, r)));
    if let Some((op, rolling)) = last_rolling
        && rolling.update_revision == current
        && matches!(op.phase, OperationPhase::Failed)
    {
        return None;
    }
    // The revision a failed rollout wrote back: roll it out, pausing should it fail.
    let revert = last_rolling
        .filter(|(op, _)| op.phase == OperationPhase::RolledBack)
        .filter(|(_, rolling)| rolling.update_revision != current);
    let to = status.desired_replicas;
    let record = OperationRecord {
        id: format!("rollout-{spec_revision}"),
        kind: OperationKind::Rollout,
        from: to,
        to,
        mode: ScaleMode::Immediate,
        step: 1,
        interval: Duration::ZERO,
        rollback_on_fail: false,
        timeout: ROLLOUT_TIMEOUT,
        requested_at: observed.now,
        requested_by: "spec".into(),
        reason: String::new(),
        supersedes: vec![],
        rolling: None,
    };
    let ready = census.ready_ids(observed);
    let mut progress = record.start(
        spec_revision,
        census.active.len() as u32,
        &ready,
        observed.now,
    );
    progress.to = to;
    attach(
        &mut progress,
        &RollingRequest::default(),
        stored,
        current,
        status,
        revert.is_some(),
        observed.now,
    );
    let reason = match revert {
        Some((op, failed)) => format!(
            "rollback: rolling out revision {current}{} after {} failed ({})",
            failed
                .previous_revision
                .map(|n| format!(" (the spec of revision {n})"))
                .unwrap_or_default(),
            op.id,
            op.message
        ),
        None => format!(
            "spec change: rolling out revision {current} to {stale} instance(s) (spec revision \
             {spec_revision})"
        ),
    };
    Some((progress, reason))
}

/// One look at a running rolling operation: `Err` says why it failed; otherwise
/// it succeeds once every instance is updated and available and the old ones are
/// gone, or says when to look again.
pub(super) fn look(
    observed: &Observed,
    census: &Census,
    stored: &StoredService,
    progress: &mut OperationProgress,
) -> Result<Option<Duration>, String> {
    let now = observed.now;
    let wanted = template(&stored.service);
    let Some(rolling) = progress.rolling.clone() else {
        return Ok(None);
    };
    let (new, old): (Vec<&Versioned<&InstanceRecord>>, Vec<_>) = census
        .active
        .iter()
        .partition(|active| updated(observed, progress, active.value, &wanted));
    let new_available = new
        .iter()
        .filter(|active| available(observed, active.value, rolling.min_ready))
        .count() as u32;
    let updated_count = new.len() as u32;
    progress.remaining = census.remaining as u32;
    let mut next = rolling.clone();
    if updated_count != rolling.updated {
        next.updated = updated_count;
        next.last_progress_at = now;
    }
    progress.rolling = Some(next.clone());
    let counts = format!(
        "updated {updated_count}/{}, {new_available} available, {} old",
        progress.to,
        old.len()
    );
    if now >= progress.deadline {
        return Err(format!("timed out: {counts}"));
    }
    if let Some(why) = health::failure(observed, census, progress) {
        return Err(why);
    }
    let stuck_at = duration::add(next.last_progress_at, rolling.progress_deadline);
    if now >= stuck_at {
        return Err(format!(
            "no progress for {} (progressDeadline): {counts}",
            duration::format(rolling.progress_deadline)
        ));
    }
    let fallback = if progress.message.contains(PINNED_NOTE) {
        format!("; {PINNED_NOTE}")
    } else {
        String::new()
    };
    if old.is_empty()
        && updated_count == progress.to
        && new_available == progress.to
        && (census.remaining - census.stranded) as u32 == progress.to
    {
        progress.phase = OperationPhase::Succeeded;
        progress.finished_at = Some(now);
        progress.message = format!(
            "updated {}/{}, every one available{fallback}",
            progress.to, progress.to
        );
        return Ok(None);
    }
    progress.message = format!("{counts}{fallback}");
    // Instances still inside their minReadySeconds become available by time alone.
    let soonest = new
        .iter()
        .filter_map(|active| observed.statuses.get(&active.value.id))
        .filter(|status| status.ready)
        .filter_map(|status| status.ready_at)
        .map(|at| duration::add(at, rolling.min_ready))
        .filter(|at| *at > now)
        .min();
    let wait = soonest.map_or(until(now, stuck_at), |at| {
        until(now, at).min(until(now, stuck_at))
    });
    Ok(Some(wait.min(until(now, progress.deadline))))
}

/// Ends a failed rolling operation as `onFailure` says: a rollout rolls back to
/// the revision it replaced (a compare-and-swap on the spec it ran; a spec
/// written since wins, and the rollout is reported superseded) or pauses; a
/// restart has no other revision to return to, so it stops where it is (its
/// surplus new instances are stopped, the rest keep running).
pub(super) fn fail(
    observed: &Observed,
    stored: &StoredService,
    revision: i64,
    progress: &mut OperationProgress,
    status: &mut ServiceStatus,
    rollback: &mut Option<Versioned<StoredService>>,
    why: String,
) {
    let now = observed.now;
    progress.finished_at = Some(now);
    let Some(rolling) = progress.rolling.clone() else {
        return;
    };
    let where_ = format!("updated {}/{}", rolling.updated, progress.to);
    let on_failure = if rolling.revert {
        OnFailure::Pause
    } else {
        rolling.on_failure
    };
    let previous = rolling.previous_revision.and_then(|n| {
        observed
            .revisions
            .iter()
            .find(|r| r.value.revision == n)
            .map(|r| (n, r.value.spec.clone()))
    });
    // A rollout back to the spec the instances ran (a cast back mid-rollout) has
    // that spec as its previous revision: writing it back would change nothing
    // and roll the same spec out again, failing again, forever. It pauses.
    let wanted = template(&stored.service);
    let previous = previous.filter(|(_, spec)| template(spec) != wanted);
    let rolls_back = on_failure == OnFailure::Rollback && progress.kind == OperationKind::Rollout;
    if rolls_back && revision != progress.spec_revision {
        progress.phase = OperationPhase::Superseded;
        progress.message =
            format!("{why}; not rolled back: the spec changed since (revision {revision})");
        status.record_history(progress, &why);
        return;
    }
    match previous.filter(|_| rolls_back) {
        Some((n, spec)) => {
            let mut back = stored.clone();
            back.service = ServiceSpec {
                scale: Some(status.desired_replicas),
                scaling: stored.service.scaling.clone(),
                disruption: stored.service.disruption.clone(),
                update: stored.service.update.clone(),
                ..spec
            };
            *rollback = Some(Versioned::new(back, progress.spec_revision));
            progress.phase = OperationPhase::RolledBack;
            progress.message = format!("rolled back to revision {n} at {where_}: {why}");
        }
        None => {
            let note = if rolls_back {
                "; no previous revision to roll back to, paused"
            } else if progress.kind == OperationKind::Restart && on_failure == OnFailure::Rollback {
                "; the instances not replaced yet keep running"
            } else {
                "; paused: a cast or a restart resumes"
            };
            progress.phase = OperationPhase::Failed;
            progress.message = format!("failed at {where_}: {why}{note}");
        }
    }
    status.last_scale_at = Some(now);
    status.last_scale_reason = progress.message.clone();
    status.record_history(progress, &why);
}

/// The status's revision fields: `updateRevision` (what new instances run),
/// `updatedReplicas` (active instances on it), and `currentRevision` (the
/// revision every instance ran when they last ran one only); and the
/// `Progressing` condition of a paused rollout.
pub(super) fn report(
    observed: &Observed,
    census: &Census,
    stored: &StoredService,
    current: u64,
    status: &mut ServiceStatus,
) {
    let wanted = template(&stored.service);
    let on_current = census
        .active
        .iter()
        .filter(|active| same_template(observed, active.value, &wanted))
        .count() as u32;
    status.update_revision = Some(current);
    status.updated_replicas = on_current;
    if on_current as usize == census.active.len() && !census.active.is_empty() {
        status.current_revision = Some(current);
    } else if status.current_revision.is_none() {
        status.current_revision = census
            .active
            .iter()
            .map(|active| active.value.revision)
            .min();
    }
    let paused = status
        .operation
        .as_ref()
        .filter(|op| op.phase == OperationPhase::Failed)
        .filter(|op| {
            op.rolling
                .as_ref()
                .is_some_and(|r| r.update_revision == current)
        })
        .filter(|_| (on_current as usize) < census.active.len());
    if let Some(op) = paused {
        let message = format!(
            "{} paused: {}; a cast or a restart resumes",
            op.kind, op.message
        );
        status.set_condition(
            ConditionKind::Progressing,
            ConditionStatus::False,
            "RolloutPaused",
            &message,
            observed.now,
        );
    }
}
