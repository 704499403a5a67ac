//! Node-scoped keys through the real binaries: an agent reads only its own node's
//! assignments (checked by what etcd sent it, from its own metrics), and a prefix
//! holding an older key layout is refused as a whole.

use std::time::Duration;

use crate::harness::World;
use crate::support::wait::eventually;
use crate::system::*;

/// A counter's value from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn keys_received(agent: &crate::harness::Daemon) -> f64 {
    let (_, body) = agent.http_get("/metrics").expect("agent /metrics answers");
    metric(&body, "rune_etcd_keys_received_total").expect("keys received is exported")
}

#[test]
fn an_agent_receives_only_its_own_nodes_assignments() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _busy = agent(&w, "busy");
    deploy(&w, &sleeper(&w, "api", 30, ""), "api", 30);
    assert!(nodes_of(&w, "api").iter().all(|n| n == "busy"));

    // A second node joins a fleet of 30 instances elsewhere: it lists nothing of
    // theirs, and none of their changes reach it.
    let quiet = agent(&w, "quiet");
    eventually(
        "the second node registered",
        Duration::from_secs(30),
        || w.etcd.get(&w.key("nodes/quiet")).map(drop),
    );
    let before = keys_received(&quiet);
    w.rune().args(["restart", "api"]).assert().success();
    wait_ready(&w, "api", 30);
    let on_quiet = nodes_of(&w, "api").iter().filter(|n| *n == "quiet").count();
    assert!(on_quiet > 0, "the restart spread the instances");
    let received = keys_received(&quiet) - before;
    // Each of its own instances is a handful of events (created, asked to stop,
    // removed); the other node's 30 + 30 instances would be hundreds.
    assert!(
        received <= (on_quiet * 4) as f64,
        "the quiet node received {received} keys for {on_quiet} instances of its own"
    );
    assert!(
        w.etcd
            .keys(&w.key("assignments/busy/"))
            .iter()
            .all(|k| k.contains("/api/")),
        "copies live under their node"
    );
}

#[test]
fn a_prefix_of_an_older_layout_is_refused_by_the_controller_and_agents() {
    let w = World::new();
    // An instance record written by an older rune, and no layout marker.
    w.etcd.put(
        &w.key("instances/default/api/old1"),
        r#"{"id":"old1","namespace":"default","service":"api","node":"n1","desired":"Running","spec":{"name":"api","command":"sleep 1"},"specRevision":3,"createdAt":"2026-01-01T00:00:00Z"}"#,
    );
    let mut c = w.controller("c1", FAST_CONTROLLER);
    let status = c
        .wait_exit(Duration::from_secs(30))
        .expect("the controller refuses to start");
    assert!(!status.success());
    let logs = c.logs();
    assert!(
        logs.contains("older layout") && logs.contains("--etcd-prefix"),
        "says what it found and what to do: {logs}"
    );
    assert!(w.etcd.get(&w.key("layout")).is_none(), "nothing was marked");

    // A marker of another layout stops agents too, with exit 2.
    w.etcd.put(
        &w.key("layout"),
        r#"{"layout":99,"writtenBy":"rune 9.0.0"}"#,
    );
    let mut a = w.agent("n1", &[]);
    let status = a
        .wait_exit(Duration::from_secs(30))
        .expect("the agent refuses to start");
    assert_eq!(status.code(), Some(2), "{}", a.logs());
    assert!(a.logs().contains("layout 99"), "{}", a.logs());
}

#[test]
fn a_new_prefix_is_marked_with_the_current_layout() {
    let w = World::new();
    let _c = controller(&w, "c1");
    eventually("the layout marker", Duration::from_secs(30), || {
        w.etcd.get(&w.key("layout"))
    });
    let marker: serde_json::Value =
        serde_json::from_str(&w.etcd.get(&w.key("layout")).unwrap()).unwrap();
    assert_eq!(marker["layout"], 2, "{marker}");
}
