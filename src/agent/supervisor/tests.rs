//! Unit tests of the supervisor's decisions (`decide.rs`) with a simulated clock and
//! world, the way `controller/plan_tests.rs` tests the planner: each test feeds the
//! core what the IO loop would (starts, exits, probe results, deadlines, commands)
//! and checks the state it moves to, the status it reports and the effects it asks
//! for. They pin down what the supervisor does today, quirks included.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::decide::*;
use crate::agent::revisions::Assigned;
use crate::agent::state::Persisted;
use crate::model::{ExitInfo, Phase};
use crate::probe::Which;

const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
    reset: Duration::from_secs(60),
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An instance record of `spec` (merged over a minimal one).
fn record(spec: &Value, desired: &str) -> Assigned {
    let mut full = json!({"name": "api", "command": "x"});
    for (k, v) in spec.as_object().expect("spec is an object") {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "record": {
            "id": "i1", "namespace": "default", "service": "api", "node": "n1",
            "desired": desired, "revision": 1, "createdAt": "2024-01-01T00:00:00Z",
        },
        "spec": full,
    }))
    .unwrap()
}

fn exit(code: Option<i32>, signal: Option<i32>) -> ExitInfo {
    ExitInfo {
        code,
        signal,
        at: Timestamp::from_second(1_800_000_000).unwrap(),
        reason: String::new(),
    }
}

fn code(n: i32) -> ExitInfo {
    exit(Some(n), None)
}

