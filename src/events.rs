//! The event recorder: best-effort, asynchronous, coalesced and bounded writes of
//! [`Event`]s to `events/<ns>/<svc>/<id>`.
//!
//! - **Never in the way.** [`record`] hands a draft to a bounded channel and returns
//!   at once; a full channel, the rate limit or a failed write drops events and
//!   counts them (`rune_events_dropped_total`). A reconcile or a supervisor never
//!   waits on an event.
//! - **Coalesced.** The key's id is a hash of object, reason and message
//!   ([`event_id`]), and the writer keeps in memory the last value it wrote per
//!   key: a repeat rewrites that key with `count + 1` and a new `lastSeen`, no
//!   read. (Two writers of one repeat — two controllers across a failover — each
//!   count their own; the last write wins. Events are a diagnostic, not a ledger.)
//! - **Batched.** Drafts that arrive within [`FLUSH_EVERY`] go out in one
//!   transaction (split at etcd's limits), a repeat within that window once.
//! - **Bounded.** Every key is put on the writer's lease of [`LEASE_TTL`] (one
//!   hour); a new lease is granted every [`LEASE_ROTATE`] (10 min) and new writes go
//!   on the newest, so an event disappears about an hour after it was last seen
//!   and etcd never fills. At most [`DEFAULT_PER_SECOND`] events per second per
//!   writer (a token bucket with a burst of as many).
//!
//! One recorder per process ([`install`]); without one (`rune`, hollow agents,
//! unit tests) [`record`] does nothing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

pub use crate::model::event::{Event, EventType, event_id, instance_object, service_object};
use crate::store::Store;
use crate::store::batch::{self, Write};

/// How long an event lives after it was last written.
pub const LEASE_TTL: Duration = Duration::from_secs(3600);
/// How often the writer takes a new lease for new writes.
pub const LEASE_ROTATE: Duration = Duration::from_secs(600);
/// How long drafts gather before they are written together.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Events per second per writer (and the burst).
pub const DEFAULT_PER_SECOND: u32 = 50;
/// Drafts waiting for the writer, at most.
const QUEUE: usize = 1024;
/// Last-written values kept for coalescing, at most (then the oldest half goes).
const MEMORY: usize = 10_000;

/// What a caller knows of an event; the writer adds source, count and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub kind: EventType,
    pub reason: String,
    pub message: String,
    pub object: String,
    pub namespace: String,
    pub service: String,
    pub node: String,
}

impl Draft {
    pub fn normal(ns: &str, svc: &str, object: String, reason: &str, message: String) -> Draft {
        Draft {
            kind: EventType::Normal,
            reason: reason.into(),
            message,
            object,
            namespace: ns.into(),
            service: svc.into(),
            node: String::new(),
        }
    }

    pub fn warning(ns: &str, svc: &str, object: String, reason: &str, message: String) -> Draft {
        Draft {
            kind: EventType::Warning,
            ..Draft::normal(ns, svc, object, reason, message)
        }
    }

    pub fn on(mut self, node: &str) -> Draft {
        self.node = node.into();
        self
    }

    pub fn id(&self) -> String {
        event_id(&self.object, &self.reason, &self.message)
    }
}

