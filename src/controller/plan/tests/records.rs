//! Records that do not parse: each has its defined outcome and is reported.

use super::*;
use crate::controller::plan::{RecordKind, Unparseable};

fn garbage(kind: RecordKind, key: &str, revision: i64) -> Unparseable {
    Unparseable {
        kind,
        key: key.into(),
        name: key.rsplit('/').next().unwrap().into(),
        revision,
        error: "expected value at line 1 column 1".into(),
    }
}

#[test]
fn an_unparseable_instance_record_is_removed_and_reported() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.unparseable.push(garbage(
        RecordKind::Instance,
        "/r/instances/default/api/x1",
        42,
    ));
    let p = s.step();
    assert!(
        p.remove.contains(&Versioned::new("x1".to_string(), 42)),
        "{:?}",
        p.remove
    );
    let c = s.o.status.condition(ConditionKind::RecordsInvalid).unwrap();
    assert!(
        c.message.contains("instances/default/api/x1"),
        "{}",
        c.message
    );
    assert!(c.message.contains("removed"), "{}", c.message);
    assert_eq!(
        s.o.status.current_replicas, 1,
        "the parsed instance is untouched"
    );

    s.o.unparseable.clear();
    s.step();
    assert!(
        !s.o.status.is_true(ConditionKind::RecordsInvalid),
        "cleared"
    );
}

#[test]
fn an_unparseable_instance_record_is_removed_even_while_the_spec_is_invalid() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.spec = SpecState::Invalid(SpecError::new("t", "bad"));
    s.o.unparseable.push(garbage(
        RecordKind::Instance,
        "/r/instances/default/api/x1",
        7,
    ));
    let p = s.step();
    assert_eq!(p.remove, vec![Versioned::new("x1".to_string(), 7)]);
    assert!(p.stop.is_empty(), "parsed instances stay as they are");
}

#[test]
fn an_unparseable_operation_is_ignored_and_a_deletion_still_purges() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.operation_revision = Some(33);
    s.o.unparseable.push(garbage(
        RecordKind::Operation,
        "/r/operations/default/api",
        33,
    ));
    let p = s.step();
    assert!(p.create.is_empty() && p.stop.is_empty());
    let c = s.o.status.condition(ConditionKind::RecordsInvalid).unwrap();
    assert!(c.message.contains("ignored"), "{}", c.message);

    // rune delete: every instance stops, then the keys go, garbage included.
    let mut deleted = stored(1, "");
    deleted.deletion_timestamp = Some(t(1));
    s.o.spec = SpecState::Valid {
        stored: Box::new(deleted),
        revision: 50,
    };
    s.step();
    s.agents(true);
    let p = s.step();
    assert!(
        p.purge,
        "a garbage operation record must not wedge the deletion"
    );
}

#[test]
fn an_unparseable_status_is_rewritten_and_an_unparseable_report_counts_as_none() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.unparseable
        .push(garbage(RecordKind::Status, "/r/status/default/api", 5));
    s.o.unparseable.push(garbage(
        RecordKind::InstanceStatus,
        "/r/instance-status/default/api/x9",
        6,
    ));
    let p = s.step();
    assert!(p.remove.is_empty(), "only instance records are removed");
    let c = s.o.status.condition(ConditionKind::RecordsInvalid).unwrap();
    assert!(
        c.message
            .contains("status record /r/status/default/api does not parse (rewritten)"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("ignored until its agent reports again"),
        "{}",
        c.message
    );
}
