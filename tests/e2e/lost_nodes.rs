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