/// A token bucket: `rate` per second, a burst of `rate`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub fn new(per_second: u32, now: Instant) -> RateLimit {
        RateLimit {
            rate: f64::from(per_second.max(1)),
            tokens: f64::from(per_second.max(1)),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The last value written per event key: what a repeat is coalesced into.
#[derive(Debug, Default)]
pub struct Coalescer {
    written: HashMap<String, Event>,
}

impl Coalescer {
    /// The event to write for `draft` seen at `now`: a new one with count 1, or the
    /// last one written for its key, seen once more. Returns its key segments.
    pub fn add(&mut self, draft: Draft, source: &str, now: Timestamp) -> (String, Event) {
        let id = draft.id();
        let key = format!("{}/{}/{id}", draft.namespace, draft.service);
        if self.written.len() >= MEMORY && !self.written.contains_key(&key) {
            self.forget_oldest_half();
        }
        let event = self
            .written
            .entry(key.clone())
            .and_modify(|e| {
                e.repeat(now);
                // The latest node (an object's node does not change; a service's
                // events carry none).
                e.node.clone_from(&draft.node);
            })
            .or_insert_with(|| Event {
                kind: draft.kind,
                reason: draft.reason,
                message: draft.message,
                object: draft.object,
                namespace: draft.namespace,
                service: draft.service,
                node: draft.node,
                source: source.to_string(),
                count: 1,
                first_seen: now,
                last_seen: now,
            });
        (key, event.clone())
    }

    fn forget_oldest_half(&mut self) {
        let mut seen: Vec<Timestamp> = self.written.values().map(|e| e.last_seen).collect();
        seen.sort();
        let cut = seen[seen.len() / 2];
        self.written.retain(|_, e| e.last_seen > cut);
    }

    pub fn len(&self) -> usize {
        self.written.len()
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

/// The process's recorder: the sending half and the drop counter.
struct Recorder {
    tx: mpsc::Sender<Draft>,
    limit: Mutex<RateLimit>,
    dropped: Counter,
    written: Counter,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// The writer's half, to be run once etcd is reached ([`Writer::run`]).
pub struct Writer {
    rx: mpsc::Receiver<Draft>,
    source: String,
}

/// Sets up the process's recorder (`source`: `controller` or `agent <node>`).
/// Drafts recorded before the writer runs wait in its queue. `None` when one is
/// installed already.
pub fn install(source: &str, per_second: u32) -> Option<Writer> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let recorder = Recorder {
        tx,
        limit: Mutex::new(RateLimit::new(per_second, Instant::now())),
        dropped: Counter::default(),
        written: Counter::default(),
    };
    RECORDER.set(recorder).ok()?;
    Some(Writer {
        rx,
        source: source.to_string(),
    })
}

/// Records an event, best effort: never blocks, never fails.
pub fn record(draft: Draft) {
    let Some(r) = RECORDER.get() else { return };
    let allowed = r.limit.lock().unwrap().allow(Instant::now());
    if !allowed || r.tx.try_send(draft).is_err() {
        r.dropped.inc();
    }
}

/// Records every draft in order.
pub fn record_all(drafts: impl IntoIterator<Item = Draft>) {
    for d in drafts {
        record(d);
    }
}

/// `rune_events_dropped_total` and `rune_events_written_total`, when a recorder is
/// installed.
pub fn register(registry: &mut Registry) {
    if let Some(r) = RECORDER.get() {
        registry.register(
            "rune_events_dropped",
            "events not written: over the rate limit, queue full, or etcd refused them",
            r.dropped.clone(),
        );
        registry.register(
            "rune_events_written",
            "event writes etcd took",
            r.written.clone(),
        );
    }
}

impl Writer {
    /// Spawns the writer on `store`; it runs until the process ends.
    pub fn spawn(self, store: Store) {
        tokio::spawn(self.run(store));
    }

    async fn run(mut self, store: Store) {
        let mut memory = Coalescer::default();
        // (lease id, granted at)
        let mut lease: Option<(i64, Instant)> = None;
        loop {
            let Some(first) = self.rx.recv().await else {
                return;
            };
            let mut batch: HashMap<String, Event> = HashMap::new();
            let (key, event) = memory.add(first, &self.source, Timestamp::now());
            batch.insert(key, event);
            let until = Instant::now() + FLUSH_EVERY;
            while let Ok(Some(d)) = tokio::time::timeout_at(until, self.rx.recv()).await {
                let (key, event) = memory.add(d, &self.source, Timestamp::now());
                batch.insert(key, event);
            }
            if lease.is_none_or(|(_, at)| at.elapsed() >= LEASE_ROTATE) {
                match store.grant_lease(LEASE_TTL).await {
                    Ok(id) => lease = Some((id, Instant::now())),
                    Err(e) => debug!(error = %e, "cannot grant the events lease"),
                }
            }
            let Some((lease_id, _)) = lease else {
                count_dropped(batch.len());
                continue;
            };
            let k = store.keys();
            let writes: Vec<Write> = batch
                .iter()
                .map(|(key, event)| {
                    let bytes = serde_json::to_vec(event).expect("events serialize");
                    Write::put_with_lease(&format!("{}{key}", k.events()), bytes, lease_id)
                })
                .collect();
            for txn in batch::split(writes) {
                let (guards, ops) = txn.into_parts();
                let n = ops.len();
                match store.txn(guards, ops, vec![]).await {
                    Ok(_) => count_written(n),
                    Err(e) => {
                        debug!(error = %e, events = n, "events not written");
                        count_dropped(n);
                        // The lease may be gone (e.g. expired during an outage).
                        lease = None;
                    }
                }
            }
        }
    }
}

fn count_dropped(n: usize) {
    if let Some(r) = RECORDER.get() {
        r.dropped.inc_by(n as u64);
    }
}

fn count_written(n: usize) {
    if let Some(r) = RECORDER.get() {
        r.written.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(message: &str) -> Draft {
        Draft::warning(
            "default",
            "api",
            instance_object("a1"),
            "Exited",
            message.to_string(),
        )
        .on("n1")
    }

    #[test]
    fn a_repeat_bumps_count_and_last_seen_of_the_same_key() {
        let mut c = Coalescer::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        let (k0, e0) = c.add(draft("exit code 1"), "agent n1", t0);
        assert_eq!((e0.count, e0.first_seen, e0.last_seen), (1, t0, t0));
        assert_eq!(k0, format!("default/api/{}", draft("exit code 1").id()));
        let (k1, e1) = c.add(draft("exit code 1"), "agent n1", t1);
        assert_eq!(k1, k0, "a repeat is the same key");
        assert_eq!((e1.count, e1.first_seen, e1.last_seen), (2, t0, t1));
        assert_eq!(e1.source, "agent n1");
        let (k2, e2) = c.add(draft("exit code 2"), "agent n1", t1);
        assert_ne!(k2, k0, "another message is another event");
        assert_eq!(e2.count, 1);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = Coalescer::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for i in 0..(MEMORY + 10) {
            let at = t0 + jiff::SignedDuration::from_secs(i as i64);
            c.add(draft(&format!("exit code {i}")), "controller", at);
        }
        assert!(c.len() <= MEMORY, "{}", c.len());
        assert!(!c.is_empty());
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(5, t0);
        let burst = (0..10).filter(|_| r.allow(t0)).count();
        assert_eq!(burst, 5, "a burst of the rate, then nothing");
        assert!(!r.allow(t0 + Duration::from_millis(100)), "half a token");
        assert!(
            r.allow(t0 + Duration::from_millis(200)),
            "one token after 1/5 s"
        );
        assert!(!r.allow(t0 + Duration::from_millis(200)));
        let later = t0 + Duration::from_secs(60);
        let refilled = (0..10).filter(|_| r.allow(later)).count();
        assert_eq!(refilled, 5, "never more than the burst");
    }
}
