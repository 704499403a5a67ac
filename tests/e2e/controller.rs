//! rune-controller through the real binaries: convergence, placement, failover,
//! fencing, lost nodes, bad specs, deletion.

use std::time::Duration;

use crate::harness::World;
use crate::support::procs::process_alive;
use crate::support::wait::eventually;
use crate::system::*;

#[test]
fn converges_on_one_node_then_spreads_over_two() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a1 = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    assert_eq!(nodes_of(&w, "api"), ["n1", "n1", "n1"]);
    let s = service(&w, "api");
    assert!(s["status"]["lastScaleAt"].is_string(), "{s}");
    assert!(
        s["status"]["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("created"),
        "{s}"
    );

    let _a2 = agent(&w, "n2");
    deploy(&w, &sleeper(&w, "api", 6, ""), "api", 6);
    assert_eq!(nodes_of(&w, "api"), ["n1", "n1", "n1", "n2", "n2", "n2"]);

    // Down again via the spec: processes really go away.
    let before = pids(&w, "api");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    eventually("stopped processes gone", Duration::from_secs(30), || {
        (live_processes(&w, "api").len() == 2).then_some(())
    });
    let after = pids(&w, "api");
    assert!(
        after.iter().all(|p| before.contains(p)),
        "scale-down keeps survivors running"
    );
}

#[test]
fn a_killed_instance_is_brought_back() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let victim = pids(&w, "api")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("instance replaced", Duration::from_secs(60), || {
        let p = pids(&w, "api");
        (p.len() == 2 && !p.contains(&victim) && counts(&w, "api") == (2, 2, 2)).then_some(())
    });
    assert_eq!(live_processes(&w, "api").len(), 2);
}

#[test]
fn a_standby_takes_over_when_the_leader_dies_without_touching_instances() {
    let w = World::new();
    let (mut c1, c2) = leader_and_standby(&w);
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    let before = pids(&w, "api");

    c1.kill9();
    cast(&w, &sleeper(&w, "api", 4, ""));
    // Documented failover: lease (3s here) + retry period; allow generous slack.
    eventually("c2 takes over and scales", Duration::from_secs(30), || {
        (c2.logs().contains("became leader") && counts(&w, "api") == (4, 4, 4)).then_some(())
    });
    assert_kept(&w, "api", &before, 4);
}

#[test]
fn a_paused_leader_is_fenced_out_when_it_resumes() {
    let w = World::new();
    let (c1, c2) = leader_and_standby(&w);
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);

    c1.signal("STOP");
    eventually("c2 takes over", Duration::from_secs(30), || {
        c2.logs().contains("became leader").then_some(())
    });
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    c1.signal("CONT");
    eventually(
        "the resumed leader steps down",
        Duration::from_secs(30),
        || c1.logs().contains("stopped leading").then_some(()),
    );
    // The state the new leader wrote stands: no duplicate, nothing undone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counts(&w, "api"), (3, 3, 3));
    assert_eq!(live_processes(&w, "api").len(), 3);
}

#[test]
fn instances_of_a_dead_node_are_replaced_elsewhere_and_cleaned_up_when_it_returns() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a1 = agent(&w, "n1");
    let mut a2 = agent(&w, "n2");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    assert_eq!(nodes_of(&w, "api"), ["n1", "n2"]);
    let orphan = instances(&w, "api")
        .iter()
        .find(|i| i["instance"]["node"] == "n2")
        .and_then(|i| i["status"]["pid"].as_i64())
        .unwrap() as i32;

    a2.kill9();
    // Replaced on n1 after the grace period; the given-up one stays listed as
    // Unknown (nobody can say it stopped) until its node returns.
    let running_on = |w: &World| {
        let mut nodes: Vec<String> = instances(w, "api")
            .iter()
            .filter(|i| i["instance"]["desired"] == "Running")
            .filter_map(|i| i["instance"]["node"].as_str().map(String::from))
            .collect();
        nodes.sort();
        nodes
    };
    eventually(
        "replaced on n1 after the grace period",
        Duration::from_secs(60),
        || (running_on(&w) == ["n1", "n1"] && counts(&w, "api") == (2, 2, 2)).then_some(()),
    );
    let given_up: Vec<_> = instances(&w, "api")
        .into_iter()
        .filter(|i| i["instance"]["node"] == "n2")
        .collect();
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    assert_eq!(given_up[0]["status"]["phase"], "Unknown");
    assert_eq!(given_up[0]["instance"]["nodeLost"], true);
    assert!(
        process_alive(orphan),
        "the agent's death does not kill its instances"
    );

    let _a2 = w.agent("n2", FAST_AGENT);
    eventually(
        "the returning node stops what it should no longer run",
        Duration::from_secs(60),
        || (!process_alive(orphan) && nodes_of(&w, "api") == ["n1", "n1"]).then_some(()),
    );
    assert_eq!(live_processes(&w, "api").len(), 2);
}

