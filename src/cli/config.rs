//! The CLI's configuration file: kubectl-like contexts that name an etcd (endpoints,
//! prefix, TLS files) and a default namespace, and `rune config ...` to show and
//! switch them.
//!
//! Precedence, per setting: flags > environment > the selected context
//! (`--context`/`RUNE_CONTEXT`, else `current-context`) > built-in defaults. A
//! context is applied by turning its values into the defaults of the matching
//! arguments before the command line is parsed a second time, so clap's own
//! flag > environment > default order does the rest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::output::{print_table, table};
use crate::exit::{self, Error, Exit};

/// Where the configuration file is unless `RUNE_CONFIG` says otherwise.
pub const CONFIG_ENV: &str = "RUNE_CONFIG";

const CONFIG_HELP: &str = "\
Examples:
  rune config get-contexts
  rune config use-context prod
  rune config current-context
  rune --context local get services      # one command against another context

The configuration file is $RUNE_CONFIG, else $XDG_CONFIG_HOME/rune/config.yaml, else
~/.config/rune/config.yaml:

  current-context: prod
  contexts:
    - name: prod
      endpoints: [https://etcd-0.example.internal:2379, https://etcd-1.example.internal:2379]
      prefix: /rune
      namespace: web
      ca: /etc/rune/tls/ca.crt        # relative paths are relative to this file
      cert: prod-client.crt
      key: prod-client.key
      logs-ca: logs-ca.crt            # rune logs: agents serving logs over TLS
      logs-cert: logs-client.crt      # ... and mutual TLS
      logs-key: logs-client.key
    - name: local
      endpoints: [http://127.0.0.1:2379]

Every field but `name` is optional. A context's namespace is the default for -n; it
does not change where `rune cast` puts a spec (a spec without `namespace:` is in
`default`). Each setting comes from, in order: a flag
(--etcd-endpoints, --etcd-prefix, --etcd-ca, --etcd-cert, --etcd-key, -n), the
environment (RUNE_ETCD_ENDPOINTS, RUNE_ETCD_PREFIX, RUNE_ETCD_CA, RUNE_ETCD_CERT,
RUNE_ETCD_KEY), the context chosen by --context / RUNE_CONTEXT or else
`current-context`, and last the built-in default. `rune logs`' --logs-tls-ca,
--logs-tls-cert and --logs-tls-key (RUNE_LOGS_TLS_CA, ...) come from `logs-ca`,
`logs-cert` and `logs-key` in the same way.";

/// The configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One named etcd (and default namespace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// `rune logs --logs-tls-ca`: the CA of the agents' logs endpoints.
    #[serde(default, rename = "logs-ca", skip_serializing_if = "Option::is_none")]
    pub logs_ca: Option<PathBuf>,
    /// `rune logs --logs-tls-cert`: the client certificate for mutual TLS.
    #[serde(default, rename = "logs-cert", skip_serializing_if = "Option::is_none")]
    pub logs_cert: Option<PathBuf>,
    /// `rune logs --logs-tls-key`.
    #[serde(default, rename = "logs-key", skip_serializing_if = "Option::is_none")]
    pub logs_key: Option<PathBuf>,
}

/// The configuration file's path: `$RUNE_CONFIG`, else
/// `$XDG_CONFIG_HOME/rune/config.yaml`, else `~/.config/rune/config.yaml`.
pub fn config_path() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = non_empty(CONFIG_ENV) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = non_empty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("rune/config.yaml"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".config/rune/config.yaml"))
}

