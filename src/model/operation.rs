//! An operation: what `rune scale/restart/stop` asks for (the record in
//! `operations/<ns>/<name>`, written in the same transaction as the spec's new
//! `scale`), where it stands (the progress in `status.operation`), and the rules
//! for running one: how many steps it takes, what each step aims at, how long it
//! may take, when its next step may start.
//!
//! The rules live here, with the types, because two programs apply them: the CLI
//! sizes the timeout it stores in the record, the controller runs the steps and
//! enforces that timeout. Both asking the same methods is what keeps them from
//! disagreeing about a plan (Kubernetes keeps defaulting with its API types for the
//! same reason).

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::spec::ScaleMode;
use super::status::HistoryEntry;
use super::update::{Bounds, Count, OnFailure, UpdateSettings};
use super::{duration, limits};

/// The least time any operation gets; a gradual plan that takes longer gets its
/// own length on top (the contract's timeout default).
pub const BASE_TIMEOUT: Duration = Duration::from_secs(300);

pub use limits::MIN_TIMEOUT;

/// How many overwritten operations a record carries in `supersedes`: enough for
/// a few quick retries without a controller, bounded so the record stays small.
pub const SUPERSEDES_LIMIT: usize = 5;

/// How far back a request may be dated and still have its deadline counted from
/// then: older (or future) dates say the requester's clock is off.
const REQUEST_CLOCK_SLACK: Duration = Duration::from_secs(60);

/// Checks a timeout someone asked for against [`MIN_TIMEOUT`] and
/// [`limits::MAX_TIMEOUT`]; the error names the bound.
pub fn check_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout < MIN_TIMEOUT {
        return Err(format!(
            "the timeout must be at least {}, got {}",
            duration::format(MIN_TIMEOUT),
            duration::format(timeout)
        ));
    }
    limits::at_most("the timeout", timeout, limits::MAX_TIMEOUT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Scale,
    Restart,
    Stop,
    /// A spec change of a `Rolling` service rolled out by the controller (or the
    /// revert of a failed one).
    Rollout,
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationKind::Scale => "scale",
            OperationKind::Restart => "restart",
            OperationKind::Stop => "stop",
            OperationKind::Rollout => "rollout",
        })
    }
}

/// What was asked for, as the CLI wrote it (or the controller implied it from a
/// spec write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// UUID v7, so ids sort by time.
    pub id: String,
    pub kind: OperationKind,
    pub from: u32,
    /// Bounded like every user value (see `limits`): a record written by hand with
    /// absurd values does not parse, and is reported and ignored.
    #[serde(deserialize_with = "limits::replicas")]
    pub to: u32,
    pub mode: ScaleMode,
    #[serde(deserialize_with = "limits::step")]
    pub step: u32,
    #[serde(
        serialize_with = "duration::serialize",
        deserialize_with = "limits::interval"
    )]
    pub interval: Duration,
    pub rollback_on_fail: bool,
    #[serde(
        serialize_with = "duration::serialize",
        deserialize_with = "limits::timeout"
    )]
    pub timeout: Duration,
    pub requested_at: Timestamp,
    pub requested_by: String,
    #[serde(default)]
    pub reason: String,
    /// Operations this record overwrote before any controller took them up (newest
    /// first, at most [`SUPERSEDES_LIMIT`]): the controller records them as
    /// superseded, so every operation the CLI accepted shows in the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<OperationSummary>,
    /// Replace instances batch by batch (`rune restart --rolling`, or any restart
    /// of a `Rolling` service), with these overrides of the spec's `update:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingRequest>,
}

/// What the history needs of an operation that never ran: it was overwritten
/// before a controller took it up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSummary {
    pub id: String,
    pub kind: OperationKind,
    pub from: u32,
    pub to: u32,
    pub mode: ScaleMode,
    pub requested_at: Timestamp,
    pub requested_by: String,
    #[serde(default)]
    pub reason: String,
}

