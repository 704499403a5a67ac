//! Every bound on a number a user (or a GitOps writer) gives rune, in one place, so
//! that the docs, the CLI's errors and the controller's `SpecInvalid` say the same.
//! Values that parse but are absurd (`stopGracePeriod: 300000000000y`, a step of
//! 4294967297) are rejected where they are read, naming the bound; nothing past a
//! bound ever reaches arithmetic on clocks.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::duration;

/// Instances of one service.
pub const MAX_SCALE: u32 = 10_000;
/// Hollow (simulated) nodes of one `rune-agent --hollow N`, a testing tool.
pub const MAX_HOLLOW_NODES: u32 = 10_000;
/// `scaling.interval` and `rune scale --interval`: the hold between gradual steps.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// `rune scale/restart/stop --timeout`: how long an operation may take.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest timeout an operation may have: below it, even a controller that
/// picks the operation up at once could not report before the time runs out.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// `stopGracePeriod`: SIGTERM to SIGKILL.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(3600);
/// `shutdownDelay`: out of the endpoints to SIGTERM.
pub const MAX_SHUTDOWN_DELAY: Duration = Duration::from_secs(600);
/// Probe `initialDelaySeconds`, `intervalSeconds`, `timeoutSeconds`.
pub const MAX_PROBE_SECONDS: u32 = 3600;
/// Probe `failureThreshold`, `successThreshold`.
pub const MAX_PROBE_THRESHOLD: u32 = 1000;
/// One stored spec (and one file given to `rune cast`): far below etcd's 1.5 MiB
/// request limit, so a spec always fits with an operation record in one write.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// One file given to `rune cast` (it may hold many services).
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// `resources.memory`: 1 MiB (less cannot start a process) to 64 TiB.
pub const MIN_MEMORY: u64 = 1 << 20;
pub const MAX_MEMORY: u64 = 64 << 40;
/// `resources.cpu` in millicores: 10m (CFS's 1 ms quota in a 100 ms period) to
/// 4096 cores.
pub const MIN_CPU_MILLIS: u32 = 10;
pub const MAX_CPU_MILLIS: u32 = 4096 * 1000;
/// `resources.pids`: 1 to the kernel's largest `pid_max`.
pub const MAX_PIDS: u32 = 4_194_304;

/// `update.minReadySeconds` and `rune restart --min-ready`: how long a new
/// instance must stay ready before a rolling update counts it available.
pub const MAX_MIN_READY: Duration = Duration::from_secs(3600);
/// A change-cause (`rune cast --reason`, `rune rollout undo --reason`), in characters.
pub const MAX_CHANGE_CAUSE: usize = 1024;

/// `rune-agent --capacity`: most instances one node accepts.
pub const MAX_NODE_CAPACITY: u32 = 100_000;
/// Labels of one node (`rune-agent --label`), and entries of one `nodeSelector`.
pub const MAX_LABELS: usize = 64;
/// One config or secret (its keys and values): as Kubernetes bounds a ConfigMap or
/// Secret, and so that a secret, sealed and base64-encoded (4/3 the size), still
/// fits etcd's default 1.5 MiB request.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

/// Sizes as people read them: `256 KiB`, `4 MiB`.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{} KiB", b.div_ceil(1024)),
        b => format!("{b} bytes"),
    }
}

/// `d`, unless it is longer than `max`.
pub fn at_most(what: &str, d: Duration, max: Duration) -> Result<Duration, String> {
    if d > max {
        return Err(format!(
            "{what} {} is over the limit of {}",
            duration::format(d),
            duration::format(max)
        ));
    }
    Ok(d)
}

/// `n`, unless it is outside `min..=max`.
pub fn within(what: &str, n: u64, min: u64, max: u64) -> Result<u32, String> {
    if n < min || n > max {
        return Err(format!("{what} must be from {min} to {max}, got {n}"));
    }
    Ok(n as u32)
}

fn bounded<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    max: Duration,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let parsed = duration::parse(&text).map_err(de::Error::custom)?;
    at_most(what, parsed, max).map_err(de::Error::custom)
}

/// `stopGracePeriod`, bounded.
pub fn stop_grace<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded(d, "stopGracePeriod", MAX_STOP_GRACE)
}

/// `shutdownDelay`, bounded.
pub fn shutdown_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded(d, "shutdownDelay", MAX_SHUTDOWN_DELAY)
}

/// A gradual interval, bounded.
pub fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded(d, "interval", MAX_INTERVAL)
}

/// An operation's timeout, bounded.
pub fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded(d, "timeout", MAX_TIMEOUT)
}

/// A step of a gradual change: 1 to [`MAX_SCALE`].
pub fn step<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64::deserialize(d)?;
    within("step", n, 1, MAX_SCALE as u64).map_err(de::Error::custom)
}

/// A replica count: 0 to [`MAX_SCALE`].
pub fn replicas<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64::deserialize(d)?;
    within("scale", n, 0, MAX_SCALE as u64).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_themselves() {
        let e = at_most("stopGracePeriod", Duration::from_secs(7200), MAX_STOP_GRACE).unwrap_err();
        assert_eq!(e, "stopGracePeriod 2h is over the limit of 1h");
        assert_eq!(
            within("step", 4_294_967_297, 1, 10_000).unwrap_err(),
            "step must be from 1 to 10000, got 4294967297"
        );
        assert_eq!(within("step", 5, 1, 10).unwrap(), 5);
    }
}