impl Config {
    /// Parses a configuration file's text; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> exit::Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| Error::usage(format!("{source}: {e}")))?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &config.contexts {
            if c.name.is_empty() {
                return Err(Error::usage(format!("{source}: a context has no name")));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(Error::usage(format!(
                    "{source}: context {:?} is defined twice",
                    c.name
                )));
            }
        }
        Ok(config)
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> exit::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut config = Config::parse(&path.display().to_string(), &text)?;
                // TLS paths are relative to the file, as in kubeconfig.
                if let Some(dir) = path.parent() {
                    for c in &mut config.contexts {
                        let files = [
                            &mut c.ca,
                            &mut c.cert,
                            &mut c.key,
                            &mut c.logs_ca,
                            &mut c.logs_cert,
                            &mut c.logs_key,
                        ];
                        for p in files.into_iter().flatten() {
                            if p.is_relative() {
                                *p = dir.join(&*p);
                            }
                        }
                    }
                }
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error::usage(format!("{}: {e}", path.display()))),
        }
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The context to use: `explicit` (from `--context`/`RUNE_CONTEXT`) or the
    /// file's `current-context`; none when neither is set. Naming a context that
    /// does not exist is an error.
    pub fn select(&self, explicit: Option<&str>, source: &str) -> exit::Result<Option<&Context>> {
        let (name, why) = match (explicit, &self.current_context) {
            (Some(n), _) => (n, "--context / RUNE_CONTEXT"),
            (None, Some(n)) if !n.is_empty() => (n.as_str(), "current-context"),
            _ => return Ok(None),
        };
        self.context(name).map(Some).ok_or_else(|| {
            Error::usage(format!(
                "{source}: no context named {name:?} (from {why}); known contexts: {}",
                self.names()
            ))
        })
    }

    fn names(&self) -> String {
        if self.contexts.is_empty() {
            "none".to_string()
        } else {
            self.contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// Turns a context's values into the defaults of the matching arguments (the etcd
/// flags and every `-n/--namespace`), so flags and environment still win.
pub fn apply_context(cmd: clap::Command, ctx: &Context) -> clap::Command {
    fn leak(s: String) -> &'static str {
        // The CLI parses its command line once per run; a few bytes live until exit.
        Box::leak(s.into_boxed_str())
    }
    fn path(p: &Path) -> &'static str {
        leak(p.display().to_string())
    }
    let endpoints: Vec<&'static str> = ctx.endpoints.iter().map(|e| leak(e.clone())).collect();
    let prefix = ctx.prefix.clone().map(leak);
    let namespace = ctx.namespace.clone().map(leak);
    let (ca, cert, key) = (
        ctx.ca.as_deref().map(path),
        ctx.cert.as_deref().map(path),
        ctx.key.as_deref().map(path),
    );
    let set = move |a: clap::Arg| -> clap::Arg {
        let value = match a.get_id().as_str() {
            "endpoints" if !endpoints.is_empty() => {
                return a.default_values(endpoints.clone());
            }
            "prefix" => prefix,
            "ca" => ca,
            "cert" => cert,
            "key" => key,
            _ => None,
        };
        match value {
            Some(v) => a.default_value(v),
            None => a,
        }
    };
    let logs = [
        ("logs_tls_ca", ctx.logs_ca.as_deref().map(path)),
        ("logs_tls_cert", ctx.logs_cert.as_deref().map(path)),
        ("logs_tls_key", ctx.logs_key.as_deref().map(path)),
    ];
    let mut cmd = cmd.mut_args(set);
    if logs.iter().any(|(_, v)| v.is_some()) && cmd.find_subcommand("logs").is_some() {
        cmd = cmd.mut_subcommand("logs", |sub| {
            sub.mut_args(|a| {
                match logs
                    .iter()
                    .find(|(id, _)| a.get_id() == *id)
                    .and_then(|(_, v)| *v)
                {
                    Some(v) => a.default_value(v),
                    None => a,
                }
            })
        });
    }
    match namespace {
        Some(ns) => with_namespace_default(cmd, ns),
        None => cmd,
    }
}

