//! `rune-agent --hollow N`: simulated nodes that register, watch their assignments and
//! report statuses like real agents, starting no processes, against a real etcd and
//! controller. What is under test is the control plane at a fleet size no test
//! machine could run as processes, and that hollow nodes look like real ones to it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{Daemon, World};
use crate::support::wait::{eventually, wait_until};
use crate::system::*;

/// Generous for a noisy 2-core machine; every wait ends as soon as its condition holds.
const LONG: Duration = Duration::from_secs(90);

/// `rune-agent --hollow n` with nodes `h-0` … `h-<n-1>`, fast lease, `extra` flags;
/// waits until every hollow node is registered and `/readyz` says so.
fn hollow(w: &World, n: usize, extra: &[&str]) -> Daemon {
    let count = n.to_string();
    let mut args = vec!["--hollow", count.as_str(), "--lease-ttl", "3s"];
    args.extend_from_slice(extra);
    let a = w.agent("h", &args);
    eventually(&format!("{n} hollow nodes registered"), LONG, || {
        (node_keys(w).len() == n).then_some(())
    });
    eventually("the hollow agent is ready", LONG, || {
        a.http_get("/readyz").filter(|(code, _)| *code == 200)
    });
    a
}

fn node_keys(w: &World) -> Vec<String> {
    w.etcd.keys(&w.key("nodes/"))
}

fn status_keys(w: &World, name: &str) -> Vec<String> {
    w.etcd
        .keys(&w.key(&format!("instance-status/default/{name}/")))
}

/// A service whose command would run for long; hollow nodes never start it.
fn service_file(w: &World, name: &str, scale: u32, extra: &str) -> std::path::PathBuf {
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [sleep, \"100000\"]\n{extra}"
        ),
    )
}

