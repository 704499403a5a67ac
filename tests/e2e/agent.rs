//! `rune-agent` against a real etcd with real processes: instance records in, processes
//! and statuses out; probes, crash-loop back-off, stopping whole process groups,
//! adoption after SIGKILL, etcd outages, a node name held by another agent, and how
//! long the logs of ended instances are kept.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, World};
use crate::support::net::http_get;
use crate::support::procs::{Reaper, pids_with_cmdline, process_alive};
use crate::support::scratch::unique;
use crate::support::wait::eventually;

const NODE: &str = "n1";
const LONG: Duration = Duration::from_secs(30);

/// The world and a reaper of what the test's agents left running: instances outlive
/// their agent by design, so dropping the agent is not enough. `World` does the same
/// on drop; this keeps the agent tests explicit. Created right after the World, it
/// runs after the agents are gone.
fn world() -> (World, Reaper) {
    let w = World::new();
    let r = Reaper::Recorded(w.dir.clone());
    (w, r)
}

/// An instance record for `NODE` as the controller would write it, naming spec
/// revision `revision`.
fn record(svc: &str, id: &str, desired: &str, revision: u64) -> String {
    json!({
        "id": id, "namespace": "default", "service": svc, "node": NODE,
        "desired": desired, "revision": revision,
        "createdAt": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// Where the controller puts `NODE`'s copy of a record: what the agent watches.
fn record_key(svc: &str, id: &str) -> String {
    format!("assignments/{NODE}/default/{svc}/{id}")
}

/// Stores `spec` as a revision of `svc` (numbered by its content, so one spec is
/// one revision, as the controller does), then a record naming it.
fn put_record(w: &World, svc: &str, id: &str, desired: &str, spec: Value) {
    use std::hash::{Hash, Hasher};
    let mut spec = spec;
    spec["name"] = json!(svc);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.to_string().hash(&mut h);
    let revision = h.finish() % 1_000_000 + 1;
    let stored = json!({
        "namespace": "default", "service": svc, "revision": revision, "spec": spec,
        "specRevision": 1, "createdAt": "2026-01-01T00:00:00Z",
    });
    w.etcd.put(
        &w.key(&format!("revisions/default/{svc}/{revision}")),
        &stored.to_string(),
    );
    w.etcd.put(
        &w.key(&record_key(svc, id)),
        &record(svc, id, desired, revision),
    );
}

fn status(w: &World, svc: &str, id: &str) -> Option<Value> {
    let s = w
        .etcd
        .get(&w.key(&format!("instance-status/default/{svc}/{id}")))?;
    serde_json::from_str(&s).ok()
}

/// Waits until the instance's status satisfies `f`; returns it.
#[track_caller]
fn status_where(w: &World, svc: &str, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("{svc}/{id}: {what}"), LONG, || {
        status(w, svc, id).filter(|s| f(s))
    })
}

fn ready(s: &Value) -> bool {
    s["phase"] == "Running" && s["ready"] == true
}

fn agent_ready(a: &Daemon) {
    eventually("agent /readyz", LONG, || {
        a.http_get("/readyz").filter(|(c, _)| *c == 200)
    });
}

/// A python http server bound to the instance's PORT; `dir` makes its command line
/// unique, so the test can find its process.
fn http_server(dir: &std::path::Path, readiness: Value) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    json!({
        "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "${PORT}",
                    "--directory", dir.to_str().unwrap()],
        "ports": [{"name": "http"}],
        "health": {"readiness": readiness},
        "stopGracePeriod": "5s",
    })
}

