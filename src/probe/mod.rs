//! Readiness and liveness probes: one check ([`check`]) and the loop that repeats it
//! on a schedule ([`spawn_loop`]). The agent's supervisor turns the results into
//! `ready`, `readiness_failures` and liveness restarts.

mod exec;
mod http;
mod tcp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::model::{PortRef, Probe, ProbeKind};

/// Which of an instance's probes a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Readiness,
    Liveness,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::Readiness => "readiness",
            Which::Liveness => "liveness",
        })
    }
}

/// What a probe is aimed at: always 127.0.0.1 and the instance's own ports.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The instance's first port (`PORT`).
    pub first_port: Option<u16>,
    pub ports: BTreeMap<String, u16>,
    /// The instance's environment, for exec probes.
    pub env: Vec<(String, String)>,
    /// What exec probes' environment starts from, as the instance's does
    /// (`agent::environment::base`): nothing else of the agent's.
    pub base_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Who exec probes run as: the instance's user, never more than it.
    pub user: RunAs,
    pub working_dir: Option<String>,
}

/// Who an exec probe runs as.
#[derive(Debug, Clone, Default)]
pub enum RunAs {
    /// The agent's own user: the instance runs as it too.
    #[default]
    Agent,
    /// The instance's user (`user:`/`group:`).
    Instance(crate::agent::identity::Identity),
    /// The instance's user cannot be resolved now (gone from the node since it
    /// started): exec probes fail, saying why, rather than run as the agent.
    Unresolved(String),
}

impl Target {
    /// PortRef name → that instance's port; number → that number; none → first port.
    pub fn port_for(&self, r: Option<&PortRef>) -> Option<u16> {
        match r {
            Some(PortRef::Name(n)) => self.ports.get(n).copied(),
            Some(PortRef::Number(n)) => Some(*n),
            None => self.first_port,
        }
    }
}

/// Observes probe latency and failures (the agent's metrics implement it).
pub trait Observer: Send + Sync {
    fn observe(&self, kind: ProbeKind, took: Duration, ok: bool);
}

/// Runs one probe once, bounded by its `timeoutSeconds`.
pub async fn check(probe: &Probe, target: &Target) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.max(1) as u64);
    let port = || {
        target
            .port_for(probe.port.as_ref())
            .ok_or_else(|| format!("{} probe: the instance has no such port", probe.kind))
    };
    let fut = async {
        match probe.kind {
            ProbeKind::Http => http::check(port()?, probe.http_path()).await,
            ProbeKind::Tcp => tcp::check(port()?).await,
            ProbeKind::Exec => exec::check(probe.command.as_deref().unwrap_or(&[]), target).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{} probe timed out after {timeout:?}", probe.kind)),
    }
}

/// The first delay after a fresh instance's first probe; it doubles until the
/// probe's interval. Time-to-ready is then not bounded by `intervalSeconds`.
pub const FAST_START: Duration = Duration::from_millis(50);

/// The delay before the next probe: short and growing until the first success,
/// then the probe's interval.
pub fn next_delay(current_fast: Duration, interval: Duration, succeeded_once: bool) -> Duration {
    if succeeded_once {
        interval
    } else {
        current_fast.min(interval)
    }
}

