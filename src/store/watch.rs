//! A resumable prefix watch: the informer under the controller and the agent.
//!
//! It lists the prefix, hands the full state over as [`WatchEvent::Reset`], then
//! watches from the list's revision + 1. When the stream dies (etcd restarted, network
//! blip) it re-watches from the last revision it saw + 1, so nothing is missed; when
//! that revision was compacted away it lists again and sends a fresh `Reset`.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Kv, Store};

#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The complete current state under the prefix (start, or after compaction).
    Reset {
        kvs: Vec<Kv>,
        revision: i64,
    },
    Put(Kv),
    Delete(Kv),
    /// The connection to etcd is down (`false`) or back (`true`).
    Connected(bool),
}

/// Starts watching `prefix`. Events arrive in revision order; the task ends when
/// the receiver is dropped.
pub fn watch_prefix(store: Store, prefix: String) -> mpsc::Receiver<WatchEvent> {
    watch_prefix_after(store, prefix, 0)
}

/// Like [`watch_prefix`], for a caller that has already seen everything up to
/// `revision`: events start after it (no `Reset`), unless that revision was
/// compacted away, in which case the prefix is listed again and a `Reset` sent.
pub fn watch_prefix_after(
    store: Store,
    prefix: String,
    revision: i64,
) -> mpsc::Receiver<WatchEvent> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move { run(store, prefix, revision, tx).await });
    rx
}

async fn run(store: Store, prefix: String, after: i64, tx: mpsc::Sender<WatchEvent>) {
    // Revision of the last event (or list) seen; 0 = list first.
    let mut seen: i64 = after;
    let mut delay = Duration::from_millis(100);
    let mut connected = true;
    loop {
        if tx.is_closed() {
            return;
        }
        if seen == 0 {
            match store.list(&prefix).await {
                Ok((kvs, revision)) => {
                    seen = revision;
                    if tx.send(WatchEvent::Reset { kvs, revision }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(%prefix, error = %e, "listing failed; retrying");
                    if connected {
                        connected = false;
                        let _ = tx.send(WatchEvent::Connected(false)).await;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        match stream(&store, &prefix, &mut seen, &tx, &mut connected, &mut delay).await {
            Ok(()) => return, // receiver gone
            Err(reason) => {
                debug!(%prefix, %reason, seen, "watch ended; resuming");
                if connected && reason != "compacted" {
                    connected = false;
                    let _ = tx.send(WatchEvent::Connected(false)).await;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Streams events until the stream fails (Err) or the receiver is gone (Ok).
async fn stream(
    store: &Store,
    prefix: &str,
    seen: &mut i64,
    tx: &mpsc::Sender<WatchEvent>,
    connected: &mut bool,
    delay: &mut Duration,
) -> Result<(), String> {
    let mut client = store.watch_client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*seen + 1)
        .with_progress_notify();
    let mut ws = tokio::time::timeout(Duration::from_secs(5), client.watch(prefix, Some(options)))
        .await
        .map_err(|_| "watch request timed out".to_string())?
        .map_err(|e| e.to_string())?;
    store.metrics().record("watch", Duration::ZERO, true);
    loop {
        let msg = tokio::select! {
            m = ws.message() => m,
            _ = tx.closed() => return Ok(()),
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return Err("stream closed".into()),
            Err(e) => return Err(e.to_string()),
        };
        if resp.compact_revision() > 0 {
            warn!(
                prefix,
                revision = *seen,
                compacted = resp.compact_revision(),
                "watch revision compacted; relisting"
            );
            *seen = 0;
            return Err("compacted".into());
        }
        if resp.canceled() {
            let reason = resp.cancel_reason();
            if reason.contains("invalid auth token") {
                // etcd forgot our token (it expired unused, or etcd restarted): it
                // refuses a new watch in its first response, where the client's own
                // refresh does not look. Authenticate again; the next attempt goes.
                if let Err(e) = store.reauthenticate().await {
                    return Err(format!("watch refused for its auth token; {e}"));
                }
                return Err("watch refused for its auth token; authenticated again".into());
            }
            return Err(format!("watch canceled: {reason}"));
        }
        if !*connected {
            *connected = true;
            if tx.send(WatchEvent::Connected(true)).await.is_err() {
                return Ok(());
            }
        }
        *delay = Duration::from_millis(100);
        store.metrics().received(resp.events().len());
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let kv = Kv::from_etcd(kv);
            *seen = (*seen).max(kv.mod_revision);
            let event = match ev.event_type() {
                EventType::Put => WatchEvent::Put(kv),
                EventType::Delete => WatchEvent::Delete(kv),
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        if let Some(h) = resp.header() {
            // Progress notifications carry the current revision with no events:
            // everything up to it has been seen.
            if resp.events().is_empty() && !resp.created() {
                *seen = (*seen).max(h.revision());
            }
        }
    }
}