fn with_namespace_default(cmd: clap::Command, ns: &'static str) -> clap::Command {
    cmd.mut_args(|a| {
        if a.get_id() == "namespace" {
            a.default_value(ns)
        } else {
            a
        }
    })
    .mut_subcommands(|sub| with_namespace_default(sub, ns))
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// List the contexts in the configuration file; `*` marks the current one.
    #[command(after_help = "Examples:
  rune config get-contexts
  RUNE_CONFIG=./ci-config.yaml rune config get-contexts")]
    GetContexts,
    /// Make NAME the current context (writes `current-context:` in the file).
    #[command(after_help = "Examples:
  rune config use-context prod
  rune get services                      # now against prod's etcd
  rune --context local get services      # one command against another context

Only the `current-context:` line of the file is rewritten; comments and the rest
of the file are kept.")]
    UseContext {
        /// A context defined in the configuration file.
        name: String,
    },
    /// Print the name of the current context.
    #[command(after_help = "Examples:
  rune config current-context

Exits with 4 when the file sets no current context.")]
    CurrentContext,
}

/// `--help` text of `rune config`.
pub fn help() -> &'static str {
    CONFIG_HELP
}

fn require_path() -> exit::Result<PathBuf> {
    config_path().ok_or_else(|| {
        Error::usage("no configuration file: set RUNE_CONFIG, XDG_CONFIG_HOME or HOME")
    })
}

pub fn run(cmd: ConfigCommand, context_override: Option<&str>) -> exit::Result<()> {
    let path = require_path()?;
    let config = Config::load(&path)?;
    match cmd {
        ConfigCommand::GetContexts => {
            let current = context_override.or(config.current_context.as_deref());
            let mut t = table(&["CURRENT", "NAME", "ENDPOINTS", "PREFIX", "NAMESPACE"]);
            for c in &config.contexts {
                t.add_row(vec![
                    if Some(c.name.as_str()) == current {
                        "*".to_string()
                    } else {
                        String::new()
                    },
                    c.name.clone(),
                    c.endpoints.join(","),
                    c.prefix.clone().unwrap_or_default(),
                    c.namespace.clone().unwrap_or_default(),
                ]);
            }
            print_table(&t);
            Ok(())
        }
        ConfigCommand::CurrentContext => {
            let name = context_override.or(config.current_context.as_deref());
            match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    println!("{n}");
                    Ok(())
                }
                None => Err(Error::new(
                    Exit::Conflict,
                    format!("current-context is not set in {}", path.display()),
                )),
            }
        }
        ConfigCommand::UseContext { name } => {
            if config.context(&name).is_none() {
                return Err(Error::usage(format!(
                    "{}: no context named {name:?}; known contexts: {}",
                    path.display(),
                    config.names()
                )));
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let next = set_current_context(&text, &name);
            write_atomically(&path, &next)?;
            println!("Switched to context {name:?}.");
            Ok(())
        }
    }
}