#[test]
fn an_invalid_spec_is_a_condition_and_instances_stay() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let before = pids(&w, "api");

    w.etcd.put(
        &w.key("services/default/api"),
        "service:\n  name: api\n  scale: 0\n  command: x\n  bogus: true\n",
    );
    let cond = eventually("SpecInvalid", Duration::from_secs(30), || {
        condition(&w, "api", "SpecInvalid")
    });
    assert!(
        cond["message"].as_str().unwrap().contains(":5:"),
        "line of the bad field: {cond}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pids(&w, "api"), before, "instances untouched");

    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
}

#[test]
fn deleting_a_service_leaves_no_process_and_no_keys() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    w.rune()
        .args(["delete", "service", "api", "--wait"])
        .assert()
        .success()
        .stdout(predicates::str::contains("service default/api deleted"));
    assert!(
        live_processes(&w, "api").is_empty(),
        "--wait returns once every instance is gone"
    );
    eventually("keys gone", Duration::from_secs(30), || {
        let left: Vec<String> = w
            .etcd
            .keys(&w.prefix)
            .into_iter()
            .filter(|k| k.contains("/api"))
            // Events outlive their service, on their writers' leases (about an hour).
            .filter(|k| !k.starts_with(&w.key("events/")))
            .collect();
        left.is_empty().then_some(())
    });
}

#[test]
fn health_and_metrics_endpoints() {
    let w = World::new();
    let c = controller(&w, "c1");
    eventually("leads", Duration::from_secs(30), || {
        c.logs().contains("became leader").then_some(())
    });
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);
    assert_eq!(c.http_get("/healthz").unwrap().0, 200);
    eventually("ready", Duration::from_secs(10), || {
        (c.http_get("/readyz")?.0 == 200).then_some(())
    });
    let (code, body) = c.http_get("/metrics").unwrap();
    assert_eq!(code, 200);
    for m in [
        "rune_controller_is_leader",
        "rune_controller_reconciles",
        "rune_etcd_requests",
    ] {
        assert!(body.contains(m), "{m} missing");
    }
}

/// The fence itself: once a leader's lease is gone (paused past its TTL, say), a
/// write carrying its fence fails even though nothing else stopped it, and the new
/// leader's writes go through.
#[test]
fn writes_with_a_deposed_leaders_fence_are_refused() {
    use rune::controller::election::{ElectionConfig, campaign};
    use rune::store::op;

    let w = World::new();
    w.block_on_store(async |store| {
        let cfg = ElectionConfig {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(100),
        };
        let old = campaign(store, "old", &cfg).await.unwrap();
        let key = store.keys().status("default", "fenced");
        let write = |fence, v: &str| store.txn(vec![fence], vec![op::put(&key, v)], vec![]);
        assert!(write(old.fence(), "from old").await.unwrap().succeeded);

        // The old leader's lease ends without it noticing (as after SIGSTOP).
        store.revoke_lease(old.lease.id).await.unwrap();
        let new = tokio::time::timeout(Duration::from_secs(10), campaign(store, "new", &cfg))
            .await
            .expect("the standby is elected")
            .unwrap();
        assert!(
            !write(old.fence(), "stale").await.unwrap().succeeded,
            "fenced out"
        );
        assert!(write(new.fence(), "from new").await.unwrap().succeeded);
        assert_eq!(store.get(&key).await.unwrap().unwrap().value, b"from new");
        assert!(
            old.lost().await.contains("lease"),
            "the old leader learns it lost"
        );
    });
}

