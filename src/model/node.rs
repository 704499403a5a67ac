//! Node registration, written by each agent under `nodes/<node>` on a lease.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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
}
