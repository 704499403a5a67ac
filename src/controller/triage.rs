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
use crate::store::watch::WatchEvent;
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

/// What the informer has seen of each service's spec, operation and status: kept
/// up to date from the watch (by standbys too), so a new term orders its first pass
/// without reading anything.
#[derive(Default)]
pub struct Triage {
    seen: BTreeMap<ServiceRef, Seen>,
}

impl Triage {
    /// Follows one event of the watch over the whole prefix.
    pub fn observe(&mut self, keys: &Keys, ev: &WatchEvent) {
        match ev {
            WatchEvent::Reset { kvs, .. } => {
                self.seen.clear();
                for kv in kvs {
                    self.put(keys, kv);
                }
            }
            WatchEvent::Put(kv) => self.put(keys, kv),
            WatchEvent::Delete(kv) => self.delete(keys, kv),
            WatchEvent::Connected(_) => {}
        }
    }

    fn put(&mut self, keys: &Keys, kv: &Kv) {
        let Some(service) = keys.service_of(&kv.key) else {
            return;
        };
        let entry = self.seen.entry(service).or_default();
        match collection(keys, &kv.key) {
            "services" => entry.spec = kv.mod_revision,
            "operations" => entry.operation = kv.mod_revision,
            "status" => entry.status = Some(serde_json::from_slice(&kv.value).unwrap_or_default()),
            _ => {}
        }
    }

    fn delete(&mut self, keys: &Keys, kv: &Kv) {
        let Some(service) = keys.service_of(&kv.key) else {
            return;
        };
        // The service stays known (its other keys may remain); a reconcile of a
        // service with no keys at all does nothing.
        let entry = self.seen.entry(service).or_default();
        match collection(keys, &kv.key) {
            "services" => entry.spec = 0,
            "operations" => entry.operation = 0,
            "status" => entry.status = None,
            _ => {}
        }
    }

    /// Every service seen, those with work waiting first.
    pub fn order(&self) -> Vec<ServiceRef> {
        let (first, rest): (Vec<_>, Vec<_>) = self.seen.iter().partition(|(_, s)| s.waiting());
        first
            .into_iter()
            .chain(rest)
            .map(|(service, _)| service.clone())
            .collect()
    }
}

/// The collection a key is in: `services`, `operations`, `status`, ….
fn collection<'a>(keys: &Keys, key: &'a str) -> &'a str {
    key[keys.root().len()..]
        .split('/')
        .next()
        .unwrap_or_default()
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
        let mut triage = Triage::default();
        triage.observe(&k, &WatchEvent::Reset { kvs, revision: 30 });
        let names: Vec<String> = triage.order().into_iter().map(|s| s.name).collect();
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
        // Watched changes move services between the two groups.
        triage.observe(
            &k,
            &WatchEvent::Put(kv(&k.operation("ns", "c-settled"), "x", 40)),
        );
        triage.observe(
            &k,
            &WatchEvent::Put(kv(
                &k.status("ns", "b-new-spec"),
                r#"{"observedGeneration":9}"#,
                41,
            )),
        );
        let names: Vec<String> = triage.order().into_iter().map(|s| s.name).collect();
        assert_eq!(names[0], "c-settled");
        assert_eq!(
            names.last().unwrap(),
            "b-new-spec",
            "settled now; in name order"
        );
    }
}
