//! One task per instance: starts (or adopts) its process, probes it, restarts it per
//! policy with crash-loop back-off, stops it on request, and reports its status.
//!
//! This file is the IO half: the task's loop waits for what the current state can
//! be woken by (the process's exit, a probe result, the ready or back-off deadline,
//! a command), asks `decide.rs` what that means, and carries out the answer —
//! spawning, signalling, probing, persisting, reporting. The decisions themselves
//! (restart policy, back-off, readiness, stop requests) live in `decide.rs`, pure and
//! unit-tested in `tests.rs`.

mod decide;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::cgroups::{self, Cgroups, InstanceCgroup};
use super::logs::Logs;
use super::metrics::{AgentMetrics, InstanceLabel};
use super::ports::Ports;
use super::process;
use super::reporter::{Report, Reports};
use super::revisions::Assigned;
use super::state::{DataDir, Persisted};
use super::{environment, identity};
use crate::model::{ExitInfo, InstanceRef, InstanceStatus};
use crate::probe::{self, Which};
pub use decide::{Backoff, Cmd, READY_WITHOUT_PROBE};
use decide::{Core, Effect, Now, State, unknown_exit};

/// What every supervisor shares.
pub struct Shared {
    pub node: String,
    pub data: Arc<DataDir>,
    pub logs: Arc<Logs>,
    pub ports: Ports,
    pub metrics: Arc<AgentMetrics>,
    pub reports: Reports,
    pub backoff: Backoff,
    /// Instance cgroups (tracking, and `resources` limits); None: not available
    /// here, and instances run as process groups only.
    pub cgroups: Option<Arc<Cgroups>>,
    /// What the instances ask for in all (`resources`), for the node record.
    pub requests: Arc<cgroups::Requests>,
    /// Configs and secrets: resolved at each start, written under `$RUNE_FILES`.
    pub sources: Arc<super::files::Sources>,
    /// The agent's variables instances get beyond the allowlist (`--pass-env`).
    pub pass_env: Vec<String>,
}

pub struct Handle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub task: tokio::task::JoinHandle<()>,
}

/// The IO side of a running process: its exit and its probes.
struct Proc {
    pid: u32,
    /// Its cgroup, and the cgroup's OOM kill count when it started.
    cgroup: Option<(InstanceCgroup, Option<u64>)>,
    exit: oneshot::Receiver<ExitInfo>,
    probes: Vec<tokio::task::JoinHandle<()>>,
    probe_rx: mpsc::Receiver<(Which, Result<(), String>)>,
    /// When to read the cgroup's usage next (with a cgroup only).
    usage_tick: tokio::time::Interval,
}

impl Drop for Proc {
    fn drop(&mut self) {
        for p in &self.probes {
            p.abort();
        }
    }
}

pub fn spawn(
    shared: Arc<Shared>,
    instance: InstanceRef,
    status_key: String,
    record: Assigned,
    persisted: Option<Persisted>,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let file_name = instance.file_name();
    // Held from here, before the task runs: a sweep must not pick the log of an
    // instance that is about to write to it.
    shared.logs.hold(&instance);
    shared
        .requests
        .set(&file_name, record.spec.resources.as_ref());
    let sup = Supervisor {
        log: shared.logs.path(&instance),
        core: Core::new(instance, &shared.node, record, shared.backoff),
        shared,
        file_name,
        status_key,
        sent: None,
        proc: None,
    };
    let task = tokio::spawn(sup.run(rx, persisted));
    Handle { tx, task }
}

