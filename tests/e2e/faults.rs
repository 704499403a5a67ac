//! Fault injection through the real binaries: etcd paused and restarted, leaders
//! killed and paused, an agent killed mid scale-down, an agent cut off from etcd in a
//! network namespace, and concurrent scales.
//!
//! Every scenario checks the invariants **continuously** — a [`Checker`] thread
//! samples every 200 ms while the fault plays out — **and at the end** ([`finish`]):
//! - no instance id runs twice (`RUNE_INSTANCE` in `/proc/<pid>/environ` of the
//!   processes that carry the scenario's marker, counted per id);
//! - no process lacks a record (every live instance's id has an instance record in
//!   etcd; while the fault plays out a record may have been gone for [`SETTLE`]);
//! - after convergence the process count equals `currentReplicas` (and the spec's
//!   scale, `desiredReplicas` and `readyReplicas`);
//! - a waiting CLI's exit code matches its operation's recorded outcome
//!   (Succeeded → 0, RolledBack/Failed → 1, Superseded or never taken up → 4);
//! - no daemon logged a panic.
//!
//! Timings: agents and controllers get the settings the docs prescribe for the
//! fault at hand (see [`outage_controller`], [`FENCE_AGENT`]): a controller's
//! node-lost grace always exceeds the agents' self-fence window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use rune::store::{EtcdArgs, Store};

use crate::harness::{Daemon, World};
use crate::support::etcd::EtcdConfig;
use crate::support::netns::NetNs;
use crate::support::procs::{
    InstanceProcess as Running, duplicates, instance_processes as running,
};
use crate::support::wait::{eventually, wait_until};
use crate::system::{deploy, fast_controller_with_grace, instances, service};

/// How often the checker samples.
const SAMPLE: Duration = Duration::from_millis(200);
/// How long a live process may lack its record while the fault plays out: the
/// record is removed once the agent reported the process ended, so the sample of
/// processes and the listing of records may straddle that.
const SETTLE: Duration = Duration::from_secs(3);
/// How long an etcd pause lasts (scenarios 1 and 2): shorter than the agents'
/// self-fence window, so it must stop nothing.
const PAUSE: Duration = Duration::from_secs(20);

/// Controllers for etcd outages: fast failover; a node-lost grace (70s) above the
/// agents' default self-fence window (60s), as the docs require.
fn outage_controller() -> Vec<&'static str> {
    fast_controller_with_grace("70s")
}
/// Agents for etcd outages: the default self-fence window (60s), far longer than
/// the outage.
const OUTAGE_AGENT: &[&str] = &["--lease-ttl", "3s"];

/// Controllers where nodes may really be lost: the grace (10s) exceeds the agents'
/// self-fence window plus the services' stop grace plus the lease TTL (6 + 1 + 2).
fn fence_controller() -> Vec<&'static str> {
    fast_controller_with_grace("10s")
}
const FENCE_AGENT: &[&str] = &["--lease-ttl", "2s", "--self-fence-after", "6s"];
const FENCE_WINDOW: Duration = Duration::from_secs(6);
const STOP_GRACE: Duration = Duration::from_secs(1);
const NODE_LOST_GRACE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// The system under test

/// The scenario's marker: a `sleep` length unique to the world and the service
/// (`100000.<pid><world><service>`, fixed width, so no marker contains another).
///
/// Instances run `sleep` itself, not python: `python3` here is a pyenv shim whose
/// bash forks subshells while it starts, and those carry the instance's command
/// line and environment for a moment (two processes with one `RUNE_INSTANCE`).
fn marker(w: &World, svc: &str) -> String {
    let mut parts = w.prefix.trim_start_matches('/').split('-').skip(1);
    let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap();
    let (pid, n) = (num(), num());
    let s = svc.bytes().map(u64::from).sum::<u64>() % 1000;
    format!("100000.{pid:07}{n:05}{s:03}")
}

/// A service of `sleep` processes (one process per instance, dead at SIGTERM)
/// whose length is the scenario's marker.
fn service_file(w: &World, name: &str, scale: u32) -> PathBuf {
    let m = marker(w, name);
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [\"sleep\", \"{m}\"]\n  stopGracePeriod: {}s\n",
            STOP_GRACE.as_secs()
        ),
    )
}

/// An agent, waited for until its node is registered.
fn agent_with(w: &World, node: &str, flags: &[&str]) -> Daemon {
    let a = w.agent(node, flags);
    registered(w, node);
    a
}

fn registered(w: &World, node: &str) {
    eventually(
        &format!("node {node} registered"),
        Duration::from_secs(60),
        || w.etcd.get(&w.key(&format!("nodes/{node}"))).map(|_| ()),
    );
}

/// A controller, waited for until it leads.
fn leading(w: &World, name: &str, flags: &[&str]) -> Daemon {
    let c = w.controller(name, flags);
    eventually(&format!("{name} leads"), Duration::from_secs(30), || {
        c.logs().contains("became leader").then_some(())
    });
    c
}

fn is_leader(c: &Daemon) -> bool {
    c.http_get("/metrics")
        .is_some_and(|(_, m)| m.lines().any(|l| l == "rune_controller_is_leader 1"))
}