impl OperationSummary {
    /// The history line of this operation, replaced by `by` (requested at
    /// `replaced_at`) before it started.
    pub fn superseded_entry(&self, by: &str, replaced_at: Timestamp) -> HistoryEntry {
        HistoryEntry {
            id: self.id.clone(),
            kind: self.kind,
            from: self.from,
            to: self.to,
            mode: self.mode,
            requested_by: self.requested_by.clone(),
            reason: self.reason.clone(),
            result: OperationPhase::Superseded,
            started_at: self.requested_at,
            finished_at: Some(replaced_at.max(self.requested_at)),
            error: format!("superseded by {by} before a controller took it up"),
            note: String::new(),
        }
    }
}

/// The shape of a change of scale: from `from` to `to` instances, either at once
/// or `step` at a time with `interval` held between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePlan {
    pub mode: ScaleMode,
    pub from: u32,
    pub to: u32,
    /// Instances added or removed per step (gradual); 0 counts as 1.
    pub step: u32,
    pub interval: Duration,
}

impl ScalePlan {
    /// How many steps the change takes: one at once, or one per `step` instances.
    pub fn steps(&self) -> u32 {
        match self.mode {
            ScaleMode::Immediate => 1,
            ScaleMode::Gradual => self
                .from
                .abs_diff(self.to)
                .div_ceil(self.step_size())
                .max(1),
        }
    }

    /// The time the plan spends holding intervals: one between each two steps.
    /// Saturates: intervals come from users and stored records, so they can be
    /// absurd (`300000000000y`), and an absurd plan must not panic its reader.
    pub fn length(&self) -> Duration {
        self.interval.saturating_mul(self.steps().saturating_sub(1))
    }

    /// The contract's timeout default: 5m, or the plan's length plus 5m when longer.
    pub fn default_timeout(&self) -> Duration {
        let length = self.length();
        if length > BASE_TIMEOUT {
            length.saturating_add(BASE_TIMEOUT)
        } else {
            BASE_TIMEOUT
        }
    }

    /// The instance count step `step` (1-based) aims at.
    pub fn step_target(&self, step: u32) -> u32 {
        match self.mode {
            ScaleMode::Immediate => self.to,
            ScaleMode::Gradual => {
                let moved = step.saturating_mul(self.step_size());
                if self.to >= self.from {
                    self.from.saturating_add(moved).min(self.to)
                } else {
                    self.from.saturating_sub(moved).max(self.to)
                }
            }
        }
    }

    fn step_size(&self) -> u32 {
        self.step.max(1)
    }
}

impl OperationRecord {
    /// The change of scale as the requester saw it (from the scale it read).
    pub fn plan(&self) -> ScalePlan {
        ScalePlan {
            mode: self.mode,
            from: self.from,
            to: self.to,
            step: self.step,
            interval: self.interval,
        }
    }

