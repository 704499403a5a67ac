//! Who an instance runs as: the spec's `user:` and `group:` resolved on this node
//! to a uid, a gid, supplementary groups and a home, and the rules for when the
//! agent may switch to them.
//!
//! The rules, as systemd's `User=` and the kubelet's `runAsUser` have them:
//! - no `user:` and no `group:`: the agent's own user (nothing changes);
//! - a name must exist on this node (else the instance fails, naming it); a
//!   numeric id is taken as it is (a container image's user need not be in
//!   `/etc/passwd`), but then the group must be given, since there is no primary
//!   group to take;
//! - the groups are the user's primary group (or `group:`) plus its supplementary
//!   groups from `/etc/group`, as a login (`initgroups`) has them;
//! - only an agent running as root switches: one that is not refuses any other
//!   user or group, with an error that says so, rather than starting the instance
//!   as itself.
//!
//! The decision is pure over an [`Accounts`] lookup (the system's is [`System`]);
//! the switch itself happens in the child before exec (`process::spawn`). The
//! same [`Identity`] owns what the agent creates for the instance (its log, and
//! its private files) through [`Identity::owner`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Account;

/// A user as the node's account database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// The node's users and groups (`/etc/passwd`, `/etc/group`, or whatever NSS
/// serves).
pub trait Accounts {
    fn user_by_name(&self, name: &str) -> Result<Option<Passwd>, String>;
    fn user_by_id(&self, uid: u32) -> Result<Option<Passwd>, String>;
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String>;
    /// The supplementary groups of `user`, with `gid` among them.
    fn groups_of(&self, user: &str, gid: u32) -> Result<Vec<u32>, String>;
}

/// The credentials an instance runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set before the switch.
    pub groups: Vec<u32>,
    /// The user's name, when the account database knows it (`USER`, `LOGNAME`).
    pub name: Option<String>,
    /// `HOME`: the user's home, or `/` for an id the database does not know.
    pub home: PathBuf,
    pub shell: Option<PathBuf>,
    /// Whether the child must change credentials (another uid or gid than the
    /// agent's); false for the default, the agent's own user.
    pub switch: bool,
}

/// The agent's own effective uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub uid: u32,
    pub gid: u32,
}

impl Agent {
    pub fn current() -> Agent {
        Agent {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Why an instance cannot run as its spec asks: the instance's start failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("user {0} does not exist on this node")]
    UnknownUser(Account),
    #[error("group {0} does not exist on this node")]
    UnknownGroup(Account),
    #[error(
        "user {0} has no entry in this node's account database, so it has no primary \
         group: set `group:` too"
    )]
    NoPrimaryGroup(u32),
    #[error(
        "the agent runs as uid {agent_uid} (gid {agent_gid}), not as root, so it cannot \
         start instances as {wanted}: remove `user:`/`group:` from the spec or run the \
         agent as root (see deploy/systemd)"
    )]
    NotRoot {
        agent_uid: u32,
        agent_gid: u32,
        wanted: String,
    },
    #[error("looking up {what}: {error}")]
    Lookup { what: String, error: String },
}

impl From<IdentityError> for std::io::Error {
    fn from(e: IdentityError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}

/// Resolves the spec's `user:`/`group:` on this node for an agent running as
/// `agent`, by the rules at the top of this file.
pub fn resolve(
    user: Option<&Account>,
    group: Option<&Account>,
    agent: Agent,
    accounts: &dyn Accounts,
) -> Result<Identity, IdentityError> {
    let lookup = |what: String| move |error: String| IdentityError::Lookup { what, error };
    let entry = match user {
        Some(Account::Name(name)) => Some(
            accounts
                .user_by_name(name)
                .map_err(lookup(format!("user {name:?}")))?
                .ok_or_else(|| IdentityError::UnknownUser(Account::Name(name.clone())))?,
        ),
        Some(Account::Id(uid)) => accounts
            .user_by_id(*uid)
            .map_err(lookup(format!("user {uid}")))?,
        None => accounts
            .user_by_id(agent.uid)
            .map_err(lookup(format!("user {}", agent.uid)))?,
    };
    let uid = match user {
        Some(Account::Id(uid)) => *uid,
        Some(Account::Name(_)) => entry.as_ref().map_or(agent.uid, |e| e.uid),
        None => agent.uid,
    };
    let gid = match group {
        Some(Account::Id(gid)) => *gid,
        Some(Account::Name(name)) => accounts
            .group_by_name(name)
            .map_err(lookup(format!("group {name:?}")))?
            .ok_or_else(|| IdentityError::UnknownGroup(Account::Name(name.clone())))?,
        None if user.is_none() => agent.gid,
        None => entry
            .as_ref()
            .map(|e| e.gid)
            .ok_or(IdentityError::NoPrimaryGroup(uid))?,
    };
    let switch = uid != agent.uid || gid != agent.gid;
    if switch && !agent.is_root() {
        let mut wanted = match user {
            Some(u) => format!("user {u}"),
            None => format!("uid {uid}"),
        };
        if let Some(g) = group {
            wanted.push_str(&format!(" group {g}"));
        }
        return Err(IdentityError::NotRoot {
            agent_uid: agent.uid,
            agent_gid: agent.gid,
            wanted,
        });
    }
    // A login's groups when the user is known and switched to; a bare id gets
    // its one group, and the agent's own user keeps what it has.
    let groups = match (&entry, user.is_some() && switch) {
        (Some(e), true) => {
            let mut groups = accounts
                .groups_of(&e.name, gid)
                .map_err(lookup(format!("the groups of user {:?}", e.name)))?;
            if !groups.contains(&gid) {
                groups.insert(0, gid);
            }
            groups
        }
        _ => vec![gid],
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        name: entry.as_ref().map(|e| e.name.clone()),
        home: entry
            .as_ref()
            .map_or_else(|| PathBuf::from("/"), |e| e.home.clone()),
        shell: entry.as_ref().map(|e| e.shell.clone()),
        switch,
    })
}

