//! One task per instance: starts (or adopts) its process, probes it, restarts it per
//! policy with crash-loop back-off, stops it on request, and reports its status.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::metrics::AgentMetrics;
use super::ports::Ports;
use super::process;
use super::reporter::{Report, Reports};
use super::state::{DataDir, Persisted};
use crate::model::{DesiredState, ExitInfo, InstanceRecord, InstanceStatus, Phase, RestartPolicy};
use crate::probe::{self, Which};

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

/// What every supervisor shares.
pub struct Shared {
    pub node: String,
    pub data: Arc<DataDir>,
    pub ports: Ports,
    pub metrics: Arc<AgentMetrics>,
    pub reports: Reports,
    pub backoff: Backoff,
}

pub enum Cmd {
    Update(Box<InstanceRecord>),
    /// The record is gone: stop the process, forget the instance, delete its status.
    Remove,
    /// The agent is exiting: stop the process only when `stop`.
    Shutdown {
        stop: bool,
    },
}

pub struct Handle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub task: tokio::task::JoinHandle<()>,
}

/// A process being supervised.
struct Proc {
    pid: u32,
    exit: oneshot::Receiver<ExitInfo>,
    probes: Vec<tokio::task::JoinHandle<()>>,
    probe_rx: mpsc::Receiver<(Which, Result<(), String>)>,
    up_since: Instant,
    ready_deadline: Option<Instant>,
    readiness_ok: u32,
    liveness_failures: u32,
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
    key: String,
    status_key: String,
    record: InstanceRecord,
    persisted: Option<Persisted>,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let file_name = key.replace('/', "_");
    let sup = Supervisor {
        status: InstanceStatus::pending(&record.id, &shared.node),
        log: super::logs::log_path(shared.data.root(), &file_name),
        shared,
        key,
        file_name,
        status_key,
        record,
        sent: None,
        ports: Vec::new(),
        start_time: None,
        crash_count: 0,
        restart_due: None,
        restart_pending: false,
        done: false,
    };
    let task = tokio::spawn(sup.run(rx, persisted));
    Handle { tx, task }
}

struct Supervisor {
    shared: Arc<Shared>,
    key: String,
    file_name: String,
    status_key: String,
    record: InstanceRecord,
    status: InstanceStatus,
    sent: Option<InstanceStatus>,
    ports: Vec<(String, u16)>,
    start_time: Option<u64>,
    log: std::path::PathBuf,
    /// Consecutive restarts without a healthy stretch in between (drives back-off).
    crash_count: u32,
    restart_due: Option<Instant>,
    /// The next start is a restart (counted in `restarts`).
    restart_pending: bool,
    /// Ended and not to be restarted until the record changes.
    done: bool,
}

