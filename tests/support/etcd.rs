//! A real, single-member etcd: data dir on tmpfs, random free loopback ports, stopped
//! (by PID) when dropped, also when a panic unwinds.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::net::free_port;
use super::procs::Proc;
use super::scratch::{scratch_root, unique};
use super::wait::wait_until;

/// How to run etcd. [`Default`] is what the e2e tests use.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// The etcd binary: `$RUNE_TEST_ETCD`, else `etcd` on PATH.
    pub binary: PathBuf,
    /// The member name; it also names the data dir, `<root>/<name>`, and the log,
    /// `<root>/<name>.log`. Default: unique in this run (`rune-etcd-<pid>-<n>`).
    pub name: String,
    /// Where the data dir and the log go. Default: /dev/shm (else the temp dir).
    pub root: PathBuf,
    /// `--quota-backend-bytes`; etcd's own default (2 GiB) when `None`.
    pub quota_backend_bytes: Option<u64>,
    /// Further flags, after the ones this module sets.
    pub extra_args: Vec<String>,
    /// Start etcd in its own process group, so a Ctrl-C at the terminal reaches only
    /// the program that started it (which then stops everything in order).
    pub own_process_group: bool,
    /// On drop: `None` SIGKILLs etcd at once; `Some(grace)` sends SIGTERM and gives
    /// it that long before SIGKILL.
    pub stop_grace: Option<Duration>,
    /// Further addresses etcd serves clients on, on the client port (fault tests
    /// reach it from a network namespace through a veth with a loopback-range
    /// address); see [`Etcd::client_url_on`].
    pub extra_client_hosts: Vec<String>,
    /// `user:password` for etcdctl (the health checks and [`Etcd::etcdctl`]), for an
    /// etcd whose authentication is or will be enabled (etcdctl ignores it while
    /// authentication is off).
    pub etcdctl_user: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            binary: std::env::var_os("RUNE_TEST_ETCD")
                .map(PathBuf::from)
                .unwrap_or_else(|| "etcd".into()),
            name: unique("rune-etcd"),
            root: scratch_root(),
            quota_backend_bytes: None,
            extra_args: Vec::new(),
            own_process_group: false,
            stop_grace: None,
            extra_client_hosts: Vec::new(),
            etcdctl_user: None,
        }
    }
}

/// A running etcd, stopped when dropped (its data dir removed).
pub struct Etcd {
    proc: Option<Proc>,
    pub client_url: String,
    peer_url: String,
    pub data_dir: PathBuf,
    config: EtcdConfig,
}

impl Etcd {
    /// Starts etcd as the e2e tests do ([`EtcdConfig::default`]).
    pub fn start() -> Etcd {
        Etcd::start_with(EtcdConfig::default())
    }

    /// Starts etcd and waits until it answers a health check; up to five attempts,
    /// each on other random ports (one may be taken in between). Panics when none
    /// came up.
    pub fn start_with(config: EtcdConfig) -> Etcd {
        let data_dir = config.root.join(&config.name);
        for attempt in 0..5 {
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let peer_url = format!("http://127.0.0.1:{}", free_port());
            let mut etcd = Etcd {
                proc: None,
                client_url,
                peer_url,
                data_dir: data_dir.clone(),
                config: config.clone(),
            };
            etcd.spawn();
            if etcd.wait_ready(Duration::from_secs(20)) {
                return etcd;
            }
            eprintln!("etcd did not come up (attempt {attempt}); retrying on other ports");
            etcd.kill();
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        panic!("could not start etcd (see {})", log_path(&config).display());
    }

    fn spawn(&mut self) {
        let c = &self.config;
        let log = std::fs::File::create(log_path(c)).unwrap();
        let listen: Vec<String> = std::iter::once(self.client_url.clone())
            .chain(c.extra_client_hosts.iter().map(|h| self.client_url_on(h)))
            .collect();
        let mut cmd = Command::new(&c.binary);
        cmd.args([
            "--name",
            &c.name,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
            "--listen-client-urls",
            &listen.join(","),
            "--advertise-client-urls",
            &self.client_url,
            "--listen-peer-urls",
            &self.peer_url,
            "--initial-advertise-peer-urls",
            &self.peer_url,
            "--initial-cluster",
            &format!("{}={}", c.name, self.peer_url),
            "--log-level",
            "error",
        ]);
        if let Some(q) = c.quota_backend_bytes {
            cmd.arg(format!("--quota-backend-bytes={q}"));
        }
        cmd.args(&c.extra_args);
        if c.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (the etcd binary must be installed: make deps installs etcd-server)",
                    c.binary.display()
                )
            });
        self.proc = Some(match c.stop_grace {
            None => Proc::killed_on_drop("etcd", child),
            Some(grace) => Proc::stopped_on_drop("etcd", child, grace),
        });
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        wait_until(within, || {
            if let Some(p) = &mut self.proc
                && !p.alive()
            {
                return Some(false);
            }
            let mut etcdctl = Command::new("etcdctl");
            if let Some(user) = &self.config.etcdctl_user {
                etcdctl.args(["--user", user]);
            }
            let ok = etcdctl
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

    /// The pid, 0 while stopped.
    pub fn pid(&self) -> i32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// The client URL on another of the addresses it listens on
    /// ([`EtcdConfig::extra_client_hosts`]): same port, that host.
    pub fn client_url_on(&self, host: &str) -> String {
        self.client_url.replacen("127.0.0.1", host, 1)
    }

    /// The log etcd writes (its stderr).
    pub fn log(&self) -> PathBuf {
        log_path(&self.config)
    }

    /// Stops etcd (SIGKILL), keeping its data for [`Etcd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Stops etcd in order (SIGTERM, then SIGKILL after the configured grace),
    /// keeping its data; how long it took.
    pub fn stop(&mut self) -> Option<Duration> {
        self.proc.take()?.stop()
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

    /// etcdctl against this etcd (as [`EtcdConfig::etcdctl_user`], if set).
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        let mut etcdctl = Command::new("etcdctl");
        if let Some(user) = &self.config.etcdctl_user {
            etcdctl.args(["--user", user]);
        }
        etcdctl
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

fn log_path(c: &EtcdConfig) -> PathBuf {
    c.root.join(format!("{}.log", c.name))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Dropping the process handle stops etcd as configured.
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