#[test]
fn agent_record_starts_a_process_that_serves_on_its_port() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    let node: Value = serde_json::from_str(&w.etcd.get(&w.key("nodes/n1")).unwrap()).unwrap();
    assert_eq!(node["name"], "n1");
    assert!(node["leaseId"].as_i64().unwrap() != 0, "{node}");

    let www = w.dir.join(unique("www"));
    let marker = www.to_str().unwrap().to_string();
    let spec = http_server(
        &www,
        json!({"type": "http", "port": "http", "path": "/", "intervalSeconds": 5}),
    );
    let written = Instant::now();
    put_record(&w, "web", "i1", "Running", spec);
    let put_took = written.elapsed();
    // Tight poll: this is the figure the report quotes.
    let pid = loop {
        if let Some(p) = pids_with_cmdline(&marker).first() {
            break *p;
        }
        assert!(written.elapsed() < LONG, "process never started");
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!(
        "record write -> process started: {:?} (etcdctl put itself took {:?})",
        written.elapsed(),
        put_took
    );
    let s = status_where(&w, "web", "i1", "ready", ready);
    eprintln!("record write -> ready reported: {:?}", written.elapsed());
    assert_eq!(s["pid"].as_i64().unwrap() as i32, pid);
    assert_eq!(s["node"], "n1");
    let port = s["port"].as_u64().unwrap();
    assert_eq!(s["ports"]["http"].as_u64().unwrap(), port);
    assert!(
        s["readyAt"].is_string() && s["startedAt"].is_string(),
        "{s}"
    );
    let (code, _) = http_get(&format!("127.0.0.1:{port}"), "/").unwrap();
    assert_eq!(code, 200);
    // The instance runs in a process group of its own.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgid: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgid, pid);
    // Its log lands in the data dir.
    let log = w.dir.join("agent-n1/logs/default_web_i1.log");
    eventually("instance log has the request", LONG, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("GET /"))
    });
    let (_, metrics) = a.http_get("/metrics").unwrap();
    assert!(
        metrics.contains("rune_agent_instances{phase=\"Running\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rune_etcd_requests"), "{metrics}");

    // Record deleted: process stopped, status key gone.
    w.etcd.etcdctl(&["del", &w.key(&record_key("web", "i1"))]);
    eventually("process gone", LONG, || (!process_alive(pid)).then_some(()));
    eventually("status deleted", LONG, || {
        status(&w, "web", "i1").is_none().then_some(())
    });
}

#[test]
fn agent_readiness_via_tcp_and_exec() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    let www = w.dir.join(unique("www"));
    put_record(
        &w,
        "tcp",
        "i1",
        "Running",
        http_server(&www, json!({"type": "tcp", "intervalSeconds": 5})),
    );
    let flag = w.dir.join("ready-flag");
    put_record(
        &w,
        "exec",
        "i1",
        "Running",
        json!({
            "command": "sleep 1000",
            "health": {"readiness": {"type": "exec", "intervalSeconds": 1,
                                      "command": ["test", "-f", flag.to_str().unwrap()]}},
            "stopGracePeriod": "2s",
        }),
    );
    status_where(&w, "tcp", "i1", "ready via tcp", ready);
    let s = status_where(&w, "exec", "i1", "exec probe failing", |s| {
        s["phase"] == "Starting" && s["readinessFailures"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(s["ready"], false);
    assert!(
        s["probeError"].as_str().unwrap().contains("readiness exec"),
        "{s}"
    );
    std::fs::write(&flag, "").unwrap();
    let s = status_where(&w, "exec", "i1", "ready via exec", ready);
    assert!(s.get("readinessFailures").is_none(), "{s}");
}

#[test]
fn a_record_whose_revision_is_not_stored_is_reported_failed() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    w.etcd.put(
        &w.key(&record_key("ghost", "i1")),
        &record("ghost", "i1", "Running", 42),
    );
    let s = status_where(&w, "ghost", "i1", "failed", |s| s["phase"] == "Failed");
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("revision 42") && message.contains("not stored"),
        "{s}"
    );
    // The agent goes on: a record of a stored revision still runs.
    put_record(&w, "ok", "i1", "Running", json!({"command": "sleep 1000"}));
    status_where(&w, "ok", "i1", "running", |s| s["phase"] == "Running");
    // And the failed one's status goes with its record.
    w.etcd.etcdctl(&["del", &w.key(&record_key("ghost", "i1"))]);
    eventually("status removed", LONG, || {
        status(&w, "ghost", "i1").is_none().then_some(())
    });
    assert!(a.http_get("/readyz").is_some_and(|(c, _)| c == 200));
}

