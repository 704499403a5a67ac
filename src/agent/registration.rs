//! Node registration: `nodes/<node>` on a lease kept alive by its own task.
//!
//! A node name belongs to one agent: registering is a create-if-absent. The one
//! exception is an agent restarted on the same data dir (e.g. after SIGKILL): it
//! reclaims the node key when the key's lease is the lease id persisted in the data
//! dir, so its instances' statuses survive the restart.

use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::state::DataDir;
use crate::model::NodeRecord;
use crate::store::lease::{Lease, LeaseState};
use crate::store::{Store, StoreError, cmp, op};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "node name {node:?} is already registered by another agent (at {address}, lease {lease}); \
         pick another --node-name or stop that agent"
    )]
    Taken {
        node: String,
        address: String,
        lease: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Registration {
    pub lease: Lease,
    pub record: NodeRecord,
    /// The revision that created the node key, when this registration created it
    /// (`None` when an agent restarted on the same data dir reclaimed its own key).
    pub created_at_revision: Option<i64>,
}

/// Registers (or reclaims) the node key.
pub async fn register(
    store: &Store,
    data: &DataDir,
    mut record: NodeRecord,
    ttl: Duration,
) -> Result<Registration, RegisterError> {
    let key = store.keys().node(&record.name);
    let persisted = data.lease_id();
    if let Some(kv) = store.get(&key).await? {
        let theirs: Option<NodeRecord> = kv.json().ok();
        let ours = persisted == Some(kv.lease) && kv.lease != 0;
        if !ours {
            return Err(RegisterError::Taken {
                node: record.name.clone(),
                address: theirs.map(|r| r.address).unwrap_or_else(|| "?".into()),
                lease: kv.lease,
            });
        }
        if store.lease_ttl(kv.lease).await?.is_some() {
            // Our own lease, still alive: keep it, so nothing on it vanishes.
            record.lease_id = kv.lease;
            let lease = store.keep_alive(kv.lease, ttl);
            write(store, &key, &record, Some(kv.mod_revision)).await?;
            info!(lease = kv.lease, "reclaimed node registration");
            return Ok(Registration {
                lease,
                record,
                created_at_revision: None,
            });
        }
        // Our own key on our own lease that has expired: etcd revokes expired leases
        // asynchronously (under load, seconds late), so the key may outlive the
        // lease briefly. Nobody else writes on our lease: remove the key (only as
        // read) and register anew, rather than mistake our own registration for
        // another agent's.
        info!(
            lease = kv.lease,
            "our expired registration is still listed; replacing it"
        );
        store
            .txn(
                vec![cmp::mod_rev(&key, kv.mod_revision)],
                vec![op::delete(&key)],
                vec![],
            )
            .await?;
    }
    let lease = store.lease(ttl).await?;
    record.lease_id = lease.id;
    // Persist first: if we die right after the write, the restart still reclaims.
    if let Err(e) = data.set_lease_id(lease.id) {
        warn!(error = %e, "cannot persist the lease id");
    }
    let Some(revision) = write(store, &key, &record, None).await? else {
        let _ = store.revoke_lease(lease.id).await;
        let kv = store.get(&key).await?;
        return Err(RegisterError::Taken {
            node: record.name.clone(),
            address: kv
                .as_ref()
                .and_then(|kv| kv.json::<NodeRecord>().ok())
                .map(|r| r.address)
                .unwrap_or_else(|| "?".into()),
            lease: kv.map(|kv| kv.lease).unwrap_or(0),
        });
    };
    info!(lease = lease.id, "registered node");
    Ok(Registration {
        lease,
        record,
        created_at_revision: Some(revision),
    })
}

/// Writes the node record on its lease: create-if-absent (`expect = None`) or
/// compare-and-swap on the mod revision read. Returns the revision it committed at,
/// or `None` when the comparison failed.
async fn write(
    store: &Store,
    key: &str,
    record: &NodeRecord,
    expect: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    let when = match expect {
        None => cmp::absent(key),
        Some(rev) => cmp::mod_rev(key, rev),
    };
    let value = serde_json::to_vec(record).expect("node record serializes");
    let r = store
        .txn(
            vec![when],
            vec![op::put_with_lease(key, value, record.lease_id)],
            vec![],
        )
        .await?;
    Ok(r.succeeded.then_some(r.revision))
}

/// Keeps the registration: re-acquires a lost lease at once (publishing 0 on
/// `lease_tx` while unregistered, then the new id, which makes every status be
/// rewritten), publishes each renewal on `renewed` (the self-fence clock), and
/// updates the instance count and what the instances ask for. Returns only when the node name was taken by another
/// agent while ours was lost: this agent must then stop its instances and exit.
#[allow(clippy::too_many_arguments)]
pub async fn keep(
    store: Store,
    data: std::sync::Arc<DataDir>,
    mut reg: Registration,
    ttl: Duration,
    lease_tx: watch::Sender<i64>,
    renewed: watch::Sender<Instant>,
    mut count: watch::Receiver<u32>,
    mut requested: watch::Receiver<(u64, u64)>,
) -> RegisterError {
    let key = store.keys().node(&reg.record.name);
    // The count is informational (placement counts records itself): written at most
    // once per tick, so a node taking a hundred instances rewrites its key once.
    let mut count_due = false;
    // What the instances ask for (`resources`), written on the same tick.
    let (mut requests_due, mut requests_open) = (false, true);
    let mut tick = tokio::time::interval(COUNT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = reg.lease.state.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                let state = *reg.lease.state.borrow();
                let LeaseState::Alive(at) = state else {
                    warn!(lease = reg.lease.id, "node lease lost; registering again");
                    // 0 = unregistered: /readyz says so and status writes wait.
                    let _ = lease_tx.send(0);
                    reg = match reacquire(&store, &data, reg.record.clone(), ttl).await {
                        Ok(r) => r,
                        Err(taken) => return taken,
                    };
                    let _ = renewed.send(Instant::now());
                    let _ = lease_tx.send(reg.lease.id);
                    continue;
                };
                let _ = renewed.send(at);
            }
            changed = count.changed() => {
                if changed.is_err() { return std::future::pending().await; }
                count_due = *count.borrow_and_update() != reg.record.instances;
            }
            changed = requested.changed(), if requests_open => {
                requests_open = changed.is_ok();
                let (memory, cpu) = *requested.borrow_and_update();
                if let Some(a) = &mut reg.record.allocatable
                    && (a.requested_memory_bytes, a.requested_cpu_millis) != (memory, cpu)
                {
                    (a.requested_memory_bytes, a.requested_cpu_millis) = (memory, cpu);
                    requests_due = true;
                }
            }
            _ = tick.tick(), if count_due || requests_due => {
                reg.record.instances = *count.borrow();
                let value = serde_json::to_vec(&reg.record).expect("node record serializes");
                match store.txn(vec![], vec![op::put_with_lease(&key, value, reg.lease.id)], vec![]).await {
                    Ok(_) => (count_due, requests_due) = (false, false),
                    Err(e) => warn!(error = %e, "updating the node record failed"),
                }
            }
        }
    }
}

/// How often, at most, the node record is rewritten with a new instance count.
const COUNT_EVERY: Duration = Duration::from_secs(2);

/// Registers again until etcd takes it; gives up only when another agent holds the
/// node name.
async fn reacquire(
    store: &Store,
    data: &DataDir,
    record: NodeRecord,
    ttl: Duration,
) -> Result<Registration, RegisterError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match register(store, data, record.clone(), ttl).await {
            Ok(r) => return Ok(r),
            Err(e @ RegisterError::Taken { .. }) => return Err(e),
            Err(e) => {
                warn!(error = %e, "re-registering failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

pub fn node_record(name: &str, address: String) -> NodeRecord {
    NodeRecord {
        name: name.to_string(),
        address,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: Timestamp::now(),
        instances: 0,
        capacity: 0,
        lease_id: 0,
        cgroups: None,
        allocatable: None,
        labels: Default::default(),
        logs: None,
        ip: None,
    }
}