/// The clocks, read once per event.
fn now() -> Now {
    Now {
        at: Instant::now(),
        wall: Timestamp::now(),
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    core: Core,
    file_name: String,
    status_key: String,
    log: PathBuf,
    /// The status last handed to the reporter.
    sent: Option<InstanceStatus>,
    /// While a process runs.
    proc: Option<Proc>,
}

/// What woke the loop.
enum Ev {
    /// The process ended (its status, if known), noticed at that instant.
    Exit(Option<ExitInfo>, Instant),
    Probe(Which, Result<(), String>),
    Ready,
    Due,
    Usage,
    Cmd(Option<Cmd>),
}

impl Supervisor {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>, persisted: Option<Persisted>) {
        self.shared.logs.writable(self.core.key()).await;
        let restored = self.restore(persisted);
        let mut going = self.carry_out(restored).await;
        while going {
            let decision = match self.next_event(&mut cmds).await {
                Ev::Exit(exit, seen) => self.exited(exit, seen).await,
                Ev::Probe(which, result) => {
                    super::events::probe_result(self.core.key(), &self.shared.node, which, &result);
                    self.core.on_probe(which, result, now())
                }
                Ev::Ready => self.core.on_ready_deadline(now()),
                Ev::Due => self.core.on_due(now()),
                Ev::Usage => self.usage(),
                Ev::Cmd(cmd) => self.core.on_command(cmd.unwrap_or(Cmd::Remove), now()),
            };
            going = self.carry_out(decision).await;
        }
    }

    /// Waits for what the current state can be woken by.
    async fn next_event(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) -> Ev {
        match self.core.state() {
            State::Running(run) => {
                let ready_at = run.ready_deadline;
                let p = self.proc.as_mut().expect("a running state has its process");
                tokio::select! {
                    exit = &mut p.exit => Ev::Exit(exit.ok(), Instant::now()),
                    Some((which, result)) = p.probe_rx.recv() => Ev::Probe(which, result),
                    _ = sleep_until_opt(ready_at), if ready_at.is_some() => Ev::Ready,
                    _ = p.usage_tick.tick(), if p.cgroup.is_some() => Ev::Usage,
                    cmd = cmds.recv() => Ev::Cmd(cmd),
                }
            }
            State::BackingOff { due } => {
                let due = *due;
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => Ev::Due,
                    cmd = cmds.recv() => Ev::Cmd(cmd),
                }
            }
            State::Ended | State::Stopped => Ev::Cmd(cmds.recv().await),
            State::Launching | State::Stopping(_) => {
                unreachable!("starts and stops are carried out before the loop waits")
            }
        }
    }

    /// Carries out a decision in order. A start's or a stop's outcome is the core's
    /// next decision, carried out before anything that followed it. Returns false
    /// once the task is over.
    async fn carry_out(&mut self, decision: Vec<Effect>) -> bool {
        let mut todo = VecDeque::from(decision);
        while let Some(effect) = todo.pop_front() {
            let next = match effect {
                Effect::Start => self.start().await,
                Effect::Stop { reason, delay } => self.stop(reason, delay).await,
                Effect::Quit => return false,
                // Both clear the instance's cgroup before anything else happens
                // to the instance (a start would create it again).
                Effect::ReapLeftovers { pid } => {
                    self.reap(pid).await;
                    continue;
                }
                Effect::Forget => {
                    self.forget().await;
                    continue;
                }
                other => {
                    self.apply(other);
                    continue;
                }
            };
            for e in next.into_iter().rev() {
                todo.push_front(e);
            }
        }
        true
    }

    /// An effect with no outcome for the core (`carry_out` takes the others).
    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Adopt { pid, start_time } => self.adopt(pid, start_time),
            Effect::CountRestart => {
                self.shared.metrics.restarts.inc();
            }
            Effect::Persist(p) => self.persist(&p),
            Effect::Publish(status) => self.publish(*status),
            Effect::Start
            | Effect::Stop { .. }
            | Effect::Quit
            | Effect::ReapLeftovers { .. }
            | Effect::Forget => {
                unreachable!("carried out by carry_out")
            }
        }
    }

    /// Claims the persisted ports and checks whether the persisted process is still
    /// the same one; the core decides the rest.
    fn restore(&mut self, persisted: Option<Persisted>) -> Vec<Effect> {
        let mut alive = false;
        if let Some(p) = &persisted {
            self.shared.ports.claim(p.ports.iter().map(|(_, n)| *n));
            alive = (p.pid.zip(p.start_time))
                .is_some_and(|(pid, start)| process::same_process(pid, start));
        }
        self.core.restore(persisted, alive, now())
    }

    /// The process ended on its own: children it left behind go with it.
    async fn exited(&mut self, exit: Option<ExitInfo>, seen: Instant) -> Vec<Effect> {
        let mut oom = false;
        if let Some(mut p) = self.proc.take() {
            let pid = p.pid;
            let cgroup = p.cgroup.take();
            drop(p);
            process::kill_group(pid).await;
            self.forget_usage();
            if let Some((cgroup, oom_before)) = cgroup {
                oom = cgroups::oom_killed(oom_before, cgroup.oom_kills());
                cgroup.kill_all().await;
                cgroup.remove().await;
            }
        }
        let mut exit = exit.unwrap_or_else(|| unknown_exit("exit status lost", Timestamp::now()));
        if oom {
            exit.reason = cgroups::OOM_KILLED.to_string();
        }
        self.log_exit(&exit);
        self.core.on_exit(exit, seen, now())
    }

    fn log_exit(&self, exit: &ExitInfo) {
        info!(instance = %self.core.key(), exit = %exit, "process ended");
    }

    async fn start(&mut self) -> Vec<Effect> {
        // Configs and secrets at their current versions, at every start: a restart
        // picks up what changed; a running process keeps what it started with.
        let spec = &self.core.record().spec;
        let namespace = self.core.key().service.namespace.clone();
        let resolved = match self.shared.sources.resolve(&namespace, spec).await {
            Ok(r) => r,
            Err(e) => {
                warn!(instance = %self.core.key(), error = %e, "cannot start instance");
                return self.core.start_failed(&e, now());
            }
        };
        self.core.set_sources(resolved.versions.clone());
        match self.launch(&resolved) {
            Ok(p) => {
                let pid = p.pid;
                self.proc = Some(p);
                let decision = self.core.started(pid, process::start_time(pid), now());
                let restarts = self.core.status().restarts;
                info!(instance = %self.core.key(), pid, restarts, "started process");
                decision
            }
            Err(e) => {
                warn!(instance = %self.core.key(), error = %e, "cannot start instance");
                let decision = self.core.start_failed(&e.to_string(), now());
                if let Some(exit) = &self.core.status().last_exit {
                    self.log_exit(exit);
                }
                decision
            }
        }
    }

    /// Allocates the ports (once per instance), spawns the process and starts waiting
    /// for its exit and probing it.
    fn launch(&mut self, resolved: &super::files::Resolved) -> std::io::Result<Proc> {
        let spec = &self.core.record().spec;
        // Who it runs as comes first: an unknown user or a refusal starts nothing.
        let who = identity::of_spec(spec.user.as_ref(), spec.group.as_ref())?;
        if self.core.ports().is_empty() && !spec.ports.is_empty() {
            let ports = self.shared.ports.allocate(&spec.ports)?;
            self.core.set_ports(ports);
        }
        let record = self.core.record();
        let mut env = process::build_env(record, &self.shared.node, self.core.ports());
        let mut files = None;
        if !record.spec.files.is_empty() {
            // The files belong to whom the process runs as.
            let owner = who.owner();
            let dir = self
                .shared
                .sources
                .materialise(&self.file_name, &record.spec, resolved, owner)
                .map_err(|e| std::io::Error::other(format!("cannot write $RUNE_FILES: {e}")))?;
            files = Some(dir.to_string_lossy().into_owned());
        }
        process::add_sources(&mut env, &resolved.env, files.as_deref());
        let argv = process::build_argv(record, &process::argv_vars(record, &env));
        let (cgroup, join) = match self.cgroup()? {
            Some(cg) => {
                let join = cg.create(record.spec.resources.as_ref())?;
                let oom_before = cg.oom_kills();
                (Some((cg, oom_before)), Some(join))
            }
            None => (None, None),
        };
        let spawned = process::spawn(
            &argv,
            &env,
            record.spec.working_dir.as_deref(),
            &self.log,
            join,
            &who,
            &self.shared.pass_env,
        );
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some((cg, _)) = &cgroup {
                    let cg = cg.clone();
                    tokio::spawn(async move { cg.remove().await });
                }
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitInfo {
                        code: s.code(),
                        signal: s.signal(),
                        at: Timestamp::now(),
                        reason: String::new(),
                    }
                }
                Err(e) => unknown_exit(&format!("wait failed: {e}"), Timestamp::now()),
            };
            let _ = tx.send(info);
        });
        // Exec probes see what the process was given: configs' and secrets' values
        // and `RUNE_FILES` included.
        let mut proc = self.supervise(pid, rx, env);
        proc.cgroup = cgroup;
        Ok(proc)
    }

    /// The instance's cgroup where this node has cgroups. A spec asking for limits
    /// this node cannot enforce does not start (never silently unlimited).
    fn cgroup(&self) -> std::io::Result<Option<InstanceCgroup>> {
        let resources = self.core.record().spec.resources.as_ref();
        let asked = resources.filter(|r| !r.is_empty());
        match (&self.shared.cgroups, asked) {
            (Some(cg), Some(r)) => {
                let missing = cg.controllers().missing(r);
                if !missing.is_empty() {
                    return Err(std::io::Error::other(format!(
                        "resources need the {} cgroup controller(s), not available on this node",
                        missing.join(", ")
                    )));
                }
                Ok(Some(cg.instance(&self.file_name)))
            }
            (Some(cg), None) => Ok(Some(cg.instance(&self.file_name))),
            (None, Some(_)) => Err(std::io::Error::other(
                "resources are set but this node has no usable cgroups to enforce them",
            )),
            (None, None) => Ok(None),
        }
    }

    /// Reads the process's cgroup: the /metrics gauges, and the status when it
    /// moved noticeably.
    fn usage(&mut self) -> Vec<Effect> {
        let Some((cg, _)) = self.proc.as_ref().and_then(|p| p.cgroup.as_ref()) else {
            return vec![];
        };
        let read = cg.usage();
        let Some(memory_bytes) = read.memory_bytes else {
            return vec![];
        };
        let usage = crate::model::Usage {
            memory_bytes,
            cpu_seconds: read.cpu_seconds.unwrap_or(0.0),
        };
        let label = self.usage_label();
        let m = &self.shared.metrics;
        m.instance_memory
            .get_or_create(&label)
            .set(i64::try_from(usage.memory_bytes).unwrap_or(i64::MAX));
        m.instance_cpu.get_or_create(&label).set(usage.cpu_seconds);
        self.core.on_usage(usage)
    }

    fn usage_label(&self) -> InstanceLabel {
        let key = self.core.key();
        InstanceLabel {
            namespace: key.service.namespace.clone(),
            service: key.service.name.clone(),
            instance: key.id.clone(),
        }
    }

    /// The process is gone: so are its usage gauges.
    fn forget_usage(&self) {
        let label = self.usage_label();
        self.shared.metrics.instance_memory.remove(&label);
        self.shared.metrics.instance_cpu.remove(&label);
    }

    /// The instance's cgroup if it exists (an adopted or dead process's).
    fn existing_cgroup(&self) -> Option<InstanceCgroup> {
        let cg = self.shared.cgroups.as_ref()?.instance(&self.file_name);
        cg.exists().then_some(cg)
    }

    /// Watches a process a previous agent started: not our child, so no waitpid;
    /// its exit is noticed by polling /proc until its identity is gone.
    fn adopt(&mut self, pid: u32, start: u64) {
        info!(instance = %self.core.key(), pid, "adopted running process");
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            while process::same_process(pid, start) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tx.send(unknown_exit(
                "exit status unknown (adopted process)",
                Timestamp::now(),
            ));
        });
        // What it was started with is read back from /proc (values of configs and
        // secrets are never kept on disk); failing that, what the record says.
        let env = process::environ(pid).unwrap_or_else(|| {
            process::build_env(self.core.record(), &self.shared.node, self.core.ports())
        });
        let mut proc = self.supervise(pid, rx, env);
        // Found again by the instance's id; OOM kills before adoption are not ours.
        proc.cgroup = self.existing_cgroup().map(|cg| {
            let before = cg.oom_kills();
            (cg, before)
        });
        self.proc = Some(proc);
    }

    async fn reap(&self, pid: u32) {
        warn!(instance = %self.core.key(), pid, "process ended while the agent was away");
        if process::start_time(pid).is_none() {
            // Its leader is gone; what is left of its group is ours to clean up. (A
            // live pid that is not ours would be an unrelated process: left alone.)
            tokio::spawn(process::kill_group(pid));
        }
        // Whatever is still in its cgroup is the instance's, whoever has the pid now.
        if let Some(cg) = self.existing_cgroup() {
            cg.kill_all().await;
            cg.remove().await;
        }
        if let Some(exit) = &self.core.status().last_exit {
            self.log_exit(exit);
        }
    }

    /// Starts the probes for a running process; `env` is the process's own (exec
    /// probes run with it).
    fn supervise(
        &self,
        pid: u32,
        exit: oneshot::Receiver<ExitInfo>,
        env: Vec<(String, String)>,
    ) -> Proc {
        let (tx, probe_rx) = mpsc::channel(16);
        let (status, record) = (self.core.status(), self.core.record());
        // Exec probes run as the instance does (an adopted one's user resolved
        // again: one gone meanwhile fails the probe, never runs it as the agent).
        let (user, base_env) =
            match identity::of_spec(record.spec.user.as_ref(), record.spec.group.as_ref()) {
                Ok(who) => {
                    let base = environment::base(std::env::vars_os(), &self.shared.pass_env, &who);
                    let user = if who.switch {
                        probe::RunAs::Instance(who)
                    } else {
                        probe::RunAs::Agent
                    };
                    (user, base)
                }
                Err(e) => (probe::RunAs::Unresolved(e.to_string()), Vec::new()),
            };
        let target = probe::Target {
            first_port: status.port,
            ports: status.ports.clone(),
            env,
            base_env,
            user,
            working_dir: record.spec.working_dir.clone(),
        };
        let health = &record.spec.health;
        let mut probes = Vec::new();
        for (which, p) in [
            (Which::Readiness, &health.readiness),
            (Which::Liveness, &health.liveness),
        ] {
            if let Some(p) = p {
                let observer: Arc<dyn probe::Observer> = self.shared.metrics.clone();
                probes.push(probe::spawn_loop(
                    which,
                    p.clone(),
                    target.clone(),
                    tx.clone(),
                    observer,
                ));
            }
        }
        let mut usage_tick = tokio::time::interval_at(Instant::now() + USAGE_FIRST, USAGE_EVERY);
        usage_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Proc {
            pid,
            cgroup: None,
            usage_tick,
            exit,
            probes,
            probe_rx,
        }
    }

    /// The shutdown delay, SIGTERM to the group, grace period, SIGKILL; the core
    /// hears how it ended.
    async fn stop(&mut self, reason: String, delay: Duration) -> Vec<Effect> {
        let mut exit = match self.proc.take() {
            Some(mut p) => {
                info!(instance = %self.core.key(), pid = p.pid, reason, "stopping process");
                for probe in &p.probes {
                    probe.abort();
                }
                if !delay.is_zero() {
                    info!(instance = %self.core.key(), ?delay, "shutdownDelay before SIGTERM");
                    tokio::time::sleep(delay).await;
                }
                let grace = self.core.record().spec.stop_grace_period;
                process::stop_group(p.pid, grace).await;
                self.forget_usage();
                // What left the group (setsid, daemonized) is still in the cgroup.
                if let Some((cg, _)) = p.cgroup.take() {
                    cg.kill_all().await;
                    cg.remove().await;
                }
                tokio::time::timeout(Duration::from_secs(5), &mut p.exit)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_else(|| unknown_exit("", Timestamp::now()))
            }
            None => unknown_exit("", Timestamp::now()),
        };
        exit.reason = reason;
        self.log_exit(&exit);
        self.core.stopped(exit, now())
    }

    /// The instance is gone for good: local state, ports and status key; its log is
    /// kept a while for post-mortems (see `logs/retention.rs`).
    async fn forget(&self) {
        self.shared.requests.set(&self.file_name, None);
        self.shared.sources.remove(&self.file_name);
        if let Some(cg) = self.existing_cgroup() {
            cg.kill_all().await;
            cg.remove().await;
        }
        self.shared.data.remove(&self.file_name);
        self.shared.logs.release(self.core.key());
        let ports = self.core.ports().iter().map(|(_, p)| *p);
        self.shared.ports.release(ports);
        let _ = self
            .shared
            .reports
            .send(Report::Delete(self.status_key.clone()));
    }

    fn persist(&self, p: &Persisted) {
        if let Err(e) = self.shared.data.save(&self.file_name, p) {
            warn!(instance = %self.core.key(), error = %e, "cannot persist instance state");
        }
    }

    /// Hands the status to the reporter when it changed.
    fn publish(&mut self, status: InstanceStatus) {
        if self.sent.as_ref() != Some(&status) {
            let key = self.core.key();
            crate::events::record_all(super::events::transitions(key, self.sent.as_ref(), &status));
            let report = Report::Set(self.status_key.clone(), Box::new(status.clone()));
            let _ = self.shared.reports.send(report);
            self.sent = Some(status);
        }
    }
}

/// The first usage reading after a start, then one every `USAGE_EVERY`: each may
/// write the status (when it moved noticeably), so not more often.
const USAGE_FIRST: Duration = Duration::from_secs(2);
const USAGE_EVERY: Duration = Duration::from_secs(10);

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
