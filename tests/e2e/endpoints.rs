//! `endpoints/<ns>/<svc>`: the controller lists the ready instances, an instance
//! leaves the list before its SIGTERM (with `shutdownDelay` to spare), and a
//! client following the key (`traffic.rs`) sees no failed request while a service
//! scales down, but does see the gap of a plain, stop-the-world restart.

use std::time::Duration;

use serde_json::Value;

use crate::harness::World;
use crate::support::wait::{eventually, wait_until};
use crate::system::*;
use crate::traffic::Traffic;

/// An HTTP service of `scale` python http.servers on loopback, ready when `/`
/// answers (plus `extra` spec lines). With [`traffic`] and [`flowing`], what a
/// zero-downtime test of another suite (rolling restarts) needs.
pub(crate) fn web(w: &World, name: &str, scale: u32, extra: &str) -> std::path::PathBuf {
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:
  name: {name}
  scale: {scale}
  command: [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"${{PORT}}\"]
  workingDir: {dir}
  ports: [{{name: http}}]
  health:
    readiness: {{type: http, port: http, path: /, intervalSeconds: 1}}
  stopGracePeriod: 5s
{extra}",
            dir = w.dir.display()
        ),
    )
}

/// `rune get endpoints NAME -o json`, `Null` when the command fails.
pub(crate) fn endpoints(w: &World, name: &str) -> Value {
    let out = w
        .rune()
        .args(["get", "endpoints", name, "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub(crate) fn listed(w: &World, name: &str) -> Option<Vec<Value>> {
    endpoints(w, name)["endpoints"].as_array().cloned()
}

/// Traffic at 50 requests/s against the `http` port of service `name`'s endpoints.
pub(crate) fn traffic(w: &World, name: &str) -> Traffic {
    let key = w.key(&format!("endpoints/default/{name}"));
    Traffic::start(&w.etcd.client_url, &key, "http", "/", 50)
}

/// Waits until the traffic saw `n` endpoints and `more` successes beyond now.
pub(crate) fn flowing(t: &Traffic, n: usize, more: u64) {
    let base = t.tally().ok;
    eventually(
        &format!("traffic through {n} endpoints"),
        Duration::from_secs(60),
        || {
            let seen = t.endpoints().map_or(0, |e| e.len());
            (seen == n && t.tally().ok >= base + more).then_some(())
        },
    );
}

#[test]
fn endpoints_follow_readiness_and_go_with_the_service() {
    let w = World::new();
    let _system = one_node(&w);
    let gate = w.dir.join("ready");
    let file = w.file(
        "gated.yaml",
        &format!(
            "service:
  name: gated
  scale: 2
  command: [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"${{PORT}}\"]
  workingDir: {dir}
  ports: [{{name: http}}]
  health:
    readiness: {{type: exec, command: [\"test\", \"-f\", \"{gate}\"], intervalSeconds: 1, failureThreshold: 1}}
  stopGracePeriod: 5s
",
            dir = w.dir.display(),
            gate = gate.display()
        ),
    );
    cast(&w, &file);
    // Running but not ready: the key exists and lists nobody.
    eventually("two instances running", Duration::from_secs(60), || {
        (counts(&w, "gated").2 == 2).then_some(())
    });
    eventually("an empty endpoints key", Duration::from_secs(30), || {
        listed(&w, "gated").filter(Vec::is_empty)
    });

    std::fs::write(&gate, "").unwrap();
    let list = eventually(
        "both ready instances listed",
        Duration::from_secs(60),
        || listed(&w, "gated").filter(|l| l.len() == 2),
    );
    let statuses = instances(&w, "gated");
    for e in &list {
        assert_eq!(e["address"], "127.0.0.1", "--node-ip: {e}");
        assert_eq!(e["node"], "n1");
        let status = statuses
            .iter()
            .map(|i| &i["status"])
            .find(|s| s["id"] == e["instance"])
            .unwrap_or_else(|| panic!("{e} is an instance"));
        assert_eq!(e["ports"]["http"], status["ports"]["http"], "{e}");
    }
    let node: Value = serde_json::from_str(&w.etcd.get(&w.key("nodes/n1")).unwrap()).unwrap();
    assert_eq!(node["ip"], "127.0.0.1");
    let table = String::from_utf8(stdout_ok(w.rune().args(["get", "endpoints"]))).unwrap();
    let first = list[0]["instance"].as_str().unwrap();
    assert!(
        table.contains("SERVICE") && table.contains(first) && table.contains("http:"),
        "{table}"
    );

    // Unready: out of the list, though still running.
    std::fs::remove_file(&gate).unwrap();
    eventually("unready instances leave", Duration::from_secs(60), || {
        listed(&w, "gated").filter(Vec::is_empty)
    });
    assert_eq!(counts(&w, "gated").2, 2, "still running");

    // The key goes with the service.
    w.rune()
        .args(["delete", "service", "gated"])
        .assert()
        .success();
    eventually("the key is deleted", Duration::from_secs(60), || {
        w.etcd
            .get(&w.key("endpoints/default/gated"))
            .is_none()
            .then_some(())
    });
    w.rune()
        .args(["get", "endpoints", "gated"])
        .assert()
        .code(4);
}

#[test]
fn a_scale_down_with_a_shutdown_delay_fails_no_request() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &web(&w, "web", 4, "  shutdownDelay: 3s\n"), "web", 4);
    let t = traffic(&w, "web");
    flowing(&t, 4, 100);

    let mut scale = spawn_rune(&w, &["scale", "web", "2"]);
    // During the delay the instance is out of the endpoints, still running, and
    // says why it has not stopped yet.
    let waiting = wait_until(Duration::from_secs(30), || {
        let stopping = instances(&w, "web").into_iter().find(|i| {
            i["status"]["phase"] == "Stopping"
                && i["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("shutdownDelay 3s"))
        })?;
        Some((stopping, listed(&w, "web").unwrap_or_default()))
    });
    let status = scale.wait().unwrap();
    assert!(status.success(), "rune scale web 2: {status}");
    flowing(&t, 2, 100);
    let tally = t.stop();
    let (stopping, listed_then) = waiting.expect("an instance seen waiting out its shutdownDelay");
    assert!(
        listed_then
            .iter()
            .all(|e| e["instance"] != stopping["instance"]["id"]),
        "an instance waiting for its SIGTERM is out of the endpoints: {stopping} {listed_then:?}"
    );
    assert!(
        stopping["status"]["pid"].is_u64(),
        "still running: {stopping}"
    );
    assert_eq!(
        tally.failed, 0,
        "requests failed during the scale-down: {:#?}",
        tally.failures
    );
    assert!(
        tally.answered_by.len() >= 4,
        "every instance served: {tally:?}"
    );
    assert_eq!(listed(&w, "web").map(|l| l.len()), Some(2));
}

#[test]
fn a_plain_restart_shows_the_gap() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &web(&w, "web", 4, ""), "web", 4);
    let t = traffic(&w, "web");
    flowing(&t, 4, 100);
    w.rune().args(["restart", "web"]).assert().success();
    flowing(&t, 4, 100);
    let tally = t.stop();
    // Stop-the-world, as the seed says: every instance leaves, none is ready
    // until the new ones are. The client either hit instances going down or found
    // no endpoint at all for a while.
    assert!(
        tally.failed > 0 || tally.longest_empty > Duration::ZERO,
        "no gap seen: {tally:?}"
    );
    eprintln!(
        "plain restart: {} ok, {} failed, no endpoint for {:?}",
        tally.ok, tally.failed, tally.longest_empty
    );
}

#[test]
fn endpoints_follow_a_node_address_rewritten_in_place() {
    // An agent restarted with another --node-ip reclaims its live lease and
    // rewrites its node key in place: the endpoints follow at once, not at the
    // next resync (10 minutes here).
    let w = World::new();
    let _c = w.controller(
        "c1",
        &[crate::system::FAST_CONTROLLER, &["--resync", "10m"]].concat(),
    );
    let _a = crate::system::agent(&w, "n1");
    cast(&w, &web(&w, "moved", 1, ""));
    eventually("the instance listed", Duration::from_secs(60), || {
        listed(&w, "moved").filter(|l| l.len() == 1)
    });
    let key = w.key("nodes/n1");
    let mut node: Value = serde_json::from_str(&w.etcd.get(&key).unwrap()).unwrap();
    assert_eq!(node["ip"], "127.0.0.1");
    node["ip"] = "127.0.0.2".into();
    let lease = format!("{:x}", node["leaseId"].as_i64().unwrap());
    let out = w
        .etcd
        .etcdctl(&["put", &key, &node.to_string(), &format!("--lease={lease}")]);
    assert!(out.status.success(), "{out:?}");
    eventually("the new address listed", Duration::from_secs(30), || {
        listed(&w, "moved").filter(|l| l.len() == 1 && l[0]["address"] == "127.0.0.2")
    });
}
