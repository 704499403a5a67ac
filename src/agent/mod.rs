//! `rune-agent`: one per node. Registers the node, runs the instances the controller
//! assigns to it as supervised OS processes, probes them and reports their status.
//!
//! Layout: this file holds the flags and the main loop (the informer on this node's
//! `assignments/<node>/`, driving one supervisor task per instance); `registration.rs` the node key and its
//! lease; `supervisor/` the per-instance task; `process.rs` spawning, signals and
//! process identity; `identity.rs` the user an instance runs as and `environment.rs`
//! what it inherits; `ports.rs`, `state.rs` (data-dir persistence), `logs/`
//! (rotation, and retention of ended instances' logs), `reporter.rs` (status
//! writes) and `metrics.rs`. `hollow.rs` is `--hollow N`: simulated nodes for testing
//! and benchmarking the control plane, which start no processes.

mod assignments;
pub mod cgroups;
pub mod environment;
mod events;
pub mod files;
pub mod hollow;
pub mod identity;
pub mod logs;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod registration;
pub mod reporter;
pub mod revisions;
pub mod state;
pub mod supervisor;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::logging::{self, LogFormat};
use crate::model::InstanceRef;
use crate::serve::{self, Readiness};
use crate::store::watch::{WatchEvent, watch_prefix};
use crate::store::{EtcdArgs, Keys, Store, StoreError};
use assignments::{Assignments, Hold};
use logs::{Logs, Retention};
use metrics::AgentMetrics;
use registration::RegisterError;
use state::DataDir;
use supervisor::{Backoff, Shared};

