//! `make bench` (`cargo bench --bench scale`): a benchmark program, not a test.
//!
//! Starts its own etcd (data dir on /dev/shm, random free loopback ports), one
//! `rune-controller` and one `rune-agent` from the *release* build in
//! `target/release` (`cargo build --release --bins --examples`; `cargo bench` itself
//! builds only this program), and measures:
//!
//! 1. scale commit → first instance process started, over many 0→1→0 runs;
//! 2. wall time of the real, blocking `rune scale bench N` for several N, with
//!    instances that are ready at once (`examples/tcp-ready.rs` under a TCP readiness
//!    probe), and of the scale back to 0;
//! 3. etcd requests per instance (the daemons' `rune_etcd_requests` counters);
//! 4. controller, agent and etcd CPU time and peak RSS;
//! 5. wall time of the blocking `rune restart bench` of N instances, stop-the-world
//!    and `--rolling --max-surge 10`, side by side.
//!
//! Prints tables and writes `docs/benchmarks.md`. Every process it starts is stopped
//! when it ends, also on panic or Ctrl-C (drop guards), and every wait has a deadline.
//!
//! Settings (environment): RUNE_BENCH_RUNS (latency runs, default 30),
//! RUNE_BENCH_SIZES (default 10,100,500), RUNE_BENCH_RESTART_N (instances of the
//! restart figure, default 100; 0 skips it), RUNE_BENCH_OUT (default docs/benchmarks.md;
//! `-` writes nothing), RUNE_BENCH_BIN_DIR (default target/release), RUNE_BENCH_ETCD
//! (default `etcd`), RUNE_BENCH_KEEP=1 keeps the scratch dir (logs) for a look.

// Shared with the e2e tests: etcd, process handles, reapers, ports, scratch dirs,
// measurements.
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use jiff::Timestamp;
use tokio::signal::unix::{SignalKind, signal};

use support::etcd::{Etcd, EtcdConfig};
use support::measure::{
    Machine, clock_ticks, cpu_seconds, etcd_requests, machine, median, percentile, status_mib,
    table,
};
use support::net::{free_port, http_get};
use support::procs::{Proc, Reaper};
use support::scratch::{ScratchDir, scratch_root};

const NS: &str = "default";
const PREFIX: &str = "/rune-bench";

// ---------------------------------------------------------------------------------
// Small helpers.

fn ms_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_nanosecond() - a.as_nanosecond()) as f64 / 1e6
}

// ---------------------------------------------------------------------------------
// The system under test.

struct System {
    bin: PathBuf,
    scratch: PathBuf,
    etcd_url: String,
    client: Client,
    controller_http: String,
    agent_http: String,
}

impl System {
    /// `rune ARGS` with this system's etcd; its wall time and output. Err on a
    /// non-zero exit or when it outlives `limit` (it is killed then).
    async fn rune(&self, args: &[&str], limit: Duration) -> Result<(Duration, String), String> {
        let mut cmd = tokio::process::Command::new(self.bin.join("rune"));
        cmd.args(args)
            .env("RUNE_ETCD_ENDPOINTS", &self.etcd_url)
            .env("RUNE_ETCD_PREFIX", PREFIX)
            .env("RUNE_CONFIG", self.scratch.join("no-rune-config.yaml"))
            .env_remove("RUNE_CONTEXT")
            .env_remove("RUNE_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("starting rune: {e}"))?;
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| format!("rune {args:?}: {e}"))?,
            Err(_) => return Err(format!("rune {args:?} still running after {limit:?}")),
        };
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            return Err(format!(
                "rune {args:?}: {} after {took:?}\n{}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok((took, text))
    }

    fn key(rest: &str) -> String {
        format!("{PREFIX}/{rest}")
    }

    async fn list(&self, prefix: &str) -> Vec<serde_json::Value> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .expect("etcd get");
        resp.kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect()
    }

    async fn count(&self, prefix: &str) -> i64 {
        let mut kv = self.client.kv_client();
        kv.get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("etcd count")
        .count()
    }