    /// Whether the record's whole time ran out by `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        duration::add(self.requested_at, self.timeout) <= now
    }

    /// Whether the record tells of the past rather than asks for something: its
    /// time ran out *and* it already created instances (`created_instances`: some
    /// instance record carries its id). That happens when the status that said it
    /// was taken up was lost; such a record must never run again. A record whose
    /// time ran out before anything ran it (no controller was up) is still a
    /// request: it runs late.
    pub fn is_history(&self, now: Timestamp, created_instances: bool) -> bool {
        self.expired(now) && created_instances
    }

    /// "started late: requested at X, picked up at Y" when a controller takes the
    /// record up `now`, after its time ran out; `None` when it is in time.
    pub fn late_start(&self, now: Timestamp) -> Option<String> {
        self.expired(now).then(|| {
            format!(
                "started late: requested at {}, picked up at {}",
                to_seconds(self.requested_at),
                to_seconds(now)
            )
        })
    }

    /// When the operation must be done, when a controller takes it up `now` with
    /// `current` instances.
    pub fn deadline(&self, current: u32, now: Timestamp) -> Timestamp {
        // Counted from the request (the outcome must not depend on how soon a
        // controller picked it up), unless the requester's clock looks off, or the
        // time ran out before any controller saw it: then it runs late, with its
        // whole timeout from now.
        let requested_lately = self.requested_at <= now
            && duration::add(self.requested_at, REQUEST_CLOCK_SLACK) >= now;
        let since = if requested_lately && !self.expired(now) {
            self.requested_at
        } else {
            now
        };
        duration::add(since, self.timeout_from(current))
    }

    /// The timeout for the plan that runs from `current` instances. A defaulted
    /// timeout covers the plan the CLI saw; the plan from what runs now may be
    /// longer (e.g. after a superseded ramp), so it is sized again. A timeout under
    /// [`MIN_TIMEOUT`] (a record some other writer made) gets the minimum.
    pub fn timeout_from(&self, current: u32) -> Duration {
        let asked = self.plan();
        if self.timeout != asked.default_timeout() {
            return self.timeout.max(MIN_TIMEOUT);
        }
        let from_now = ScalePlan {
            from: current,
            ..asked
        };
        self.timeout.max(from_now.default_timeout())
    }

    /// The progress of this operation when a controller takes it up `now`, with
    /// `current` instances of which the `ready` ones are ready, for the spec write
    /// at `spec_revision`. It runs from what is there, not from the `from` the
    /// requester saw (that stays on record as the scale a rollback may return to);
    /// `step` stays 0 until the controller enters the first step.
    pub fn start(
        &self,
        spec_revision: i64,
        current: u32,
        ready: &[String],
        now: Timestamp,
    ) -> OperationProgress {
        OperationProgress {
            id: self.id.clone(),
            kind: self.kind,
            phase: OperationPhase::Progressing,
            from: current,
            to: self.to,
            mode: self.mode,
            step_size: self.step.max(1),
            interval: self.interval,
            rollback_on_fail: self.rollback_on_fail,
            requested_by: self.requested_by.clone(),
            reason: self.reason.clone(),
            step: 0,
            steps: 0,
            step_target: 0,
            step_started_at: None,
            step_ready_at: None,
            started_at: now,
            deadline: self.deadline(current, now),
            finished_at: None,
            message: "starting".into(),
            spec_revision,
            superseded_by: None,
            ready_at_start: ready.to_vec(),
            previous_scale: Some(self.from),
            remaining: current,
            note: self.late_start(now).unwrap_or_default(),
            carries_on_from: vec![],
            rolling: None,
        }
    }

    /// What a record written over this one (stored at `revision`) carries of it:
    /// while no controller took it up (the status's `observed_operation` is older),
    /// its own summary, then what it carried itself, at most
    /// [`SUPERSEDES_LIMIT`]; nothing once a controller did (it records the outcome
    /// itself).
    pub fn carried_over(&self, revision: i64, observed_operation: i64) -> Vec<OperationSummary> {
        if revision <= observed_operation {
            return vec![];
        }
        std::iter::once(self.summary())
            .chain(self.supersedes.iter().cloned())
            .take(SUPERSEDES_LIMIT)
            .collect()
    }

    fn summary(&self) -> OperationSummary {
        OperationSummary {
            id: self.id.clone(),
            kind: self.kind,
            from: self.from,
            to: self.to,
            mode: self.mode,
            requested_at: self.requested_at,
            requested_by: self.requested_by.clone(),
            reason: self.reason.clone(),
        }
    }

    /// Why the operation runs, as status and history show it: the requester's
    /// reason, or else what was asked and by whom.
    pub fn reason(&self) -> String {
        if !self.reason.is_empty() {
            return self.reason.clone();
        }
        let by = &self.requested_by;
        match self.kind {
            OperationKind::Scale => format!("scale to {} requested by {by}", self.to),
            OperationKind::Restart if self.rolling.is_some() => {
                format!("rolling restart requested by {by}")
            }
            OperationKind::Restart => format!("restart requested by {by}"),
            OperationKind::Stop => format!("stop requested by {by}"),
            OperationKind::Rollout => format!("rollout requested by {by}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationPhase {
    Pending,
    Progressing,
    Succeeded,
    Failed,
    RolledBack,
    Superseded,
}

impl OperationPhase {
    pub fn is_terminal(self) -> bool {
        !matches!(self, OperationPhase::Pending | OperationPhase::Progressing)
    }
}

impl fmt::Display for OperationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where an operation stands; kept in etcd so a new leader resumes mid-plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationProgress {
    pub id: String,
    pub kind: OperationKind,
    pub phase: OperationPhase,
    pub from: u32,
    pub to: u32,
    pub mode: ScaleMode,
    /// Instances added or removed per step (gradual).
    pub step_size: u32,
    #[serde(with = "duration")]
    pub interval: Duration,
    pub rollback_on_fail: bool,
    #[serde(default)]
    pub requested_by: String,
    #[serde(default)]
    pub reason: String,
    /// 1-based step number; 0 before the first step.
    pub step: u32,
    pub steps: u32,
    /// The replica count this step aims at.
    pub step_target: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Timestamp>,
    /// When the current step's instances were all ready (the interval counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ready_at: Option<Timestamp>,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub message: String,
    /// The spec revision of the write that started the operation; a rollback is a
    /// compare-and-swap on it.
    #[serde(default)]
    pub spec_revision: i64,
    /// The id of the operation that replaced this one, when superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Instances that were ready when the operation started: if one turns unready
    /// while it runs, the operation fails its health checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready_at_start: Vec<String>,
    /// The scale desired before this operation (the `from` its requester saw):
    /// where a rollback goes when no stable scale was recorded yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_scale: Option<u32>,
    /// Instance records still there, stopping ones included: what a step that
    /// stops instances waits for, and what a waiting CLI shows of a stop.
    #[serde(default)]
    pub remaining: u32,
    /// A remark for the history, e.g. that it started late.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Operations this one superseded while they ran (newest first, at most
    /// [`SUPERSEDES_LIMIT`]): the instances they started were still coming up, not
    /// unready before this one, so its health checks judge them as its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carries_on_from: Vec<String>,
    /// Set for a rolling restart or rollout: its bounds and where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingProgress>,
}

impl OperationProgress {
    /// The change of scale this operation runs.
    pub fn plan(&self) -> ScalePlan {
        ScalePlan {
            mode: self.mode,
            from: self.from,
            to: self.to,
            step: self.step_size,
            interval: self.interval,
        }
    }

    /// How many steps the operation takes: a restart stops every instance, then
    /// starts them again; a scale or a stop follows its plan.
    pub fn step_count(&self) -> u32 {
        if self.rolling.is_some() {
            return 1;
        }
        match self.kind {
            OperationKind::Restart => 2,
            _ => self.plan().steps(),
        }
    }

    /// The instance count step `step` (1-based) aims at.
    pub fn target_of(&self, step: u32) -> u32 {
        if self.rolling.is_some() {
            return self.to;
        }
        match self.kind {
            OperationKind::Restart if step <= 1 => 0,
            OperationKind::Restart => self.to,
            _ => self.plan().step_target(step),
        }
    }

    /// Takes over from `superseded`, which was still running: the instances it (and
    /// what it carried on from) started count as this operation's own.
    pub fn carry_on_from(&mut self, superseded: &OperationProgress) {
        self.carries_on_from = std::iter::once(superseded.id.clone())
            .chain(superseded.carries_on_from.iter().cloned())
            .take(SUPERSEDES_LIMIT)
            .collect();
    }

    /// Whether this operation (or one it carries on from) started the instance
    /// whose record names `operation_id`.
    pub fn started(&self, operation_id: Option<&str>) -> bool {
        operation_id.is_some_and(|id| id == self.id || self.carries_on_from.iter().any(|c| c == id))
    }

    /// Where a failed operation rolls back to, or `None` when it is pinned: only a
    /// scale with `rollbackOnFail` rolls back, to the last `stable` scale (every
    /// instance ready), else to the scale desired before it. A service whose
    /// previous scale was 0 (a new one) is pinned rather than rolled back to 0.
    pub fn rollback_target(&self, stable: Option<u32>) -> Option<u32> {
        if !self.rollback_on_fail || self.kind != OperationKind::Scale {
            return None;
        }
        let back = stable.or(self.previous_scale.filter(|scale| *scale > 0))?;
        (back != self.to).then_some(back)
    }

    /// Whether the current step stops every instance (a stop, a restart's first
    /// step, a scale to 0): its progress is what is left, not what is ready.
    pub fn stops_everything(&self) -> bool {
        self.step >= 1 && self.step_target == 0
    }

    /// The counts of a step that stops everything, as people read them: "8
    /// running, stopping", then "3 of 8 left".
    pub fn stopping_counts(&self) -> String {
        let of = self.from.max(self.remaining);
        if self.remaining >= of {
            format!("{of} running, stopping")
        } else {
            format!("{} of {of} left", self.remaining)
        }
    }

    /// How long a step whose instances are all ready is held before the next one:
    /// the interval, except between a restart's stop and its start.
    pub fn hold(&self) -> Duration {
        match self.kind {
            OperationKind::Restart | OperationKind::Rollout => Duration::ZERO,
            _ => self.interval,
        }
    }

    /// When the next step may start: [`hold`](Self::hold) after the current step's
    /// instances were all ready. `None` until they are, after the last step, and
    /// past the calendar's end.
    pub fn next_step_at(&self) -> Option<Timestamp> {
        let ready_at = self.step_ready_at?;
        if self.step >= self.steps {
            return None;
        }
        ready_at.checked_add(self.hold()).ok()
    }

    /// The history line for this operation (`error` says why it failed, if it did).
    pub fn history_entry(&self, error: &str) -> HistoryEntry {
        HistoryEntry {
            id: self.id.clone(),
            kind: self.kind,
            from: self.from,
            to: self.to,
            mode: self.mode,
            requested_by: self.requested_by.clone(),
            reason: self.reason.clone(),
            result: self.phase,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: error.to_string(),
            note: self.note.clone(),
        }
    }
}

/// The overrides `rune restart --rolling` took (none: the spec's `update:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Count>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub min_ready: Option<Duration>,
}

impl RollingRequest {
    /// The overrides laid over the spec's `update:` settings, resolved for
    /// `desired` instances: the bounds a rolling operation runs with.
    pub fn settle(&self, spec: &UpdateSettings, desired: u32) -> (Bounds, Duration) {
        let bounds = Bounds::resolve(
            self.max_surge.unwrap_or(spec.max_surge),
            self.max_unavailable.unwrap_or(spec.max_unavailable),
            desired,
        );
        let min_ready = self
            .min_ready
            .unwrap_or(Duration::from_secs(spec.min_ready_seconds.into()))
            .min(limits::MAX_MIN_READY);
        (bounds, min_ready)
    }
}

/// Where a rolling operation stands, in `status.operation.rolling`: the bounds it
/// runs with and what it knows beyond the instance records, so a new leader
/// resumes it from etcd alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingProgress {
    pub max_surge: u32,
    pub max_unavailable: u32,
    #[serde(with = "duration")]
    pub min_ready: Duration,
    pub on_failure: OnFailure,
    #[serde(with = "duration")]
    pub progress_deadline: Duration,
    /// The revision instances are replaced with.
    pub update_revision: u64,
    /// The revision the instances ran before (where a rollback goes), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<u64>,
    /// This rollout reverts a failed one: should it fail too, it pauses rather
    /// than revert again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
    /// Instances replaced so far (active, updated).
    pub updated: u32,
    /// When the rollout last moved (an instance updated or an old one stopped):
    /// `progressDeadline` counts from here.
    pub last_progress_at: Timestamp,
    /// Old instances stopped so far (by this operation).
    #[serde(default)]
    pub stopped: u32,
}

impl OperationProgress {
    /// Whether an instance counts as updated by this rolling operation — the one
    /// rule for it. `same_template`: the instance runs the update revision's spec
    /// (a rollback's revision counts as the revision it copies). A rollout
    /// replaces instances of another spec; a restart replaces every instance it did
    /// not start itself (or took over from an operation it superseded).
    pub fn counts_as_updated(&self, operation_id: Option<&str>, same_template: bool) -> bool {
        match self.kind {
            OperationKind::Restart => same_template && self.started(operation_id),
            _ => same_template,
        }
    }
}

/// A timestamp to the second, as history notes show it.
fn to_seconds(ts: Timestamp) -> String {
    Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

#[cfg(test)]
#[path = "operation_tests.rs"]
mod tests;