impl Identity {
    /// The uid and gid to give what the agent creates for the instance (its log
    /// file, its private files), or `None` when they stay the agent's.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.switch.then_some((self.uid, self.gid))
    }

    /// Gives `path` to the instance's user when the instance runs as another one.
    pub fn chown(&self, path: &Path) -> std::io::Result<()> {
        match self.owner() {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }

    /// Switches the calling process to this identity: groups, then gid, then uid
    /// (after setuid nothing else could be changed). For the child between fork
    /// and exec: only async-signal-safe system calls, no allocation.
    pub fn enter(&self) -> std::io::Result<()> {
        if !self.switch {
            return Ok(());
        }
        use nix::unistd::{Gid, Uid, setgid, setuid};
        let groups: &[nix::libc::gid_t] = &self.groups;
        // SAFETY: a plain system call on a slice that outlives it; no allocation.
        let set = unsafe { nix::libc::setgroups(groups.len(), groups.as_ptr()) };
        nix::errno::Errno::result(set).map_err(std::io::Error::from)?;
        setgid(Gid::from_raw(self.gid)).map_err(std::io::Error::from)?;
        setuid(Uid::from_raw(self.uid)).map_err(std::io::Error::from)?;
        Ok(())
    }
}

impl Identity {
    /// [`Identity::enter`], then into `dir`: as this identity, so a directory its
    /// user may not enter stays closed to it (std's `current_dir` changes it
    /// before `pre_exec` closures run: as the agent). For the child between fork
    /// and exec, like `enter`; `dir` made before the fork ([`c_path`]).
    pub fn enter_in(&self, dir: Option<&std::ffi::CStr>) -> std::io::Result<()> {
        self.enter()?;
        if let Some(dir) = dir {
            // SAFETY: chdir is async-signal-safe; the string outlives the call.
            let r = unsafe { nix::libc::chdir(dir.as_ptr()) };
            nix::errno::Errno::result(r).map_err(std::io::Error::from)?;
        }
        Ok(())
    }
}

/// A working directory for [`Identity::enter_in`].
pub fn c_path(dir: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(dir).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("workingDir {dir:?} contains a NUL byte"),
        )
    })
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} (uid {}, gid {})", self.uid, self.gid),
            None => write!(f, "uid {}, gid {}", self.uid, self.gid),
        }
    }
}

/// The node's account database through libc (NSS).
pub struct System;

fn passwd(u: nix::unistd::User) -> Passwd {
    Passwd {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
        shell: u.shell,
    }
}

impl Accounts for System {
    fn user_by_name(&self, name: &str) -> Result<Option<Passwd>, String> {
        nix::unistd::User::from_name(name)
            .map(|u| u.map(passwd))
            .map_err(|e| e.to_string())
    }
    fn user_by_id(&self, uid: u32) -> Result<Option<Passwd>, String> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map(|u| u.map(passwd))
            .map_err(|e| e.to_string())
    }
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
        nix::unistd::Group::from_name(name)
            .map(|g| g.map(|g| g.gid.as_raw()))
            .map_err(|e| e.to_string())
    }
    fn groups_of(&self, user: &str, gid: u32) -> Result<Vec<u32>, String> {
        let name = std::ffi::CString::new(user).map_err(|e| e.to_string())?;
        nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid))
            .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
            .map_err(|e| e.to_string())
    }
}