    /// Waits until the service has neither instance records nor statuses left.
    async fn wait_gone(&self, svc: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let records = Self::key(&format!("instances/{NS}/{svc}/"));
        let statuses = Self::key(&format!("instance-status/{NS}/{svc}/"));
        loop {
            if self.count(&records).await == 0 && self.count(&statuses).await == 0 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{svc}: instances still there after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn requests(&self) -> (u64, u64) {
        (
            etcd_requests(&self.controller_http),
            etcd_requests(&self.agent_http),
        )
    }
}

fn service_yaml(name: &str, tcp_ready: &Path, marker: &str) -> String {
    format!(
        r#"service:
  name: {name}
  namespace: {NS}
  scale: 0
  command: ["{}", "{marker}"]
  ports:
    - name: tcp
  health:
    readiness: {{type: tcp, port: tcp, intervalSeconds: 1}}
  restartPolicy: Always
  stopGracePeriod: 5s
"#,
        tcp_ready.display()
    )
}

// ---------------------------------------------------------------------------------
// Results.

struct Latency {
    /// requestedAt (operation record) → startedAt (instance status), ms.
    commit_to_start: Vec<f64>,
    /// Just before `rune scale --no-wait` started → startedAt, ms.
    cli_start_to_start: Vec<f64>,
    /// Just after `rune scale --no-wait` returned → startedAt, ms.
    cli_return_to_start: Vec<f64>,
    /// startedAt → readyAt, ms.
    start_to_ready: Vec<f64>,
    /// Wall time of `rune scale latency 1 --no-wait`, ms.
    cli_wall: Vec<f64>,
    /// Wall time of the blocking `rune scale latency 0`, ms.
    stop_wall: Vec<f64>,
}

struct Cpu {
    controller: f64,
    agent: f64,
    etcd: f64,
}

struct SizeRun {
    n: u32,
    up: Result<Duration, String>,
    ready: usize,
    /// Sum of the instances' VmRSS right after the scale-up, MiB.
    instances_rss: f64,
    req_up: (u64, u64),
    cpu_up: Cpu,
    down: Result<Duration, String>,
    gone_after_down: Duration,
    req_down: (u64, u64),
    cpu_down: Cpu,
}

/// Section 5: the restart of N instances, both ways.
struct Restarts {
    n: u32,
    stop_the_world: Result<Duration, String>,
    rolling: Result<Duration, String>,
}

struct Final {
    name: &'static str,
    cpu: f64,
    hwm: f64,
}

// ---------------------------------------------------------------------------------

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets too,
    // without it. The benchmark is for `make bench` only, never part of the tests.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench: skipped (not run by cargo bench; use `make bench`)");
        return;
    }
    // Handlers in place before any work (etcd starts synchronously): a signal in the
    // meantime is seen as soon as `run` first waits.
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let interrupted = async {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    // Dropping `run` (interrupted) or unwinding out of it (panic) drops its guards:
    // controller, agent (stops the instances), etcd, leftover instances, scratch.
    let mut work = Box::pin(run());
    tokio::select! {
        () = &mut work => {}
        () = interrupted => {
            eprintln!("bench: interrupted; stopping everything it started");
            drop(work);
            std::process::exit(130);
        }
    }
}

async fn run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let runs: usize = env_or("RUNE_BENCH_RUNS", "30")
        .parse()
        .expect("RUNE_BENCH_RUNS");
    let sizes: Vec<u32> = env_or("RUNE_BENCH_SIZES", "10,100,500")
        .split(',')
        .map(|s| s.trim().parse().expect("RUNE_BENCH_SIZES: numbers"))
        .collect();
    let bin = std::env::var_os("RUNE_BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release"));
    let etcd_bin = env_or("RUNE_BENCH_ETCD", "etcd");
    let tcp_ready = bin.join("examples/tcp-ready");
    for p in [
        bin.join("rune"),
        bin.join("rune-controller"),
        bin.join("rune-agent"),
        tcp_ready.clone(),
    ] {
        assert!(
            p.is_file(),
            "{} is missing: run `cargo build --release --bins --examples` (make bench does)",
            p.display()
        );
    }
    let ticks = clock_ticks();

    let scratch =
        ScratchDir::create(scratch_root().join(format!("rune-bench-{}", std::process::id())))
            .keep(std::env::var_os("RUNE_BENCH_KEEP").is_some());
    let scratch_dir = scratch.path.clone();
    let marker = format!("rune-bench-instance-{}", std::process::id());
    let reaper = Reaper::Marked(marker.clone());
    let log = |name: &str| std::fs::File::create(scratch_dir.join(format!("{name}.log"))).unwrap();

    // etcd: data on tmpfs, random loopback ports (a few attempts if a port is taken),
    // in its own process group: Ctrl-C reaches only this program, which then stops
    // everything in order (etcd last, so the agent can still report).
    let mut etcd = Etcd::start_with(EtcdConfig {
        binary: etcd_bin.clone().into(),
        name: "etcd".into(),
        root: scratch_dir.clone(),
        own_process_group: true,
        stop_grace: Some(Duration::from_secs(10)),
        ..EtcdConfig::default()
    });
    let etcd_url = etcd.client_url.clone();
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect([etcd_url.as_str()], None),
    )
    .await
    .expect("connecting to etcd in time")
    .expect("an etcd client");
    eprintln!("bench: etcd {etcd_url} (pid {})", etcd.pid());

    let daemon = |name: &'static str, exe: &str, listen: &str, args: &[&str], grace: Duration| {
        let child = Command::new(bin.join(exe))
            .env("RUNE_ETCD_ENDPOINTS", &etcd_url)
            .env("RUNE_ETCD_PREFIX", PREFIX)
            .args(["--listen", listen])
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log(name))
            .stderr(log(&format!("{name}.err")))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe}: {e}"));
        Proc::stopped_on_drop(name, child, grace)
    };
    let agent_http = format!("127.0.0.1:{}", free_port());
    let agent_data = scratch_dir.join("agent");
    let mut agent = daemon(
        "rune-agent",
        "rune-agent",
        &agent_http,
        &[
            "--node-name",
            "bench",
            "--data-dir",
            agent_data.to_str().unwrap(),
            "--stop-instances-on-exit",
        ],
        Duration::from_secs(90),
    );
    let controller_http = format!("127.0.0.1:{}", free_port());
    let mut controller = daemon(
        "rune-controller",
        "rune-controller",
        &controller_http,
        &[
            "--id",
            "bench",
            "--lease-duration",
            "5s",
            "--renew-deadline",
            "3s",
            "--retry-period",
            "1s",
        ],
        Duration::from_secs(20),
    );
    let sys = System {
        bin: bin.clone(),
        scratch: scratch_dir.clone(),
        etcd_url: etcd_url.clone(),
        client,
        controller_http: controller_http.clone(),
        agent_http: agent_http.clone(),
    };

    // Both daemons up: the agent ready (registered, watching), the controller leading.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            agent.alive(),
            "rune-agent exited; see {}/rune-agent.err.log",
            scratch_dir.display()
        );
        assert!(
            controller.alive(),
            "rune-controller exited; see {}/rune-controller.err.log",
            scratch_dir.display()
        );
        let agent_ready = http_get(&agent_http, "/readyz").is_some_and(|(c, _)| c == 200);
        let leading = http_get(&controller_http, "/metrics")
            .is_some_and(|(_, b)| b.lines().any(|l| l.trim() == "rune_controller_is_leader 1"));
        if agent_ready && leading {
            break;
        }
        assert!(Instant::now() < deadline, "daemons not ready within 30s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "bench: rune-controller pid {} ({controller_http}), rune-agent pid {} ({agent_http})",
        controller.pid(),
        agent.pid()
    );

    let spec = scratch_dir.join("services.yaml");
    std::fs::write(
        &spec,
        format!(
            "{}---\n{}",
            service_yaml("latency", &tcp_ready, &marker),
            service_yaml("bench", &tcp_ready, &marker)
        ),
    )
    .unwrap();
    sys.rune(&["cast", spec.to_str().unwrap()], Duration::from_secs(30))
        .await
        .expect("cast the bench services");

    // 1. Commit → first instance process started.
    eprintln!("bench: {runs} runs of scale latency 0→1→0");
    let mut lat = Latency {
        commit_to_start: vec![],
        cli_start_to_start: vec![],
        cli_return_to_start: vec![],
        start_to_ready: vec![],
        cli_wall: vec![],
        stop_wall: vec![],
    };
    let op_key = System::key(&format!("operations/{NS}/latency"));
    let status_prefix = System::key(&format!("instance-status/{NS}/latency/"));
    for i in 0..runs {
        let before = Timestamp::now();
        let (wall, _) = sys
            .rune(
                &["scale", "latency", "1", "--no-wait"],
                Duration::from_secs(30),
            )
            .await
            .expect("rune scale latency 1 --no-wait");
        let after = Timestamp::now();
        let op = sys.list(&op_key).await;
        let requested: Timestamp = op
            .first()
            .and_then(|o| o["requestedAt"].as_str()?.parse().ok())
            .expect("operation record with requestedAt");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (started, ready) = loop {
            let st = sys.list(&status_prefix).await;
            let ts = |v: &serde_json::Value, k: &str| {
                v[k].as_str().and_then(|s| s.parse::<Timestamp>().ok())
            };
            if let Some(s) = st.first()
                && let (Some(started), Some(ready)) = (ts(s, "startedAt"), ts(s, "readyAt"))
            {
                break (started, ready);
            }
            assert!(
                Instant::now() < deadline,
                "run {i}: no ready instance within 30s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        lat.commit_to_start.push(ms_between(requested, started));
        lat.cli_start_to_start.push(ms_between(before, started));
        lat.cli_return_to_start.push(ms_between(after, started));
        lat.start_to_ready.push(ms_between(started, ready));
        lat.cli_wall.push(wall.as_secs_f64() * 1e3);
        let (stop, _) = sys
            .rune(&["scale", "latency", "0"], Duration::from_secs(60))
            .await
            .expect("rune scale latency 0");
        lat.stop_wall.push(stop.as_secs_f64() * 1e3);
        sys.wait_gone("latency", Duration::from_secs(30)).await;
    }

    // 2./3. Blocking `rune scale bench N`, requests and CPU per phase.
    let cpu_now = || Cpu {
        controller: cpu_seconds(controller.pid(), ticks),
        agent: cpu_seconds(agent.pid(), ticks),
        etcd: cpu_seconds(etcd.pid(), ticks),
    };
    let minus = |a: &Cpu, b: &Cpu| Cpu {
        controller: a.controller - b.controller,
        agent: a.agent - b.agent,
        etcd: a.etcd - b.etcd,
    };
    let bench_statuses = System::key(&format!("instance-status/{NS}/bench/"));
    let mut size_runs = Vec::new();
    for &n in &sizes {
        eprintln!("bench: rune scale bench {n}");
        let (r0, c0) = (sys.requests(), cpu_now());
        let up = sys
            .rune(
                &["scale", "bench", &n.to_string()],
                Duration::from_secs(360),
            )
            .await
            .map(|(d, _)| d);
        if let Err(e) = &up {
            eprintln!("bench: scale to {n} failed: {e}");
        }
        let (r1, c1) = (sys.requests(), cpu_now());
        let statuses = sys.list(&bench_statuses).await;
        let ready = statuses
            .iter()
            .filter(|s| s["ready"].as_bool() == Some(true))
            .count();
        let instances_rss: f64 = statuses
            .iter()
            .filter_map(|s| s["pid"].as_i64())
            .map(|pid| status_mib(pid as i32, "VmRSS"))
            .filter(|v| v.is_finite())
            .sum();
        eprintln!("bench: rune scale bench 0");
        let down = sys
            .rune(&["scale", "bench", "0"], Duration::from_secs(360))
            .await
            .map(|(d, _)| d);
        if let Err(e) = &down {
            eprintln!("bench: scale from {n} to 0 failed: {e}");
        }
        let gone_after_down = sys.wait_gone("bench", Duration::from_secs(120)).await;
        let (r2, c2) = (sys.requests(), cpu_now());
        size_runs.push(SizeRun {
            n,
            up,
            ready,
            instances_rss,
            req_up: (r1.0 - r0.0, r1.1 - r0.1),
            cpu_up: minus(&c1, &c0),
            down,
            gone_after_down,
            req_down: (r2.0 - r1.0, r2.1 - r1.1),
            cpu_down: minus(&c2, &c1),
        });
    }

    // 5. `rune restart bench` of N instances: stop-the-world, then rolling with
    // maxSurge 10 (each from N ready instances).
    let restart_n: u32 = env_or("RUNE_BENCH_RESTART_N", "100")
        .parse()
        .expect("RUNE_BENCH_RESTART_N");
    let restarts = if restart_n == 0 {
        None
    } else {
        let limit = Duration::from_secs(900);
        let n = restart_n.to_string();
        eprintln!("bench: rune scale bench {n}, then restart it both ways");
        sys.rune(&["scale", "bench", &n], limit)
            .await
            .expect("scale bench for the restart figure");
        let took = |r: Result<(Duration, String), String>| r.map(|(d, _)| d);
        let stop_the_world = took(
            sys.rune(&["restart", "bench", "--timeout", "15m"], limit)
                .await,
        );
        let rolling = took(
            sys.rune(
                &[
                    "restart",
                    "bench",
                    "--rolling",
                    "--max-surge",
                    "10",
                    "--timeout",
                    "15m",
                ],
                limit,
            )
            .await,
        );
        for (what, r) in [("stop-the-world", &stop_the_world), ("rolling", &rolling)] {
            if let Err(e) = r {
                eprintln!("bench: {what} restart of {n} failed: {e}");
            }
        }
        let _ = sys.rune(&["scale", "bench", "0"], limit).await;
        sys.wait_gone("bench", Duration::from_secs(120)).await;
        Some(Restarts {
            n: restart_n,
            stop_the_world,
            rolling,
        })
    };

    // 4. Totals at the end, before anything is stopped.
    let finals = [
        ("rune-controller", controller.pid()),
        ("rune-agent", agent.pid()),
        ("etcd", etcd.pid()),
    ]
    .map(|(name, pid)| Final {
        name,
        cpu: cpu_seconds(pid, ticks),
        hwm: status_mib(pid, "VmHWM"),
    });

    // Orderly stop: controller first (so it replaces nothing), then the agent (stops
    // whatever instances are left), then etcd. The guards do the same on a panic.
    controller.stop();
    let agent_stop = agent.stop();
    etcd.stop();
    drop(reaper);

    let m = machine(&etcd_bin);
    let mut report = render(&m, runs, &lat, &size_runs, &finals, agent_stop);
    if let Some(r) = &restarts {
        report = insert_before_how_measured(&report, &render_restarts(r));
    }
    println!("{report}");
    let out = env_or(
        "RUNE_BENCH_OUT",
        &root.join("docs/benchmarks.md").display().to_string(),
    );
    if out != "-" {
        // The fleet benchmark's section (`make bench-fleet`) is kept as it was.
        let old = std::fs::read_to_string(&out).unwrap_or_default();
        let report = match support::measure::section(&old, "fleet") {
            Some(fleet) => format!("{}\n\n{fleet}\n", report.trim_end()),
            None => report,
        };
        std::fs::write(&out, &report).unwrap_or_else(|e| panic!("writing {out}: {e}"));
        eprintln!("bench: wrote {out}");
    }
    drop(scratch);
}

// ---------------------------------------------------------------------------------
// The report (Markdown; the tables read fine in a terminal too).

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn secs(d: &Result<Duration, String>) -> String {
    match d {
        Ok(d) => format!("{:.2}", d.as_secs_f64()),
        Err(_) => "FAILED".into(),
    }
}

fn per(total: u64, n: u32) -> String {
    format!("{:.1}", total as f64 / n.max(1) as f64)
}

/// Section 5, placed before "How measured".
fn render_restarts(r: &Restarts) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## 5. `rune restart bench` of {} instances
",
        r.n
    );
    let mut t = table(&["restart", "wall time (s)", "ready throughout"]);
    t.add_row(vec![
        "stop-the-world (`rune restart bench`)".to_string(),
        secs(&r.stop_the_world),
        "no: every instance stops first".to_string(),
    ]);
    t.add_row(vec![
        "rolling (`--rolling --max-surge 10`, maxUnavailable 0)".to_string(),
        secs(&r.rolling),
        format!("yes: at least {} ready at every step", r.n),
    ]);
    let _ = writeln!(
        s,
        "{t}
"
    );
    let _ = writeln!(
        s,
        "Both from {} ready instances, the blocking command from its start to its exit 0. \
         The rolling restart starts at most 10 new instances beyond the scale, stops an old \
         one for each new one ready, and waits for each stop to finish before the next \
         surge (stopping instances count towards the surge).\n",
        r.n
    );
    s
}

