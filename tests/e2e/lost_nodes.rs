//! Lost nodes through the real binaries: an instance whose node is lost is
//! Unknown, never reported stopped or gone; a stop waits for it and fails naming
//! it; `rune node forget` declares it gone; a returning agent stops what has no
//! record.

use std::time::Duration;

use crate::harness::World;
use crate::support::procs::process_alive;
use crate::support::wait::eventually;
use crate::system::*;

#[test]
fn a_stop_waits_for_a_lost_nodes_instances_names_them_and_forget_lets_go() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let mut a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    let running = pids(&w, "api");
    assert_eq!(running.len(), 3);

    a.kill9();
    eventually("the node's lease expires", Duration::from_secs(30), || {
        w.etcd.get(&w.key("nodes/n1")).is_none().then_some(())
    });
    let listed = instances(&w, "api");
    assert_eq!(listed.len(), 3, "still visible: {listed:?}");
    assert!(
        listed.iter().all(|i| i["status"]["phase"] == "Unknown"),
        "{listed:?}"
    );

    let out = w
        .rune()
        .args(["stop", "api", "--timeout", "6s"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("node n1") && text.contains("rune node forget n1"),
        "names the node and what to do: {text}"
    );
    assert!(
        running.iter().all(|p| process_alive(*p)),
        "nothing was stopped: nobody could"
    );

    // A registered node cannot be forgotten; a lost one can.
    let _other = agent(&w, "n2");
    w.rune()
        .args(["node", "forget", "n2"])
        .assert()
        .code(4)
        .stderr(predicates::str::contains("registered"));
    w.rune()
        .args(["node", "forget", "n1"])
        .assert()
        .success()
        .stdout(predicates::str::contains("3 instance(s) declared gone"));
    assert!(instances(&w, "api").is_empty());
    eventually("the service is stopped", Duration::from_secs(30), || {
        (counts(&w, "api") == (0, 0, 0)).then_some(())
    });

    // The agent comes back after all: it stops what no longer has a record.
    let _back = agent(&w, "n1");
    eventually("orphans stopped", Duration::from_secs(60), || {
        running.iter().all(|p| !process_alive(*p)).then_some(())
    });
}

#[test]
fn a_restart_does_not_start_new_instances_beside_unconfirmed_ones() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let mut a1 = agent(&w, "n1");
    let _a2 = agent(&w, "n2");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let on_n1: Vec<i32> = instances(&w, "api")
        .iter()
        .filter(|i| i["instance"]["node"] == "n1")
        .filter_map(|i| i["status"]["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    assert_eq!(on_n1.len(), 1, "one instance per node");
    a1.kill9();
    eventually("n1's lease expires", Duration::from_secs(30), || {
        w.etcd.get(&w.key("nodes/n1")).is_none().then_some(())
    });
    let out = w
        .rune()
        .args(["restart", "api", "--timeout", "6s"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("node n1"),
        "{out:?}"
    );
    // n2's instance was stopped by the restart's first step; n1's could not be,
    // so the restart never got to start anything beside it.
    let op = service(&w, "api")["status"]["operation"].clone();
    assert!(
        op["message"].as_str().unwrap().contains("step 1 of 2"),
        "failed in its stop step: {op}"
    );
    let started_by_restart = instances(&w, "api")
        .iter()
        .filter(|i| i["instance"]["operationId"] == op["id"])
        .count();
    assert_eq!(started_by_restart, 0, "{op}");
    assert!(on_n1.iter().all(|p| process_alive(*p)));
}

/// `RUNE_INSTANCE` of every live instance process carrying `marker`, with its pids.
fn running_instances(marker: &str) -> std::collections::BTreeMap<String, Vec<i32>> {
    let mut by_id: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for p in crate::support::procs::instance_processes(marker) {
        by_id.entry(p.id).or_default().push(p.pid);
    }
    by_id
}

/// Two agents with one node name: the first is paused past its lease, the second
/// takes the name over. The newcomer starts the node's instances only once the
/// paused one must have fenced itself; the paused one, resumed, finds its name
/// taken, stops its instances and exits 4. No instance ever runs twice.
#[test]
fn a_node_name_taken_over_never_runs_an_instance_twice() {
    let w = World::new();
    // The documented rule: the node-lost grace outlasts the self-fence window, so
    // the controller does not replace what the paused agent may still run.
    let _c = w.controller("c1", &fast_controller_with_grace("20s"));
    let fast = ["--lease-ttl", "2s", "--self-fence-after", "6s"];
    let mut a = w.agent("n1", &fast);
    eventually("a registered", Duration::from_secs(30), || {
        w.etcd.get(&w.key("nodes/n1")).map(|_| ())
    });
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let marker = marker(&w, "api");
    let first = running_instances(&marker);
    assert_eq!(first.len(), 2);

    // Watch for duplicates for the rest of the test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, marker) = (stop.clone(), marker.clone());
        std::thread::spawn(move || {
            let mut twice = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (id, pids) in running_instances(&marker) {
                    if pids.len() > 1 {
                        twice.push((id, pids));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            twice
        })
    };

    a.signal("STOP");
    eventually("a's lease expires", Duration::from_secs(30), || {
        w.etcd.get(&w.key("nodes/n1")).is_none().then_some(())
    });
    let b = w.agent_with_data("n1", "b", &fast);
    eventually("b registered", Duration::from_secs(30), || {
        b.logs().contains("registered node").then_some(())
    });
    a.signal("CONT");
    let status = a.wait_exit(Duration::from_secs(60)).expect("a exits");
    assert_eq!(status.code(), Some(4), "{}", a.logs());
    assert!(
        a.logs().contains("node name lost to another agent"),
        "{}",
        a.logs()
    );

    // b starts them after the hold (fence window + stop grace) and runs each once.
    eventually("b runs both", Duration::from_secs(60), || {
        let now = running_instances(&marker);
        (now.len() == 2 && now.keys().eq(first.keys()) && now.values().all(|p| p.len() == 1))
            .then_some(())
    });
    assert!(b.logs().contains("handover hold over"), "{}", b.logs());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let twice = watcher.join().unwrap();
    assert!(twice.is_empty(), "instances ran twice: {twice:?}");
}
