//! The operation record `rune scale/restart/stop` writes to `operations/<ns>/<name>`,
//! in the same transaction as the spec's new `scale`.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::duration;
use super::spec::ScaleMode;

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
