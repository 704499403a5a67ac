//! The `rune` CLI against a real etcd, with no controller: cast, get, delete, and
//! how bad input and a missing etcd are reported.

use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::harness::World;
use crate::system::cast;

const API: &str = "service:
  name: api
  scale: 3
  command: [\"python3\", \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"${PORT}\"]
  ports:
    - name: http
  health:
    readiness: {type: http, port: http, path: /, intervalSeconds: 1}
";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `rune ARGS` printed on stdout, whatever its exit code.
fn rune_stdout(w: &World, args: &[&str]) -> String {
    stdout(&w.rune().args(args).output().unwrap())
}

#[test]
fn cast_creates_then_reports_unchanged_then_updates() {
    let w = World::new();
    let f = w.file("api.yaml", API);
    w.rune()
        .args(["cast"])
        .arg(&f)
        .assert()
        .success()
        .stdout("service default/api created\n");
    w.rune()
        .args(["cast"])
        .arg(&f)
        .assert()
        .success()
        .stdout("service default/api unchanged\n");
    let f2 = w.file(
        "api2.yaml",
        &API.replace("intervalSeconds: 1", "intervalSeconds: 2"),
    );
    w.rune()
        .args(["apply"])
        .arg(&f2)
        .assert()
        .success()
        .stdout("service default/api updated\n");
    let stored = w.etcd.get(&w.key("services/default/api")).unwrap();
    assert!(stored.contains("\"intervalSeconds\":2"), "{stored}");
}

#[test]
fn dry_run_writes_nothing() {
    let w = World::new();
    let f = w.file("api.yaml", API);
    w.rune()
        .args(["cast", "--dry-run"])
        .arg(&f)
        .assert()
        .success()
        .stdout("service default/api created (dry run)\n");
    assert_eq!(w.etcd.get(&w.key("services/default/api")), None);
}

#[test]
fn update_without_scale_keeps_the_live_scale_and_new_services_start_at_one() {
    let w = World::new();
    cast(&w, &w.file("a.yaml", API));
    let no_scale = API.replace("  scale: 3\n", "");
    let f = w.file(
        "b.yaml",
        &no_scale.replace("intervalSeconds: 1", "intervalSeconds: 5"),
    );
    w.rune()
        .arg("cast")
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains("updated"));
    let stored = w.etcd.get(&w.key("services/default/api")).unwrap();
    assert!(stored.contains("\"scale\":3"), "{stored}");

    let fresh = w.file("c.yaml", &no_scale.replace("name: api", "name: fresh"));
    cast(&w, &fresh);
    let stored = w.etcd.get(&w.key("services/default/fresh")).unwrap();
    assert!(stored.contains("\"scale\":1"), "{stored}");
}

