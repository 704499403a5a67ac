//! Node registration, written by each agent under `nodes/<node>` on a lease.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::resources::Resources;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    /// Where the agent's /healthz and /metrics answer.
    pub address: String,
    pub agent_version: String,
    pub started_at: Timestamp,
    /// Instances the agent supervises right now.
    pub instances: u32,
    /// Most instances this node accepts (0 = no limit).
    #[serde(default)]
    pub capacity: u32,
    /// The agent's lease: lets a restarted agent on the same data dir reclaim its name.
    pub lease_id: i64,
    /// The cgroups the agent runs instances in; None: none usable (no limits here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<CgroupSupport>,
    /// Memory and CPU instances may be given here, and how much of it the agent's
    /// instances ask for (their `resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<Allocatable>,
}

/// Which cgroup controllers a node can limit instances with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CgroupSupport {
    /// 1 or 2.
    pub version: u8,
    pub memory: bool,
    pub cpu: bool,
    pub pids: bool,
}

impl CgroupSupport {
    /// The controllers `resources` needs that are missing, by field name.
    pub fn missing(&self, r: &Resources) -> Vec<&'static str> {
        let mut out = Vec::new();
        if r.memory.is_some() && !self.memory {
            out.push("memory");
        }
        if r.cpu.is_some() && !self.cpu {
            out.push("cpu");
        }
        if r.pids.is_some() && !self.pids {
            out.push("pids");
        }
        out
    }
}

/// A node's memory (bytes) and CPU (millicores): what instances may ask for in
/// all, and what the instances it runs ask for now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocatable {
    pub memory_bytes: u64,
    pub cpu_millis: u64,
    #[serde(default)]
    pub requested_memory_bytes: u64,
    #[serde(default)]
    pub requested_cpu_millis: u64,
}
