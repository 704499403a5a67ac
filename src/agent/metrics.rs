//! The agent's Prometheus metrics (served on /metrics with the etcd request metrics).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::{InstanceStatus, Phase, ProbeKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// One instance, for its usage gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    pub namespace: String,
    pub service: String,
    pub instance: String,
}

pub struct AgentMetrics {
    pub instances: Family<PhaseLabel, Gauge>,
    pub restarts: Counter,
    pub probe_latency: Family<KindLabel, Histogram>,
    pub probe_failures: Family<KindLabel, Counter>,
    /// 1 while the agent has fenced itself (node lease not renewed in time).
    pub self_fenced: Gauge,
    /// Instance records this agent could not parse (and so ignored).
    pub unparseable_records: Counter,
    /// Memory in use per running instance, from its cgroup.
    pub instance_memory: Family<InstanceLabel, Gauge>,
    /// CPU time used per running instance, from its cgroup.
    pub instance_cpu: Family<InstanceLabel, Gauge<f64, AtomicU64>>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            instances: Family::default(),
            restarts: Counter::default(),
            probe_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            probe_failures: Family::default(),
            self_fenced: Gauge::default(),
            unparseable_records: Counter::default(),
            instance_memory: Family::default(),
            instance_cpu: Family::default(),
        }
    }
}

const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Starting,
    Phase::Running,
    Phase::Stopping,
    Phase::Exited,
    Phase::Failed,
];

impl AgentMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rune_agent_self_fenced",
            "1 while every instance is stopped because the node lease could not be renewed",
            self.self_fenced.clone(),
        );
        r.register(
            "rune_agent_unparseable_records",
            "instance records naming no valid instance that this agent ignored",
            self.unparseable_records.clone(),
        );
        r.register(
            "rune_agent_instances",
            "instances on this node by phase",
            self.instances.clone(),
        );
        r.register(
            "rune_agent_instance_restarts",
            "instance restarts (crashes and liveness failures)",
            self.restarts.clone(),
        );
        r.register(
            "rune_agent_probe_duration_seconds",
            "probe latency by kind",
            self.probe_latency.clone(),
        );
        r.register(
            "rune_agent_probe_failures",
            "failed probes by kind",
            self.probe_failures.clone(),
        );
        r.register(
            "rune_agent_instance_memory_bytes",
            "memory in use per running instance (its cgroup's)",
            self.instance_memory.clone(),
        );
        r.register(
            "rune_agent_instance_cpu_seconds",
            "CPU time used per running instance since it started (its cgroup's)",
            self.instance_cpu.clone(),
        );
    }

    /// Sets the phase gauges from the current statuses (every phase, zeros included).
    pub fn set_phases<'a>(&self, statuses: impl Iterator<Item = &'a InstanceStatus>) {
        let mut counts = [0i64; 6];
        for s in statuses {
            if let Some(i) = PHASES.iter().position(|p| *p == s.phase) {
                counts[i] += 1;
            }
        }
        for (p, n) in PHASES.iter().zip(counts) {
            self.instances
                .get_or_create(&PhaseLabel {
                    phase: p.to_string(),
                })
                .set(n);
        }
    }
}

impl crate::probe::Observer for AgentMetrics {
    fn observe(&self, kind: ProbeKind, took: Duration, ok: bool) {
        let l = KindLabel {
            kind: kind.to_string(),
        };
        self.probe_latency
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        if !ok {
            self.probe_failures.get_or_create(&l).inc();
        }
    }
}
