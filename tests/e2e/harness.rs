//! Test harness: a real etcd per test (tmpfs data dir, random loopback ports, killed
//! by PID on drop, also when the test panics), a unique key prefix, and helpers to
//! run rune's binaries against it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running etcd, killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    pub client_url: String,
    peer_url: String,
    pub data_dir: PathBuf,
    name: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique within this machine for this test run.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

impl Etcd {
    pub fn start() -> Etcd {
        let name = unique("rune-etcd");
        let data_dir = scratch_root().join(&name);
        for attempt in 0..5 {
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let peer_url = format!("http://127.0.0.1:{}", free_port());
            let mut etcd = Etcd {
                child: None,
                client_url,
                peer_url,
                data_dir: data_dir.clone(),
                name: name.clone(),
            };
            etcd.spawn();
            if etcd.wait_ready(Duration::from_secs(20)) {
                return etcd;
            }
            eprintln!("etcd did not come up (attempt {attempt}); retrying on other ports");
            etcd.kill();
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        panic!("could not start etcd");
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(scratch_root().join(format!("{}.log", self.name))).unwrap();
        let child = Command::new(etcd_binary())
            .args([
                "--name",
                &self.name,
                "--data-dir",
                self.data_dir.to_str().unwrap(),
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
                "--initial-cluster",
                &format!("{}={}", self.name, self.peer_url),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the etcd binary must be installed (make test installs etcd-server)");
        self.child = Some(child);
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        wait_until(within, || {
            if let Some(c) = &mut self.child
                && let Ok(Some(_)) = c.try_wait()
            {
                return Some(false);
            }
            let ok = Command::new("etcdctl")
                .args([
                    "--endpoints",
                    &self.client_url,
                    "--dial-timeout=1s",
                    "endpoint",
                    "health",
                ])
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            ok.then_some(true)
        })
        .unwrap_or(false)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stops etcd (SIGKILL), keeping its data for [`Etcd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(
            self.wait_ready(Duration::from_secs(30)),
            "etcd did not restart"
        );
    }

    /// etcdctl against this etcd.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .arg("--endpoints")
            .arg(&self.client_url)
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap()
    }

    pub fn put(&self, key: &str, value: &str) {
        let out = self.etcdctl(&["put", key, value]);
        assert!(
            out.status.success(),
            "etcdctl put: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl(&["get", key, "--print-value-only"]);
        assert!(
            out.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        if s.is_empty() {
            None
        } else {
            Some(s.trim_end_matches('\n').to_string())
        }
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.etcdctl(&["get", prefix, "--prefix", "--keys-only"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn etcd_binary() -> String {
    std::env::var("RUNE_TEST_ETCD").unwrap_or_else(|_| "etcd".into())
}

/// Polls `f` until it returns `Some`, or the deadline passes (then `None`).
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Like [`wait_until`] but panics with `what` on timeout.
#[track_caller]
pub fn eventually<T>(what: &str, within: Duration, f: impl FnMut() -> Option<T>) -> T {
    match wait_until(within, f) {
        Some(v) => v,
        None => panic!("timed out after {within:?} waiting for: {what}"),
    }
}

/// One test's world: an etcd and a key prefix of its own.
pub struct World {
    pub etcd: Etcd,
    pub prefix: String,
    pub dir: PathBuf,
}

impl World {
    pub fn new() -> World {
        let etcd = Etcd::start();
        let prefix = format!("/{}", unique("t"));
        let dir = scratch_root().join(unique("rune-test"));
        std::fs::create_dir_all(&dir).unwrap();
        World { etcd, prefix, dir }
    }

    /// `rune` with this world's etcd settings.
    pub fn rune(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("rune").unwrap();
        c.env("RUNE_ETCD_ENDPOINTS", &self.etcd.client_url)
            .env("RUNE_ETCD_PREFIX", &self.prefix)
            .env_remove("RUNE_NAMESPACE")
            // The user's ~/.config/rune/config.yaml must not leak into tests.
            .env("RUNE_CONFIG", self.dir.join("no-rune-config.yaml"))
            .env_remove("RUNE_CONTEXT")
            .timeout(Duration::from_secs(120));
        c
    }

    /// Writes a file under the test's scratch directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        reap_instances(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills the process groups of every instance that the agents under `dir` recorded
/// in their data dirs (`<agent data dir>/instances/*.json`: pid and start time), so a
/// test leaves no process behind even though instances outlive their agent.
pub fn reap_instances(dir: &Path) {
    let Ok(agents) = std::fs::read_dir(dir) else {
        return;
    };
    for agent in agents.flatten() {
        let Ok(files) = std::fs::read_dir(agent.path().join("instances")) else {
            continue;
        };
        for f in files.flatten() {
            let Some(v) = std::fs::read(f.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let (Some(pid), Some(start)) = (v["pid"].as_i64(), v["startTime"].as_u64()) else {
                continue;
            };
            if proc_start_time(pid as i32) == Some(start) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Field 22 of /proc/<pid>/stat: when the process started (clock ticks after boot).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// A rune daemon (controller or agent) started by a test; SIGKILLed on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub http: String,
    pub name: String,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the process to exit (up to `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        let mut c = self.child.take()?;
        let status = wait_until(within, || c.try_wait().ok().flatten());
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the daemon's HTTP listener: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.0 GET over a TcpStream (tests need no HTTP client crate).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

impl World {
    fn daemon(&self, bin: &str, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let http = format!("127.0.0.1:{}", free_port());
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin(bin));
        cmd.env("RUNE_ETCD_ENDPOINTS", &self.etcd.client_url)
            .env("RUNE_ETCD_PREFIX", &self.prefix)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .args(["--listen", &http])
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Daemon {
            child: Some(child),
            log,
            http,
            name: name.to_string(),
        }
    }

    /// Starts `rune-agent` for `node`, its data dir under the test's scratch dir.
    pub fn agent(&self, node: &str, extra: &[&str]) -> Daemon {
        let data = self.dir.join(format!("agent-{node}"));
        let data = data.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", node, "--data-dir", &data];
        args.extend_from_slice(extra);
        self.daemon("rune-agent", &format!("agent-{node}"), &args, &[])
    }

    /// Starts `rune-controller` with fast test timings unless `extra` overrides them.
    pub fn controller(&self, name: &str, extra: &[&str]) -> Daemon {
        let mut args = vec!["--id", name];
        args.extend_from_slice(extra);
        self.daemon("rune-controller", &format!("controller-{name}"), &args, &[])
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of every process whose environment has RUNE_INSTANCE set and whose
/// RUNE_ETCD_PREFIX-independent marker matches `marker` in its command line.
pub fn pids_with_cmdline(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(marker) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

impl World {
    /// Starts `rune-agent` for `node` with a data dir of the given name (two agents
    /// claiming one node name from different data dirs).
    pub fn agent_with_data(&self, node: &str, data_name: &str, extra: &[&str]) -> Daemon {
        let data = self.dir.join(data_name);
        let data = data.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", node, "--data-dir", &data];
        args.extend_from_slice(extra);
        self.daemon(
            "rune-agent",
            &format!("agent-{node}-{data_name}"),
            &args,
            &[],
        )
    }
}

impl Daemon {
    /// Waits for the daemon to exit on its own (up to `within`).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let status = wait_until(within, || c.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }
}
