//! `rune rollout history|undo` and `rune diff`: revisions with who and why,
//! a revision's spec and the difference between two, undo keeping the live scale,
//! and `rune diff`'s exit codes (0 nothing would change, 1 something would, 2 an
//! invalid file, 5 etcd unreachable).

use std::time::Duration;

use predicates::prelude::*;
use serde_json::Value;

use crate::harness::World;
use crate::support::net::free_port;
use crate::support::wait::eventually;
use crate::system::*;

/// A sleeper service whose `env` holds `A: <a>` (each value a revision).
fn version(w: &World, a: &str, scale: Option<u32>) -> std::path::PathBuf {
    let scale = scale.map_or(String::new(), |n| format!("  scale: {n}\n"));
    w.file(
        &format!("api-{a}.yaml"),
        &format!(
            "service:\n  name: api\n{scale}  command: [\"python3\", \"-c\", \"import time; time.sleep(100000)\", \"{}\"]\n  env: {{A: \"{a}\"}}\n  stopGracePeriod: 5s\n",
            marker(w, "api")
        ),
    )
}

fn cast_with_reason(w: &World, file: &std::path::Path, reason: &str) {
    w.rune()
        .arg("cast")
        .arg(file)
        .args(["--reason", reason])
        .assert()
        .success();
}

/// `rune rollout history api -o json`, once it lists `n` revisions.
fn history(w: &World, n: usize) -> Vec<Value> {
    eventually(&format!("{n} revisions"), Duration::from_secs(60), || {
        let out = w
            .rune()
            .args(["rollout", "history", "api", "-o", "json"])
            .output()
            .unwrap();
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        (rows.len() == n && rows[n - 1]["live"] == true).then_some(rows)
    })
}

#[test]
fn history_shows_who_and_why_a_revision_and_the_difference_between_two() {
    let w = World::new();
    let _system = one_node(&w);
    cast_with_reason(&w, &version(&w, "1", Some(1)), "first");
    wait_ready(&w, "api", 1);
    cast_with_reason(&w, &version(&w, "2", None), "second");
    history(&w, 2);
    // A GitOps write sets no cause: the stored document alone, as etcdctl would.
    let key = w.key("services/default/api");
    let mut doc: Value = serde_json::from_str(&w.etcd.get(&key).unwrap()).unwrap();
    doc["service"]["env"]["A"] = "3".into();
    doc.as_object_mut().unwrap().remove("changeCause");
    doc.as_object_mut().unwrap().remove("changedBy");
    w.etcd.put(&key, &doc.to_string());

    let rows = history(&w, 3);
    assert_eq!(rows[0]["changeCause"], "first");
    assert_eq!(rows[1]["changeCause"], "second");
    assert!(rows[2]["changeCause"].is_null(), "{rows:?}");
    assert!(
        rows[0]["changedBy"].as_str().unwrap().contains('@'),
        "{rows:?}"
    );
    assert_eq!(
        rows.iter().map(|r| r["live"] == true).collect::<Vec<_>>(),
        [false, false, true]
    );
    // Recreate: the instance still runs revision 1 until a restart.
    assert_eq!(rows[0]["instances"], 1);
    assert_eq!(rows[2]["instances"], 0);

    let table = String::from_utf8(stdout_ok(w.rune().args(["rollout", "history", "api"]))).unwrap();
    let last = table.lines().last().unwrap();
    assert!(
        table.contains("CHANGE-CAUSE") && table.contains("second"),
        "{table}"
    );
    assert!(
        last.starts_with('3') && last.contains(" - ") && last.contains('*'),
        "{table}"
    );

    // A revision's spec, castable as it is.
    let one = String::from_utf8(stdout_ok(w.rune().args([
        "rollout",
        "history",
        "api",
        "--revision",
        "1",
    ])))
    .unwrap();
    assert!(
        one.starts_with("# revision 1,") && one.contains(": first"),
        "{one}"
    );
    assert!(one.contains("\nservice:\n"), "{one}");
    let file = w.file("revision-1.yaml", &one);
    w.rune()
        .arg("diff")
        .arg(&file)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("env.A: \"3\" → \"1\""));

    w.rune()
        .args([
            "rollout",
            "history",
            "api",
            "--revision",
            "1",
            "--diff",
            "3",
        ])
        .assert()
        .success()
        .stdout("revision 1 → revision 3:\n  env.A: \"1\" → \"3\"\n");
    w.rune()
        .args(["rollout", "history", "api", "--revision", "9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no revision 9 (kept: 1, 2, 3)"));
    w.rune()
        .args(["rollout", "history", "api", "--diff", "2"])
        .assert()
        .code(2);

    // A GitOps writer may say why itself, beside `service:`.
    doc["service"]["env"]["A"] = "4".into();
    doc["changeCause"] = "commit 1a2b3c: A=4".into();
    doc["changedBy"] = "argo".into();
    w.etcd.put(&key, &doc.to_string());
    let rows = history(&w, 4);
    assert_eq!(rows[3]["changeCause"], "commit 1a2b3c: A=4");
    assert_eq!(rows[3]["changedBy"], "argo");
}

