//! The rules of an operation, one at a time: the CLI and the controller both rely
//! on them, so they are pinned here rather than only through the planner.

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn gradual(from: u32, to: u32, step: u32, interval: u64) -> ScalePlan {
    ScalePlan {
        mode: ScaleMode::Gradual,
        from,
        to,
        step,
        interval: secs(interval),
    }
}

/// The old free function's shape, so the moved test reads as it did.
fn default_timeout(mode: ScaleMode, from: u32, to: u32, step: u32, interval: Duration) -> Duration {
    ScalePlan {
        mode,
        from,
        to,
        step,
        interval,
    }
    .default_timeout()
}

fn record(kind: OperationKind, plan: ScalePlan, timeout: Duration) -> OperationRecord {
    OperationRecord {
        id: "op".into(),
        kind,
        from: plan.from,
        to: plan.to,
        mode: plan.mode,
        step: plan.step,
        interval: plan.interval,
        rollback_on_fail: true,
        timeout,
        requested_at: t(0),
        requested_by: "me@here".into(),
        reason: String::new(),
        supersedes: vec![],
        rolling: None,
    }
}

/// The progress of `record` at `step`, as the controller would store it.
fn progress(record: &OperationRecord, step: u32) -> OperationProgress {
    let mut progress = record.start(1, record.from, &[], t(0));
    progress.step = step;
    progress.steps = progress.step_count();
    progress.step_target = progress.target_of(step);
    progress
}

#[test]
fn default_timeout_grows_for_long_gradual_plans() {
    // The seed's example: 50 workers, step 5, 1m apart: 9m of intervals.
    let d = default_timeout(ScaleMode::Gradual, 0, 50, 5, Duration::from_secs(60));
    assert_eq!(d, Duration::from_secs(9 * 60 + 300));
    assert_eq!(
        default_timeout(ScaleMode::Immediate, 0, 50, 5, Duration::from_secs(60)),
        Duration::from_secs(300)
    );
}

#[test]
fn a_gradual_plan_takes_one_step_per_step_size_and_holds_between_steps() {
    let up = gradual(1, 6, 2, 30);
    assert_eq!(up.steps(), 3, "1 -> 3 -> 5 -> 6");
    assert_eq!(up.length(), secs(60), "two intervals between three steps");
    let targets: Vec<u32> = (1..=3).map(|step| up.step_target(step)).collect();
    assert_eq!(targets, [3, 5, 6], "the last step stops at the target");

    let down = gradual(6, 1, 2, 30);
    let targets: Vec<u32> = (1..=3).map(|step| down.step_target(step)).collect();
    assert_eq!(targets, [4, 2, 1]);
}

#[test]
fn a_plan_that_changes_nothing_or_goes_at_once_is_one_step() {
    assert_eq!(gradual(4, 4, 1, 30).steps(), 1);
    let at_once = ScalePlan {
        mode: ScaleMode::Immediate,
        ..gradual(1, 10, 1, 30)
    };
    assert_eq!(at_once.steps(), 1);
    assert_eq!(at_once.length(), Duration::ZERO, "no interval is held");
    assert_eq!(at_once.step_target(1), 10);
}

#[test]
fn an_absurd_interval_saturates_instead_of_panicking() {
    // `--interval 300000000000y` parses (humantime) and reaches stored records.
    let huge = duration::parse("300000000000y").unwrap();
    let plan = ScalePlan {
        interval: huge,
        ..gradual(0, u32::MAX, 1, 0)
    };
    assert_eq!(plan.length(), Duration::MAX);
    assert_eq!(plan.default_timeout(), Duration::MAX);
    let rec = record(OperationKind::Scale, plan, plan.default_timeout());
    assert_eq!(rec.timeout_from(0), Duration::MAX);
    assert!(
        !rec.expired(t(0)),
        "a deadline past the calendar never passes"
    );
}

#[test]
fn a_step_of_zero_counts_as_one() {
    let plan = gradual(0, 3, 0, 10);
    assert_eq!(plan.steps(), 3);
    assert_eq!(plan.step_target(1), 1);
}

