//! Resource limits and whole-tree kill with real cgroups: a memory hog is
//! OOM-killed and says `OOMKilled`; a `setsid` child dies with its instance, also
//! after the agent restarted and adopted it; the pids limit holds; usage shows in
//! `rune get instances -o wide`.
//!
//! Each test gives its agent a cgroup parent of its own (`rune-e2e-<unique>`) and
//! removes it at the end, with anything left in it. Without writable cgroups (not
//! root, no cgroupfs) the tests say why and pass without checking anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Daemon, World};
use crate::support::procs::{Reaper, pids_with_cmdline, process_alive};
use crate::support::scratch::unique;
use crate::support::wait::eventually;

const NODE: &str = "n1";
const LONG: Duration = Duration::from_secs(30);
const ROOT: &str = "/sys/fs/cgroup";

/// A cgroup parent of one test, removed on drop (every instance cgroup in it
/// first, killing what is left in them).
struct Parent {
    name: String,
}

impl Parent {
    /// None (with the reason printed) when cgroups are not writable here.
    fn new() -> Option<Parent> {
        let name = unique("rune-e2e");
        let v2 = Path::new(ROOT).join("cgroup.controllers").exists();
        let probe = if v2 {
            Path::new(ROOT).join(&name)
        } else {
            Path::new(ROOT).join("memory").join(&name)
        };
        match std::fs::create_dir(&probe) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&probe);
                Some(Parent { name })
            }
            Err(e) => {
                eprintln!(
                    "skipped: cgroups are not writable here ({}: {e}); run as root on a host \
                     with cgroupfs",
                    probe.display()
                );
                None
            }
        }
    }

    /// `<hierarchy>/<parent>` in every hierarchy that has it.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = vec![Path::new(ROOT).join(&self.name)];
        if let Ok(d) = std::fs::read_dir(ROOT) {
            out.extend(d.flatten().map(|e| e.path().join(&self.name)));
        }
        out.retain(|d| d.is_dir());
        out
    }

    /// The instance's cgroup file `file` (e.g. `pids.current`), where it exists.
    fn file(&self, instance: &str, file: &str) -> Option<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join(instance).join(file))
            .find(|f| f.exists())
    }

    /// Instance cgroups left under the parent.
    fn children(&self) -> Vec<PathBuf> {
        self.dirs()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        for _ in 0..100 {
            for child in self.children() {
                let procs = std::fs::read_to_string(child.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
                let _ = std::fs::remove_dir(&child);
            }
            for d in self.dirs() {
                let _ = std::fs::remove_dir(&d);
            }
            if self.dirs().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("cgroups left behind: {:?}", self.dirs());
    }
}

/// The world, its cgroup parent and a reaper of instances left running (dropped
/// in reverse: reaper, parent, world).
fn world() -> Option<(World, Parent, Reaper)> {
    let parent = Parent::new()?;
    let w = World::new();
    let r = Reaper::Recorded(w.dir.clone());
    Some((w, parent, r))
}

fn agent(w: &World, p: &Parent, extra: &[&str]) -> Daemon {
    let mut args = vec!["--cgroup-parent", &p.name];
    args.extend_from_slice(extra);
    let a = w.agent(NODE, &args);
    eventually("agent /readyz", LONG, || {
        a.http_get("/readyz").filter(|(c, _)| *c == 200)
    });
    a
}

/// Stores `spec` as revision 1 of `svc` and a record for `NODE` naming it, as the
/// controller would.
fn put_record(w: &World, svc: &str, id: &str, desired: &str, spec: Value) {
    let mut spec = spec;
    spec["name"] = json!(svc);
    let stored = json!({
        "namespace": "default", "service": svc, "revision": 1, "spec": spec,
        "specRevision": 1, "createdAt": "2026-01-01T00:00:00Z",
    });
    w.etcd.put(
        &w.key(&format!("revisions/default/{svc}/1")),
        &stored.to_string(),
    );
    let record = json!({
        "id": id, "namespace": "default", "service": svc, "node": NODE,
        "desired": desired, "revision": 1, "createdAt": "2026-01-01T00:00:00Z",
    });
    w.etcd.put(
        &w.key(&format!("assignments/{NODE}/default/{svc}/{id}")),
        &record.to_string(),
    );
}

#[track_caller]
fn status_where(w: &World, svc: &str, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("{svc}/{id}: {what}"), LONG, || {
        w.etcd
            .get(&w.key(&format!("instance-status/default/{svc}/{id}")))
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .filter(|s| f(s))
    })
}

