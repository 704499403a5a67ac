//! The agent's view of its assignments: one supervisor per instance record that names
//! this node, kept in step with the informer on this node's `assignments/<node>/` (the
//! controller's node-scoped copies of the instance records).
//!
//! Two safety rules live here, beside the bookkeeping:
//! - **Self-fencing.** While fenced (the node lease could not be renewed for the
//!   self-fence window) every instance is stopped and nothing starts; records keep
//!   being tracked, and supervision resumes from a fresh listing once the node is
//!   registered again.
//! - **Handover hold.** Records that were assigned to this node name before this
//!   agent registered it, and that the data dir does not know, may still run under a
//!   previous holder of the name. They start only once that holder must have fenced
//!   itself (see ARCHITECTURE.md, "Node handover").
//!
//! A record starts only once its spec revision is resolved (`revisions.rs`); one
//! whose revision is not stored is reported failed, with why, and never started.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::process;
use super::reporter::Report;
use super::revisions::{Assigned, Lookup, Resolved, Revisions};
use super::state::Persisted;
use super::supervisor::{self, Cmd, Handle, Shared};
use crate::model::{InstanceRecord, InstanceRef, InstanceStatus, Phase, ServiceRef};
use crate::store::{Keys, Kv, Store};

pub struct Assignments {
    keys: Keys,
    shared: Arc<Shared>,
    supervisors: HashMap<InstanceRef, Handle>,
    /// Every record naming this node, as last seen (also while fenced or held).
    records: BTreeMap<InstanceRef, Kv>,
    /// What the data dir knew at start; whatever has no record in the first full
    /// listing is stopped then.
    persisted: Option<BTreeMap<String, Persisted>>,
    /// Set while fenced: the instances stopped, whose supervisors are awaited before
    /// anything starts, and whose logs the fence holds (their records remain).
    fenced: Option<Vec<(InstanceRef, JoinHandle<()>)>>,
    /// Handover hold: records created before `revision` that the data dir does not
    /// know start at `until` (plus their own stop grace period).
    hold: Option<Hold>,
    /// The specs of the revisions records name.
    revisions: Revisions,
    /// Records whose revision is not stored: reported failed, not supervised.
    unresolvable: HashSet<InstanceRef>,
}

#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// The revision at which this agent created the node key.
    pub revision: i64,
    /// When the previous holder must have fenced itself.
    pub until: Instant,
}

impl Hold {
    /// When the previous holder's copy of `record` must be gone: fenced, plus the
    /// stop grace period its SIGKILL may wait for.
    fn end_for(&self, record: &Assigned) -> Instant {
        let grace = record.spec.stop_grace_period.min(Duration::from_secs(3600));
        self.until.checked_add(grace).unwrap_or(self.until)
    }
}

impl Assignments {
    pub fn new(keys: Keys, shared: Arc<Shared>, persisted: BTreeMap<String, Persisted>) -> Self {
        let mut revisions = Revisions::default();
        for assigned in persisted.values().filter_map(|p| p.record.as_ref()) {
            let service = ServiceRef::new(&assigned.namespace, &assigned.service);
            revisions.remember(service, assigned.revision, assigned.spec.clone());
        }
        Assignments {
            revisions,
            unresolvable: HashSet::new(),
            keys,
            shared,
            supervisors: HashMap::new(),
            records: BTreeMap::new(),
            persisted: Some(persisted),
            fenced: None,
            hold: None,
        }
    }

    /// From here on, revisions not known from the data dir are fetched; each
    /// answer is to be handed to [`Self::resolved`].
    pub fn connect(&mut self, store: Store, tx: tokio::sync::mpsc::UnboundedSender<Resolved>) {
        self.revisions.connect(store, tx);
    }

    /// A revision was looked up: the records waiting for it go on.
    pub fn resolved(&mut self, r: Resolved) {
        self.revisions.resolved(&r);
        let waiting: Vec<Kv> = self
            .records
            .iter()
            .filter(|(i, _)| i.service == r.service && !self.supervisors.contains_key(*i))
            .filter(|(_, kv)| {
                InstanceRecord::parse(&kv.value).is_ok_and(|rec| rec.revision == r.revision)
            })
            .map(|(_, kv)| kv.clone())
            .collect();
        for kv in waiting {
            self.put(kv);
        }
    }

