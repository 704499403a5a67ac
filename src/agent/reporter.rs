//! Writes instance statuses to etcd: on the node lease (a dead node's statuses vanish
//! with it), coalesced (only a changed value is written, and a burst of changes in
//! as few transactions as fit), and retried until etcd takes it (an outage delays
//! reports, never loses the latest one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::metrics::AgentMetrics;
use crate::model::InstanceStatus;
use crate::store::batch::{MAX_TXN_BYTES, MAX_TXN_OPS};
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
        // What changed since the last write, a transaction at a time: a burst of
        // reports (a node taking a hundred instances) is a few requests, not one
        // per instance.
        let changed: Vec<(&String, &Option<InstanceStatus>)> = want
            .iter()
            .filter(|(key, value)| written.get(*key) != Some(*value))
            .collect();
        let mut done = Vec::new();
        for chunk in chunks(&changed) {
            let ops = chunk
                .iter()
                .map(|(key, value)| match value {
                    Some(s) => op::put_with_lease(
                        key,
                        serde_json::to_vec(s).expect("status serializes"),
                        lease_id,
                    ),
                    None => op::delete(key),
                })
                .collect();
            match store.txn(vec![], ops, vec![]).await {
                Ok(_) => done.extend(chunk.iter().map(|(k, v)| ((*k).clone(), (*v).clone()))),
                Err(e) => {
                    // The rest waits for the next pass; etcd is likely down.
                    warn!(error = %e, statuses = chunk.len(), "writing instance statuses failed; will retry");
                    break;
                }
            }
        }
        written.extend(done);
        // Deleted keys that made it to etcd need no more tracking.
        want.retain(|k, v| v.is_some() || written.get(k) != Some(&None));
        written.retain(|k, _| want.contains_key(k));
    }
}

/// Splits changes into transactions etcd takes: within [`MAX_TXN_OPS`] operations
/// and about [`MAX_TXN_BYTES`].
fn chunks<'a, T: serde::Serialize>(
    changed: &'a [(&'a String, &'a Option<T>)],
) -> Vec<&'a [(&'a String, &'a Option<T>)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (key, value)) in changed.iter().enumerate() {
        let size = key.len()
            + value
                .as_ref()
                .map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len()))
            + 64;
        if i > start && (i - start >= MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES) {
            out.push(&changed[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < changed.len() {
        out.push(&changed[start..]);
    }
    out
}

fn apply(want: &mut BTreeMap<String, Option<InstanceStatus>>, msg: Report) {
    match msg {
        Report::Set(k, s) => want.insert(k, Some(*s)),
        Report::Delete(k) => want.insert(k, None),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_chunked_by_count_and_size() {
        let keys: Vec<String> = (0..250).map(|i| format!("k{i}")).collect();
        let small = Some(1u8);
        let changed: Vec<(&String, &Option<u8>)> = keys.iter().map(|k| (k, &small)).collect();
        let sizes: Vec<usize> = chunks(&changed).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);

        let big = Some("x".repeat(400 * 1024));
        let changed: Vec<(&String, &Option<String>)> =
            keys.iter().take(5).map(|k| (k, &big)).collect();
        let sizes: Vec<usize> = chunks(&changed).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1], "about 1 MiB a transaction");
        assert!(chunks::<u8>(&[]).is_empty());
    }
}
