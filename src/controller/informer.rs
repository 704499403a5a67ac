//! The controller's view of etcd: one watch over the whole prefix, kept by every
//! replica from its start, standbys included (a warm standby, as kube-controller-
//! manager's shared informers keep their cache). A new leader starts from it: no
//! listing of the whole prefix at the moment it takes over (at fleet size that
//! listing takes seconds), just its first pass over the services, those with work
//! waiting first.
//!
//! What it keeps: node health and node records (`nodes.rs`), and each service's
//! spec, operation and status revisions for triage (`triage.rs`). Reconciles still
//! read their service fresh from etcd; this only says which services to look at,
//! in what order, and where instances can go.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::warn;

use super::metrics::ControllerMetrics;
use super::nodes::NodeTracker;
use super::sources::SourceIndex;
use super::triage::Triage;
use crate::store::watch::{WatchEvent, watch_prefix};
use crate::store::{Keys, Store};

pub struct Informer {
    keys: Keys,
    events: mpsc::Receiver<WatchEvent>,
    pub triage: Triage,
    /// Which services use which configs and secrets, and their versions
    /// (`sources.rs`); shared with the reconciles, as the nodes are.
    pub sources: Arc<Mutex<SourceIndex>>,
    /// Shared with the reconciles of the current term.
    pub nodes: Arc<Mutex<NodeTracker>>,
    /// The first full listing has been seen.
    pub synced: bool,
    metrics: Arc<ControllerMetrics>,
}

impl Informer {
    pub fn start(store: &Store, metrics: Arc<ControllerMetrics>) -> Informer {
        Informer {
            keys: store.keys().clone(),
            events: watch_prefix(store.clone(), store.keys().root().to_string()),
            triage: Triage::default(),
            sources: Arc::default(),
            nodes: Arc::new(Mutex::new(NodeTracker::new(tokio::time::Instant::now()))),
            synced: false,
            metrics,
        }
    }

    /// The next event, already applied to what the informer keeps; `None` when the
    /// watch ended.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        let ev = self.events.recv().await?;
        self.triage.observe(&self.keys, &ev);
        self.sources.lock().unwrap().observe(&self.keys, &ev);
        let now = tokio::time::Instant::now();
        let bad = self.nodes.lock().unwrap().observe(&self.keys, &ev, now);
        // A node record that does not parse counts as not registered; it concerns
        // every service, so it is logged and counted here (each version is seen
        // once), not put on a service's status.
        for node in bad {
            warn!(key = %node.key, revision = node.revision, error = %node.error, "node record does not parse");
            self.metrics.unparseable("node");
        }
        if matches!(ev, WatchEvent::Reset { .. }) {
            self.synced = true;
        }
        Some(ev)
    }

    /// A new leadership term starts: node loss counts from now (this replica's
    /// memory of when nodes went missing is kept, but a new leader waits a full
    /// grace period before giving up any node's instances).
    pub fn new_term(&self) {
        self.nodes
            .lock()
            .unwrap()
            .healthy_again(tokio::time::Instant::now());
    }
}
