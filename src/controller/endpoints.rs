//! The endpoints of one service (`endpoints/<ns>/<svc>`), computed from what a
//! reconcile observed and the plan it is about to write. Pure: the reconcile calls
//! [`change`] and writes what it returns, fenced like every leader write.
//!
//! An instance is an endpoint while its record says Running, its agent reports it
//! ready and running, and its node is registered. The plan counts too: an
//! instance this plan stops or removes is no endpoint any more, and the reconcile
//! writes the endpoints *before* (or in the same transaction as) the records that
//! say `desired: Stopped`. So an instance leaves the endpoints before its agent
//! learns it must stop, and with the spec's `shutdownDelay` before its SIGTERM.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::plan::{Observed, Plan};
use crate::model::endpoints::MAX_ENDPOINTS_BYTES;
use crate::model::{DesiredState, Endpoint, Endpoints, NodeRecord, Phase};

/// The ready instances that stay after `plan`, sorted by instance id.
pub fn compute(o: &Observed, plan: &Plan) -> Vec<Endpoint> {
    let leaving: BTreeSet<&str> = plan
        .stop
        .iter()
        .map(|stopped| stopped.value.id.as_str())
        .chain(plan.remove.iter().map(|removed| removed.value.as_str()))
        .collect();
    if plan.purge {
        return vec![];
    }
    let mut list: Vec<Endpoint> = o
        .instances
        .iter()
        .map(|instance| &instance.value)
        .filter(|record| record.desired == DesiredState::Running)
        .filter(|record| !leaving.contains(record.id.as_str()))
        .filter_map(|record| {
            let status = o.statuses.get(&record.id)?;
            let serving = status.ready && status.phase == Phase::Running;
            if !serving || status.node != record.node {
                return None;
            }
            let node = o.nodes.get(&record.node)?;
            Some(Endpoint {
                instance: record.id.clone(),
                node: record.node.clone(),
                address: address_of(node),
                ports: status.ports.clone(),
            })
        })
        .collect();
    list.sort();
    list
}

