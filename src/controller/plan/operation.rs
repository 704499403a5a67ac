//! The operation state machine: take up the operation a CLI wrote (or the one a
//! spec write implies), then on every reconcile look at its current step: fail it
//! (deadline, health), wait for it, hold the interval, move on, or succeed. A
//! failed operation rolls back, is pinned, or is reported superseded.
//!
//! Everything it knows lives in `status.operation`, written back with every plan,
//! so a new leader resumes mid-plan. The arithmetic (how many steps, each step's
//! target, the deadline) is `model::operation`'s, shared with the CLI; this file
//! only decides when to move.

use std::time::Duration;

use jiff::Timestamp;

use super::census::Census;
use super::{Observed, Plan, health, rolling, until};
use crate::model::{
    OperationKind, OperationPhase, OperationProgress, OperationRecord, ScalePlan, ServiceStatus,
    StoredService, Versioned, duration,
};

/// Starts the operation a CLI wrote, or the one a spec write implies (GitOps).
pub(super) fn take_up(
    observed: &Observed,
    census: &Census,
    stored: &StoredService,
    revision: i64,
    current: u64,
    status: &mut ServiceStatus,
) {
    let ready = census.ready_ids(observed);
    if let Some(Versioned {
        value: record,
        revision: record_revision,
    }) = &observed.operation
        && *record_revision > status.observed_operation
    {
        status.observed_operation = *record_revision;
        // A record that already ran while its time ran out is history (the status
        // that knew was lost): never run an old restart again. One that nothing
        // ran yet runs, late if need be, with its own parameters.
        if !record.is_history(observed.now, created_instances(observed, &record.id)) {
            let mut progress = record.start(
                *record_revision,
                status.current_replicas,
                &ready,
                observed.now,
            );
            if let Some(request) = rolling::request_of(record, stored) {
                rolling::attach(
                    &mut progress,
                    &request,
                    stored,
                    current,
                    status,
                    false,
                    observed.now,
                );
            }
            begin(status, progress, record.reason(), observed.now);
            status.record_superseded_unseen(
                &record.supersedes,
                &record.id,
                record.requested_at,
                |id| created_instances(observed, id),
            );
        }
    }
    let scale = spec_scale(observed, stored, status);
    if scale != status.desired_replicas {
        // A spec write changed `scale` without an operation record: run it with the
        // spec's `scaling:` defaults, as if it had been asked for with those flags.
        let implied = implied_by_spec(observed, stored, revision, status.desired_replicas, scale);
        let reason = if observed.status.observed_generation == 0 {
            format!("spec change: service created with scale {scale}")
        } else {
            format!(
                "spec change: scale {} -> {scale} (spec revision {revision})",
                status.desired_replicas
            )
        };
        let progress = implied.start(revision, status.current_replicas, &ready, observed.now);
        begin(status, progress, reason, observed.now);
    } else if let Some((progress, reason)) =
        rolling::implied(observed, census, stored, revision, current, status)
    {
        // A spec change of a `Rolling` service: roll the new revision out.
        begin(status, progress, reason, observed.now);
    }
}

/// Whether an instance record created by operation `id` exists.
fn created_instances(observed: &Observed, id: &str) -> bool {
    observed
        .instances
        .iter()
        .any(|instance| instance.value.operation_id.as_deref() == Some(id))
}

/// The scale a stored spec asks for. A spec stored without `scale` (or with
/// `scale: null`) keeps the current desired scale, as a cast without `scale` does;
/// a new service starts at 1. GitOps tools that leave replica counts to operators
/// write specs without it.
fn spec_scale(observed: &Observed, stored: &StoredService, status: &ServiceStatus) -> u32 {
    match stored.service.scale {
        Some(scale) => scale,
        None if observed.status.observed_generation == 0 => 1,
        None => status.desired_replicas,
    }
}

