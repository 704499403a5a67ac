//! The life of an operation record beyond the happy path, through the real binaries:
//! picked up late, overwritten before any controller saw it, waited on with a
//! timeout that must be kept, stops that report what is left, and the flaky demo's
//! rollback when no stable scale was recorded yet.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use predicates::prelude::*;
use serde_json::Value;

use crate::harness::World;
use crate::support::wait::eventually;
use crate::system::*;

/// `rune ARGS --no-wait`: the id of the operation it stored.
fn request(w: &World, args: &[&str]) -> String {
    let out = w.rune().args(args).arg("--no-wait").output().unwrap();
    assert!(
        out.status.success(),
        "rune {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `rune history NAME -o json`: the operations, newest first.
fn history(w: &World, name: &str) -> Vec<Value> {
    let out = w
        .rune()
        .args(["history", name, "-o", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    doc["operations"].as_array().cloned().unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 timestamp in a status or record.
fn epoch_seconds(v: &Value) -> f64 {
    let ts: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
    ts.as_millisecond() as f64 / 1000.0
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The operation record as stored.
fn operation_record(w: &World, name: &str) -> Value {
    let text = w
        .etcd
        .get(&w.key(&format!("operations/default/{name}")))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn an_operation_picked_up_after_its_deadline_runs_as_asked_and_history_says_it_started_late() {
    let w = World::new();
    let _a = agent(&w, "n1");
    let mut c1 = controller(&w, "c1");
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);
    c1.kill9();

    // With no controller, the operation's whole time runs out before anyone sees it.
    let id = request(
        &w,
        &[
            "scale",
            "api",
            "3",
            "--mode=gradual",
            "--step=1",
            "--interval=1s",
            "--timeout=6s",
            "--rollback-on-fail=false",
        ],
    );
    let record = operation_record(&w, "api");
    let ran_out_at = epoch_seconds(&record["requestedAt"]) + 6.0;
    eventually(
        "the operation's time ran out",
        Duration::from_secs(30),
        || (now_seconds() > ran_out_at).then_some(()),
    );

    let _c2 = controller(&w, "c2");
    let op = eventually("a scale to 3 ended", Duration::from_secs(60), || {
        let s = service(&w, "api");
        let op = &s["status"]["operation"];
        let ended = op["phase"].as_str().is_some_and(|p| p != "Progressing");
        (s["status"]["desiredReplicas"] == 3 && ended).then(|| op.clone())
    });
    // Its own parameters, not the spec's `scaling:` defaults (immediate, rollback).
    assert_eq!(op["id"], id.as_str(), "the requested operation ran: {op}");
    assert_eq!(op["phase"], "Succeeded", "{op}");
    assert_eq!(op["mode"], "gradual", "{op}");
    assert_eq!(
        (op["stepSize"].as_u64(), op["steps"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(op["rollbackOnFail"], false, "{op}");
    // Its deadline counts from when it was picked up.
    let started = epoch_seconds(&op["startedAt"]);
    assert!(
        started > ran_out_at,
        "picked up after its time ran out: {op}"
    );
    let deadline = epoch_seconds(&op["deadline"]);
    assert!(
        (deadline - started - 6.0).abs() < 0.01,
        "deadline = pickup + timeout: {op}"
    );

    let entry = history(&w, "api")
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .expect("the operation is in the history");
    let note = entry["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("started late: requested at ") && note.contains(", picked up at "),
        "{entry}"
    );
    w.rune()
        .args(["history", "api"])
        .assert()
        .success()
        .stdout(predicate::str::contains("started late: requested at"));
}

#[test]
fn an_operation_superseded_before_any_controller_saw_it_still_shows_in_history() {
    let w = World::new();
    let _a = agent(&w, "n1");
    cast(&w, &sleeper(&w, "api", 1, ""));
    let first = request(&w, &["scale", "api", "2", "--reason", "first try"]);
    let second = request(&w, &["scale", "api", "3", "--reason", "second try"]);
    let record = operation_record(&w, "api");
    assert_eq!(record["supersedes"][0]["id"], first.as_str(), "{record}");

    let _c = controller(&w, "c1");
    wait_ready(&w, "api", 3);
    let ops = eventually(
        "the second operation in history",
        Duration::from_secs(30),
        || {
            let ops = history(&w, "api");
            (ops.first().map(|e| &e["id"]) == Some(&Value::from(second.as_str()))).then_some(ops)
        },
    );
    assert_eq!(ops[0]["result"], "Succeeded", "{ops:?}");
    let superseded = &ops[1];
    assert_eq!(superseded["id"], first.as_str(), "{ops:?}");
    assert_eq!(superseded["result"], "Superseded");
    assert_eq!(superseded["reason"], "first try");
    assert_eq!(superseded["to"], 2);
    assert!(
        superseded["error"].as_str().unwrap().contains(&second),
        "names what replaced it: {superseded}"
    );
}

#[test]
fn a_waiting_cli_keeps_its_timeout_and_rejects_one_under_a_second() {
    let w = World::new();
    cast(&w, &sleeper(&w, "api", 1, ""));
    // No controller: exit 3 soon after the deadline, not a fixed grace later.
    let started = Instant::now();
    w.rune()
        .args(["scale", "api", "4", "--timeout=3s"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("is rune-controller running?"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_millis(5500),
        "exited after {took:?}"
    );

    for command in [
        &["scale", "api", "2"][..],
        &["restart", "api"],
        &["stop", "api"],
    ] {
        for timeout in ["0s", "1ns", "500ms"] {
            w.rune()
                .args(command)
                .arg(format!("--timeout={timeout}"))
                .assert()
                .code(2)
                .stderr(predicate::str::contains("at least 1s"));
        }
        w.rune()
            .args([command[0], "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("at least 1s"));
    }
}

#[test]
fn stop_and_restart_show_how_many_instances_are_left() {
    let w = World::new();
    let _system = one_node(&w);
    // The instances ignore SIGTERM: every stop lasts the 2s grace period, so the
    // waiting CLI shows progress lines before the verdict.
    let m = marker(&w, "api");
    let file = w.file(
        "api.yaml",
        &format!(
            "service:\n  name: api\n  scale: 3\n  command: [\"sh\", \"-c\", \"trap '' TERM; exec python3 -c 'import time; time.sleep(100000)' {m}\"]\n  stopGracePeriod: 2s\n"
        ),
    );
    deploy(&w, &file, "api", 3);

    for command in ["restart", "stop"] {
        let out = w.rune().args([command, "api"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: {stdout}");
        assert!(
            stdout.contains("3 running, stopping"),
            "{command} says what it stops:\n{stdout}"
        );
        assert!(
            !stdout.contains("/0 ready"),
            "{command} shows no ready-of-zero counts:\n{stdout}"
        );
    }
    assert!(live_processes(&w, "api").is_empty());
}

#[test]
fn the_flaky_demo_rolls_back_to_2_as_its_comment_promises() {
    let w = World::new();
    let _system = one_node(&w);
    // Exactly the demo `make run` prints: the scale lands before the cast's own
    // operation settled, so no stable scale was recorded yet.
    let bin = assert_cmd::cargo::cargo_bin("rune");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("sh")
        .args(["-c", "rune cast manifests/flaky.yaml && rune scale flaky 4"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
        .env("RUNE_ETCD_PREFIX", &w.prefix)
        .env("RUNE_CONFIG", w.dir.join("no-rune-config.yaml"))
        .env_remove("RUNE_CONTEXT")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rolled back to 2"), "{stderr}");
    // The failing instances fail the scale as they crash (whichever operation
    // started them), not at its 5m deadline.
    assert!(took < Duration::from_secs(60), "took {took:?}: {stderr}");
    assert_eq!(service(&w, "flaky")["spec"]["scale"], 2);
    wait_ready(&w, "flaky", 2);
}