impl Supervisor {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>, persisted: Option<Persisted>) {
        let mut proc = self.restore(persisted);
        self.publish();
        loop {
            if let Some(mut p) = proc.take() {
                let ready_at = p.ready_deadline;
                let ev = tokio::select! {
                    exit = &mut p.exit => Ev::Exit(exit.ok()),
                    Some((which, result)) = p.probe_rx.recv() => Ev::Probe(which, result),
                    _ = sleep_until_opt(ready_at), if ready_at.is_some() => Ev::Ready,
                    cmd = cmds.recv() => Ev::Cmd(cmd),
                };
                match ev {
                    Ev::Exit(exit) => {
                        let ran = p.up_since.elapsed();
                        let pid = p.pid;
                        drop(p);
                        // Children the instance left behind go with it.
                        process::kill_group(pid).await;
                        let info = exit.unwrap_or_else(|| unknown_exit("exit status lost"));
                        self.after_exit(info, ran);
                    }
                    Ev::Probe(which, result) => {
                        if let Some(reason) = self.on_probe(&mut p, which, result) {
                            let ran = p.up_since.elapsed();
                            let info = self.stop(p, &reason).await;
                            self.after_exit(info, ran);
                        } else {
                            proc = Some(p);
                        }
                    }
                    Ev::Ready => {
                        p.ready_deadline = None;
                        self.became_ready();
                        proc = Some(p);
                    }
                    Ev::Cmd(Some(Cmd::Update(r))) => {
                        self.record = *r;
                        if self.record.desired == DesiredState::Stopped {
                            let info = self.stop(p, "stopped on request").await;
                            self.ended_on_request(info);
                        } else {
                            proc = Some(p);
                        }
                    }
                    Ev::Cmd(Some(Cmd::Shutdown { stop })) => {
                        if stop {
                            let info = self.stop(p, "agent shutting down").await;
                            self.ended_on_request(info);
                            self.publish();
                        } else {
                            self.persist();
                        }
                        return;
                    }
                    Ev::Cmd(None | Some(Cmd::Remove)) => {
                        self.stop(p, "instance removed").await;
                        return self.forget();
                    }
                }
            } else if self.record.desired == DesiredState::Stopped || self.done {
                if self.record.desired == DesiredState::Stopped
                    && self.status.phase != Phase::Exited
                    && self.status.phase != Phase::Failed
                {
                    // Stopped while not running (e.g. waiting out crash back-off):
                    // nothing to stop, but the controller waits for this report.
                    self.status.phase = Phase::Exited;
                    self.status.ready = false;
                    self.status.message = "stopped on request".into();
                    self.restart_due = None;
                    self.publish();
                }
                match cmds.recv().await {
                    Some(Cmd::Update(r)) => {
                        let was_stopped = self.record.desired == DesiredState::Stopped;
                        self.record = *r;
                        if was_stopped && self.record.desired == DesiredState::Running {
                            self.done = false;
                            self.crash_count = 0;
                            self.restart_due = None;
                        }
                    }
                    Some(Cmd::Shutdown { .. }) => return,
                    None | Some(Cmd::Remove) => return self.forget(),
                }
            } else if let Some(due) = self.restart_due.filter(|d| *d > Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => { self.restart_due = None; }
                    cmd = cmds.recv() => match cmd {
                        Some(Cmd::Update(r)) => { self.record = *r; }
                        Some(Cmd::Shutdown { .. }) => return,
                        None | Some(Cmd::Remove) => return self.forget(),
                    },
                }
            } else {
                self.restart_due = None;
                match self.start() {
                    Ok(p) => proc = Some(p),
                    Err(e) => {
                        warn!(instance = %self.key, error = %e, "cannot start instance");
                        let mut info = unknown_exit(&format!("cannot start: {e}"));
                        info.code = Some(127);
                        self.after_exit(info, Duration::ZERO);
                    }
                }
            }
            self.publish();
        }
    }

    /// Re-adopts a process a previous agent started (same pid and start time), or
    /// reports that it died meanwhile; allocates ports for a new instance.
    fn restore(&mut self, persisted: Option<Persisted>) -> Option<Proc> {
        let p = persisted?;
        self.ports = p.ports.clone();
        self.shared.ports.claim(self.ports.iter().map(|(_, p)| *p));
        self.status.restarts = p.restarts;
        self.status.last_exit = p.last_exit.clone();
        self.set_ports();
        if let Some(phase) = p.ended {
            // Ended for good before the agent restarted: stays ended.
            self.done = true;
            self.status.phase = phase;
            return None;
        }
        let (Some(pid), Some(start)) = (p.pid, p.start_time) else {
            // Between runs (back-off) when the agent went away: the next start is a
            // restart.
            self.restart_pending = p.last_exit.is_some();
            return None;
        };
        if process::same_process(pid, start) {
            info!(instance = %self.key, pid, "adopted running process");
            self.start_time = Some(start);
            self.status.pid = Some(pid);
            self.status.started_at = p.started_at;
            self.status.ready_at = p.ready_at;
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                // Not our child: no waitpid. Poll /proc until the identity is gone.
                while process::same_process(pid, start) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = tx.send(unknown_exit("exit status unknown (adopted process)"));
            });
            let mut proc = self.supervise(pid, rx);
            if p.ready_at.is_some() {
                // It was ready before the agent restarted; keep saying so unless
                // probes now say otherwise, so a restart does not flap readiness.
                self.status.phase = Phase::Running;
                self.status.ready = true;
                proc.ready_deadline = None;
                proc.readiness_ok = u32::MAX / 2;
            } else {
                self.status.phase = Phase::Starting;
            }
            return Some(proc);
        }
        warn!(instance = %self.key, pid, "process ended while the agent was away");
        if process::start_time(pid).is_none() {
            // Its leader is gone; what is left of its group is ours to clean up. (A
            // live pid that is not ours would be an unrelated process: left alone.)
            tokio::spawn(process::kill_group(pid));
        }
        self.after_exit(
            unknown_exit("process ended while the agent was not running"),
            Duration::ZERO,
        );
        None
    }

    fn set_ports(&mut self) {
        self.status.port = self.ports.first().map(|(_, p)| *p);
        self.status.ports = self.ports.iter().cloned().collect();
    }

    fn start(&mut self) -> std::io::Result<Proc> {
        if self.ports.is_empty() && !self.record.spec.ports.is_empty() {
            self.ports = self.shared.ports.allocate(&self.record.spec.ports)?;
            self.set_ports();
        }
        let env = process::build_env(&self.record, &self.shared.node, &self.ports);
        let argv = process::build_argv(&self.record, &env);
        let mut child = process::spawn(
            &argv,
            &env,
            self.record.spec.working_dir.as_deref(),
            &self.log,
        )?;
        let pid = child.id().unwrap_or(0);
        if self.restart_pending {
            self.restart_pending = false;
            self.status.restarts += 1;
            self.shared.metrics.restarts.inc();
        }
        self.start_time = process::start_time(pid);
        info!(instance = %self.key, pid, restarts = self.status.restarts, "started process");
        self.status.phase = Phase::Starting;
        self.status.pid = Some(pid);
        self.status.ready = false;
        self.status.readiness_failures = 0;
        self.status.probe_error.clear();
        self.status.message.clear();
        self.status.started_at = Some(Timestamp::now());
        self.status.ready_at = None;
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
                Err(e) => unknown_exit(&format!("wait failed: {e}")),
            };
            let _ = tx.send(info);
        });
        let p = self.supervise(pid, rx);
        self.persist();
        Ok(p)
    }

    /// Starts the probes (or the no-probe readiness timer) for a running process.
    fn supervise(&mut self, pid: u32, exit: oneshot::Receiver<ExitInfo>) -> Proc {
        let (tx, probe_rx) = mpsc::channel(16);
        let target = probe::Target {
            first_port: self.status.port,
            ports: self.status.ports.clone(),
            env: process::build_env(&self.record, &self.shared.node, &self.ports),
            working_dir: self.record.spec.working_dir.clone(),
        };
        let health = &self.record.spec.health;
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
        let ready_deadline = health
            .readiness
            .is_none()
            .then(|| Instant::now() + READY_WITHOUT_PROBE);
        Proc {
            pid,
            exit,
            probes,
            probe_rx,
            up_since: Instant::now(),
            ready_deadline,
            readiness_ok: 0,
            liveness_failures: 0,
        }
    }

    /// Applies one probe result; returns a reason when liveness says to restart.
    fn on_probe(
        &mut self,
        p: &mut Proc,
        which: Which,
        result: Result<(), String>,
    ) -> Option<String> {
        let health = &self.record.spec.health;
        match (which, result) {
            (Which::Readiness, Ok(())) => {
                let threshold = health.readiness.as_ref().map_or(1, |r| r.success_threshold);
                p.readiness_ok = p.readiness_ok.saturating_add(1);
                self.status.readiness_failures = 0;
                if !self.status.ready && p.readiness_ok >= threshold {
                    self.became_ready();
                }
            }
            (Which::Readiness, Err(e)) => {
                let threshold = health.readiness.as_ref().map_or(1, |r| r.failure_threshold);
                p.readiness_ok = 0;
                self.status.readiness_failures += 1;
                self.status.probe_error = e;
                if self.status.ready && self.status.readiness_failures >= threshold {
                    self.status.ready = false;
                }
            }
            (Which::Liveness, Ok(())) => p.liveness_failures = 0,
            (Which::Liveness, Err(e)) => {
                let threshold = health.liveness.as_ref().map_or(1, |r| r.failure_threshold);
                p.liveness_failures += 1;
                self.status.probe_error = e.clone();
                if p.liveness_failures >= threshold {
                    return Some(format!("liveness probe failed: {e}"));
                }
            }
        }
        None
    }

    fn became_ready(&mut self) {
        self.status.ready = true;
        self.status.phase = Phase::Running;
        self.status.probe_error.clear();
        if self.status.ready_at.is_none() {
            self.status.ready_at = Some(Timestamp::now());
            self.persist();
        }
    }

    /// SIGTERM to the group, grace period, SIGKILL; returns how it ended.
    async fn stop(&mut self, mut p: Proc, reason: &str) -> ExitInfo {
        info!(instance = %self.key, pid = p.pid, reason, "stopping process");
        self.status.phase = Phase::Stopping;
        self.status.ready = false;
        self.publish();
        for probe in &p.probes {
            probe.abort();
        }
        process::stop_group(p.pid, self.record.spec.stop_grace_period).await;
        let mut info = tokio::time::timeout(Duration::from_secs(5), &mut p.exit)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| unknown_exit(""));
        info.reason = reason.to_string();
        info
    }

    fn ended_on_request(&mut self, info: ExitInfo) {
        self.clear_process();
        self.status.last_exit = Some(info);
        self.status.phase = Phase::Exited;
        self.status.message = "stopped on request".into();
        self.persist();
    }

    fn clear_process(&mut self) {
        self.status.pid = None;
        self.status.ready = false;
        self.status.readiness_failures = 0;
        self.start_time = None;
    }

    /// Decides what follows an exit: restart after back-off, or stay ended.
    fn after_exit(&mut self, info: ExitInfo, ran: Duration) {
        info!(instance = %self.key, exit = %info, "process ended");
        self.clear_process();
        let failed = info.code != Some(0);
        let restart = match self.record.spec.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if ran >= self.shared.backoff.reset {
            self.crash_count = 0;
        }
        if restart {
            self.crash_count += 1;
            let delay = self.shared.backoff.delay(self.crash_count);
            self.restart_due = Some(Instant::now() + delay);
            self.restart_pending = true;
            self.status.phase = Phase::Pending;
            self.status.message = format!(
                "back-off {} restarting after {info}",
                humantime::format_duration(delay)
            );
        } else {
            self.done = true;
            self.status.phase = if failed { Phase::Failed } else { Phase::Exited };
            self.status.message = format!("{info}; restartPolicy does not restart it");
        }
        self.status.last_exit = Some(info);
        self.persist();
    }

    /// The instance is gone for good: local state, ports and status key.
    fn forget(self) {
        self.shared.data.remove(&self.file_name);
        self.shared
            .ports
            .release(self.ports.iter().map(|(_, p)| *p));
        let _ = self
            .shared
            .reports
            .send(Report::Delete(self.status_key.clone()));
    }

    fn persist(&self) {
        let p = Persisted {
            key: self.key.clone(),
            pid: self.status.pid,
            start_time: self.start_time,
            ports: self.ports.clone(),
            restarts: self.status.restarts,
            started_at: self.status.started_at,
            ready_at: self.status.ready_at,
            record: Some(self.record.clone()),
            ended: self.done.then_some(self.status.phase),
            last_exit: self.status.last_exit.clone(),
        };
        if let Err(e) = self.shared.data.save(&self.file_name, &p) {
            warn!(instance = %self.key, error = %e, "cannot persist instance state");
        }
    }

    /// Hands the status to the reporter when it changed.
    fn publish(&mut self) {
        if self.sent.as_ref() != Some(&self.status) {
            self.sent = Some(self.status.clone());
            let _ = self.shared.reports.send(Report::Set(
                self.status_key.clone(),
                Box::new(self.status.clone()),
            ));
        }
    }
}

enum Ev {
    Exit(Option<ExitInfo>),
    Probe(Which, Result<(), String>),
    Ready,
    Cmd(Option<Cmd>),
}

fn unknown_exit(reason: &str) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        at: Timestamp::now(),
        reason: reason.to_string(),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
