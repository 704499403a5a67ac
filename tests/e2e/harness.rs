//! Test harness: one test's world — a real etcd of its own (`support::etcd`: tmpfs data
//! dir, random loopback ports, killed by PID on drop, also when the test panics), a
//! unique key prefix and scratch dir — and helpers to run rune's binaries against it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use rune::store::{EtcdArgs, Store};

use crate::support::etcd::{Etcd, EtcdConfig};
use crate::support::net::{free_port, http_get};
use crate::support::procs::{Proc, reap_instances};
use crate::support::scratch::{scratch_root, unique};

/// One test's world: an etcd and a key prefix of its own.
pub struct World {
    pub etcd: Etcd,
    pub prefix: String,
    pub dir: PathBuf,
    /// Environment every [`World::rune`] gets (etcd credentials, say).
    pub cli_env: Vec<(String, String)>,
}

impl World {
    pub fn new() -> World {
        World::with_etcd(EtcdConfig::default())
    }

    /// A world whose etcd runs as `config` says.
    pub fn with_etcd(config: EtcdConfig) -> World {
        let etcd = Etcd::start_with(config);
        let prefix = format!("/{}", unique("t"));
        let dir = scratch_root().join(unique("rune-test"));
        std::fs::create_dir_all(&dir).unwrap();
        World {
            etcd,
            prefix,
            dir,
            cli_env: Vec::new(),
        }
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
        for (k, v) in &self.cli_env {
            c.env(k, v);
        }
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

    /// A [`Store`] on this world's etcd and prefix.
    pub async fn store(&self) -> Store {
        Store::connect(&EtcdArgs::local(
            vec![self.etcd.client_url.clone()],
            &self.prefix,
        ))
        .await
        .unwrap()
    }

    /// Runs `f` with a [`Store`] on this world's etcd and prefix, on a tokio runtime
    /// of its own (the tests themselves are synchronous).
    pub fn block_on_store<T>(&self, f: impl AsyncFnOnce(&Store) -> T) -> T {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = self.store().await;
            f(&store).await
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        reap_instances(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rune daemon (controller or agent) started by a test; SIGKILLed on drop.
pub struct Daemon {
    pub proc: Proc,
    pub log: PathBuf,
    pub http: String,
    pub name: String,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM and wait for the process to exit (up to `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.terminate(within)
    }

    /// Waits for the daemon to exit on its own (up to `within`).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(within)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the daemon's HTTP listener: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path)
    }
}

impl World {
    fn daemon(&self, bin: &str, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        self.daemon_wrapped(&[], bin, name, args, envs)
    }

    /// A daemon started through `wrapper` (`ip netns exec NS`, say; it must exec the
    /// binary, so that the pid is the daemon's); `envs` come last and win.
    fn daemon_wrapped(
        &self,
        wrapper: &[&str],
        bin: &str,
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Daemon {
        let http = format!("127.0.0.1:{}", free_port());
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let bin_path = assert_cmd::cargo::cargo_bin(bin);
        let mut cmd = match wrapper.split_first() {
            None => Command::new(&bin_path),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&bin_path);
                c
            }
        };
        cmd.env("RUNE_ETCD_ENDPOINTS", &self.etcd.client_url)
            .env("RUNE_ETCD_PREFIX", &self.prefix)
            // Agents run instances without cgroups unless a test gives them a
            // --cgroup-parent of its own (tests/e2e/resources.rs), which it removes.
            .env("RUNE_CGROUP_PARENT", "none")
            // Instances' $RUNE_FILES in the test's scratch dir, not /run.
            .env("RUNE_FILES_DIR", self.dir.join(format!("{name}-files")))
            // Instances bind loopback in tests: that is where `endpoints/` points.
            .env("RUNE_NODE_IP", "127.0.0.1")
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
            proc: Proc::killed_on_drop(name, child),
            log,
            http,
            name: name.to_string(),
        }
    }

    /// Starts `rune-agent` for `node`, its data dir under the test's scratch dir.
    pub fn agent(&self, node: &str, extra: &[&str]) -> Daemon {
        let name = format!("agent-{node}");
        self.agent_in(node, &name, &name, extra)
    }

    /// Starts `rune-agent` for `node` with a data dir of the given name (two agents
    /// claiming one node name from different data dirs).
    pub fn agent_with_data(&self, node: &str, data_name: &str, extra: &[&str]) -> Daemon {
        self.agent_in(node, data_name, &format!("agent-{node}-{data_name}"), extra)
    }

    /// [`World::agent`] with environment variables of its own (`RUNE_LABELS`, say).
    pub fn agent_with_env(&self, node: &str, extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let name = format!("agent-{node}");
        let data = self.dir.join(&name);
        let data = data.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", node, "--data-dir", &data];
        args.extend_from_slice(extra);
        self.daemon("rune-agent", &name, &args, envs)
    }

    /// `rune-agent` for `node`, data dir `data_name` under the scratch dir, log `name`.
    /// `manifests/flaky.yaml`'s instances keep their slots in the scratch dir too
    /// (`FLAKY_DIR`, which instances get through `--pass-env`): tests running at once on one host
    /// must not take each other's slots.
    fn agent_in(&self, node: &str, data_name: &str, name: &str, extra: &[&str]) -> Daemon {
        let data = self.dir.join(data_name);
        let data = data.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", node, "--data-dir", &data];
        args.extend_from_slice(extra);
        let slots = self.dir.join("flaky-slots");
        let envs = [
            ("FLAKY_DIR", slots.to_str().unwrap()),
            ("RUNE_PASS_ENV", "FLAKY_DIR"),
        ];
        self.daemon("rune-agent", name, &args, &envs)
    }

    /// Starts `rune-agent` for `node` through `wrapper` (see [`World::daemon_wrapped`]),
    /// reaching etcd at `etcd_url`; data dir and log as [`World::agent`]'s.
    pub fn agent_wrapped(
        &self,
        wrapper: &[&str],
        node: &str,
        etcd_url: &str,
        extra: &[&str],
    ) -> Daemon {
        let name = format!("agent-{node}");
        let data = self.dir.join(&name);
        let data = data.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", node, "--data-dir", &data];
        args.extend_from_slice(extra);
        self.daemon_wrapped(
            wrapper,
            "rune-agent",
            &name,
            &args,
            &[("RUNE_ETCD_ENDPOINTS", etcd_url)],
        )
    }

    /// Starts `rune-controller` with fast test timings unless `extra` overrides them.
    pub fn controller(&self, name: &str, extra: &[&str]) -> Daemon {
        self.controller_with_env(name, extra, &[])
    }

    /// [`controller`](Self::controller) with environment variables of its own (the
    /// ones that are no flags, such as `RUNE_ETCD_PAGE_SIZE`).
    pub fn controller_with_env(&self, name: &str, extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut args = vec!["--id", name];
        args.extend_from_slice(extra);
        self.daemon(
            "rune-controller",
            &format!("controller-{name}"),
            &args,
            envs,
        )
    }
}
