//! Nodes (issue 15 part 3): agent labels and capacity, `rune get nodes`,
//! `placement: {nodeSelector, maxPerNode}` and the Unschedulable report, cordon and
//! uncordon. Hollow agents stand in for machines where no process is needed.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Daemon, World};
use crate::support::wait::eventually;
use crate::system::*;

/// Generous for a noisy 2-core machine; every wait ends as soon as its condition holds.
const LONG: Duration = Duration::from_secs(60);

/// `rune-agent --hollow n` named `<base>-0` … with `extra` flags; waits until all
/// are registered.
fn hollow(w: &World, base: &str, n: usize, extra: &[&str]) -> Daemon {
    let count = n.to_string();
    let mut args = vec!["--hollow", count.as_str(), "--lease-ttl", "3s"];
    args.extend_from_slice(extra);
    let a = w.agent(base, &args);
    for i in 0..n {
        let key = w.key(&format!("nodes/{base}-{i}"));
        eventually(&format!("{base}-{i} registered"), LONG, || {
            w.etcd.get(&key).map(|_| ())
        });
    }
    a
}

/// `rune get nodes -o json`: the items by name.
fn nodes_json(w: &World) -> Vec<Value> {
    let out = w
        .rune()
        .args(["get", "nodes", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["items"].as_array().unwrap().clone()
}

fn node_json<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {items:?}"))
}

/// A service whose command would run for long (hollow nodes never start it).
fn service_file(w: &World, name: &str, scale: u32, extra: &str) -> std::path::PathBuf {
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [sleep, \"100000\"]\n{extra}"
        ),
    )
}