#[test]
fn agent_crash_loop_backs_off_with_growing_delays() {
    let (w, _reaper) = world();
    let a = w.agent(
        NODE,
        &["--restart-backoff", "300ms", "--restart-backoff-max", "10s"],
    );
    agent_ready(&a);
    put_record(
        &w,
        "crash",
        "i1",
        "Running",
        json!({"command": "date +%s%N; exit 3"}),
    );
    let s = status_where(&w, "crash", "i1", "pending in back-off", |s| {
        s["phase"] == "Pending" && s["message"].as_str().unwrap_or("").contains("back-off")
    });
    assert_eq!(s["lastExit"]["code"], 3, "{s}");
    status_where(&w, "crash", "i1", "restarted 4 times", |s| {
        s["restarts"].as_u64().unwrap() >= 4
    });
    // Start times from the instance's own log: the gaps grow.
    let log = std::fs::read_to_string(w.dir.join("agent-n1/logs/default_crash_i1.log")).unwrap();
    let starts: Vec<f64> = log
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .collect();
    assert!(starts.len() >= 5, "{log}");
    let gaps: Vec<f64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    eprintln!("crash-loop gaps (s): {gaps:?}");
    assert!(gaps[0] >= 0.25, "{gaps:?}");
    assert!(gaps[3] > gaps[1] && gaps[2] > gaps[0], "{gaps:?}");
    assert!(gaps[3] >= 1.9, "{gaps:?}");
}

#[test]
fn agent_liveness_failure_restarts() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &["--restart-backoff", "200ms"]);
    agent_ready(&a);
    let www = w.dir.join(unique("www"));
    let mut spec = http_server(&www, json!({"type": "tcp"}));
    spec["health"]["liveness"] =
        json!({"type": "http", "path": "/missing", "intervalSeconds": 1, "failureThreshold": 2});
    put_record(&w, "live", "i1", "Running", spec);
    let s = status_where(&w, "live", "i1", "restarted by liveness", |s| {
        s["restarts"].as_u64().unwrap_or(0) >= 1
    });
    let reason = s["lastExit"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("liveness probe failed") && reason.contains("404"),
        "{s}"
    );
    let (_, metrics) = a.http_get("/metrics").unwrap();
    assert!(
        metrics.contains("rune_agent_probe_failures_total{kind=\"http\"}"),
        "{metrics}"
    );
}

#[test]
fn agent_stop_kills_the_whole_process_group() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    // A unique fractional sleep length marks both the instance and its child.
    let marker = format!(
        "1000.{}{}",
        std::process::id(),
        unique("x").rsplit('-').next().unwrap()
    );
    let spec = json!({
        "command": format!("sleep {marker} & sleep {marker}"),
        "stopGracePeriod": "3s",
    });
    put_record(&w, "grp", "i1", "Running", spec.clone());
    let pids = eventually("instance and child running", LONG, || {
        let p = pids_with_cmdline(&marker);
        (p.len() >= 2).then_some(p)
    });
    status_where(&w, "grp", "i1", "ready without probe", ready);
    put_record(&w, "grp", "i1", "Stopped", spec);
    let s = status_where(&w, "grp", "i1", "exited", |s| s["phase"] == "Exited");
    assert!(s.get("pid").is_none(), "{s}");
    assert_eq!(s["lastExit"]["reason"], "stopped on request", "{s}");
    for p in pids {
        assert!(!process_alive(p), "pid {p} survived the stop");
    }
    assert!(pids_with_cmdline(&marker).is_empty());
}

