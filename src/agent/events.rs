//! The events an instance's status change means, read off two consecutive reports
//! (the supervisor's `Publish`): started, ready, unready, exited (the exit's reason,
//! e.g. `OOMKilled`, becomes the event's reason), back-off, stopped; and each failed
//! probe as its result arrives (`probe_failed`). Pure, so the supervisor only hands
//! over what it has anyway.

use crate::events::{Draft, instance_object};
use crate::model::{ExitInfo, InstanceRef, InstanceStatus, Phase};
use crate::probe::Which;

pub fn transitions(
    key: &InstanceRef,
    prev: Option<&InstanceStatus>,
    next: &InstanceStatus,
) -> Vec<Draft> {
    let (ns, svc) = (key.service.namespace.as_str(), key.service.name.as_str());
    let object = || instance_object(&key.id);
    let normal = |reason: &str, message: String| {
        Draft::normal(ns, svc, object(), reason, message).on(&next.node)
    };
    let warning = |reason: &str, message: String| {
        Draft::warning(ns, svc, object(), reason, message).on(&next.node)
    };
    let mut out = Vec::new();
    let Some(prev) = prev else {
        // The first report of this supervisor: a new instance, or one a restarted
        // agent adopted (its past events are in etcd already; this process's
        // writer does not know their counts). Only a fresh start is news.
        if next.started_at.is_some() && next.restarts == 0 && next.last_exit.is_none() {
            out.push(normal("Started", "process started".to_string()));
        }
        return out;
    };
    let prev = Some(prev);
    let was = |f: fn(&InstanceStatus) -> bool| prev.is_some_and(f);

    // How the last process ended, once per exit.
    if let Some(exit) = &next.last_exit
        && prev.and_then(|p| p.last_exit.as_ref()) != Some(exit)
    {
        let stopped = next.phase == Phase::Exited && next.message == "stopped on request";
        out.push(if stopped {
            normal("Stopped", format!("stopped on request: {}", describe(exit)))
        } else {
            let reason = exit_reason(exit);
            if exit.code == Some(0) && exit.signal.is_none() {
                normal(&reason, describe(exit))
            } else {
                warning(&reason, describe(exit))
            }
        });
    }
    if next.phase == Phase::Pending
        && next.message.starts_with("back-off")
        && prev.is_none_or(|p| p.message != next.message)
    {
        let after = next.last_exit.as_ref().map(describe).unwrap_or_default();
        out.push(warning(
            "BackOff",
            format!("back-off restarting after {after}"),
        ));
    }
    let started = next.started_at.is_some()
        && matches!(next.phase, Phase::Starting | Phase::Running)
        && prev.is_none_or(|p| p.started_at != next.started_at);
    if started {
        let message = if next.restarts > 0 {
            "process restarted"
        } else {
            "process started"
        };
        out.push(normal("Started", message.to_string()));
    }
    if next.ready && !was(|p| p.ready) {
        out.push(normal("Ready", "passed readiness".to_string()));
    }
    if !next.ready && was(|p| p.ready) && matches!(next.phase, Phase::Running | Phase::Starting) {
        let why = if next.probe_error.is_empty() {
            "not ready".to_string()
        } else {
            format!("not ready: {}", next.probe_error)
        };
        out.push(warning("Unready", why));
    }
    out
}

/// A probe's failure, as it happens (not every one is reported in the status):
/// `ProbeFailed`, coalesced by probe and error text.
pub fn probe_failed(key: &InstanceRef, node: &str, which: Which, error: &str) -> Draft {
    Draft::warning(
        &key.service.namespace,
        &key.service.name,
        instance_object(&key.id),
        "ProbeFailed",
        format!("{which} probe failed: {error}"),
    )
    .on(node)
}

/// Records a failed probe's event (the supervisor's probe results pass here).
pub fn probe_result(key: &InstanceRef, node: &str, which: Which, result: &Result<(), String>) {
    if let Err(error) = result {
        crate::events::record(probe_failed(key, node, which, error));
    }
}

/// The exit's own reason when it is one word (`OOMKilled`), else `Exited`.
fn exit_reason(exit: &ExitInfo) -> String {
    let word = !exit.reason.is_empty()
        && exit.reason.len() <= 40
        && exit.reason.chars().all(|c| c.is_ascii_alphanumeric())
        && exit.reason.starts_with(|c: char| c.is_ascii_uppercase());
    if word {
        exit.reason.clone()
    } else {
        "Exited".to_string()
    }
}

