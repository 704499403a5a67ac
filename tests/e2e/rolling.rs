//! Rolling restarts and rollouts through the real binaries: the bounds sampled
//! from etcd while they run (never more than desired + maxSurge instances, never
//! fewer than desired - maxUnavailable ready), a rollout by `rune cast`, automatic
//! rollback of a bad revision, pause, the pinned-port fallback, a leader killed
//! mid-rollout, and a newer scale superseding a rollout.

use std::process::Child;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

use crate::harness::World;
use crate::support::procs::instance_processes;
use crate::support::wait::eventually;
use crate::system::*;
use rune::model::{DesiredState, InstanceRecord, InstanceStatus};

/// A service of small python HTTP servers (ready once they accept connections),
/// with the test's marker in their command line.
fn web(w: &World, name: &str, scale: u32, extra: &str) -> std::path::PathBuf {
    let m = marker(w, name);
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: [\"python3\", \"-c\", \"import http.server as h, os; h.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()\", \"{m}\"]\n  ports: [{{name: http}}]\n  health:\n    readiness: {{type: tcp, port: http, intervalSeconds: 1}}\n  stopGracePeriod: 5s\n{extra}"
        ),
    )
}

/// What one look at etcd saw of the service's instances.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    /// Instance records, stopping ones included.
    records: usize,
    /// Records that should run and whose agent reports them ready.
    ready: usize,
    /// OS processes of the service (by its marker).
    processes: usize,
}

/// Samples the service through etcd (and /proc) until `child` exits; returns
/// the child's output and every sample.
fn sample_while(w: &World, name: &str, child: Child) -> (std::process::Output, Vec<Sample>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(w.store());
    let keys = store.keys().clone();
    let mut child = child;
    let mut samples = vec![];
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (records, statuses) = rt.block_on(async {
            let records = store
                .list(&keys.instances_of("default", name))
                .await
                .unwrap()
                .0;
            let statuses = store
                .list(&keys.instance_statuses_of("default", name))
                .await
                .unwrap()
                .0;
            (records, statuses)
        });
        let records: Vec<InstanceRecord> = records
            .iter()
            .filter_map(|kv| InstanceRecord::parse(&kv.value).ok())
            .collect();
        let statuses: Vec<InstanceStatus> = statuses
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let ready = records
            .iter()
            .filter(|r| r.desired == DesiredState::Running)
            .filter(|r| statuses.iter().any(|s| s.id == r.id && s.ready))
            .count();
        // Instance processes only (they carry RUNE_INSTANCE): a shell elsewhere
        // whose command line happens to hold the marker is no instance.
        let processes = instance_processes(&marker(w, name))
            .iter()
            .filter(|p| !p.id.starts_with('<'))
            .count();
        samples.push(Sample {
            records: records.len(),
            ready,
            processes,
        });
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), samples)
}