#[test]
fn a_restart_stops_everything_then_starts_without_holding() {
    let plan = ScalePlan {
        mode: ScaleMode::Immediate,
        ..gradual(3, 3, 1, 30)
    };
    let restart = progress(&record(OperationKind::Restart, plan, BASE_TIMEOUT), 1);
    assert_eq!(restart.step_count(), 2);
    assert_eq!((restart.target_of(1), restart.target_of(2)), (0, 3));
    assert_eq!(restart.hold(), Duration::ZERO);
    let scale = progress(&record(OperationKind::Scale, plan, BASE_TIMEOUT), 1);
    assert_eq!(scale.hold(), secs(30));
}

#[test]
fn the_next_step_starts_an_interval_after_the_step_was_ready() {
    let rec = record(OperationKind::Scale, gradual(1, 6, 2, 30), BASE_TIMEOUT);
    let mut at_step_1 = progress(&rec, 1);
    assert_eq!(at_step_1.next_step_at(), None, "not ready yet");
    at_step_1.step_ready_at = Some(t(10));
    assert_eq!(at_step_1.next_step_at(), Some(t(40)));
    let mut last = progress(&rec, 3);
    last.step_ready_at = Some(t(10));
    assert_eq!(last.next_step_at(), None, "no step after the last");
}

#[test]
fn a_defaulted_timeout_is_sized_again_for_the_plan_that_runs() {
    // The CLI saw 9 -> 10 (one step); a ramp was superseded, so it runs 0 -> 10.
    let plan = gradual(9, 10, 1, 60);
    let rec = record(OperationKind::Scale, plan, plan.default_timeout());
    assert_eq!(rec.timeout_from(9), BASE_TIMEOUT);
    assert_eq!(rec.timeout_from(0), secs(9 * 60 + 300));
    // A timeout the requester chose is theirs.
    let chosen = record(OperationKind::Scale, plan, secs(120));
    assert_eq!(chosen.timeout_from(0), secs(120));
}

#[test]
fn the_deadline_counts_from_the_request_unless_the_clock_looks_off() {
    let rec = record(OperationKind::Scale, gradual(1, 2, 1, 30), secs(300));
    assert_eq!(rec.deadline(1, t(20)), t(300), "picked up 20s late");
    assert_eq!(rec.deadline(1, t(120)), t(420), "dated too far back");
    assert_eq!(rec.deadline(1, t(-5)), t(295), "dated in the future");
}

#[test]
fn a_record_whose_time_ran_out_is_expired() {
    let rec = record(OperationKind::Restart, gradual(1, 1, 1, 0), secs(300));
    assert!(!rec.expired(t(299)));
    assert!(rec.expired(t(300)));
}

#[test]
fn the_reason_says_what_was_asked_and_by_whom_unless_given() {
    let mut rec = record(OperationKind::Scale, gradual(1, 4, 1, 0), BASE_TIMEOUT);
    assert_eq!(rec.reason(), "scale to 4 requested by me@here");
    rec.kind = OperationKind::Stop;
    assert_eq!(rec.reason(), "stop requested by me@here");
    rec.reason = "load test".into();
    assert_eq!(rec.reason(), "load test");
}

#[test]
fn an_operation_starts_from_what_runs_now_with_the_ready_ones_on_record() {
    let rec = record(OperationKind::Scale, gradual(2, 6, 0, 30), secs(300));
    let ready = vec!["a".to_string()];
    let progress = rec.start(7, 3, &ready, t(10));
    assert_eq!((progress.from, progress.to), (3, 6));
    assert_eq!(progress.step_size, 1, "a step of 0 counts as 1");
    assert_eq!(
        (progress.step, progress.phase),
        (0, OperationPhase::Progressing)
    );
    assert_eq!(progress.deadline, t(300), "counted from the request");
    assert_eq!(progress.spec_revision, 7);
    assert_eq!(progress.ready_at_start, ready);
}

