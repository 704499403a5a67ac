//! `status/<ns>/<name>`, written only by the controller leader.
//!
//! Field order matters: the contract says `status:` begins with exactly
//! desiredReplicas, readyReplicas, currentReplicas, lastScaleAt, lastScaleReason, so
//! `grep -A5 status` shows them. serde keeps struct order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::operation::{OperationKind, OperationPhase, OperationProgress, OperationSummary};
use super::spec::ScaleMode;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub desired_replicas: u32,
    pub ready_replicas: u32,
    pub current_replicas: u32,
    pub last_scale_at: Option<Timestamp>,
    pub last_scale_reason: String,
    /// Active instances that run the spec's current revision (`updateRevision`).
    #[serde(default)]
    pub updated_replicas: u32,
    /// The revision every instance ran when the service last ran one revision
    /// only: what a rolling update replaces, and where its rollback goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// The spec's current revision: what new instances run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<u64>,
    /// The spec mod revision this status reflects.
    #[serde(default)]
    pub observed_generation: i64,
    /// When the controller first saw the service (its age for specs that were not
    /// written by `rune cast`, which records its own `createdAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<Timestamp>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Mod revision of the last operation record taken up, so an old record is
    /// never run twice.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_operation: i64,
    /// The scale operation in progress, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationProgress>,
    /// The last scale at which every instance was ready: where a rollback goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_replicas: Option<u32>,
    /// The last non-zero scale: what `rune restart` brings back on a stopped service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nonzero_replicas: Option<u32>,
    /// The last operations, newest first (at most [`HISTORY_LIMIT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Instances that ended for good (and were replaced) in a row, with no instance
    /// becoming ready in between: drives the replacement back-off
    /// (CrashLoopBackOff, as Kubernetes names it).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub consecutive_failures: u32,
    /// How the last of those ended (`instance x exited before it was ready: exit
    /// code 1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_failure: String,
}

pub const HISTORY_LIMIT: usize = 20;

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionKind,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionKind {
    Available,
    Progressing,
    ReplicaFailure,
    SpecInvalid,
    Terminating,
    /// Some instances are on nodes that are lost: their state is unknown.
    NodeLost,
    /// Some stored records of the service do not parse (and what became of them).
    RecordsInvalid,
    /// Instances keep ending for good; their replacements are backed off.
    InstancesFailing,
    /// Some instances run configs or secrets older than the current versions: a
    /// restart would change what they see.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ServiceStatus {
    pub fn condition(&self, kind: ConditionKind) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    pub fn is_true(&self, kind: ConditionKind) -> bool {
        self.condition(kind)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Sets a condition, keeping `lastTransitionTime` unless the status flips.
    pub fn set_condition(
        &mut self,
        kind: ConditionKind,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message.to_string();
            }
            None => self.conditions.push(Condition {
                kind,
                status,
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: now,
            }),
        }
    }

    /// The operation in progress, if the current one has not ended yet.
    pub fn running_operation(&self) -> Option<&OperationProgress> {
        self.operation.as_ref().filter(|op| !op.phase.is_terminal())
    }

    /// Puts an operation that ended (or was superseded) at the top of the history,
    /// keeping the last [`HISTORY_LIMIT`]; `error` says why it failed, if it did.
    pub fn record_history(&mut self, op: &OperationProgress, error: &str) {
        self.push_history(op.history_entry(error));
    }

    /// Records the operations that `by` (requested at `replaced_at`) overwrote
    /// before a controller took them up, as superseded, oldest first so the
    /// history stays newest first. Skipped are the ones this status knows already
    /// (taken up after all, just before they were overwritten) and those `ran`
    /// says ran (their instances exist: the status that knew them was lost).
    pub fn record_superseded_unseen(
        &mut self,
        unseen: &[OperationSummary],
        by: &str,
        replaced_at: Timestamp,
        ran: impl Fn(&str) -> bool,
    ) {
        for summary in unseen.iter().rev() {
            let known = self.history.iter().any(|entry| entry.id == summary.id)
                || self
                    .operation
                    .as_ref()
                    .is_some_and(|op| op.id == summary.id);
            if !known && !ran(&summary.id) {
                self.push_history(summary.superseded_entry(by, replaced_at));
            }
        }
    }

    fn push_history(&mut self, entry: HistoryEntry) {
        self.history.insert(0, entry);
        self.history.truncate(HISTORY_LIMIT);
    }

    /// The instance counts as a waiting CLI shows them: "2/5 ready, 3 current";
    /// while a step stops every instance, what is left of them instead ("8/0
    /// ready" would read as nonsense).
    pub fn counts(&self) -> String {
        match self.running_operation().filter(|op| op.stops_everything()) {
            Some(op) => op.stopping_counts(),
            None => format!(
                "{}/{} ready, {} current",
                self.ready_replicas, self.desired_replicas, self.current_replicas
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub id: String,
    pub kind: OperationKind,
    pub from: u32,
    pub to: u32,
    pub mode: ScaleMode,
    #[serde(default)]
    pub requested_by: String,
    #[serde(default)]
    pub reason: String,
    pub result: OperationPhase,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// A remark, e.g. "started late: requested at X, picked up at Y".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl HistoryEntry {
    /// What a history table says about the entry: the error (or else the reason),
    /// then the note.
    pub fn remarks(&self) -> String {
        let main = if self.error.is_empty() {
            &self.reason
        } else {
            &self.error
        };
        [main.as_str(), self.note.as_str()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
