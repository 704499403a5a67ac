//! Processes a test or benchmark starts, stopped on drop, and reapers for the
//! instance processes that outlive their agent by design.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::wait::wait_until;

/// A process this program started. Dropping it stops it: SIGKILL at once, or, with a
/// grace period, SIGTERM and up to that long to exit before SIGKILL.
pub struct Proc {
    name: String,
    child: Option<Child>,
    grace: Option<Duration>,
}

impl Proc {
    /// SIGKILLed on drop (tests: nothing to wait for).
    pub fn killed_on_drop(name: &str, child: Child) -> Proc {
        Proc {
            name: name.to_string(),
            child: Some(child),
            grace: None,
        }
    }

    /// Stopped on drop with SIGTERM and `grace` to exit before SIGKILL (benchmarks:
    /// an agent stops its instances, etcd syncs).
    pub fn stopped_on_drop(name: &str, child: Child, grace: Duration) -> Proc {
        Proc {
            name: name.to_string(),
            child: Some(child),
            grace: Some(grace),
        }
    }

    /// The pid, 0 once the process was stopped or reaped.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Started and not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to the grace period (none: not at all), SIGKILL; returns how
    /// long it took. Polls every 20 ms, so the time is that precise.
    pub fn stop(&mut self) -> Option<Duration> {
        let mut c = self.child.take()?;
        let grace = self.grace.unwrap_or_default();
        let started = Instant::now();
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = started + grace;
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => return Some(started.elapsed()),
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("{} did not stop within {grace:?}; killing it", self.name);
                    let _ = c.kill();
                    let _ = c.wait();
                    return Some(started.elapsed());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGTERM and wait for the process to exit (up to `within`; SIGKILL after that):
    /// its exit status, `None` when it had to be killed (or was gone already).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let status = wait_until(within, || c.try_wait().ok().flatten());
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status
    }

    /// Waits for the process to exit on its own (up to `within`).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let status = wait_until(within, || c.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        match self.grace {
            None => self.kill(),
            Some(_) => {
                self.stop();
            }
        }
    }
}

/// Kills, on drop, the instance processes that outlived their agent (by design they
/// do: instances run in their own session).
pub enum Reaper {
    /// The process groups the agents under this directory recorded in their data dirs
    /// (see [`reap_instances`]).
    Recorded(PathBuf),
    /// Every process with this marker in its command line (the last line of defence
    /// when the agents normally stop them all first); says how many there were.
    Marked(String),
}

impl Drop for Reaper {
    fn drop(&mut self) {
        match self {
            Reaper::Recorded(dir) => reap_instances(dir),
            Reaper::Marked(marker) => {
                let me = std::process::id() as i32;
                let left: Vec<i32> = pids_with_cmdline(marker)
                    .into_iter()
                    .filter(|pid| *pid != me)
                    .collect();
                if !left.is_empty() {
                    eprintln!(
                        "{} processes marked {marker} outlived their agent; killing them",
                        left.len()
                    );
                    for pid in left {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        }
    }
}

/// Kills the process groups of every instance that the agents under `dir` recorded
/// in their data dirs (`<agent data dir>/instances/*.json`: pid and start time), so a
/// test leaves no process behind even though instances outlive their agent.
pub fn reap_instances(dir: &Path) {
    let Ok(agents) = std::fs::read_dir(dir) else {
        return;
    };
    for agent in agents.flatten() {
        let Ok(files) = std::fs::read_dir(agent.path().join("instances")) else {
            continue;
        };
        for f in files.flatten() {
            let Some(v) = std::fs::read(f.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let (Some(pid), Some(start)) = (v["pid"].as_i64(), v["startTime"].as_u64()) else {
                continue;
            };
            if proc_start_time(pid as i32) == Some(start) {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Field 22 of /proc/<pid>/stat: when the process started (clock ticks after boot).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of every live process with `marker` in its command line (a test's services
/// put a unique marker there).
pub fn pids_with_cmdline(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(marker) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// A live instance process: its pid and what the agent gave it.
#[derive(Clone, Debug)]
pub struct InstanceProcess {
    pub pid: i32,
    pub id: String,
    pub node: String,
}

/// `RUNE_INSTANCE` and `RUNE_NODE` of a live process, if it still exists.
fn instance_env(pid: i32) -> Option<(Option<String>, String)> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut id = None;
    let mut node = String::new();
    for var in env.split(|b| *b == 0) {
        let var = String::from_utf8_lossy(var);
        if let Some(v) = var.strip_prefix("RUNE_INSTANCE=") {
            id = Some(v.to_string());
        } else if let Some(v) = var.strip_prefix("RUNE_NODE=") {
            node = v.to_string();
        }
    }
    Some((id, node))
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every live instance process carrying `marker`, with its `RUNE_INSTANCE` and
/// `RUNE_NODE`. A process whose parent belongs to the same instance is part of that
/// instance's tree (a shell, or pyenv's `python3` shim forking while it starts), not
/// a second copy of it, and is left out.
pub fn instance_processes(marker: &str) -> Vec<InstanceProcess> {
    pids_with_cmdline(marker)
        .into_iter()
        .filter_map(|pid| {
            // Gone between the two reads: not running any more.
            let (id, node) = instance_env(pid)?;
            if let (Some(id), Some(parent)) = (&id, parent_of(pid))
                && instance_env(parent).and_then(|(pid_id, _)| pid_id).as_ref() == Some(id)
            {
                return None;
            }
            Some(InstanceProcess {
                pid,
                id: id.unwrap_or_else(|| format!("<no RUNE_INSTANCE in pid {pid}>")),
                node,
            })
        })
        .collect()
}

/// Ids that more than one live instance process carries, with their pids.
pub fn duplicates(procs: &[InstanceProcess]) -> std::collections::BTreeMap<String, Vec<i32>> {
    let mut by_id: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for p in procs {
        by_id.entry(p.id.clone()).or_default().push(p.pid);
    }
    by_id.retain(|_, pids| pids.len() > 1);
    by_id
}
