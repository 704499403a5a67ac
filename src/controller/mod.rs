//! `rune-controller`: campaigns for leadership; while leading, watches rune's keys,
//! queues services whose desired or observed state changed, and reconciles them with
//! a few workers. Never runs instances itself.

pub mod election;
pub mod endpoints;
mod events;
mod informer;
pub mod metrics;
pub mod nodes;
pub mod plan;
pub mod queue;
pub mod reconcile;
mod sources;
mod triage;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::logging::{self, LogFormat};
use crate::model::{ServiceRef, limits};
use crate::serve::{self, Readiness};
use crate::store::watch::WatchEvent;
use crate::store::{EtcdArgs, Store};
use election::ElectionConfig;
use informer::Informer;
use metrics::ControllerMetrics;
use plan::PlanConfig;
use queue::WorkQueue;
use reconcile::{Action, Context, ReconcileError};

#[derive(Debug, Parser)]
#[command(
    name = "rune-controller",
    version,
    about = "The rune control loop: one leader (etcd election) reconciles services into instances",
    after_help = "Failover: when the leader dies, a standby takes over once its lease expires: \
                  at most --lease-duration plus --retry-period (17s with the defaults)."
)]
pub struct ControllerArgs {
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "RUNE_CONTROLLER_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// This replica's identity in the election (default: host name and pid).
    #[arg(long, env = "RUNE_CONTROLLER_ID")]
    pub id: Option<String>,
    /// Leader lease TTL.
    #[arg(long, env = "RUNE_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// The leader stops working when it could not renew its lease for this long.
    #[arg(long, env = "RUNE_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub renew_deadline: Duration,
    /// How often a standby checks whether it leads now.
    #[arg(long, env = "RUNE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,
    /// How long a node may be gone before its instances are replaced elsewhere,
    /// counted from when this controller is healthy with etcd again. Keep it above
    /// the agents' self-fence window, so that a cut-off agent has stopped its
    /// instances before replacements start (see docs/guarantees.md).
    #[arg(long, env = "RUNE_NODE_LOST_GRACE", default_value = "90s", value_parser = humantime::parse_duration)]
    pub node_lost_grace: Duration,
    /// Share of the nodes holding instances that may be lost at once before rune
    /// assumes an etcd or network problem and pauses replacements (0..1).
    #[arg(long, env = "RUNE_NODE_DISRUPTION_THRESHOLD", default_value_t = 0.55, value_parser = parse_share)]
    pub node_disruption_threshold: f64,
    /// The largest scale of one service (at most 10000). A stored spec asking more
    /// is reported as SpecInvalid, naming this limit, and its instances are left
    /// as they are.
    #[arg(long, env = "RUNE_MAX_SCALE", default_value_t = limits::MAX_SCALE,
          value_parser = clap::value_parser!(u32).range(1..=limits::MAX_SCALE as i64))]
    pub max_scale: u32,
    /// Services reconciled in parallel.
    #[arg(long, env = "RUNE_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Safety-net resync of every service (changes are noticed by watch, not this).
    #[arg(long, env = "RUNE_RESYNC", default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    #[arg(long, env = "RUNE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Last: its help heading ("etcd connection") applies to what follows.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn main() -> i32 {
    let args = ControllerArgs::parse();
    logging::init(args.log_format);
    match run(args).await {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            1
        }
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not a share between 0 and 1"))
    }
}

fn new_instance_id(service: &str) -> String {
    let u = uuid::Uuid::now_v7().simple().to_string();
    format!("{service}-{}", &u[u.len() - 10..])
}