#[test]
fn get_in_every_format() {
    let w = World::new();
    cast(&w, &w.file("a.yaml", API));

    let text = rune_stdout(&w, &["get", "services"]);
    for col in [
        "NAME",
        "NAMESPACE",
        "DESIRED",
        "READY",
        "CURRENT",
        "LAST SCALE",
        "AGE",
    ] {
        assert!(text.contains(col), "missing {col}: {text}");
    }
    assert!(text.lines().nth(1).unwrap().starts_with("api"), "{text}");

    let wide = rune_stdout(&w, &["get", "services", "-o", "wide"]);
    assert!(wide.contains("REASON"), "{wide}");

    let yaml = rune_stdout(&w, &["get", "service", "api", "-o", "yaml"]);
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "status:")
        .expect("status: at top level");
    assert!(lines.contains(&"spec:"), "{yaml}");
    let fields: Vec<&str> = lines[at + 1..at + 6]
        .iter()
        .map(|l| l.trim().split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "desiredReplicas",
            "readyReplicas",
            "currentReplicas",
            "lastScaleAt",
            "lastScaleReason"
        ],
        "{yaml}"
    );

    let json = rune_stdout(&w, &["get", "service", "api", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spec"]["scale"], 3);
    assert_eq!(
        v["status"]["desiredReplicas"], 0,
        "zero until a controller writes status"
    );

    let list = rune_stdout(&w, &["get", "services", "-A", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["items"][0]["spec"]["name"], "api");

    let table = rune_stdout(&w, &["get", "service", "api"]);
    assert!(table.contains("api"), "{table}");
}

#[test]
fn namespaces_separate_services() {
    let w = World::new();
    let f = w.file(
        "a.yaml",
        &API.replace("name: api", "name: api\n  namespace: prod"),
    );
    w.rune()
        .arg("cast")
        .arg(&f)
        .assert()
        .success()
        .stdout("service prod/api created\n");
    assert!(!rune_stdout(&w, &["get", "services"]).contains("api"));
    w.rune()
        .args(["get", "services", "-n", "prod"])
        .assert()
        .stdout(predicate::str::contains("api"));
    w.rune()
        .args(["get", "services", "-A"])
        .assert()
        .stdout(predicate::str::contains("prod"));
    w.rune().args(["get", "service", "api"]).assert().code(4);
}

#[test]
fn specs_written_with_etcdctl_show_up_and_malformed_ones_are_listed_with_their_error() {
    let w = World::new();
    w.etcd.put(
        &w.key("services/default/gitops"),
        "service:\n  name: gitops\n  scale: 2\n  command: sleep 1000\n",
    );
    w.etcd.put(
        &w.key("services/default/json"),
        r#"{"service": {"name": "json", "command": ["sleep", "1000"], "scale": 4}}"#,
    );
    w.etcd.put(
        &w.key("services/default/broken"),
        "service:\n  name: broken\n  command: sleep 1\n  replicas: 3\n",
    );
    let out = w
        .rune()
        .args(["get", "services", "-o", "wide"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .to_string()
    };
    assert!(row("gitops").contains(" 2 "), "{text}");
    assert!(row("json").contains(" 4 "), "{text}");
    let broken = row("broken");
    assert!(broken.contains("SpecInvalid"), "{broken}");
    assert!(broken.contains(":4:"), "line of the bad field: {broken}");

    let yaml = rune_stdout(&w, &["get", "service", "broken", "-o", "yaml"]);
    assert!(yaml.contains("replicas"), "{yaml}");
}

#[test]
fn malformed_files_exit_2_naming_file_line_and_column() {
    let w = World::new();
    let f = w.file(
        "bad.yaml",
        "service:\n  name: api\n  command: x\n  sclae: 3\n",
    );
    w.rune()
        .arg("cast")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.yaml:4:").and(predicate::str::contains("sclae")));
    let f = w.file(
        "neg.yaml",
        "service:\n  name: api\n  command: x\n  scale: -2\n",
    );
    w.rune()
        .arg("cast")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("neg.yaml:4:"));
    // Nothing from a bad batch is written, even the good files before it.
    let good = w.file("good.yaml", API);
    w.rune().arg("cast").arg(&good).arg(&f).assert().code(2);
    assert!(w.etcd.keys(&w.prefix).is_empty());
    w.rune()
        .args(["cast", "/nonexistent.yaml"])
        .assert()
        .code(2);
    w.rune().args(["scale-it"]).assert().code(2);
}

#[test]
fn delete_marks_the_service_for_the_controller() {
    let w = World::new();
    cast(&w, &w.file("a.yaml", API));
    w.rune()
        .args(["delete", "service", "api"])
        .assert()
        .success()
        .stdout(predicate::str::contains("marked for deletion"));
    w.rune()
        .args(["get", "services"])
        .assert()
        .stdout(predicate::str::contains("Terminating"));
    // Casting it again while it is being deleted is refused, not silently merged.
    w.rune()
        .arg("cast")
        .arg(w.file("b.yaml", API))
        .assert()
        .code(4);
    w.rune()
        .args(["delete", "service", "nope"])
        .assert()
        .code(4);
}

#[test]
fn unreachable_etcd_exits_5_within_5_seconds_naming_the_endpoint() {
    let port = crate::support::net::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    assert_cmd::Command::cargo_bin("rune")
        .unwrap()
        .args(["get", "services", "--etcd-endpoints", &endpoint])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(5)
        .stderr(predicate::str::contains(&endpoint));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn help_lists_exit_codes() {
    assert_cmd::Command::cargo_bin("rune")
        .unwrap()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes").and(predicate::str::contains("5  etcd")));
}
