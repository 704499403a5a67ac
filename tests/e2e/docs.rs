//! The documentation's examples run, and its reference tables are complete.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::CommandFactory;

use crate::harness::World;
use crate::support::scratch::{ScratchDir, unique};
use crate::support::wait::eventually;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A fenced code block: its info string (`sh`, `sh needs-controller`, ...), the
/// line it starts on, and its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match current.as_mut() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    current = Some(Block {
                        info: info.trim().to_string(),
                        line: i + 1,
                        text: String::new(),
                    });
                }
            }
            Some(b) => {
                if line.trim_end() == "```" {
                    out.push(current.take().unwrap());
                } else {
                    b.text.push_str(line);
                    b.text.push('\n');
                }
            }
        }
    }
    assert!(current.is_none(), "unclosed code block");
    out
}

/// Keys that a block writes (`etcdctl put KEY`, `put KEY` inside a txn) and
/// deletes (`etcdctl del KEY`).
fn writes(block: &str) -> (Vec<String>, Vec<String>) {
    let (mut puts, mut dels) = (Vec::new(), Vec::new());
    for line in block.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["etcdctl", "put", key, ..] | ["put", key, ..] => puts.push(key.to_string()),
            ["etcdctl", "del", key, ..] => dels.push(key.to_string()),
            _ => {}
        }
    }
    (puts, dels)
}

