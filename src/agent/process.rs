//! Instance processes: the environment and command line built from the record's spec
//! snapshot, spawning in a session of its own, signals to the whole process group, and
//! process identity from /proc (pid + start time, since pids are recycled).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::environment;
use super::identity::Identity;
use super::revisions::Assigned;
use crate::model::Command;

/// The variables rune gives every instance, then the spec's `env` (whose values may
/// use `${PORT}` and friends). rune's own names win: an instance must not be told a
/// PORT other than the one it was given.
pub fn build_env(record: &Assigned, node: &str, ports: &[(String, u16)]) -> Vec<(String, String)> {
    let mut rune: BTreeMap<String, String> = BTreeMap::new();
    if let Some((_, first)) = ports.first() {
        rune.insert("PORT".into(), first.to_string());
    }
    for (name, port) in ports {
        rune.insert(port_var(name), port.to_string());
    }
    rune.insert("RUNE_SERVICE".into(), record.service.clone());
    rune.insert("RUNE_NAMESPACE".into(), record.namespace.clone());
    rune.insert("RUNE_INSTANCE".into(), record.id.clone());
    rune.insert("RUNE_NODE".into(), node.to_string());
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    // Values from configs and secrets are added at start (`agent::files`), verbatim.
    for (k, v) in &record.spec.env {
        if let Some(v) = v.plain() {
            all.insert(k.clone(), expand(v, &rune));
        }
    }
    all.extend(rune);
    all.into_iter().collect()
}

/// Adds a variable that `build_env` could not know (a config's or secret's value,
/// `RUNE_FILES`), taken verbatim. rune's own names still win over a spec's: a
/// `PORT` or `RUNE_*` already set stays.
pub fn add_env(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    let owned = name == "PORT" || name.starts_with("RUNE_");
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(_) if owned && name != "RUNE_FILES" => {}
        Some((_, v)) => *v = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    }
}

/// Adds the env values taken from configs and secrets, then `RUNE_FILES` (the
/// instance's files directory, when it has one): last, so that a spec's `env`
/// naming `RUNE_FILES`, from a config or secret too, never hides the real one.
pub fn add_sources(
    env: &mut Vec<(String, String)>,
    values: &BTreeMap<String, String>,
    files: Option<&str>,
) {
    for (k, v) in values {
        add_env(env, k, v);
    }
    if let Some(dir) = files {
        add_env(env, "RUNE_FILES", dir);
    }
}

/// `RUNE_PORT_<NAME>`: uppercase, '-' → '_'.
pub fn port_var(name: &str) -> String {
    format!("RUNE_PORT_{}", name.to_uppercase().replace('-', "_"))
}

