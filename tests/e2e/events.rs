//! Events and describe (issue 15, part 2), through the real binaries: what a failed
//! scale leaves in `rune events`, a repeat raising the count, the JSON fields, the
//! lease every event key is on, and `rune describe service|instance`.

use std::time::Duration;

use serde_json::Value;

use crate::harness::World;
use crate::support::wait::{eventually, wait_until};
use crate::system::*;

/// `rune events ARGS -o json`: the events, oldest first.
fn events(w: &World, args: &[&str]) -> Vec<Value> {
    let out = stdout_ok(w.rune().arg("events").args(args).args(["-o", "json"]));
    let doc: Value = serde_json::from_slice(&out).unwrap();
    doc["events"].as_array().cloned().unwrap()
}

/// The first event of `reason` (on an object starting with `object`), once there is one.
fn event_of(w: &World, svc: &str, reason: &str, object: &str) -> Value {
    eventually(
        &format!("a {reason} event on {object}"),
        Duration::from_secs(60),
        || find(&events(w, &[svc]), reason, object),
    )
}

fn find(events: &[Value], reason: &str, object: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| e["reason"] == reason && e["object"].as_str().unwrap().starts_with(object))
        .cloned()
}

#[test]
fn a_failed_scale_is_told_by_events_and_describe() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &gated(&w, "api", 2), "api", 2);
    std::fs::remove_file(w.dir.join("gate")).unwrap();
    w.rune().args(["scale", "api", "4"]).assert().code(1);

    // The controller's side: scheduled, the operation, its rollback.
    let scheduled = event_of(&w, "api", "Scheduled", "instance/");
    assert_eq!(scheduled["type"], "Normal");
    assert_eq!(scheduled["node"], "n1");
    assert_eq!(scheduled["source"], "controller");
    let rolled = event_of(&w, "api", "RolledBack", "service/api");
    assert_eq!(rolled["type"], "Warning");
    assert!(
        rolled["message"]
            .as_str()
            .unwrap()
            .contains("rolled back to 2"),
        "{rolled}"
    );
    // The agent's side: the exit before ready and the back-off.
    let exited = event_of(&w, "api", "Exited", "instance/");
    assert_eq!(exited["type"], "Warning");
    assert_eq!(exited["message"], "exit code 1");
    assert_eq!(exited["source"], "agent n1");
    assert_eq!(exited["node"], "n1");
    let backoff = event_of(&w, "api", "BackOff", "instance/");
    assert_eq!(backoff["message"], "back-off restarting after exit code 1");
    for e in [&scheduled, &rolled, &exited, &backoff] {
        for field in [
            "type",
            "reason",
            "message",
            "object",
            "source",
            "count",
            "firstSeen",
            "lastSeen",
        ] {
            assert!(!e[field].is_null(), "{field} in {e}");
        }
        assert!(e["count"].as_u64().unwrap() >= 1, "{e}");
    }
    // Newest last.
    let all = events(&w, &["api"]);
    let seen: Vec<jiff::Timestamp> = all
        .iter()
        .map(|e| e["lastSeen"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(seen.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");

    // The same failed scale again: the same "taken up" event, counted twice.
    wait_ready(&w, "api", 2);
    w.rune().args(["scale", "api", "4"]).assert().code(1);
    let started = eventually(
        "the repeated OperationStarted counted twice",
        Duration::from_secs(30),
        || {
            events(&w, &["api"]).into_iter().find(|e| {
                e["reason"] == "OperationStarted"
                    && e["message"].as_str().unwrap().starts_with("scale 2 → 4")
                    && e["count"].as_u64() >= Some(2)
            })
        },
    );
    assert!(
        started["message"]
            .as_str()
            .unwrap()
            .starts_with("scale 2 → 4")
    );
    assert_ne!(started["firstSeen"], started["lastSeen"], "{started}");
    let repeats = events(&w, &["api"])
        .iter()
        .filter(|e| e["message"] == started["message"])
        .count();
    assert_eq!(repeats, 1, "a repeat is one key, not two");

    // The table: kubectl's columns.
    let table =
        String::from_utf8(w.rune().args(["events", "api"]).output().unwrap().stdout).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE", "COUNT"
        ]
    );
    assert!(table.contains("RolledBack"), "{table}");

    // describe service: every section, the rollback and the events among them.
    let out = w
        .rune()
        .args(["describe", "service", "api"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Name:             api",
        "Command:          sh -c",
        "Restart policy:   Always",
        "Revision:",
        "Status:",
        "2 desired | 2 ready | 2 current",
        "Conditions:",
        "Instances:",
        "n1",
        "Operations:",
        "RolledBack",
        "Events:",
        "BackOff",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // describe instance, by the id `rune get instances` shows and as NS/SVC/ID.
    let crashed = exited["object"]
        .as_str()
        .unwrap()
        .trim_start_matches("instance/")
        .to_string();
    let running = instances(&w, "api")[0]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w
        .rune()
        .args(["describe", "instance", &running])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        format!("ID:               {running}"),
        "Service:          api".to_string(),
        "Node:             n1".to_string(),
        "Phase:          Running".to_string(),
        "Scheduled".to_string(),
        "Started".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    let out = w
        .rune()
        .args(["describe", "instance", &format!("default/api/{running}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The crashed instance's record is gone after the rollback: not found, exit 4.
    let gone = wait_until(Duration::from_secs(30), || {
        let out = w
            .rune()
            .args(["describe", "instance", &crashed])
            .output()
            .unwrap();
        (out.status.code() == Some(4)).then_some(())
    });
    assert!(gone.is_some(), "describe of a removed instance exits 4");
    w.rune()
        .args(["describe", "service", "nope"])
        .assert()
        .code(4);
    w.rune().args(["events", "nope"]).assert().code(4);

    // Every event key is on a lease (the writer's, about an hour).
    let out = w
        .etcd
        .etcdctl(&["get", &w.key("events/"), "--prefix", "-w", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kvs = doc["kvs"].as_array().unwrap();
    assert!(!kvs.is_empty());
    for kv in kvs {
        assert_ne!(kv["lease"].as_i64().unwrap_or(0), 0, "no lease: {kv}");
    }
    let lease = format!("{:x}", kvs[0]["lease"].as_i64().unwrap());
    let ttl = w.etcd.etcdctl(&["lease", "timetolive", &lease]);
    let ttl = String::from_utf8_lossy(&ttl.stdout).to_string();
    let secs: u64 = ttl
        .split("remaining(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{ttl}"));
    assert!((3000..=3600).contains(&secs), "{ttl}");
}

#[test]
fn a_crash_loop_is_one_event_whose_count_grows_and_watch_prints_it() {
    let w = World::new();
    let _system = one_node(&w);
    let file = w.file(
        "crash.yaml",
        "service:\n  name: crash\n  command: [\"sh\", \"-c\", \"exit 3\"]\n",
    );
    cast(&w, &file);
    let watch = spawn_rune(&w, &["events", "crash", "-w"]);
    let looped = eventually(
        "the exit counted at least three times",
        Duration::from_secs(60),
        || {
            find(&events(&w, &["crash"]), "Exited", "instance/")
                .filter(|e| e["count"].as_u64() >= Some(3))
        },
    );
    assert_eq!(looped["message"], "exit code 3");
    let exits = events(&w, &["crash"])
        .into_iter()
        .filter(|e| e["reason"] == "Exited" && e["object"] == looped["object"])
        .count();
    assert_eq!(exits, 1, "repeats coalesce into one key");
    // `-A` lists it with its namespace; `-w` printed it as it happened.
    let all = String::from_utf8(w.rune().args(["events", "-A"]).output().unwrap().stdout).unwrap();
    assert!(
        all.lines().next().unwrap().starts_with("NAMESPACE"),
        "{all}"
    );
    let _ = nix_kill(&watch);
    let out = watch.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("Exited"), "{printed}");
    assert!(printed.contains("exit code 3"), "{printed}");
}

#[test]
fn a_failing_probe_is_an_event_and_describe_instance_shows_its_error() {
    let w = World::new();
    let _system = one_node(&w);
    let file = w.file(
        "probe.yaml",
        &format!(
            "service:\n  name: probe\n  command: [\"python3\", \"-c\", \"import time; time.sleep(100000)\", \"{}\"]\n  health:\n    readiness: {{type: exec, command: [\"test\", \"-f\", \"/nonexistent/ready\"], intervalSeconds: 1}}\n  stopGracePeriod: 1s\n",
            marker(&w, "probe")
        ),
    );
    cast(&w, &file);
    let failed = eventually(
        "the probe failure counted twice",
        Duration::from_secs(60),
        || {
            find(&events(&w, &["probe"]), "ProbeFailed", "instance/")
                .filter(|e| e["count"].as_u64() >= Some(2))
        },
    );
    assert_eq!(failed["type"], "Warning");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("readiness probe failed"),
        "{failed}"
    );
    let id = failed["object"]
        .as_str()
        .unwrap()
        .trim_start_matches("instance/");
    let text = eventually(
        "describe shows the probe error",
        Duration::from_secs(30),
        || {
            let out = w
                .rune()
                .args(["describe", "instance", id])
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            (!text.contains("Probe error:    -")).then_some(text)
        },
    );
    assert!(text.contains("ProbeFailed"), "{text}");
    assert!(text.contains("Ready:          false"), "{text}");
}

/// Ends a `rune events -w` the way a user does (Ctrl-C).
fn nix_kill(child: &std::process::Child) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    Ok(())
}
