//! The health gate: the contract's "fails health checks", judged on every look at
//! a running operation's step. It is its own concern because it is subtle: an
//! operation must fail fast when what it started (or what it promised to keep)
//! breaks, yet never blame instances that were already unready, or ones its own
//! step is removing.

use super::Observed;
use super::census::{Census, how_it_ended};
use super::placement::victims;
use crate::model::{InstanceRecord, OperationProgress};

/// Why the step fails its health checks, if it does: one of its instances exits
/// before it is ready, reaches failureThreshold consecutive readiness failures, or
/// turns unready while the operation runs. Judged are the instances this operation
/// created (or the running operation it superseded: they were still coming up) and,
/// unless it is rolling, those that were ready when it started — never ones that were already unready,
/// and never ones the step removes anyway.
pub(super) fn failure(
    observed: &Observed,
    census: &Census,
    progress: &OperationProgress,
) -> Option<String> {
    let created = |record: &InstanceRecord| progress.started(record.operation_id.as_deref());
    // A rolling operation replaces the instances that were ready when it started:
    // one of them failing says nothing of what it rolls out (rolling back would
    // return to the revision that failed), so it judges only what it started.
    let was_ready = |record: &InstanceRecord| {
        progress.rolling.is_none() && progress.ready_at_start.contains(&record.id)
    };
    // A rolling operation's surplus are the old instances it replaces, and those
    // are never what it starts: judge everything it started.
    let surplus = if progress.rolling.is_some() {
        0
    } else {
        census
            .active
            .len()
            .saturating_sub(progress.step_target as usize)
    };
    let leaving = victims(observed, census, surplus);
    let leaves =
        |record: &InstanceRecord| leaving.iter().any(|victim| victim.value.id == record.id);
    for (record, why) in &census.ended {
        // An ended instance still holding its slot is in `active`; one already
        // removed only matters while the step still wants instances.
        let removed = !census
            .active
            .iter()
            .any(|active| active.value.id == record.id);
        if (created(record) || was_ready(record))
            && !leaves(record)
            && !(removed && progress.step_target == 0)
        {
            return Some(why.clone());
        }
    }
    for active in &census.active {
        let record = active.value;
        if leaves(record) {
            continue;
        }
        let Some(status) = observed.statuses.get(&record.id) else {
            continue;
        };
        // An exit before readiness shows as a restart once the process is started
        // again, or at once as its last exit: a start that failed (a config or
        // secret missing, a command not found) never counts a restart.
        let exited = status.restarts > 0 || status.last_exit.is_some();
        if created(record) && exited && status.ready_at.is_none() {
            return Some(format!(
                "instance {} exited before it was ready: {}",
                record.id,
                how_it_ended(status)
            ));
        }
        if let Some(probe) = observed
            .spec_of(record)
            .and_then(|spec| spec.health.readiness.as_ref())
            && created(record)
            && !status.ready
            && status.readiness_failures >= probe.failure_threshold
        {
            return Some(format!(
                "instance {} failed its {} readiness probe {} times: {}",
                record.id, probe.kind, status.readiness_failures, status.probe_error
            ));
        }
        if !status.ready && ((created(record) && status.ready_at.is_some()) || was_ready(record)) {
            let why = if status.probe_error.is_empty() {
                status
                    .last_exit
                    .as_ref()
                    .map(|exit| exit.to_string())
                    .unwrap_or_else(|| format!("phase {}", status.phase))
            } else {
                status.probe_error.clone()
            };
            return Some(format!("instance {} turned unready: {why}", record.id));
        }
    }
    None
}