fn cargo_bin_dir() -> PathBuf {
    assert_cmd::cargo::cargo_bin("rune")
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn gitops_sh_blocks_run_verbatim_against_etcd() {
    // An etcd of our own, so the documented default prefix /rune is ours alone, with
    // a controller and an agent so the examples' outcomes can be checked too.
    let mut w = World::new();
    w.prefix = "/rune".into();
    let _controller = crate::system::controller(&w, "docs");
    let _agent = crate::system::agent(&w, "n1");
    let etcd = &w.etcd;
    let scratch = ScratchDir::create(std::env::temp_dir().join(unique("rune-docs")));
    let doc = read("docs/gitops.md");
    // The examples' files, where a reader at the repository's root finds them.
    let examples = scratch.path.join("docs/examples");
    std::fs::create_dir_all(&examples).unwrap();
    for entry in std::fs::read_dir(root().join("docs/examples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), examples.join(entry.file_name())).unwrap();
    }
    let path = format!(
        "{}:{}",
        cargo_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for b in blocks(&doc) {
        let mut info = b.info.split_whitespace();
        if info.next() != Some("sh") {
            continue;
        }
        let needs_controller = info.any(|w| w == "needs-controller");
        if needs_controller {
            // The spec write before this block scaled web to 4, gradually.
            eventually(
                "web scaled to 4 by the spec write",
                Duration::from_secs(90),
                || {
                    let s = crate::system::service(&w, "web");
                    (s["status"]["readyReplicas"] == 4
                        && s["status"]["operation"]["phase"] == "Succeeded")
                        .then_some(())
                },
            );
        }
        let out = Command::new("sh")
            .args(["-e", "-c", &b.text])
            .current_dir(&scratch.path)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", &etcd.client_url)
            .env("RUNE_ETCD_ENDPOINTS", &etcd.client_url)
            .env_remove("RUNE_ETCD_PREFIX")
            .env_remove("RUNE_CONTEXT")
            .env("RUNE_CONFIG", scratch.path.join("no-config.yaml"))
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "docs/gitops.md:{} failed ({}):\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            b.line,
            out.status,
            b.text
        );
        assert!(
            !stdout.contains("FAILURE"),
            "docs/gitops.md:{}: a transaction's comparison failed:\n{stdout}",
            b.line
        );
        if needs_controller && b.text.contains("rune get service web") {
            assert!(
                stdout.contains("lastScaleReason: \"spec change: scale 2 -> 4"),
                "docs/gitops.md:{}: the outcome shows in status:\n{stdout}",
                b.line
            );
        }
        let (puts, dels) = writes(&b.text);
        for k in puts.iter().filter(|k| !dels.contains(k)) {
            assert!(
                k.starts_with("/rune/services/") || k.starts_with("/rune/configs/"),
                "docs write only specs and configs: {k}"
            );
            assert!(
                etcd.get(k).is_some(),
                "docs/gitops.md:{}: {k} did not land",
                b.line
            );
        }
        for k in &dels {
            assert_eq!(etcd.get(k), None, "docs/gitops.md:{}: {k} remains", b.line);
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} sh blocks ran");

    // What the examples left behind is valid, as rune reads it.
    let keys = etcd.keys("/rune/services/");
    assert_eq!(
        keys,
        ["/rune/services/default/api", "/rune/services/default/web"],
        "the examples end with these specs"
    );
    let out = assert_cmd::Command::cargo_bin("rune")
        .unwrap()
        .env("RUNE_ETCD_ENDPOINTS", &etcd.client_url)
        .env_remove("RUNE_ETCD_PREFIX")
        .env("RUNE_CONFIG", scratch.path.join("no-config.yaml"))
        .args(["get", "services", "-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = v
        .as_array()
        .or_else(|| v["items"].as_array())
        .unwrap_or_else(|| panic!("a list: {text}"));
    assert_eq!(items.len(), 2, "{text}");
    for item in items {
        assert!(item.get("error").is_none(), "{item}");
    }
    assert!(
        etcd.get("/rune/services/default/web")
            .unwrap()
            .contains("scale: 4"),
        "the last write of web scales it to 4"
    );
}

/// Rows of the one table in docs/configuration.md: (program, flag, env, default).
fn config_rows() -> Vec<[String; 4]> {
    let doc = read("docs/configuration.md");
    let mut rows = Vec::new();
    for line in doc.lines() {
        if !line.starts_with("| ") || line.starts_with("| program") {
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect();
        assert_eq!(cells.len(), 5, "{line}");
        rows.push([
            cells[0].clone(),
            cells[1].clone(),
            cells[2].clone(),
            cells[3].clone(),
        ]);
    }
    assert!(rows.len() > 10);
    rows
}

fn row_for<'a>(rows: &'a [[String; 4]], program: &str, flag: &str) -> Option<&'a [String; 4]> {
    rows.iter().find(|r| {
        let programs = &r[0];
        (programs == "all" || programs.split(", ").any(|p| p == program))
            && r[1].split(", ").any(|f| f == format!("`{flag}`"))
    })
}

#[test]
fn configuration_table_lists_every_flag_of_every_binary() {
    let rows = config_rows();
    // rune: every global flag, with its environment variable and default.
    let cmd = rune::cli::Cli::command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        let row = row_for(&rows, "rune", &flag)
            .unwrap_or_else(|| panic!("docs/configuration.md lacks rune {flag}"));
        match arg.get_env() {
            Some(env) => assert_eq!(row[2], format!("`{}`", env.to_string_lossy()), "{flag}"),
            None => assert_eq!(row[2], "none", "{flag}"),
        }
        for d in arg.get_default_values() {
            assert!(row[3].contains(&*d.to_string_lossy()), "{flag} default");
        }
    }
    assert!(row_for(&rows, "rune", "--namespace").is_some());

    // The daemons, when they are built: every flag in their --help is in the table.
    for bin in ["rune-controller", "rune-agent"] {
        let path = cargo_bin_dir().join(bin);
        if !path.exists() {
            println!("note: {bin} is not built; its flags are checked only against the list");
            continue;
        }
        let out = Command::new(&path).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let flags: BTreeSet<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(String::from)
            .collect();
        for flag in flags {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let row = row_for(&rows, bin, &flag)
                .unwrap_or_else(|| panic!("docs/configuration.md lacks {bin} {flag}"));
            if row[2] != "none" {
                let env = row[2].trim_matches('`');
                assert!(help.contains(env), "{bin} --help does not mention {env}");
            }
        }
    }

    // Every RUNE_* variable the deployment files set is documented.
    let documented: BTreeSet<String> = rows
        .iter()
        .map(|r| r[2].trim_matches('`').to_string())
        .collect();
    for file in [
        "deploy/systemd/rune.env",
        "deploy/kubernetes/configmap.yaml",
        "deploy/systemd/rune-agent.service",
    ] {
        for word in read(file).split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("RUNE_") {
                assert!(
                    documented.contains(word),
                    "{file}: {word} is not documented"
                );
            }
        }
    }
}
