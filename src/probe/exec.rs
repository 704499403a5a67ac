//! exec probes: run a command with the instance's environment, as the instance's
//! user (a spec's probe must not run as root when its instance does not); exit 0
//! is healthy.

use std::process::Stdio;

use super::{RunAs, Target};

pub async fn check(command: &[String], target: &Target) -> Result<(), String> {
    let Some((prog, args)) = command.split_first() else {
        return Err("exec probe has no command".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    // Like the instance itself: its environment, none of the agent's own.
    cmd.env_clear()
        .envs(target.base_env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The check is bounded by a timeout; a probe that overstays is killed.
        .kill_on_drop(true);
    match &target.user {
        RunAs::Agent => {
            if let Some(dir) = &target.working_dir {
                cmd.current_dir(dir);
            }
        }
        RunAs::Unresolved(why) => return Err(format!("exec {prog}: {why}")),
        RunAs::Instance(who) => {
            let who = who.clone();
            // Entered as the instance's user, never as the agent (see `enter_in`).
            let cwd = (target.working_dir.as_deref())
                .map(crate::agent::identity::c_path)
                .transpose()
                .map_err(|e| format!("exec {prog}: {e}"))?;
            // SAFETY: setgroups, setgid, setuid and chdir are async-signal-safe;
            // the identity and the path were made before the fork.
            unsafe {
                cmd.pre_exec(move || who.enter_in(cwd.as_deref()));
            }
        }
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("exec {prog}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exec {}: {status}", command.join(" ")))
    }
}
