//! The events a reconcile's plan means, once it is written: instances scheduled on
//! a node and asked to stop, instances of lost nodes given up, instances no node can
//! take (`FailedScheduling`, as Kubernetes says it), operations taken up and how they
//! ended (succeeded, failed, rolled back, superseded). Pure: from what
//! was observed and what was planned to the drafts `crate::events` writes.

use super::plan::{Observed, Plan};
use crate::events::{Draft, instance_object, service_object};
use crate::model::{ConditionKind, ConditionStatus, OperationPhase};

pub fn from_plan(ns: &str, svc: &str, o: &Observed, plan: &Plan) -> Vec<Draft> {
    let mut out = Vec::new();
    let service = || service_object(svc);
    // Operations: taken up, then how the finished ones ended (in the order the
    // history holds them, oldest first).
    if let Some(op) = &plan.status.operation {
        let new = o
            .status
            .operation
            .as_ref()
            .is_none_or(|old| old.id != op.id);
        if new && !op.phase.is_terminal() {
            let mut message = format!("{} {} → {} ({})", op.kind, op.from, op.to, op.mode);
            if !op.requested_by.is_empty() {
                message.push_str(&format!(" requested by {}", op.requested_by));
            }
            out.push(Draft::normal(
                ns,
                svc,
                service(),
                "OperationStarted",
                message,
            ));
        }
    }
    let known: std::collections::HashSet<&str> =
        o.status.history.iter().map(|h| h.id.as_str()).collect();
    for h in plan
        .status
        .history
        .iter()
        .rev()
        .filter(|h| !known.contains(h.id.as_str()))
    {
        let what = format!("{} {} → {}", h.kind, h.from, h.to);
        let why = |text: &str| {
            if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            }
        };
        let draft = match h.result {
            OperationPhase::Succeeded => {
                Draft::normal(ns, svc, service(), "Succeeded", format!("{what} succeeded"))
            }
            OperationPhase::Failed => Draft::warning(
                ns,
                svc,
                service(),
                "Failed",
                format!("{what} failed{}", why(&h.error)),
            ),
            OperationPhase::RolledBack => Draft::warning(
                ns,
                svc,
                service(),
                "RolledBack",
                format!("{what} rolled back to {}{}", h.from, why(&h.error)),
            ),
            OperationPhase::Superseded => Draft::normal(
                ns,
                svc,
                service(),
                "Superseded",
                format!("{what} superseded{}", why(&h.remarks())),
            ),
            OperationPhase::Pending | OperationPhase::Progressing => continue,
        };
        out.push(draft);
    }
    // Instances no node can take: once each time the reason changes (the condition
    // holds it meanwhile; a reconcile every few seconds would only bump a count).
    if let Some(now) = plan.status.condition(ConditionKind::ReplicaFailure)
        && now.status == ConditionStatus::True
        && now.reason == "Unschedulable"
    {
        let said = o
            .status
            .condition(ConditionKind::ReplicaFailure)
            .is_some_and(|before| {
                before.status == ConditionStatus::True && before.message == now.message
            });
        if !said {
            out.push(Draft::warning(
                ns,
                svc,
                service(),
                "FailedScheduling",
                now.message.clone(),
            ));
        }
    }
    for rec in &plan.create {
        out.push(
            Draft::normal(
                ns,
                svc,
                instance_object(&rec.id),
                "Scheduled",
                format!("placed on node {} (revision {})", rec.node, rec.revision),
            )
            .on(&rec.node),
        );
    }
    for stopped in &plan.stop {
        let rec = &stopped.value;
        let was_lost = o
            .instances
            .iter()
            .find(|i| i.value.id == rec.id)
            .is_some_and(|i| i.value.node_lost);
        let draft = if rec.node_lost && !was_lost {
            Draft::warning(
                ns,
                svc,
                instance_object(&rec.id),
                "NodeLost",
                format!(
                    "node {} is lost past its grace: instance given up and replaced",
                    rec.node
                ),
            )
        } else {
            Draft::normal(
                ns,
                svc,
                instance_object(&rec.id),
                "Stopping",
                format!("asked node {} to stop it", rec.node),
            )
        };
        out.push(draft.on(&rec.node));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::SpecState;
    use crate::model::{DesiredState, InstanceRecord, ServiceStatus, Versioned};
    use jiff::Timestamp;

    fn observed() -> Observed {
        Observed {
            spec: SpecState::Missing,
            operation: None,
            operation_revision: None,
            status: ServiceStatus::default(),
            has_status: true,
            instances: vec![],
            statuses: Default::default(),
            revisions: vec![],
            nodes: Default::default(),
            node_lost_for: Default::default(),
            node_states: Default::default(),
            disruption: None,
            unparseable: vec![],
            now: Timestamp::UNIX_EPOCH,
            source_versions: Default::default(),
        }
    }

    fn record(id: &str, node: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            namespace: "default".into(),
            service: "api".into(),
            node: node.into(),
            desired: DesiredState::Running,
            revision: 1,
            created_at: Timestamp::UNIX_EPOCH,
            operation_id: None,
            node_lost: false,
        }
    }

    #[test]
    fn creates_and_stops_are_scheduled_stopping_and_node_lost() {
        let mut o = observed();
        o.instances = vec![
            Versioned::new(record("b", "n2"), 5),
            Versioned::new(record("c", "n3"), 6),
        ];
        let mut plan = Plan::default();
        plan.create.push(record("a", "n1"));
        let mut stop = record("b", "n2");
        stop.desired = DesiredState::Stopped;
        plan.stop.push(Versioned::new(stop, 5));
        let mut lost = record("c", "n3");
        lost.node_lost = true;
        lost.desired = DesiredState::Stopped;
        plan.stop.push(Versioned::new(lost, 6));
        let drafts = from_plan("default", "api", &o, &plan);
        let got: Vec<(&str, &str, &str)> = drafts
            .iter()
            .map(|d| (d.reason.as_str(), d.object.as_str(), d.node.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Scheduled", "instance/a", "n1"),
                ("Stopping", "instance/b", "n2"),
                ("NodeLost", "instance/c", "n3"),
            ]
        );
        assert_eq!(drafts[0].message, "placed on node n1 (revision 1)");
        assert_eq!(drafts[2].kind, crate::events::EventType::Warning);
        assert!(
            from_plan("default", "api", &o, &Plan::default()).is_empty(),
            "nothing planned, nothing to say"
        );
    }

    #[test]
    fn an_unschedulable_service_is_said_once_per_reason() {
        let now = Timestamp::now();
        let mut o = observed();
        let unschedulable = |message: &str| {
            let mut plan = Plan::default();
            plan.status.set_condition(
                ConditionKind::ReplicaFailure,
                ConditionStatus::True,
                "Unschedulable",
                message,
                now,
            );
            plan
        };
        let plan = unschedulable("1 instance(s) not placed: 1 node cordoned");
        let drafts = from_plan("default", "api", &o, &plan);
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].reason, "FailedScheduling");
        assert_eq!(drafts[0].kind, crate::events::EventType::Warning);
        assert_eq!(
            drafts[0].message,
            "1 instance(s) not placed: 1 node cordoned"
        );
        // Said already: nothing new. Another reason: said again.
        o.status = plan.status.clone();
        assert!(from_plan("default", "api", &o, &plan).is_empty());
        let other = unschedulable("1 instance(s) not placed: 1 node at capacity");
        assert_eq!(from_plan("default", "api", &o, &other).len(), 1);
    }
}
