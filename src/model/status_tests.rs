//! What the status says about operations to people: the history (including
//! operations that never ran) and the counts a waiting CLI shows.

use std::time::Duration;

use super::*;
use crate::model::OperationRecord;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn record(id: &str, kind: OperationKind, from: u32, to: u32) -> OperationRecord {
    OperationRecord {
        id: id.into(),
        kind,
        from,
        to,
        mode: ScaleMode::Immediate,
        step: 1,
        interval: Duration::ZERO,
        rollback_on_fail: true,
        timeout: Duration::from_secs(300),
        requested_at: t(0),
        requested_by: "me@here".into(),
        reason: format!("reason of {id}"),
        supersedes: vec![],
        rolling: None,
    }
}

#[test]
fn operations_overwritten_unseen_enter_the_history_as_superseded_oldest_first() {
    let mut older = record("older", OperationKind::Scale, 1, 2);
    older.requested_at = t(1);
    let mut previous = record("previous", OperationKind::Stop, 2, 0);
    previous.requested_at = t(2);
    previous.supersedes = older.carried_over(5, 0);
    let unseen = previous.carried_over(6, 0);

    let mut status = ServiceStatus::default();
    status.record_superseded_unseen(&unseen, "newest", t(3), |_| false);
    let ids: Vec<&str> = status.history.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["previous", "older"], "newest first");
    let entry = &status.history[0];
    assert_eq!(entry.result, OperationPhase::Superseded);
    assert_eq!(
        (entry.kind, entry.from, entry.to),
        (OperationKind::Stop, 2, 0)
    );
    assert_eq!(entry.reason, "reason of previous");
    assert_eq!((entry.started_at, entry.finished_at), (t(2), Some(t(3))));
    assert!(
        entry.error.contains("superseded by newest"),
        "{}",
        entry.error
    );
}

#[test]
fn operations_the_status_knows_or_that_ran_are_not_recorded_twice() {
    let unseen = [
        record("known", OperationKind::Scale, 1, 2),
        record("ran", OperationKind::Scale, 1, 3),
        record("unseen", OperationKind::Scale, 1, 4),
    ]
    .map(|r| r.carried_over(9, 0).remove(0));
    let mut status = ServiceStatus::default();
    status
        .history
        .push(unseen[0].superseded_entry("someone", t(1)));
    status.record_superseded_unseen(&unseen, "newest", t(3), |id| id == "ran");
    let ids: Vec<&str> = status.history.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["unseen", "known"]);
}

#[test]
fn a_history_row_says_the_error_or_else_the_reason_then_the_note() {
    let op = record("op", OperationKind::Scale, 1, 2).start(1, 1, &[], t(400));
    let mut entry = op.history_entry("");
    assert!(
        entry
            .remarks()
            .starts_with("reason of op; started late: requested at"),
        "{}",
        entry.remarks()
    );
    entry.error = "timed out".into();
    entry.note.clear();
    assert_eq!(entry.remarks(), "timed out");
}

#[test]
fn the_counts_of_a_stop_say_what_is_left_not_ready_of_zero() {
    let mut status = ServiceStatus {
        desired_replicas: 0,
        ready_replicas: 8,
        current_replicas: 8,
        ..ServiceStatus::default()
    };
    let mut stop = record("stop", OperationKind::Stop, 8, 0).start(1, 8, &[], t(0));
    stop.step = 1;
    stop.steps = 1;
    stop.step_target = 0;
    status.operation = Some(stop);
    assert_eq!(status.counts(), "8 running, stopping");
    status.operation.as_mut().unwrap().remaining = 2;
    assert_eq!(status.counts(), "2 of 8 left");

    let mut scale = record("scale", OperationKind::Scale, 1, 3).start(1, 1, &[], t(0));
    scale.step = 1;
    scale.step_target = 3;
    status.operation = Some(scale);
    status.desired_replicas = 3;
    status.ready_replicas = 1;
    status.current_replicas = 2;
    assert_eq!(status.counts(), "1/3 ready, 2 current");
}
