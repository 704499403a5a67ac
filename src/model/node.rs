//! Node registration, written by each agent under `nodes/<node>` on a lease; the
//! labels it carries and the selectors that match them; and the operator's node
//! state (`node-state/<node>`: cordoned, draining), written by the CLI.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::limits;
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
    /// The node's IP address (`rune-agent --node-ip`), where its instances' ports
    /// are reached: the address `endpoints/` lists. Absent in records of older
    /// agents (the host part of `address` is used then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The node's labels (`rune-agent --label k=v`), matched by `placement.nodeSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the logs endpoint answers when it has a listener of its own
    /// (`--logs-listen`); none: at `address`, plain HTTP with a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsEndpoint>,
}

/// The agent's logs endpoint on a listener of its own, and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsEndpoint {
    /// HOST:PORT (`--logs-advertise-address`, else the bound address).
    pub address: String,
    /// Served over TLS (`--logs-tls-cert`).
    #[serde(default)]
    pub tls: bool,
    /// Mutual TLS (`--logs-client-ca`): clients present a certificate, and no
    /// token is published or checked.
    #[serde(default)]
    pub client_certificates: bool,
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

/// The operator's word on a node, at `node-state/<node>`, written by `rune node
/// cordon|uncordon` (never by the agent: it outlives the agent's lease). No key means
/// schedulable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// No new instances are placed on the node; the ones there stay.
    #[serde(default)]
    pub cordoned: bool,
    /// Its instances are being moved elsewhere (implies cordoned).
    #[serde(default)]
    pub draining: bool,
    /// Who said so (user@host), and when.
    #[serde(default)]
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl NodeState {
    /// Whether new instances must stay off the node.
    pub fn unschedulable(&self) -> bool {
        self.cordoned || self.draining
    }
}

/// A label key, Kubernetes' syntax: an optional DNS-subdomain prefix and `/`, then a
/// name of 1 to 63 characters (letters, digits, `-`, `_`, `.`, beginning and ending
/// with a letter or digit).
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "label key {key:?}: the prefix before '/' must be a DNS subdomain \
                 (lowercase letters, digits, '-' and '.', at most 253 characters)"
            ));
        }
    }
    if name.is_empty() || !label_chars(name) {
        return Err(format!(
            "label key {key:?}: the name must be 1 to 63 letters, digits, '-', '_' or '.', \
             beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or 1 to 63 letters, digits, `-`, `_`, `.`, beginning and
/// ending with a letter or digit.
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || label_chars(value) {
        Ok(())
    } else {
        Err(format!(
            "label {key}={value:?}: a value must be empty or 1 to 63 letters, digits, '-', '_' \
             or '.', beginning and ending with a letter or digit"
        ))
    }
}

fn label_chars(s: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && ends(s.chars().next())
        && ends(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a whole label map (or selector): each key and value, and how many.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > limits::MAX_LABELS {
        return Err(format!(
            "{} labels is over the limit of {}",
            labels.len(),
            limits::MAX_LABELS
        ));
    }
    for (k, v) in labels {
        check_label_key(k)?;
        check_label_value(k, v)?;
    }
    Ok(())
}

/// `key=value` (as `rune-agent --label` takes it), checked.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("label {s:?}: expected KEY=VALUE"));
    };
    let (k, v) = (k.trim(), v.trim());
    check_label_key(k)?;
    check_label_value(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Whether `labels` has every `key: value` of `selector` (an empty selector matches
/// every node).
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A selector as people write it: `{disk: ssd, zone: a}`.
pub fn format_selector(selector: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_kubernetes_syntax() {
        for ok in [
            "disk=ssd",
            "rune.dev/zone=eu-1",
            "a=",
            "k8s.io/x_y.z=A-1",
            " a = b ",
        ] {
            assert!(parse_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "disk",
            "=ssd",
            "-disk=ssd",
            "disk-=ssd",
            "disk=-ssd",
            "disk=ssd!",
            "Rune.dev/zone=a",
            "/zone=a",
            "a/b/c=d",
            "zone=a b",
        ] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
        let long = "x".repeat(64);
        assert!(parse_label(&format!("{long}=a")).is_err());
        assert!(parse_label(&format!("a={long}")).is_err());
        assert!(parse_label(&format!("{}=a", "x".repeat(63))).is_ok());
    }

    #[test]
    fn selectors_match_every_pair() {
        let labels: BTreeMap<String, String> = [
            ("disk".to_string(), "ssd".to_string()),
            ("zone".into(), "a".into()),
        ]
        .into();
        let sel = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector_matches(&sel(&[]), &labels));
        assert!(selector_matches(&sel(&[("disk", "ssd")]), &labels));
        assert!(selector_matches(
            &sel(&[("disk", "ssd"), ("zone", "a")]),
            &labels
        ));
        assert!(!selector_matches(&sel(&[("disk", "hdd")]), &labels));
        assert!(!selector_matches(&sel(&[("gpu", "")]), &labels));
        assert_eq!(
            format_selector(&sel(&[("disk", "ssd"), ("zone", "a")])),
            "{disk: ssd, zone: a}"
        );
    }

    #[test]
    fn old_node_records_parse_without_labels() {
        let old = r#"{"name":"n","address":"a","agentVersion":"0","startedAt":"2027-01-15T08:00:00Z","instances":0,"leaseId":1}"#;
        let r: NodeRecord = serde_json::from_str(old).unwrap();
        assert!(r.labels.is_empty());
        assert_eq!(r.capacity, 0);
    }
}