/// The operation record a spec write from `from` to `to` stands for.
fn implied_by_spec(
    observed: &Observed,
    stored: &StoredService,
    revision: i64,
    from: u32,
    to: u32,
) -> OperationRecord {
    let defaults = stored.service.scaling_defaults();
    let plan = ScalePlan {
        mode: defaults.mode,
        from,
        to,
        step: defaults.step,
        interval: defaults.interval,
    };
    OperationRecord {
        id: format!("spec-{revision}"),
        kind: OperationKind::Scale,
        from: plan.from,
        to: plan.to,
        mode: plan.mode,
        step: plan.step,
        interval: plan.interval,
        rollback_on_fail: defaults.rollback_on_fail,
        timeout: plan.default_timeout(),
        requested_at: observed.now,
        requested_by: "spec".into(),
        reason: String::new(),
        supersedes: vec![],
        rolling: None,
    }
}

/// Makes `progress` the current operation, superseding a running one (whose
/// instances it then judges as its own).
fn begin(
    status: &mut ServiceStatus,
    mut progress: OperationProgress,
    reason: String,
    now: Timestamp,
) {
    if let Some(mut old) = status.operation.take()
        && !old.phase.is_terminal()
    {
        progress.carry_on_from(&old);
        old.phase = OperationPhase::Superseded;
        old.superseded_by = Some(progress.id.clone());
        old.message = format!("superseded by {} ({})", progress.id, reason);
        old.finished_at = Some(now);
        status.record_history(&old, &old.message.clone());
    }
    status.desired_replicas = progress.to;
    status.last_scale_at = Some(now);
    status.last_scale_reason = reason;
    status.operation = Some(progress);
}

/// Advances the running operation, if any; returns the instance count to converge to.
pub(super) fn advance(
    observed: &Observed,
    census: &Census,
    stored: &StoredService,
    revision: i64,
    plan: &mut Plan,
) -> u32 {
    let status = &mut plan.status;
    let Some(mut progress) = status.running_operation().cloned() else {
        return status.desired_replicas;
    };
    if progress.step == 0 {
        progress.steps = progress.step_count();
        progress.step = 1;
        progress.step_target = progress.target_of(1);
        progress.step_started_at = Some(observed.now);
    }
    let looked = if progress.rolling.is_some() {
        rolling::look(observed, census, stored, &mut progress)
    } else {
        look_at_step(observed, census, &mut progress)
    };
    let (target, look_again) = match looked {
        Ok(look_again) => {
            if progress.phase == OperationPhase::Succeeded {
                status.record_history(&progress, "");
            }
            let target = if progress.phase.is_terminal() {
                status.desired_replicas
            } else {
                progress.step_target
            };
            (target, look_again)
        }
        Err(why) if progress.rolling.is_some() => {
            rolling::fail(
                observed,
                stored,
                revision,
                &mut progress,
                status,
                &mut plan.rollback,
                why,
            );
            (status.desired_replicas, None)
        }
        Err(why) => {
            let target = fail(
                observed,
                stored,
                revision,
                &mut progress,
                status,
                &mut plan.rollback,
                why,
            );
            (target, None)
        }
    };
    status.operation = Some(progress);
    if let Some(after) = look_again {
        plan.requeue(after);
    }
    target
}

