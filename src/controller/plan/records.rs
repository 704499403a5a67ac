//! Stored records of the service that do not parse. Nothing is dropped silently:
//! each one is reported in the `RecordsInvalid` condition (and logged and counted
//! by the reconcile), and each kind has a defined outcome:
//! - an instance record is removed, which stops whatever its agent ran under it
//!   (an agent stops the process of a record that disappears) — kept, it would be
//!   invisible to every count and never stopped;
//! - an operation record is ignored (the service goes on at its current scale);
//! - the status is rewritten from scratch;
//! - an instance's status report counts as no report;
//! - a spec revision is ignored (its number is not handed out again, and it is
//!   deleted once it is older than the last ten).

use super::{Observed, Plan};
use crate::model::{ConditionKind, ConditionStatus, Versioned};

/// Which kind of record did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Operation,
    Status,
    Instance,
    InstanceStatus,
    Revision,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Operation => "operation",
            RecordKind::Status => "status",
            RecordKind::Instance => "instance",
            RecordKind::InstanceStatus => "instance-status",
            RecordKind::Revision => "revision",
        }
    }

    /// What becomes of such a record, as the condition says it.
    fn outcome(self) -> &'static str {
        match self {
            RecordKind::Operation => "ignored",
            RecordKind::Status => "rewritten",
            RecordKind::Instance => "removed; its process, if any, is stopped",
            RecordKind::InstanceStatus => "ignored until its agent reports again",
            RecordKind::Revision => "ignored; its number is not reused",
        }
    }
}

/// One stored value that does not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Unparseable {
    pub kind: RecordKind,
    pub key: String,
    /// The last segment of the key (an instance's id).
    pub name: String,
    pub revision: i64,
    pub error: String,
}

/// Removes unparseable instance records and sets (or clears) `RecordsInvalid`.
pub(super) fn report(observed: &Observed, plan: &mut Plan) {
    for bad in &observed.unparseable {
        if bad.kind == RecordKind::Instance {
            plan.remove
                .push(Versioned::new(bad.name.clone(), bad.revision));
        }
    }
    let status = &mut plan.status;
    if observed.unparseable.is_empty() {
        if status.is_true(ConditionKind::RecordsInvalid) {
            status.set_condition(
                ConditionKind::RecordsInvalid,
                ConditionStatus::False,
                "AllParse",
                "",
                observed.now,
            );
        }
        return;
    }
    let message = observed
        .unparseable
        .iter()
        .map(|bad| {
            format!(
                "{} record {} does not parse ({}): {}",
                bad.kind.as_str(),
                bad.key,
                bad.kind.outcome(),
                bad.error
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    status.set_condition(
        ConditionKind::RecordsInvalid,
        ConditionStatus::True,
        "ParseError",
        &message,
        observed.now,
    );
}