async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    if args.renew_deadline >= args.lease_duration {
        anyhow::bail!("--renew-deadline must be shorter than --lease-duration");
    }
    let store = Store::connect(&args.etcd).await?;
    // Before anything is read as rune's: a prefix of another layout stops us here.
    store.ensure_layout().await?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", crate::host::hostname(), std::process::id()));
    let metrics = Arc::new(ControllerMetrics::default());
    if let Some(events) = crate::events::install("controller", crate::events::DEFAULT_PER_SECOND) {
        events.spawn(store.clone());
    }
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    crate::events::register(&mut registry);
    store.metrics().register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let addr = serve::serve(args.listen, registry, ready_rx).await?;
    info!(%id, %addr, endpoints = store.endpoints(), prefix = store.keys().root(), "rune-controller started");

    let election = ElectionConfig {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    };
    let shutdown = CancellationToken::new();
    {
        let s = shutdown.clone();
        tokio::spawn(async move {
            crate::host::shutdown_signal().await;
            s.cancel();
        });
    }
    let _ = ready_tx.send(Readiness::Ready);
    // Watched from the start, also while standing by: a new term starts from it.
    let mut informer = Informer::start(&store, metrics.clone());
    loop {
        let campaign = election::campaign(&store, &id, &election);
        tokio::pin!(campaign);
        let leadership = loop {
            tokio::select! {
                l = &mut campaign => break l,
                ev = informer.next() => {
                    if ev.is_none() {
                        anyhow::bail!("the watch on etcd ended");
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
        };
        let leadership = match leadership {
            Ok(l) => Arc::new(l),
            Err(e) => {
                warn!(error = %e, "campaign failed; retrying");
                let _ = ready_tx.send(Readiness::NotReady(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(args.retry_period) => continue,
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        };
        let _ = ready_tx.send(Readiness::Ready);
        metrics.is_leader.set(1);
        metrics.leader_transitions.inc();
        let term = CancellationToken::new();
        let ctx = Arc::new(Context {
            store: store.clone(),
            leadership: leadership.clone(),
            config: PlanConfig {
                node_lost_grace: args.node_lost_grace,
                new_id: new_instance_id,
                max_scale: args.max_scale,
            },
            metrics: metrics.clone(),
            nodes: informer.nodes.clone(),
            sources: informer.sources.clone(),
            disruption_threshold: args.node_disruption_threshold,
            unparseable_seen: Mutex::new(Default::default()),
        });
        let lead = lead(
            ctx,
            &mut informer,
            args.workers,
            args.resync,
            term.clone(),
            ready_tx.clone(),
        );
        let reason = tokio::select! {
            why = leadership.lost() => why,
            why = lead => why,
            _ = shutdown.cancelled() => "shutting down".to_string(),
        };
        term.cancel();
        metrics.is_leader.set(0);
        warn!(%reason, "stopped leading");
        // Give the lead away now rather than when the lease expires, so a standby
        // takes over at once (best effort: etcd may be what failed).
        leadership.resign(&store).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// One reconcile worker, after controller-runtime's: take a key, reconcile it, and
/// turn the outcome into what happens to the key next.
struct Worker {
    ctx: Arc<Context>,
    queue: WorkQueue,
    deposed: tokio::sync::mpsc::Sender<()>,
}

impl Worker {
    /// Works one key; false when the worker must stop (term over, or deposed).
    async fn process_next_work_item(&self, term: &CancellationToken) -> bool {
        let key = tokio::select! {
            k = self.queue.next() => k,
            _ = term.cancelled() => return false,
        };
        self.ctx.metrics.queue_depth.set(self.queue.len() as i64);
        let started = Instant::now();
        // On a task of its own, so that a panic is a result like any other.
        let mut task = tokio::spawn({
            let (ctx, key) = (self.ctx.clone(), key.clone());
            async move { reconcile::reconcile(&ctx, &key).await }
        });
        let result = tokio::select! {
            r = &mut task => r.unwrap_or_else(|e| Err(ReconcileError::Panicked(e.to_string()))),
            _ = term.cancelled() => {
                task.abort();
                self.queue.done(&key);
                return false;
            }
        };
        self.ctx
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let go_on = self.reconcile_handler(&key, result);
        self.queue.done(&key);
        go_on
    }

    /// One switch on the outcome: success forgets the key's back-off (and requeues
    /// when asked), a conflict or error requeues with per-key back-off, a lost fence
    /// stops the worker.
    fn reconcile_handler(&self, key: &ServiceRef, result: Result<Action, ReconcileError>) -> bool {
        let m = &self.ctx.metrics;
        match result {
            Ok(action) => {
                m.reconciled("ok");
                self.queue.forget(key);
                if let Action::RequeueAfter(d) = action {
                    self.queue.add_after(key.clone(), d);
                }
                true
            }
            Err(ReconcileError::Deposed) => {
                m.reconciled("deposed");
                let _ = self.deposed.try_send(());
                false
            }
            Err(e) => {
                let (outcome, conflict) = match &e {
                    ReconcileError::Conflict(_) => ("conflict", true),
                    ReconcileError::Panicked(_) => ("panic", false),
                    _ => ("error", false),
                };
                m.reconciled(outcome);
                // Conflicts back off like every other failure: a record that keeps
                // changing under us (or keeps failing its guard) must not spin.
                let delay = self.queue.add_rate_limited(key.clone());
                if conflict && delay < FIRST_WARN_AFTER {
                    tracing::debug!(service = %key, error = %e, retry_in = ?delay, "conflict; reconciling again");
                } else {
                    warn!(service = %key, error = %e, retry_in = ?delay, "reconcile failed");
                }
                true
            }
        }
    }
}

/// Conflicts are normal (another writer got in between); only ones that keep
/// coming back, after the back-off has grown past this, are worth a warning. The
/// growing back-off itself rate-limits the warnings.
const FIRST_WARN_AFTER: Duration = Duration::from_secs(1);

/// Does the leader's work until cancelled; returns why it stopped early.
async fn lead(
    ctx: Arc<Context>,
    informer: &mut Informer,
    workers: usize,
    resync: Duration,
    term: CancellationToken,
    ready: watch::Sender<Readiness>,
) -> String {
    let queue = WorkQueue::default();
    let mut handles = Vec::new();
    let (deposed_tx, mut deposed_rx) = tokio::sync::mpsc::channel::<()>(1);
    for _ in 0..workers.max(1) {
        let worker = Worker {
            ctx: ctx.clone(),
            queue: queue.clone(),
            deposed: deposed_tx.clone(),
        };
        let term = term.clone();
        handles.push(tokio::spawn(async move {
            while worker.process_next_work_item(&term).await {}
        }));
    }
    let mut tick = tokio::time::interval(resync);
    let keys = ctx.store.keys().clone();
    let mut known: std::collections::HashSet<queue::Key> = Default::default();
    informer.new_term();
    if informer.synced {
        // Every service once, those with work waiting first (see triage.rs).
        let ordered = informer.triage.order();
        info!(
            services = ordered.len(),
            "new term: reconciling every service"
        );
        known = ordered.iter().cloned().collect();
        for k in ordered {
            queue.add_background(k);
        }
    }
    let reason = loop {
        tokio::select! {
            _ = term.cancelled() => break "cancelled".to_string(),
            _ = deposed_rx.recv() => break "fenced out: our leader key is gone".to_string(),
            _ = tick.tick() => {
                for k in &known { queue.add_background(k.clone()); }
            }
            ev = informer.next() => {
                let Some(ev) = ev else { break "watch ended".to_string() };
                let is_delete = matches!(&ev, WatchEvent::Delete(_));
                match ev {
                    WatchEvent::Reset { kvs, .. } => {
                        // Services with work waiting first (see triage.rs).
                        let ordered = informer.triage.order();
                        info!(keys = kvs.len(), services = ordered.len(), "listed everything; reconciling every service");
                        known = ordered.iter().cloned().collect();
                        for k in ordered { queue.add_background(k); }
                    }
                    WatchEvent::Put(kv) | WatchEvent::Delete(kv) => {
                        // A node registered (created) or gone (deleted): placement
                        // and lost-node handling change for every service. Agents
                        // also rewrite their record as their instance count changes;
                        // that alone is not worth a sweep; a new address is (the
                        // endpoints list it).
                        if kv.key.starts_with(&keys.nodes()) {
                            let readdressed = informer.nodes.lock().unwrap().take_readdressed();
                            if is_delete || kv.create_revision == kv.mod_revision || readdressed {
                                for k in &known { queue.add_background(k.clone()); }
                            }
                        } else if kv.key.starts_with(&keys.node_states()) {
                            // Cordoned or uncordoned: where instances may go changed.
                            for k in &known { queue.add_background(k.clone()); }
                        } else if kv.key.starts_with(&keys.statuses())
                            || kv.key.starts_with(&keys.revisions())
                            || kv.key.starts_with(keys.leader().as_str())
                        {
                            // Our own writes (status, revisions) and the election:
                            // nothing to do.
                        } else if let Some((ns, source)) = keys.source_of(&kv.key) {
                            // A config or secret changed: its users' `Stale`
                            // condition may have (see sources.rs).
                            let users = informer.sources.lock().unwrap().users(&ns, &source);
                            for k in users { queue.add(k); }
                        } else if let Some(k) = keys.service_of(&kv.key) {
                            known.insert(k.clone());
                            queue.add(k);
                        }
                    }
                    WatchEvent::Connected(up) => {
                        let _ = ready.send(if up { Readiness::Ready } else {
                            Readiness::NotReady(format!("etcd at {} unreachable", ctx.store.endpoints()))
                        });
                    }
                }
                ctx.metrics.queue_depth.set(queue.len() as i64);
            }
        }
    };
    term.cancel();
    for h in handles {
        let _ = h.await;
    }
    reason
}