/// One look at the current step: `Err` says why it failed; otherwise it waits for
/// its instances, holds the interval, moves to the next step or succeeds, and
/// says when to look again.
fn look_at_step(
    observed: &Observed,
    census: &Census,
    progress: &mut OperationProgress,
) -> Result<Option<Duration>, String> {
    let now = observed.now;
    let ready = census.ready_count(observed);
    progress.remaining = census.remaining as u32;
    if now >= progress.deadline {
        let waiting = census
            .waiting_on_lost_nodes()
            .map(|why| format!("; waiting for {why}"))
            .unwrap_or_default();
        return Err(format!(
            "timed out at step {} of {}: {ready} of {} instances ready{waiting}",
            progress.step, progress.steps, progress.step_target
        ));
    }
    if let Some(why) = health::failure(observed, census, progress) {
        return Err(why);
    }
    let current = census.left_for_target(progress.step_target);
    let complete = current == progress.step_target && ready == progress.step_target;
    if !complete {
        progress.message = progress_message(progress, current, ready);
        return Ok(Some(until(now, progress.deadline)));
    }
    let ready_at = *progress.step_ready_at.get_or_insert(now);
    if progress.step >= progress.steps {
        progress.phase = OperationPhase::Succeeded;
        progress.finished_at = Some(now);
        progress.message = format!("{} ready", progress.to);
        return Ok(None);
    }
    // None only when the hold runs past the calendar's end: then do not wait.
    let next_at = progress.next_step_at().unwrap_or(ready_at);
    if now < next_at {
        let wait = until(now, next_at);
        progress.message = format!(
            "step {} of {} done ({ready} ready); next step in {}",
            progress.step,
            progress.steps,
            duration::format(Duration::from_secs(wait.as_secs_f64().ceil() as u64))
        );
        return Ok(Some(wait));
    }
    progress.step += 1;
    progress.step_target = progress.target_of(progress.step);
    progress.step_started_at = Some(now);
    progress.step_ready_at = None;
    progress.message = progress_message(progress, current, ready);
    Ok(Some(Duration::from_millis(50)))
}

fn progress_message(progress: &OperationProgress, current: u32, ready: u32) -> String {
    let what = if progress.stops_everything() {
        format!("stopping every instance: {}", progress.stopping_counts())
    } else {
        let what = match progress.kind {
            OperationKind::Restart => format!("starting {} instance(s)", progress.to),
            _ => format!("scaling to {}", progress.step_target),
        };
        format!("{what}: {current} current, {ready} ready")
    };
    format!("step {} of {}: {what}", progress.step, progress.steps)
}

/// Ends an operation that failed health checks or its deadline: roll back, pin, or
/// (when the spec changed since) report it superseded. Returns the count to converge to.
fn fail(
    observed: &Observed,
    stored: &StoredService,
    revision: i64,
    progress: &mut OperationProgress,
    status: &mut ServiceStatus,
    rollback: &mut Option<Versioned<StoredService>>,
    why: String,
) -> u32 {
    progress.finished_at = Some(observed.now);
    let rollback_target = progress.rollback_target(status.stable_replicas);
    if rollback_target.is_some() && revision != progress.spec_revision {
        progress.phase = OperationPhase::Superseded;
        progress.message =
            format!("{why}; not rolled back: the spec changed since (revision {revision})");
        status.record_history(progress, &why);
        return status.desired_replicas;
    }
    if let Some(back_to) = rollback_target {
        let mut back = stored.clone();
        back.service.scale = Some(back_to);
        *rollback = Some(Versioned::new(back, progress.spec_revision));
        progress.phase = OperationPhase::RolledBack;
        progress.message = format!("rolled back to {back_to}: {why}");
        status.desired_replicas = back_to;
        status.last_scale_at = Some(observed.now);
        status.last_scale_reason = progress.message.clone();
        status.record_history(progress, &why);
        return back_to;
    }
    progress.phase = OperationPhase::Failed;
    progress.message = format!("failed: {why}; keeping {} (no rollback)", progress.to);
    status.last_scale_at = Some(observed.now);
    status.last_scale_reason = progress.message.clone();
    status.record_history(progress, &why);
    status.desired_replicas
}

/// With an invalid spec the operation cannot go on, but its deadline still holds:
/// once it passed, the operation fails (`why` is the spec's error); until then,
/// look again at the deadline.
pub(super) fn fail_at_deadline(observed: &Observed, why: &str, plan: &mut Plan) {
    let status = &mut plan.status;
    let Some(mut progress) = status.running_operation().cloned() else {
        return;
    };
    if observed.now < progress.deadline {
        plan.requeue(until(observed.now, progress.deadline));
        return;
    }
    progress.phase = OperationPhase::Failed;
    progress.finished_at = Some(observed.now);
    progress.message = format!("failed: the spec became invalid and the deadline passed: {why}");
    status.last_scale_at = Some(observed.now);
    status.last_scale_reason = progress.message.clone();
    status.record_history(&progress, why);
    status.operation = Some(progress);
}
