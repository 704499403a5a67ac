use jiff::Timestamp;

use super::*;
use crate::model::event::{EventType, service_object};
use crate::model::{
    Condition, ConditionKind, ConditionStatus, DesiredState, ExitInfo, OperationKind,
    OperationPhase, ScaleMode, parse_cast_file,
};

const SPEC: &str = r#"
service:
  name: api
  scale: 2
  command: ["python3", "-m", "http.server", "${PORT}"]
  ports: [{name: http}]
  health:
    readiness: {type: http, port: http, path: /healthz}
  restartPolicy: OnFailure
  scaling: {mode: gradual, step: 1, interval: 10s, rollbackOnFail: true}
"#;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn record(id: &str, node: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        namespace: "default".into(),
        service: "api".into(),
        node: node.into(),
        desired: DesiredState::Running,
        revision: 3,
        created_at: at("2026-01-01T00:00:00Z"),
        operation_id: None,
        node_lost: false,
    }
}

fn event(object: &str, reason: &str, message: &str, count: u32) -> Event {
    Event {
        kind: EventType::Warning,
        reason: reason.into(),
        message: message.into(),
        object: object.into(),
        namespace: "default".into(),
        service: "api".into(),
        node: "n1".into(),
        source: "agent n1".into(),
        count,
        first_seen: at("2026-01-01T00:00:00Z"),
        last_seen: at("2026-01-01T00:00:10Z"),
    }
}

fn description() -> ServiceDescription {
    let spec = parse_cast_file("api.yaml", SPEC).unwrap().remove(0);
    let mut status = ServiceStatus {
        desired_replicas: 2,
        ready_replicas: 1,
        current_replicas: 2,
        last_scale_at: Some(at("2026-01-01T00:00:00Z")),
        last_scale_reason: "rune scale api 2".into(),
        ..ServiceStatus::default()
    };
    status.conditions.push(Condition {
        kind: ConditionKind::Available,
        status: ConditionStatus::False,
        reason: "NotReady".into(),
        message: "1 of 2 ready".into(),
        last_transition_time: at("2026-01-01T00:00:00Z"),
    });
    status.history.push(HistoryEntry {
        id: "0193a0b0-0000-7000-8000-000000000001".into(),
        kind: OperationKind::Scale,
        from: 1,
        to: 3,
        mode: ScaleMode::Immediate,
        requested_by: "me".into(),
        reason: String::new(),
        result: OperationPhase::RolledBack,
        started_at: at("2026-01-01T00:00:00Z"),
        finished_at: None,
        error: "instance api-b exited before it was ready".into(),
        note: String::new(),
    });
    let mut ready = InstanceStatus::pending("api-a", "n1");
    ready.phase = Phase::Running;
    ready.ready = true;
    ServiceDescription {
        namespace: "default".into(),
        name: "api".into(),
        spec: Ok(StoredService::new(spec)),
        spec_revision: 42,
        revision: Some(3),
        status,
        instances: vec![
            (record("api-a", "n1"), Some(ready)),
            (record("api-b", "n2"), None),
        ],
        events: vec![
            event(&instance_object("api-b"), "Exited", "exit code 1", 3),
            event(
                &service_object("api"),
                "RolledBack",
                "scale 1 → 3 rolled back to 1",
                1,
            ),
        ],
    }
}

#[test]
fn describe_service_has_every_section() {
    let out = render_service(&description(), at("2026-01-01T00:01:00Z"));
    for want in [
        "Name:             api",
        "Namespace:        default",
        "Command:          python3 -m http.server ${PORT}",
        "Ports:            http (auto)",
        "Readiness:        http :http/healthz every",
        "Liveness:         <none>",
        "Restart policy:   OnFailure, stopGracePeriod 30s",
        "Scaling:          gradual, step 1, interval 10s, rollbackOnFail true",
        "Revision:         3 (spec key at etcd revision 42)",
        "Status:",
        "2 desired | 1 ready | 2 current",
        ": rune scale api 2",
        "Conditions:",
        "Available",
        "1 of 2 ready",
        "Instances:",
        "Operations:",
        "RolledBack",
        "instance api-b exited before it was ready",
        "Events:",
        "instance/api-b",
        "exit code 1",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    // Instances by node, with their phase, readiness, restarts and revision.
    let a = out.lines().find(|l| l.contains("api-a")).unwrap();
    let words: Vec<&str> = a.split_whitespace().collect();
    assert_eq!(
        &words[..6],
        ["n1", "api-a", "Running", "true", "0", "3"],
        "{a}"
    );
    let b = out
        .lines()
        .find(|l| l.contains("api-b") && l.contains("n2"))
        .unwrap();
    assert!(b.contains(" - "), "no report yet: {b}");
    // The sections come in this order.
    let pos = |s: &str| out.find(s).unwrap();
    assert!(pos("Status:") < pos("Conditions:"));
    assert!(pos("Conditions:") < pos("Instances:"));
    assert!(pos("Instances:") < pos("Operations:"));
    assert!(pos("Operations:") < pos("Events:"));
    // The newest event last, with its count.
    let last = out.lines().last().unwrap();
    assert!(
        last.contains("RolledBack") || last.contains("Exited"),
        "{last}"
    );
}

#[test]
fn describe_service_without_anything_yet() {
    let mut d = description();
    d.instances.clear();
    d.events.clear();
    d.status = ServiceStatus::default();
    d.spec = Err("bad: line 3".into());
    let out = render_service(&d, at("2026-01-01T00:01:00Z"));
    assert!(
        out.contains("Spec:             invalid: bad: line 3"),
        "{out}"
    );
    assert!(out.contains("Instances:\n  <none>"), "{out}");
    assert!(out.contains("Events:\n  <none>"), "{out}");
}

#[test]
fn describe_instance_shows_the_last_exit_and_probe_error() {
    let mut s = InstanceStatus::pending("api-b", "n2");
    s.phase = Phase::Pending;
    s.restarts = 2;
    s.probe_error = "connection refused".into();
    s.readiness_failures = 3;
    s.last_exit = Some(ExitInfo {
        code: Some(1),
        signal: None,
        at: at("2026-01-01T00:00:05Z"),
        reason: String::new(),
    });
    s.message = "back-off 2s restarting after exit code 1".into();
    let d = InstanceDescription {
        record: record("api-b", "n2"),
        status: Some(s),
        node_registered: false,
        events: vec![event(
            &instance_object("api-b"),
            "BackOff",
            "back-off restarting after exit code 1",
            2,
        )],
    };
    let out = render_instance(&d);
    for want in [
        "ID:               api-b",
        "Service:          api",
        "Node:             n2 (lost: not registered)",
        "Revision:         3",
        "Restarts:       2",
        "Last exit:      exit code 1 at 2026-01-01T00:00:05Z",
        "Probe error:    connection refused (3 readiness failures in a row)",
        "Message:        back-off 2s",
        "Events:",
        "BackOff",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}
