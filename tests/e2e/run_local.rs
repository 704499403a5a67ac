//! `make run` (scripts/run-local.sh): the whole system comes up, shows a scale, and
//! Ctrl-C (here SIGTERM: a backgrounded script ignores SIGINT) leaves no process.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::net::free_port;
use crate::support::procs::{pids_with_cmdline, process_alive};
use crate::support::scratch::unique;
use crate::support::wait::{eventually, wait_until};

#[test]
fn make_run_starts_everything_scales_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(unique("rune-run"));
    let port = free_port();
    let log = dir.with_extension("out");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run-local.sh");
    let start = || {
        Command::new(script)
            .env("RUNE_RUN_DIR", &dir)
            .env("RUNE_RUN_ETCD_PORT", port.to_string())
            .env("RUNE_RUN_ETCD_PEER_PORT", free_port().to_string())
            .env(
                "RUNE_RUN_CONTROLLER_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env(
                "RUNE_RUN_AGENT_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("RUNE_RUN_SKIP_BUILD", "1")
            // No cgroups left behind by the test's agent (see tests/e2e/resources.rs).
            .env("RUNE_CGROUP_PARENT", "none")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut run = start();
    let out = || std::fs::read_to_string(&log).unwrap_or_default();
    up(&mut run, &out);
    assert!(
        out().contains("service default/web scaled to 3"),
        "{}",
        out()
    );
    assert!(
        out().contains("rune get services"),
        "prints what to try next"
    );

    // A second one in the same place says so.
    let second = Command::new(script)
        .env("RUNE_RUN_DIR", &dir)
        .env("RUNE_RUN_SKIP_BUILD", "1")
        // No cgroups left behind by the test's agent (see tests/e2e/resources.rs).
        .env("RUNE_CGROUP_PARENT", "none")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    let rune = |args: &[&str]| rune_at(port, args);
    let instances = rune(&["get", "instances", "-o", "json"]);
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&instances.stdout).unwrap();
    let pids: Vec<i32> = docs
        .iter()
        .filter_map(|d| d["status"]["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    assert!(pids.len() >= 3, "{docs:?}");

    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = wait_until(Duration::from_secs(60), || run.try_wait().ok().flatten());
    assert!(status.is_some(), "make run did not stop");
    for p in &pids {
        assert!(!process_alive(*p), "instance {p} survived");
    }
    // The data stays: the next run resumes the services.
    let mut again = start();
    up(&mut again, &out);
    let services = rune(&["get", "services"]);
    assert!(String::from_utf8_lossy(&services.stdout).contains("workers"));
    let _ = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status();
    wait_until(Duration::from_secs(60), || again.try_wait().ok().flatten()).expect("stops");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `make run | tee run.log`, then Ctrl-C: tee dies first, and the script's cleanup
/// writes to a dead pipe. It must still stop every daemon and instance.
#[test]
fn make_run_stops_everything_when_its_stdout_pipe_is_gone() {
    let dir = std::env::temp_dir().join(unique("rune-run-pipe"));
    let port = free_port();
    let controller_listen = format!("127.0.0.1:{}", free_port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run-local.sh");
    let mut run = Command::new(script)
        .env("RUNE_RUN_DIR", &dir)
        .env("RUNE_RUN_ETCD_PORT", port.to_string())
        .env("RUNE_RUN_ETCD_PEER_PORT", free_port().to_string())
        .env("RUNE_RUN_CONTROLLER_LISTEN", &controller_listen)
        .env(
            "RUNE_RUN_AGENT_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("RUNE_RUN_SKIP_BUILD", "1")
        // No cgroups left behind by the test's agent (see tests/e2e/resources.rs).
        .env("RUNE_CGROUP_PARENT", "none")
        .env("RUNE_RUN_NO_DEMO", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read like tee until the system is up, then go away as tee does on Ctrl-C.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(run.stdout.take().unwrap()));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("rune ready"))),
        "make run never came up"
    );
    let rune = |args: &[&str]| rune_at(port, args);
    let instances: Vec<serde_json::Value> =
        eventually("instances running", Duration::from_secs(60), || {
            let out = rune(&["get", "instances", "-o", "json"]);
            let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
            let running = docs
                .iter()
                .filter(|d| d["status"]["pid"].as_i64().is_some())
                .count();
            (running >= 2).then_some(docs)
        });
    let mut pids: Vec<i32> = instances
        .iter()
        .filter_map(|d| d["status"]["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    let daemons = [dir.to_string_lossy().to_string(), controller_listen];
    for marker in &daemons {
        pids.extend(pids_with_cmdline(marker));
    }
    drop(lines);
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    wait_until(Duration::from_secs(60), || run.try_wait().ok().flatten()).expect("stops");
    let left: Vec<i32> = pids.iter().copied().filter(|p| process_alive(*p)).collect();
    assert!(
        left.is_empty(),
        "still running after make run stopped: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rune ARGS` against the etcd that `make run` started on `port`.
fn rune_at(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(assert_cmd::cargo::cargo_bin("rune"))
        .args(args)
        .env("RUNE_ETCD_ENDPOINTS", format!("http://127.0.0.1:{port}"))
        .env("RUNE_CONFIG", "/nonexistent")
        .output()
        .unwrap()
}

/// Waits for "rune ready", failing at once (with the output) if the script exits.
fn up(run: &mut std::process::Child, out: &dyn Fn() -> String) {
    eventually("make run is up", Duration::from_secs(120), || {
        if let Ok(Some(status)) = run.try_wait() {
            panic!("make run exited early ({status}):\n{}", out());
        }
        out().contains("rune ready").then_some(())
    });
}