/// Runs the instances assigned to this node as supervised processes.
#[derive(Debug, Parser)]
#[command(name = "rune-agent", version)]
pub struct Args {
    /// This node's name (default: the host name).
    #[arg(long, env = "RUNE_NODE_NAME")]
    pub node_name: Option<String>,
    /// A label of this node, KEY=VALUE (repeatable; in the environment, comma
    /// separated): what a service's `placement.nodeSelector` matches. Keys and values
    /// follow Kubernetes' label syntax.
    #[arg(long = "label", env = "RUNE_LABELS", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = crate::model::node::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Most instances this node accepts, of every service together; 0 = no limit.
    #[arg(long, env = "RUNE_CAPACITY", default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=crate::model::limits::MAX_NODE_CAPACITY as i64))]
    pub capacity: u32,
    /// Instance logs and local state (adoption after restarts, the node lease).
    #[arg(long, env = "RUNE_DATA_DIR", default_value = "/var/lib/rune-agent")]
    pub data_dir: PathBuf,
    /// Where instances' `$RUNE_FILES` directories go (configs and secrets, one
    /// directory per instance, owned by its user). Kept apart from the data dir,
    /// which is private to the agent (0700); this one is 0711. The default is on
    /// tmpfs, so secrets never reach a disk; an agent that is not root needs one it
    /// can write.
    #[arg(long, env = "RUNE_FILES_DIR", default_value = "/run/rune-agent/files")]
    pub files_dir: PathBuf,
    /// Where /healthz, /readyz, /metrics and the logs endpoint (`rune logs`)
    /// answer. For `rune logs` from other hosts, bind an address they reach.
    #[arg(long, env = "RUNE_AGENT_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// The HOST:PORT of --listen that others reach, published in the node record
    /// (default: the bound address; when bound to 0.0.0.0, --node-ip and the
    /// bound port).
    #[arg(long, env = "RUNE_ADVERTISE_ADDRESS", value_name = "HOST:PORT")]
    pub advertise_address: Option<String>,
    /// Serve the logs endpoint (`rune logs`) on this address of its own instead of
    /// on --listen, which then keeps /healthz, /readyz and /metrics only (plain
    /// HTTP, for probes and Prometheus). Needed for --logs-tls-cert.
    #[arg(long, env = "RUNE_LOGS_LISTEN", value_name = "HOST:PORT")]
    pub logs_listen: Option<SocketAddr>,
    /// The HOST:PORT of --logs-listen that `rune logs` reaches, published in the
    /// node record (default: the bound address). With TLS, HOST must be in the
    /// certificate's subjectAltName.
    #[arg(
        long,
        env = "RUNE_LOGS_ADVERTISE_ADDRESS",
        value_name = "HOST:PORT",
        requires = "logs_listen"
    )]
    pub logs_advertise_address: Option<String>,
    /// Certificate (PEM, the chain from the leaf) of the logs endpoint: serves it
    /// over TLS. Needs --logs-listen and --logs-tls-key.
    #[arg(long, env = "RUNE_LOGS_TLS_CERT", value_name = "FILE", requires_all = ["logs_listen", "logs_tls_key"])]
    pub logs_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --logs-tls-cert.
    #[arg(
        long,
        env = "RUNE_LOGS_TLS_KEY",
        value_name = "FILE",
        requires = "logs_tls_cert"
    )]
    pub logs_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the clients of the logs endpoint: mutual
    /// TLS. A client without a certificate this CA signed is refused in the
    /// handshake; the certificate is the authentication, so no token is published
    /// (node-tokens/<node> is deleted). Needs --logs-tls-cert.
    #[arg(
        long,
        env = "RUNE_LOGS_CLIENT_CA",
        value_name = "FILE",
        requires = "logs_tls_cert"
    )]
    pub logs_client_ca: Option<PathBuf>,
    /// This node's IP address, where its instances' ports are reached: what
    /// `endpoints/` lists for them (the node record's `ip`). Default: the host's
    /// primary address (its route to the outside), 127.0.0.1 when it has none.
    #[arg(long, env = "RUNE_NODE_IP", value_name = "IP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// A live instance log is rotated (copied to `.log.1`, then truncated) past
    /// this size (KiB, MiB, GiB or bytes).
    #[arg(long, env = "RUNE_INSTANCE_LOG_MAX_SIZE", default_value = "10MiB", value_parser = logs::parse_bytes)]
    pub instance_log_max_size: u64,
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
    /// Stop every instance when the node lease could not be renewed for this long
    /// (etcd unreachable, or this node cut off), so that instances replaced on
    /// other nodes never run twice for long. Keep it below the controller's
    /// node-lost grace; 0s turns self-fencing off (availability over safety:
    /// see docs/guarantees.md).
    #[arg(long, env = "RUNE_SELF_FENCE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub self_fence_after: Duration,
    /// Logs of ended instances (record removed: replaced, scaled down, restarted,
    /// deleted) kept per service for post-mortems, the most recently ended.
    #[arg(long, env = "RUNE_ENDED_LOGS_KEEP", default_value_t = 5)]
    pub ended_logs_keep: usize,
    /// An ended instance's log is deleted this long after the instance ended.
    #[arg(long, env = "RUNE_ENDED_LOGS_MAX_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub ended_logs_max_age: Duration,
    /// The logs of ended instances together stay within this (KiB, MiB, GiB or
    /// bytes); the oldest are deleted first.
    #[arg(long, env = "RUNE_ENDED_LOGS_MAX_BYTES", default_value = "100MiB", value_parser = logs::parse_bytes)]
    pub ended_logs_max_bytes: u64,
    /// On SIGTERM/SIGINT stop every instance first (default: leave them running for
    /// the next agent to adopt).
    #[arg(long, env = "RUNE_STOP_INSTANCES_ON_EXIT")]
    pub stop_instances_on_exit: bool,
    /// Testing and benchmarking: run this many simulated nodes named
    /// `<node-name>-<i>` in this process (registered and reporting like real agents,
    /// starting no processes); 1 to 10000.
    #[arg(long, env = "RUNE_HOLLOW", value_name = "N")]
    pub hollow: Option<u64>,
    /// With --hollow: how long a simulated instance stays not ready after it
    /// "started"; 0s reports it ready at once.
    #[arg(long, env = "RUNE_HOLLOW_READY_AFTER", default_value = "0s", value_name = "DURATION", value_parser = humantime::parse_duration, requires = "hollow")]
    pub hollow_ready_after: Duration,
    /// The cgroup (relative to each hierarchy's root) that instance cgroups go
    /// under, one per instance named by its id: every process of an instance is
    /// killed when it stops, and `resources` limits are enforced. `none` (or empty)
    /// runs instances as process groups only; specs with `resources` then do not
    /// start here.
    #[arg(
        long,
        env = "RUNE_CGROUP_PARENT",
        default_value = "rune",
        value_name = "PATH"
    )]
    pub cgroup_parent: String,
    /// Memory instances may ask for in all on this node (bytes, Ki, Mi, Gi;
    /// default: the machine's, from /proc/meminfo).
    #[arg(long, env = "RUNE_CAPACITY_MEMORY", value_name = "QUANTITY", value_parser = crate::model::Memory::parse)]
    pub capacity_memory: Option<crate::model::Memory>,
    /// CPU instances may ask for in all on this node (cores or millicores;
    /// default: the machine's CPU count).
    #[arg(long, env = "RUNE_CAPACITY_CPU", value_name = "QUANTITY", value_parser = crate::model::Cpu::parse)]
    pub capacity_cpu: Option<crate::model::Cpu>,
    /// A variable of the agent's environment that instances get too (repeatable;
    /// in the environment, comma separated), beyond PATH, LANG, LANGUAGE, LC_*
    /// and TZ: instances inherit nothing else of the agent's environment.
    #[arg(
        long = "pass-env",
        env = "RUNE_PASS_ENV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub pass_env: Vec<String>,
    /// Log output: human-readable text, or JSON for log pipelines.
    #[arg(long, env = "RUNE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub secrets: crate::secrets::KeyFileArgs,
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

