//! The CLI's configuration file (contexts) against a real etcd, and shell completions.

use std::path::Path;

use predicates::prelude::*;

use crate::harness::World;

const TEAM_API: &str = "service:
  name: api
  namespace: team
  command: [\"sleep\", \"1000\"]
";

/// `rune` with the configuration file `config` and no etcd settings in the
/// environment, so that only the file says where etcd is.
fn rune_with(w: &World, config: &Path) -> assert_cmd::Command {
    let mut c = w.rune();
    c.env_remove("RUNE_ETCD_ENDPOINTS")
        .env_remove("RUNE_ETCD_PREFIX")
        .env("RUNE_CONFIG", config);
    c
}

fn config_file(w: &World) -> std::path::PathBuf {
    w.file(
        "config.yaml",
        &format!(
            "# contexts for the test\n\
             contexts:\n  \
               - name: test\n    \
                 endpoints: [{url}]\n    \
                 prefix: {prefix}\n    \
                 namespace: team\n  \
               - name: dead\n    \
                 endpoints: [http://127.0.0.1:1]\n    \
                 prefix: {prefix}\n",
            url = w.etcd.client_url,
            prefix = w.prefix
        ),
    )
}

#[test]
fn contexts_select_the_etcd_prefix_and_namespace() {
    let w = World::new();
    let cfg = config_file(&w);

    rune_with(&w, &cfg)
        .args(["config", "current-context"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("current-context is not set"));
    rune_with(&w, &cfg)
        .args(["config", "use-context", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("known contexts: test, dead"));
    rune_with(&w, &cfg)
        .args(["config", "use-context", "test"])
        .assert()
        .success()
        .stdout("Switched to context \"test\".\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.starts_with("# contexts for the test\ncurrent-context: test\n"),
        "{text}"
    );
    rune_with(&w, &cfg)
        .args(["config", "current-context"])
        .assert()
        .success()
        .stdout("test\n");
    let listing = rune_with(&w, &cfg)
        .args(["config", "get-contexts"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let current: Vec<&str> = listing.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{listing}");
    assert!(current[0].contains("test") && current[0].contains("team"));

    // The current context says where etcd is and which prefix to use.
    rune_with(&w, &cfg)
        .arg("cast")
        .arg(w.file("api.yaml", TEAM_API))
        .assert()
        .success()
        .stdout("service team/api created\n");
    assert!(w.etcd.get(&w.key("services/team/api")).is_some());

    // Its namespace is the default for -n; a flag still wins.
    rune_with(&w, &cfg)
        .args(["get", "services"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api"));
    rune_with(&w, &cfg)
        .args(["get", "service", "api", "-o", "json"])
        .assert()
        .success();
    rune_with(&w, &cfg)
        .args(["get", "services", "-n", "default"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api").not());

    // --context and RUNE_CONTEXT pick another context, for one command.
    rune_with(&w, &cfg)
        .args(["--context", "dead", "get", "services"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("127.0.0.1:1"));
    rune_with(&w, &cfg)
        .env("RUNE_CONTEXT", "dead")
        .args(["get", "services"])
        .assert()
        .code(5);
    rune_with(&w, &cfg)
        .args(["--context", "missing", "get", "services"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no context named \"missing\""));

    // Flags and the environment beat the context.
    rune_with(&w, &cfg)
        .args(["--context", "dead", "--etcd-endpoints", &w.etcd.client_url])
        .args(["get", "services", "-n", "team"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api"));
    rune_with(&w, &cfg)
        .env("RUNE_CONTEXT", "dead")
        .env("RUNE_ETCD_ENDPOINTS", &w.etcd.client_url)
        .args(["get", "services", "-n", "team"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api"));
    rune_with(&w, &cfg)
        .env("RUNE_ETCD_PREFIX", "/elsewhere")
        .args(["get", "services"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api").not());
}

#[test]
fn without_a_config_file_the_built_in_defaults_apply() {
    let w = World::new();
    let missing = w.dir.join("does-not-exist.yaml");
    // Default endpoint http://127.0.0.1:2379 (nothing listens there in tests, or a
    // stray etcd does: either way the error or the answer names that endpoint).
    let out = rune_with(&w, &missing)
        .args(["get", "services"])
        .output()
        .unwrap();
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(5));
        assert!(String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:2379"));
    }
    rune_with(&w, &missing)
        .args(["config", "get-contexts"])
        .assert()
        .success();
    // A broken file is reported with its path, as invalid input.
    let bad = w.file("bad.yaml", "contexts:\n  - name: a\n    endpoint: [x]\n");
    rune_with(&w, &bad)
        .args(["get", "services"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.yaml"));
}

#[test]
fn completions_for_each_shell_mention_the_commands() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = w.rune().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["cast", "get", "config", "use-context", "etcd-endpoints"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    w.rune().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn help_has_examples_on_the_new_commands() {
    let w = World::new();
    for args in [
        vec!["--help"],
        vec!["config", "--help"],
        vec!["config", "use-context", "--help"],
        vec!["config", "get-contexts", "--help"],
        vec!["config", "current-context", "--help"],
        vec!["completions", "--help"],
    ] {
        w.rune()
            .args(&args)
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"));
    }
    w.rune()
        .args(["config", "--help"])
        .assert()
        .stdout(predicate::str::contains("current-context: prod"))
        .stdout(predicate::str::contains("RUNE_CONTEXT"));
    w.rune()
        .arg("--help")
        .assert()
        .stdout(predicate::str::contains("--context <NAME>"));
}
