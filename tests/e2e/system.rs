//! Helpers for tests that run the whole system: controllers, agents, and services.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Daemon, World};
use crate::support::procs::pids_with_cmdline;
use crate::support::wait::{eventually, wait_until};

/// Fast election timings so failover tests finish in seconds.
pub const FAST_ELECTION: &[&str] = &[
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "300ms",
];

/// Fast timings so failover and lost-node tests finish in seconds.
pub const FAST_CONTROLLER: &[&str] = &[
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "300ms",
    "--node-lost-grace",
    "3s",
];

/// Fast election timings with a node-lost grace of the test's choosing (one that
/// outlasts the agents' self-fence window, as the docs require, where it matters).
pub fn fast_controller_with_grace(grace: &'static str) -> Vec<&'static str> {
    [FAST_ELECTION, &["--node-lost-grace", grace]].concat()
}

pub const FAST_AGENT: &[&str] = &["--lease-ttl", "3s"];

pub fn controller(w: &World, name: &str) -> Daemon {
    w.controller(name, FAST_CONTROLLER)
}

/// Two controllers: `c1` leading (waited for), `c2` standing by.
pub fn leader_and_standby(w: &World) -> (Daemon, Daemon) {
    let c1 = controller(w, "c1");
    eventually("c1 leads", Duration::from_secs(30), || {
        c1.logs().contains("became leader").then_some(())
    });
    (c1, controller(w, "c2"))
}

/// The usual system of one test: controller `c1` and the agent of node `n1`.
pub fn one_node(w: &World) -> (Daemon, Daemon) {
    (controller(w, "c1"), agent(w, "n1"))
}

pub fn agent(w: &World, node: &str) -> Daemon {
    let a = w.agent(node, FAST_AGENT);
    eventually(
        &format!("node {node} registered"),
        Duration::from_secs(30),
        || w.etcd.get(&w.key(&format!("nodes/{node}"))).map(|_| ()),
    );
    a
}

/// The service's condition `kind` while its status is True (`rune get service`).
pub fn condition(w: &World, name: &str, kind: &str) -> Option<Value> {
    service(w, name)["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .cloned()
}

/// What a rune command printed on stdout; it must succeed (else the test fails,
/// showing its stderr).
pub fn stdout_ok(cmd: &mut assert_cmd::Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `rune get service NAME -o json`.
pub fn service(w: &World, name: &str) -> Value {
    let out = w
        .rune()
        .args(["get", "service", name, "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn counts(w: &World, name: &str) -> (u64, u64, u64) {
    let s = service(w, name);
    let n = |f: &str| s["status"][f].as_u64().unwrap_or(0);
    (
        n("desiredReplicas"),
        n("readyReplicas"),
        n("currentReplicas"),
    )
}

/// Waits until the service reports `n` desired, ready and current.
pub fn wait_ready(w: &World, name: &str, n: u64) {
    let ok = wait_until(Duration::from_secs(60), || {
        (counts(w, name) == (n, n, n) && instances(w, name).len() == n as usize).then_some(())
    });
    if ok.is_none() {
        panic!(
            "timed out waiting for {name}: {n} ready\nservice: {}\ninstances: {}",
            service(w, name),
            serde_json::to_string(&instances(w, name)).unwrap()
        );
    }
}

/// `rune get instances NAME -o json`: the instance documents.
pub fn instances(w: &World, name: &str) -> Vec<Value> {
    let out = w
        .rune()
        .args(["get", "instances", name, "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
}

/// Pids of the service's running instances (as the agents report them), sorted.
pub fn pids(w: &World, name: &str) -> Vec<i32> {
    let mut p: Vec<i32> = instances(w, name)
        .iter()
        .filter(|i| i["instance"]["desired"] == "Running")
        .filter_map(|i| i["status"]["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    p.sort();
    p
}

pub fn nodes_of(w: &World, name: &str) -> Vec<String> {
    let mut n: Vec<String> = instances(w, name)
        .iter()
        .filter_map(|i| i["instance"]["node"].as_str().map(String::from))
        .collect();
    n.sort();
    n
}

/// A service of sleeping python processes with a unique marker in their command line.
pub fn sleeper(w: &World, name: &str, scale: u32, extra: &str) -> std::path::PathBuf {
    let marker = format!("{}-{name}", w.prefix.trim_start_matches('/'));
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [\"python3\", \"-c\", \"import time; time.sleep(100000)\", \"{marker}\"]\n  stopGracePeriod: 5s\n{extra}"
        ),
    )
}

pub fn marker(w: &World, name: &str) -> String {
    format!("{}-{name}", w.prefix.trim_start_matches('/'))
}

/// Every OS process of the service still alive (found by its marker).
pub fn live_processes(w: &World, name: &str) -> Vec<i32> {
    pids_with_cmdline(&marker(w, name))
}

pub fn cast(w: &World, file: &std::path::Path) {
    w.rune().arg("cast").arg(file).assert().success();
}

/// Starts `rune ARGS` in the background against this world (for waiting commands that
/// the test races against something else).
pub fn spawn_rune(w: &World, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("rune"))
        .args(args)
        .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
        .env("RUNE_ETCD_PREFIX", &w.prefix)
        .env("RUNE_CONFIG", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The service runs exactly `n` instances, every one of `before` among them: nothing
/// was restarted and nothing duplicated.
#[track_caller]
pub fn assert_kept(w: &World, name: &str, before: &[i32], n: usize) {
    let after = pids(w, name);
    assert_eq!(after.len(), n, "{after:?}");
    assert!(
        before.iter().all(|p| after.contains(p)),
        "an instance was restarted: {before:?} -> {after:?}"
    );
    assert_eq!(live_processes(w, name).len(), n, "no duplicates");
}

/// Casts `file` and waits until service `name` runs `n` ready instances.
pub fn deploy(w: &World, file: &std::path::Path, name: &str, n: u64) {
    cast(w, file);
    wait_ready(w, name, n);
}

/// A service whose new instances crash (exit 1) unless `<dir>/gate` exists.
pub fn gated(w: &World, name: &str, scale: u32) -> std::path::PathBuf {
    let gate = w.dir.join("gate");
    std::fs::write(&gate, "").unwrap();
    let m = marker(w, name);
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [\"sh\", \"-c\", \"test -f {} || exit 1; exec python3 -c 'import time; time.sleep(100000)' {m}\"]\n  stopGracePeriod: 5s\n",
            gate.display()
        ),
    )
}