pub(crate) async fn connect(args: &EtcdArgs) -> Result<Store, AgentError> {
    // A daemon outlives etcd outages, also one at its own start; refused
    // credentials are final (no retry makes them right).
    let mut delay = Duration::from_millis(500);
    loop {
        match Store::connect(args).await {
            Ok(s) => return Ok(s),
            Err(e @ StoreError::Unauthenticated { .. }) => return Err(e.into()),
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
    if let Some(n) = args.hollow {
        return hollow::run(&args, n).await;
    }
    let node = args.node_name.clone().unwrap_or_else(crate::host::hostname);
    check_node_name(&node)?;
    let data =
        Arc::new(DataDir::new(&args.data_dir).map_err(|e| {
            AgentError::Setup(format!("data dir {}: {e}", args.data_dir.display()))
        })?);
    let _lock = data.lock().map_err(AgentError::Taken)?;
    // Bad TLS files are bad configuration: said at once, before etcd is reached.
    let logs_tls = args.logs_tls_server_config()?;

    // Supervision starts from the data dir before etcd is reached: an agent restarted
    // during an etcd outage keeps what it knows running (and restarting) meanwhile.
    let agent_metrics = Arc::new(AgentMetrics::default());
    // Events wait in the recorder's queue until etcd is reached (see `crate::events`).
    let events =
        crate::events::install(&format!("agent {node}"), crate::events::DEFAULT_PER_SECOND);
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let persisted = data.load_all();
    let known: HashSet<InstanceRef> = persisted
        .keys()
        .filter_map(|k| InstanceRef::parse(k))
        .collect();
    let logs = Logs::with_cap(&data.root().join("logs"), args.instance_log_max_size);
    let cgroups = open_cgroups(&args.cgroup_parent);
    let (requests, requests_rx) = cgroups::Requests::new();
    if let Some(path) = &args.secrets.secrets_key_file {
        // Read at each start (so keys rotate without an agent restart), but a file
        // that cannot be used at all is a configuration error now.
        crate::secrets::Keyring::load(Some(path)).map_err(|e| AgentError::Setup(e.to_string()))?;
    }
    let sources = Arc::new(files::Sources {
        store: std::sync::OnceLock::new(),
        key_file: args.secrets.secrets_key_file.clone(),
        root: args.files_dir.clone(),
    });
    // Files of instances this data dir no longer knows (a crash between forgetting
    // an instance and removing its files): secrets do not linger on disk.
    sources.sweep(&known.iter().map(InstanceRef::file_name).collect());
    let shared = Arc::new(Shared {
        sources: sources.clone(),
        cgroups: cgroups.clone(),
        requests: Arc::new(requests),
        node: node.clone(),
        data: data.clone(),
        logs: logs.clone(),
        ports: ports::Ports::default(),
        metrics: agent_metrics.clone(),
        reports,
        backoff: Backoff {
            base: args.restart_backoff,
            max: args.restart_backoff_max,
            reset: args.restart_backoff_reset,
        },
        pass_env: args.pass_env.clone(),
    });
    let mut agent = Assignments::new(Keys::new(&args.etcd.prefix), shared.clone(), persisted);
    agent.adopt_local();
    let retention = Retention {
        per_service: args.ended_logs_keep,
        max_age: args.ended_logs_max_age,
        max_bytes: args.ended_logs_max_bytes,
    };
    tokio::spawn(logs.clone().keep(retention, known));

    let store = connect(&args.etcd).await?;
    check_layout(&store).await?;
    let _ = sources.store.set(store.clone());
    let mut registry = Registry::default();
    agent_metrics.register(&mut registry);
    crate::events::register(&mut registry);
    if let Some(events) = events {
        events.spawn(store.clone());
    }
    store.metrics().register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let (bound, logs_endpoint) =
        serve_endpoints(&args, logs_tls, &store, &node, &logs, registry, ready_rx).await?;

    // Bound to every address (0.0.0.0): advertise the node's, which others reach.
    let address = args.advertise_address.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            SocketAddr::new(args.ip(), bound.port()).to_string()
        } else {
            bound.to_string()
        }
    });
    let mut record = args.describe(registration::node_record(&node, address))?;
    record.logs = logs_endpoint;
    record.cgroups = cgroups.as_ref().map(|c| c.controllers());
    record.allocatable = Some(crate::model::node::Allocatable {
        memory_bytes: args
            .capacity_memory
            .map(|m| m.0)
            .or_else(cgroups::node_memory)
            .unwrap_or(0),
        cpu_millis: args
            .capacity_cpu
            .map_or(cgroups::node_cpu() as u64, |c| c.0 as u64),
        ..Default::default()
    });
    let reg = registration::register(&store, &data, record, args.lease_ttl)
        .await
        .map_err(|e| match e {
            RegisterError::Taken { .. } => AgentError::Taken(e.to_string()),
            RegisterError::Store(e) => e.into(),
        })?;
    info!(node, listen = %bound, lease = reg.lease.id, "agent started");
    if let Some(revision) = reg.created_at_revision
        && !args.self_fence_after.is_zero()
    {
        // A previous holder of this node name may still run what is assigned to
        // it: what we do not know locally waits until that holder has fenced.
        agent.set_hold(Hold {
            revision,
            until: Instant::now()
                .checked_add(args.self_fence_after)
                .unwrap_or_else(Instant::now),
        });
    }
    let lease_id = reg.lease.id;
    let (lease_tx, lease_rx) = watch::channel(reg.lease.id);
    let (renewed_tx, mut renewed) = watch::channel(Instant::now());
    let mut registered = lease_rx.clone();
    let (count_tx, count_rx) = watch::channel(agent.len() as u32);
    let mut keeper = tokio::spawn(registration::keep(
        store.clone(),
        data.clone(),
        reg,
        args.lease_ttl,
        lease_tx,
        renewed_tx,
        count_rx,
        requests_rx,
    ));
    let reporter = tokio::spawn(reporter::run(
        store.clone(),
        reports_rx,
        lease_rx,
        agent_metrics.clone(),
    ));

    let (resolved_tx, mut resolved) = mpsc::unbounded_channel();
    agent.connect(store.clone(), resolved_tx);
    // Only this node's assignments: an agent's traffic and memory follow its own
    // instances, not the fleet's.
    let mut informer = watch_prefix(store.clone(), store.keys().assignments_of(&node));
    let shutdown = crate::host::shutdown_signal();
    tokio::pin!(shutdown);
    let mut connected = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let fence_after = args.self_fence_after;
    loop {
        // (An absurd window overflows to "never", not a panic.)
        let fence_at = if !agent.is_fenced() && !fence_after.is_zero() {
            renewed.borrow().checked_add(fence_after)
        } else {
            None
        };
        let hold_ends = agent.release_held();
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
                let _ = count_tx.send(agent.len() as u32);
            }
            Some(r) = resolved.recv() => {
                agent.resolved(r);
                let _ = count_tx.send(agent.len() as u32);
            }
            changed = registered.changed() => {
                if changed.is_err() {
                    // The registration task ended: it says why below.
                    let taken = (&mut keeper).await;
                    return Err(lost_node_name(taken, &ready_tx, &mut agent).await);
                }
            }
            _ = renewed.changed() => {}
            _ = sleep_until_opt(fence_at) => {
                warn!(
                    after = %humantime::format_duration(fence_after),
                    instances = agent.len(),
                    "self-fencing: the node lease could not be renewed; stopping every instance \
                     (they may be replaced on other nodes) until etcd takes a renewal again"
                );
                agent.fence();
                agent_metrics.self_fenced.set(1);
                let _ = count_tx.send(0);
            }
            _ = sleep_until_opt(hold_ends) => {}
            _ = tick.tick() => agent.revive_crashed(),
            taken = &mut keeper => {
                return Err(lost_node_name(taken, &ready_tx, &mut agent).await);
            }
            _ = &mut shutdown => break,
        }
        let lease_ok = *registered.borrow() != 0;
        if agent.is_fenced()
            && lease_ok
            && renewed.borrow().elapsed() < fence_after
            && agent.fence_settled()
        {
            match store.list(&store.keys().assignments_of(&node)).await {
                Ok((kvs, _)) => {
                    info!("the node lease is renewed again; resuming supervision");
                    agent.unfence(kvs);
                    agent_metrics.self_fenced.set(0);
                    let _ = count_tx.send(agent.len() as u32);
                }
                Err(e) => {
                    warn!(error = %e, "listing instance records to end the self-fence failed; retrying")
                }
            }
        }
        let _ = ready_tx.send(if agent.is_fenced() {
            Readiness::NotReady("self-fenced: the node lease could not be renewed".into())
        } else if !lease_ok {
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
        instances = agent.len(),
        "agent exiting"
    );
    let _ = ready_tx.send(Readiness::NotReady("shutting down".into()));
    agent.shutdown(stop).await;
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

/// Serves /healthz, /readyz and /metrics on --listen, and the logs endpoint there
/// too, or on --logs-listen (over TLS when configured); publishes the logs token,
/// or with mutual TLS deletes any earlier one. The bound --listen address and the
/// logs endpoint for the node record when it has a listener of its own.
async fn serve_endpoints(
    args: &Args,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    store: &Store,
    node: &str,
    logs: &Arc<Logs>,
    registry: Registry,
    ready: watch::Receiver<Readiness>,
) -> Result<(SocketAddr, Option<crate::model::node::LogsEndpoint>), AgentError> {
    let setup = |e: String| AgentError::Setup(e);
    let mutual = tls.is_some() && args.logs_client_ca.is_some();
    let token = if mutual {
        None
    } else {
        Some(logs::http::new_token().map_err(|e| setup(format!("cannot make a logs token: {e}")))?)
    };
    let routes = logs::http::routes(logs.clone(), token.clone());
    let (bound, endpoint) = match args.logs_listen {
        None => (
            serve::serve_with(args.listen, registry, ready, routes)
                .await
                .map_err(|e| setup(e.to_string()))?,
            None,
        ),
        Some(logs_listen) => {
            let bound = serve::serve(args.listen, registry, ready)
                .await
                .map_err(|e| setup(e.to_string()))?;
            let tls_on = tls.is_some();
            let logs_bound = logs::tls::serve(logs_listen, routes, tls)
                .await
                .map_err(|e| setup(e.to_string()))?;
            info!(listen = %logs_bound, tls = tls_on, mutual, "logs endpoint on a listener of its own");
            let endpoint = crate::model::node::LogsEndpoint {
                address: args
                    .logs_advertise_address
                    .clone()
                    .unwrap_or_else(|| logs_bound.to_string()),
                tls: tls_on,
                client_certificates: mutual,
            };
            (bound, Some(endpoint))
        }
    };
    tokio::spawn(publish_token(store.clone(), node.to_string(), token));
    Ok((bound, endpoint))
}

/// Writes this start's logs token to `node-tokens/<node>` (not on the lease: a
/// lease lost and taken again must not leave the endpoint without one), retrying
/// while etcd refuses or is away.
/// With mutual TLS (`token` None) an earlier start's token is deleted instead: a
/// reader of etcd then holds no credential for this endpoint.
async fn publish_token(store: Store, node: String, token: Option<String>) {
    let key = store.keys().node_token(&node);
    let mut delay = Duration::from_millis(500);
    loop {
        let done = match &token {
            Some(token) => store.put(&key, token.as_bytes().to_vec()).await.map(|_| ()),
            None => store.delete(&key).await,
        };
        match done {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "cannot publish the logs token yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The node's cgroups under `parent`, or None (logged) when it has none usable:
/// instances then run as process groups, and specs with `resources` do not start.
fn open_cgroups(parent: &str) -> Option<Arc<cgroups::Cgroups>> {
    if parent.is_empty() || parent == "none" {
        info!(
            "cgroups off (--cgroup-parent none): instances run as process groups, without limits"
        );
        return None;
    }
    match cgroups::Cgroups::open(std::path::Path::new("/sys/fs/cgroup"), parent) {
        Ok(c) => {
            let on = c.controllers();
            info!(
                version = c.version(),
                parent,
                memory = on.memory,
                cpu = on.cpu,
                pids = on.pids,
                "instances run in cgroups"
            );
            Some(Arc::new(c))
        }
        Err(e) => {
            warn!(
                error = %e,
                "no usable cgroups: instances run as process groups, and specs with resources \
                 will not start on this node"
            );
            None
        }
    }
}

/// Refuses a prefix of another key layout; an etcd hiccup meanwhile is waited out.
async fn check_layout(store: &Store) -> Result<(), AgentError> {
    loop {
        match store.check_layout().await {
            Ok(()) => return Ok(()),
            Err(StoreError::Layout(why)) => return Err(AgentError::Setup(why)),
            Err(e) => {
                warn!(error = %e, "cannot read the layout marker yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A node name is one segment of the keys the agent owns (`nodes/<node>`,
/// `assignments/<node>/`): a `/` in it would reach into another node's keys.
pub fn check_node_name(node: &str) -> Result<(), AgentError> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::Setup(format!(
            "node name {node:?}: use 1 to 253 letters, digits, '-', '.' or '_' \
             (a host name); set --node-name"
        )))
    }
}

impl Args {
    /// The logs endpoint's TLS configuration, when `--logs-tls-cert` is given.
    fn logs_tls_server_config(
        &self,
    ) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, AgentError> {
        let (Some(cert), Some(key)) = (&self.logs_tls_cert, &self.logs_tls_key) else {
            return Ok(None);
        };
        logs::tls::server_config(&logs::tls::ServerFiles {
            cert,
            key,
            client_ca: self.logs_client_ca.as_deref(),
        })
        .map(Some)
        .map_err(AgentError::Setup)
    }

    /// The node record with this agent's labels and capacity.
    pub(crate) fn describe(
        &self,
        mut record: crate::model::NodeRecord,
    ) -> Result<crate::model::NodeRecord, AgentError> {
        record.labels = self.labels.iter().cloned().collect();
        crate::model::node::check_labels(&record.labels)
            .map_err(|e| AgentError::Setup(format!("--label: {e}")))?;
        record.capacity = self.capacity;
        record.ip = Some(self.ip().to_string());
        Ok(record)
    }

    /// `--node-ip`, else the host's primary address, else loopback (a host with
    /// no route out serves only itself).
    pub(crate) fn ip(&self) -> std::net::IpAddr {
        self.node_ip.unwrap_or_else(|| {
            crate::host::primary_ip().unwrap_or_else(|| {
                warn!("no route out of this host: --node-ip defaults to 127.0.0.1");
                std::net::IpAddr::from([127, 0, 0, 1])
            })
        })
    }
}

/// Another agent holds our node name now: stop every instance and give up.
async fn lost_node_name(
    taken: Result<RegisterError, tokio::task::JoinError>,
    ready: &watch::Sender<Readiness>,
    agent: &mut Assignments,
) -> AgentError {
    let why = match taken {
        Ok(e) => e.to_string(),
        Err(e) => format!("registration task failed: {e}"),
    };
    error!(reason = %why, "node name lost to another agent; stopping every instance and exiting");
    let _ = ready.send(Readiness::NotReady(why.clone()));
    agent.shutdown(true).await;
    AgentError::Taken(why)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
