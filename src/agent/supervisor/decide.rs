//! The supervisor's decisions, kept apart from its IO (as Nomad keeps its restart
//! tracker apart from the task runner): one explicit [`State`] per instance, and pure
//! functions that take an event — a start or an exit, a probe result, a command, a
//! timer — and return the [`Effect`]s that the IO loop in `mod.rs` carries out in
//! order. Nothing here reads a clock, spawns, signals or writes: time comes in as a
//! [`Now`] value (`Instant` is only a value here), so `tests.rs` can drive every
//! decision with a simulated clock.
//!
//! Effects carry snapshots (`Publish`, `Persist`): a decision may report a status
//! and then move on (e.g. report the back-off, then that the record says Stopped),
//! and each report goes out as it was when decided.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::agent::revisions::Assigned;
use crate::agent::state::Persisted;
use crate::model::InstanceRef;
use crate::model::{
    DesiredState, ExitInfo, InstanceRecord, InstanceStatus, Phase, Probe, RestartPolicy, Usage,
};
use crate::probe::Which;

/// Crash-loop back-off settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Running healthily this long forgives earlier crashes.
    pub reset: Duration,
}

impl Backoff {
    /// The wait before the `n`th consecutive restart (n ≥ 1): base, 2·base, 4·base, …
    /// up to max.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Without a readiness probe an instance is ready once it has stayed up this long.
pub const READY_WITHOUT_PROBE: Duration = Duration::from_millis(500);

/// What the agent's main loop tells a supervisor.
pub enum Cmd {
    Update(Box<InstanceRecord>),
    /// The record is gone: stop the process, forget the instance, delete its status.
    Remove,
    /// The agent is exiting: stop the process only when `stop`.
    Shutdown {
        stop: bool,
    },
}

/// One moment on both clocks: `at` for deadlines and durations, `wall` for the
/// timestamps a status reports.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: Timestamp,
}

/// Where an instance's supervision stands. The IO loop waits in `Running`,
/// `BackingOff`, `Ended` and `Stopped`; `Launching` and `Stopping` last only while
/// it carries out a `Start` or a `Stop`, whose outcome it hands straight back.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// No process, and nothing holds a start back: one is started at once.
    Launching,
    /// A process runs, started here or adopted from a previous agent.
    Running(Run),
    /// The process is being stopped; what follows depends on why.
    Stopping(AfterStop),
    /// Waiting out the crash-loop back-off; the next start is due at `due`.
    BackingOff { due: Instant },
    /// Ended, and the restart policy does not restart it. Only a record that says
    /// Stopped and then Running again starts it anew. (The data dir's `ended`.)
    Ended,
    /// The record says Stopped and no process runs: waits for it to say Running.
    Stopped,
}

/// What the core tracks of a running process.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// When it was started or adopted: how long it ran decides whether earlier
    /// crashes are forgiven.
    pub since: Instant,
    /// Without a readiness probe, when it counts as ready.
    pub ready_deadline: Option<Instant>,
    /// Consecutive readiness successes, toward `successThreshold`.
    readiness_ok: u32,
    /// Consecutive liveness failures, toward `failureThreshold`.
    liveness_failures: u32,
}

/// Why a process is being stopped, which says what comes after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterStop {
    /// Liveness gave up: the exit goes through the restart policy like any other.
    /// `ran`: how long the process had been up then.
    Restart { ran: Duration },
    /// The record says Stopped.
    Stopped,
    /// The agent exits and stops its instances.
    Shutdown,
    /// The record is gone.
    Removed,
}

/// What the IO loop does for a decision, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spawn the process; its outcome goes back through [`Core::started`] or
    /// [`Core::start_failed`].
    Start,
    /// Watch and probe a process a previous agent started (not our child).
    Adopt { pid: u32, start_time: u64 },
    /// Wait `delay` (the spec's `shutdownDelay`, while the process still serves
    /// requests that were on their way), then SIGTERM to the group, the grace
    /// period, SIGKILL; how it ended (with `reason`) goes back through
    /// [`Core::stopped`].
    Stop { reason: String, delay: Duration },
    /// The process died while the agent was away: kill what is left of its group,
    /// unless its pid now belongs to an unrelated process.
    ReapLeftovers { pid: u32 },
    /// One more restart for the agent's metrics.
    CountRestart,
    /// Save this in the data dir, for adoption by the next agent.
    Persist(Box<Persisted>),
    /// Hand this status to the reporter, unless it is the one handed over last.
    Publish(Box<InstanceStatus>),
    /// Gone for good: delete the local state, release the ports, delete the status.
    Forget,
    /// The task ends.
    Quit,
}