#[test]
fn etcd_down_and_back_changes_nothing_and_the_controller_catches_up() {
    let mut w = World::new();
    let c = controller(&w, "c1");
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let before = pids(&w, "api");

    w.etcd.kill();
    eventually(
        "controller reports not ready",
        Duration::from_secs(30),
        || (c.http_get("/readyz")?.0 == 503).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        before.iter().all(|p| process_alive(*p)),
        "instances keep running without etcd"
    );
    w.etcd.restart();

    eventually("controller ready again", Duration::from_secs(60), || {
        (c.http_get("/readyz")?.0 == 200).then_some(())
    });
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    let after = pids(&w, "api");
    assert!(
        before.iter().all(|p| after.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(live_processes(&w, "api").len(), 3);
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_at_once() {
    let w = World::new();
    // A long lease: a standby taking over quickly proves the lead was given away.
    let slow = [
        "--lease-duration",
        "60s",
        "--renew-deadline",
        "40s",
        "--retry-period",
        "300ms",
    ];
    let mut c1 = w.controller("c1", &slow);
    eventually("c1 leads", Duration::from_secs(30), || {
        c1.logs().contains("became leader").then_some(())
    });
    let c2 = w.controller("c2", &slow);
    eventually("c2 stands by", Duration::from_secs(30), || {
        c2.logs().contains("standing by").then_some(())
    });
    let status = c1
        .terminate(Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    eventually(
        "c2 leads long before the 60s lease would expire",
        Duration::from_secs(20),
        || c2.logs().contains("became leader").then_some(()),
    );
}

/// A stored record that does not parse has its defined outcome, is reported in the
/// RecordsInvalid condition and counted in /metrics: an instance record's process
/// is stopped and the record removed; a garbage operation record is ignored and
/// does not wedge a deletion.
#[test]
fn unparseable_records_are_reported_and_have_their_defined_outcome() {
    let w = World::new();
    let (c, _a) = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let victim = instances(&w, "api")[0].clone();
    let id = victim["instance"]["id"].as_str().unwrap().to_string();
    let pid = victim["status"]["pid"].as_i64().unwrap() as i32;

    // An instance record garbled in etcd: its process stops, the record goes, and
    // the service is brought back to its scale with a new instance.
    w.etcd
        .put(&w.key(&format!("instances/default/api/{id}")), "garbage{");
    eventually(
        "garbled instance stopped and replaced",
        Duration::from_secs(60),
        || {
            let ids: Vec<String> = instances(&w, "api")
                .iter()
                .filter_map(|i| i["instance"]["id"].as_str().map(String::from))
                .collect();
            (!process_alive(pid) && !ids.contains(&id) && counts(&w, "api") == (2, 2, 2))
                .then_some(())
        },
    );
    let s = service(&w, "api");
    let invalid = s["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RecordsInvalid")
        .cloned()
        .unwrap_or_default();
    assert!(
        invalid.to_string().contains(&id) || invalid["status"] == "False",
        "reported while it existed: {s}"
    );
    let metrics = c.http_get("/metrics").unwrap().1;
    assert!(
        metrics.contains("rune_controller_unparseable_records_total{kind=\"instance\"} 1"),
        "{metrics}"
    );

    // A garbage operation record: reported, ignored, and the service can still be
    // deleted.
    w.etcd.put(&w.key("operations/default/api"), "garbage");
    eventually(
        "garbage operation reported",
        Duration::from_secs(30),
        || {
            let invalid = condition(&w, "api", "RecordsInvalid")?;
            invalid["message"]
                .as_str()?
                .contains("ignored")
                .then_some(())
        },
    );
    assert_eq!(counts(&w, "api"), (2, 2, 2), "nothing else changed");
    w.rune()
        .args(["delete", "service", "api", "--wait", "--timeout", "60s"])
        .timeout(Duration::from_secs(90))
        .assert()
        .success();
    assert!(
        w.etcd
            .keys(&w.key(""))
            .iter()
            .filter(|k| !k.starts_with(&w.key("events/")))
            .all(|k| !k.contains("/api"))
    );
}

#[test]
fn a_spec_change_makes_revision_2_and_a_restart_runs_it() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, "  env: {V: one}\n"), "api", 2);
    let revisions_of = |w: &World| -> Vec<u64> {
        let mut r: Vec<u64> = instances(w, "api")
            .iter()
            .filter_map(|i| i["instance"]["revision"].as_u64())
            .collect();
        r.sort();
        r
    };
    assert_eq!(revisions_of(&w), [1, 1]);
    // A scale makes no revision; an env change does, and running instances keep
    // theirs until they are replaced.
    deploy(&w, &sleeper(&w, "api", 3, "  env: {V: one}\n"), "api", 3);
    assert_eq!(revisions_of(&w), [1, 1, 1]);
    cast(&w, &sleeper(&w, "api", 3, "  env: {V: two}\n"));
    let prefix = w.key("revisions/default/api/");
    eventually("revision 2 stored", Duration::from_secs(30), || {
        (w.etcd.keys(&prefix).len() == 2).then_some(())
    });
    assert_eq!(revisions_of(&w), [1, 1, 1]);
    w.rune()
        .args(["restart", "api", "--timeout", "60s"])
        .assert()
        .success();
    wait_ready(&w, "api", 3);
    assert_eq!(revisions_of(&w), [2, 2, 2]);

    let out = w
        .rune()
        .args(["get", "instances", "api", "-o", "wide"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(header.contains("REVISION"), "{table}");
    let column = header.split_whitespace().position(|h| h == "REVISION");
    for row in table.lines().skip(1) {
        assert_eq!(
            row.split_whitespace().nth(column.unwrap()),
            Some("2"),
            "{table}"
        );
    }

    // Each spec stored once, not per instance; records hold no spec.
    let out = w
        .etcd
        .etcdctl(&["get", "--prefix", &prefix, "--print-value-only"]);
    let values: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0]["revision"], 1);
    assert_eq!(values[0]["spec"]["env"]["V"], "one");
    assert_eq!(values[1]["spec"]["env"]["V"], "two");
    assert!(values.iter().all(|v| v["spec"].get("scale").is_none()));
    let out = w.etcd.etcdctl(&[
        "get",
        "--prefix",
        &w.key("instances/"),
        "--print-value-only",
    ]);
    let records = String::from_utf8_lossy(&out.stdout);
    for line in records.lines().filter(|l| !l.is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(record.get("spec").is_none(), "{record}");
        assert_eq!(record["revision"], 2, "{record}");
    }

    // Deleting the service purges its revisions.
    w.rune()
        .args(["delete", "service", "api"])
        .assert()
        .success();
    eventually("revisions purged", Duration::from_secs(60), || {
        w.etcd.keys(&prefix).is_empty().then_some(())
    });
}

#[test]
fn an_instance_record_of_the_old_layout_is_refused_and_replaced() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 1, ""), "api", 1);
    w.etcd.put(
        &w.key("instances/default/api/old1"),
        r#"{"id":"old1","namespace":"default","service":"api","node":"n1","desired":"Running","spec":{"name":"api","command":"sleep 1"},"specRevision":3,"createdAt":"2026-01-01T00:00:00Z"}"#,
    );
    // The controller logs it (and names it in RecordsInvalid while it exists),
    // then removes it; its place is taken by an instance of the current spec.
    let (controller, _agent) = &_system;
    eventually("the refusal is logged", Duration::from_secs(30), || {
        let logs = controller.logs();
        logs.lines()
            .find(|l| l.contains("old1") && l.contains("before spec revisions"))
            .map(String::from)
    });
    eventually("old record removed", Duration::from_secs(30), || {
        w.etcd
            .get(&w.key("instances/default/api/old1"))
            .is_none()
            .then_some(())
    });
    wait_ready(&w, "api", 1);
}