/// Probes `target` on the probe's schedule (readiness: fast and growing until the
/// first success, then every interval; liveness: every interval) and sends every result to `tx`; ends when
/// the receiver is dropped (or the returned handle is aborted).
pub fn spawn_loop(
    which: Which,
    probe: Probe,
    target: Target,
    tx: mpsc::Sender<(Which, Result<(), String>)>,
    observer: Arc<dyn Observer>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds as u64)).await;
        let interval = Duration::from_secs(probe.interval_seconds.max(1) as u64);
        let mut fast = FAST_START;
        let mut succeeded_once = false;
        // Failures count at the probe's own cadence (once per interval), as in
        // Kubernetes: the quick probes before the first success shorten the time to
        // ready but must not exhaust failureThreshold in a few hundred milliseconds.
        let mut last_counted: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let result = check(&probe, &target).await;
            observer.observe(probe.kind, started.elapsed(), result.is_ok());
            succeeded_once |= result.is_ok();
            let counts = result.is_ok()
                || last_counted.is_none_or(|at| started.duration_since(at) >= interval);
            if result.is_err() && counts {
                last_counted = Some(started);
            }
            let result = result.map_err(|e| format!("{which} {e}"));
            if counts && tx.send((which, result)).await.is_err() {
                return;
            }
            // Only readiness hurries: a liveness failure kills, and a process that is
            // still starting up must get a full interval before its next chance.
            let delay = next_delay(fast, interval, succeeded_once || which == Which::Liveness);
            fast = (fast * 2).min(interval);
            tokio::time::sleep(delay).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_until_first_success() {
        let i = Duration::from_secs(1);
        assert_eq!(next_delay(FAST_START, i, false), FAST_START);
        assert_eq!(
            next_delay(Duration::from_millis(800), i, false),
            Duration::from_millis(800)
        );
        assert_eq!(next_delay(Duration::from_secs(2), i, false), i);
        assert_eq!(next_delay(FAST_START, i, true), i);
    }

    #[test]
    fn port_refs_resolve_to_the_instance_ports() {
        let t = Target {
            first_port: Some(1000),
            ports: [("http".to_string(), 1000), ("admin".to_string(), 2000)].into(),
            ..Default::default()
        };
        assert_eq!(t.port_for(None), Some(1000));
        assert_eq!(t.port_for(Some(&PortRef::Name("admin".into()))), Some(2000));
        assert_eq!(t.port_for(Some(&PortRef::Number(7))), Some(7));
        assert_eq!(t.port_for(Some(&PortRef::Name("x".into()))), None);
    }

    /// An exec probe enters `workingDir` as the instance's user, never as the agent.
    #[tokio::test]
    async fn an_exec_probe_enters_the_working_dir_as_the_instance_user() {
        if !nix::unistd::geteuid().is_root() {
            return; // switching users needs root
        }
        use std::os::unix::fs::PermissionsExt;
        let private = std::env::temp_dir().join(format!("rune-probe-cwd-{}", std::process::id()));
        std::fs::create_dir_all(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = crate::model::Account::Name("nobody".into());
        let who = crate::agent::identity::of_spec(Some(&nobody), None).unwrap();
        let target = |user| Target {
            user,
            working_dir: Some(private.to_string_lossy().into_owned()),
            ..Default::default()
        };
        let probe: Probe = serde_json::from_str(r#"{"type":"exec","command":["true"]}"#).unwrap();
        let as_nobody = check(&probe, &target(RunAs::Instance(who))).await;
        let as_agent = check(&probe, &target(RunAs::Agent)).await;
        let _ = std::fs::remove_dir_all(&private);
        assert!(
            as_nobody.is_err(),
            "nobody entered a 0700 directory of root's"
        );
        as_agent.unwrap();
    }

    #[tokio::test]
    async fn tcp_and_http_and_exec_checks() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let target = Target {
            first_port: Some(port),
            env: vec![("X_OK".into(), "yes".into())],
            ..Default::default()
        };
        let probe = |json: &str| -> Probe { serde_json::from_str(json).unwrap() };
        check(&probe(r#"{"type":"tcp"}"#), &target).await.unwrap();
        check(&probe(r#"{"type":"http","path":"/x"}"#), &target)
            .await
            .unwrap();
        check(
            &probe(r#"{"type":"exec","command":["sh","-c","test \"$X_OK\" = yes"]}"#),
            &target,
        )
        .await
        .unwrap();
        assert!(
            check(&probe(r#"{"type":"exec","command":["false"]}"#), &target)
                .await
                .is_err()
        );
        let closed = Target {
            first_port: Some(crate::agent::ports::free_loopback_port().unwrap()),
            ..Default::default()
        };
        assert!(check(&probe(r#"{"type":"tcp"}"#), &closed).await.is_err());
    }
}
