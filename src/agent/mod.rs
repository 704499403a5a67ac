//! `rune-agent`: one per node. Registers the node, runs the instances the controller
//! assigns to it as supervised OS processes, probes them and reports their status.
//!
//! Layout: this file holds the flags and the main loop (the informer on `instances/`
//! driving one supervisor task per instance); `registration.rs` the node key and its
//! lease; `supervisor.rs` the per-instance task; `process.rs` spawning, signals and
//! process identity; `ports.rs`, `state.rs` (data-dir persistence), `logs.rs`,
//! `reporter.rs` (status writes) and `metrics.rs`.

pub mod logs;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod registration;
pub mod reporter;
pub mod state;
pub mod supervisor;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::logging::{self, LogFormat};
use crate::model::InstanceRecord;
use crate::serve::{self, Readiness};
use crate::store::watch::{WatchEvent, watch_prefix};
use crate::store::{EtcdArgs, Keys, Kv, Store, StoreError};
use metrics::AgentMetrics;
use registration::RegisterError;
use state::{DataDir, Persisted};
use supervisor::{Backoff, Cmd, Handle, Shared};

/// Runs the instances assigned to this node as supervised processes.
#[derive(Debug, Parser)]
#[command(name = "rune-agent", version)]
pub struct Args {
    /// This node's name (default: the host name).
    #[arg(long, env = "RUNE_NODE_NAME")]
    pub node_name: Option<String>,
    /// Instance logs and local state (adoption after restarts, the node lease).
    #[arg(long, env = "RUNE_DATA_DIR", default_value = "/var/lib/rune-agent")]
    pub data_dir: PathBuf,
    /// Where /healthz, /readyz and /metrics answer.
    #[arg(long, env = "RUNE_AGENT_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// TTL of the node lease: a dead agent's node and statuses vanish after it.
    #[arg(long, env = "RUNE_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// First crash-loop back-off; doubles per consecutive crash.
    #[arg(long, env = "RUNE_RESTART_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub restart_backoff: Duration,
    /// Longest crash-loop back-off.
    #[arg(long, env = "RUNE_RESTART_BACKOFF_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub restart_backoff_max: Duration,
    /// Running this long without a crash resets the back-off.
    #[arg(long, env = "RUNE_RESTART_BACKOFF_RESET", default_value = "60s", value_parser = humantime::parse_duration)]
    pub restart_backoff_reset: Duration,
    /// On SIGTERM/SIGINT stop every instance first (default: leave them running for
    /// the next agent to adopt).
    #[arg(long, env = "RUNE_STOP_INSTANCES_ON_EXIT")]
    pub stop_instances_on_exit: bool,
    /// Log output: human-readable text, or JSON for log pipelines.
    #[arg(long, env = "RUNE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Last: its help heading ("etcd connection") applies to what follows.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn main() -> i32 {
    let args = Args::parse();
    logging::init(args.log_format);
    match run(args).await {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            eprintln!("rune-agent: {e}");
            e.exit_code()
        }
    }
}

