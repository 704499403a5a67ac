//! etcd's access control with the documented roles: the script in
//! deploy/etcd/README.md ("Access control") runs verbatim against an etcd of the
//! test's own, then the whole system runs under it, each program as its own user,
//! and each agent is confined to its node's keys.
//!
//! etcd runs with `--auth-token-ttl=2`: tokens expire between most requests, and a
//! restart of etcd forgets them all, so logging in again (requests and watches) is
//! exercised throughout, not only after the default 300 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Daemon, World};
use crate::support::etcd::EtcdConfig;
use crate::support::scratch::unique;
use crate::support::wait::eventually;
use crate::system::*;

/// The script of the README's "Access control" section: its `sh` block that
/// starts with `#!/bin/sh`.
fn documented_script() -> String {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/etcd/README.md"),
    )
    .unwrap();
    let start = readme
        .find("## Access control")
        .expect("README has an Access control section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let block = section
        .split("```sh\n")
        .skip(1)
        .map(|b| &b[..b.find("\n```").expect("closed block")])
        .find(|b| b.starts_with("#!/bin/sh"))
        .expect("the section has the script block");
    format!("{block}\n")
}

/// The world of one test with the documented roles applied for nodes `n1` and `n2`;
/// etcdctl of the harness acts as root, the CLI as `rune-operator` (its password in
/// `RUNE_ETCD_PASSWORD`, the daemons' in files).
struct Secured {
    w: World,
    secrets: PathBuf,
}

impl Secured {
    fn new() -> Secured {
        let root_password = unique("root");
        let w = World::with_etcd(EtcdConfig {
            extra_args: vec!["--auth-token-ttl=2".into()],
            etcdctl_user: Some(format!("root:{root_password}")),
            ..EtcdConfig::default()
        });
        let secrets = w.dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        // A password written first is kept (the README says so): the harness's
        // etcdctl knows root's.
        std::fs::write(secrets.join("root.password"), format!("{root_password}\n")).unwrap();
        let script = w.file("rune-etcd-rbac.sh", &documented_script());
        let started = Instant::now();
        let out = Command::new("sh")
            .arg(&script)
            .env("ETCDCTL_ENDPOINTS", &w.etcd.client_url)
            .env("RUNE_ETCD_PREFIX", &w.prefix)
            .env("NODES", "n1 n2")
            .env("SECRETS", &secrets)
            .env_remove("ETCDCTL_USER")
            .env_remove("ETCDCTL_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the README's script failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("the README's script took {:?}", started.elapsed());
        let mut s = Secured { w, secrets };
        s.w.cli_env = vec![
            ("RUNE_ETCD_USER".to_string(), "rune-operator".to_string()),
            (
                "RUNE_ETCD_PASSWORD".to_string(),
                s.password("rune-operator"),
            ),
        ];
        s
    }

    fn password_file(&self, user: &str) -> PathBuf {
        self.secrets.join(format!("{user}.password"))
    }

    fn password(&self, user: &str) -> String {
        let text = std::fs::read_to_string(self.password_file(user)).unwrap();
        text.lines().next().unwrap().to_string()
    }

    /// `--etcd-user USER --etcd-password-file FILE`.
    fn credentials(&self, user: &str) -> Vec<String> {
        vec![
            "--etcd-user".into(),
            user.into(),
            "--etcd-password-file".into(),
            self.password_file(user).to_str().unwrap().into(),
        ]
    }

    /// An agent for `node` as its own user, waited for until registered.
    fn agent(&self, node: &str, extra: &[&str]) -> Daemon {
        let creds = self.credentials(&format!("rune-agent-{node}"));
        let mut args: Vec<&str> = creds.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let a = self.w.agent(node, &args);
        eventually(
            &format!("node {node} registered"),
            Duration::from_secs(30),
            || self.w.etcd.get(&self.w.key(&format!("nodes/{node}"))),
        );
        a
    }

    /// etcdctl as `user`, with its password.
    fn etcdctl_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .args(["--endpoints", &self.w.etcd.client_url])
            .args(["--user", user, "--password", &self.password(user)])
            .args(args)
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_USER")
            .env_remove("ETCDCTL_PASSWORD")
            .output()
            .unwrap()
    }

    #[track_caller]
    fn assert_refused(&self, user: &str, args: &[&str]) {
        let out = self.etcdctl_as(user, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("permission denied"),
            "{user} may not `etcdctl {}`: {:?}\n{err}",
            args.join(" "),
            out.status
        );
    }