    /// The record with its spec; `None` while the revision is being fetched, or
    /// when it is not stored (then the instance is reported failed).
    fn assigned(&mut self, i: &InstanceRef, record: InstanceRecord) -> Option<Assigned> {
        match self.revisions.lookup(&i.service, record.revision) {
            Lookup::Found(spec) => {
                self.unresolvable.remove(i);
                Some(Assigned {
                    record,
                    spec: *spec,
                })
            }
            Lookup::Pending => None,
            Lookup::Missing(why) => {
                if self.unresolvable.insert(i.clone()) {
                    warn!(instance = %i, reason = %why, "cannot run the instance");
                    let status = InstanceStatus {
                        phase: Phase::Failed,
                        message: why,
                        ..InstanceStatus::pending(&record.id, &self.shared.node)
                    };
                    let report = Report::Set(self.status_key(i), Box::new(status));
                    let _ = self.shared.reports.send(report);
                }
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.supervisors.len()
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.is_some()
    }

    pub fn set_hold(&mut self, hold: Hold) {
        self.hold = Some(hold);
    }

    /// `assignments/<this node>/<ns>/<svc>/<id>` → the instance.
    fn instance_of(&self, key: &str) -> Option<InstanceRef> {
        let seg = self.keys.segments("assignments", key)?;
        let [node, ns, svc, id] = seg.as_slice() else {
            return None;
        };
        (*node == self.shared.node).then(|| ServiceRef::new(*ns, *svc).instance(*id))
    }

    fn status_key(&self, i: &InstanceRef) -> String {
        self.keys
            .instance_status(&i.service.namespace, &i.service.name, &i.id)
    }

    fn parse(&self, kv: &Kv) -> Option<InstanceRecord> {
        match InstanceRecord::parse(&kv.value) {
            Ok(r) => Some(r),
            Err(e) => {
                // The controller removes such a record (which stops whatever ran
                // under it here); until then there is nothing to act on.
                warn!(key = %kv.key, error = %e, "ignoring an instance record that does not parse");
                self.shared.metrics.unparseable_records.inc();
                None
            }
        }
    }

    /// The informer's full listing: this node's records are exactly these.
    pub fn reset(&mut self, kvs: Vec<Kv>) {
        let mut seen = HashSet::new();
        for kv in kvs {
            if let Some(i) = self.instance_of(&kv.key)
                && self.parse(&kv).is_some_and(|r| r.node == self.shared.node)
            {
                seen.insert(i);
                self.put(kv);
            }
        }
        let gone: Vec<InstanceRef> = self
            .records
            .keys()
            .chain(self.supervisors.keys())
            .filter(|i| !seen.contains(*i))
            .cloned()
            .collect();
        for i in gone {
            self.forget(&i);
        }
        self.stop_orphans();
    }

    /// Processes a previous agent left for records deleted meanwhile.
    fn stop_orphans(&mut self) {
        let Some(orphans) = self.persisted.take() else {
            return;
        };
        for (key, p) in orphans {
            warn!(instance = %key, "record gone while the agent was away; stopping");
            let Some(instance) = InstanceRef::parse(&key) else {
                warn!(instance = %key, "a data-dir entry names no instance; left alone");
                continue;
            };
            let _ = self
                .shared
                .reports
                .send(Report::Delete(self.status_key(&instance)));
            let shared = self.shared.clone();
            // Its process may still write to the log until it is stopped.
            shared.logs.hold(&instance);
            // Off the main loop: a grace period must not hold up other records.
            tokio::spawn(async move {
                if let (Some(pid), Some(start)) = (p.pid, p.start_time)
                    && process::same_process(pid, start)
                {
                    process::stop_group(pid, Duration::from_secs(10)).await;
                }
                shared.data.remove(&instance.file_name());
                shared.logs.release(&instance);
                shared.ports.release(p.ports.iter().map(|(_, n)| *n));
            });
        }
    }

    /// Starts supervising (adopting) every instance the data dir knows with its
    /// record, before etcd has been heard from. Ports of all of them are taken first.
    pub fn adopt_local(&mut self) {
        let Some(persisted) = self.persisted.as_mut() else {
            return;
        };
        self.shared.ports.claim(
            persisted
                .values()
                .flat_map(|p| p.ports.iter().map(|(_, n)| *n)),
        );
        let node = self.shared.node.clone();
        let known: Vec<String> = persisted
            .iter()
            .filter(|(_, p)| p.record.as_ref().is_some_and(|r| r.node == node))
            .map(|(k, _)| k.clone())
            .collect();
        let mut adopted = Vec::new();
        for key in known {
            let p = persisted.remove(&key).expect("listed");
            if let Some(instance) = InstanceRef::parse(&key) {
                adopted.push((instance, p));
            }
        }
        for (instance, p) in adopted {
            let record = p.record.clone().expect("filtered");
            self.spawn(instance, record, Some(p));
        }
    }

    fn spawn(&mut self, i: InstanceRef, record: Assigned, persisted: Option<Persisted>) {
        let status_key = self.status_key(&i);
        let h = supervisor::spawn(
            self.shared.clone(),
            i.clone(),
            status_key,
            record,
            persisted,
        );
        self.supervisors.insert(i, h);
    }

    pub fn put(&mut self, kv: Kv) {
        let Some(i) = self.instance_of(&kv.key) else {
            return;
        };
        let Some(record) = self.parse(&kv) else {
            return;
        };
        if record.node != self.shared.node {
            // Not (or no longer) ours.
            return self.forget(&i);
        }
        let create_revision = kv.create_revision;
        self.records.insert(i.clone(), kv);
        if let Some(h) = self.supervisors.get(&i) {
            let _ = h.tx.send(Cmd::Update(Box::new(record)));
            return;
        }
        if self.fenced.is_some() {
            return;
        }
        // Resolved before the data dir's entry is taken: that entry is what an
        // adoption needs once the spec is known.
        let Some(record) = self.assigned(&i, record) else {
            return;
        };
        let persisted = self
            .persisted
            .as_mut()
            .and_then(|p| p.remove(&i.to_string()));
        if persisted.is_none() && self.held(create_revision, &record) {
            info!(instance = %i, "assigned before this agent took the node name over: waiting until its previous holder must have fenced itself");
            return;
        }
        self.spawn(i, record, persisted);
    }

    /// Whether a record this agent does not know must wait out the handover hold.
    fn held(&self, create_revision: i64, record: &Assigned) -> bool {
        self.hold
            .is_some_and(|h| create_revision < h.revision && Instant::now() < h.end_for(record))
    }

    /// Starts held records whose hold is over; returns when to look again.
    pub fn release_held(&mut self) -> Option<Instant> {
        let hold = self.hold?;
        if self.persisted.is_some() {
            // Not listed yet: the records the hold is about have not arrived.
            return None;
        }
        if self.fenced.is_some() {
            return Some(Instant::now() + Duration::from_secs(1));
        }
        let waiting: Vec<Kv> = self
            .records
            .iter()
            .filter(|(i, _)| !self.supervisors.contains_key(*i))
            .map(|(_, kv)| kv.clone())
            .collect();
        let mut next = None::<Instant>;
        for kv in waiting {
            let Some(record) = self.parse(&kv) else {
                continue;
            };
            let Some(i) = self.instance_of(&kv.key) else {
                continue;
            };
            if self.unresolvable.contains(&i) {
                continue;
            }
            let Lookup::Found(spec) = self.revisions.lookup(&i.service, record.revision) else {
                // Still being resolved: the hold must outlast it.
                let at = Instant::now() + Duration::from_secs(1);
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            };
            let record = Assigned {
                record,
                spec: *spec,
            };
            if self.held(kv.create_revision, &record) {
                let at = hold.end_for(&record);
                next = Some(next.map_or(at, |n| n.min(at)));
            } else {
                info!(instance = %record.id, "handover hold over; starting");
                self.put(kv);
            }
        }
        if next.is_none() {
            self.hold = None;
        }
        next
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(i) = self.instance_of(key) {
            self.forget(&i);
        }
    }

    /// The record is gone (or no longer ours): stop its process, forget it.
    fn forget(&mut self, i: &InstanceRef) {
        self.records.remove(i);
        if let Some(h) = self.supervisors.remove(i) {
            let _ = h.tx.send(Cmd::Remove);
        }
        if self.unresolvable.remove(i) {
            let _ = self.shared.reports.send(Report::Delete(self.status_key(i)));
        }
        self.prune_revisions(&i.service);
    }

    /// Forgets the cached revisions of `service` that no record names any more.
    /// Supervisors adopted from the data dir before the first listing hold their
    /// spec themselves, so only the records count.
    fn prune_revisions(&mut self, service: &ServiceRef) {
        let used: HashSet<u64> = self
            .records
            .iter()
            .filter(|(i, _)| i.service == *service)
            .filter_map(|(_, kv)| InstanceRecord::parse(&kv.value).ok())
            .map(|record| record.revision)
            .collect();
        self.revisions.retain(service, &used);
    }

    /// Supervisors end only when told to (and are taken out of the map then); one
    /// that ended on its own panicked. Its instance is supervised again, adopting
    /// the process from the data dir, so it is neither orphaned nor started twice.
    pub fn revive_crashed(&mut self) {
        let crashed: Vec<InstanceRef> = self
            .supervisors
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(i, _)| i.clone())
            .collect();
        for i in crashed {
            let Some(record) = self.records.get(&i).and_then(|kv| self.parse(kv)) else {
                continue;
            };
            // Its revision was resolved when it started (and stays cached while
            // its record names it).
            let Lookup::Found(spec) = self.revisions.lookup(&i.service, record.revision) else {
                continue;
            };
            let record = Assigned {
                record,
                spec: *spec,
            };
            tracing::error!(instance = %i, "the instance's supervisor failed; supervising it again");
            self.supervisors.remove(&i);
            let persisted = self.shared.data.load(&i.file_name());
            self.spawn(i, record, persisted);
        }
    }

    /// Self-fences: stops every instance and starts nothing until [`Self::unfence`].
    pub fn fence(&mut self) {
        if self.fenced.is_some() {
            return;
        }
        let mut stopping = Vec::new();
        for (i, h) in self.supervisors.drain() {
            // The instance ends, its record does not: its log stays live.
            self.shared.logs.hold(&i);
            let _ = h.tx.send(Cmd::Remove);
            stopping.push((i, h.task));
        }
        self.fenced = Some(stopping);
    }

    /// Whether every instance stopped by the fence has ended.
    pub fn fence_settled(&self) -> bool {
        self.fenced
            .as_ref()
            .is_none_or(|tasks| tasks.iter().all(|(_, t)| t.is_finished()))
    }

    /// Ends the fence with a fresh listing of the records (what the informer saw
    /// while etcd was out of reach may be stale: a record may have been moved).
    pub fn unfence(&mut self, kvs: Vec<Kv>) {
        let fenced = self.fenced.take().unwrap_or_default();
        self.records.clear();
        self.reset(kvs);
        // Instances started again hold their logs by now; the others ended.
        for (i, _) in fenced {
            self.shared.logs.release(&i);
        }
    }

    /// Hands every supervisor its last command (the agent is exiting).
    pub async fn shutdown(&mut self, stop: bool) {
        let mut tasks = Vec::new();
        for (_, h) in self.supervisors.drain() {
            let _ = h.tx.send(Cmd::Shutdown { stop });
            tasks.push(h.task);
        }
        if let Some(fencing) = self.fenced.take() {
            tasks.extend(fencing.into_iter().map(|(_, t)| t));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