fn ready(s: &Value) -> bool {
    s["phase"] == "Running" && s["ready"] == true
}

/// A marker for one test's processes: a unique fractional sleep length.
fn marker() -> String {
    format!(
        "1000.{}{}",
        std::process::id(),
        unique("x").rsplit('-').next().unwrap()
    )
}

#[test]
fn resources_memory_hog_is_oom_killed_and_says_so() {
    let Some((w, parent, _reaper)) = world() else {
        return;
    };
    let _a = agent(&w, &parent, &[]);
    let spec = json!({
        "command": ["python3", "-c",
                    "a = []\nwhile True: a.append(bytearray(1 << 20))"],
        "restartPolicy": "Never",
        "resources": {"memory": "32Mi"},
    });
    put_record(&w, "hog", "i1", "Running", spec);
    let s = status_where(&w, "hog", "i1", "failed", |s| s["phase"] == "Failed");
    assert_eq!(s["lastExit"]["reason"], "OOMKilled", "{s}");
    assert_eq!(s["lastExit"]["signal"], 9, "{s}");
    eventually("the instance's cgroup removed", LONG, || {
        parent.children().is_empty().then_some(())
    });
}

#[test]
fn resources_a_setsid_child_dies_with_its_instance_also_after_adoption() {
    let Some((w, parent, _reaper)) = world() else {
        return;
    };
    let mut a = agent(&w, &parent, &[]);
    let (m1, m2) = (marker(), marker());
    // Two instances: one stopped by the agent that started it, one by the next.
    for (svc, m) in [("tree", &m1), ("adopted", &m2)] {
        let spec = json!({
            "command": format!("setsid sleep {m} & sleep {m}"),
            "stopGracePeriod": "1s",
        });
        put_record(&w, svc, "i1", "Running", spec);
        status_where(&w, svc, "i1", "ready without probe", ready);
        eventually("instance and its setsid child running", LONG, || {
            (pids_with_cmdline(m).len() >= 2).then_some(())
        });
    }
    let spec = |m: &str| json!({"command": format!("setsid sleep {m} & sleep {m}"), "stopGracePeriod": "1s"});
    let pids = pids_with_cmdline(&m1);
    put_record(&w, "tree", "i1", "Stopped", spec(&m1));
    status_where(&w, "tree", "i1", "exited", |s| s["phase"] == "Exited");
    for p in pids {
        assert!(!process_alive(p), "pid {p} survived the stop");
    }
    assert!(
        pids_with_cmdline(&m1).is_empty(),
        "a process with the marker survived"
    );

    // The agent dies; the next one finds the instance's cgroup again by its id.
    a.kill9();
    let pids = pids_with_cmdline(&m2);
    assert!(pids.len() >= 2, "instance died with the agent");
    let _a = agent(&w, &parent, &[]);
    status_where(&w, "adopted", "i1", "ready after adoption", ready);
    put_record(&w, "adopted", "i1", "Stopped", spec(&m2));
    status_where(&w, "adopted", "i1", "exited", |s| s["phase"] == "Exited");
    eventually("nothing with the marker left", LONG, || {
        pids_with_cmdline(&m2).is_empty().then_some(())
    });
    for p in pids {
        assert!(!process_alive(p), "pid {p} survived the stop");
    }
    eventually("the instances' cgroups removed", LONG, || {
        parent.children().is_empty().then_some(())
    });
}