/// [`resolve`] for this agent on this node.
pub fn of_spec(user: Option<&Account>, group: Option<&Account>) -> Result<Identity, IdentityError> {
    resolve(user, group, Agent::current(), &System)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;

    fn entry(name: &str, uid: u32, gid: u32) -> Passwd {
        Passwd {
            name: name.into(),
            uid,
            gid,
            home: format!("/home/{name}").into(),
            shell: "/bin/sh".into(),
        }
    }

    impl Accounts for Table {
        fn user_by_name(&self, name: &str) -> Result<Option<Passwd>, String> {
            Ok(match name {
                "root" => Some(entry("root", 0, 0)),
                "app" => Some(entry("app", 1000, 1000)),
                "svc" => Some(entry("svc", 2000, 2000)),
                _ => None,
            })
        }
        fn user_by_id(&self, uid: u32) -> Result<Option<Passwd>, String> {
            Ok(match uid {
                0 => Some(entry("root", 0, 0)),
                1000 => Some(entry("app", 1000, 1000)),
                2000 => Some(entry("svc", 2000, 2000)),
                _ => None,
            })
        }
        fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
            Ok(match name {
                "app" => Some(1000),
                "logs" => Some(4),
                _ => None,
            })
        }
        fn groups_of(&self, user: &str, gid: u32) -> Result<Vec<u32>, String> {
            Ok(match user {
                "app" => vec![gid, 10],
                _ => vec![gid],
            })
        }
    }

    const ROOT: Agent = Agent { uid: 0, gid: 0 };
    const APP: Agent = Agent {
        uid: 1000,
        gid: 1000,
    };

    fn name(s: &str) -> Account {
        Account::Name(s.into())
    }

    #[test]
    fn the_default_is_the_agents_own_user_unchanged() {
        let me = resolve(None, None, APP, &Table).unwrap();
        assert_eq!((me.uid, me.gid, me.switch), (1000, 1000, false));
        assert_eq!(me.name.as_deref(), Some("app"));
        assert_eq!(me.home, Path::new("/home/app"));
        assert_eq!(me.owner(), None);
        // Naming oneself is no switch either, for a non-root agent too.
        let same = resolve(Some(&name("app")), None, APP, &Table).unwrap();
        assert!(!same.switch);
    }

    #[test]
    fn a_root_agent_switches_with_the_login_groups() {
        let app = resolve(Some(&name("app")), None, ROOT, &Table).unwrap();
        assert_eq!((app.uid, app.gid, app.switch), (1000, 1000, true));
        assert_eq!(app.groups, [1000, 10]);
        assert_eq!(app.owner(), Some((1000, 1000)));
        let g = resolve(Some(&name("app")), Some(&name("logs")), ROOT, &Table).unwrap();
        assert_eq!((g.uid, g.gid), (1000, 4));
        assert_eq!(g.groups, [4, 10]);
        // A bare id: taken as it is, with its group, HOME at /.
        let id = resolve(
            Some(&Account::Id(4242)),
            Some(&Account::Id(4242)),
            ROOT,
            &Table,
        )
        .unwrap();
        assert_eq!((id.uid, id.gid, id.switch), (4242, 4242, true));
        assert_eq!(
            (id.groups, id.name, id.home),
            (vec![4242], None, "/".into())
        );
        // A group only: the agent's user with that group.
        let g = resolve(None, Some(&name("logs")), ROOT, &Table).unwrap();
        assert_eq!((g.uid, g.gid, g.groups, g.switch), (0, 4, vec![4], true));
    }

    #[test]
    fn unknown_names_and_ids_without_a_group_are_named() {
        let e = resolve(Some(&name("ghost")), None, ROOT, &Table).unwrap_err();
        assert_eq!(e.to_string(), "user \"ghost\" does not exist on this node");
        let e = resolve(Some(&name("app")), Some(&name("nogroup")), ROOT, &Table).unwrap_err();
        assert_eq!(
            e.to_string(),
            "group \"nogroup\" does not exist on this node"
        );
        let e = resolve(Some(&Account::Id(4242)), None, ROOT, &Table).unwrap_err();
        assert!(e.to_string().contains("set `group:` too"), "{e}");
    }

    #[test]
    fn an_agent_that_is_not_root_refuses_another_user_or_group() {
        let e = resolve(Some(&name("svc")), None, APP, &Table).unwrap_err();
        assert!(
            e.to_string().starts_with("the agent runs as uid 1000 (gid 1000), not as root, so it cannot start instances as user \"svc\""),
            "{e}"
        );
        let e = resolve(None, Some(&name("logs")), APP, &Table).unwrap_err();
        assert!(e.to_string().contains("as uid 1000 group \"logs\""), "{e}");
        let e = resolve(Some(&Account::Id(0)), Some(&Account::Id(0)), APP, &Table).unwrap_err();
        assert!(matches!(e, IdentityError::NotRoot { .. }), "{e}");
    }
}