#[test]
fn agent_sigkill_and_restart_adopts_instances() {
    let (w, _reaper) = world();
    let mut a = w.agent(NODE, &["--restart-backoff", "200ms"]);
    agent_ready(&a);
    let www = w.dir.join(unique("www"));
    let marker = www.to_str().unwrap().to_string();
    put_record(
        &w,
        "web",
        "i1",
        "Running",
        http_server(&www, json!({"type": "http", "intervalSeconds": 1})),
    );
    let dies = format!("1000.{}7", std::process::id());
    let gone = format!("1000.{}8", std::process::id());
    put_record(
        &w,
        "gone",
        "i1",
        "Running",
        json!({"command": format!("sleep {gone}")}),
    );
    put_record(
        &w,
        "dies",
        "i1",
        "Running",
        json!({"command": format!("sleep {dies}")}),
    );
    let before = status_where(&w, "web", "i1", "ready", ready);
    let dies_before = status_where(&w, "dies", "i1", "ready", ready);
    // Every instance must be reported ready before the agent dies: nothing updates
    // the statuses while no agent runs.
    let gpid = status_where(&w, "gone", "i1", "ready", ready)["pid"]
        .as_i64()
        .unwrap() as i32;
    let pid = before["pid"].as_i64().unwrap() as i32;

    a.kill9();
    assert!(process_alive(pid), "instance died with the agent");
    // One instance dies while no agent watches it.
    let dpid = dies_before["pid"].as_i64().unwrap() as i32;
    let _ = std::process::Command::new("kill")
        .args(["-9", &dpid.to_string()])
        .status();
    eventually("dead", LONG, || (!process_alive(dpid)).then_some(()));
    // And one record is deleted while no agent runs.
    w.etcd.etcdctl(&["del", &w.key(&record_key("gone", "i1"))]);

    let a = w.agent(NODE, &["--restart-backoff", "200ms"]);
    agent_ready(&a);
    let (_, metrics) = eventually("adopted instance probed again", LONG, || {
        a.http_get("/metrics")
            .filter(|(_, m)| m.contains("rune_agent_probe_duration_seconds_count{kind=\"http\"} 2"))
    });
    assert!(!metrics.is_empty());
    let after = status_where(&w, "web", "i1", "ready after adoption", ready);
    assert_eq!(after["pid"].as_i64().unwrap() as i32, pid, "{after}");
    assert_eq!(after["port"], before["port"]);
    assert_eq!(pids_with_cmdline(&marker), vec![pid], "duplicated or lost");
    let d = status_where(&w, "dies", "i1", "restarted after dying unseen", |s| {
        s["restarts"] == 1 && ready(s)
    });
    assert!(d["lastExit"].get("code").is_none(), "{d}");
    let new_pid = d["pid"].as_i64().unwrap() as i32;
    assert_ne!(new_pid, dpid);
    // What the killed leader left behind was cleaned up; only the new group remains.
    eventually("old group's leftovers gone", LONG, || {
        pids_with_cmdline(&dies)
            .iter()
            .all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')').unwrap().1.split_whitespace().nth(2)
                        == Some(new_pid.to_string().as_str())
                })
            })
            .then_some(())
    });
    eventually("orphan stopped", LONG, || {
        (!process_alive(gpid)).then_some(())
    });
    eventually("orphan status deleted", LONG, || {
        status(&w, "gone", "i1").is_none().then_some(())
    });
}

#[test]
fn agent_survives_an_etcd_outage_and_catches_up() {
    let (mut w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    let www = w.dir.join(unique("www"));
    put_record(
        &w,
        "web",
        "i1",
        "Running",
        http_server(&www, json!({"type": "tcp"})),
    );
    let s = status_where(&w, "web", "i1", "ready", ready);
    let pid = s["pid"].as_i64().unwrap() as i32;

    w.etcd.kill();
    eventually("agent notices the outage", LONG, || {
        a.http_get("/readyz").filter(|(c, _)| *c == 503)
    });
    assert!(process_alive(pid), "an etcd outage stopped an instance");
    w.etcd.restart();
    agent_ready(&a);
    let www2 = w.dir.join(unique("www"));
    put_record(
        &w,
        "web",
        "i2",
        "Running",
        http_server(&www2, json!({"type": "tcp"})),
    );
    status_where(
        &w,
        "web",
        "i2",
        "new record applied after the outage",
        ready,
    );
    let s = status_where(&w, "web", "i1", "still ready, same process", ready);
    assert_eq!(s["pid"].as_i64().unwrap() as i32, pid);
    assert!(process_alive(pid));
    assert!(
        w.etcd.get(&w.key("nodes/n1")).is_some(),
        "node registration lost"
    );
}

#[test]
fn agent_second_agent_with_the_same_node_name_is_refused() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    // Another data dir: the node key is held on someone else's lease.
    let mut b = w.agent_with_data(NODE, "other-data", &[]);
    let st = b.wait_exit(LONG).expect("second agent kept running");
    assert!(!st.success());
    assert!(b.logs().contains("already registered"), "{}", b.logs());
    // The same data dir: locked by the running agent.
    let mut c = w.agent_with_data(NODE, "agent-n1", &[]);
    let st = c.wait_exit(LONG).expect("third agent kept running");
    assert!(!st.success());
    assert!(
        c.logs().contains("in use by another rune-agent"),
        "{}",
        c.logs()
    );
    agent_ready(&a);
}

