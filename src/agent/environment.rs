//! What an instance's environment starts from before its spec's `env` and rune's
//! own variables: a short allowlist of the agent's variables and the login
//! variables of the user it runs as. Nothing else of the agent's environment
//! reaches an instance: the agent may have been started with credentials
//! (`AWS_*`, `RUNE_ETCD_PASSWORD`, proxy settings with passwords) that no spec
//! author should read.
//!
//! The allowlist is what a program needs to find programs and to format text as
//! the host does, as systemd gives a service: `PATH` (a default when the agent
//! has none, systemd's), `LANG`, `LANGUAGE`, `LC_*` and `TZ`. `HOME`, `USER`,
//! `LOGNAME` and `SHELL` are those of the instance's user, as a login sets them.
//! An operator adds names with `--pass-env` (proxy settings, a CA bundle's path:
//! the node's, not a spec author's, to give). A spec's `env` may set any of these; rune's variables (`PORT`, `RUNE_*`) win
//! over everything.

use std::ffi::OsString;

use super::identity::Identity;

/// The agent's variables instances inherit, by exact name.
pub const INHERITED: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ"];
/// ... and by prefix.
pub const INHERITED_PREFIXES: &[&str] = &["LC_"];
/// `PATH` when the agent has none (systemd's default for services).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether the agent's variable `name` is passed on to instances: the allowlist,
/// and the names the operator adds with `--pass-env` (`pass`).
pub fn inherited_name(name: &str, pass: &[String]) -> bool {
    INHERITED.contains(&name)
        || INHERITED_PREFIXES.iter().any(|p| name.starts_with(p))
        || pass.iter().any(|p| p == name)
}

/// The base environment of an instance running as `who`, from the agent's
/// variables `agent` (`std::env::vars_os()`) and the operator's `--pass-env`.
pub fn base(
    agent: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &[String],
    who: &Identity,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = agent
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(|k| inherited_name(k, pass)))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out.push(("HOME".into(), who.home.clone().into_os_string()));
    if let Some(name) = &who.name {
        out.push(("USER".into(), name.into()));
        out.push(("LOGNAME".into(), name.into()));
    }
    if let Some(shell) = &who.shell {
        out.push(("SHELL".into(), shell.clone().into_os_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: Option<&str>) -> Identity {
        Identity {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            name: name.map(String::from),
            home: "/nonexistent".into(),
            shell: name.map(|_| "/usr/sbin/nologin".into()),
            switch: true,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn only_the_allowlist_and_the_users_login_variables_pass() {
        let agent = vars(&[
            ("PATH", "/opt/bin:/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("TZ", "Europe/Berlin"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("RUNE_ETCD_PASSWORD", "y"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("PATHOLOGY", "z"),
            ("https_proxy", "http://proxy:3128"),
        ]);
        let env = base(agent, &["https_proxy".into()], &who(Some("nobody")));
        assert_eq!(
            env,
            vars(&[
                ("PATH", "/opt/bin:/usr/bin"),
                ("LANG", "C.UTF-8"),
                ("LC_TIME", "en_GB.UTF-8"),
                ("TZ", "Europe/Berlin"),
                ("https_proxy", "http://proxy:3128"),
                ("HOME", "/nonexistent"),
                ("USER", "nobody"),
                ("LOGNAME", "nobody"),
                ("SHELL", "/usr/sbin/nologin"),
            ])
        );
    }

    #[test]
    fn a_default_path_and_no_names_for_an_unknown_id() {
        let env = base(vars(&[("SECRET", "x")]), &[], &who(None));
        assert_eq!(
            env,
            vars(&[("PATH", DEFAULT_PATH), ("HOME", "/nonexistent")])
        );
    }
}