async fn connect(args: &EtcdArgs) -> Store {
    // A daemon outlives etcd outages, also one at its own start.
    let mut delay = Duration::from_millis(500);
    loop {
        match Store::connect(args).await {
            Ok(s) => return s,
            Err(e) => {
                warn!(error = %e, "cannot reach etcd yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data dir or the listen address cannot be used.
    #[error("{0}")]
    Setup(String),
    /// Another agent holds this data dir or this node name.
    #[error("{0}")]
    Taken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentError {
    /// The process exit status, numbered like the CLI's: 2 bad configuration,
    /// 4 held by another agent, 5 etcd.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Setup(_) => 2,
            AgentError::Taken(_) => 4,
            AgentError::Store(_) => 5,
        }
    }
}

pub async fn run(args: Args) -> Result<(), AgentError> {
    let node = args.node_name.clone().unwrap_or_else(crate::host::hostname);
    let data =
        Arc::new(DataDir::new(&args.data_dir).map_err(|e| {
            AgentError::Setup(format!("data dir {}: {e}", args.data_dir.display()))
        })?);
    let _lock = data.lock().map_err(AgentError::Taken)?;

    // Supervision starts from the data dir before etcd is reached: an agent restarted
    // during an etcd outage keeps what it knows running (and restarting) meanwhile.
    let agent_metrics = Arc::new(AgentMetrics::default());
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        node: node.clone(),
        data: data.clone(),
        ports: ports::Ports::default(),
        metrics: agent_metrics.clone(),
        reports,
        backoff: Backoff {
            base: args.restart_backoff,
            max: args.restart_backoff_max,
            reset: args.restart_backoff_reset,
        },
    });
    let mut agent = Agent {
        keys: Keys::new(&args.etcd.prefix),
        shared: shared.clone(),
        supervisors: HashMap::new(),
        // What has no record in the first full listing is stopped then.
        persisted: Some(data.load_all()),
    };
    agent.adopt_local();
    tokio::spawn(rotate_logs(data.root().join("logs")));

    let store = connect(&args.etcd).await;
    let mut registry = Registry::default();
    agent_metrics.register(&mut registry);
    store.metrics().register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let bound = serve::serve(args.listen, registry, ready_rx)
        .await
        .map_err(|e| AgentError::Setup(e.to_string()))?;

    let record = registration::node_record(&node, bound.to_string());
    let reg = registration::register(&store, &data, record, args.lease_ttl)
        .await
        .map_err(|e| match e {
            RegisterError::Taken { .. } => AgentError::Taken(e.to_string()),
            RegisterError::Store(e) => e.into(),
        })?;
    info!(node, listen = %bound, lease = reg.lease.id, "agent started");
    let lease_id = reg.lease.id;
    let (lease_tx, lease_rx) = watch::channel(reg.lease.id);
    let mut registered = lease_rx.clone();
    let (count_tx, count_rx) = watch::channel(agent.supervisors.len() as u32);
    tokio::spawn(registration::keep(
        store.clone(),
        data.clone(),
        reg,
        args.lease_ttl,
        lease_tx,
        count_rx,
    ));
    let reporter = tokio::spawn(reporter::run(
        store.clone(),
        reports_rx,
        lease_rx,
        agent_metrics,
    ));

    let mut informer = watch_prefix(store.clone(), store.keys().instances());
    let shutdown = crate::host::shutdown_signal();
    tokio::pin!(shutdown);
    let mut connected = false;
    loop {
        tokio::select! {
            ev = informer.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    WatchEvent::Reset { kvs, .. } => {
                        connected = true;
                        agent.reset(kvs);
                    }
                    WatchEvent::Put(kv) => agent.put(kv),
                    WatchEvent::Delete(kv) => agent.remove(&kv.key),
                    WatchEvent::Connected(up) => connected = up,
                }
                let _ = count_tx.send(agent.supervisors.len() as u32);
            }
            changed = registered.changed() => {
                if changed.is_err() { break; }
            }
            _ = &mut shutdown => break,
        }
        let _ = ready_tx.send(if *registered.borrow() == 0 {
            Readiness::NotReady("node lease lost; registering again".into())
        } else if !connected {
            Readiness::NotReady("watch on etcd is down".into())
        } else {
            Readiness::Ready
        });
    }

    let stop = args.stop_instances_on_exit;
    info!(
        stop_instances = stop,
        instances = agent.supervisors.len(),
        "agent exiting"
    );
    let _ = ready_tx.send(Readiness::NotReady("shutting down".into()));
    let mut tasks = Vec::new();
    for (_, h) in agent.supervisors.drain() {
        let _ = h.tx.send(Cmd::Shutdown { stop });
        tasks.push(h.task);
    }
    for t in tasks {
        let _ = t.await;
    }
    if stop {
        // Give the reporter a moment to write the final statuses, then drop the node:
        // revoking the lease removes the node key and every status on it at once.
        drop(agent);
        drop(shared);
        let _ = tokio::time::timeout(Duration::from_secs(2), reporter).await;
        if let Err(e) = store.revoke_lease(lease_id).await {
            warn!(error = %e, "revoking the node lease failed; it will expire");
        }
    }
    Ok(())
}

/// The main loop's view: one supervisor per instance record of this node.
struct Agent {
    keys: Keys,
    shared: Arc<Shared>,
    supervisors: HashMap<String, Handle>,
    persisted: Option<BTreeMap<String, Persisted>>,
}