#[test]
fn a_record_picked_up_after_its_time_ran_out_counts_its_deadline_from_the_pickup() {
    let rec = record(OperationKind::Scale, gradual(1, 2, 1, 30), secs(30));
    assert_eq!(rec.deadline(1, t(20)), t(30), "in time: from the request");
    assert_eq!(
        rec.deadline(1, t(45)),
        t(75),
        "late: its whole timeout from now"
    );
    assert_eq!(rec.late_start(t(20)), None);
    assert_eq!(
        rec.late_start(t(45)).unwrap(),
        format!(
            "started late: requested at {}, picked up at {}",
            t(0),
            t(45)
        )
    );
    let started = rec.start(1, 1, &[], t(45));
    assert_eq!(started.deadline, t(75));
    assert!(started.note.starts_with("started late"), "{}", started.note);
}

#[test]
fn a_record_is_history_only_when_its_time_ran_out_and_it_created_instances() {
    let rec = record(OperationKind::Restart, gradual(2, 2, 1, 0), secs(300));
    assert!(!rec.is_history(t(10), true), "in time: a request");
    assert!(!rec.is_history(t(400), false), "never ran: runs late");
    assert!(
        rec.is_history(t(400), true),
        "ran, then the status was lost"
    );
}

#[test]
fn timeouts_under_a_second_are_refused_naming_the_minimum() {
    for short in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(500),
    ] {
        let err = check_timeout(short).unwrap_err();
        assert!(err.contains("at least 1s"), "{err}");
    }
    assert_eq!(check_timeout(secs(1)), Ok(secs(1)));
    // A record some other writer made with a tiny timeout still gets the minimum.
    let rec = record(OperationKind::Scale, gradual(1, 2, 1, 0), Duration::ZERO);
    assert_eq!(rec.timeout_from(1), MIN_TIMEOUT);
}

#[test]
fn an_overwritten_record_is_carried_while_no_controller_took_it_up() {
    let mut older = record(OperationKind::Scale, gradual(1, 2, 1, 0), BASE_TIMEOUT);
    older.id = "older".into();
    let mut previous = record(OperationKind::Stop, gradual(2, 0, 1, 0), BASE_TIMEOUT);
    previous.id = "previous".into();
    previous.supersedes = older.carried_over(5, 0);
    let carried = previous.carried_over(7, 5);
    let ids: Vec<&str> = carried.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["previous", "older"], "newest first");
    assert_eq!((carried[0].kind, carried[0].to), (OperationKind::Stop, 0));
    assert!(
        previous.carried_over(7, 7).is_empty(),
        "taken up: not carried"
    );

    // Bounded: a long run of overwrites keeps the last few.
    let mut last = previous;
    for n in 0..10 {
        let mut next = record(OperationKind::Scale, gradual(1, n, 1, 0), BASE_TIMEOUT);
        next.id = format!("op-{n}");
        next.supersedes = last.carried_over(10 + i64::from(n), 0);
        last = next;
    }
    assert_eq!(last.supersedes.len(), SUPERSEDES_LIMIT);
    assert_eq!(last.supersedes[0].id, "op-8");
}

#[test]
fn a_failure_rolls_back_to_the_stable_scale_else_to_the_one_desired_before() {
    let rec = record(OperationKind::Scale, gradual(2, 4, 1, 0), BASE_TIMEOUT);
    let failed = rec.start(1, 0, &[], t(0));
    assert_eq!(failed.rollback_target(Some(3)), Some(3), "the stable scale");
    assert_eq!(
        failed.rollback_target(None),
        Some(2),
        "the scale desired before"
    );
    assert_eq!(
        failed.rollback_target(Some(4)),
        None,
        "nothing to go back to"
    );

    let new_service = record(OperationKind::Scale, gradual(0, 1, 1, 0), BASE_TIMEOUT);
    let failed = new_service.start(1, 0, &[], t(0));
    assert_eq!(
        failed.rollback_target(None),
        None,
        "pinned, not rolled back to 0"
    );

    let mut pinned = rec.clone();
    pinned.rollback_on_fail = false;
    assert_eq!(pinned.start(1, 0, &[], t(0)).rollback_target(Some(2)), None);
    let restart = record(OperationKind::Restart, gradual(2, 2, 1, 0), BASE_TIMEOUT);
    assert_eq!(
        restart.start(1, 0, &[], t(0)).rollback_target(Some(1)),
        None
    );
}

