//! The controller's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

pub struct ControllerMetrics {
    /// Stored records that did not parse, counted once per stored version.
    pub unparseable_records: Family<KindLabel, Counter>,
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub queue_depth: Gauge,
    pub is_leader: Gauge,
    pub leader_transitions: Counter,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciles: Family::default(),
            unparseable_records: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            queue_depth: Gauge::default(),
            is_leader: Gauge::default(),
            leader_transitions: Counter::default(),
        }
    }
}

impl ControllerMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rune_controller_unparseable_records",
            "stored records that do not parse, by kind (each version counted once)",
            self.unparseable_records.clone(),
        );
        r.register(
            "rune_controller_reconciles",
            "reconciles by result (ok, error, conflict)",
            self.reconciles.clone(),
        );
        r.register(
            "rune_controller_reconcile_duration_seconds",
            "time per reconcile",
            self.reconcile_duration.clone(),
        );
        r.register(
            "rune_controller_queue_depth",
            "services waiting to be reconciled",
            self.queue_depth.clone(),
        );
        r.register(
            "rune_controller_is_leader",
            "1 while this replica leads",
            self.is_leader.clone(),
        );
        r.register(
            "rune_controller_leader_transitions",
            "times this replica became leader",
            self.leader_transitions.clone(),
        );
    }

    pub fn unparseable(&self, kind: &'static str) {
        self.unparseable_records
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn reconciled(&self, result: &'static str) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }
}
