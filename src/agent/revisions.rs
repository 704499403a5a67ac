//! Spec revisions on the agent side. An instance record names its spec revision
//! (`revisions/<ns>/<svc>/<n>`); before an instance starts, the agent resolves it
//! with one get. Revisions never change, so each (service, n) is fetched once and
//! cached in memory — until no record of this node names it, so that a service
//! deleted and cast again (which numbers its revisions from 1 again) is never run
//! from a stale entry. A revision that is not stored is remembered as missing and
//! reported as a failed instance; an etcd error is retried with back-off.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use crate::model::{InstanceRecord, Revision, ServiceRef, ServiceSpec};
use crate::store::Store;

/// An instance record with the spec it runs: what a supervisor works from and
/// what the data dir keeps (so adoption works before etcd answers). Reads like
/// the record (`assigned.id`, `assigned.desired`), plus `assigned.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    pub record: InstanceRecord,
    /// The spec of `record.revision` as resolved when the instance was first
    /// supervised; a running process keeps it (the controller replaces instances
    /// to change what runs).
    pub spec: ServiceSpec,
}

impl Deref for Assigned {
    type Target = InstanceRecord;
    fn deref(&self) -> &InstanceRecord {
        &self.record
    }
}

/// One revision looked up in etcd.
#[derive(Debug)]
pub struct Resolved {
    pub service: ServiceRef,
    pub revision: u64,
    /// The spec, or why there is none (not stored, does not parse).
    pub outcome: Result<ServiceSpec, String>,
}

/// What is known about one revision.
pub enum Lookup {
    Found(Box<ServiceSpec>),
    Missing(String),
    /// Not known yet: asked for; the answer arrives as a [`Resolved`].
    Pending,
}

type Key = (ServiceRef, u64);

#[derive(Default)]
pub struct Revisions {
    specs: HashMap<Key, ServiceSpec>,
    missing: HashMap<Key, String>,
    in_flight: HashSet<Key>,
    fetcher: Option<(Store, mpsc::UnboundedSender<Resolved>)>,
}

impl Revisions {
    /// From here on, unknown revisions are fetched; answers go to `tx`.
    pub fn connect(&mut self, store: Store, tx: mpsc::UnboundedSender<Resolved>) {
        self.fetcher = Some((store, tx));
    }

    /// A spec known from the data dir.
    pub fn remember(&mut self, service: ServiceRef, revision: u64, spec: ServiceSpec) {
        self.specs.insert((service, revision), spec);
    }

    /// The spec of `service`'s revision `n`, or a fetch of it under way. A missing
    /// revision stays missing (the controller stores a revision before any record
    /// names it, and never changes one) until no record names it any more.
    pub fn lookup(&mut self, service: &ServiceRef, n: u64) -> Lookup {
        let key = (service.clone(), n);
        if let Some(spec) = self.specs.get(&key) {
            return Lookup::Found(Box::new(spec.clone()));
        }
        if let Some(why) = self.missing.get(&key) {
            return Lookup::Missing(why.clone());
        }
        if let Some((store, tx)) = &self.fetcher
            && self.in_flight.insert(key)
        {
            tokio::spawn(fetch(store.clone(), service.clone(), n, tx.clone()));
        }
        Lookup::Pending
    }

    pub fn resolved(&mut self, r: &Resolved) {
        let key = (r.service.clone(), r.revision);
        self.in_flight.remove(&key);
        match &r.outcome {
            Ok(spec) => {
                self.specs.insert(key, spec.clone());
            }
            Err(why) => {
                self.missing.insert(key, why.clone());
            }
        }
    }

    /// Forgets `service`'s revisions except those in `used`.
    pub fn retain(&mut self, service: &ServiceRef, used: &HashSet<u64>) {
        let keep = |(s, n): &Key| s != service || used.contains(n);
        self.specs.retain(|k, _| keep(k));
        self.missing.retain(|k, _| keep(k));
    }
}

/// Gets one revision, retrying while etcd does not answer (1 s doubling to 30 s).
async fn fetch(store: Store, service: ServiceRef, n: u64, tx: mpsc::UnboundedSender<Resolved>) {
    let key = store.keys().revision(&service.namespace, &service.name, n);
    let mut delay = Duration::from_secs(1);
    let outcome = loop {
        match store.get(&key).await {
            Ok(Some(kv)) => {
                break kv
                    .json::<Revision>()
                    .map(|r| r.spec)
                    .map_err(|e| format!("spec revision {n} does not parse: {e}"));
            }
            Ok(None) => {
                break Err(format!(
                    "spec revision {n} of {service} is not stored ({key}): nothing to run"
                ));
            }
            Err(e) => {
                warn!(%key, error = %e, "cannot read a spec revision; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let _ = tx.send(Resolved {
        service,
        revision: n,
        outcome,
    });
}
