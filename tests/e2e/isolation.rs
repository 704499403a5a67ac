//! Instances that cannot read the fleet's keys: `user:`/`group:` (the process's
//! credentials in /proc, its log's owner), a non-root agent refusing another user,
//! an unknown user failing the scale with its name, the agent's environment kept
//! from instances, and the data dir's modes. The tests run as root (the agent
//! must be, to switch users); the non-root agent runs through `setpriv`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use predicates::prelude::*;

use crate::harness::World;
use crate::support::wait::eventually;
use crate::system::{self, FAST_AGENT, controller, deploy, instances, service, wait_ready};

const LONG: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

/// The uid and gid lines of /proc/<pid>/status: real, effective, saved, fs.
fn credentials(pid: i64) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (line("Uid:"), line("Gid:"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The one running instance's pid and id.
fn the_instance(w: &World, name: &str) -> (i64, String) {
    let all = instances(w, name);
    assert_eq!(all.len(), 1, "{all:?}");
    (
        all[0]["status"]["pid"].as_i64().unwrap(),
        all[0]["instance"]["id"].as_str().unwrap().to_string(),
    )
}

fn log_of(data: &Path, name: &str, id: &str) -> PathBuf {
    data.join(format!("logs/default_{name}_{id}.log"))
}

/// A service that prints its environment, then sleeps (marked, for the reaper).
fn env_printer(w: &World, name: &str, extra: &str) -> PathBuf {
    let m = system::marker(w, name);
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: 1\n  command: \"env; echo END-OF-ENV; exec python3 -c 'import time; time.sleep(100000)' {m}\"\n  \
             env: {{FROM_SPEC: yes-it-is}}\n  stopGracePeriod: 5s\n{extra}"
        ),
    )
}

fn printed_env(log: &Path) -> String {
    eventually("the instance printed its environment", LONG, || {
        let text = std::fs::read_to_string(log).ok()?;
        text.contains("END-OF-ENV").then_some(text)
    })
}

#[test]
fn an_instance_runs_as_nobody_with_its_log_and_none_of_the_agents_environment() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let _a = w.agent_with_env(
        "n1",
        FAST_AGENT,
        &[("AWS_SECRET_ACCESS_KEY", "x"), ("TZ", "UTC")],
    );
    let data = w.dir.join("agent-n1");
    // Ready only when its exec probe runs as nobody, without the agent's secret.
    let probe = "  health:\n    readiness: {type: exec, intervalSeconds: 1, command: [\"sh\", \"-c\", \"test $(id -u) = 65534 && test -z \\\"$AWS_SECRET_ACCESS_KEY\\\"\"]}\n";
    deploy(
        &w,
        &env_printer(&w, "web", &format!("  user: nobody\n{probe}")),
        "web",
        1,
    );

    let (pid, id) = the_instance(&w, "web");
    let nobody = format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}");
    assert_eq!(credentials(pid), (nobody.clone(), nobody));
    // The login's supplementary groups (nobody's: nogroup), none of root's.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let groups = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .unwrap();
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["65534"],
        "{groups}"
    );

    let log = log_of(&data, "web", &id);
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "log owner");
    assert_eq!(mode(&log), 0o600);

    let env = printed_env(&log);
    assert!(!env.contains("AWS_SECRET_ACCESS_KEY"), "{env}");
    assert!(!env.contains("RUNE_ETCD"), "{env}");
    for line in [
        "USER=nobody",
        "LOGNAME=nobody",
        "HOME=/nonexistent",
        "TZ=UTC",
        "FROM_SPEC=yes-it-is",
        "RUNE_SERVICE=web",
        "RUNE_NODE=n1",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");

    // The agent's own files are its own.
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("logs")), 0o700);
    assert_eq!(mode(&data.join("instances")), 0o700);
    assert_eq!(mode(&data.join("lease-id")), 0o600);
    let state = std::fs::read_dir(data.join("instances"))
        .unwrap()
        .flatten()
        .next()
        .expect("a state file");
    assert_eq!(mode(&state.path()), 0o600);
}

#[test]
fn an_unknown_user_fails_the_scale_naming_it_and_rolls_back() {
    let w = World::new();
    let _system = system::one_node(&w);
    let file = w.file(
        "ghost.yaml",
        "service:\n  name: ghost\n  scale: 0\n  command: [\"sleep\", \"100000\"]\n  user: no-such-user\n",
    );
    system::cast(&w, &file);
    // Where a rollback goes is the last scale at which the service was stable: a
    // scale sent before the controller saw it at 0 would have nothing to go back to.
    eventually("the controller saw ghost stable at 0", LONG, || {
        (service(&w, "ghost")["status"]["stableReplicas"] == 0).then_some(())
    });
    w.rune()
        .args(["scale", "ghost", "1", "--timeout", "60s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "user \"no-such-user\" does not exist on this node",
        ));
    let s = service(&w, "ghost");
    assert_eq!(s["spec"]["scale"], 0, "rolled back: {s}");
    let reason = s["status"]["lastScaleReason"].as_str().unwrap();
    assert!(
        reason.contains("user \"no-such-user\" does not exist on this node"),
        "{reason}"
    );
}

#[test]
fn an_agent_that_is_not_root_runs_its_own_user_and_refuses_another() {
    let w = World::new();
    let _c = controller(&w, "c1");
    // The agent runs as nobody: its data dir is nobody's, made here.
    let data = w.dir.join("agent-n1");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    let wrapper = [
        "setpriv",
        "--reuid",
        "nobody",
        "--regid",
        "nogroup",
        "--clear-groups",
    ];
    let _a = w.agent_wrapped(&wrapper, "n1", &w.etcd.client_url, FAST_AGENT);
    eventually("node n1 registered", LONG, || {
        w.etcd.get(&w.key("nodes/n1")).map(|_| ())
    });

    // No user: the agent's own, nobody.
    deploy(&w, &env_printer(&w, "own", ""), "own", 1);
    let (pid, id) = the_instance(&w, "own");
    assert!(credentials(pid).0.starts_with(&format!("{NOBODY} ")));
    let env = printed_env(&log_of(&data, "own", &id));
    assert!(env.lines().any(|l| l == "USER=nobody"), "{env}");

    // Another user: refused, naming why, and the scale fails.
    let file = w.file(
        "as-root.yaml",
        "service:\n  name: as-root\n  scale: 0\n  command: [\"sleep\", \"100000\"]\n  user: root\n",
    );
    system::cast(&w, &file);
    w.rune()
        .args(["scale", "as-root", "1", "--timeout", "60s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not as root"));
    let s = service(&w, "as-root");
    let reason = s["status"]["lastScaleReason"].as_str().unwrap();
    assert!(
        reason.contains("the agent runs as uid 65534 (gid 65534), not as root")
            && reason.contains("user \"root\""),
        "{reason}"
    );
    wait_ready(&w, "own", 1);
}
