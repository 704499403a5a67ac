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

use super::duration;
use super::spec::ScaleMode;
use super::status::HistoryEntry;

/// The least time any operation gets; a gradual plan that takes longer gets its
/// own length on top (the contract's timeout default).
pub const BASE_TIMEOUT: Duration = Duration::from_secs(300);

/// How far back a request may be dated and still have its deadline counted from
/// then: older (or future) dates say the requester's clock is off.
const REQUEST_CLOCK_SLACK: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Scale,
    Restart,
    Stop,
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationKind::Scale => "scale",
            OperationKind::Restart => "restart",
            OperationKind::Stop => "stop",
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
    pub to: u32,
    pub mode: ScaleMode,
    pub step: u32,
    #[serde(with = "duration")]
    pub interval: Duration,
    pub rollback_on_fail: bool,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub requested_at: Timestamp,
    pub requested_by: String,
    #[serde(default)]
    pub reason: String,
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

    /// Whether the record's whole time ran out: it is then history, not a request
    /// (e.g. after the status was lost), and must never run (again).
    pub fn expired(&self, now: Timestamp) -> bool {
        duration::add(self.requested_at, self.timeout) <= now
    }

    /// When the operation must be done, when a controller takes it up `now` with
    /// `current` instances.
    pub fn deadline(&self, current: u32, now: Timestamp) -> Timestamp {
        // Counted from the request (the outcome must not depend on how soon a
        // controller picked it up), unless the requester's clock looks off.
        let requested_lately = self.requested_at <= now
            && duration::add(self.requested_at, REQUEST_CLOCK_SLACK) >= now;
        let since = if requested_lately {
            self.requested_at
        } else {
            now
        };
        duration::add(since, self.timeout_from(current))
    }

    /// The timeout for the plan that runs from `current` instances. A defaulted
    /// timeout covers the plan the CLI saw; the plan from what runs now may be
    /// longer (e.g. after a superseded ramp), so it is sized again.
    pub fn timeout_from(&self, current: u32) -> Duration {
        let asked = self.plan();
        if self.timeout != asked.default_timeout() {
            return self.timeout;
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
    /// requester saw; `step` stays 0 until the controller enters the first step.
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
            OperationKind::Restart => format!("restart requested by {by}"),
            OperationKind::Stop => format!("stop requested by {by}"),
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
        match self.kind {
            OperationKind::Restart => 2,
            _ => self.plan().steps(),
        }
    }

    /// The instance count step `step` (1-based) aims at.
    pub fn target_of(&self, step: u32) -> u32 {
        match self.kind {
            OperationKind::Restart if step <= 1 => 0,
            OperationKind::Restart => self.to,
            _ => self.plan().step_target(step),
        }
    }

    /// How long a step whose instances are all ready is held before the next one:
    /// the interval, except between a restart's stop and its start.
    pub fn hold(&self) -> Duration {
        match self.kind {
            OperationKind::Restart => Duration::ZERO,
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
        }
    }
}

#[cfg(test)]
#[path = "operation_tests.rs"]
mod tests;