    #[track_caller]
    fn assert_allowed(&self, user: &str, args: &[&str]) -> String {
        let out = self.etcdctl_as(user, args);
        assert!(
            out.status.success(),
            "{user} may `etcdctl {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lease a key is on (0: none, or no such key), as root.
    fn lease_of(&self, key: &str) -> i64 {
        let out = self.w.etcd.etcdctl(&["get", key, "-w", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["kvs"][0]["lease"].as_i64().unwrap_or(0)
    }
}

/// The service's instances on `node`: (id, node) from `rune get instances`.
fn ids_on(w: &World, name: &str, node: &str) -> Vec<String> {
    instances(w, name)
        .iter()
        .filter(|i| i["instance"]["node"] == node)
        .filter_map(|i| i["instance"]["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_documented_roles_run_the_system_and_confine_each_agent() {
    let mut s = Secured::new();
    let w = &s.w;
    let controller_args: Vec<String> = FAST_CONTROLLER
        .iter()
        .map(|a| a.to_string())
        .chain(s.credentials("rune-controller"))
        .collect();
    let controller_args: Vec<&str> = controller_args.iter().map(String::as_str).collect();
    let _c = w.controller("c1", &controller_args);
    let mut n1 = s.agent("n1", FAST_AGENT);
    // n2 stops its instances and revokes its lease on SIGTERM; a long TTL, so the
    // lease is gone at once only if the revoke worked.
    let mut n2 = s.agent("n2", &["--lease-ttl", "60s", "--stop-instances-on-exit"]);

    // The whole system works under the roles: cast by the operator, placed by the
    // controller, run and reported by both agents.
    deploy(w, &sleeper(w, "api", 4, ""), "api", 4);
    let on_n1 = ids_on(w, "api", "n1");
    let on_n2 = ids_on(w, "api", "n2");
    assert!(
        !on_n1.is_empty() && !on_n2.is_empty(),
        "on both nodes: {on_n1:?} {on_n2:?}"
    );

    // n1's agent reads its own assignments, and nothing of n2's, nor desired state.
    let agent = "rune-agent-n1";
    let mine = s.assert_allowed(
        agent,
        &["get", "--prefix", "--keys-only", &w.key("assignments/n1/")],
    );
    assert_eq!(
        mine.lines().filter(|l| !l.is_empty()).count(),
        on_n1.len(),
        "{mine}"
    );
    s.assert_allowed(agent, &["get", &w.key("layout")]);
    let theirs = w.key(&format!("assignments/n2/default/api/{}", on_n2[0]));
    s.assert_refused(agent, &["get", &theirs]);
    s.assert_refused(agent, &["get", "--prefix", &w.key("assignments/n2/")]);
    s.assert_refused(agent, &["put", &theirs, "{}"]);
    s.assert_refused(
        agent,
        &["put", &w.key("assignments/n2/default/api/x"), "{}"],
    );
    s.assert_refused(agent, &["put", &w.key("nodes/n2"), "{}"]);
    s.assert_refused(agent, &["del", &w.key("nodes/n2")]);
    s.assert_refused(agent, &["put", &w.key("services/default/evil"), "{}"]);
    s.assert_refused(agent, &["get", &w.key("services/default/api")]);
    let record = w.key(&format!("instances/default/api/{}", on_n2[0]));
    s.assert_refused(agent, &["put", &record, "{}"]);
    s.assert_refused(agent, &["del", &record]);
    s.assert_refused(agent, &["put", &w.key("status/default/api"), "{}"]);
    // Nor can it end n2's registration by revoking its lease.
    let n2_lease = s.lease_of(&w.key("nodes/n2"));
    assert_ne!(n2_lease, 0);
    s.assert_refused(agent, &["lease", "revoke", &format!("{n2_lease:x}")]);

    // GitOps writes specs only; the operator specs and operations only.
    s.assert_refused(
        "rune-gitops",
        &["put", &w.key("operations/default/api"), "{}"],
    );
    s.assert_allowed("rune-gitops", &["get", &w.key("status/default/api")]);
    // Load balancers read the endpoints the controller wrote, and nothing else.
    eventually(
        "the controller wrote endpoints",
        Duration::from_secs(30),
        || w.etcd.get(&w.key("endpoints/default/api")).map(|_| ()),
    );
    s.assert_allowed("rune-discovery", &["get", &w.key("endpoints/default/api")]);
    s.assert_refused("rune-discovery", &["get", &w.key("services/default/api")]);
    s.assert_refused(
        "rune-discovery",
        &["put", &w.key("endpoints/default/api"), "{}"],
    );

    // The logs tokens: each agent wrote its own; GitOps cannot read them (nor the
    // whole prefix, which holds them), the operator can, and `rune logs` works.
    eventually(
        "both agents published a logs token",
        Duration::from_secs(30),
        || {
            (w.etcd.get(&w.key("node-tokens/n1")).is_some()
                && w.etcd.get(&w.key("node-tokens/n2")).is_some())
            .then_some(())
        },
    );
    s.assert_refused(agent, &["get", &w.key("node-tokens/n2")]);
    s.assert_refused(agent, &["put", &w.key("node-tokens/n2"), "x"]);
    s.assert_refused("rune-gitops", &["get", &w.key("node-tokens/n1")]);
    s.assert_refused("rune-gitops", &["get", "--prefix", &w.key("")]);
    s.assert_allowed("rune-gitops", &["get", "--prefix", &w.key("services/")]);
    s.assert_allowed("rune-gitops", &["get", &w.key("layout")]);
    s.assert_allowed("rune-operator", &["get", &w.key("node-tokens/n1")]);
    w.rune().args(["logs", "api"]).assert().success();
    s.assert_refused("rune-operator", &["put", &record, "{}"]);
    s.assert_refused(
        "rune-operator",
        &["put", &w.key("instance-status/x/y/z"), "{}"],
    );
    // Cordons are the operator's; agents and GitOps cannot write them.
    s.assert_allowed("rune-operator", &["put", &w.key("node-state/n9"), "{}"]);
    s.assert_allowed("rune-operator", &["del", &w.key("node-state/n9")]);
    s.assert_refused("rune-gitops", &["put", &w.key("node-state/n9"), "{}"]);
    s.assert_refused(agent, &["put", &w.key("node-state/n1"), "{}"]);
    // Events: the agents write their own (the shared `events/` range), on a lease
    // of their own; the operator reads them and writes none.
    let events = eventually("n1's agent wrote events", Duration::from_secs(30), || {
        let out = s.assert_allowed(
            "rune-operator",
            &["get", "--prefix", "--print-value-only", &w.key("events/")],
        );
        out.contains("\"source\":\"agent n1\"").then_some(out)
    });
    assert!(events.contains("\"source\":\"controller\""), "{events}");
    s.assert_allowed(agent, &["put", &w.key("events/x/y/z"), "{}"]);
    s.assert_refused("rune-operator", &["put", &w.key("events/x/y/z"), "{}"]);

    // etcd restarts and forgets every token: the daemons log in again, their
    // watches too. A stop needs the controller's and both agents' watches...
    s.w.etcd.restart();
    let w = &s.w;
    w.rune()
        .args(["stop", "api", "--timeout", "30s"])
        .assert()
        .success();
    eventually("every instance stopped", Duration::from_secs(30), || {
        live_processes(w, "api").is_empty().then_some(())
    });
    // ... and instances start again on both nodes.
    for node in ["n1", "n2"] {
        eventually(
            &format!("{node} registered after the restart"),
            Duration::from_secs(30),
            || w.etcd.get(&w.key(&format!("nodes/{node}"))),
        );
    }
    w.rune()
        .args(["scale", "api", "4", "--timeout", "30s"])
        .assert()
        .success();
    wait_ready(w, "api", 4);
    let on_n2 = ids_on(w, "api", "n2");
    assert!(!on_n2.is_empty(), "n2 runs instances again");

    // n2's clean shutdown revokes its lease: its registration and reports (all on
    // the lease) go at once, under its own role.
    let n2_lease = s.lease_of(&w.key("nodes/n2"));
    assert_ne!(n2_lease, 0);
    let status = w.key(&format!("instance-status/default/api/{}", on_n2[0]));
    eventually("n2 reported on its lease", Duration::from_secs(30), || {
        (s.lease_of(&status) == n2_lease).then_some(())
    });
    let exited = n2.terminate(Duration::from_secs(30));
    assert!(
        exited.is_some_and(|e| e.success()),
        "{exited:?}\n{}",
        n2.logs()
    );
    assert!(
        !n2.logs().contains("revoking the node lease failed"),
        "{}",
        n2.logs()
    );
    let ttl = w
        .etcd
        .etcdctl(&["lease", "timetolive", &format!("{n2_lease:x}")]);
    let ttl = String::from_utf8_lossy(&ttl.stdout);
    assert!(
        ttl.contains("already expired"),
        "n2's lease is revoked: {ttl}"
    );
    assert_eq!(w.etcd.get(&w.key("nodes/n2")), None);
    assert_eq!(w.etcd.get(&status), None);

    // A lost node is forgotten by the node admin, not by an operator alone.
    n1.kill9();
    eventually("n1's lease expires", Duration::from_secs(30), || {
        w.etcd.get(&w.key("nodes/n1")).is_none().then_some(())
    });
    assert!(!ids_on(w, "api", "n1").is_empty());
    w.rune()
        .args(["node", "forget", "n1"])
        .assert()
        .code(5)
        .stderr(predicates::str::contains("permission denied"));
    w.rune()
        .env("RUNE_ETCD_USER", "rune-node-admin")
        .env("RUNE_ETCD_PASSWORD", s.password("rune-node-admin"))
        .args(["node", "forget", "n1"])
        .assert()
        .success();
    assert!(ids_on(w, "api", "n1").is_empty());

    // Wrong credentials: a clear refusal naming the endpoint and the user, at once.
    let started = Instant::now();
    let out = w
        .rune()
        .env("RUNE_ETCD_PASSWORD", "not-the-password")
        .args(["get", "services"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("\"rune-operator\"") && err.contains(&w.etcd.client_url),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");

    // A daemon given wrong credentials stops (exit 5) rather than retry forever.
    let wrong = w.file("wrong.password", "not-the-password\n");
    let mut agent = w.agent(
        "n3",
        &[
            "--etcd-user",
            "rune-agent-n1",
            "--etcd-password-file",
            wrong.to_str().unwrap(),
        ],
    );
    let status = agent
        .wait_exit(Duration::from_secs(30))
        .expect("the agent gives up on refused credentials");
    assert_eq!(status.code(), Some(5), "{}", agent.logs());
    assert!(agent.logs().contains("rune-agent-n1"), "{}", agent.logs());
}
