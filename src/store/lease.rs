//! Leases with their own keep-alive task (etcd-client does not keep leases alive).
//!
//! The task renews at a third of the TTL and publishes the time of the last
//! successful renewal, so holders can stop work before the lease can expire
//! (the controller's renew deadline) instead of finding out after.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Store, StoreError};

/// What the keep-alive task knows about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed at this instant.
    Alive(Instant),
    /// etcd said the lease is gone (expired or revoked).
    Lost,
}

pub struct Lease {
    pub id: i64,
    pub ttl: Duration,
    pub state: watch::Receiver<LeaseState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let mut c = self.client();
        let resp = self
            .call("lease", c.lease_grant(ttl.as_secs().max(1) as i64, None))
            .await?;
        Ok(resp.id())
    }

    pub async fn revoke_lease(&self, id: i64) -> Result<(), StoreError> {
        let mut c = self.client();
        self.call("lease", c.lease_revoke(id)).await?;
        Ok(())
    }

    /// Remaining TTL of a lease, or `None` when it no longer exists.
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let mut c = self.client();
        let resp = self.call("lease", c.lease_time_to_live(id, None)).await?;
        Ok((resp.ttl() > 0).then_some(resp.ttl()))
    }

    /// Grants a lease and keeps it alive until the returned [`Lease`] is dropped.
    pub async fn lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let id = self.grant_lease(ttl).await?;
        Ok(self.keep_alive(id, ttl))
    }

    /// Keeps an existing lease alive (e.g. one a restarted agent reclaims).
    pub fn keep_alive(&self, id: i64, ttl: Duration) -> Lease {
        let (tx, rx) = watch::channel(LeaseState::Alive(Instant::now()));
        let store = self.clone();
        let task = tokio::spawn(async move { keep_alive_loop(store, id, ttl, tx).await });
        Lease {
            id,
            ttl,
            state: rx,
            task,
        }
    }
}

async fn keep_alive_loop(store: Store, id: i64, ttl: Duration, tx: watch::Sender<LeaseState>) {
    let every = (ttl / 3).max(Duration::from_millis(500));
    loop {
        let mut client = store.client();
        let started =
            tokio::time::timeout(Duration::from_secs(3), client.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match started {
            Ok(Ok(pair)) => pair,
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                // etcd-client's first renewal found the lease gone (TTL 0): it
                // expired while we could not reach etcd. Retrying cannot bring it
                // back; the holder must take a new one.
                warn!(lease = id, error = %e, "lease expired");
                let _ = tx.send(LeaseState::Lost);
                return;
            }
            other => {
                debug!(
                    lease = id,
                    ?other,
                    "keep-alive stream failed to start; retrying"
                );
                if lease_is_gone(&store, id).await {
                    let _ = tx.send(LeaseState::Lost);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let sent = tokio::time::timeout(Duration::from_secs(2), keeper.keep_alive()).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    store.metrics().record("lease", Duration::ZERO, true);
                    let _ = tx.send(LeaseState::Alive(Instant::now()));
                }
                Ok(Ok(Some(_))) => {
                    warn!(lease = id, "lease expired");
                    let _ = tx.send(LeaseState::Lost);
                    return;
                }
                _ => break,
            }
            tokio::time::sleep(every).await;
        }
        store.metrics().record("lease", Duration::ZERO, false);
        if lease_is_gone(&store, id).await {
            warn!(lease = id, "lease expired");
            let _ = tx.send(LeaseState::Lost);
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether etcd says the lease no longer exists (an unreachable etcd says nothing:
/// the lease may well be alive).
async fn lease_is_gone(store: &Store, id: i64) -> bool {
    matches!(store.lease_ttl(id).await, Ok(None))
}
