//! The planner's tests, one file per concern, all stepping one simulated world:
//! `Sim` applies each plan's writes the way the reconcile would, and plays the
//! agents, so a test reads as a story of reconciles.

mod census;
mod conditions;
mod deletion;
mod health;
mod operation;
mod placement;
mod records;
mod resources;
mod revisions;
mod rolling;
mod rolling_bounds;
mod stale;

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::model::{
    ConditionKind, DesiredState, ExitInfo, OperationKind, OperationPhase, Phase, ScaleMode,
    parse_cast_file,
};

static IDS: AtomicU32 = AtomicU32::new(0);

fn id(svc: &str) -> String {
    format!("{svc}-{}", IDS.fetch_add(1, Ordering::SeqCst))
}

fn cfg() -> PlanConfig {
    PlanConfig {
        node_lost_grace: Duration::from_secs(30),
        new_id: id,
        max_scale: crate::model::limits::MAX_SCALE,
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn node(name: &str) -> (String, NodeRecord) {
    (
        name.to_string(),
        NodeRecord {
            name: name.into(),
            address: String::new(),
            agent_version: String::new(),
            started_at: t(0),
            instances: 0,
            capacity: 0,
            labels: Default::default(),
            lease_id: 1,
            cgroups: None,
            allocatable: None,
            logs: None,
            ip: None,
        },
    )
}

fn stored(scale: u32, extra: &str) -> StoredService {
    let text = format!("service:\n  name: api\n  scale: {scale}\n  command: x\n{extra}");
    StoredService::new(parse_cast_file("t", &text).unwrap().remove(0))
}

/// A world the tests step through: apply each plan's writes, report agents' state.
struct Sim {
    o: Observed,
    rev: i64,
}

impl Sim {
    fn new(scale: u32, nodes: &[&str]) -> Sim {
        Sim {
            o: Observed {
                spec: SpecState::Valid {
                    stored: Box::new(stored(scale, "")),
                    revision: 10,
                },
                operation: None,
                operation_revision: None,
                status: ServiceStatus::default(),
                has_status: false,
                instances: vec![],
                statuses: HashMap::new(),
                revisions: vec![],
                nodes: nodes.iter().map(|n| node(n)).collect(),
                node_states: HashMap::new(),
                node_lost_for: HashMap::new(),
                disruption: None,
                unparseable: vec![],
                now: t(0),
                source_versions: Default::default(),
            },
            rev: 10,
        }
    }

    /// A service already at `scale`, every instance ready.
    fn converged(scale: u32, nodes: &[&str]) -> Sim {
        let mut s = Sim::new(scale, nodes);
        s.step();
        s.agents(true);
        s.step();
        s
    }

    fn step(&mut self) -> Plan {
        let p = plan(&self.o, &cfg());
        self.rev += 1;
        if let Some(new) = &p.new_revision {
            // Through JSON, as etcd stores it: what is read back must compare
            // equal to the spec it came from, or every look would make a revision.
            let stored = serde_json::from_slice(&serde_json::to_vec(new).unwrap()).unwrap();
            self.o.revisions.push(Versioned::new(stored, self.rev));
        }
        for pruned in &p.prune_revisions {
            self.o
                .revisions
                .retain(|r| Versioned::new(r.value.revision, r.revision) != *pruned);
        }
        if p.purge {
            self.o.revisions.clear();
        }
        for created in &p.create {
            self.o
                .instances
                .push(Versioned::new(created.clone(), self.rev));
        }
        for stopped in &p.stop {
            let rev = self.rev;
            if let Some(instance) = self
                .o
                .instances
                .iter_mut()
                .find(|instance| instance.value.id == stopped.value.id)
            {
                *instance = Versioned::new(stopped.value.clone(), rev);
            }
        }
        for removed in &p.remove {
            let id = &removed.value;
            self.o.instances.retain(|instance| &instance.value.id != id);
            self.o.statuses.remove(id);
        }
        if let Some(rollback) = &p.rollback {
            self.o.spec = SpecState::Valid {
                stored: Box::new(rollback.value.clone()),
                revision: self.rev,
            };
        }
        self.o.status = p.status.clone();
        p
    }

    /// Every agent does its job: running instances become ready, stopped ones exit.
    fn agents(&mut self, ready: bool) {
        for instance in &self.o.instances {
            let record = &instance.value;
            let phase = if record.desired == DesiredState::Stopped {
                Phase::Exited
            } else {
                Phase::Running
            };
            let s = self
                .o
                .statuses
                .entry(record.id.clone())
                .or_insert_with(|| status(&record.id, phase, false));
            s.phase = phase;
            s.ready = ready && phase == Phase::Running;
            if s.ready {
                s.ready_at.get_or_insert(t(0));
            }
        }
    }

    fn running(&self) -> usize {
        self.o
            .instances
            .iter()
            .filter(|instance| instance.value.desired == DesiredState::Running)
            .count()
    }

    fn scale_op(&mut self, to: u32, mode: ScaleMode, step: u32, interval: u64, rollback: bool) {
        let from = match &self.o.spec {
            SpecState::Valid { stored, .. } => stored.service.desired_scale(),
            _ => 0,
        };
        self.rev += 1;
        let mut s = stored(to, "");
        s.service.scale = Some(to);
        self.o.spec = SpecState::Valid {
            stored: Box::new(s),
            revision: self.rev,
        };
        self.o.operation_revision = Some(self.rev);
        self.o.operation = Some(Versioned::new(
            OperationRecord {
                id: format!("op-{}", self.rev),
                kind: OperationKind::Scale,
                from,
                to,
                mode,
                step,
                interval: Duration::from_secs(interval),
                rollback_on_fail: rollback,
                timeout: Duration::from_secs(300),
                requested_at: self.o.now,
                requested_by: "me@here".into(),
                reason: String::new(),
                supersedes: vec![],
                rolling: None,
            },
            self.rev,
        ));
    }

    fn phase(&self) -> OperationPhase {
        self.o.status.operation.as_ref().unwrap().phase
    }
}

fn status(id: &str, phase: Phase, ready: bool) -> InstanceStatus {
    InstanceStatus {
        phase,
        pid: Some(1),
        ready,
        ..InstanceStatus::pending(id, "n1")
    }
}
