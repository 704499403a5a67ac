//! exec probes: run a command with the instance's environment; exit 0 is healthy.

use std::process::Stdio;

use super::Target;

pub async fn check(command: &[String], target: &Target) -> Result<(), String> {
    let Some((prog, args)) = command.split_first() else {
        return Err("exec probe has no command".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    // Like the instance itself: rune's variables, not the agent's own RUNE_* settings.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RUNE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The check is bounded by a timeout; a probe that overstays is killed.
        .kill_on_drop(true);
    if let Some(dir) = &target.working_dir {
        cmd.current_dir(dir);
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