/// One metric's value from a daemon's `/metrics` (a line `NAME VALUE`), 0 when absent.
fn metric(d: &Daemon, name: &str) -> f64 {
    let (_, body) = d.http_get("/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the service reports `n` desired, ready and current (a longer deadline
/// than `wait_ready`'s, for hundreds of instances on a busy machine).
fn wait_ready_long(w: &World, name: &str, n: u64) {
    let ok = wait_until(LONG, || {
        (counts(w, name) == (n, n, n) && instances(w, name).len() == n as usize).then_some(())
    });
    assert!(
        ok.is_some(),
        "timed out waiting for {name}: {n} ready; status: {}",
        service(w, name)["status"]
    );
}

#[test]
fn twenty_hollow_nodes_run_a_hundred_instances_scale_down_and_vanish_on_sigterm() {
    let w = World::new();
    let c = controller(&w, "c1");
    let mut a = hollow(&w, 20, &[]);
    let names: Vec<String> = (0..20).map(|i| format!("h-{i}")).collect();
    let mut registered: Vec<String> = node_keys(&w)
        .iter()
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect();
    registered.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(registered, expected);

    cast(&w, &service_file(&w, "api", 100, ""));
    wait_ready_long(&w, "api", 100);
    let all = instances(&w, "api");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in &all {
        *per_node
            .entry(i["instance"]["node"].as_str().unwrap().to_string())
            .or_default() += 1;
        // What a real agent reports for a ready instance, minus the process.
        let s = &i["status"];
        assert_eq!(s["phase"], "Running", "{i}");
        assert_eq!(s["ready"], true, "{i}");
        assert_eq!(s["node"], i["instance"]["node"], "{i}");
        assert!(s["pid"].is_null(), "no process: {i}");
        assert!(
            s["startedAt"].is_string() && s["readyAt"].is_string(),
            "{i}"
        );
        assert_eq!(s["message"], "hollow node: no process", "{i}");
    }
    assert_eq!(
        per_node.keys().cloned().collect::<Vec<_>>(),
        expected,
        "spread over every hollow node: {per_node:?}"
    );
    assert!(
        per_node.values().all(|n| (3..=7).contains(n)),
        "placed evenly: {per_node:?}"
    );
    assert_eq!(status_keys(&w, "api").len(), 100);

    // One process's metrics cover every hollow node, etcd requests included.
    assert_eq!(metric(&a, "rune_agent_hollow_nodes_registered"), 20.0);
    assert_eq!(metric(&a, "rune_agent_instances{phase=\"Running\"}"), 100.0);
    assert!(metric(&a, "rune_etcd_requests_total{op=\"txn\"}") >= 1.0);
    assert!(metric(&a, "rune_etcd_requests_total{op=\"watch\"}") >= 20.0);

    // Scale down: the removed instances are reported stopped, their records and then
    // their statuses deleted.
    w.rune()
        .args(["scale", "api", "10", "--timeout", "60s"])
        .timeout(LONG)
        .assert()
        .success();
    eventually("90 statuses deleted", LONG, || {
        (status_keys(&w, "api").len() == 10).then_some(())
    });
    wait_ready_long(&w, "api", 10);
    eventually("phase gauges follow", LONG, || {
        (metric(&a, "rune_agent_instances{phase=\"Running\"}") == 10.0).then_some(())
    });

    // SIGTERM: every hollow node's lease is revoked, so their node keys and the
    // statuses on them go at once (not a lease TTL later), and the exit is clean.
    let status = a.terminate(LONG).expect("the hollow agent exits");
    assert_eq!(status.code(), Some(0), "{}", a.logs());
    assert!(node_keys(&w).is_empty(), "{:?}", node_keys(&w));
    assert!(status_keys(&w, "api").is_empty());
    assert!(!a.logs().contains("panicked"), "{}", a.logs());
    assert!(!c.logs().contains("panicked"), "{}", c.logs());
}

#[test]
fn with_a_ready_delay_instances_run_not_ready_first_then_ready() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a = hollow(&w, 2, &["--hollow-ready-after", "2s"]);
    cast(&w, &service_file(&w, "api", 4, ""));

    // Started, not ready yet (as a real agent reports a process before readiness).
    eventually("4 instances started and not ready", LONG, || {
        let all = instances(&w, "api");
        (all.len() == 4
            && all.iter().all(|i| {
                let s = &i["status"];
                s["phase"] == "Starting"
                    && s["ready"] == false
                    && s["startedAt"].is_string()
                    && s["readyAt"].is_null()
            }))
        .then_some(())
    });
    assert_eq!(counts(&w, "api").1, 0, "none ready yet");

    wait_ready_long(&w, "api", 4);
    for i in instances(&w, "api") {
        let s = &i["status"];
        assert_eq!(s["phase"], "Running", "{i}");
        assert_eq!(s["ready"], true, "{i}");
        let at = |f: &str| s[f].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        let waited = at("readyAt").duration_since(at("startedAt"));
        assert!(
            waited >= jiff::SignedDuration::from_millis(1990),
            "ready {waited:?} after it started: {i}"
        );
    }
}

#[test]
fn a_spec_over_100_kib_at_scale_300_fits_etcds_request_limit() {
    let w = World::new();
    let c = controller(&w, "c1");
    let a = hollow(&w, 10, &[]);
    // Over 100 KiB, under the 256 KiB spec limit. Embedded in each of 300 records it
    // would be 30 MiB of writes; records name a revision instead.
    let pad = "x".repeat(110 * 1024);
    let file = service_file(&w, "wide", 300, &format!("  env: {{PAD: {pad}}}\n"));
    assert!(std::fs::metadata(&file).unwrap().len() > 100 * 1024);
    cast(&w, &file);
    wait_ready_long(&w, "wide", 300);

    // No transaction of the controller (or of the hollow nodes) was refused.
    assert_eq!(
        metric(&c, "rune_etcd_request_errors_total{op=\"txn\"}"),
        0.0,
        "{}",
        c.logs()
    );
    assert_eq!(
        metric(&a, "rune_etcd_request_errors_total{op=\"txn\"}"),
        0.0
    );
    assert!(!c.logs().contains("too large"), "{}", c.logs());
    // The spec is stored once, in its revision; records and their node-scoped copies
    // stay small.
    let (records, copies, revisions) = w.block_on_store(async |s| {
        let k = s.keys();
        let records = s.list(&k.instances_of("default", "wide")).await.unwrap().0;
        let copies = s.list(&k.assignments()).await.unwrap().0;
        let revisions = s.list(&k.revisions_of("default", "wide")).await.unwrap().0;
        (records, copies, revisions)
    });
    assert_eq!((records.len(), copies.len()), (300, 300));
    for kv in records.iter().chain(&copies) {
        assert!(
            kv.value.len() < 2048,
            "{}: {} bytes",
            kv.key,
            kv.value.len()
        );
    }
    assert_eq!(revisions.len(), 1);
    assert!(revisions[0].value.len() > 100 * 1024);
}

#[test]
fn a_hollow_count_of_0_or_over_10000_is_refused_naming_the_limit() {
    let w = World::new();
    for n in ["0", "10001"] {
        let data = w.dir.join(format!("refused-{n}"));
        let out = assert_cmd::Command::cargo_bin("rune-agent")
            .unwrap()
            .args(["--hollow", n, "--data-dir", data.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--node-name", "h"])
            .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
            .env("RUNE_ETCD_PREFIX", &w.prefix)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--hollow {n}: {stderr}");
        assert!(
            stderr.contains("--hollow") && stderr.contains("10000"),
            "names the flag and the limit: {stderr}"
        );
    }
    assert!(node_keys(&w).is_empty(), "nothing registered");
}

#[test]
fn a_hollow_node_whose_name_is_taken_stops_alone() {
    let w = World::new();
    // A real agent holds h-1 first.
    let _real = agent(&w, "h-1");
    let a = w.agent("h", &["--hollow", "3", "--lease-ttl", "3s"]);
    eventually("h-0 and h-2 registered", LONG, || {
        let logs = a.logs();
        (logs.contains("hollow node not started") && node_keys(&w).len() == 3).then_some(())
    });
    assert!(a.logs().contains("h-1"), "{}", a.logs());
    let (code, body) = a.http_get("/readyz").expect("readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("2 of 3 hollow nodes registered"), "{body}");
    assert_eq!(metric(&a, "rune_agent_hollow_nodes_registered"), 2.0);
}