/// Rewrites (or adds) the top-level `current-context:` line, keeping the rest.
pub fn set_current_context(text: &str, name: &str) -> String {
    let line = format!("current-context: {}", yaml_scalar(name));
    let mut out = Vec::new();
    let mut replaced = false;
    for l in text.lines() {
        if !replaced && l.starts_with("current-context:") {
            out.push(line.clone());
            replaced = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !replaced {
        // After the file's leading comments, before its first setting.
        let at = out
            .iter()
            .position(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .unwrap_or(out.len());
        out.insert(at, line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// A context name as a YAML scalar: plain when safe, else JSON-quoted (valid YAML).
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings serialize")
    }
}

fn write_atomically(path: &Path, text: &str) -> exit::Result<()> {
    let err = |e: std::io::Error| Error::usage(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# mine\ncurrent-context: a\ncontexts:\n  - name: a\n    endpoints: [http://x:1]\n  - name: b\n    prefix: /p\n    namespace: team\n    ca: ca.pem\n";

    #[test]
    fn parses_and_selects() {
        let c = Config::parse("f", FILE).unwrap();
        assert_eq!(c.select(None, "f").unwrap().unwrap().name, "a");
        assert_eq!(c.select(Some("b"), "f").unwrap().unwrap().name, "b");
        let e = c.select(Some("zz"), "f").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.to_string().contains("known contexts: a, b"), "{e}");
        assert!(
            Config::parse("f", "")
                .unwrap()
                .select(None, "f")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = Config::parse("f", "contexts:\n  - name: a\n    endpoint: [x]\n").unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
    }

    #[test]
    fn use_context_keeps_the_rest_of_the_file() {
        let next = set_current_context(FILE, "b");
        assert!(
            next.starts_with("# mine\ncurrent-context: b\ncontexts:"),
            "{next}"
        );
        assert_eq!(
            Config::parse("f", &next)
                .unwrap()
                .current_context
                .as_deref(),
            Some("b")
        );
        let added = set_current_context("contexts: []\n", "yes");
        assert_eq!(added, "current-context: \"yes\"\ncontexts: []\n");
    }

    #[test]
    fn context_values_become_defaults_and_flags_still_win() {
        use clap::{CommandFactory, FromArgMatches};
        let c = Config::parse("f", FILE).unwrap();
        let ctx = c.context("b").unwrap();
        let cmd = apply_context(super::super::Cli::command(), ctx);
        let m = cmd
            .clone()
            .try_get_matches_from(["rune", "get", "services"])
            .unwrap();
        let cli = super::super::Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.etcd.prefix, "/p");
        assert_eq!(
            cli.etcd.endpoints,
            vec!["http://127.0.0.1:2379".to_string()]
        );
        assert_eq!(cli.etcd.ca.as_deref(), Some(Path::new("ca.pem")));
        match cli.command {
            super::super::Command::Get(super::super::get::GetCommand::Services {
                namespace,
                ..
            }) => assert_eq!(namespace, "team"),
            other => panic!("{other:?}"),
        }
        let m = cmd
            .try_get_matches_from(["rune", "--etcd-prefix", "/q", "get", "services", "-n", "x"])
            .unwrap();
        let cli = super::super::Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.etcd.prefix, "/q");
        match cli.command {
            super::super::Command::Get(super::super::get::GetCommand::Services {
                namespace,
                ..
            }) => assert_eq!(namespace, "x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_contexts_logs_tls_files_become_rune_logs_defaults() {
        use clap::{CommandFactory, FromArgMatches};
        let file = "contexts:\n  - name: c\n    logs-ca: /t/ca.pem\n    logs-cert: /t/me.crt\n    logs-key: /t/me.key\n";
        let c = Config::parse("f", file).unwrap();
        let cmd = apply_context(super::super::Cli::command(), c.context("c").unwrap());
        let logs_of = |args: &[&str]| {
            let m = cmd.clone().try_get_matches_from(args).unwrap();
            match super::super::Cli::from_arg_matches(&m).unwrap().command {
                super::super::Command::Logs(a) => a,
                other => panic!("{other:?}"),
            }
        };
        let a = logs_of(&["rune", "logs", "api"]);
        assert_eq!(a.logs_tls_ca.as_deref(), Some(Path::new("/t/ca.pem")));
        assert_eq!(a.logs_tls_cert.as_deref(), Some(Path::new("/t/me.crt")));
        assert_eq!(a.logs_tls_key.as_deref(), Some(Path::new("/t/me.key")));
        let a = logs_of(&["rune", "logs", "api", "--logs-tls-ca", "/other.pem"]);
        assert_eq!(a.logs_tls_ca.as_deref(), Some(Path::new("/other.pem")));
        // A context without them changes nothing.
        let plain = Config::parse("f", FILE).unwrap();
        let cmd = apply_context(super::super::Cli::command(), plain.context("b").unwrap());
        let m = cmd.try_get_matches_from(["rune", "logs", "api"]).unwrap();
        match super::super::Cli::from_arg_matches(&m).unwrap().command {
            super::super::Command::Logs(a) => assert_eq!(a.logs_tls_ca, None),
            other => panic!("{other:?}"),
        }
    }
}
