//! Instances: the controller's intent (`instances/<ns>/<svc>/<id>`) and the agent's
//! report (`instance-status/<ns>/<svc>/<id>`).

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Whether the instance should be running. Scale-down first flips this to `Stopped`
/// (the agent stops the process gracefully), then the record is removed once the
/// agent reports the process gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    Running,
    Stopped,
}

/// Written by the controller leader before anything happens on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub id: String,
    pub namespace: String,
    pub service: String,
    pub node: String,
    pub desired: DesiredState,
    /// The spec revision this instance runs (`revisions/<ns>/<svc>/<n>`); later
    /// spec edits make new revisions and do not touch it.
    pub revision: u64,
    pub created_at: Timestamp,
    /// The operation that created it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Given up because its node was lost past the grace period (and replaced
    /// elsewhere). Its state is unknown: the record stays, `desired: Stopped`, until
    /// the node's agent reports the process ended or the node is forgotten.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub node_lost: bool,
}

impl InstanceRecord {
    /// Parses a stored record. One written before spec revisions (it embeds its
    /// spec and names no revision) is refused with what to do about it: rune is
    /// pre-1.0 and does not migrate; the controller removes such a record (its
    /// process is stopped) and places a new instance on the current spec.
    pub fn parse(bytes: &[u8]) -> Result<InstanceRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            let old = serde_json::from_slice::<serde_json::Value>(bytes)
                .is_ok_and(|v| v.get("spec").is_some() && v.get("revision").is_none());
            if old {
                format!(
                    "written by a rune before spec revisions (it embeds its spec and names no \
                     revision); run one rune version across controllers and agents: the record \
                     is replaced by an instance of the current spec ({e})"
                )
            } else {
                e.to_string()
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, process not (yet) started; also while waiting out crash-loop back-off.
    Pending,
    /// Process started, readiness not passed yet.
    Starting,
    /// Process up and has passed readiness once (`ready` tells the current state).
    Running,
    /// SIGTERM sent to the process group; waiting out the grace period.
    Stopping,
    /// Ended and will not be restarted: stopped on request, or exited 0 under a
    /// policy that does not restart it.
    Exited,
    /// Ended with a failure and will not be restarted by the agent (policy Never).
    Failed,
    /// Its node is lost: nobody can say whether the process runs. Never reported
    /// by an agent; shown for instances whose node is not registered.
    Unknown,
}

impl Phase {
    /// The process exists (or is about to): it counts toward `currentReplicas`.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Phase::Pending | Phase::Starting | Phase::Running | Phase::Stopping | Phase::Unknown
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub at: Timestamp,
    /// Why it ended, e.g. "liveness probe failed: ...".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (_, Some(s)) => write!(f, "killed by signal {s}")?,
            (Some(c), _) => write!(f, "exit code {c}")?,
            _ => write!(f, "ended")?,
        }
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        Ok(())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Written by the agent of the instance's node. Holds no heartbeat timestamp on
/// purpose: a write happens only when something a reader cares about changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub id: String,
    pub node: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The first port (`PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    pub ready: bool,
    /// Consecutive failed readiness probes (0 once one passes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub readiness_failures: u32,
    /// The last probe failure, e.g. "readiness http GET /healthz: connection refused".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub probe_error: String,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
}

impl InstanceStatus {
    /// What an agent reports before anything ran.
    pub fn pending(id: &str, node: &str) -> Self {
        InstanceStatus {
            id: id.to_string(),
            node: node.to_string(),
            phase: Phase::Pending,
            pid: None,
            port: None,
            ports: BTreeMap::new(),
            ready: false,
            readiness_failures: 0,
            probe_error: String::new(),
            restarts: 0,
            last_exit: None,
            message: String::new(),
            started_at: None,
            ready_at: None,
        }
    }
}