#[test]
fn agent_lost_lease_is_reacquired_and_statuses_rewritten() {
    let (w, _reaper) = world();
    let a = w.agent(NODE, &[]);
    agent_ready(&a);
    put_record(&w, "sl", "i1", "Running", json!({"command": "sleep 1000"}));
    let s = status_where(&w, "sl", "i1", "ready", ready);
    let node: Value = serde_json::from_str(&w.etcd.get(&w.key("nodes/n1")).unwrap()).unwrap();
    let old = node["leaseId"].as_i64().unwrap();
    let out = w.etcd.etcdctl(&["lease", "revoke", &format!("{old:x}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = eventually("node registered on a new lease", LONG, || {
        let n: Value = serde_json::from_str(&w.etcd.get(&w.key("nodes/n1"))?).ok()?;
        (n["leaseId"].as_i64()? != old).then_some(n)
    });
    assert_eq!(node["instances"], 1, "{node}");
    let again = status_where(&w, "sl", "i1", "status rewritten", ready);
    assert_eq!(
        again["pid"], s["pid"],
        "the lease loss must not touch the process"
    );
}

#[test]
fn agent_sigterm_leaves_instances_running_unless_asked_to_stop_them() {
    let (w, _reaper) = world();
    let mut a = w.agent(NODE, &[]);
    agent_ready(&a);
    put_record(
        &w,
        "sl",
        "i1",
        "Running",
        json!({"command": "sleep 1000", "stopGracePeriod": "2s"}),
    );
    let pid = status_where(&w, "sl", "i1", "ready", ready)["pid"]
        .as_i64()
        .unwrap() as i32;
    let st = a.terminate(LONG).expect("agent exits on SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(
        process_alive(pid),
        "SIGTERM to the agent stopped an instance"
    );

    // The next agent adopts it; with --stop-instances-on-exit its SIGTERM stops it
    // and takes the node (and its statuses) out of etcd.
    let mut b = w.agent(NODE, &["--stop-instances-on-exit"]);
    agent_ready(&b);
    let s = status_where(&w, "sl", "i1", "adopted", ready);
    assert_eq!(s["pid"].as_i64().unwrap() as i32, pid);
    let st = b.terminate(LONG).expect("agent exits on SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(
        !process_alive(pid),
        "instance survived --stop-instances-on-exit"
    );
    assert!(w.etcd.get(&w.key("nodes/n1")).is_none());
    assert!(status(&w, "sl", "i1").is_none());
}

#[test]
fn agent_restarted_during_an_etcd_outage_keeps_supervising() {
    let (mut w, _reaper) = world();
    let mut a = w.agent(NODE, &["--restart-backoff", "200ms"]);
    agent_ready(&a);
    let marker = format!("1000.{}9", std::process::id());
    put_record(
        &w,
        "sl",
        "i1",
        "Running",
        json!({"command": format!("sleep {marker}")}),
    );
    let pid = status_where(&w, "sl", "i1", "ready", ready)["pid"]
        .as_i64()
        .unwrap() as i32;

    a.kill9();
    w.etcd.kill();
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pid}")])
        .status();
    eventually("instance dead", LONG, || {
        (!process_alive(pid)).then_some(())
    });
    // No etcd: the new agent restarts the instance from what its data dir knows.
    let a = w.agent(NODE, &["--restart-backoff", "200ms"]);
    let new_pid = eventually("restarted without etcd", LONG, || {
        pids_with_cmdline(&marker).into_iter().find(|p| *p != pid)
    });
    w.etcd.restart();
    agent_ready(&a);
    let s = status_where(&w, "sl", "i1", "caught up", |s| {
        ready(s) && s["restarts"] == 1
    });
    let reported = s["pid"].as_i64().unwrap() as i32;
    assert!(
        reported == new_pid || pids_with_cmdline(&marker).contains(&reported),
        "{s}"
    );
}

