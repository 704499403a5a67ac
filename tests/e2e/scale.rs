//! `rune scale`, `restart`, `stop` and `history`: every command of the seed
//! document, through the real binaries.

use std::time::Duration;

use predicates::prelude::*;

use crate::harness::World;
use crate::support::procs::process_alive;
use crate::support::wait::eventually;
use crate::system::*;

#[test]
fn immediate_scale_blocks_until_ready_and_no_wait_returns_the_operation_id() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);

    w.rune()
        .args(["scale", "api", "5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("service default/api scaled to 5"));
    assert_eq!(counts(&w, "api"), (5, 5, 5));
    let yaml = String::from_utf8(
        w.rune()
            .args(["get", "service", "api", "-o", "yaml"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let at = yaml.lines().position(|l| l == "status:").unwrap();
    let five: Vec<&str> = yaml.lines().skip(at + 1).take(5).collect();
    assert!(
        five[0].contains("desiredReplicas: 5") && five[1].contains("readyReplicas: 5"),
        "{five:?}"
    );
    assert!(
        five[4].contains("lastScaleReason: scale to 5 requested by"),
        "{five:?}"
    );

    let out = w
        .rune()
        .args(["scale", "api", "2", "--no-wait"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let op = w.etcd.get(&w.key("operations/default/api")).unwrap();
    let op: serde_json::Value = serde_json::from_str(&op).unwrap();
    assert_eq!(op["id"], id.as_str());
    for f in [
        "kind",
        "from",
        "to",
        "mode",
        "step",
        "interval",
        "rollbackOnFail",
        "timeout",
        "requestedAt",
        "requestedBy",
        "reason",
    ] {
        assert!(op.get(f).is_some(), "operation record lacks {f}: {op}");
    }
    assert_eq!(
        (
            op["from"].as_u64(),
            op["to"].as_u64(),
            op["timeout"].as_str()
        ),
        (Some(5), Some(2), Some("5m"))
    );
    wait_ready(&w, "api", 2);
}

#[test]
fn gradual_ramps_up_and_down_through_the_intermediate_counts() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);

    let mut watcher = spawn_rune(&w, &["get", "service", "api", "-o", "json", "-w"]);
    w.rune()
        .args([
            "scale",
            "api",
            "5",
            "--mode=gradual",
            "--step=2",
            "--interval=1s",
        ])
        .assert()
        .success();
    w.rune()
        .args([
            "scale",
            "api",
            "1",
            "--mode=gradual",
            "--step=2",
            "--interval=1s",
        ])
        .assert()
        .success();
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    let seen: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"desiredReplicas\"") || l.contains("\"stepTarget\""))
        .filter(|l| l.contains("stepTarget"))
        .filter_map(|l| {
            l.split(':')
                .nth(1)?
                .trim()
                .trim_end_matches(',')
                .parse()
                .ok()
        })
        .collect();
    for step in [3, 5, 3, 1] {
        assert!(
            seen.contains(&step),
            "step target {step} never seen: {seen:?}"
        );
    }
    assert_eq!(counts(&w, "api"), (1, 1, 1));
}

#[test]
fn a_failing_scale_rolls_back_and_exits_1_or_pins_with_rollback_off() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &gated(&w, "api", 2), "api", 2);
    std::fs::remove_file(w.dir.join("gate")).unwrap();

    w.rune()
        .args(["scale", "api", "4"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("rolled back to 2")
                .and(predicate::str::contains("exit code 1")),
        );
    let s = service(&w, "api");
    assert_eq!(s["spec"]["scale"], 2, "the spec was rolled back: {s}");
    assert!(
        s["status"]["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{s}"
    );
    wait_ready(&w, "api", 2);

    w.rune()
        .args(["scale", "api", "3", "--rollback-on-fail=false"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed").and(predicate::str::contains("keeping 3")));
    let s = service(&w, "api");
    assert_eq!(s["spec"]["scale"], 3, "pinned");
    assert_eq!(s["status"]["desiredReplicas"], 3);
    assert_eq!(s["status"]["readyReplicas"], 2, "partial progress shows");
    assert_eq!(s["status"]["operation"]["phase"], "Failed");
}

#[test]
fn timeouts_exit_codes_and_preconditions() {
    let w = World::new();
    let _a = agent(&w, "n1");
    cast(&w, &gated(&w, "api", 1));
    // No controller: the CLI stops waiting and says why (exit 3).
    w.rune()
        .args(["scale", "api", "2", "--timeout=3s"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("is rune-controller running?"));

    // The request stays: the controller that starts now runs it late, with its
    // whole timeout counted from the pickup.
    let _c = controller(&w, "c1");
    wait_ready(&w, "api", 2);
    // The controller enforces --timeout: a scale that cannot become ready fails (exit 1).
    std::fs::remove_file(w.dir.join("gate")).unwrap();
    w.rune()
        .args([
            "scale",
            "api",
            "3",
            "--timeout=3s",
            "--rollback-on-fail=false",
        ])
        .assert()
        .code(1);
    // Preconditions and bad flags.
    w.rune()
        .args(["scale", "api", "1", "--current-replicas", "7"])
        .assert()
        .code(4);
    w.rune().args(["scale", "api", "-1"]).assert().code(2);
    w.rune()
        .args(["scale", "api", "2", "--step", "0"])
        .assert()
        .code(2);
    w.rune()
        .args(["scale", "api", "2", "--mode", "sideways"])
        .assert()
        .code(2);
    w.rune()
        .args([
            "scale",
            "api",
            "20",
            "--mode=gradual",
            "--step=1",
            "--interval=1m",
            "--timeout=2m",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("shorter than the plan needs"));
    w.rune().args(["scale", "nope", "2"]).assert().code(4);
}

#[test]
fn a_newer_operation_supersedes_a_running_one() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);
    let slow = spawn_rune(
        &w,
        &[
            "scale",
            "api",
            "10",
            "--mode=gradual",
            "--step=1",
            "--interval=1m",
        ],
    );
    eventually("first step under way", Duration::from_secs(30), || {
        (service(&w, "api")["status"]["operation"]["step"] == 1).then_some(())
    });
    let out = w
        .rune()
        .args(["scale", "api", "2", "--no-wait"])
        .output()
        .unwrap();
    let newer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let slow = slow.wait_with_output().unwrap();
    assert_eq!(
        slow.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&slow.stderr)
    );
    assert!(
        String::from_utf8_lossy(&slow.stderr).contains(&newer),
        "names what replaced it"
    );
    wait_ready(&w, "api", 2);
}

#[test]
fn a_gitops_spec_write_is_a_scale_with_the_spec_defaults() {
    let w = World::new();
    let _system = one_node(&w);
    let scaling = "  scaling: {mode: gradual, step: 2, interval: 1s}\n";
    deploy(&w, &sleeper(&w, "api", 1, scaling), "api", 1);
    let yaml = std::fs::read_to_string(sleeper(&w, "api", 4, scaling)).unwrap();
    w.etcd.put(&w.key("services/default/api"), &yaml);
    wait_ready(&w, "api", 4);
    let s = service(&w, "api");
    assert!(
        s["status"]["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("spec change"),
        "{s}"
    );
    assert_eq!(s["status"]["operation"]["mode"], "gradual");
    assert_eq!(s["status"]["operation"]["steps"], 2);
    // The etcdctl write carries no createdAt; the age comes from the controller.
    let table =
        String::from_utf8(w.rune().args(["get", "services"]).output().unwrap().stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("api")).unwrap();
    assert!(!row.trim_end().ends_with('-'), "AGE is known: {row}");
}

#[test]
fn restart_replaces_every_instance_with_the_current_spec_and_stop_leaves_nothing() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(
        &w,
        &sleeper(&w, "api", 2, "  env: {VERSION: \"1\"}\n"),
        "api",
        2,
    );
    let v1 = pids(&w, "api");
    cast(&w, &sleeper(&w, "api", 2, "  env: {VERSION: \"2\"}\n"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pids(&w, "api"),
        v1,
        "a spec edit does not touch running instances"
    );

    w.rune()
        .args(["restart", "api"])
        .assert()
        .success()
        .stdout(predicate::str::contains("restarted"));
    let v2 = pids(&w, "api");
    assert_eq!(v2.len(), 2);
    assert!(
        v1.iter().all(|p| !v2.contains(p) && !process_alive(*p)),
        "every instance replaced"
    );
    let env = std::fs::read(format!("/proc/{}/environ", v2[0])).unwrap();
    assert!(
        String::from_utf8_lossy(&env).contains("VERSION=2"),
        "picked up the new spec"
    );

    // Drain for maintenance, then bring it back (the seed's common patterns).
    w.rune().args(["stop", "api"]).assert().success();
    assert!(
        live_processes(&w, "api").is_empty(),
        "stop waits until every process is gone"
    );
    assert_eq!(
        service(&w, "api")["spec"]["scale"],
        0,
        "the spec stays, at 0"
    );
    w.rune()
        .args(["restart", "api"])
        .assert()
        .success()
        .stderr(predicate::str::contains("last scale, 2"));
    w.rune().args(["stop", "api"]).assert().success();
    w.rune().args(["scale", "api", "3"]).assert().success();
    assert_eq!(live_processes(&w, "api").len(), 3);

    let out = w
        .rune()
        .args(["history", "api", "-o", "json"])
        .output()
        .unwrap();
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = h["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..5],
        ["scale", "stop", "restart", "stop", "restart"],
        "{h}"
    );
    w.rune()
        .args(["history", "api"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Succeeded"));
}

#[test]
fn the_seed_slow_ramp_is_planned_with_a_grown_timeout() {
    let w = World::new();
    let _system = one_node(&w);
    cast(&w, &sleeper(&w, "workers", 0, ""));
    w.rune()
        .args([
            "scale",
            "workers",
            "50",
            "--mode=gradual",
            "--step=5",
            "--interval=1m",
            "--no-wait",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("9m").and(predicate::str::contains("14m")));
    let op: serde_json::Value =
        serde_json::from_str(&w.etcd.get(&w.key("operations/default/workers")).unwrap()).unwrap();
    assert_eq!(op["timeout"], "14m");
    eventually("first step of 10 ready", Duration::from_secs(60), || {
        let s = service(&w, "workers");
        (s["status"]["operation"]["steps"] == 10 && s["status"]["readyReplicas"] == 5).then_some(())
    });
    w.rune().args(["stop", "workers"]).assert().success();
}

#[test]
fn killing_the_leader_mid_gradual_scale_changes_only_timing() {
    let w = World::new();
    let (mut c1, c2) = leader_and_standby(&w);
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);
    let waiter = spawn_rune(
        &w,
        &[
            "scale",
            "api",
            "5",
            "--mode=gradual",
            "--step=1",
            "--interval=2s",
        ],
    );
    eventually("step 2 reached", Duration::from_secs(60), || {
        (service(&w, "api")["status"]["operation"]["step"].as_u64() >= Some(2)).then_some(())
    });
    let before = pids(&w, "api");
    c1.kill9();
    let out = waiter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c2.logs().contains("became leader"));
    assert_kept(&w, "api", &before, 5);
}

#[test]
fn the_example_services_behave_as_their_comments_say() {
    let w = World::new();
    let _system = one_node(&w);
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    w.rune()
        .arg("cast")
        .arg(format!("{manifests}/web.yaml"))
        .arg(format!("{manifests}/flaky.yaml"))
        .assert()
        .success();
    wait_ready(&w, "web", 2);
    wait_ready(&w, "flaky", 2);
    w.rune().args(["scale", "web", "3"]).assert().success();
    // flaky fails on purpose beyond 2 instances: the scale is rolled back.
    w.rune()
        .args(["scale", "flaky", "4"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("rolled back to 2"));
    wait_ready(&w, "flaky", 2);
    let h =
        String::from_utf8(w.rune().args(["history", "flaky"]).output().unwrap().stdout).unwrap();
    assert!(h.contains("RolledBack"), "{h}");
}