/// The exit without its time (repeats coalesce): `exit code 1`, `killed by signal 9`.
fn describe(exit: &ExitInfo) -> String {
    exit.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceRef;
    use jiff::Timestamp;

    fn key() -> InstanceRef {
        InstanceRef {
            service: ServiceRef::new("default", "api"),
            id: "api-1".into(),
        }
    }

    fn reasons(d: &[Draft]) -> Vec<&str> {
        d.iter().map(|d| d.reason.as_str()).collect()
    }

    fn exit(code: Option<i32>, reason: &str) -> ExitInfo {
        ExitInfo {
            code,
            signal: None,
            at: Timestamp::UNIX_EPOCH,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_life_in_events() {
        let pending = InstanceStatus::pending("api-1", "n1");
        let mut starting = pending.clone();
        starting.phase = Phase::Starting;
        starting.pid = Some(10);
        starting.started_at = Some(Timestamp::UNIX_EPOCH);
        assert_eq!(
            reasons(&transitions(&key(), Some(&pending), &starting)),
            ["Started"]
        );
        let mut failing = starting.clone();
        failing.readiness_failures = 1;
        failing.probe_error = "connection refused".into();
        assert!(transitions(&key(), Some(&starting), &failing).is_empty());
        let d = probe_failed(&key(), "n1", Which::Readiness, "connection refused");
        assert_eq!(d.reason, "ProbeFailed");
        assert_eq!(d.message, "readiness probe failed: connection refused");
        assert_eq!(d.node, "n1");
        let d2 = probe_failed(&key(), "n1", Which::Readiness, "connection refused");
        assert_eq!(
            d2.id(),
            d.id(),
            "the same failure again: the same event (coalesced)"
        );
        let mut again = failing.clone();
        again.readiness_failures = 2;
        let mut ready = again.clone();
        ready.phase = Phase::Running;
        ready.ready = true;
        ready.readiness_failures = 0;
        ready.probe_error.clear();
        assert_eq!(
            reasons(&transitions(&key(), Some(&again), &ready)),
            ["Ready"]
        );
        let mut unready = ready.clone();
        unready.ready = false;
        unready.probe_error = "HTTP 500".into();
        unready.readiness_failures = 3;
        let d = transitions(&key(), Some(&ready), &unready);
        assert_eq!(reasons(&d), ["Unready"]);
        assert_eq!(d[0].message, "not ready: HTTP 500");
        let mut backoff = unready.clone();
        backoff.phase = Phase::Pending;
        backoff.ready = false;
        backoff.pid = None;
        backoff.last_exit = Some(exit(Some(1), ""));
        backoff.message = "back-off 1s restarting after exit code 1".into();
        let d = transitions(&key(), Some(&unready), &backoff);
        assert_eq!(reasons(&d), ["Exited", "BackOff"]);
        assert_eq!(d[0].message, "exit code 1");
        assert_eq!(d[0].kind, crate::events::EventType::Warning);
        assert_eq!(d[1].message, "back-off restarting after exit code 1");
        assert_eq!(d[0].node, "n1");
        assert!(
            transitions(&key(), Some(&backoff), &backoff).is_empty(),
            "no change, no event"
        );
    }

    #[test]
    fn the_exit_reason_names_the_event() {
        let prev = InstanceStatus::pending("api-1", "n1");
        let mut oom = prev.clone();
        oom.phase = Phase::Failed;
        oom.last_exit = Some(ExitInfo {
            signal: Some(9),
            ..exit(None, "OOMKilled")
        });
        let d = transitions(&key(), Some(&prev), &oom);
        assert_eq!(reasons(&d), ["OOMKilled"]);
        assert_eq!(d[0].message, "killed by signal 9 (OOMKilled)");
        let mut stopped = prev.clone();
        stopped.phase = Phase::Exited;
        stopped.message = "stopped on request".into();
        stopped.last_exit = Some(exit(None, "record says Stopped"));
        assert_eq!(
            reasons(&transitions(&key(), Some(&prev), &stopped)),
            ["Stopped"]
        );
    }
}