/// Checks every sample against the bounds; returns the most instances and the
/// fewest ready seen.
#[track_caller]
fn assert_bounds(samples: &[Sample], desired: usize, surge: usize, unavailable: usize) {
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    for s in samples {
        assert!(
            s.records <= desired + surge && s.processes <= desired + surge,
            "more than {desired} + {surge} instances: {s:?} in {samples:?}"
        );
        assert!(
            s.ready + unavailable >= desired,
            "fewer than {desired} - {unavailable} ready: {s:?} in {samples:?}"
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn env_of(pid: i32) -> String {
    text(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
}

fn last_operation(w: &World, name: &str) -> Value {
    service(w, name)["status"]["operation"].clone()
}

#[test]
fn a_rolling_restart_keeps_the_service_ready_and_within_its_surge() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &web(&w, "web", 4, ""), "web", 4);
    let before = pids(&w, "web");
    let child = spawn_rune(
        &w,
        &[
            "restart",
            "web",
            "--rolling",
            "--max-surge",
            "1",
            "--max-unavailable",
            "0",
        ],
    );
    let (out, samples) = sample_while(&w, "web", child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("updated 1/4"), "progress: {stdout}");
    assert!(stdout.contains("restarted (4 ready)"), "{stdout}");
    assert_bounds(&samples, 4, 1, 0);
    assert!(
        samples.iter().any(|s| s.records == 5),
        "it surged: {samples:?}"
    );
    let after = pids(&w, "web");
    assert_eq!(after.len(), 4);
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "every one replaced"
    );
    let st = service(&w, "web")["status"].clone();
    assert_eq!(st["updatedReplicas"], 4, "{st}");
    assert_eq!(st["operation"]["phase"], "Succeeded");
    stdout_ok(w.rune().args(["history", "web"]));
}

#[test]
fn a_cast_rolls_a_rolling_service_out_and_get_shows_the_revisions() {
    let w = World::new();
    let _system = one_node(&w);
    let rolling = "  update: {strategy: Rolling, maxSurge: 1, maxUnavailable: 0}\n";
    deploy(
        &w,
        &web(
            &w,
            "web",
            3,
            &format!("{rolling}  env: {{VERSION: \"1\"}}\n"),
        ),
        "web",
        3,
    );
    let before = pids(&w, "web");
    cast(
        &w,
        &web(
            &w,
            "web",
            3,
            &format!("{rolling}  env: {{VERSION: \"2\"}}\n"),
        ),
    );
    eventually("rolled out", Duration::from_secs(120), || {
        let st = service(&w, "web")["status"].clone();
        (st["operation"]["kind"] == "rollout"
            && st["operation"]["phase"] == "Succeeded"
            && st["updatedReplicas"] == 3
            && st["readyReplicas"] == 3)
            .then_some(())
    });
    let after = pids(&w, "web");
    assert_eq!(after.len(), 3);
    assert!(before.iter().all(|p| !after.contains(p)));
    assert!(after.iter().all(|p| env_of(*p).contains("VERSION=2")));
    let st = service(&w, "web")["status"].clone();
    assert_eq!(
        (st["currentRevision"].clone(), st["updateRevision"].clone()),
        (2.into(), 2.into())
    );
    assert!(
        st["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("rolling out revision 2"),
        "{st}"
    );
    let yaml = text(&stdout_ok(
        w.rune().args(["get", "service", "web", "-o", "yaml"]),
    ));
    assert!(yaml.contains("updatedReplicas: 3"), "{yaml}");
    let wide = text(&stdout_ok(w.rune().args(["get", "services", "-o", "wide"])));
    assert!(wide.contains("UPDATED"), "{wide}");
    let describe = text(&stdout_ok(w.rune().args(["describe", "service", "web"])));
    assert!(
        describe.contains("Update:") && describe.contains("Rolling"),
        "{describe}"
    );
}

/// A revision of `web` (scale 2, with `update` lines `update`) whose instances
/// exit with code 3 at once.
fn exiting_revision(w: &World, update: &str) -> std::path::PathBuf {
    w.file(
        "bad.yaml",
        &format!(
            "service:\n  name: web\n  scale: 2\n  command: [\"sh\", \"-c\", \"exit 3\"]\n  ports: [{{name: http}}]\n  health:\n    readiness: {{type: tcp, port: http, intervalSeconds: 1}}\n{update}"
        ),
    )
}

#[test]
fn a_bad_revision_is_rolled_back_and_the_old_instances_keep_running() {
    let w = World::new();
    let _system = one_node(&w);
    let rolling = "  update: {strategy: Rolling}\n";
    deploy(&w, &web(&w, "web", 2, rolling), "web", 2);
    let before = pids(&w, "web");
    // The new revision's instances exit at once.
    let bad = exiting_revision(&w, rolling);
    cast(&w, &bad);
    eventually("rolled back", Duration::from_secs(120), || {
        let history = service(&w, "web")["status"]["history"].clone();
        history
            .as_array()?
            .iter()
            .find(|h| h["kind"] == "rollout" && h["result"] == "RolledBack")
            .cloned()
    });
    let st = service(&w, "web");
    let reason = st["status"]["lastScaleReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("exit code 3") && reason.contains("instance web-"),
        "names the instance and the error: {reason}"
    );
    eventually(
        "the spec is the previous one",
        Duration::from_secs(30),
        || {
            let spec = service(&w, "web")["spec"].clone();
            (spec["command"][0] == "python3" && spec["scale"] == 2).then_some(())
        },
    );
    eventually(
        "back to the old instances only",
        Duration::from_secs(120),
        || {
            let op = last_operation(&w, "web");
            (op["phase"] == "Succeeded" && pids(&w, "web") == before).then_some(())
        },
    );
    assert_eq!(live_processes(&w, "web").len(), 2, "{:?}", before);
}

#[test]
fn on_failure_pause_stops_where_it_is_and_a_cast_resumes() {
    let w = World::new();
    let _system = one_node(&w);
    let pause = "  update: {strategy: Rolling, onFailure: pause}\n";
    deploy(&w, &web(&w, "web", 2, pause), "web", 2);
    let before = pids(&w, "web");
    let bad = exiting_revision(&w, pause);
    cast(&w, &bad);
    let paused = eventually("paused", Duration::from_secs(120), || {
        condition(&w, "web", "Progressing")
            .is_none()
            .then_some(())?;
        let st = service(&w, "web")["status"].clone();
        let c = st["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Progressing" && c["reason"] == "RolloutPaused")?
            .clone();
        Some(c)
    });
    assert!(
        paused["message"].as_str().unwrap().contains("exit code 3"),
        "{paused}"
    );
    let op = last_operation(&w, "web");
    assert_eq!(op["phase"], "Failed");
    assert_eq!(
        service(&w, "web")["spec"]["command"][0],
        "sh",
        "no rollback"
    );
    eventually("the old ones keep serving", Duration::from_secs(60), || {
        (pids(&w, "web") == before && live_processes(&w, "web").len() == 2).then_some(())
    });
    // A good cast resumes.
    cast(
        &w,
        &web(&w, "web", 2, &format!("{pause}  env: {{V: \"3\"}}\n")),
    );
    eventually("resumed and rolled out", Duration::from_secs(120), || {
        let st = service(&w, "web")["status"].clone();
        (st["operation"]["phase"] == "Succeeded" && st["updatedReplicas"] == 2).then_some(())
    });
    assert!(pids(&w, "web").iter().all(|p| env_of(*p).contains("V=3")));
}

#[test]
fn a_pinned_port_replaces_one_at_a_time_and_says_so() {
    let w = World::new();
    let _system = one_node(&w);
    let port = crate::support::net::free_port();
    let file = web(&w, "pinned", 1, "").to_string_lossy().into_owned();
    let spec = std::fs::read_to_string(&file).unwrap().replace(
        "ports: [{name: http}]",
        &format!("ports: [{{name: http, port: {port}}}]"),
    );
    std::fs::write(&file, spec).unwrap();
    deploy(&w, std::path::Path::new(&file), "pinned", 1);
    let before = pids(&w, "pinned");
    let child = spawn_rune(&w, &["restart", "pinned", "--rolling"]);
    let (out, samples) = sample_while(&w, "pinned", child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // No surge on the one node: stop one, then start one.
    assert_bounds(&samples, 1, 0, 1);
    let after = pids(&w, "pinned");
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    let op = last_operation(&w, "pinned");
    assert!(
        op["message"]
            .as_str()
            .unwrap()
            .contains("pins a port and no node is free"),
        "{op}"
    );
}

#[test]
fn a_leader_killed_mid_rollout_hands_over_with_no_instance_beyond_the_surge() {
    let w = World::new();
    let (mut c1, c2) = leader_and_standby(&w);
    let _a = agent(&w, "n1");
    deploy(&w, &web(&w, "web", 4, ""), "web", 4);
    let before = pids(&w, "web");
    let child = spawn_rune(
        &w,
        &[
            "restart",
            "web",
            "--rolling",
            "--max-surge",
            "2",
            "--min-ready",
            "2s",
        ],
    );
    eventually("the first batch", Duration::from_secs(60), || {
        (last_operation(&w, "web")["rolling"]["updated"].as_u64() >= Some(1)).then_some(())
    });
    c1.kill9();
    let (out, samples) = sample_while(&w, "web", child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(c2.logs().contains("became leader"));
    assert_bounds(&samples, 4, 2, 0);
    let after = pids(&w, "web");
    assert_eq!(after.len(), 4);
    assert!(before.iter().all(|p| !after.contains(p)));
    assert_eq!(live_processes(&w, "web").len(), 4);
}

#[test]
fn a_newer_scale_supersedes_a_rolling_restart_and_a_rollout_which_then_resumes() {
    let w = World::new();
    let _system = one_node(&w);
    let slow = "  update: {strategy: Rolling, minReadySeconds: 30}\n";
    deploy(&w, &web(&w, "web", 3, slow), "web", 3);
    let restart = spawn_rune(&w, &["restart", "web"]);
    eventually("the rolling restart runs", Duration::from_secs(60), || {
        let op = last_operation(&w, "web");
        (op["kind"] == "restart" && op["phase"] == "Progressing" && op["rolling"].is_object())
            .then_some(())
    });
    w.rune().args(["scale", "web", "2"]).assert().success();
    let out = restart.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("superseded"));
    let history = service(&w, "web")["status"]["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "restart" && h["result"] == "Superseded"),
        "{history}"
    );
    wait_ready(&w, "web", 2);

    // A spec rollout, superseded by a scale, resumes once the scale is done.
    cast(
        &w,
        &web(&w, "web", 2, &format!("{slow}  env: {{V: \"2\"}}\n")),
    );
    eventually("the rollout runs", Duration::from_secs(60), || {
        let op = last_operation(&w, "web");
        (op["kind"] == "rollout" && op["phase"] == "Progressing").then_some(())
    });
    w.rune().args(["scale", "web", "3"]).assert().success();
    let fast = "  update: {strategy: Rolling}\n";
    cast(
        &w,
        &web(&w, "web", 3, &format!("{fast}  env: {{V: \"2\"}}\n")),
    );
    eventually(
        "the rollout resumed and finished",
        Duration::from_secs(120),
        || {
            let st = service(&w, "web")["status"].clone();
            (st["operation"]["kind"] == "rollout"
                && st["operation"]["phase"] == "Succeeded"
                && st["updatedReplicas"] == 3
                && st["readyReplicas"] == 3)
                .then_some(())
        },
    );
    let history = service(&w, "web")["status"]["history"].clone();
    let results: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["kind"].as_str().unwrap(), h["result"].as_str().unwrap()))
        .collect();
    assert!(results.contains(&("rollout", "Superseded")), "{results:?}");
    assert!(results.contains(&("scale", "Succeeded")), "{results:?}");
    assert!(pids(&w, "web").iter().all(|p| env_of(*p).contains("V=2")));
}

#[test]
fn bad_update_settings_are_usage_errors_naming_where() {
    let w = World::new();
    let file = web(
        &w,
        "web",
        1,
        "  update:\n    strategy: Rolling\n    maxSurge: 0\n    maxUnavailable: 0%\n",
    );
    w.rune().arg("cast").arg(&file).assert().code(2).stderr(
        predicate::str::contains("web.yaml:").and(predicate::str::contains(
            "maxSurge and update.maxUnavailable cannot both be 0",
        )),
    );
    let file = web(&w, "web", 1, "  update: {strategy: Rollin}\n");
    w.rune()
        .arg("cast")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Rollin"));
    let file = web(&w, "web", 1, "  update: {minReadySeconds: 7200}\n");
    w.rune()
        .arg("cast")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "minReadySeconds must be from 0 to 3600",
        ));
    // The example of docs/gitops.md's `update:` section is a valid spec.
    let gitops = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/gitops.md"),
    )
    .unwrap();
    let example = gitops[gitops.find("### `update:`").unwrap()..]
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap()
        .to_string();
    let file = w.file("gitops-update.yaml", &example);
    w.rune()
        .args(["cast", "--dry-run"])
        .arg(&file)
        .assert()
        .success();
    cast(&w, &web(&w, "web", 1, ""));
    w.rune()
        .args([
            "restart",
            "web",
            "--rolling",
            "--max-surge",
            "0",
            "--max-unavailable",
            "0",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot both be 0"));
    w.rune()
        .args(["restart", "web", "--rolling", "--max-surge", "150%"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--max-surge must be from 0 to 100",
        ));
    assert!(
        w.etcd.get(&w.key("operations/default/web")).is_none(),
        "nothing half-applied"
    );
}

#[test]
fn the_readme_rolling_restarts_block_runs_verbatim() {
    let w = World::new();
    let _system = one_node(&w);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("### Rolling restarts").expect("the section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an sh block");
    let bin = assert_cmd::cargo::cargo_bin("rune");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .args(["-e", "-c", block])
        .current_dir(root)
        .env("PATH", path)
        .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
        .env("RUNE_ETCD_PREFIX", &w.prefix)
        .env("RUNE_CONFIG", "/nonexistent")
        .env_remove("RUNE_CONTEXT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README's Rolling restarts block failed:\n{block}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("updatedReplicas: 2"), "{stdout}");
    w.rune().args(["stop", "web"]).assert().success();
}

#[test]
fn a_failing_rolling_restart_exits_1_and_the_old_instances_keep_running() {
    let w = World::new();
    let _system = one_node(&w);
    deploy(&w, &gated(&w, "api", 2), "api", 2);
    let before = pids(&w, "api");
    // From now on new instances exit 1 at once.
    std::fs::remove_file(w.dir.join("gate")).unwrap();
    let out = w
        .rune()
        .args(["restart", "api", "--rolling"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("instance api-") && stderr.contains("exit code 1"),
        "names the instance and the error: {stderr}"
    );
    eventually("only the old ones run", Duration::from_secs(60), || {
        (pids(&w, "api") == before && live_processes(&w, "api").len() == 2).then_some(())
    });
    let history = text(&stdout_ok(w.rune().args(["history", "api"])));
    assert!(
        history.contains("restart") && history.contains("Failed"),
        "{history}"
    );
}