#[test]
fn resources_pids_limit_bounds_the_processes_of_an_instance() {
    let Some((w, parent, _reaper)) = world() else {
        return;
    };
    let _a = agent(&w, &parent, &[]);
    let m = marker();
    let code = "import os, sys, time\n\
                n = 0\n\
                for i in range(40):\n\
                \x20   try:\n\
                \x20       if os.fork() == 0:\n\
                \x20           time.sleep(1000)\n\
                \x20           os._exit(0)\n\
                \x20       n += 1\n\
                \x20   except OSError as e:\n\
                \x20       print('fork failed:', e, flush=True)\n\
                print('forked', n, flush=True)\n\
                time.sleep(1000)\n";
    let spec = json!({
        "command": ["python3", "-c", code, &m],
        "resources": {"pids": 8},
        "stopGracePeriod": "1s",
    });
    put_record(&w, "forks", "i1", "Running", spec.clone());
    status_where(&w, "forks", "i1", "ready", ready);
    let current = eventually("pids.current readable", LONG, || {
        let f = parent.file("default_forks_i1", "pids.current")?;
        std::fs::read_to_string(f).ok()?.trim().parse::<u32>().ok()
    });
    assert!(current <= 8, "pids.current {current} over the limit");
    let log = eventually("the instance logged fork failures", LONG, || {
        let logs = w.dir.join("agent-n1/logs");
        std::fs::read_dir(logs)
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("default_forks_")
            })
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|t| t.contains("forked "))
    });
    assert!(log.contains("fork failed"), "{log}");
    assert!(!log.contains("forked 40"), "{log}");
    put_record(&w, "forks", "i1", "Stopped", spec);
    status_where(&w, "forks", "i1", "exited", |s| s["phase"] == "Exited");
    eventually("every forked process gone", LONG, || {
        pids_with_cmdline(&m).is_empty().then_some(())
    });
}