fn insert_before_how_measured(report: &str, section: &str) -> String {
    match report.find("## How measured") {
        Some(at) => format!("{}{section}\n{}", &report[..at], &report[at..]),
        None => format!("{report}\n{section}"),
    }
}

fn render(
    m: &Machine,
    runs: usize,
    lat: &Latency,
    sizes: &[SizeRun],
    finals: &[Final],
    agent_stop: Option<Duration>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Sections 1–3 and 5 are produced by `make bench` (`benches/scale.rs`): one etcd, one \
         `rune-controller` and one `rune-agent` on one machine, release build. The fleet \
         section at the end is produced by `make bench-fleet` (`benches/fleet.rs`); each \
         rerun refreshes its own sections only.\n"
    );
    let _ = writeln!(s, "## Machine\n");
    let mut t = table(&["", ""]);
    t.add_row(vec!["date", &m.date]);
    t.add_row(vec!["CPU", &m.cpu]);
    t.add_row(vec!["cores", &m.cores.to_string()]);
    t.add_row(vec!["memory", &m.mem]);
    t.add_row(vec!["kernel", &m.kernel]);
    t.add_row(vec!["etcd", &m.etcd]);
    t.add_row(vec!["open files limit", &m.nofile]);
    let _ = writeln!(s, "{t}\n");

    let _ = writeln!(s, "## 1. Scale commit → first instance process started\n");
    let _ = writeln!(
        s,
        "{runs} runs of `rune scale latency 1 --no-wait`, each followed by a blocking \
         `rune scale latency 0` and a wait until the instance's keys are gone. \
         Milliseconds; p99 is nearest-rank (with 30 runs it is the slowest run).\n"
    );
    let mut t = table(&["interval (ms)", "median", "p99", "min", "max"]);
    let rows: [(&str, &Vec<f64>); 6] = [
        (
            "requestedAt → startedAt (commit-based)",
            &lat.commit_to_start,
        ),
        (
            "CLI exited → startedAt (lower bound)",
            &lat.cli_return_to_start,
        ),
        (
            "CLI started → startedAt (incl. CLI start-up)",
            &lat.cli_start_to_start,
        ),
        ("startedAt → readyAt (TCP probe)", &lat.start_to_ready),
        ("`rune scale latency 1 --no-wait` wall", &lat.cli_wall),
        ("`rune scale latency 0` wall (blocking)", &lat.stop_wall),
    ];
    for (name, v) in rows {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        t.add_row(vec![
            name.to_string(),
            ms(median(&v)),
            ms(percentile(&v, 0.99)),
            ms(v.first().copied().unwrap_or(f64::NAN)),
            ms(v.last().copied().unwrap_or(f64::NAN)),
        ]);
    }
    let _ = writeln!(s, "{t}\n");

    let _ = writeln!(
        s,
        "## 2. `rune scale bench N` (blocking) and etcd requests per instance\n"
    );
    let _ = writeln!(
        s,
        "From 0 to N and back to 0 for each N; instances are `examples/tcp-ready.rs` with a \
         TCP readiness probe (`intervalSeconds: 1`). Seconds of wall time; requests are the \
         daemons' `rune_etcd_requests` (all kinds) per instance; CPU is the seconds each \
         process used during that phase; instances RSS is the sum of the instance \
         processes' VmRSS right after the scale-up (shared pages counted in each).\n"
    );
    let mut t = table(&[
        "N",
        "scale up (s)",
        "ready",
        "instances RSS (MiB)",
        "requests/inst ctrl",
        "requests/inst agent",
        "requests/inst total",
        "CPU ctrl/agent/etcd (s)",
        "scale down (s)",
        "keys gone after (s)",
        "down requests/inst",
        "down CPU ctrl/agent/etcd (s)",
    ]);
    for r in sizes {
        t.add_row(vec![
            r.n.to_string(),
            secs(&r.up),
            r.ready.to_string(),
            format!("{:.1}", r.instances_rss),
            per(r.req_up.0, r.n),
            per(r.req_up.1, r.n),
            per(r.req_up.0 + r.req_up.1, r.n),
            format!(
                "{:.2} / {:.2} / {:.2}",
                r.cpu_up.controller, r.cpu_up.agent, r.cpu_up.etcd
            ),
            secs(&r.down),
            format!("{:.2}", r.gone_after_down.as_secs_f64()),
            per(r.req_down.0 + r.req_down.1, r.n),
            format!(
                "{:.2} / {:.2} / {:.2}",
                r.cpu_down.controller, r.cpu_down.agent, r.cpu_down.etcd
            ),
        ]);
    }
    let _ = writeln!(s, "{t}\n");
    for r in sizes {
        for (what, res) in [("up", &r.up), ("down", &r.down)] {
            if let Err(e) = res {
                let _ = writeln!(
                    s,
                    "- N={} scale {what} FAILED: `{}`",
                    r.n,
                    e.lines().next().unwrap_or("")
                );
            }
        }
    }

    let _ = writeln!(s, "## 3. Resources at the end\n");
    let mut t = table(&["process", "CPU time (s, user+sys)", "peak RSS (MiB, VmHWM)"]);
    for f in finals {
        t.add_row(vec![
            f.name.to_string(),
            format!("{:.2}", f.cpu),
            format!("{:.1}", f.hwm),
        ]);
    }
    let _ = writeln!(s, "{t}\n");
    if let Some(d) = agent_stop {
        let _ = writeln!(
            s,
            "The agent's orderly stop (SIGTERM, `--stop-instances-on-exit`) took {:.2} s.\n",
            d.as_secs_f64()
        );
    }

    let _ = writeln!(
        s,
        "## How measured\n\n\
- **System.** `benches/scale.rs` starts etcd (data dir on /dev/shm, random free \
loopback ports), `rune-controller` (`--lease-duration 5s`) and `rune-agent` \
(`--stop-instances-on-exit`) from `target/release`, waits until the agent is ready and \
the controller leads, and casts two services, `latency` and `bench`, both \
`examples/tcp-ready` (accepts and closes TCP connections) with a TCP readiness probe \
(`intervalSeconds: 1`). The CLI, the daemons, the instances and etcd all share the \
machine's cores, so every figure includes their contention.\n\
- **Commit → process started.** The commit-based figure is the operation record's \
`requestedAt` (written by `rune scale` into the same etcd transaction as the new scale; \
the timestamp is taken just before the transaction is sent, so it is early by at most \
one etcd round trip) to the instance status's `startedAt` (set by the agent right \
after the process was spawned). Both clocks are this machine's. As a cross-check, the \
benchmark takes its own timestamps just before starting `rune scale --no-wait` and just \
after it exits (after the commit): the second gives a lower bound (it can be \
negative: the agent may start the process before the CLI has exited), the first \
includes the CLI's start-up and connection. The benchmark reads the timestamps from etcd \
afterwards, so how often it polls does not affect them.\n\
- **Scale wall time.** The real, blocking `rune scale bench N` (immediate mode), from \
starting the process to its exit 0: the controller wrote N instance records, the agent \
started N processes, each passed its readiness probe, and the CLI saw the operation \
succeed. Then `rune scale bench 0`, same way, and a wait until no instance record or \
status of the service is left in etcd.\n\
- **etcd requests per instance.** The sum over all labels of `rune_etcd_requests` on the \
controller's and the agent's `/metrics`, read before and after each scale, divided by N. \
The CLI's own requests (and its watches) are not counted; etcd's internal work is \
visible only in its CPU time.\n\
- **CPU and memory.** utime+stime from `/proc/<pid>/stat` (divided by `getconf \
CLK_TCK`) per phase and in total, and VmHWM from `/proc/<pid>/status`, read before \
anything is stopped.\n"
    );
    s
}
