//! A deduplicating work queue keyed by service, after client-go's workqueue (which
//! kube-runtime mirrors): a key is queued at most once, is never handed to two
//! workers at once, and a key that changes while being worked on is queued again
//! when the worker is done. Failed keys come back after a per-key exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Notify;

/// `(namespace, name)` of a service.
pub type Key = (String, String);

#[derive(Default)]
struct State {
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    active: HashSet<Key>,
    /// Added while active: requeue on `done`.
    dirty: HashSet<Key>,
    backoff: HashMap<Key, ExponentialBackoff>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    pub fn add(&self, key: Key) {
        let mut s = self.state.lock().unwrap();
        if s.active.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (a requeue, a step interval, a deadline).
    pub fn add_after(&self, key: Key, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Requeues `key` after its next back-off delay (100 ms doubling to 30 s).
    pub fn add_rate_limited(&self, key: Key) -> Duration {
        let delay = {
            let mut s = self.state.lock().unwrap();
            let b = s.backoff.entry(key.clone()).or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(30))
                    .without_max_times()
                    .build()
            });
            b.next().unwrap_or(Duration::from_secs(30))
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears `key`'s back-off after a successful reconcile.
    pub fn forget(&self, key: &Key) {
        self.state.lock().unwrap().backoff.remove(key);
    }

    /// Waits for the next key that no other worker holds.
    pub async fn next(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.active.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` finished; requeues it if it changed meanwhile.
    pub fn done(&self, key: &Key) {
        let requeue = {
            let mut s = self.state.lock().unwrap();
            s.active.remove(key);
            s.dirty.remove(key)
        };
        if requeue {
            self.add(key.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        ("default".into(), n.into())
    }

    #[tokio::test]
    async fn deduplicates_queued_keys() {
        let q = WorkQueue::default();
        q.add(k("a"));
        q.add(k("a"));
        q.add(k("b"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, k("a"));
        assert_eq!(q.next().await, k("b"));
    }

    #[tokio::test]
    async fn a_key_is_never_worked_twice_at_once_and_changes_meanwhile_requeue() {
        let q = WorkQueue::default();
        q.add(k("a"));
        let got = q.next().await;
        q.add(k("a")); // changed while a worker holds it
        assert!(q.is_empty(), "must not be handed out while active");
        q.done(&got);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, k("a"));
    }

    #[tokio::test]
    async fn back_off_grows_per_key_and_resets() {
        let q = WorkQueue::default();
        let d1 = q.add_rate_limited(k("a"));
        let d2 = q.add_rate_limited(k("a"));
        assert!(d2 > d1, "{d1:?} then {d2:?}");
        let other = q.add_rate_limited(k("b"));
        assert_eq!(other, d1, "back-off is per key");
        q.forget(&k("a"));
        assert_eq!(q.add_rate_limited(k("a")), d1);
    }
}