/// The one controller of `cs` that leads now, if exactly one does.
fn leader_of(cs: &[Daemon]) -> Option<usize> {
    let leaders: Vec<usize> = (0..cs.len()).filter(|i| is_leader(&cs[*i])).collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// The service's operation in progress or last: (id, phase, step).
fn operation(w: &World, svc: &str) -> (String, String, u64) {
    let op = &service(w, svc)["status"]["operation"];
    (
        op["id"].as_str().unwrap_or_default().to_string(),
        op["phase"].as_str().unwrap_or_default().to_string(),
        op["step"].as_u64().unwrap_or(0),
    )
}

/// Waits until the operation `cli` wrote runs step `n` or later, and says so:
/// panics when it ended first (the fault would not land mid-operation).
#[track_caller]
fn wait_step(w: &World, svc: &str, cli: &Cli, n: u64) -> u64 {
    let id = eventually(
        &format!("{}: its operation id", cli.label),
        Duration::from_secs(30),
        || cli.op_id(),
    );
    let (phase, step) = eventually(
        &format!("{svc}: operation {id} at step {n}"),
        Duration::from_secs(60),
        || {
            let (now, phase, step) = operation(w, svc);
            (now == id && (step >= n || terminal(&phase))).then_some((phase, step))
        },
    );
    assert!(
        !terminal(&phase),
        "operation {id} ended ({phase}) before step {n}: the fault would not land mid-operation"
    );
    step
}

fn terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "RolledBack" | "Superseded")
}

/// SIGSTOP etcd, hold the fault for `hold`, SIGCONT.
fn pause_etcd(w: &World, hold: Duration) {
    let pid = Pid::from_raw(w.etcd.pid());
    kill(pid, Signal::SIGSTOP).unwrap();
    eprintln!("etcd paused for {hold:?}");
    std::thread::sleep(hold);
    kill(pid, Signal::SIGCONT).unwrap();
    eprintln!("etcd resumed");
}

/// A tiny seeded PRNG (xorshift64*): the seed is printed, and `RUNE_FAULT_SEED`
/// repeats a run.
struct Rng(u64);