/// A decision in short: each effect's name, with the phase a Publish carries and a
/// Stop's reason.
fn brief(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|e| match e {
            Effect::Publish(s) => format!("Publish {:?}", s.phase),
            Effect::Persist(_) => "Persist".into(),
            Effect::Stop { reason, .. } => format!("Stop: {reason}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The last Persist of a decision.
fn persisted(fx: &[Effect]) -> &Persisted {
    fx.iter()
        .rev()
        .find_map(|e| match e {
            Effect::Persist(p) => Some(&**p),
            _ => None,
        })
        .expect("the decision persists")
}

/// One supervised instance and its clock.
struct Sim {
    core: Core,
    spec: Value,
    t0: Instant,
    clock: Duration,
    next_pid: u32,
}

impl Sim {
    fn blank(spec: Value, desired: &str) -> Sim {
        let r = record(&spec, desired);
        Sim {
            core: Core::new(
                crate::model::ServiceRef::new("default", "api").instance("i1"),
                "n1",
                r,
                BACKOFF,
            ),
            spec,
            t0: Instant::now(),
            clock: Duration::ZERO,
            next_pid: 100,
        }
    }

    /// A new record, nothing persisted: reports Pending and starts.
    fn new(spec: Value) -> Sim {
        let mut s = Sim::blank(spec, "Running");
        let fx = s.core.restore(None, false, s.now());
        assert_eq!(brief(&fx), ["Publish Pending", "Start"]);
        s
    }

    /// A new record whose process is up.
    fn running(spec: Value) -> Sim {
        let mut s = Sim::new(spec);
        assert_eq!(brief(&s.start()), ["Persist", "Publish Starting"]);
        s
    }

    fn now(&self) -> Now {
        let wall = Timestamp::from_second(1_800_000_000).unwrap() + self.clock;
        Now {
            at: self.t0 + self.clock,
            wall,
        }
    }

    fn wait(&mut self, d: Duration) {
        self.clock += d;
    }

    fn start(&mut self) -> Vec<Effect> {
        self.next_pid += 1;
        let pid = self.next_pid;
        self.core
            .started(pid, Some(u64::from(pid) * 10), self.now())
    }

    fn exit(&mut self, e: ExitInfo) -> Vec<Effect> {
        let now = self.now();
        self.core.on_exit(e, now.at, now)
    }

    fn stopped(&mut self, mut e: ExitInfo, reason: &str) -> Vec<Effect> {
        e.reason = reason.into();
        self.core.stopped(e, self.now())
    }

    fn probe(&mut self, which: Which, ok: bool) -> Vec<Effect> {
        let result = if ok {
            Ok(())
        } else {
            Err(format!("{which} refused"))
        };
        self.core.on_probe(which, result, self.now())
    }

    fn command(&mut self, cmd: Cmd) -> Vec<Effect> {
        self.core.on_command(cmd, self.now())
    }

    /// The record again, with `desired`.
    fn desire(&mut self, desired: &str) -> Vec<Effect> {
        let r = record(&self.spec, desired);
        self.command(Cmd::Update(Box::new(r.record)))
    }

    fn due(&mut self) -> Vec<Effect> {
        self.core.on_due(self.now())
    }

    /// Waits out the back-off and starts again; returns the wait.
    fn restart(&mut self) -> Duration {
        let left = self.backoff_left();
        self.wait(left);
        assert_eq!(brief(&self.due()), ["Publish Pending", "Start"]);
        assert_eq!(
            brief(&self.start()),
            ["CountRestart", "Persist", "Publish Starting"]
        );
        left
    }

    /// `n` crashes (exit 1), each back-off waited out and the process started again.
    fn crash_and_restart(&mut self, n: usize) {
        for _ in 0..n {
            self.exit(code(1));
            self.restart();
        }
    }

    fn backoff_left(&self) -> Duration {
        match self.core.state() {
            State::BackingOff { due } => *due - self.now().at,
            other => panic!("not backing off: {other:?}"),
        }
    }

    fn phase(&self) -> Phase {
        self.core.status().phase
    }

    fn ready_deadline(&self) -> Option<Duration> {
        match self.core.state() {
            State::Running(run) => run.ready_deadline.map(|d| d - self.t0),
            other => panic!("not running: {other:?}"),
        }
    }
}

#[test]
fn backoff_doubles_up_to_the_max() {
    let b = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(30),
        reset: Duration::from_secs(60),
    };
    let got: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(b.delay(1000), Duration::from_secs(30));
}

#[test]
fn a_crash_loop_backs_off_with_growing_delays_and_counts_restarts() {
    let mut s = Sim::running(json!({}));
    let mut waits = Vec::new();
    for _ in 0..7 {
        s.wait(secs(2));
        assert_eq!(brief(&s.exit(code(3))), ["Persist", "Publish Pending"]);
        assert_eq!(s.core.status().pid, None);
        waits.push(s.restart().as_secs());
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(s.core.status().restarts, 7);
    s.exit(code(3));
    let st = s.core.status();
    assert_eq!(st.message, "back-off 30s restarting after exit code 3");
    assert_eq!(st.last_exit.as_ref().unwrap().code, Some(3));
}

#[test]
fn a_healthy_stretch_forgives_earlier_crashes() {
    let mut s = Sim::running(json!({}));
    s.crash_and_restart(3);
    // Up a little less than the reset: the back-off keeps growing.
    s.wait(secs(59));
    s.exit(code(1));
    assert_eq!(s.restart(), secs(8));
    // Up for the reset: earlier crashes are forgiven.
    s.wait(secs(60));
    s.exit(code(1));
    assert_eq!(s.restart(), secs(1));
    s.exit(code(1));
    assert_eq!(s.backoff_left(), secs(2));
}

#[test]
fn restart_policy_by_exit() {
    let killed = exit(None, Some(9));
    for (policy, how, restarts, phase) in [
        ("Always", code(0), true, Phase::Pending),
        ("Always", code(1), true, Phase::Pending),
        ("OnFailure", code(0), false, Phase::Exited),
        ("OnFailure", code(1), true, Phase::Pending),
        ("OnFailure", killed.clone(), true, Phase::Pending),
        ("Never", code(0), false, Phase::Exited),
        ("Never", code(1), false, Phase::Failed),
        ("Never", killed.clone(), false, Phase::Failed),
    ] {
        let case = format!("{policy} after {how}");
        let mut s = Sim::running(json!({ "restartPolicy": policy }));
        let fx = s.exit(how.clone());
        assert_eq!(
            brief(&fx),
            ["Persist".to_string(), format!("Publish {phase:?}")],
            "{case}"
        );
        assert_eq!(s.phase(), phase, "{case}");
        let saved = persisted(&fx);
        assert_eq!(saved.last_exit.as_ref(), Some(&how), "{case}");
        if restarts {
            assert_eq!(s.backoff_left(), secs(1), "{case}");
            assert_eq!(saved.ended, None, "{case}");
        } else {
            assert_eq!(s.core.state(), &State::Ended, "{case}");
            assert_eq!(saved.ended, Some(phase), "{case}");
            assert_eq!(
                s.core.status().message,
                format!("{how}; restartPolicy does not restart it"),
                "{case}"
            );
        }
    }
}

#[test]
fn an_ended_instance_starts_again_only_after_the_record_says_stopped_then_running() {
    let mut s = Sim::running(json!({"restartPolicy": "Never"}));
    s.exit(code(1));
    // A new version of the record that still says Running does not revive it.
    assert_eq!(brief(&s.desire("Running")), ["Publish Failed"]);
    assert_eq!(s.core.state(), &State::Ended);
    // Stopped: nothing to stop, and it keeps reporting how it ended.
    assert_eq!(brief(&s.desire("Stopped")), ["Publish Failed"]);
    assert_eq!(s.core.state(), &State::Stopped);
    // Running again: a fresh start, not counted as a restart.
    assert_eq!(brief(&s.desire("Running")), ["Publish Failed", "Start"]);
    assert_eq!(brief(&s.start()), ["Persist", "Publish Starting"]);
    assert_eq!(s.core.status().restarts, 0);
}

#[test]
fn a_stop_while_backing_off_reports_exited_without_stopping_anything() {
    let mut s = Sim::running(json!({}));
    s.crash_and_restart(3);
    s.exit(code(1));
    // (The unchanged Pending is not sent again: the loop publishes only changes.)
    assert_eq!(
        brief(&s.desire("Stopped")),
        ["Publish Pending", "Publish Exited"]
    );
    assert_eq!(s.core.state(), &State::Stopped);
    let st = s.core.status();
    assert_eq!(st.message, "stopped on request");
    assert_eq!(st.last_exit.as_ref().unwrap().code, Some(1));
    // The back-off no longer applies.
    s.wait(secs(30));
    assert_eq!(brief(&s.due()), Vec::<String>::new());
    // Running again: starts at once, counted as the restart that was pending, and
    // the crash history is forgiven.
    assert_eq!(brief(&s.desire("Running")), ["Publish Exited", "Start"]);
    assert_eq!(
        brief(&s.start()),
        ["CountRestart", "Persist", "Publish Starting"]
    );
    assert_eq!(s.core.status().restarts, 4);
    s.exit(code(1));
    assert_eq!(s.backoff_left(), secs(1));
}

#[test]
fn a_requested_stop_waits_out_the_shutdown_delay_and_says_so() {
    let mut s = Sim::running(json!({"shutdownDelay": "2s"}));
    let fx = s.desire("Stopped");
    assert_eq!(brief(&fx), ["Publish Stopping", "Stop: stopped on request"]);
    assert!(fx.contains(&Effect::Stop {
        reason: "stopped on request".into(),
        delay: secs(2),
    }));
    let st = s.core.status();
    assert!(!st.ready);
    assert_eq!(
        st.message,
        "out of the endpoints; SIGTERM after shutdownDelay 2s"
    );
    // An agent shutting down, or a record gone (also the self-fence's stop, which
    // the node handover's deadline counts on), stops at once: no delay.
    let mut s = Sim::running(json!({"shutdownDelay": "2s"}));
    let fx = s.command(Cmd::Shutdown { stop: true });
    assert!(fx.contains(&Effect::Stop {
        reason: "agent shutting down".into(),
        delay: Duration::ZERO,
    }));
    let mut s = Sim::running(json!({"shutdownDelay": "2s"}));
    let fx = s.command(Cmd::Remove);
    assert!(fx.contains(&Effect::Stop {
        reason: "instance removed".into(),
        delay: Duration::ZERO,
    }));
}

#[test]
fn a_stop_while_running_stops_the_process_then_reports_exited() {
    let mut s = Sim::running(json!({}));
    assert_eq!(
        brief(&s.desire("Stopped")),
        ["Publish Stopping", "Stop: stopped on request"]
    );
    assert_eq!(s.core.state(), &State::Stopping(AfterStop::Stopped));
    assert!(!s.core.status().ready);
    let fx = s.stopped(exit(None, Some(15)), "stopped on request");
    assert_eq!(brief(&fx), ["Persist", "Publish Exited"]);
    assert_eq!(s.core.state(), &State::Stopped);
    let saved = persisted(&fx);
    assert_eq!(
        (saved.pid, saved.start_time, saved.ended),
        (None, None, None)
    );
    let st = s.core.status();
    assert_eq!(st.pid, None);
    assert_eq!(st.message, "stopped on request");
    assert_eq!(st.last_exit.as_ref().unwrap().reason, "stopped on request");
    // Said again: nothing more to do.
    assert_eq!(brief(&s.desire("Stopped")), ["Publish Exited"]);
    // A new version of a running record changes nothing.
    let mut s = Sim::running(json!({}));
    assert_eq!(brief(&s.desire("Running")), ["Publish Starting"]);
}

#[test]
fn remove_stops_a_running_process_then_forgets_the_instance() {
    let mut s = Sim::running(json!({}));
    assert_eq!(
        brief(&s.command(Cmd::Remove)),
        ["Publish Stopping", "Stop: instance removed"]
    );
    let fx = s.stopped(code(0), "instance removed");
    assert_eq!(brief(&fx), ["Forget", "Quit"]);
    // Nothing running: forgotten at once.
    let mut s = Sim::running(json!({}));
    s.exit(code(1));
    assert_eq!(brief(&s.command(Cmd::Remove)), ["Forget", "Quit"]);
}

#[test]
fn shutdown_leaves_the_process_running_unless_told_to_stop_it() {
    let mut s = Sim::running(json!({}));
    let fx = s.command(Cmd::Shutdown { stop: false });
    assert_eq!(brief(&fx), ["Persist", "Quit"]);
    assert!(persisted(&fx).pid.is_some(), "kept for the next agent");
    assert!(matches!(s.core.state(), State::Running(_)));

    let mut s = Sim::running(json!({}));
    assert_eq!(
        brief(&s.command(Cmd::Shutdown { stop: true })),
        ["Publish Stopping", "Stop: agent shutting down"]
    );
    let fx = s.stopped(code(0), "agent shutting down");
    assert_eq!(brief(&fx), ["Persist", "Publish Exited", "Quit"]);
    assert_eq!(s.core.status().message, "stopped on request");

    // Not running: nothing to stop or save.
    for stop in [false, true] {
        let mut s = Sim::running(json!({}));
        s.exit(code(1));
        assert_eq!(brief(&s.command(Cmd::Shutdown { stop })), ["Quit"]);
    }
}

#[test]
fn without_a_readiness_probe_a_process_is_ready_after_a_grace() {
    let mut s = Sim::running(json!({"health": {"liveness": {"type": "tcp", "port": 8080}}}));
    assert_eq!(s.ready_deadline(), Some(READY_WITHOUT_PROBE));
    s.wait(READY_WITHOUT_PROBE);
    let fx = s.core.on_ready_deadline(s.now());
    assert_eq!(brief(&fx), ["Persist", "Publish Running"]);
    assert_eq!(persisted(&fx).ready_at, Some(s.now().wall));
    assert!(s.core.status().ready);
    assert_eq!(s.ready_deadline(), None);
    // A restart is not ready before its own grace.
    s.exit(code(1));
    s.restart();
    assert!(!s.core.status().ready);
    assert_eq!(s.core.status().ready_at, None);
    assert_eq!(s.ready_deadline(), Some(s.clock + READY_WITHOUT_PROBE));
}

#[test]
fn readiness_follows_the_probe_thresholds() {
    let probe = json!({"type": "tcp", "port": 8080, "successThreshold": 2, "failureThreshold": 3});
    let mut s = Sim::running(json!({"health": {"readiness": probe}}));
    assert_eq!(s.ready_deadline(), None);
    assert_eq!(
        brief(&s.probe(Which::Readiness, true)),
        ["Publish Starting"]
    );
    assert_eq!(
        brief(&s.probe(Which::Readiness, true)),
        ["Persist", "Publish Running"]
    );
    assert!(s.core.status().ready);
    // Fewer failures than the threshold: still ready, but counted and shown.
    s.probe(Which::Readiness, false);
    s.probe(Which::Readiness, false);
    let st = s.core.status();
    assert!(st.ready);
    assert_eq!(st.readiness_failures, 2);
    assert_eq!(st.probe_error, "readiness refused");
    s.probe(Which::Readiness, false);
    assert!(!s.core.status().ready);
    assert_eq!(s.phase(), Phase::Running);
    // Back after successThreshold passes in a row; ready_at stays the first one.
    s.probe(Which::Readiness, true);
    assert_eq!(s.core.status().readiness_failures, 0);
    assert!(!s.core.status().ready);
    assert_eq!(brief(&s.probe(Which::Readiness, true)), ["Publish Running"]);
    assert!(s.core.status().ready);
    assert_eq!(s.core.status().probe_error, "");
}

#[test]
fn liveness_failures_up_to_the_threshold_kill_and_restart() {
    let probe = json!({"type": "http", "port": 8080, "failureThreshold": 2});
    let mut s = Sim::running(json!({"health": {"liveness": probe}}));
    s.wait(secs(5));
    assert_eq!(
        brief(&s.probe(Which::Liveness, false)),
        ["Publish Starting"]
    );
    assert_eq!(s.core.status().probe_error, "liveness refused");
    // A pass in between starts the count again.
    s.probe(Which::Liveness, true);
    s.probe(Which::Liveness, false);
    assert_eq!(
        brief(&s.probe(Which::Liveness, false)),
        [
            "Publish Stopping",
            "Stop: liveness probe failed: liveness refused"
        ]
    );
    assert_eq!(
        s.core.state(),
        &State::Stopping(AfterStop::Restart { ran: secs(5) })
    );
    let fx = s.stopped(
        exit(None, Some(15)),
        "liveness probe failed: liveness refused",
    );
    assert_eq!(brief(&fx), ["Persist", "Publish Pending"]);
    let last = s.core.status().last_exit.clone().unwrap();
    assert!(last.reason.contains("liveness probe failed"), "{last}");
    assert_eq!(s.restart(), secs(1));
    assert_eq!(s.core.status().restarts, 1);
}

#[test]
fn a_liveness_kill_the_process_survives_with_code_0_is_no_failure() {
    // OnFailure: exiting 0 on SIGTERM makes the liveness kill look like a clean end.
    let probe = json!({"type": "tcp", "port": 8080, "failureThreshold": 1});
    let spec = json!({"restartPolicy": "OnFailure", "health": {"liveness": probe}});
    let mut s = Sim::running(spec);
    s.probe(Which::Liveness, false);
    s.stopped(code(0), "liveness probe failed: liveness refused");
    assert_eq!(s.core.state(), &State::Ended);
    assert_eq!(s.phase(), Phase::Exited);
}

#[test]
fn a_process_that_cannot_start_counts_as_exit_127() {
    let mut s = Sim::new(json!({}));
    let fx = s.core.start_failed("no such file", s.now());
    assert_eq!(brief(&fx), ["Persist", "Publish Pending"]);
    let last = s.core.status().last_exit.clone().unwrap();
    assert_eq!(
        (last.code, last.reason.as_str()),
        (Some(127), "cannot start: no such file")
    );
    assert_eq!(s.backoff_left(), secs(1));
    s.wait(secs(1));
    assert_eq!(brief(&s.due()), ["Publish Pending", "Start"]);
    // The restart fails too: counted, so the health gate sees the crash loop.
    let fx = s.core.start_failed("no such file", s.now());
    assert_eq!(brief(&fx), ["CountRestart", "Persist", "Publish Pending"]);
    assert_eq!(s.core.status().restarts, 1);

    let mut s = Sim::new(json!({"restartPolicy": "Never"}));
    s.core.start_failed("no such file", s.now());
    assert_eq!(s.phase(), Phase::Failed);
}

#[test]
fn an_update_while_backing_off_keeps_the_due_time() {
    let mut s = Sim::running(json!({}));
    s.exit(code(1));
    s.wait(Duration::from_millis(400));
    assert_eq!(brief(&s.desire("Running")), ["Publish Pending"]);
    assert_eq!(s.backoff_left(), Duration::from_millis(600));
    // Due meanwhile: starts at once.
    s.wait(secs(1));
    assert_eq!(brief(&s.desire("Running")), ["Publish Pending", "Start"]);
    assert_eq!(s.core.state(), &State::Launching);
}

/// What a previous agent left in the data dir.
fn saved() -> Persisted {
    Persisted {
        key: "default/api/i1".into(),
        pid: None,
        start_time: None,
        ports: vec![("http".into(), 8080)],
        restarts: 2,
        started_at: None,
        ready_at: None,
        record: None,
        ended: None,
        last_exit: None,
        sources: Default::default(),
    }
}

fn restored(spec: Value, desired: &str, p: Option<Persisted>, alive: bool) -> (Sim, Vec<Effect>) {
    let mut s = Sim::blank(spec, desired);
    let fx = s.core.restore(p, alive, s.now());
    (s, fx)
}

#[test]
fn restore_keeps_an_ended_instance_ended() {
    let p = Persisted {
        ended: Some(Phase::Failed),
        last_exit: Some(code(1)),
        ..saved()
    };
    let (s, fx) = restored(json!({}), "Running", Some(p), false);
    assert_eq!(brief(&fx), ["Publish Failed"]);
    assert_eq!(s.core.state(), &State::Ended);
    let st = s.core.status();
    assert_eq!((st.restarts, st.port), (2, Some(8080)));
}

#[test]
fn restore_between_runs_starts_at_once() {
    // After a crash (back-off when the agent went away): counted as a restart.
    let p = Persisted {
        last_exit: Some(code(1)),
        ..saved()
    };
    let (mut s, fx) = restored(json!({}), "Running", Some(p), false);
    assert_eq!(brief(&fx), ["Publish Pending", "Start"]);
    assert_eq!(brief(&s.start())[0], "CountRestart");
    assert_eq!(s.core.status().restarts, 3);
    // Never started before: not a restart.
    let (mut s, _) = restored(json!({}), "Running", Some(saved()), false);
    assert_eq!(brief(&s.start()), ["Persist", "Publish Starting"]);
}

#[test]
fn restore_adopts_a_process_that_is_still_the_same() {
    let was_ready = Timestamp::from_second(1_700_000_000).unwrap();
    let p = Persisted {
        pid: Some(7),
        start_time: Some(99),
        ready_at: Some(was_ready),
        ..saved()
    };
    let (s, fx) = restored(json!({}), "Running", Some(p.clone()), true);
    assert_eq!(
        brief(&fx),
        ["Adopt { pid: 7, start_time: 99 }", "Publish Running"]
    );
    let st = s.core.status();
    assert!(st.ready);
    assert_eq!((st.pid, st.ready_at), (Some(7), Some(was_ready)));
    assert_eq!(s.ready_deadline(), None);

    // Not ready before the agent went away: starting, with the usual grace.
    let p = Persisted {
        ready_at: None,
        ..p
    };
    let (s, _) = restored(json!({}), "Running", Some(p), true);
    assert_eq!(s.phase(), Phase::Starting);
    assert_eq!(s.ready_deadline(), Some(READY_WITHOUT_PROBE));
}

#[test]
fn restore_of_a_process_that_died_meanwhile_reaps_and_backs_off() {
    let p = Persisted {
        pid: Some(7),
        start_time: Some(99),
        ..saved()
    };
    let (s, fx) = restored(json!({}), "Running", Some(p), false);
    assert_eq!(
        brief(&fx),
        ["ReapLeftovers { pid: 7 }", "Persist", "Publish Pending"]
    );
    assert_eq!(s.backoff_left(), secs(1));
    let last = s.core.status().last_exit.clone().unwrap();
    assert_eq!(last.reason, "process ended while the agent was not running");
}

#[test]
fn a_record_that_says_stopped_with_nothing_running_is_reported_exited() {
    let (s, fx) = restored(json!({}), "Stopped", None, false);
    assert_eq!(brief(&fx), ["Publish Pending", "Publish Exited"]);
    assert_eq!(s.core.state(), &State::Stopped);
    assert_eq!(s.core.status().message, "stopped on request");
}

#[test]
fn an_adopted_process_whose_record_says_stopped_runs_until_told_again() {
    let p = Persisted {
        pid: Some(7),
        start_time: Some(99),
        ..saved()
    };
    let (mut s, _) = restored(json!({}), "Stopped", Some(p), true);
    assert!(matches!(s.core.state(), State::Running(_)));
    // When it ends, the back-off is reported, then that it is stopped.
    let fx = s.exit(code(1));
    assert_eq!(brief(&fx), ["Persist", "Publish Pending", "Publish Exited"]);
    assert_eq!(persisted(&fx).ended, None);
    assert_eq!(s.core.state(), &State::Stopped);
}

#[test]
fn usage_is_reported_while_running_and_only_when_it_moved() {
    let mut s = Sim::running(json!({}));
    let u = |mib: u64, cpu: f64| crate::model::Usage {
        memory_bytes: mib << 20,
        cpu_seconds: cpu,
    };
    assert_eq!(brief(&s.core.on_usage(u(50, 1.0))), ["Publish Starting"]);
    assert_eq!(s.core.status().usage, Some(u(50, 1.0)));
    assert!(s.core.on_usage(u(51, 1.05)).is_empty());
    assert_eq!(brief(&s.core.on_usage(u(60, 1.05))), ["Publish Starting"]);
    // Gone with the process.
    s.core.on_exit(code(1), s.now().at, s.now());
    assert_eq!(s.core.status().usage, None);
    assert!(s.core.on_usage(u(60, 2.0)).is_empty());
}