/// Replaces `${VAR}` with its value from `vars`. Unknown names stay as they are, so a
/// shell command still sees (and expands) its own `${HOME}`.
pub fn expand<V: AsRef<str>>(s: &str, vars: &BTreeMap<String, V>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.get(name) {
                    Some(v) => out.push_str(v.as_ref()),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The argv to exec: a shell string runs through `/bin/sh -c` with `args` appended
/// shell-quoted; an argv list gets `args` appended. `${VAR}` is expanded in both.
pub fn build_argv(record: &Assigned, env: &[(String, String)]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let args = record.spec.args.iter().map(|a| expand(a, &vars));
    match &record.spec.command {
        Command::Shell(s) => {
            let mut line = expand(s, &vars);
            for a in args {
                line.push(' ');
                line.push_str(&shell_quote(&a));
            }
            vec!["/bin/sh".into(), "-c".into(), line]
        }
        Command::Argv(v) => v.iter().map(|a| expand(a, &vars)).chain(args).collect(),
    }
}

/// The variables `${VAR}` in the command line may expand: `env` less the values
/// of secrets. A command line is readable by every user of the node
/// (/proc/<pid>/cmdline); a shell command still sees `${VAR}` and expands it
/// from its own environment.
pub fn argv_vars(record: &Assigned, env: &[(String, String)]) -> Vec<(String, String)> {
    use crate::model::{EnvValue, SourceKind};
    let secret = |name: &str| {
        let owned = name == "PORT" || name.starts_with("RUNE_");
        !owned
            && matches!(
                record.spec.env.get(name),
                Some(EnvValue::From { source, .. }) if source.kind == SourceKind::Secret
            )
    };
    env.iter().filter(|(k, _)| !secret(k)).cloned().collect()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Starts the instance in a new session (so it is its own process group leader, gets
/// no SIGHUP from our terminal and does not die with the agent), output appended to
/// `log` (owned by the instance's user). With `cgroup`, the child enters the
/// instance's cgroup before it execs, so nothing it runs is ever outside it; then it
/// becomes `who` (the agent must still be root to write `cgroup.procs`). Its
/// environment is `environment::base` and then `env`: nothing else of the agent's.
pub fn spawn(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
    log: &Path,
    cgroup: Option<super::cgroups::Join>,
    who: &Identity,
    pass_env: &[String],
) -> std::io::Result<tokio::process::Child> {
    let out = super::logs::open(log, who.owner())?;
    let err = out.try_clone()?;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.env_clear()
        .envs(environment::base(std::env::vars_os(), pass_env, who))
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(false);
    // Entered in the child once it is the instance's user (see `enter_in`).
    let cwd = working_dir.map(super::identity::c_path).transpose()?;
    let who = who.clone();
    // SAFETY: setsid, write(2) on descriptors opened before the fork, setgroups,
    // setgid and setuid are async-signal-safe and touch no memory of the parent
    // (the identity was cloned before the fork).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if let Some(join) = &cgroup {
                join.enter()?;
            }
            who.enter_in(cwd.as_deref())
        });
    }
    cmd.spawn()
}

/// Sends `sig` to the process group `pgid` (the instance and all its children).
pub fn signal_group(pgid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), sig);
}

/// Live (non-zombie) members of process group `pgid`, from /proc. Zombies are not
/// counted: they are already dead and only wait for their parent to reap them.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(f) = stat_fields(pid)
            && f.first().is_some_and(|s| s != "Z" && s != "X")
            && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        {
            out.push(pid);
        }
    }
    out
}

/// Whether process group `pgid` has no live member. Signal 0 answers for the common
/// case at once (ESRCH: nobody left); only a group that still answers is checked
/// against /proc, because members that are zombies (dead, not yet reaped by their
/// parent) answer signals too but are gone for our purposes. The /proc scan reads
/// every process's stat, so it is kept off the hot path: with hundreds of
/// instances stopping at once, scanning on every poll made stopping quadratic.
fn group_gone(pgid: u32, scan: bool) -> bool {
    match killpg(Pid::from_raw(pgid as i32), None) {
        Err(nix::errno::Errno::ESRCH) => true,
        _ if scan => group_members(pgid).is_empty(),
        _ => false,
    }
}