impl Rng {
    fn new(what: &str) -> Rng {
        let seed = std::env::var("RUNE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: seed {seed} (RUNE_FAULT_SEED={seed} repeats it)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

// ---------------------------------------------------------------------------------
// The continuous checker

/// One sample of the service's processes.
struct Sample {
    at: Instant,
    procs: Vec<Running>,
}

/// What the checker saw over the whole scenario.
#[derive(Default)]
struct Seen {
    /// Broken invariants, first occurrence per kind and instance.
    violations: BTreeMap<String, String>,
    samples: usize,
    /// Samples whose listing of the records succeeded (etcd reachable).
    listings: usize,
    timeline: Vec<Sample>,
    /// Operation id → its terminal phase, from every status the checker read.
    outcomes: HashMap<String, String>,
}

impl Seen {
    fn violate(&mut self, key: String, what: String) {
        self.violations.entry(key).or_insert(what);
    }

    /// Terminal phases in a status document (the operation and the history).
    fn learn_outcomes(&mut self, status: &Value) {
        learn_outcomes(&mut self.outcomes, status);
    }
}

fn learn_outcomes(into: &mut HashMap<String, String>, status: &Value) {
    let op = &status["operation"];
    if let (Some(id), Some(phase)) = (op["id"].as_str(), op["phase"].as_str())
        && terminal(phase)
    {
        into.insert(id.to_string(), phase.to_string());
    }
    for h in status["history"].as_array().into_iter().flatten() {
        if let (Some(id), Some(result)) = (h["id"].as_str(), h["result"].as_str()) {
            into.insert(id.to_string(), result.to_string());
        }
    }
}

/// One look at etcd by the checker: the service's instance ids and its status,
/// each `None` when etcd did not answer in time.
struct Read {
    store: Option<Store>,
    records: Option<HashSet<String>>,
    status: Option<Value>,
}

async fn read_etcd(store: Option<Store>, args: EtcdArgs, svc: String) -> Read {
    let limit = Duration::from_secs(2);
    let store = match store {
        Some(s) => Some(s),
        None => Store::connect_within(&args, limit).await.ok(),
    };
    let Some(s) = store else {
        return Read {
            store: None,
            records: None,
            status: None,
        };
    };
    let records = tokio::time::timeout(limit, s.list(&s.keys().instances_of("default", &svc)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(kvs, _)| {
            kvs.iter()
                .filter_map(|kv| kv.key.rsplit('/').next().map(String::from))
                .collect()
        });
    let status = tokio::time::timeout(limit, s.get(&s.keys().status("default", &svc)))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok());
    Read {
        store: Some(s),
        records,
        status,
    }
}

/// Samples the service every [`SAMPLE`] on a thread of its own until stopped.
struct Checker {
    stop: Arc<AtomicBool>,
    /// Successful listings so far (shared with the thread).
    listings: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Seen>>,
    started: Instant,
}

impl Checker {
    fn start(w: &World, svc: &str) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let marker = marker(w, svc);
        let args = EtcdArgs::local(vec![w.etcd.client_url.clone()], &w.prefix);
        let svc = svc.to_string();
        let started = Instant::now();
        let flag = stop.clone();
        let listings = Arc::new(AtomicUsize::new(0));
        let listed = listings.clone();
        let thread = std::thread::spawn(move || {
            // etcd is read by a task of its own, so that an unreachable etcd (paused,
            // restarting) does not slow the sampling of processes down.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let mut store: Option<Store> = None;
            let mut pending: Option<(Vec<Running>, tokio::task::JoinHandle<Read>)> = None;
            let mut seen = Seen::default();
            // Instance id → since when (a successful listing) its live process has
            // had no record.
            let mut absent_since: HashMap<String, Instant> = HashMap::new();
            let t = |at: Instant| at.duration_since(started).as_secs_f64();
            while !flag.load(Ordering::SeqCst) {
                let at = Instant::now();
                let procs = running(&marker);
                seen.samples += 1;
                for (id, pids) in duplicates(&procs) {
                    seen.violate(
                        format!("twice {id}"),
                        format!(
                            "at {:.1}s: instance {id} runs {} times (pids {pids:?})",
                            t(at),
                            pids.len()
                        ),
                    );
                }
                if pending.as_ref().is_some_and(|(_, h)| h.is_finished()) {
                    let (sampled, h) = pending.take().unwrap();
                    let read = rt.block_on(h).unwrap();
                    store = read.store;
                    if let Some(ids) = read.records {
                        // The processes were sampled before the records were listed:
                        // a record is written before its process starts, and removed
                        // only after it ended.
                        let now = Instant::now();
                        seen.listings += 1;
                        listed.fetch_add(1, Ordering::SeqCst);
                        absent_since.retain(|id, _| {
                            !ids.contains(id) && sampled.iter().any(|p| &p.id == id)
                        });
                        for p in &sampled {
                            if ids.contains(&p.id) {
                                continue;
                            }
                            let since = *absent_since.entry(p.id.clone()).or_insert(now);
                            if now.duration_since(since) > SETTLE {
                                seen.violate(
                                    format!("no record {}", p.id),
                                    format!(
                                        "at {:.1}s: process {} (instance {} on node {}) has had no instance record for {:.1}s",
                                        t(now),
                                        p.pid,
                                        p.id,
                                        p.node,
                                        now.duration_since(since).as_secs_f64()
                                    ),
                                );
                            }
                        }
                    }
                    if let Some(status) = read.status {
                        seen.learn_outcomes(&status);
                    }
                }
                if pending.is_none() {
                    let task = read_etcd(store.take(), args.clone(), svc.clone());
                    pending = Some((procs.clone(), rt.spawn(task)));
                }
                seen.timeline.push(Sample { at, procs });
                std::thread::sleep(SAMPLE.saturating_sub(at.elapsed()));
            }
            seen
        });
        Checker {
            stop,
            listings,
            thread: Some(thread),
            started,
        }
    }

    /// Seconds since the checker started (for messages that line up with its own).
    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Successful listings of the records so far.
    fn listings(&self) -> usize {
        self.listings.load(Ordering::SeqCst)
    }

    fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the checker thread panicked")
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------
// CLIs run in the background

/// A `rune` command running in the background; output to files (no pipe to fill).
struct Cli {
    label: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    waits: bool,
}

/// How a background `rune` command ended.
#[derive(Clone, Debug)]
struct CliRun {
    label: String,
    code: i32,
    stdout: String,
    stderr: String,
    /// The operation it wrote (a waiting CLI prints it first, `--no-wait` only it).
    op_id: Option<String>,
    waited: bool,
}

fn rune_bg(w: &World, label: &str, args: &[&str]) -> Cli {
    let n = crate::support::scratch::unique("cli");
    let out = w.dir.join(format!("{n}.out"));
    let err = w.dir.join(format!("{n}.err"));
    let child = Command::new(assert_cmd::cargo::cargo_bin("rune"))
        .args(args)
        .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
        .env("RUNE_ETCD_PREFIX", &w.prefix)
        .env("RUNE_CONFIG", w.dir.join("no-rune-config.yaml"))
        .env_remove("RUNE_CONTEXT")
        .env_remove("RUNE_NAMESPACE")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    Cli {
        label: format!("`rune {}` ({label})", args.join(" ")),
        child,
        out,
        err,
        waits: !args.contains(&"--no-wait"),
    }
}

impl Cli {
    /// The operation a waiting CLI announced (its first line), once it did.
    fn op_id(&self) -> Option<String> {
        let out = std::fs::read_to_string(&self.out).ok()?;
        let (_, rest) = out.split_once("(operation ")?;
        let id: String = rest.chars().take(36).collect();
        (id.len() == 36).then_some(id)
    }

    /// Waits for the command to exit (killed after `within`: a failure).
    fn finish(mut self, within: Duration) -> CliRun {
        let status = wait_until(within, || self.child.try_wait().ok().flatten());
        let code = match status {
            Some(s) => s.code().unwrap_or(-1),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                -1
            }
        };
        let stdout = std::fs::read_to_string(&self.out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.err).unwrap_or_default();
        let op_id = if self.waits {
            stdout
                .split_once("(operation ")
                .map(|(_, rest)| rest.chars().take(36).collect::<String>())
        } else {
            Some(stdout.trim().to_string()).filter(|s| s.len() == 36)
        };
        let run = CliRun {
            label: self.label,
            code,
            stdout,
            stderr,
            op_id,
            waited: self.waits,
        };
        eprintln!(
            "{} exited {} (operation {:?})",
            run.label, run.code, run.op_id
        );
        run
    }
}

/// The exit code the contract gives an operation's outcome.
fn exit_for(phase: &str) -> Option<i32> {
    match phase {
        "Succeeded" => Some(0),
        "RolledBack" | "Failed" => Some(1),
        "Superseded" => Some(4),
        _ => None,
    }
}

/// Every waiting CLI whose exit code does not match its operation's recorded
/// outcome (what the checker saw, and the final status).
fn exit_code_mismatches(
    w: &World,
    svc: &str,
    runs: &[CliRun],
    outcomes: &HashMap<String, String>,
) -> Vec<String> {
    let mut outcomes = outcomes.clone();
    learn_outcomes(&mut outcomes, &service(w, svc)["status"]);
    let mut bad = Vec::new();
    for run in runs.iter().filter(|r| r.waited) {
        let why = match (
            &run.op_id,
            run.op_id.as_ref().and_then(|id| outcomes.get(id)),
        ) {
            (None, _) if run.code == 4 => continue,
            (None, _) => format!("wrote no operation, yet exited {}", run.code),
            (Some(id), Some(phase)) => match exit_for(phase) {
                Some(code) if code == run.code => continue,
                _ => format!(
                    "operation {id} ended {phase}, yet the CLI exited {}",
                    run.code
                ),
            },
            // Superseded before any controller took it up: never recorded.
            (Some(_), None) if run.code == 4 => continue,
            (Some(id), None) => format!(
                "operation {id} has no recorded outcome (never taken up), yet the CLI exited {}",
                run.code
            ),
        };
        bad.push(format!(
            "exit code: {}: {why}\n  stdout: {}\n  stderr: {}",
            run.label,
            run.stdout.trim(),
            run.stderr.trim()
        ));
    }
    bad
}

// ---------------------------------------------------------------------------------
// The end of every scenario

/// Whether the service has converged, consistently: `Ok(scale)`, or which
/// invariant does not hold (yet).
fn converged(w: &World, svc: &str, expect: Option<u64>) -> Result<u64, String> {
    let s = service(w, svc);
    let st = &s["status"];
    let spec = s["spec"]["scale"].as_u64();
    let n = |f: &str| st[f].as_u64().unwrap_or(0);
    let (d, r, c) = (
        n("desiredReplicas"),
        n("readyReplicas"),
        n("currentReplicas"),
    );
    let phase = st["operation"]["phase"].as_str().unwrap_or("Succeeded");
    if !terminal(phase) {
        return Err(format!("the operation is still {phase}"));
    }
    if let Some(e) = expect
        && spec != Some(e)
    {
        return Err(format!("spec scale {spec:?}, expected {e}"));
    }
    if spec != Some(d) || r != d || c != d {
        return Err(format!(
            "spec scale {spec:?}, desired {d}, ready {r}, current {c}"
        ));
    }
    let procs = running(&marker(w, svc));
    let twice = duplicates(&procs);
    if !twice.is_empty() {
        return Err(format!("instances running twice: {twice:?}"));
    }
    let docs = instances(w, svc);
    let records: HashMap<&str, &str> = docs
        .iter()
        .filter_map(|i| {
            Some((
                i["instance"]["id"].as_str()?,
                i["instance"]["desired"].as_str().unwrap_or("?"),
            ))
        })
        .collect();
    if let Some(p) = procs
        .iter()
        .find(|p| records.get(p.id.as_str()) != Some(&"Running"))
    {
        return Err(format!(
            "process {} (instance {} on {}) has no record that wants it running: {:?}",
            p.pid,
            p.id,
            p.node,
            records.get(p.id.as_str())
        ));
    }
    if procs.len() as u64 != c {
        return Err(format!(
            "{} processes run, currentReplicas is {c}: {procs:?}",
            procs.len()
        ));
    }
    if records.len() as u64 != c {
        return Err(format!(
            "{} instance records, currentReplicas is {c}: {records:?}",
            records.len()
        ));
    }
    Ok(c)
}

/// "panicked" in any daemon log of the world.
fn panics(w: &World) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(&w.dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked")) {
                found.push(format!(
                    "panic in {}: {line}",
                    p.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Waits for convergence (the checker still sampling), stops the checker and
/// asserts every invariant: what the checker saw, the end state, the waiting CLIs'
/// exit codes, and no panic. Returns what the checker saw, for the scenario's own
/// assertions.
#[track_caller]
fn finish(w: &World, svc: &str, checker: Checker, runs: &[CliRun], expect: Option<u64>) -> Seen {
    let settled = wait_until(Duration::from_secs(90), || converged(w, svc, expect).ok());
    // The checker goes on for a few listings of the records after convergence: the
    // settled state is watched too, with etcd reachable (it may not have been
    // during the fault).
    let listed = checker.listings();
    let watched = wait_until(Duration::from_secs(30), || {
        (checker.listings() >= listed + 5).then_some(())
    });
    let seen = checker.stop();
    let mut failures: Vec<String> = seen
        .violations
        .values()
        .map(|v| format!("while the fault played out: {v}"))
        .collect();
    match settled {
        Some(n) => eprintln!("{svc}: converged at {n} instances"),
        None => failures.push(format!(
            "at the end (90s after the fault): not consistent: {}",
            converged(w, svc, expect).unwrap_err()
        )),
    }
    if watched.is_none() {
        failures.push("after the fault: the checker could not list the records for 30s".into());
    }
    failures.extend(exit_code_mismatches(w, svc, runs, &seen.outcomes));
    failures.extend(panics(w));
    failures.extend(
        runs.iter()
            .filter(|r| r.stderr.contains("panicked"))
            .map(|r| format!("{} panicked: {}", r.label, r.stderr.trim())),
    );
    eprintln!(
        "{svc}: checker took {} samples, {} with etcd reachable",
        seen.samples, seen.listings
    );
    assert!(
        seen.samples >= 5,
        "the checker hardly ran ({} samples)",
        seen.samples
    );
    if !failures.is_empty() {
        panic!(
            "{svc}: {} invariant(s) broke:\n- {}\nservice: {}\ninstances: {}",
            failures.len(),
            failures.join("\n- "),
            service(w, svc),
            serde_json::to_string(&instances(w, svc)).unwrap()
        );
    }
    seen
}

/// The pids of the service's live processes, sorted.
fn live_pids(w: &World, svc: &str) -> Vec<i32> {
    let mut p: Vec<i32> = running(&marker(w, svc)).iter().map(|p| p.pid).collect();
    p.sort();
    p
}

/// A leading controller and two agents with the etcd-outage timings.
fn outage_system(w: &World) -> [Daemon; 3] {
    [
        leading(w, "c1", &outage_controller()),
        agent_with(w, "n1", OUTAGE_AGENT),
        agent_with(w, "n2", OUTAGE_AGENT),
    ]
}

#[track_caller]
fn assert_still_running(w: &World, svc: &str, kept: &[i32]) {
    let now = live_pids(w, svc);
    let lost: Vec<&i32> = kept.iter().filter(|p| !now.contains(p)).collect();
    assert!(
        lost.is_empty(),
        "instances were restarted or stopped: {lost:?} gone ({kept:?} -> {now:?})"
    );
}

// ---------------------------------------------------------------------------------
// 1–3: etcd paused and restarted

/// Scenario 1: etcd paused (SIGSTOP) for 20s while steady: an outage shorter than the
/// self-fence window stops nothing; every instance keeps its pid throughout.
#[test]
fn faults_etcd_paused_while_steady_stops_nothing() {
    let w = World::new();
    let _system = outage_system(&w);
    deploy(&w, &service_file(&w, "api", 2), "api", 2);
    let before = live_pids(&w, "api");
    assert_eq!(before.len(), 2);

    let checker = Checker::start(&w, "api");
    pause_etcd(&w, PAUSE);
    let seen = finish(&w, "api", checker, &[], Some(2));
    for s in &seen.timeline {
        let mut p: Vec<i32> = s.procs.iter().map(|p| p.pid).collect();
        p.sort();
        assert_eq!(p, before, "the processes changed during the outage");
    }
    assert_eq!(
        live_pids(&w, "api"),
        before,
        "the same instances at the end"
    );
}

/// Scenario 2: The same pause mid gradual scale (1→4, step 1, interval 1s): the operation
/// still succeeds, and the instances running at the pause keep running.
#[test]
fn faults_etcd_paused_mid_gradual_scale_changes_only_timing() {
    let w = World::new();
    let _system = outage_system(&w);
    deploy(&w, &service_file(&w, "api", 1), "api", 1);

    let checker = Checker::start(&w, "api");
    let cli = rune_bg(
        &w,
        "gradual 1→4, etcd paused mid-way",
        &[
            "scale",
            "api",
            "4",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=3m",
        ],
    );
    let step = wait_step(&w, "api", &cli, 2);
    let kept = live_pids(&w, "api");
    eprintln!("pausing etcd at step {step}: {kept:?} run");
    pause_etcd(&w, PAUSE);
    let run = cli.finish(Duration::from_secs(240));
    finish(&w, "api", checker, std::slice::from_ref(&run), Some(4));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_still_running(&w, "api", &kept);
}

/// Scenario 3: etcd killed and started again on the same data dir and ports, while steady
/// and then mid gradual scale: nothing restarts, the operation succeeds.
#[test]
fn faults_etcd_restarted_while_steady_and_mid_gradual_scale() {
    let mut w = World::new();
    let _system = outage_system(&w);
    deploy(&w, &service_file(&w, "api", 2), "api", 2);
    let before = live_pids(&w, "api");

    let checker = Checker::start(&w, "api");
    w.etcd.kill();
    std::thread::sleep(Duration::from_secs(3));
    w.etcd.restart();
    eventually(
        "steady again after the restart",
        Duration::from_secs(60),
        || converged(&w, "api", Some(2)).ok(),
    );
    assert_eq!(live_pids(&w, "api"), before, "nothing restarted");

    let cli = rune_bg(
        &w,
        "gradual 2→5, etcd restarted mid-way",
        &[
            "scale",
            "api",
            "5",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=3m",
        ],
    );
    let step = wait_step(&w, "api", &cli, 2);
    let kept = live_pids(&w, "api");
    eprintln!("restarting etcd at step {step}: {kept:?} run");
    w.etcd.kill();
    std::thread::sleep(Duration::from_secs(3));
    w.etcd.restart();
    let run = cli.finish(Duration::from_secs(240));
    finish(&w, "api", checker, std::slice::from_ref(&run), Some(5));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_still_running(&w, "api", &kept);
}

// ---------------------------------------------------------------------------------
// 4–5: leaders killed and paused

/// Scenario 4: The leader SIGKILLed at random moments of a gradual scale, three times in a
/// row, a controller restarted each time (always a leader and a standby): the
/// operation completes, nothing runs twice.
#[test]
fn faults_leader_killed_repeatedly_mid_gradual_scale() {
    let w = World::new();
    let mut rng = Rng::new("leader kills");
    let names = ["c1", "c2"];
    let mut cs = vec![
        leading(&w, names[0], &fence_controller()),
        w.controller(names[1], &fence_controller()),
    ];
    let _a1 = agent_with(&w, "n1", FENCE_AGENT);
    let _a2 = agent_with(&w, "n2", FENCE_AGENT);
    deploy(&w, &service_file(&w, "api", 1), "api", 1);

    let checker = Checker::start(&w, "api");
    let cli = rune_bg(
        &w,
        "gradual 1→12 under leader kills",
        &[
            "scale",
            "api",
            "12",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=3m",
        ],
    );
    wait_step(&w, "api", &cli, 1);
    let mut mid_operation = 0;
    for round in 1..=3 {
        let i = eventually("exactly one leader", Duration::from_secs(30), || {
            leader_of(&cs)
        });
        std::thread::sleep(Duration::from_millis(200 + rng.below(2000)));
        let (_, phase, step) = operation(&w, "api");
        if !terminal(&phase) {
            mid_operation += 1;
        }
        eprintln!(
            "kill {round}: {} at step {step} ({phase}) at {:.1}s",
            names[i],
            checker.secs(Instant::now())
        );
        cs[i].kill9();
        cs[i] = w.controller(names[i], &fence_controller());
    }
    let run = cli.finish(Duration::from_secs(240));
    finish(&w, "api", checker, std::slice::from_ref(&run), Some(12));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        mid_operation >= 2,
        "only {mid_operation} of the kills landed mid-operation"
    );
}

/// Scenario 5: The leader SIGSTOPped past its lease mid-scale while the standby takes over,
/// then SIGCONTed: it steps down (its log says so) and its writes are fenced, so
/// nothing runs twice and the new leader's state stands. Twice, each controller in
/// turn, so both the first term and a later one are paused.
#[test]
fn faults_a_paused_leader_is_fenced_out_and_steps_down() {
    let w = World::new();
    let cs = [
        leading(&w, "c1", &fence_controller()),
        w.controller("c2", &fence_controller()),
    ];
    let _a1 = agent_with(&w, "n1", FENCE_AGENT);
    let _a2 = agent_with(&w, "n2", FENCE_AGENT);
    deploy(&w, &service_file(&w, "api", 1), "api", 1);

    let checker = Checker::start(&w, "api");
    let cli = rune_bg(
        &w,
        "gradual 1→8, leaders paused mid-way",
        &[
            "scale",
            "api",
            "8",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=3m",
        ],
    );
    let mut step = wait_step(&w, "api", &cli, 2);
    for (old, new) in [(0, 1), (1, 0)] {
        let (paused, standby) = (&cs[old], &cs[new]);
        eventually(
            &format!("{} leads", paused.name),
            Duration::from_secs(30),
            || is_leader(paused).then_some(()),
        );
        let stepped_down = |d: &Daemon| d.logs().matches("stopped leading").count();
        let before = stepped_down(paused);
        paused.signal("STOP");
        eprintln!("{} paused at step {step}", paused.name);
        eventually(
            &format!("{} takes over", standby.name),
            Duration::from_secs(30),
            || is_leader(standby).then_some(()),
        );
        // The new leader moves the operation on while the old one is frozen.
        step = eventually(
            "the new leader makes progress",
            Duration::from_secs(60),
            || {
                let (_, phase, now) = operation(&w, "api");
                (now >= step + 2 || terminal(&phase)).then_some(now)
            },
        );
        paused.signal("CONT");
        eventually(
            &format!("the resumed {} steps down", paused.name),
            Duration::from_secs(30),
            || (stepped_down(paused) > before && !is_leader(paused)).then_some(()),
        );
        let why = paused
            .logs()
            .lines()
            .rfind(|l| l.contains("stopped leading"))
            .unwrap_or_default()
            .to_string();
        let deposed = paused
            .http_get("/metrics")
            .and_then(|(_, m)| {
                m.lines()
                    .find(|l| l.contains("result=\"deposed\""))
                    .map(String::from)
            })
            .unwrap_or_else(|| "no write refused by the fence".into());
        eprintln!("{}: {why} ({deposed})", paused.name);
    }
    let run = cli.finish(Duration::from_secs(240));
    finish(&w, "api", checker, std::slice::from_ref(&run), Some(8));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(is_leader(&cs[0]), "c1 leads again at the end");
    assert!(!is_leader(&cs[1]), "c2 stepped down");
}

// ---------------------------------------------------------------------------------
// 6–7: agents killed and cut off

/// Scenario 6: An agent SIGKILLed mid scale-down (4 → 1 over two agents) while it
/// is stopping an instance (one that ignores SIGTERM, so the stop takes its whole
/// grace period), then restarted on the same data dir: the restarted agent finishes
/// the stop, everything ends consistent, no orphan process.
#[test]
fn faults_an_agent_killed_mid_scale_down_leaves_no_orphan() {
    let w = World::new();
    let _c = leading(&w, "c1", &fence_controller());
    let mut agents = [
        agent_with(&w, "n1", FENCE_AGENT),
        agent_with(&w, "n2", FENCE_AGENT),
    ];
    let m = marker(&w, "api");
    w.file(
        "api.yaml",
        &format!(
            "service:\n  name: api\n  scale: 4\n  command: \"trap '' TERM; exec sleep {m}\"\n  stopGracePeriod: 4s\n"
        ),
    );
    deploy(&w, &w.dir.join("api.yaml"), "api", 4);
    let on = |node: &str| running(&m).iter().filter(|p| p.node == node).count();
    assert_eq!((on("n1"), on("n2")), (2, 2), "spread over both nodes");

    let checker = Checker::start(&w, "api");
    let cli = rune_bg(
        &w,
        "gradual 4→1, an agent killed mid-stop",
        &[
            "scale",
            "api",
            "1",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=2m",
        ],
    );
    wait_step(&w, "api", &cli, 1);
    // An instance asked to stop whose process still runs (SIGTERM ignored): its
    // agent is in the middle of stopping it.
    let (node, victim) = eventually("an instance being stopped", Duration::from_secs(60), || {
        let procs = running(&m);
        instances(&w, "api").iter().find_map(|i| {
            let (id, node) = (
                i["instance"]["id"].as_str()?,
                i["instance"]["node"].as_str()?,
            );
            (i["instance"]["desired"] == "Stopped" && procs.iter().any(|p| p.id == id))
                .then(|| (node.to_string(), id.to_string()))
        })
    });
    let k = if node == "n1" { 0 } else { 1 };
    eprintln!(
        "killing agent {node} while it stops {victim} (n1 runs {}, n2 runs {})",
        on("n1"),
        on("n2")
    );
    agents[k].kill9();
    // Down past its lease (2s): the node is lost for a while, not past the grace.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        running(&m).iter().any(|p| p.id == victim),
        "{victim} was stopped without its agent"
    );
    agents[k] = agent_with(&w, &node, FENCE_AGENT);
    let run = cli.finish(Duration::from_secs(180));
    finish(&w, "api", checker, std::slice::from_ref(&run), None);
    assert!(
        !running(&m).iter().any(|p| p.id == victim),
        "{victim} outlived its record"
    );
    assert!(
        run.code == 0 || run.code == 1,
        "{} exited {}: {}",
        run.label,
        run.code,
        run.stderr
    );
}

/// Scenario 7: An agent cut off from etcd (its own network namespace, the veth taken down)
/// while its instances run: it fences itself (its processes stop within the
/// self-fence window plus the stop grace), the controller replaces them on the other
/// node only after its grace, so old and new copies never overlap; once the link is
/// back, the agent registers again and duplicates nothing.
#[test]
fn faults_an_agent_cut_off_from_etcd_fences_before_its_instances_are_replaced() {
    let ns = NetNs::reserve();
    let w = World::with_etcd(EtcdConfig {
        extra_client_hosts: vec![ns.host_addr.clone()],
        ..EtcdConfig::default()
    });
    if let Err(e) = ns.create() {
        panic!(
            "FAILED TO SET UP THE NETWORK NAMESPACE this scenario needs (root and iproute2's \
             `ip netns` are required; nothing was tested): {e}"
        );
    }
    let etcd_in_ns = w.etcd.client_url_on(&ns.host_addr);
    let _c = leading(&w, "c1", &fence_controller());
    let _a1 = agent_with(&w, "n1", FENCE_AGENT);
    let wrapper = ns.exec_prefix();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let a2 = w.agent_wrapped(&wrapper, "n2", &etcd_in_ns, FENCE_AGENT);
    registered(&w, "n2");
    deploy(&w, &service_file(&w, "api", 4), "api", 4);
    let m = marker(&w, "api");
    let before = running(&m);
    let old: HashSet<String> = before
        .iter()
        .filter(|p| p.node == "n2")
        .map(|p| p.id.clone())
        .collect();
    let original: HashSet<String> = before.iter().map(|p| p.id.clone()).collect();
    assert_eq!(
        old.len(),
        2,
        "two instances on the cut-off node: {before:?}"
    );

    let checker = Checker::start(&w, "api");
    let cut_at = Instant::now();
    ns.cut().unwrap();
    eprintln!("link cut at {:.1}s", checker.secs(cut_at));
    eventually(
        "the cut-off agent's instances stop (self-fence)",
        Duration::from_secs(30),
        || (!running(&m).iter().any(|p| old.contains(&p.id))).then_some(()),
    );
    eventually("replacements on n1 ready", Duration::from_secs(60), || {
        let on_n1 = running(&m).iter().filter(|p| p.node == "n1").count();
        (on_n1 == 4 && crate::system::counts(&w, "api") == (4, 4, 4)).then_some(())
    });
    let restored_at = Instant::now();
    ns.restore().unwrap();
    eprintln!("link restored at {:.1}s", checker.secs(restored_at));
    eventually(
        "the agent resumes after registering again",
        Duration::from_secs(60),
        || a2.logs().contains("resuming supervision").then_some(()),
    );
    registered(&w, "n2");
    let seen = finish(&w, "api", checker, &[], Some(4));

    // The fence and the overlap, from the checker's samples.
    let last_old = seen
        .timeline
        .iter()
        .filter(|s| s.procs.iter().any(|p| old.contains(&p.id)))
        .map(|s| s.at)
        .max()
        .expect("the old instances were sampled");
    let first_new = seen
        .timeline
        .iter()
        .find(|s| s.procs.iter().any(|p| !original.contains(&p.id)))
        .map(|s| s.at)
        .expect("replacements were sampled");
    let fenced = last_old.saturating_duration_since(cut_at);
    let replaced = first_new.saturating_duration_since(cut_at);
    eprintln!(
        "after the cut: old copies last seen at +{fenced:.1?}, first replacement at \
         +{replaced:.1?}: {:.1?} without overlap",
        first_new.saturating_duration_since(last_old)
    );
    let log = a2.logs();
    assert!(
        log.contains("self-fencing"),
        "the agent says it fenced: {log}"
    );
    assert!(
        fenced <= FENCE_WINDOW + STOP_GRACE + Duration::from_secs(2),
        "the cut-off agent's instances ran {fenced:?} after the cut"
    );
    assert!(
        replaced >= NODE_LOST_GRACE,
        "replaced {replaced:?} after the cut, before the node-lost grace"
    );
    assert!(
        first_new > last_old,
        "old and new copies overlapped for {:?}",
        last_old.duration_since(first_new)
    );
    let after: Vec<&Running> = seen
        .timeline
        .iter()
        .filter(|s| s.at > restored_at)
        .flat_map(|s| s.procs.iter())
        .filter(|p| old.contains(&p.id) || p.node == "n2")
        .collect();
    assert!(
        after.is_empty(),
        "the returning agent started something: {after:?}"
    );
}

// ---------------------------------------------------------------------------------
// 8: concurrent writers

/// Scenario 8: 20 concurrent `rune scale`s with random targets (0..=6), waiting and
/// `--no-wait`, immediate and gradual: every CLI exits 0 or 4 (the service is
/// healthy, so nothing rolls back), and the end state is the last scale written.
///
/// It caught a real race (now fixed): a waiting CLI exited 4 ("superseded by
/// operation B") while its operation A was recorded as Succeeded, because the
/// controller committed A's verdict from a read that predated B's record. The
/// status write now compares the operation record's revision; the check that
/// catches it is `exit_code_mismatches`.
#[test]
fn faults_twenty_concurrent_scales_end_consistent() {
    let w = World::new();
    let mut rng = Rng::new("concurrent scales");
    let _c = leading(&w, "c1", &fence_controller());
    let _a1 = agent_with(&w, "n1", FENCE_AGENT);
    let _a2 = agent_with(&w, "n2", FENCE_AGENT);
    deploy(&w, &service_file(&w, "api", 2), "api", 2);

    let checker = Checker::start(&w, "api");
    let mut clis = Vec::new();
    for i in 0..20 {
        let to = rng.below(7).to_string();
        let mut args = vec!["scale", "api", to.as_str(), "--timeout=2m"];
        if rng.below(3) == 0 {
            args.extend(["--mode=gradual", "--step=2", "--interval=1s"]);
        }
        if rng.below(2) == 0 {
            args.push("--no-wait");
        }
        clis.push(rune_bg(&w, &format!("writer {i}"), &args));
        std::thread::sleep(Duration::from_millis(rng.below(50)));
    }
    let runs: Vec<CliRun> = clis
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(180)))
        .collect();
    let bad: Vec<String> = runs
        .iter()
        .filter(|r| r.code != 0 && r.code != 4)
        .map(|r| format!("{} exited {}: {}", r.label, r.code, r.stderr.trim()))
        .collect();
    let spec = eventually("a spec scale", Duration::from_secs(10), || {
        service(&w, "api")["spec"]["scale"].as_u64()
    });
    let last: Value =
        serde_json::from_str(&w.etcd.get(&w.key("operations/default/api")).unwrap()).unwrap();
    eprintln!(
        "exit codes: {:?}; the last operation {} asks for {}",
        runs.iter().map(|r| r.code).collect::<Vec<_>>(),
        last["id"],
        last["to"]
    );
    finish(&w, "api", checker, &runs, Some(spec));
    assert!(
        bad.is_empty(),
        "exit codes other than 0 and 4:\n{}",
        bad.join("\n")
    );
    assert_eq!(
        last["to"].as_u64(),
        Some(spec),
        "the last operation's target is the spec's scale"
    );
}

// ---------------------------------------------------------------------------------
// The checker itself

/// The checks catch what they must — a second process of one instance, a process
/// without a record, a CLI exit code that contradicts the recorded outcome, a panic
/// in a daemon log — so that the scenarios above cannot pass vacuously.
#[test]
fn faults_the_checker_catches_broken_invariants() {
    let w = World::new();
    let _c = leading(&w, "c1", &fence_controller());
    let _a = agent_with(&w, "n1", FENCE_AGENT);
    deploy(&w, &service_file(&w, "api", 1), "api", 1);
    let m = marker(&w, "api");
    let id = running(&m)[0].id.clone();

    let checker = Checker::start(&w, "api");
    let fake = |instance: &str| {
        Command::new("sleep")
            .arg(&m)
            .env("RUNE_INSTANCE", instance)
            .env("RUNE_NODE", "n1")
            .spawn()
            .unwrap()
    };
    let mut twin = fake(&id);
    let mut stray = fake("api-stray");
    let listed = checker.listings();
    eventually(
        "the checker lists the records for longer than the settle window",
        Duration::from_secs(30),
        || (checker.listings() >= listed + 25).then_some(()),
    );
    let end = converged(&w, "api", Some(1));
    for c in [&mut twin, &mut stray] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let seen = checker.stop();
    let found: Vec<&String> = seen.violations.values().collect();
    assert!(
        seen.violations.contains_key(&format!("twice {id}")),
        "{found:?}"
    );
    assert!(
        seen.violations.contains_key("no record api-stray"),
        "{found:?}"
    );
    assert!(
        !seen.violations.contains_key(&format!("no record {id}")),
        "{found:?}"
    );
    assert!(end.is_err(), "the end check saw nothing wrong");

    let op = operation(&w, "api");
    assert_eq!(op.1, "Succeeded", "{op:?}");
    let lying = CliRun {
        label: "a CLI that says superseded".into(),
        code: 4,
        stdout: String::new(),
        stderr: String::new(),
        op_id: Some(op.0.clone()),
        waited: true,
    };
    let honest = CliRun {
        code: 0,
        ..lying.clone()
    };
    assert_eq!(
        exit_code_mismatches(&w, "api", &[lying], &HashMap::new()).len(),
        1
    );
    assert!(exit_code_mismatches(&w, "api", &[honest], &HashMap::new()).is_empty());

    assert!(panics(&w).is_empty());
    w.file(
        "agent-fake.log",
        "thread 'tokio-runtime-worker' panicked at src/agent/mod.rs:1:1:\n",
    );
    assert_eq!(panics(&w).len(), 1);
}
