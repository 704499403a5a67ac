//! Leader election on etcd, after etcd's `concurrency` package: each candidate
//! creates `leader/<lease id>` on its own lease; the key with the lowest create
//! revision leads. Every write the leader makes compares that key's create revision
//! (the fence), so a deposed leader — paused, partitioned, or slow to notice — can
//! no longer change anything.

use std::time::Duration;

use etcd_client::Compare;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::store::lease::{Lease, LeaseState};
use crate::store::{Store, StoreError, cmp, op};

/// Why a campaign ended without leadership (after etcd's `ErrElectionNotLeader`
/// and friends: sentinel cases, not strings).
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Our candidate key disappeared (its lease was revoked or expired).
    #[error("our election key vanished")]
    KeyVanished,
    /// The lease our candidate key is on expired while we waited our turn.
    #[error("election lease expired while campaigning")]
    LeaseExpired,
}

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Lease TTL: how long a dead leader blocks the others.
    pub lease_duration: Duration,
    /// The leader stops working when it could not renew for this long (< TTL), so it
    /// stops before the lease can expire and another can lead.
    pub renew_deadline: Duration,
    /// How often candidates check whether they lead now.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        // kube-controller-manager's defaults.
        ElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Held while leading. Dropping it stops the keep-alive (the lease then expires).
pub struct Leadership {
    pub key: String,
    pub create_revision: i64,
    pub lease: Lease,
    renew_deadline: Duration,
}

impl Leadership {
    /// The comparison every leader write carries.
    pub fn fence(&self) -> Compare {
        cmp::created_at(&self.key, self.create_revision)
    }

    /// Resolves when leadership must be given up: the lease was lost, or not renewed
    /// within the renew deadline.
    pub async fn lost(&self) -> String {
        let mut state = self.lease.state.clone();
        loop {
            let last = match *state.borrow_and_update() {
                LeaseState::Lost => return "lease expired".into(),
                LeaseState::Alive(at) => at,
            };
            let deadline = last + self.renew_deadline;
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        return "lease keep-alive stopped".into();
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= deadline {
                        return format!("could not renew the lease within {:?}", self.renew_deadline);
                    }
                }
            }
        }
    }

    /// Gives the lead away promptly, instead of waiting for the lease to expire.
    pub async fn resign(&self, store: &Store) {
        let _ = store.revoke_lease(self.lease.id).await;
    }
}

/// Campaigns until this candidate leads. Returns the leadership.
pub async fn campaign(
    store: &Store,
    id: &str,
    cfg: &ElectionConfig,
) -> Result<Leadership, ElectionError> {
    let lease = store.lease(cfg.lease_duration).await?;
    let lease_id = lease.id;
    let result = campaign_with(store, id, cfg, lease).await;
    if result.is_err() {
        // Our key must not keep the lead from the others until its lease expires.
        let _ = store.revoke_lease(lease_id).await;
    }
    result
}

async fn campaign_with(
    store: &Store,
    id: &str,
    cfg: &ElectionConfig,
    lease: Lease,
) -> Result<Leadership, ElectionError> {
    let key = format!("{}{:x}", store.keys().leader(), lease.id);
    let res = store
        .txn(
            vec![cmp::absent(&key)],
            vec![
                op::put_with_lease(&key, id.as_bytes().to_vec(), lease.id),
                op::get(&key),
            ],
            vec![op::get(&key)],
        )
        .await?;
    let create_revision = res
        .ranges
        .first()
        .and_then(|r| r.first())
        .map(|kv| kv.create_revision)
        .ok_or(ElectionError::KeyVanished)?;
    let mut announced = false;
    // Woken by any change of the election keys (the leader's key deleted, or its
    // lease expired), as etcd's concurrency package waits for the deletion of the
    // key before ours; the retry period is only the fallback.
    let mut changes = None;
    loop {
        if *lease.state.borrow() == LeaseState::Lost {
            return Err(ElectionError::LeaseExpired);
        }
        let (kvs, revision) = store.list(&store.keys().leader()).await?;
        let changes = changes.get_or_insert_with(|| {
            crate::store::watch::watch_prefix_after(store.clone(), store.keys().leader(), revision)
        });
        let leader = kvs.iter().min_by_key(|kv| kv.create_revision);
        match leader {
            Some(l) if l.key == key => {
                info!(%id, key, "became leader");
                return Ok(Leadership {
                    key,
                    create_revision,
                    lease,
                    renew_deadline: cfg.renew_deadline,
                });
            }
            Some(l) if !announced => {
                info!(leader = %String::from_utf8_lossy(&l.value), "standing by");
                announced = true;
            }
            None => warn!(key, "our election key is gone; campaigning again"),
            _ => {}
        }
        if !kvs.iter().any(|kv| kv.key == key) {
            return Err(ElectionError::KeyVanished);
        }
        tokio::select! {
            ev = changes.recv() => {
                if ev.is_none() {
                    tokio::time::sleep(cfg.retry_period).await;
                }
            }
            _ = tokio::time::sleep(cfg.retry_period) => {}
        }
    }
}