/// `reason` as an exit whose code and signal are not known.
pub fn unknown_exit(reason: &str, at: Timestamp) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        at,
        reason: reason.to_string(),
    }
}

/// Whether `policy` restarts a process that ended so.
fn restarts(policy: RestartPolicy, failed: bool) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Never => false,
    }
}

/// One instance's supervision state and the status it reports.
pub struct Core {
    instance: InstanceRef,
    record: Assigned,
    status: InstanceStatus,
    state: State,
    backoff: Backoff,
    ports: Vec<(String, u16)>,
    /// With the pid, the process's identity across agent restarts (pids recycle).
    start_time: Option<u64>,
    /// Consecutive restarts without a healthy stretch in between (drives back-off).
    crash_count: u32,
    /// The next start is a restart (counted in `restarts`).
    restart_pending: bool,
}

impl Core {
    pub fn new(instance: InstanceRef, node: &str, record: Assigned, backoff: Backoff) -> Core {
        Core {
            instance,
            status: InstanceStatus::pending(&record.id, node),
            record,
            state: State::Launching,
            backoff,
            ports: Vec::new(),
            start_time: None,
            crash_count: 0,
            restart_pending: false,
        }
    }

    pub fn key(&self) -> &InstanceRef {
        &self.instance
    }

    pub fn record(&self) -> &Assigned {
        &self.record
    }

