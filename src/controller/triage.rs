//! Which services a new leadership term reconciles first.
//!
//! A new leader lists everything and queues every service: at fleet size that is
//! thousands of reconciles, most of which find nothing to do. A service with work
//! waiting (a spec or operation record its status has not observed yet, an
//! operation in progress, or no status at all) goes to the front, so a scale issued
//! during a failover waits for the services that need the leader, not for the whole
//! fleet's resync. Pure: it looks at the listed keys only.

use std::collections::BTreeMap;

use crate::model::{OperationPhase, ServiceRef};
use crate::store::{Keys, Kv};

/// What triage reads of a status: whether the spec and operation were observed,
/// and whether an operation is still running.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Observed {
    observed_generation: i64,
    observed_operation: i64,
    operation: Option<Progress>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Progress {
    phase: Option<OperationPhase>,
}

#[derive(Default)]
struct Seen {
    spec: i64,
    operation: i64,
    status: Option<Observed>,
}

impl Seen {
    fn waiting(&self) -> bool {
        let Some(status) = &self.status else {
            return true;
        };
        let running = status
            .operation
            .as_ref()
            .and_then(|p| p.phase)
            .is_some_and(|phase| !phase.is_terminal());
        self.spec != status.observed_generation
            || self.operation > status.observed_operation
            || running
    }
}

/// Every service the listing names, those with work waiting first.
pub fn order(keys: &Keys, kvs: &[Kv]) -> Vec<ServiceRef> {
    let mut seen: BTreeMap<ServiceRef, Seen> = BTreeMap::new();
    for kv in kvs {
        let Some(service) = keys.service_of(&kv.key) else {
            continue;
        };
        let entry = seen.entry(service.clone()).or_default();
        let rest = &kv.key[keys.root().len()..];
        if rest.starts_with("services/") {
            entry.spec = kv.mod_revision;
        } else if rest.starts_with("operations/") {
            entry.operation = kv.mod_revision;
        } else if rest.starts_with("status/") {
            entry.status = Some(serde_json::from_slice(&kv.value).unwrap_or_default());
        }
    }
    let (first, rest): (Vec<_>, Vec<_>) = seen.into_iter().partition(|(_, s)| s.waiting());
    first
        .into_iter()
        .chain(rest)
        .map(|(service, _)| service)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    #[test]
    fn services_with_work_waiting_come_first() {
        let k = Keys::new("/r");
        let settled = |name: &str, spec: i64| {
            vec![
                kv(&k.service("ns", name), "x", spec),
                kv(
                    &k.status("ns", name),
                    &format!(r#"{{"observedGeneration":{spec},"observedOperation":0}}"#),
                    spec + 1,
                ),
            ]
        };
        let mut kvs = Vec::new();
        kvs.extend(settled("a-settled", 5));
        // A spec written after its status observed the previous one.
        kvs.push(kv(&k.service("ns", "b-new-spec"), "x", 9));
        kvs.push(kv(
            &k.status("ns", "b-new-spec"),
            r#"{"observedGeneration":7}"#,
            8,
        ));
        kvs.extend(settled("c-settled", 6));
        // An operation record not observed yet.
        kvs.extend(settled("d-new-op", 3));
        kvs.push(kv(&k.operation("ns", "d-new-op"), "x", 12));
        // An operation still running.
        kvs.push(kv(&k.service("ns", "e-running"), "x", 2));
        kvs.push(kv(
            &k.status("ns", "e-running"),
            r#"{"observedGeneration":2,"operation":{"phase":"Progressing"}}"#,
            3,
        ));
        // No status yet.
        kvs.push(kv(&k.service("ns", "f-no-status"), "x", 20));
        // Instance keys alone name a service too.
        kvs.push(kv(&k.instance("ns", "g-orphan", "i1"), "{}", 21));
        let names: Vec<String> = order(&k, &kvs).into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "b-new-spec",
                "d-new-op",
                "e-running",
                "f-no-status",
                "g-orphan",
                "a-settled",
                "c-settled"
            ]
        );
    }
}
