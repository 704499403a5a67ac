//! Requests that stay bounded as the fleet grows, through the real binaries: the
//! CLI and the controller read hundreds of records in small pages, and listings
//! over gRPC's default 4 MiB in one response; a reconcile's writes are split into
//! transactions etcd takes; a controller's `--max-scale` is a bound like any other.
//!
//! Records are written straight into etcd on a node record of the test's own (what
//! a controller and an agent would have written): hundreds of processes would make
//! the test slow, and what is under test is only who reads them all.

use std::time::Duration;

use rune::model::revision::{Revision, template};
use rune::model::{DesiredState, InstanceRecord, NodeRecord, StoredService};
use rune::store::Store;
use rune::store::batch::{self, Write};

use crate::harness::{Daemon, World};
use crate::support::wait::eventually;
use crate::system::*;

/// The page size the CLI and the controller are given here: hundreds of keys
/// take dozens of pages.
const PAGE: &str = "7";

/// `sleep` instances (cheap), with an environment value of `env_bytes`: instance
/// records embed the spec, so this makes each record that big.
fn spec_file(w: &World, name: &str, scale: u32, env_bytes: usize) -> std::path::PathBuf {
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [sleep, \"100000\"]\n  \
             stopGracePeriod: 2s\n  env: {{PAD: {}}}\n",
            "x".repeat(env_bytes)
        ),
    )
}

/// Registers `node` as an agent would (no lease: it stays for the test).
async fn fake_node(w: &World, store: &Store, node: &str) {
    let record = NodeRecord {
        name: node.into(),
        address: "127.0.0.1:1".into(),
        agent_version: "test".into(),
        started_at: jiff::Timestamp::now(),
        instances: 0,
        capacity: 0,
        labels: Default::default(),
        lease_id: 0,
        cgroups: None,
        allocatable: None,
        logs: None,
        ip: None,
    };
    let value = serde_json::to_vec(&record).unwrap();
    store
        .put(&w.key(&format!("nodes/{node}")), value)
        .await
        .unwrap();
}

/// Writes `n` records of the cast service `name` on `node`, as the controller
/// would have.
async fn records(store: &Store, name: &str, node: &str, n: usize) {
    let keys = store.keys();
    let stored = store
        .get(&keys.service("default", name))
        .await
        .unwrap()
        .expect("cast first");
    let spec = StoredService::parse(&stored.key, &stored.value, "default", name)
        .unwrap()
        .service;
    // Revision 1 of the spec, stored once, as the controller stores it.
    let revision = Revision {
        namespace: "default".into(),
        service: name.into(),
        revision: 1,
        spec: template(&spec),
        spec_revision: stored.mod_revision,
        created_at: jiff::Timestamp::now(),
        changed_by: None,
        change_cause: None,
    };
    // The prefix marked as a controller marks it before writing any record.
    let layout = serde_json::json!({"layout": rune::store::layout::LAYOUT, "writtenBy": "test"});
    store.put(&keys.layout(), layout.to_string()).await.unwrap();
    let revision_key = keys.revision("default", name, 1);
    // (Written again by a second call for another node: the same spec, harmless.)
    let first = Write::put_json(&revision_key, &revision);
    let writes = std::iter::once(first).chain((0..n).map(|i| {
        let record = InstanceRecord {
            id: format!("{name}-{node}-{i:04}"),
            namespace: "default".into(),
            service: name.into(),
            node: node.into(),
            desired: DesiredState::Running,
            revision: 1,
            created_at: jiff::Timestamp::now(),
            operation_id: None,
            node_lost: false,
        };
        Write::put_json(&keys.instance("default", name, &record.id), &record).and(Write::put_json(
            &keys.assignment(node, "default", name, &record.id),
            &record,
        ))
    }));
    for txn in batch::split(writes) {
        let (compares, ops) = txn.into_parts();
        assert!(store.txn(compares, ops, vec![]).await.unwrap().succeeded);
    }
}

/// `rune get instances NAME -o json`, with a page size when given: the instance
/// documents, and how many bytes of output they were.
fn read_instances(w: &World, name: &str, page: Option<&str>) -> (Vec<serde_json::Value>, usize) {
    let mut rune = w.rune();
    if let Some(page) = page {
        rune.env("RUNE_ETCD_PAGE_SIZE", page);
    }
    let out = stdout_ok(rune.args(["get", "instances", name, "-o", "json"]));
    (serde_json::from_slice(&out).unwrap(), out.len())
}