/// Where a node's instances are reached: its `ip`, else (a record of an older
/// agent) the host part of its agent address.
pub fn address_of(node: &NodeRecord) -> String {
    if let Some(ip) = &node.ip {
        return ip.clone();
    }
    let host = match node.address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => node.address.as_str(),
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The value to store, or `None` when the stored one (`current`, the key's bytes
/// as read) already lists exactly these endpoints: the key is written only when
/// the list changes. A stored value that does not parse is replaced.
pub fn change(
    namespace: &str,
    service: &str,
    current: Option<&[u8]>,
    endpoints: Vec<Endpoint>,
    now: Timestamp,
) -> Option<Endpoints> {
    change_within(
        namespace,
        service,
        current,
        endpoints,
        now,
        MAX_ENDPOINTS_BYTES,
    )
}

/// [`change`] with the size bound as a parameter. A list too large for one value
/// is cut to what fits and marked `truncated`: a value etcd refuses would fail
/// every reconcile of the service, and leaving ready instances out (never
/// stopped ones) keeps the guarantee that matters.
fn change_within(
    namespace: &str,
    service: &str,
    current: Option<&[u8]>,
    mut endpoints: Vec<Endpoint>,
    now: Timestamp,
    max_bytes: usize,
) -> Option<Endpoints> {
    let mut truncated = false;
    let mut size = 200 + namespace.len() + service.len();
    for (i, e) in endpoints.iter().enumerate() {
        size += serde_json::to_vec(e).map_or(0, |v| v.len()) + 1;
        if size > max_bytes {
            endpoints.truncate(i);
            truncated = true;
            break;
        }
    }
    let stored = current.and_then(|bytes| serde_json::from_slice::<Endpoints>(bytes).ok());
    if stored.is_some_and(|s| s.endpoints == endpoints && s.truncated == truncated) {
        return None;
    }
    Some(Endpoints {
        namespace: namespace.to_string(),
        service: service.to_string(),
        endpoints,
        updated_at: now,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::controller::plan::SpecState;
    use crate::model::{InstanceRecord, InstanceStatus, ServiceStatus, Versioned};

    fn t() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn node(name: &str, ip: Option<&str>) -> NodeRecord {
        serde_json::from_value(serde_json::json!({
            "name": name, "address": "10.0.0.9:9465", "agentVersion": "t",
            "startedAt": "2027-01-15T08:00:00Z", "instances": 0, "leaseId": 1, "ip": ip,
        }))
        .unwrap()
    }

    fn record(id: &str, node: &str, desired: DesiredState) -> Versioned<InstanceRecord> {
        let value = InstanceRecord {
            id: id.into(),
            namespace: "default".into(),
            service: "api".into(),
            node: node.into(),
            desired,
            revision: 1,
            created_at: t(),
            operation_id: None,
            node_lost: false,
        };
        Versioned::new(value, 5)
    }

    fn status(id: &str, node: &str, phase: Phase, ready: bool, port: u16) -> InstanceStatus {
        InstanceStatus {
            phase,
            ready,
            port: Some(port),
            ports: BTreeMap::from([("http".to_string(), port)]),
            ..InstanceStatus::pending(id, node)
        }
    }

    fn observed(
        records: Vec<Versioned<InstanceRecord>>,
        statuses: Vec<InstanceStatus>,
    ) -> Observed {
        Observed {
            source_versions: Default::default(),
            spec: SpecState::Missing,
            operation: None,
            operation_revision: None,
            status: ServiceStatus::default(),
            has_status: true,
            instances: records,
            statuses: statuses.into_iter().map(|s| (s.id.clone(), s)).collect(),
            revisions: vec![],
            nodes: BTreeMap::from([
                ("n1".to_string(), node("n1", Some("192.168.1.1"))),
                ("n2".to_string(), node("n2", None)),
            ]),
            node_states: HashMap::new(),
            node_lost_for: HashMap::new(),
            disruption: None,
            unparseable: vec![],
            now: t(),
        }
    }

    #[test]
    fn lists_ready_running_instances_of_registered_nodes() {
        let o = observed(
            vec![
                record("b", "n1", DesiredState::Running),
                record("a", "n2", DesiredState::Running),
                record("starting", "n1", DesiredState::Running),
                record("stopping", "n1", DesiredState::Stopped),
                record("lost", "gone", DesiredState::Running),
                record("no-status", "n1", DesiredState::Running),
            ],
            vec![
                status("b", "n1", Phase::Running, true, 2000),
                status("a", "n2", Phase::Running, true, 1000),
                status("starting", "n1", Phase::Starting, false, 3000),
                status("stopping", "n1", Phase::Running, true, 4000),
                status("lost", "gone", Phase::Running, true, 5000),
            ],
        );
        let list = compute(&o, &Plan::default());
        let ids: Vec<_> = list.iter().map(|e| e.instance.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted, ready and running only");
        assert_eq!(list[0].address, "10.0.0.9", "the agent address's host");
        assert_eq!(list[1].address, "192.168.1.1", "the node's ip");
        assert_eq!(list[1].socket(Some("http")).unwrap(), "192.168.1.1:2000");
        assert_eq!(list[1].socket(None).unwrap(), "192.168.1.1:2000");
        assert_eq!(list[1].socket(Some("grpc")), None);
    }

    #[test]
    fn an_instance_the_plan_stops_or_removes_leaves_at_once() {
        let o = observed(
            vec![
                record("a", "n1", DesiredState::Running),
                record("b", "n1", DesiredState::Running),
                record("c", "n1", DesiredState::Running),
            ],
            vec![
                status("a", "n1", Phase::Running, true, 1),
                status("b", "n1", Phase::Running, true, 2),
                status("c", "n1", Phase::Running, true, 3),
            ],
        );
        let mut stopped = record("b", "n1", DesiredState::Stopped);
        stopped.value.desired = DesiredState::Stopped;
        let plan = Plan {
            stop: vec![stopped],
            remove: vec![Versioned::new("c".to_string(), 5)],
            ..Plan::default()
        };
        let ids: Vec<_> = compute(&o, &plan).into_iter().map(|e| e.instance).collect();
        assert_eq!(ids, ["a"]);
        let purge = Plan {
            purge: true,
            ..Plan::default()
        };
        assert!(compute(&o, &purge).is_empty());
    }

    #[test]
    fn a_status_from_another_node_is_not_trusted() {
        let o = observed(
            vec![record("a", "n1", DesiredState::Running)],
            vec![status("a", "n2", Phase::Running, true, 1)],
        );
        assert!(compute(&o, &Plan::default()).is_empty());
    }

    #[test]
    fn written_only_when_the_list_changes() {
        let o = observed(
            vec![record("a", "n1", DesiredState::Running)],
            vec![status("a", "n1", Phase::Running, true, 1)],
        );
        let list = compute(&o, &Plan::default());
        let first = change("default", "api", None, list.clone(), t()).expect("new key");
        assert_eq!(first.service, "api");
        let bytes = serde_json::to_vec(&first).unwrap();
        let later = t() + jiff::SignedDuration::from_secs(60);
        assert_eq!(change("default", "api", Some(&bytes), list, later), None);
        let changed = change("default", "api", Some(&bytes), vec![], later).unwrap();
        assert_eq!(changed.updated_at, later);
        assert!(changed.endpoints.is_empty());
        assert!(
            change("default", "api", Some(b"garbage"), vec![], later).is_some(),
            "an unparseable value is replaced"
        );
    }

    #[test]
    fn a_list_too_large_for_one_value_is_cut_and_marked() {
        let many: Vec<Endpoint> = (0..100)
            .map(|i| Endpoint {
                instance: format!("api-{i:03}"),
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ports: BTreeMap::from([("http".to_string(), 1000 + i)]),
            })
            .collect();
        let cut = change_within("default", "api", None, many.clone(), t(), 2_000).unwrap();
        assert!(cut.truncated);
        assert!(!cut.endpoints.is_empty() && cut.endpoints.len() < 100);
        assert_eq!(cut.endpoints[..], many[..cut.endpoints.len()]);
        assert!(serde_json::to_vec(&cut).unwrap().len() <= 2_000);
        let bytes = serde_json::to_vec(&cut).unwrap();
        assert_eq!(
            change_within("default", "api", Some(&bytes), many.clone(), t(), 2_000),
            None,
            "the same cut is no change"
        );
        let whole = change_within("default", "api", Some(&bytes), many, t(), 1 << 20).unwrap();
        assert!(!whole.truncated);
        assert_eq!(whole.endpoints.len(), 100);
    }

    #[test]
    fn address_of_strips_the_port_and_brackets() {
        let mut n = node("n", None);
        n.address = "[::1]:9465".into();
        assert_eq!(address_of(&n), "::1");
        n.address = "host.example".into();
        assert_eq!(address_of(&n), "host.example");
    }
}