#[test]
fn undo_writes_the_previous_spec_back_keeping_the_live_scale() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &version(&w, "1", Some(1)), "api", 1);
    cast_with_reason(&w, &version(&w, "2", None), "v2");
    history(&w, 2);
    w.rune().args(["scale", "api", "2"]).assert().success();

    w.rune()
        .args(["rollout", "undo", "api"])
        .assert()
        .success()
        .stdout(predicate::str::contains("spec of revision 1 written back"))
        .stdout(predicate::str::contains("rune restart api"));
    let spec = service(&w, "api")["spec"].clone();
    assert_eq!(spec["env"]["A"], "1");
    assert_eq!(spec["scale"], 2, "the live scale stays");
    let rows = history(&w, 3);
    assert_eq!(rows[2]["changeCause"], "undo to revision 1");

    // Again: back to the revision before the live one whose spec differs (2).
    w.rune()
        .args(["rollout", "undo", "api", "--reason", "v2 after all"])
        .assert()
        .success()
        .stdout(predicate::str::contains("spec of revision 2 written back"));
    let rows = history(&w, 4);
    assert_eq!(rows[3]["changeCause"], "v2 after all");
    assert_eq!(service(&w, "api")["spec"]["env"]["A"], "2");

    // To a revision whose spec is the live one: nothing to write.
    w.rune()
        .args(["rollout", "undo", "api", "--to-revision", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing written"));
    w.rune()
        .args(["rollout", "undo", "api", "--to-revision", "42"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no revision 42"));
    w.rune()
        .args(["rollout", "undo", "nosuch"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("not found"));

    // The instances follow at a restart, on the undone spec.
    w.rune().args(["restart", "api"]).assert().success();
    let rows = history(&w, 4);
    assert_eq!(rows[3]["instances"], 2, "{rows:?}");
}

#[test]
fn diff_exits_0_for_no_change_1_for_changes_2_for_a_bad_file_5_without_etcd() {
    let w = World::new();
    let v1 = version(&w, "1", Some(1));
    w.rune()
        .arg("diff")
        .arg(&v1)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "service default/api: would be created",
        ))
        .stdout(predicate::str::contains("+ scale: 1"));
    cast(&w, &v1);
    w.rune()
        .arg("diff")
        .arg(&v1)
        .assert()
        .code(0)
        .stdout("service default/api: no changes\n");
    // A spec without scale keeps the live scale, as cast does.
    w.rune()
        .args(["scale", "api", "3", "--no-wait"])
        .assert()
        .success();
    w.rune()
        .arg("diff")
        .arg(version(&w, "1", None))
        .assert()
        .code(0);
    w.rune()
        .arg("diff")
        .arg(version(&w, "2", None))
        .assert()
        .code(1)
        .stdout("service default/api:\n  env.A: \"1\" → \"2\"\n");
    assert_eq!(
        service(&w, "api")["spec"]["env"]["A"],
        "1",
        "diff writes nothing"
    );

    // A cast's reason is bounded, and a reason alone changes nothing.
    w.rune()
        .arg("cast")
        .arg(&v1)
        .args(["--reason", &"x".repeat(1025)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("over the limit of 1024"));
    w.rune()
        .arg("cast")
        .arg(version(&w, "1", None))
        .args(["--reason", "again"])
        .assert()
        .success()
        .stdout("service default/api unchanged\n");

    let bad = w.file(
        "bad.yaml",
        "service:\n  name: api\n  command: x\n  scale: -1\n",
    );
    w.rune()
        .arg("diff")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.yaml:4:"));
    w.rune()
        .arg("diff")
        .arg(&v1)
        .env(
            "RUNE_ETCD_ENDPOINTS",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .assert()
        .code(5);
}

#[test]
fn diff_of_a_service_whose_stored_spec_is_invalid_shows_what_a_cast_would_replace() {
    // A cast replaces a stored spec that does not parse (a bad GitOps write): diff
    // says so and exits 1, rather than refuse with "fix it first" (exit 2) the
    // very change that fixes it.
    let w = World::new();
    w.etcd.put(
        &w.key("services/default/api"),
        r#"{"service": {"name": 7}}"#,
    );
    w.rune()
        .arg("diff")
        .arg(version(&w, "1", Some(2)))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("a cast would replace it"))
        .stdout(predicate::str::contains("+ scale: 2"));
    w.rune()
        .arg("cast")
        .arg(version(&w, "1", Some(2)))
        .assert()
        .success();
    w.rune()
        .arg("diff")
        .arg(version(&w, "1", Some(2)))
        .assert()
        .code(0);
}
