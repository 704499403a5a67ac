//! The endpoints of a service (`endpoints/<ns>/<svc>`): where its ready instances
//! answer, for load balancers and service-discovery tools (as a Kubernetes
//! `EndpointSlice`). Written by the controller leader only, only when the list
//! changes; an instance leaves it before its agent sends SIGTERM.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The stored value: JSON, one document per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub namespace: String,
    pub service: String,
    /// The ready instances, sorted by instance id.
    pub endpoints: Vec<Endpoint>,
    /// When the list last changed.
    pub updated_at: Timestamp,
    /// Set when the ready instances were too many for one value (over
    /// [`MAX_ENDPOINTS_BYTES`]): `endpoints` lists only the first of them by id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The largest endpoints value the controller writes: well under etcd's default
/// request limit of 1.5 MiB (about 7,000 endpoints of a typical size).
pub const MAX_ENDPOINTS_BYTES: usize = 1 << 20;

/// One ready instance: the node's address and the instance's ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub instance: String,
    pub node: String,
    /// The node's address (`rune-agent --node-ip`): where the instance's ports are
    /// reached.
    pub address: String,
    /// Port name → port.
    pub ports: BTreeMap<String, u16>,
}

impl Endpoint {
    /// `address:port` of the named port, or of the first one (by name) without a name.
    pub fn socket(&self, port: Option<&str>) -> Option<String> {
        let p = match port {
            Some(name) => self.ports.get(name)?,
            None => self.ports.values().next()?,
        };
        if self.address.contains(':') {
            Some(format!("[{}]:{p}", self.address))
        } else {
            Some(format!("{}:{p}", self.address))
        }
    }
}