/// SIGTERM to the group, up to `grace` for it to empty, then SIGKILL to the group,
/// then waits (briefly) until nothing of it is left.
pub async fn stop_group(pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    // A stopped process cannot act on SIGTERM.
    signal_group(pgid, Signal::SIGCONT);
    let started = tokio::time::Instant::now();
    // The grace period is bounded (limits::MAX_STOP_GRACE), but a stored record
    // is not re-validated here: never panic on it.
    let deadline = started
        .checked_add(grace)
        .unwrap_or(started + crate::model::limits::MAX_STOP_GRACE);
    let mut pause = Duration::from_millis(5);
    let mut polls = 0u32;
    while tokio::time::Instant::now() < deadline {
        // Zombie-only groups are caught by the /proc scan, about once a second.
        polls += 1;
        let scan = started.elapsed() >= Duration::from_millis(500) && polls.is_multiple_of(10);
        if group_gone(pgid, scan) {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    kill_group(pgid).await;
}

/// SIGKILL to the group until it is empty (bounded).
pub async fn kill_group(pgid: u32) {
    for i in 0..100 {
        if group_gone(pgid, i % 10 == 9) {
            return;
        }
        signal_group(pgid, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fields of /proc/<pid>/stat after the command name: [0] = state (field 3),
/// [2] = pgrp (field 5), [19] = starttime (field 22).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<Vec<String>> {
    // The command name may contain spaces and ')': the last ')' ends it.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The process's start time (clock ticks since boot), while it is alive.
pub fn start_time(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    if matches!(f.first().map(String::as_str), Some("Z" | "X")) {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// The environment `pid` was started with (/proc/<pid>/environ), for the exec
/// probes of an adopted process; None if it cannot be read. Entries that are not
/// UTF-8 or have no '=' are left out.
pub fn environ(pid: u32) -> Option<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(parse_environ(&raw))
}

fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether `pid` is still the very process that was started at `start`.
pub fn same_process(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(command: serde_json::Value, args: &[&str]) -> Assigned {
        serde_json::from_value(serde_json::json!({
            "record": {
                "id": "i1", "namespace": "default", "service": "api", "node": "n1",
                "desired": "Running", "revision": 1, "createdAt": "2024-01-01T00:00:00Z",
            },
            "spec": {"name": "api", "command": command, "args": args,
                     "env": {"URL": "http://127.0.0.1:${PORT}/", "PORT": "1"},
                     "ports": [{"name": "http"}, {"name": "admin-api"}]}
        }))
        .unwrap()
    }

    #[test]
    fn expansion_keeps_unknown_names() {
        let vars: BTreeMap<String, String> = [("PORT".into(), "80".into())].into();
        assert_eq!(
            expand("a ${PORT} ${HOME} $PORT ${", &vars),
            "a 80 ${HOME} $PORT ${"
        );
        assert_eq!(expand("${PORT}${PORT}", &vars), "8080");
    }

    #[test]
    fn env_has_rune_variables_and_expanded_spec_env() {
        let r = record(serde_json::json!(["x"]), &[]);
        let env: BTreeMap<_, _> = build_env(
            &r,
            "n1",
            &[("http".into(), 5000), ("admin-api".into(), 5001)],
        )
        .into_iter()
        .collect();
        assert_eq!(env["PORT"], "5000");
        assert_eq!(env["RUNE_PORT_HTTP"], "5000");
        assert_eq!(env["RUNE_PORT_ADMIN_API"], "5001");
        assert_eq!(env["RUNE_SERVICE"], "api");
        assert_eq!(env["RUNE_NAMESPACE"], "default");
        assert_eq!(env["RUNE_INSTANCE"], "i1");
        assert_eq!(env["RUNE_NODE"], "n1");
        assert_eq!(env["URL"], "http://127.0.0.1:5000/");
    }

    #[test]
    fn argv_for_shell_and_list_commands() {
        let env = vec![("PORT".to_string(), "5000".to_string())];
        let r = record(
            serde_json::json!(["srv", "--port", "${PORT}"]),
            &["--x=${PORT}"],
        );
        assert_eq!(build_argv(&r, &env), ["srv", "--port", "5000", "--x=5000"]);
        let r = record(serde_json::json!("exec srv ${PORT}"), &["it's"]);
        assert_eq!(
            build_argv(&r, &env),
            ["/bin/sh", "-c", r"exec srv 5000 'it'\''s'"]
        );
    }

    #[test]
    fn stat_parsing_handles_odd_names() {
        let stat = "123 (a) b) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 0 0";
        let f = parse_stat(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[2], "123");
        assert_eq!(f[19], "4242");
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert!(same_process(me, start_time(me).unwrap()));
    }
}

#[cfg(test)]
mod environ_tests {
    use super::*;

    /// A secret's value never lands in the command line (world-readable in /proc);
    /// the shell expands `${VAR}` from its environment instead. Configs' do.
    #[test]
    fn secret_values_stay_out_of_the_command_line() {
        let r: Assigned = serde_json::from_value(serde_json::json!({
            "record": {
                "id": "i1", "namespace": "default", "service": "api", "node": "n1",
                "desired": "Running", "revision": 1, "createdAt": "2024-01-01T00:00:00Z",
            },
            "spec": {"name": "api", "command": "run ${DB_PASSWORD} ${MODE} ${RUNE_NODE}",
                     "env": {"DB_PASSWORD": {"secret": "db", "key": "password"},
                             "MODE": {"config": "app", "key": "mode"}}}
        }))
        .unwrap();
        let mut env = build_env(&r, "n1", &[]);
        let values = BTreeMap::from([
            ("DB_PASSWORD".to_string(), "s3cret".to_string()),
            ("MODE".to_string(), "fast".to_string()),
        ]);
        add_sources(&mut env, &values, None);
        let argv = build_argv(&r, &argv_vars(&r, &env));
        assert_eq!(argv[2], "run ${DB_PASSWORD} fast n1");
        assert!(env.iter().any(|(k, v)| k == "DB_PASSWORD" && v == "s3cret"));
    }

    /// rune's names win over values from configs and secrets, `RUNE_FILES` too.
    #[test]
    fn source_values_never_hide_rune_files_or_port() {
        let mut env = vec![
            ("PORT".to_string(), "5000".to_string()),
            ("RUNE_FILES".to_string(), "/plain/from/spec".to_string()),
        ];
        let values = BTreeMap::from([
            ("RUNE_FILES".to_string(), "/from/a/config".to_string()),
            ("PORT".to_string(), "1".to_string()),
            ("DB_PASSWORD".to_string(), "s3cret".to_string()),
        ]);
        add_sources(&mut env, &values, Some("/run/files/x"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RUNE_FILES"), Some("/run/files/x"));
        assert_eq!(get("PORT"), Some("5000"));
        assert_eq!(get("DB_PASSWORD"), Some("s3cret"));
    }

    /// `workingDir` is entered as the instance's user: a directory only the agent
    /// may enter is refused, not handed over as the process's cwd.
    #[tokio::test]
    async fn the_working_dir_is_entered_as_the_instance_user() {
        if !nix::unistd::geteuid().is_root() {
            return; // switching users needs root
        }
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("rune-cwd-{}", std::process::id()));
        let private = root.join("private");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = crate::model::Account::Name("nobody".into());
        let who = super::super::identity::of_spec(Some(&nobody), None).unwrap();
        let argv = ["true".to_string()];
        let log = root.join("log");
        let dir = private.to_str().unwrap();
        let spawned = spawn(&argv, &[], Some(dir), &log, None, &who, &[]);
        let refused = match spawned {
            Ok(mut child) => {
                let _ = child.wait().await;
                None
            }
            Err(e) => Some(e.kind()),
        };
        // The agent's own user still may.
        let me = super::super::identity::of_spec(None, None).unwrap();
        let mut child = spawn(&argv, &[], Some(dir), &log, None, &me, &[]).unwrap();
        assert!(child.wait().await.unwrap().success());
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(refused, Some(std::io::ErrorKind::PermissionDenied));
    }

    #[test]
    fn environ_entries_split_on_nul_and_first_equals() {
        let raw = b"A=1\0DB_PASSWORD=p=w\0broken\0=x\0\xff=y\0EMPTY=\0";
        assert_eq!(
            parse_environ(raw),
            [
                ("A".to_string(), "1".to_string()),
                ("DB_PASSWORD".into(), "p=w".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    /// An adopted process's exec probes run with what it was started with, values
    /// of secrets and `RUNE_FILES` included: read back from /proc.
    #[tokio::test]
    async fn an_exec_probe_with_a_process_environ_sees_its_secret_values() {
        let dir = std::env::temp_dir().join(format!("rune-environ-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let who = super::super::identity::of_spec(None, None).unwrap();
        let env = vec![
            ("DB_PASSWORD".to_string(), "s3cret".to_string()),
            ("RUNE_FILES".to_string(), "/files/x".to_string()),
        ];
        let argv = ["sleep".to_string(), "30".to_string()];
        let mut child = spawn(&argv, &env, None, &dir.join("log"), None, &who, &[]).unwrap();
        let pid = child.id().unwrap();
        let seen = environ(pid).unwrap();
        let _ = child.start_kill();
        let _ = child.wait().await;
        let _ = std::fs::remove_dir_all(&dir);
        let target = crate::probe::Target {
            env: seen,
            ..Default::default()
        };
        let probe: crate::model::spec::Probe = serde_json::from_value(serde_json::json!({
            "type": "exec",
            "command": ["sh", "-c", "test \"$DB_PASSWORD\" = s3cret && test \"$RUNE_FILES\" = /files/x"],
        }))
        .unwrap();
        crate::probe::check(&probe, &target).await.unwrap();
    }
}
