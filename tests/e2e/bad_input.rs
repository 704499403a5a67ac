//! Bad input never breaks a service, through the real binaries: values past their
//! bounds are refused by the CLI (exit 2, naming the bound) and become SpecInvalid
//! when written straight into etcd, with the running instances left alone; a spec
//! stored without `scale` keeps the current scale; oversized files are refused by
//! their size; a garbage operation record does not wedge anything.

use std::time::Duration;

use crate::harness::World;
use crate::support::wait::eventually;
use crate::system::*;

fn spec_invalid_message(w: &World, name: &str) -> Option<String> {
    condition(w, name, "SpecInvalid")?["message"]
        .as_str()
        .map(String::from)
}

#[test]
fn absurd_values_are_refused_by_the_cli_and_reported_from_etcd() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 2, ""), "api", 2);
    let before = pids(&w, "api");

    for (extra, bound) in [
        ("  stopGracePeriod: 300000000000y\n", "limit of 1h"),
        ("  scaling: {interval: 100000000000y}\n", "limit of 1day"),
        ("  scaling: {step: 4294967296}\n", "from 1 to 10000"),
        ("  scale: 1000000\n", "from 0 to 10000"),
    ] {
        let file = w.file(
            "absurd.yaml",
            &format!("service:\n  name: api\n  command: x\n{extra}"),
        );
        w.rune()
            .arg("cast")
            .arg(&file)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(bound))
            .stderr(predicates::str::contains("absurd.yaml:4:"));
    }

    // Straight into etcd: a condition naming the bound, instances untouched.
    w.etcd.put(
        &w.key("services/default/api"),
        r#"{"service": {"name": "api", "scale": 2, "command": "x", "stopGracePeriod": "300000000000y"}}"#,
    );
    let message = eventually("SpecInvalid", Duration::from_secs(30), || {
        spec_invalid_message(&w, "api")
    });
    assert!(message.contains("limit of 1h"), "{message}");
    assert_eq!(pids(&w, "api"), before);
    assert_eq!(live_processes(&w, "api").len(), 2);
}

#[test]
fn a_spec_stored_without_scale_keeps_the_current_scale() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &sleeper(&w, "api", 3, ""), "api", 3);
    let before = pids(&w, "api");
    let marker = marker(&w, "api");
    for scale in ["", r#""scale": null, "#] {
        w.etcd.put(
            &w.key("services/default/api"),
            &format!(
                r#"{{"service": {{"name": "api", {scale}"command": ["python3", "-c", "import time; time.sleep(100000)", "{marker}"], "stopGracePeriod": "5s", "env": {{"V": "{}"}}}}}}"#,
                scale.len()
            ),
        );
        eventually("the new spec is observed", Duration::from_secs(30), || {
            let s = service(&w, "api");
            (s["status"]["observedGeneration"].as_i64()? > 0
                && s["spec"]["env"]["V"].as_str() == Some(scale.len().to_string().as_str()))
            .then_some(())
        });
        assert_eq!(counts(&w, "api"), (3, 3, 3));
        assert_eq!(pids(&w, "api"), before);
    }
}

#[test]
fn oversized_specs_and_files_are_refused_naming_the_limit() {
    let w = World::new();
    // One service whose stored form is over 256 KiB.
    let big = "x".repeat(300 * 1024);
    let file = w.file(
        "big.yaml",
        &format!("service:\n  name: big\n  command: x\n  env: {{BIG: {big}}}\n"),
    );
    w.rune()
        .arg("cast")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("over the limit of 256 KiB"));
    // A 10 MB file is refused by its size, without a round trip to etcd.
    let huge = w.file("huge.yaml", &"# padding\n".repeat(1024 * 1024));
    w.rune()
        .arg("cast")
        .arg(&huge)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("over the limit of 4 MiB"));
    assert!(w.etcd.keys(&w.key("services/")).is_empty());

    // Written straight into etcd: SpecInvalid, naming the limit.
    let _system = one_node(&w);
    let value =
        format!(r#"{{"service": {{"name": "big", "command": "x", "env": {{"BIG": "{big}"}}}}}}"#);
    let key = w.key("services/default/big");
    w.block_on_store(async |store| store.put(&key, value).await.unwrap());
    let message = eventually("SpecInvalid", Duration::from_secs(30), || {
        spec_invalid_message(&w, "big")
    });
    assert!(message.contains("256 KiB"), "{message}");
}

#[test]
fn a_garbage_operation_record_neither_wedges_scale_nor_cast() {
    let w = World::new();
    let _system = one_node(&w);
    let file = sleeper(&w, "api", 1, "");
    deploy(&w, &file, "api", 1);
    w.etcd.put(&w.key("operations/default/api"), "garbage");
    w.rune()
        .args(["scale", "api", "2", "--timeout", "60s"])
        .timeout(Duration::from_secs(90))
        .assert()
        .success();
    assert_eq!(counts(&w, "api"), (2, 2, 2));
    cast(&w, &file);
}

#[test]
fn a_key_that_does_not_fit_the_layout_is_reported_not_shown_as_a_service() {
    let w = World::new();
    cast(&w, &sleeper(&w, "keep", 1, ""));
    let odd = w.key("services/default/keep/x");
    w.etcd
        .put(&odd, r#"{"service": {"name": "keep", "command": "x"}}"#);
    let out = w.rune().args(["get", "services"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("keep").count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&odd) && stderr.contains("not a service key"),
        "{stderr}"
    );
}

#[test]
fn instances_that_keep_failing_are_replaced_with_a_growing_back_off() {
    let w = World::new();
    let _system = one_node(&w);
    let file = w.file(
        "fails.yaml",
        "service:\n  name: fails\n  command: \"exit 1\"\n  restartPolicy: Never\n",
    );
    cast(&w, &file);
    let failing = eventually("InstancesFailing", Duration::from_secs(60), || {
        condition(&w, "fails", "InstancesFailing")
    });
    assert_eq!(failing["reason"], "CrashLoopBackOff", "{failing}");
    assert!(
        failing["message"].as_str().unwrap().contains("exit code 1"),
        "says why: {failing}"
    );
    assert!(service(&w, "fails")["status"]["consecutiveFailures"].as_u64() >= Some(1));
}

#[test]
fn scale_flags_past_their_bounds_exit_2_naming_the_bound() {
    let w = World::new();
    cast(&w, &sleeper(&w, "api", 1, ""));
    for (args, bound) in [
        (
            &["--mode", "gradual", "--step", "4294967297"][..],
            "from 1 to 10000, got 4294967297",
        ),
        (
            &["--mode", "gradual", "--step", "4294967296"][..],
            "from 1 to 10000",
        ),
        (
            &["--mode", "gradual", "--interval", "100000000000y"][..],
            "limit of 1day",
        ),
        (&["--timeout", "30days"][..], "limit of 7days"),
        (&["--timeout", "500ms"][..], "at least 1s"),
    ] {
        w.rune()
            .args(["scale", "api", "4", "--no-wait"])
            .args(args)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(bound));
    }
    w.rune()
        .args(["scale", "api", "1000000", "--no-wait"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("from 0 to 10000"));
    assert_eq!(
        service(&w, "api")["spec"]["scale"],
        1,
        "nothing was written"
    );
}