impl Agent {
    /// `instances/<ns>/<svc>/<id>` → (`ns/svc/id`, status key).
    fn parse_key(&self, key: &str) -> Option<(String, String)> {
        let seg = self.keys.segments("instances", key)?;
        let [ns, svc, id] = seg.as_slice() else {
            return None;
        };
        Some((
            format!("{ns}/{svc}/{id}"),
            self.keys.instance_status(ns, svc, id),
        ))
    }

    fn record(&self, kv: &Kv) -> Option<InstanceRecord> {
        match kv.json::<InstanceRecord>() {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(error = %e, "ignoring an instance record that does not parse");
                None
            }
        }
    }

    fn reset(&mut self, kvs: Vec<Kv>) {
        let mut seen = std::collections::HashSet::new();
        for kv in kvs {
            if let Some((id, _)) = self.parse_key(&kv.key)
                && self.record(&kv).is_some_and(|r| r.node == self.shared.node)
            {
                seen.insert(id);
                self.put(kv);
            }
        }
        let gone: Vec<String> = self
            .supervisors
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for id in gone {
            if let Some(h) = self.supervisors.remove(&id) {
                let _ = h.tx.send(Cmd::Remove);
            }
        }
        // Processes a previous agent left for records deleted meanwhile.
        if let Some(orphans) = self.persisted.take() {
            for (key, p) in orphans {
                warn!(instance = %key, "record gone while the agent was away; stopping");
                let mut parts = key.splitn(3, '/');
                if let (Some(ns), Some(svc), Some(id)) = (parts.next(), parts.next(), parts.next())
                {
                    let _ = self.shared.reports.send(reporter::Report::Delete(
                        self.keys.instance_status(ns, svc, id),
                    ));
                }
                let shared = self.shared.clone();
                // Off the main loop: a grace period must not hold up other records.
                tokio::spawn(async move {
                    if let (Some(pid), Some(start)) = (p.pid, p.start_time)
                        && process::same_process(pid, start)
                    {
                        process::stop_group(pid, Duration::from_secs(10)).await;
                    }
                    shared.data.remove(&key.replace('/', "_"));
                    shared.ports.release(p.ports.iter().map(|(_, n)| *n));
                });
            }
        }
    }

    /// Starts supervising (adopting) every instance the data dir knows with its
    /// record, before etcd has been heard from. Ports of all of them are taken first.
    fn adopt_local(&mut self) {
        let Some(persisted) = self.persisted.as_mut() else {
            return;
        };
        self.shared.ports.claim(
            persisted
                .values()
                .flat_map(|p| p.ports.iter().map(|(_, n)| *n)),
        );
        let known: Vec<String> = persisted
            .iter()
            .filter(|(_, p)| {
                p.record
                    .as_ref()
                    .is_some_and(|r| r.node == self.shared.node)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in known {
            let p = persisted.remove(&id).expect("listed");
            let record = p.record.clone().expect("filtered");
            let status_key =
                self.keys
                    .instance_status(&record.namespace, &record.service, &record.id);
            let h = supervisor::spawn(self.shared.clone(), id.clone(), status_key, record, Some(p));
            self.supervisors.insert(id, h);
        }
    }

    fn put(&mut self, kv: Kv) {
        let Some((id, status_key)) = self.parse_key(&kv.key) else {
            return;
        };
        let Some(record) = self.record(&kv) else {
            return;
        };
        if record.node != self.shared.node {
            // Not (or no longer) ours.
            return self.remove(&kv.key);
        }
        if let Some(h) = self.supervisors.get(&id) {
            let _ = h.tx.send(Cmd::Update(Box::new(record)));
            return;
        }
        let persisted = self.persisted.as_mut().and_then(|p| p.remove(&id));
        let h = supervisor::spawn(
            self.shared.clone(),
            id.clone(),
            status_key,
            record,
            persisted,
        );
        self.supervisors.insert(id, h);
    }

    fn remove(&mut self, key: &str) {
        if let Some((id, _)) = self.parse_key(key)
            && let Some(h) = self.supervisors.remove(&id)
        {
            let _ = h.tx.send(Cmd::Remove);
        }
    }
}

/// Caps every instance log (see logs.rs for why rotation is copy-then-truncate).
async fn rotate_logs(dir: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log")
                && let Err(err) = logs::rotate_if_needed(&p, logs::LOG_CAP)
            {
                warn!(path = %p.display(), error = %err, "log rotation failed");
            }
        }
    }
}