#[test]
fn resources_usage_shows_in_get_instances_wide_and_on_metrics() {
    use crate::system;
    let Some((w, parent, _reaper)) = world() else {
        return;
    };
    let _c = system::controller(&w, "c1");
    let mut args = system::FAST_AGENT.to_vec();
    args.extend(["--cgroup-parent", &parent.name]);
    let a = w.agent(NODE, &args);
    // The node record says what it can limit, and how much it has.
    let node: Value = eventually("node registered with its cgroups", LONG, || {
        w.etcd
            .get(&w.key(&format!("nodes/{NODE}")))
            .and_then(|s| serde_json::from_str(&s).ok())
    });
    assert_eq!(node["cgroups"]["memory"], true, "{node}");
    assert_eq!(node["cgroups"]["pids"], true, "{node}");
    assert!(
        node["allocatable"]["memoryBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    let m = system::marker(&w, "used");
    let code = "import time\nb = bytearray(40 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n\
                t = time.time()\nwhile time.time() - t < 0.5: pass\ntime.sleep(100000)\n";
    let file = w.file(
        "used.yaml",
        &format!(
            "service:\n  name: used\n  command: [\"python3\", \"-c\", {code:?}, {m:?}]\n  \
             stopGracePeriod: 1s\n  resources: {{memory: 256Mi, cpu: 500m, pids: 64}}\n"
        ),
    );
    system::deploy(&w, &file, "used", 1);
    // The limits are where the kernel reads them (v1 or v2 files).
    let mut seen = 0;
    for child in parent.children() {
        let read = |f: &str| std::fs::read_to_string(child.join(f)).ok();
        for (file, want) in [
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.max", "50000 100000"),
            ("memory.limit_in_bytes", "268435456"),
            ("memory.max", "268435456"),
            ("pids.max", "64"),
        ] {
            if let Some(v) = read(file) {
                assert_eq!(v.trim(), want, "{}", child.join(file).display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "limits not found under {:?}", parent.dirs());
    // The agent asks for what it runs in its node record.
    eventually(
        "the node record counts the instance's request",
        LONG,
        || {
            let node: Value =
                serde_json::from_str(&w.etcd.get(&w.key(&format!("nodes/{NODE}")))?).ok()?;
            (node["allocatable"]["requestedMemoryBytes"] == 256u64 << 20).then_some(())
        },
    );
    let table = eventually("usage in get instances -o wide", LONG, || {
        let out = w
            .rune()
            .args(["get", "instances", "used", "-o", "wide"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = text.lines().find(|l| l.contains("used-"))?.to_string();
        row.contains("Mi").then_some(text)
    });
    assert!(
        table.contains("MEMORY") && table.contains("CPU TIME"),
        "{table}"
    );
    let status = system::instances(&w, "used")[0]["status"].clone();
    let used = status["usage"]["memoryBytes"].as_u64().unwrap_or(0);
    assert!((40 << 20..256 << 20).contains(&used), "{status}");
    let (_, metrics) = a.http_get("/metrics").unwrap();
    assert!(
        metrics.contains("rune_agent_instance_memory_bytes{namespace=\"default\",service=\"used\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("rune_agent_instance_cpu_seconds{"),
        "{metrics}"
    );
    w.rune().args(["stop", "used"]).assert().success();
    eventually("stopped, nothing left", LONG, || {
        (pids_with_cmdline(&m).is_empty() && parent.children().is_empty()).then_some(())
    });
}

#[test]
fn resources_without_cgroups_on_any_node_fail_to_place_and_say_why() {
    use crate::system;
    // No cgroups needed: the agent runs without (the harness's default).
    let w = World::new();
    let _reaper = Reaper::Recorded(w.dir.clone());
    let (_c, _a) = system::one_node(&w);
    let file = w.file(
        "capped.yaml",
        "service:\n  name: capped\n  command: [\"sleep\", \"1000\"]\n  resources: {memory: 64Mi}\n",
    );
    system::cast(&w, &file);
    let c = eventually("ReplicaFailure", LONG, || {
        system::condition(&w, "capped", "ReplicaFailure")
    });
    assert_eq!(c["reason"], "Unschedulable", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("no ready node can enforce them") && message.contains("memory"),
        "{message}"
    );
    assert!(system::instances(&w, "capped").is_empty());
}

#[test]
fn resources_on_an_agent_without_cgroups_do_not_start() {
    // No cgroups needed: an agent that cannot enforce limits refuses the start
    // (placement keeps such specs away; this is the agent's own guard).
    let w = World::new();
    let _reaper = Reaper::Recorded(w.dir.clone());
    let a = w.agent(NODE, &[]);
    eventually("agent /readyz", LONG, || {
        a.http_get("/readyz").filter(|(c, _)| *c == 200)
    });
    let m = marker();
    let spec = json!({
        "command": format!("sleep {m}"),
        "restartPolicy": "Never",
        "resources": {"pids": 10},
    });
    put_record(&w, "unenforced", "i1", "Running", spec);
    let s = status_where(&w, "unenforced", "i1", "failed", |s| s["phase"] == "Failed");
    let reason = s["lastExit"]["reason"].as_str().unwrap();
    assert!(reason.contains("no usable cgroups"), "{s}");
    assert!(
        pids_with_cmdline(&m).is_empty(),
        "it ran without its limits"
    );
}

#[test]
fn resources_an_instance_as_nobody_is_in_its_cgroup_and_limited() {
    // The child joins its cgroup (a root-owned cgroup.procs) before it becomes
    // nobody: both must hold.
    let Some((w, parent, _reaper)) = world() else {
        return;
    };
    let _a = agent(&w, &parent, &[]);
    let m = marker();
    let spec = json!({
        "command": format!("sleep {m}"),
        "user": "nobody",
        "resources": {"pids": 16},
        "stopGracePeriod": "1s",
    });
    put_record(&w, "limited", "i1", "Running", spec);
    let s = status_where(&w, "limited", "i1", "running", |s| s["phase"] == "Running");
    let pid = s["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{uid}"
    );
    let procs = parent
        .file("default_limited_i1", "cgroup.procs")
        .expect("the instance's cgroup");
    let members = std::fs::read_to_string(procs).unwrap();
    assert!(
        members.lines().any(|l| l.trim() == pid.to_string()),
        "{pid} not in {members}"
    );
}
