//! A deduplicating work queue keyed by service, after client-go's workqueue (which
//! kube-runtime mirrors): a key is queued at most once, is never handed to two
//! workers at once, and a key that changes while being worked on is queued again
//! when the worker is done. Failed keys come back after a per-key exponential back-off.
//!
//! Delayed adds (requeues, step intervals, deadlines, back-off) go through one delay
//! set that keeps the earliest due time per key, as kube-runtime's `scheduler` does:
//! no task per delayed key, and a key asked for at 1 s and at 30 s is due at 1 s.
//! Workers waiting in [`WorkQueue::next`] promote due keys themselves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::ServiceRef;

/// What the queue holds: one service.
pub type Key = ServiceRef;

#[derive(Default)]
struct State {
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    /// The background lane: sweeps over every service (a new term's first pass, the
    /// periodic resync, a node joining or leaving). Worked only when `queue` (keys
    /// that changed) is empty, so a change never waits behind thousands of
    /// services with nothing to do. Entries whose key left the set are stale.
    background: VecDeque<Key>,
    in_background: HashSet<Key>,
    active: HashSet<Key>,
    /// Added while active: requeue on `done`.
    dirty: HashSet<Key>,
    /// Keys due later, at the earliest time each was asked for.
    delayed: HashMap<Key, Instant>,
    backoff: HashMap<Key, ExponentialBackoff>,
}

impl State {
    /// Queues `key` now unless it is queued already; a key being worked on is
    /// marked dirty instead. Returns whether a waiting worker should be woken.
    fn enqueue(&mut self, key: Key) -> bool {
        if self.active.contains(&key) {
            self.dirty.insert(key);
            return false;
        }
        if self.queued.insert(key.clone()) {
            // Out of the background lane, if it was there: it goes now.
            self.in_background.remove(&key);
            self.queue.push_back(key);
            return true;
        }
        false
    }

    /// Queues `key` in the background lane unless it is queued, or being worked on
    /// (that reconcile reads it fresh anyway).
    fn enqueue_background(&mut self, key: Key) -> bool {
        if self.active.contains(&key) || self.queued.contains(&key) {
            return false;
        }
        if self.in_background.insert(key.clone()) {
            self.background.push_back(key);
            return true;
        }
        false
    }

    /// The next key to work: changed keys first, then the background lane.
    fn pop(&mut self) -> Option<Key> {
        if let Some(key) = self.queue.pop_front() {
            self.queued.remove(&key);
            return Some(key);
        }
        while let Some(key) = self.background.pop_front() {
            if self.in_background.remove(&key) {
                return Some(key);
            }
        }
        None
    }

    /// Moves every delayed key that is due into the queue; returns the next due time.
    fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<Key> = self
            .delayed
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.delayed.remove(&key);
            self.enqueue(key);
        }
        self.delayed.values().min().copied()
    }
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    /// Queues a key that changed.
    pub fn add(&self, key: Key) {
        let wake = self.state.lock().unwrap().enqueue(key);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Queues a key as part of a sweep over every service (background lane).
    pub fn add_background(&self, key: Key) {
        let wake = self.state.lock().unwrap().enqueue_background(key);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (a requeue, a step interval, a deadline). A key
    /// already due sooner keeps its earlier time.
    pub fn add_after(&self, key: Key, delay: Duration) {
        let now = Instant::now();
        // Never panic on a huge delay: a day is as good as forever for a requeue.
        let at = now
            .checked_add(delay)
            .unwrap_or(now + Duration::from_secs(86_400));
        {
            let mut s = self.state.lock().unwrap();
            let due = s.delayed.entry(key).or_insert(at);
            *due = (*due).min(at);
        }
        // A waiting worker recomputes how long to sleep.
        self.notify.notify_waiters();
        self.notify.notify_one();
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
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut s = self.state.lock().unwrap();
                let next_due = s.promote_due(Instant::now());
                if let Some(key) = s.pop() {
                    s.active.insert(key.clone());
                    if !s.queue.is_empty() || !s.in_background.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
                next_due
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
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

    /// Keys ready to be worked on now, in both lanes (delayed ones not counted).
    pub fn len(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.queue.len() + s.in_background.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for a later time.
    pub fn delayed(&self) -> usize {
        self.state.lock().unwrap().delayed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        ServiceRef::new("default", n)
    }

    #[tokio::test]
    async fn changed_keys_go_before_the_background_sweep() {
        let q = WorkQueue::default();
        for n in ["s1", "s2", "s3"] {
            q.add_background(k(n));
        }
        q.add_background(k("s1"));
        assert_eq!(q.len(), 3, "deduplicated");
        assert_eq!(q.next().await, k("s1"));
        q.done(&k("s1"));
        // A change to a key waiting in the background moves it ahead, once.
        q.add(k("s3"));
        q.add(k("new"));
        assert_eq!(q.len(), 3);
        assert_eq!(q.next().await, k("s3"));
        assert_eq!(q.next().await, k("new"));
        assert_eq!(q.next().await, k("s2"));
        assert!(q.is_empty(), "s3's stale background entry is skipped");
        // A key being worked on is not swept again (its reconcile reads it fresh),
        // and a changed key is not demoted by a sweep.
        q.add(k("x"));
        q.add_background(k("x"));
        q.add_background(k("s2"));
        assert_eq!(q.len(), 1, "s2 is active");
        assert_eq!(q.next().await, k("x"));
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_due_at_their_earliest_time_once() {
        let q = WorkQueue::default();
        let start = Instant::now();
        q.add_after(k("a"), Duration::from_secs(30));
        q.add_after(k("a"), Duration::from_secs(1));
        q.add_after(k("b"), Duration::from_secs(5));
        assert_eq!(q.delayed(), 2, "one entry per key");
        assert!(q.is_empty());
        assert_eq!(q.next().await, k("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        q.done(&k("a"));
        assert_eq!(q.next().await, k("b"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(
            q.delayed(),
            0,
            "the later time for a was folded into the earlier"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sooner_delay_wakes_a_waiting_worker() {
        let q = WorkQueue::default();
        q.add_after(k("late"), Duration::from_secs(60));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        q.add_after(k("soon"), Duration::from_secs(2));
        assert_eq!(waiter.await.unwrap(), k("soon"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
