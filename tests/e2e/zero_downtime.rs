//! The proof that rolling updates have zero downtime: a client follows the
//! service's `endpoints/` key (`traffic.rs`) and sends requests continuously to a
//! 4-instance HTTP service while it is replaced. A rolling restart and a rolling
//! spec rollout fail no request; a plain restart shows the gap the seed describes
//! ("restart is a stop-the-world operation per service"; `endpoints::
//! a_plain_restart_shows_the_gap`).
//!
//! What makes it hold: a new instance joins the endpoints only once ready; an old
//! one stops only once a new one is ready (maxUnavailable 0), and it leaves the
//! endpoints before its SIGTERM, `shutdownDelay` ahead, so a client following
//! the key has stopped sending to it by then.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::endpoints::{flowing, traffic, web};
use crate::harness::World;
use crate::support::wait::eventually;
use crate::system::*;
use crate::traffic::Tally;

const LONG: Duration = Duration::from_secs(120);

/// The ids of the service's instances.
fn ids(w: &World, name: &str) -> BTreeSet<String> {
    instances(w, name)
        .iter()
        .filter_map(|i| i["instance"]["id"].as_str().map(String::from))
        .collect()
}

/// Every instance of `web` was replaced (none of `before` is left), and the
/// traffic saw no failed request and never an empty endpoint list.
fn replaced_without_a_failure(w: &World, before: &BTreeSet<String>, tally: &Tally, during: &str) {
    let after = ids(w, "web");
    assert!(
        after.is_disjoint(before),
        "every instance replaced: {before:?} → {after:?}"
    );
    assert_eq!(
        tally.failed, 0,
        "requests failed during {during}: {:#?}",
        tally.failures
    );
    assert_eq!(tally.longest_empty, Duration::ZERO, "{tally:?}");
}

#[test]
fn a_rolling_restart_fails_no_request() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &web(&w, "web", 4, "  shutdownDelay: 3s\n"), "web", 4);
    let before = ids(&w, "web");
    let t = traffic(&w, "web");
    flowing(&t, 4, 100);

    w.rune()
        .args(["restart", "web", "--rolling", "--timeout", "5m"])
        .assert()
        .success();
    flowing(&t, 4, 100);
    let tally = t.stop();

    replaced_without_a_failure(&w, &before, &tally, "the rolling restart");
    assert!(
        tally.answered_by.len() >= 8,
        "old and new instances served: {tally:?}"
    );
}

#[test]
fn a_rolling_spec_rollout_fails_no_request() {
    let w = World::new();
    let _system = one_node(&w);
    let rolling = "  shutdownDelay: 3s\n  update: {strategy: Rolling, maxSurge: 2}\n";
    deploy(&w, &web(&w, "web", 4, rolling), "web", 4);
    let before = ids(&w, "web");
    let t = traffic(&w, "web");
    flowing(&t, 4, 100);

    // A GitOps-style change of what runs: a new revision, rolled out by itself.
    let changed = web(
        &w,
        "web",
        4,
        &format!("{rolling}  env: {{RELEASE: \"2\"}}\n"),
    );
    stdout_ok(w.rune().arg("cast").arg(&changed));
    eventually("the rollout succeeded", LONG, || {
        let st = service(&w, "web")["status"].clone();
        (st["operation"]["kind"] == "rollout"
            && st["operation"]["phase"] == "Succeeded"
            && st["updatedReplicas"] == 4
            && st["readyReplicas"] == 4)
            .then_some(())
    });
    flowing(&t, 4, 100);
    let tally = t.stop();

    replaced_without_a_failure(&w, &before, &tally, "the rollout");
}