#[test]
fn a_step_that_stops_everything_counts_what_is_left() {
    let at_once = ScalePlan {
        mode: ScaleMode::Immediate,
        ..gradual(8, 0, 1, 0)
    };
    let stop = record(OperationKind::Stop, at_once, BASE_TIMEOUT);
    let mut stopping = progress(&stop, 1);
    assert!(stopping.stops_everything());
    assert_eq!(stopping.stopping_counts(), "8 running, stopping");
    stopping.remaining = 3;
    assert_eq!(stopping.stopping_counts(), "3 of 8 left");
    stopping.remaining = 0;
    assert_eq!(stopping.stopping_counts(), "0 of 8 left");

    let restart = record(OperationKind::Restart, gradual(3, 3, 1, 0), BASE_TIMEOUT);
    assert!(progress(&restart, 1).stops_everything());
    assert!(
        !progress(&restart, 2).stops_everything(),
        "then it starts them"
    );
}

#[test]
fn an_operation_judges_the_instances_of_the_running_one_it_superseded_as_its_own() {
    let rec = record(OperationKind::Scale, gradual(0, 2, 1, 0), BASE_TIMEOUT);
    let mut older = rec.start(1, 0, &[], t(0));
    older.id = "older".into();
    let mut cast = rec.start(2, 0, &[], t(0));
    cast.id = "cast".into();
    cast.carry_on_from(&older);
    let mut scale = rec.start(3, 2, &[], t(1));
    scale.id = "scale".into();
    scale.carry_on_from(&cast);
    assert_eq!(scale.carries_on_from, ["cast", "older"]);
    for id in ["scale", "cast", "older"] {
        assert!(scale.started(Some(id)), "{id}");
    }
    assert!(!scale.started(Some("other")));
    assert!(!scale.started(None), "instances from before any operation");
}

#[test]
fn a_rolling_operation_takes_the_spec_settings_under_the_flags_overrides() {
    use crate::model::update::{Count, UpdateSettings};
    let spec = UpdateSettings {
        max_surge: Count::Percent(25),
        min_ready_seconds: 5,
        ..UpdateSettings::default()
    };
    let (bounds, min_ready) = RollingRequest::default().settle(&spec, 10);
    assert_eq!((bounds.max_surge, bounds.max_unavailable), (3, 0));
    assert_eq!(min_ready, secs(5));
    let flags = RollingRequest {
        max_surge: Some(Count::Absolute(0)),
        max_unavailable: None,
        min_ready: Some(secs(7200)),
    };
    let (bounds, min_ready) = flags.settle(&spec, 10);
    assert_eq!(
        (bounds.max_surge, bounds.max_unavailable),
        (0, 1),
        "never both 0"
    );
    assert_eq!(
        min_ready,
        limits::MAX_MIN_READY,
        "a hand-written record is bounded"
    );
}

#[test]
fn what_counts_as_updated_is_one_rule_per_kind() {
    let restart = record(
        OperationKind::Restart,
        ScalePlan {
            mode: ScaleMode::Immediate,
            from: 3,
            to: 3,
            step: 1,
            interval: secs(0),
        },
        secs(300),
    );
    let mut p = restart.start(1, 3, &[], t(0));
    assert!(p.counts_as_updated(Some("op"), true));
    assert!(!p.counts_as_updated(None, true), "an instance from before");
    assert!(!p.counts_as_updated(Some("op"), false), "another spec");
    p.kind = OperationKind::Rollout;
    assert!(
        p.counts_as_updated(None, true),
        "a rollout goes by the spec"
    );
    assert!(!p.counts_as_updated(Some("op"), false));
}