    pub fn status(&self) -> &InstanceStatus {
        &self.status
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn ports(&self) -> &[(String, u16)] {
        &self.ports
    }

    /// The instance's ports (allocated once, kept across restarts).
    pub fn set_ports(&mut self, ports: Vec<(String, u16)>) {
        self.status.port = ports.first().map(|(_, p)| *p);
        self.status.ports = ports.iter().cloned().collect();
        self.ports = ports;
    }

    /// The configs' and secrets' versions the next process starts with, reported
    /// from its start on (set just before `started`).
    pub fn set_sources(&mut self, sources: std::collections::BTreeMap<String, u64>) {
        self.status.sources = sources;
    }

    /// The first decision: takes up what a previous agent persisted. `alive`: the
    /// persisted pid is still the process started at the persisted start time.
    pub fn restore(&mut self, persisted: Option<Persisted>, alive: bool, now: Now) -> Vec<Effect> {
        let Some(p) = persisted else {
            return self.conclude(vec![], now);
        };
        self.set_ports(p.ports.clone());
        self.status.restarts = p.restarts;
        self.status.last_exit = p.last_exit.clone();
        self.status.sources = p.sources.clone();
        if let Some(phase) = p.ended {
            // Ended for good before the agent restarted: stays ended.
            self.state = State::Ended;
            self.status.phase = phase;
            return self.conclude(vec![], now);
        }
        let (Some(pid), Some(start)) = (p.pid, p.start_time) else {
            // Between runs (back-off) when the agent went away: the next start is a
            // restart.
            self.restart_pending = p.last_exit.is_some();
            return self.conclude(vec![], now);
        };
        if alive {
            return self.adopt(pid, start, &p, now);
        }
        let mut fx = vec![Effect::ReapLeftovers { pid }];
        let exit = unknown_exit("process ended while the agent was not running", now.wall);
        fx.extend(self.after_exit(exit, Duration::ZERO, now));
        fx
    }

    fn adopt(&mut self, pid: u32, start: u64, p: &Persisted, now: Now) -> Vec<Effect> {
        self.start_time = Some(start);
        self.status.pid = Some(pid);
        self.status.started_at = p.started_at;
        self.status.ready_at = p.ready_at;
        let mut run = self.fresh_run(now);
        if p.ready_at.is_some() {
            // It was ready before the agent restarted; keep saying so unless probes
            // now say otherwise, so a restart does not flap readiness.
            self.status.phase = Phase::Running;
            self.status.ready = true;
            run.ready_deadline = None;
            run.readiness_ok = u32::MAX / 2;
        } else {
            self.status.phase = Phase::Starting;
        }
        self.state = State::Running(run);
        self.conclude(
            vec![Effect::Adopt {
                pid,
                start_time: start,
            }],
            now,
        )
    }

    fn fresh_run(&self, now: Now) -> Run {
        let no_probe = self.record.spec.health.readiness.is_none();
        Run {
            since: now.at,
            ready_deadline: no_probe.then(|| now.at + READY_WITHOUT_PROBE),
            readiness_ok: 0,
            liveness_failures: 0,
        }
    }

    /// The process was spawned: `pid`, and its start time from /proc.
    pub fn started(&mut self, pid: u32, start_time: Option<u64>, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.restart_pending {
            self.restart_pending = false;
            self.status.restarts += 1;
            fx.push(Effect::CountRestart);
        }
        self.start_time = start_time;
        let s = &mut self.status;
        s.phase = Phase::Starting;
        s.pid = Some(pid);
        s.ready = false;
        s.readiness_failures = 0;
        s.probe_error.clear();
        s.message.clear();
        s.started_at = Some(now.wall);
        s.ready_at = None;
        self.state = State::Running(self.fresh_run(now));
        fx.push(self.persist());
        fx.push(self.publish());
        fx
    }

    /// The process could not be spawned (no such program, an unknown `user:`):
    /// counts as an exit with code 127. A restart that fails so is still a restart,
    /// counted as `sh -c` of a missing program would be: the controller's health
    /// gate then sees an instance that exits before it is ready.
    pub fn start_failed(&mut self, error: &str, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.restart_pending {
            self.restart_pending = false;
            self.status.restarts += 1;
            fx.push(Effect::CountRestart);
        }
        let mut exit = unknown_exit(&format!("cannot start: {error}"), now.wall);
        exit.code = Some(127);
        fx.extend(self.after_exit(exit, Duration::ZERO, now));
        fx
    }

    /// The process ended on its own (what it left of its group is killed already).
    /// `seen`: when the exit was noticed, which ends how long it ran; `now`: after
    /// that clean-up, where the back-off starts.
    pub fn on_exit(&mut self, exit: ExitInfo, seen: Instant, now: Now) -> Vec<Effect> {
        let State::Running(run) = &self.state else {
            return vec![];
        };
        let ran = seen.saturating_duration_since(run.since);
        self.after_exit(exit, ran, now)
    }

    /// The stop is over; `exit` is how the process ended.
    pub fn stopped(&mut self, exit: ExitInfo, now: Now) -> Vec<Effect> {
        let State::Stopping(then) = self.state else {
            return vec![];
        };
        match then {
            AfterStop::Restart { ran } => self.after_exit(exit, ran, now),
            AfterStop::Stopped => {
                self.ended_on_request(exit);
                self.conclude(vec![self.persist()], now)
            }
            AfterStop::Shutdown => {
                self.ended_on_request(exit);
                vec![self.persist(), self.publish(), Effect::Quit]
            }
            AfterStop::Removed => vec![Effect::Forget, Effect::Quit],
        }
    }

    /// The back-off is over: start again.
    pub fn on_due(&mut self, now: Now) -> Vec<Effect> {
        if !matches!(self.state, State::BackingOff { .. }) {
            return vec![];
        }
        self.state = State::Launching;
        self.conclude(vec![], now)
    }

    /// Without a readiness probe: the process stayed up long enough to be ready.
    pub fn on_ready_deadline(&mut self, now: Now) -> Vec<Effect> {
        let State::Running(run) = &mut self.state else {
            return vec![];
        };
        run.ready_deadline = None;
        let mut fx = self.became_ready(now);
        fx.push(self.publish());
        fx
    }

    /// One probe result. Liveness failing `failureThreshold` times in a row stops the
    /// process, to be restarted per policy.
    pub fn on_probe(&mut self, which: Which, result: Result<(), String>, now: Now) -> Vec<Effect> {
        if !matches!(self.state, State::Running(_)) {
            return vec![];
        }
        let mut fx = match (which, result) {
            (Which::Readiness, Ok(())) => self.readiness_passed(now),
            (Which::Readiness, Err(e)) => self.readiness_failed(e),
            (Which::Liveness, Ok(())) => self.liveness_passed(),
            (Which::Liveness, Err(e)) => return self.liveness_failed(e, now),
        };
        fx.push(self.publish());
        fx
    }

    /// A threshold of the record's `which` probe (the current record's: an update
    /// applies at once); 1 without that probe.
    fn threshold(&self, which: Which, field: fn(&Probe) -> u32) -> u32 {
        let health = &self.record.spec.health;
        let probe = match which {
            Which::Readiness => &health.readiness,
            Which::Liveness => &health.liveness,
        };
        probe.as_ref().map_or(1, field)
    }

    fn run_mut(&mut self) -> Option<&mut Run> {
        match &mut self.state {
            State::Running(run) => Some(run),
            _ => None,
        }
    }

    fn readiness_passed(&mut self, now: Now) -> Vec<Effect> {
        let threshold = self.threshold(Which::Readiness, |p| p.success_threshold);
        let Some(run) = self.run_mut() else {
            return vec![];
        };
        run.readiness_ok = run.readiness_ok.saturating_add(1);
        let passed = run.readiness_ok >= threshold;
        self.status.readiness_failures = 0;
        if !self.status.ready && passed {
            return self.became_ready(now);
        }
        vec![]
    }

    fn readiness_failed(&mut self, error: String) -> Vec<Effect> {
        let threshold = self.threshold(Which::Readiness, |p| p.failure_threshold);
        if let Some(run) = self.run_mut() {
            run.readiness_ok = 0;
        }
        self.status.readiness_failures += 1;
        self.status.probe_error = error;
        if self.status.ready && self.status.readiness_failures >= threshold {
            self.status.ready = false;
        }
        vec![]
    }

    fn liveness_passed(&mut self) -> Vec<Effect> {
        if let Some(run) = self.run_mut() {
            run.liveness_failures = 0;
        }
        vec![]
    }

    fn liveness_failed(&mut self, error: String, now: Now) -> Vec<Effect> {
        let threshold = self.threshold(Which::Liveness, |p| p.failure_threshold);
        self.status.probe_error = error.clone();
        let Some(run) = self.run_mut() else {
            return vec![];
        };
        run.liveness_failures += 1;
        if run.liveness_failures < threshold {
            return vec![self.publish()];
        }
        let ran = now.at.saturating_duration_since(run.since);
        self.stop(
            &format!("liveness probe failed: {error}"),
            AfterStop::Restart { ran },
        )
    }

    fn became_ready(&mut self, now: Now) -> Vec<Effect> {
        self.status.ready = true;
        self.status.phase = Phase::Running;
        self.status.probe_error.clear();
        if self.status.ready_at.is_some() {
            return vec![];
        }
        self.status.ready_at = Some(now.wall);
        vec![self.persist()]
    }

    /// A reading of the running process's cgroup: reported when it moved
    /// noticeably since the last report (the IO loop reads at most every 10 s).
    pub fn on_usage(&mut self, usage: Usage) -> Vec<Effect> {
        if !matches!(self.state, State::Running(_)) {
            return vec![];
        }
        if self
            .status
            .usage
            .is_some_and(|last| !last.changed_noticeably(&usage))
        {
            return vec![];
        }
        self.status.usage = Some(usage);
        vec![self.publish()]
    }

    /// A command from the agent's main loop. A closed channel counts as `Remove`.
    pub fn on_command(&mut self, cmd: Cmd, now: Now) -> Vec<Effect> {
        let running = matches!(self.state, State::Running(_));
        match cmd {
            Cmd::Update(record) => self.update(*record, now),
            Cmd::Remove if running => self.stop("instance removed", AfterStop::Removed),
            Cmd::Remove => vec![Effect::Forget, Effect::Quit],
            Cmd::Shutdown { stop: true } if running => {
                self.stop("agent shutting down", AfterStop::Shutdown)
            }
            // Left running for the next agent to adopt.
            Cmd::Shutdown { stop: false } if running => vec![self.persist(), Effect::Quit],
            Cmd::Shutdown { .. } => vec![Effect::Quit],
        }
    }

    /// A new version of the record. Only `desired` matters here: the spec of a running
    /// process is not applied to it (the controller replaces instances for that).
    fn update(&mut self, record: InstanceRecord, now: Now) -> Vec<Effect> {
        let wanted_again = self.state == State::Stopped && record.desired == DesiredState::Running;
        self.record.record = record;
        if matches!(self.state, State::Running(_)) {
            if self.record.desired == DesiredState::Stopped {
                return self.stop("stopped on request", AfterStop::Stopped);
            }
            return vec![self.publish()];
        }
        if wanted_again {
            // A fresh start: earlier crashes are forgiven.
            self.crash_count = 0;
            self.state = State::Launching;
        }
        self.conclude(vec![], now)
    }

    /// Begins a stop; the status says Stopping before the signals go out.
    /// An instance whose record says Stopped left the endpoints already (the
    /// controller drops it first): it gets `shutdownDelay` before its SIGTERM, for
    /// load balancers to catch up, and says so. No other stop waits: a record
    /// that is gone (also the self-fence's stop, whose deadline the node handover
    /// counts on), a liveness kill, the agent's own shutdown.
    fn stop(&mut self, reason: &str, then: AfterStop) -> Vec<Effect> {
        self.state = State::Stopping(then);
        self.status.phase = Phase::Stopping;
        self.status.ready = false;
        let delay = match then {
            AfterStop::Stopped => self.record.spec.shutdown_delay,
            AfterStop::Removed | AfterStop::Restart { .. } | AfterStop::Shutdown => Duration::ZERO,
        };
        if !delay.is_zero() {
            self.status.message = format!(
                "out of the endpoints; SIGTERM after shutdownDelay {}",
                humantime::format_duration(delay)
            );
        }
        vec![
            self.publish(),
            Effect::Stop {
                reason: reason.to_string(),
                delay,
            },
        ]
    }

    fn ended_on_request(&mut self, exit: ExitInfo) {
        self.state = State::Stopped;
        self.clear_process();
        self.status.last_exit = Some(exit);
        self.status.phase = Phase::Exited;
        self.status.message = "stopped on request".into();
    }

    fn clear_process(&mut self) {
        self.status.pid = None;
        self.status.usage = None;
        self.status.ready = false;
        self.status.readiness_failures = 0;
        self.start_time = None;
    }

    /// Restart policy and crash-loop back-off: whether and when the process starts
    /// again after it ended.
    fn after_exit(&mut self, exit: ExitInfo, ran: Duration, now: Now) -> Vec<Effect> {
        self.clear_process();
        let failed = exit.code != Some(0);
        if ran >= self.backoff.reset {
            self.crash_count = 0;
        }
        if restarts(self.record.spec.restart_policy, failed) {
            self.crash_count += 1;
            let delay = self.backoff.delay(self.crash_count);
            self.state = State::BackingOff {
                due: now.at + delay,
            };
            self.restart_pending = true;
            self.status.phase = Phase::Pending;
            self.status.message = format!(
                "back-off {} restarting after {exit}",
                humantime::format_duration(delay)
            );
        } else {
            self.state = State::Ended;
            self.status.phase = if failed { Phase::Failed } else { Phase::Exited };
            self.status.message = format!("{exit}; restartPolicy does not restart it");
        }
        self.status.last_exit = Some(exit);
        self.conclude(vec![self.persist()], now)
    }

    /// Ends a decision: the status goes out, then, when no process runs, what the
    /// state calls for at once (see `idle`).
    fn conclude(&mut self, mut fx: Vec<Effect>, now: Now) -> Vec<Effect> {
        fx.push(self.publish());
        fx.extend(self.idle(now));
        fx
    }

    /// With no process running: a record that says Stopped is reported stopped, and a
    /// start that is due happens now.
    fn idle(&mut self, now: Now) -> Vec<Effect> {
        match self.state {
            State::Running(_) | State::Stopping(_) => vec![],
            _ if self.record.desired == DesiredState::Stopped => self.report_stopped(),
            State::Launching => vec![Effect::Start],
            State::BackingOff { due } if due <= now.at => {
                self.state = State::Launching;
                vec![Effect::Start]
            }
            State::BackingOff { .. } | State::Ended | State::Stopped => vec![],
        }
    }

    /// Stopped while not running (e.g. waiting out crash back-off): nothing to stop,
    /// but the controller waits for this report.
    fn report_stopped(&mut self) -> Vec<Effect> {
        self.state = State::Stopped;
        if matches!(self.status.phase, Phase::Exited | Phase::Failed) {
            return vec![];
        }
        self.status.phase = Phase::Exited;
        self.status.ready = false;
        self.status.message = "stopped on request".into();
        vec![self.publish()]
    }

    fn publish(&self) -> Effect {
        Effect::Publish(Box::new(self.status.clone()))
    }

    fn persist(&self) -> Effect {
        let s = &self.status;
        Effect::Persist(Box::new(Persisted {
            key: self.instance.to_string(),
            pid: s.pid,
            start_time: self.start_time,
            ports: self.ports.clone(),
            restarts: s.restarts,
            started_at: s.started_at,
            ready_at: s.ready_at,
            record: Some(self.record.clone()),
            ended: (self.state == State::Ended).then_some(s.phase),
            last_exit: s.last_exit.clone(),
            sources: s.sources.clone(),
        }))
    }
}