/// The nodes the service's running instances are on, sorted.
fn running_nodes(w: &World, name: &str) -> Vec<String> {
    let mut nodes: Vec<String> = instances(w, name)
        .iter()
        .filter(|i| i["instance"]["desired"] == "Running")
        .map(|i| i["instance"]["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn get_nodes_shows_labels_capacity_instances_and_lost_nodes() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a = hollow(&w, "g", 2, &["--label", "disk=ssd", "--capacity", "5"]);
    // A node-scoped instance copy naming a node no agent registered: a lost node
    // (as `get nodes` counts instances from those copies' keys).
    w.etcd.put(&w.key("assignments/ghost/other/svc/i1"), "{}");
    let out = w.rune().args(["get", "nodes"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header = table.lines().next().unwrap();
    for col in ["NAME", "STATUS", "INSTANCES", "CAPACITY", "AGE", "VERSION"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("g-0") && l.contains("Ready") && l.contains(" 5 ")),
        "{table}"
    );
    let wide = w
        .rune()
        .args(["get", "nodes", "-o", "wide"])
        .output()
        .unwrap();
    let wide = String::from_utf8_lossy(&wide.stdout).to_string();
    assert!(
        wide.contains("LABELS") && wide.contains("disk=ssd"),
        "{wide}"
    );

    cast(&w, &service_file(&w, "web", 3, ""));
    eventually("web placed on g-0 and g-1", LONG, || {
        let items = nodes_json(&w);
        let placed: u64 = ["g-0", "g-1"]
            .iter()
            .map(|n| node_json(&items, n)["instances"].as_u64().unwrap())
            .sum();
        (placed == 3).then_some(())
    });
    let items = nodes_json(&w);
    let g0 = node_json(&items, "g-0");
    assert_eq!(g0["status"], "Ready");
    assert_eq!(g0["registered"], true);
    assert_eq!(g0["capacity"], 5);
    assert_eq!(g0["labels"]["disk"], "ssd");
    assert!(g0["agentVersion"].as_str().is_some_and(|v| !v.is_empty()));

    let ghost = node_json(&items, "ghost");
    assert_eq!(ghost["status"], "Lost");
    assert_eq!(ghost["registered"], false);
    assert_eq!(ghost["instances"], 1);

    // One node: NAME, JSON without `items`; an unknown one exits 4.
    let out = w
        .rune()
        .args(["get", "node", "g-1", "-o", "json"])
        .output()
        .unwrap();
    let one: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["name"], "g-1");
    let out = w.rune().args(["get", "nodes", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("node nope not found"));
}

/// The service's ReplicaFailure message once it is True and contains `part`.
fn wait_unschedulable(w: &World, name: &str, part: &str) -> String {
    eventually(&format!("{name} Unschedulable: {part}"), LONG, || {
        let c = condition(w, name, "ReplicaFailure")?;
        let message = c["message"].as_str()?.to_string();
        (c["reason"] == "Unschedulable" && message.contains(part)).then_some(message)
    })
}

fn wait_running_on(w: &World, name: &str, nodes: &[&str]) {
    eventually(&format!("{name} running on {nodes:?}"), LONG, || {
        (running_nodes(w, name) == nodes).then_some(())
    });
}

#[test]
fn node_selector_places_on_matching_nodes_reports_when_none_match_and_recovers() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _hdd = hollow(&w, "p", 2, &["--label", "disk=hdd"]);
    cast(
        &w,
        &service_file(
            &w,
            "web",
            2,
            "  placement:\n    nodeSelector: {disk: ssd}\n",
        ),
    );
    let message = wait_unschedulable(&w, "web", "2 nodes don't match nodeSelector {disk: ssd}");
    assert!(
        message.starts_with("2 instance(s) not placed: 0 of 2 nodes are available"),
        "{message}"
    );
    assert!(running_nodes(&w, "web").is_empty());

    // A matching node joins (labels from the environment this time).
    let _ssd = {
        let a = w.agent_with_env(
            "q",
            &["--hollow", "1", "--lease-ttl", "3s"],
            &[("RUNE_LABELS", "disk=ssd,zone=a")],
        );
        eventually("q-0 registered", LONG, || {
            w.etcd.get(&w.key("nodes/q-0")).map(|_| ())
        });
        a
    };
    wait_running_on(&w, "web", &["q-0", "q-0"]);
    eventually("ReplicaFailure cleared", LONG, || {
        condition(&w, "web", "ReplicaFailure")
            .is_none()
            .then_some(())
    });

    // maxPerNode: one per node over the three nodes, the fourth reported.
    cast(
        &w,
        &service_file(&w, "spread", 3, "  placement:\n    maxPerNode: 1\n"),
    );
    wait_running_on(&w, "spread", &["p-0", "p-1", "q-0"]);
    cast(
        &w,
        &service_file(&w, "spread", 4, "  placement:\n    maxPerNode: 1\n"),
    );
    wait_unschedulable(
        &w,
        "spread",
        "3 nodes already run maxPerNode (1) of its instances",
    );
    assert_eq!(running_nodes(&w, "spread"), ["p-0", "p-1", "q-0"]);
}

/// `rune ARGS`: exit code, stdout and stderr.
fn rune(w: &World, args: &[&str]) -> (Option<i32>, String, String) {
    let out = w.rune().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cordon_keeps_instances_places_nothing_new_and_uncordon_undoes_it() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a = hollow(&w, "k", 2, &[]);
    cast(&w, &service_file(&w, "web", 2, ""));
    wait_running_on(&w, "web", &["k-0", "k-1"]);

    let (code, out, err) = rune(&w, &["node", "cordon", "k-0", "--reason", "disk swap"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("node k-0 cordoned"), "{out}");
    let (code, out, _) = rune(&w, &["node", "cordon", "k-0"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("already cordoned"), "{out}");
    let items = nodes_json(&w);
    let k0 = node_json(&items, "k-0");
    assert_eq!(k0["status"], "Cordoned");
    assert_eq!(k0["state"]["cordoned"], true);
    assert_eq!(k0["state"]["reason"], "disk swap");
    let (_, wide, _) = rune(&w, &["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("cordoned by ") && wide.contains("disk swap"),
        "{wide}"
    );

    // Scale-up: the new instances go to k-1 only; k-0 keeps its one.
    cast(&w, &service_file(&w, "web", 4, ""));
    wait_running_on(&w, "web", &["k-0", "k-1", "k-1", "k-1"]);

    // Nodes rune does not know, and names that are no node name.
    let (code, _, err) = rune(&w, &["node", "cordon", "nope"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("node nope not found"), "{err}");
    let (code, _, err) = rune(&w, &["node", "uncordon", "nope"]);
    assert_eq!(code, Some(4), "{err}");
    let (code, _, err) = rune(&w, &["node", "cordon", "a/b"]);
    assert_eq!(code, Some(2), "{err}");

    // Every node cordoned: a scale-up is reported, not placed.
    let (code, _, _) = rune(&w, &["node", "cordon", "k-1"]);
    assert_eq!(code, Some(0));
    cast(&w, &service_file(&w, "web", 5, ""));
    wait_unschedulable(&w, "web", "0 of 2 nodes are available: 2 nodes cordoned");
    assert_eq!(running_nodes(&w, "web"), ["k-0", "k-1", "k-1", "k-1"]);
    // …and said as an event, as Kubernetes' FailedScheduling.
    eventually("a FailedScheduling event", Duration::from_secs(30), || {
        let (_, out, _) = rune(&w, &["events", "web"]);
        out.lines()
            .find(|l| l.contains("FailedScheduling") && l.contains("2 nodes cordoned"))
            .map(String::from)
    });

    // Uncordon: the waiting instance goes to the least loaded node, k-0.
    let (code, out, _) = rune(&w, &["node", "uncordon", "k-0"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("node k-0 uncordoned"), "{out}");
    wait_running_on(&w, "web", &["k-0", "k-0", "k-1", "k-1", "k-1"]);
    let (_, out, _) = rune(&w, &["node", "uncordon", "k-0"]);
    assert!(out.contains("already uncordoned"), "{out}");
    assert_eq!(node_json(&nodes_json(&w), "k-0")["status"], "Ready");
}

#[test]
fn drain_moves_instances_start_first_and_reports_a_deadline_it_cannot_meet() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let ready_after = ["--hollow-ready-after", "1s"];
    let _d = hollow(&w, "d", 2, &ready_after);
    let spec = "  placement:\n    maxPerNode: 1\n";
    cast(&w, &service_file(&w, "web", 2, spec));
    wait_ready(&w, "web", 2);
    assert_eq!(running_nodes(&w, "web"), ["d-0", "d-1"]);

    // Nowhere to go (one per node, the other node has one): nothing stops, and the
    // deadline passes with exit 1.
    let (code, out, err) = rune(&w, &["node", "drain", "d-0", "--deadline", "2s"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("node d-0 cordoned; draining"), "{out}");
    assert!(
        err.contains("deadline (2s) passed with 1 instance(s)"),
        "{err}"
    );
    assert_eq!(running_nodes(&w, "web"), ["d-0", "d-1"]);
    assert_eq!(node_json(&nodes_json(&w), "d-0")["status"], "Draining");
    wait_unschedulable(&w, "web", "1 node draining");

    // A node joins: the drain (still on) places the replacement there, and stops the
    // old instance only once it is ready; the CLI, run again, sees it through.
    let mut drain = spawn_rune(&w, &["node", "drain", "d-0", "--deadline", "60s"]);
    let _e = hollow(&w, "e", 1, &ready_after);
    let status = loop {
        if let Some(status) = drain.try_wait().unwrap() {
            break status;
        }
        // (A status that could not be read shows desired 0: not a reading.)
        let (desired, ready, _) = counts(&w, "web");
        assert!(
            desired != 2 || ready >= 2,
            "ready instances dropped to {ready} during the drain"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = drain.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("node d-0 drained"), "{stdout}");
    assert_eq!(running_nodes(&w, "web"), ["d-1", "e-0"]);
    let items = nodes_json(&w);
    assert_eq!(node_json(&items, "d-0")["status"], "Cordoned");
    assert_eq!(node_json(&items, "d-0")["instances"], 0);
    wait_ready(&w, "web", 2);
}
