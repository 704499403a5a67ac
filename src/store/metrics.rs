//! Request counters and latencies for every etcd call, exported on /metrics by the
//! controller and the agent.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

pub struct StoreMetrics {
    pub requests: Family<OpLabel, Counter>,
    pub errors: Family<OpLabel, Counter>,
    pub latency: Family<OpLabel, Histogram>,
    /// Keys received from etcd: listed (every page) or watched (every event).
    /// What a program's view of etcd costs it: for an agent, proportional to its
    /// own node's instances, not the fleet's.
    pub keys_received: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            keys_received: Counter::default(),
        }
    }
}

impl StoreMetrics {
    pub fn record(&self, op: &'static str, took: Duration, ok: bool) {
        let l = OpLabel { op };
        self.requests.get_or_create(&l).inc();
        if !ok {
            self.errors.get_or_create(&l).inc();
        }
        self.latency.get_or_create(&l).observe(took.as_secs_f64());
    }

    pub fn received(&self, keys: usize) {
        self.keys_received.inc_by(keys as u64);
    }

    /// Total requests so far (all kinds); the benchmark divides this by instances.
    pub fn total_requests(&self) -> u64 {
        [
            "get", "list", "snapshot", "put", "delete", "txn", "watch", "lease",
        ]
        .into_iter()
        .map(|op| self.requests_of(op))
        .sum()
    }

    /// Requests of one kind so far (`list` counts every page of a listing).
    pub fn requests_of(&self, op: &'static str) -> u64 {
        self.requests.get_or_create(&OpLabel { op }).get()
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rune_etcd_requests",
            "etcd requests by kind",
            self.requests.clone(),
        );
        r.register(
            "rune_etcd_request_errors",
            "failed etcd requests by kind",
            self.errors.clone(),
        );
        r.register(
            "rune_etcd_keys_received",
            "keys received from etcd, listed or watched",
            self.keys_received.clone(),
        );
        r.register(
            "rune_etcd_request_duration_seconds",
            "etcd request latency by kind",
            self.latency.clone(),
        );
    }
}
