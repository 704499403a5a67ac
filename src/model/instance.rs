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
    /// Memory and CPU the running process uses, from its cgroup (nodes with
    /// cgroups only); refreshed at most every 10 s, when it changed noticeably.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The configs and secrets the running process started with, and their
    /// versions (`{"secret/db": 2}`): what the controller's `Stale` condition
    /// compares with the current versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, u64>,
}

/// An instance's resource usage, as its agent last reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Memory in use now (the cgroup's, page cache included).
    pub memory_bytes: u64,
    /// CPU time used since the process started.
    pub cpu_seconds: f64,
}

impl Usage {
    /// Whether `new` is worth a status write over `self`: memory moved by a tenth
    /// (at least 1 MiB), or CPU time grew by a tenth of a second or more.
    pub fn changed_noticeably(&self, new: &Usage) -> bool {
        let (a, b) = (self.memory_bytes, new.memory_bytes);
        let memory = a.abs_diff(b) >= (a / 10).max(1 << 20);
        let cpu = (new.cpu_seconds - self.cpu_seconds).abs() >= 0.1;
        memory || cpu
    }

    /// `45.2Mi`: memory as people read it.
    pub fn memory_text(&self) -> String {
        let b = self.memory_bytes as f64;
        match self.memory_bytes {
            m if m >= 1 << 30 => format!("{:.1}Gi", b / (1u64 << 30) as f64),
            m if m >= 1 << 20 => format!("{:.1}Mi", b / (1u64 << 20) as f64),
            m if m >= 1 << 10 => format!("{:.1}Ki", b / 1024.0),
            m => m.to_string(),
        }
    }
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
            usage: None,
            sources: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod usage_tests {
    use super::Usage;

    #[test]
    fn usage_is_rewritten_only_when_it_moved_noticeably() {
        let u = |m: u64, c: f64| Usage {
            memory_bytes: m,
            cpu_seconds: c,
        };
        let base = u(100 << 20, 1.0);
        assert!(!base.changed_noticeably(&u(105 << 20, 1.05)));
        assert!(base.changed_noticeably(&u(111 << 20, 1.0)));
        assert!(base.changed_noticeably(&u(89 << 20, 1.0)));
        assert!(base.changed_noticeably(&u(100 << 20, 1.2)));
        // Small processes: a MiB at least.
        assert!(!u(2 << 20, 0.0).changed_noticeably(&u(5 << 19, 0.0)));
        assert!(u(2 << 20, 0.0).changed_noticeably(&u(3 << 20, 0.0)));
        assert_eq!(u(47_395_635, 0.0).memory_text(), "45.2Mi");
        assert_eq!(u(3 << 30, 0.0).memory_text(), "3.0Gi");
        assert_eq!(u(512, 0.0).memory_text(), "512");
    }
}