/// The instance log files of service `svc` in the agent's data dir, sorted.
fn log_files(w: &World, svc: &str) -> Vec<String> {
    let prefix = format!("default_{svc}_");
    let mut names: Vec<String> = std::fs::read_dir(w.dir.join("agent-n1/logs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How many instances of `svc` the agent has started (each once: policy Never).
fn started(a: &Daemon, svc: &str) -> usize {
    let instance = format!("default/{svc}/");
    a.logs()
        .lines()
        .filter(|l| l.contains("started process") && l.contains(&instance))
        .count()
}

#[test]
fn agent_keeps_the_last_ended_logs_per_service_and_deletes_them_past_their_age() {
    const KEEP: usize = 1;
    let (w, _reaper) = world();
    let _c = crate::system::controller(&w, "c1");
    // A long age first, so that only the count limits what is kept.
    let flags = [
        crate::system::FAST_AGENT,
        &["--ended-logs-keep", "1", "--ended-logs-max-age", "10m"],
    ]
    .concat();
    let mut a = w.agent(NODE, &flags);
    agent_ready(&a);
    // A live instance beside the churn: its log is never the retention's business.
    let steady = crate::system::sleeper(&w, "steady", 1, "");
    crate::system::deploy(&w, &steady, "steady", 1);
    let steady_log = log_files(&w, "steady");
    assert_eq!(steady_log.len(), 1, "{steady_log:?}");

    // Fails at once and is not restarted: the controller replaces it with a new
    // instance (a new id, a new log), after 10 s, 20 s, 40 s (its back-off).
    let crash = w.file(
        "crash.yaml",
        "service:\n  name: crash\n  scale: 1\n  command: \"echo crash output; exit 1\"\n  restartPolicy: Never\n",
    );
    crate::system::cast(&w, &crash);
    let mut most = 0;
    eventually(
        "crash replaced again and again",
        Duration::from_secs(180),
        || {
            most = most.max(log_files(&w, "crash").len());
            (started(&a, "crash") >= KEEP + 3).then_some(())
        },
    );
    // At any moment: KEEP ended, the live one, and one just ended that the sweep
    // it set off has not deleted yet. (Without the count, all KEEP + 3 logs would
    // still be there: none is near the age limit.)
    eprintln!("at most {most} logs of crash at once");
    assert!(most <= KEEP + 2, "{most} logs of crash at once");

    w.rune()
        .args(["delete", "service", "crash", "--wait", "--timeout", "60s"])
        .assert()
        .success();
    let kept = eventually("at most KEEP logs once crash is gone", LONG, || {
        let files = log_files(&w, "crash");
        (files.len() <= KEEP).then_some(files)
    });
    // For post-mortems, until the age limit.
    assert!(
        !kept.is_empty(),
        "the last ended instances' logs are kept a while"
    );
    let last = std::fs::read_to_string(w.dir.join("agent-n1/logs").join(&kept[0])).unwrap();
    assert!(last.contains("crash output"), "{last}");

    // A restarted agent knows them as ended from the files alone, and deletes them
    // once they are older than the age limit.
    a.kill9();
    let flags = [
        crate::system::FAST_AGENT,
        &["--ended-logs-keep", "1", "--ended-logs-max-age", "5s"],
    ]
    .concat();
    let a = w.agent(NODE, &flags);
    agent_ready(&a);
    eventually(
        "crash's logs deleted past the age limit",
        Duration::from_secs(60),
        || log_files(&w, "crash").is_empty().then_some(()),
    );
    assert_eq!(
        log_files(&w, "steady"),
        steady_log,
        "a live log was deleted"
    );
}