/// A controller reading `PAGE` keys per page.
fn paged_controller(w: &World, name: &str) -> Daemon {
    w.controller_with_env(name, FAST_CONTROLLER, &[("RUNE_ETCD_PAGE_SIZE", PAGE)])
}

/// The controller's count of etcd range requests (every page counts).
fn list_requests(c: &Daemon) -> u64 {
    let (_, body) = c.http_get("/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("rune_etcd_requests_total{op=\"list\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The service's status once a reconcile has counted `current` instances.
fn wait_current(w: &World, name: &str, current: u64) {
    eventually(
        &format!("{name}: {current} current"),
        Duration::from_secs(60),
        || (counts(w, name).2 == current).then_some(()),
    );
}

#[test]
fn hundreds_of_records_are_read_in_pages_by_the_cli_and_the_controller() {
    let w = World::new();
    cast(&w, &spec_file(&w, "api", 300, 10));
    w.block_on_store(async |store| {
        fake_node(&w, store, "n1").await;
        records(store, "api", "n1", 300).await;
        // And some on a node that is gone, for `rune node forget`.
        records(store, "api", "gone", 120).await;
    });

    // Forgetting reads every record and deletes 240 keys: several transactions.
    w.rune()
        .env("RUNE_ETCD_PAGE_SIZE", PAGE)
        .args(["node", "forget", "gone"])
        .assert()
        .success()
        .stdout(predicates::str::contains("120 instance(s) declared gone"));
    assert_eq!(read_instances(&w, "api", Some(PAGE)).0.len(), 300);

    // A controller that read fewer than all would create the missing ones.
    let c = paged_controller(&w, "c1");
    wait_current(&w, "api", 300);
    assert_eq!(counts(&w, "api").0, 300);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        w.etcd.keys(&w.key("instances/")).len(),
        300,
        "nothing created"
    );
    let pages = list_requests(&c);
    assert!(pages >= 300 / 7, "{pages} pages");
}

#[test]
fn listings_over_4_mib_are_read_by_the_cli_and_a_controller_taking_over() {
    let w = World::new();
    // 25 specs of ~200 KiB (scale 0: nothing to run): 5 MiB of services/.
    for i in 0..25 {
        cast(&w, &spec_file(&w, &format!("big{i}"), 0, 200 * 1024));
    }
    let out = stdout_ok(w.rune().args(["get", "services", "-o", "json"]));
    assert!(out.len() > 4 * 1024 * 1024, "{}", out.len());

    // A leader lists everything when it starts, and reads each service whole.
    let (mut c1, c2) = leader_and_standby(&w);
    c1.kill9();
    eventually("c2 leads", Duration::from_secs(30), || {
        c2.logs().contains("became leader").then_some(())
    });
    // A spec change only the new leader can have observed.
    cast(&w, &spec_file(&w, "big7", 0, 200 * 1024 + 1));
    let revision = w.block_on_store(async |store| {
        let key = store.keys().service("default", "big7");
        store.get(&key).await.unwrap().unwrap().mod_revision
    });
    eventually(
        "the new leader observed the spec",
        Duration::from_secs(30),
        || {
            (service(&w, "big7")["status"]["observedGeneration"].as_i64() == Some(revision))
                .then_some(())
        },
    );
}

#[test]
fn a_reconcile_that_writes_more_than_1_mib_converges() {
    let w = World::new();
    let _system = one_node(&w);
    // A 100 KiB spec at scale 20: its revision is stored once, its records are
    // small; the writes of one reconcile are split by count and bytes either way.
    deploy(&w, &spec_file(&w, "wide", 20, 100 * 1024), "wide", 20);
}

#[test]
fn max_scale_bounds_the_scale_a_spec_may_ask() {
    let w = World::new();
    let mut args = FAST_CONTROLLER.to_vec();
    args.extend(["--max-scale", "5"]);
    let _c = w.controller("c1", &args);
    let _a = agent(&w, "n1");
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let before = pids(&w, "api");

    cast(&w, &sleeper(&w, "api", 6, ""));
    let invalid = eventually("SpecInvalid", Duration::from_secs(30), || {
        condition(&w, "api", "SpecInvalid")
    });
    let message = invalid["message"].as_str().unwrap();
    assert!(message.contains("limit of 5 (--max-scale)"), "{message}");
    assert_eq!(pids(&w, "api"), before, "instances untouched");
    assert_eq!(live_processes(&w, "api").len(), 2);

    deploy(&w, &sleeper(&w, "api", 5, ""), "api", 5);
    assert!(condition(&w, "api", "SpecInvalid").is_none());
}
