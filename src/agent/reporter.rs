//! Writes instance statuses to etcd: on the node lease (a dead node's statuses vanish
//! with it), coalesced (only a changed value is written), and retried until etcd takes
//! it (an outage delays reports, never loses the latest one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::metrics::AgentMetrics;
use crate::model::InstanceStatus;
use crate::store::{Store, op};

pub enum Report {
    /// The latest status of the instance at this status key.
    Set(String, Box<InstanceStatus>),
    /// The instance is gone: delete its status key.
    Delete(String),
}

pub type Reports = mpsc::UnboundedSender<Report>;

/// Runs until every sender is dropped. `lease` carries the current node lease; a new
/// lease (re-registration) makes every status be written again on it.
pub async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Report>,
    mut lease: watch::Receiver<i64>,
    metrics: Arc<AgentMetrics>,
) {
    // What should be in etcd (None = deleted) and what was last written.
    let mut want: BTreeMap<String, Option<InstanceStatus>> = BTreeMap::new();
    let mut written: BTreeMap<String, Option<InstanceStatus>> = BTreeMap::new();
    let mut lease_id = *lease.borrow_and_update();
    let mut retry = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                apply(&mut want, msg);
                // Coalesce a burst into one pass.
                while let Ok(msg) = rx.try_recv() {
                    apply(&mut want, msg);
                }
                metrics.set_phases(want.values().flatten());
            }
            changed = lease.changed() => {
                if changed.is_err() { return; }
                lease_id = *lease.borrow_and_update();
                debug!(lease = lease_id, "new node lease; rewriting every status");
                written.clear();
            }
            _ = retry.tick() => {}
        }
        if lease_id == 0 {
            continue;
        }
        for (key, value) in &want {
            if written.get(key) == Some(value) {
                continue;
            }
            let result = match value {
                Some(s) => store
                    .txn(
                        vec![],
                        vec![op::put_with_lease(
                            key,
                            serde_json::to_vec(s).expect("status serializes"),
                            lease_id,
                        )],
                        vec![],
                    )
                    .await
                    .map(drop),
                None => store.delete(key).await,
            };
            match result {
                Ok(()) => {
                    written.insert(key.clone(), value.clone());
                }
                Err(e) => {
                    // The rest waits for the next pass; etcd is likely down.
                    warn!(%key, error = %e, "writing instance status failed; will retry");
                    break;
                }
            }
        }
        // Deleted keys that made it to etcd need no more tracking.
        want.retain(|k, v| v.is_some() || written.get(k) != Some(&None));
        written.retain(|k, _| want.contains_key(k));
    }
}

fn apply(want: &mut BTreeMap<String, Option<InstanceStatus>>, msg: Report) {
    match msg {
        Report::Set(k, s) => want.insert(k, Some(*s)),
        Report::Delete(k) => want.insert(k, None),
    };
}
