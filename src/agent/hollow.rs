//! `rune-agent --hollow N`: N simulated ("hollow") nodes in one process, for testing
//! and benchmarking the control plane at fleet size (after Kubernetes' kubemark).
//!
//! A hollow node is a real agent minus the processes: it registers `nodes/<name>` on a
//! lease of its own through `registration::register` and `registration::keep` (a data
//! dir of its own under `<data-dir>/hollow/<name>`, so a restart reclaims the lease),
//! watches only its own `assignments/<name>/` with the `store::watch` informer, and
//! reports through `reporter::run` (statuses on its lease, batched transactions). What
//! it skips: processes, ports, probes, logs, spec revisions (nothing to start), the
//! self-fence and the handover hold. Every hollow node shares the process's one
//! [`Store`] (one etcd connection), metrics registry and HTTP server.
//!
//! [`Hollow`] is the pure core: it maps one node's record events to the status
//! reports a real agent would make for them (clock passed in, unit-tested below);
//! [`node`] is the thin IO loop around it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, Span, error, info, info_span, warn};

use super::metrics::{AgentMetrics, PhaseLabel};
use super::registration::{self, RegisterError};
use super::reporter::{self, Report};
use super::state::DataDir;
use super::{AgentError, Args, check_node_name, sleep_until_opt};
use crate::model::limits::{self, MAX_HOLLOW_NODES};
use crate::model::{DesiredState, ExitInfo, InstanceRecord, InstanceStatus, Phase};
use crate::serve::{self, Readiness};
use crate::store::watch::{WatchEvent, watch_prefix};
use crate::store::{Keys, Kv, Store};

/// The `message` of a hollow instance's status while it "runs".
pub const MESSAGE: &str = "hollow node: no process";

/// Registrations under way at once (each is a few requests): a start with thousands
/// of hollow nodes does not hit etcd with all of them in the same instant.
const REGISTERING_AT_ONCE: usize = 64;

/// One moment on both clocks: `at` for the readiness deadline, `wall` for the
/// timestamps a status reports.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: Timestamp,
}

impl Now {
    fn read() -> Now {
        Now {
            at: Instant::now(),
            wall: Timestamp::now(),
        }
    }
}

/// A record under this node's prefix that does not parse: logged and counted, and
/// otherwise left alone (as the real agent does).
#[derive(Debug, Clone, PartialEq)]
pub struct Unparseable {
    pub key: String,
    pub error: String,
}

/// What one event comes to: the reports for the reporter, in order, and the
/// records that did not parse.
#[derive(Default)]
pub struct Step {
    pub reports: Vec<Report>,
    pub unparseable: Vec<Unparseable>,
}

/// One simulated instance: its status key, the status last reported and, while it
/// "starts", when it becomes ready.
struct Sim {
    status_key: String,
    status: InstanceStatus,
    ready_due: Option<Instant>,
}

/// The pure core of one hollow node: record events in, status reports out.
pub struct Hollow {
    node: String,
    keys: Keys,
    ready_after: Duration,
    /// By the record's key (`assignments/<node>/<ns>/<svc>/<id>`).
    sims: BTreeMap<String, Sim>,
}

impl Hollow {
    pub fn new(node: &str, keys: Keys, ready_after: Duration) -> Hollow {
        Hollow {
            node: node.to_string(),
            keys,
            ready_after,
            sims: BTreeMap::new(),
        }
    }

    /// Instances this node tracks (running or stopped, until their record goes).
    pub fn len(&self) -> usize {
        self.sims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sims.is_empty()
    }

    /// How many reported statuses are in each phase, by phase name.
    pub fn phases(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for s in self.sims.values() {
            *out.entry(s.status.phase.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// When the next instance becomes ready ([`Self::tick`] then).
    pub fn next_due(&self) -> Option<Instant> {
        self.sims.values().filter_map(|s| s.ready_due).min()
    }

    /// The instance status key for a record key of this node, if it is one.
    fn status_key(&self, key: &str) -> Option<String> {
        let seg = self.keys.segments("assignments", key)?;
        let [node, ns, svc, id] = seg.as_slice() else {
            return None;
        };
        (*node == self.node).then(|| self.keys.instance_status(ns, svc, id))
    }

    /// The informer's full listing: this node's records are exactly these.
    pub fn reset(&mut self, kvs: &[Kv], now: Now) -> Step {
        let mut step = Step::default();
        let listed: BTreeSet<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        let gone: Vec<String> = self
            .sims
            .keys()
            .filter(|k| !listed.contains(k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            self.forget(&key, &mut step);
        }
        for kv in kvs {
            self.apply(kv, now, &mut step);
        }
        step
    }

    /// A record was written.
    pub fn put(&mut self, kv: &Kv, now: Now) -> Step {
        let mut step = Step::default();
        self.apply(kv, now, &mut step);
        step
    }

    /// A record was deleted: its status goes.
    pub fn delete(&mut self, key: &str) -> Step {
        let mut step = Step::default();
        self.forget(key, &mut step);
        step
    }

    /// Readiness deadlines that have passed: those instances are ready now.
    pub fn tick(&mut self, now: Now) -> Step {
        let mut step = Step::default();
        for sim in self.sims.values_mut() {
            if sim.ready_due.is_some_and(|due| due <= now.at) {
                sim.ready_due = None;
                became_ready(&mut sim.status, now);
                step.reports.push(report(sim));
            }
        }
        step
    }

    fn apply(&mut self, kv: &Kv, now: Now, step: &mut Step) {
        let Some(status_key) = self.status_key(&kv.key) else {
            return;
        };
        let record = match InstanceRecord::parse(&kv.value) {
            Ok(r) => r,
            Err(error) => {
                // The controller removes such a record; until then there is nothing
                // to act on, and what was reported stays.
                step.unparseable.push(Unparseable {
                    key: kv.key.clone(),
                    error,
                });
                return;
            }
        };
        if record.node != self.node {
            // Not (or no longer) ours.
            return self.forget(&kv.key, step);
        }
        let ready_after = self.ready_after;
        let sim = self.sims.entry(kv.key.clone()).or_insert_with(|| Sim {
            status_key,
            status: InstanceStatus::pending(&record.id, &record.node),
            ready_due: None,
        });
        let ended = matches!(sim.status.phase, Phase::Exited | Phase::Failed);
        match record.desired {
            // A new record, or one that said Stopped and says Running again: a fresh
            // "start" (restarts and the last exit stay, as with a real agent).
            DesiredState::Running if sim.status.phase == Phase::Pending || ended => {
                let s = &mut sim.status;
                s.phase = Phase::Starting;
                s.ready = false;
                s.message = MESSAGE.to_string();
                s.started_at = Some(now.wall);
                s.ready_at = None;
                sim.ready_due = now.at.checked_add(ready_after);
                if ready_after.is_zero() {
                    sim.ready_due = None;
                    became_ready(&mut sim.status, now);
                }
                step.reports.push(report(sim));
            }
            DesiredState::Running => {}
            DesiredState::Stopped if ended => {}
            DesiredState::Stopped => {
                // What a real agent reports once the process ended after a stop (a
                // record that never ran is reported stopped, with no exit).
                let s = &mut sim.status;
                if s.started_at.is_some() {
                    s.last_exit = Some(ExitInfo {
                        code: None,
                        signal: None,
                        at: now.wall,
                        reason: "stopped on request".into(),
                    });
                }
                s.phase = Phase::Exited;
                s.ready = false;
                s.message = "stopped on request".into();
                sim.ready_due = None;
                step.reports.push(report(sim));
            }
        }
    }

    fn forget(&mut self, key: &str, step: &mut Step) {
        if let Some(sim) = self.sims.remove(key) {
            step.reports.push(Report::Delete(sim.status_key));
        }
    }
}

fn became_ready(s: &mut InstanceStatus, now: Now) {
    s.phase = Phase::Running;
    s.ready = true;
    s.ready_at = Some(now.wall);
}

fn report(sim: &Sim) -> Report {
    Report::Set(sim.status_key.clone(), Box::new(sim.status.clone()))
}

/// `--hollow N`: 1 to [`MAX_HOLLOW_NODES`].
pub fn check_count(n: u64) -> Result<usize, AgentError> {
    limits::within("--hollow (hollow nodes)", n, 1, MAX_HOLLOW_NODES as u64)
        .map(|n| n as usize)
        .map_err(AgentError::Setup)
}

/// `<base>-0` … `<base>-<n-1>`, each a valid node name.
pub fn names(base: &str, n: usize) -> Result<Vec<String>, AgentError> {
    let names: Vec<String> = (0..n).map(|i| format!("{base}-{i}")).collect();
    for name in &names {
        check_node_name(name)?;
    }
    Ok(names)
}

/// What every hollow node shares.
struct Ctx {
    store: Store,
    data_root: PathBuf,
    /// The process's HTTP address, each node record's `address`.
    address: String,
    lease_ttl: Duration,
    ready_after: Duration,
    metrics: Arc<AgentMetrics>,
    registering: Semaphore,
    /// `--label`s and `--capacity`: every hollow node's record carries them.
    labels: BTreeMap<String, String>,
    capacity: u32,
}

/// Runs `count` hollow nodes until SIGTERM/SIGINT, then revokes their leases.
pub async fn run(args: &Args, count: u64) -> Result<(), AgentError> {
    let count = check_count(count)?;
    let described = args.describe(registration::node_record("", String::new()))?;
    let base = args.node_name.clone().unwrap_or_else(crate::host::hostname);
    let names = names(&base, count)?;
    let data = DataDir::new(&args.data_dir)
        .map_err(|e| AgentError::Setup(format!("data dir {}: {e}", args.data_dir.display())))?;
    let _lock = data.lock().map_err(AgentError::Taken)?;
    let data_root = args.data_dir.join("hollow");

    let store = super::connect(&args.etcd).await?;
    super::check_layout(&store).await?;
    let metrics = Arc::new(AgentMetrics::default());
    let registered_gauge = Gauge::<i64>::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    store.metrics().register(&mut registry);
    registry.register(
        "rune_agent_hollow_nodes_registered",
        "hollow nodes registered (of --hollow)",
        registered_gauge.clone(),
    );
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("registering".into()));
    let bound = serve::serve(args.listen, registry, ready_rx)
        .await
        .map_err(|e| AgentError::Setup(e.to_string()))?;
    info!(
        nodes = count,
        first = %names[0],
        listen = %bound,
        ready_after = %humantime::format_duration(args.hollow_ready_after),
        "hollow agent starting (no processes: a testing and benchmarking tool)"
    );

    let ctx = Arc::new(Ctx {
        store: store.clone(),
        data_root,
        address: bound.to_string(),
        lease_ttl: args.lease_ttl,
        ready_after: args.hollow_ready_after,
        metrics,
        registering: Semaphore::new(REGISTERING_AT_ONCE),
        labels: described.labels,
        capacity: described.capacity,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    let mut nodes = JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        // Every log line of a hollow node, its registration's and reporter's too,
        // names it.
        let span = info_span!("hollow", node = %name);
        nodes.spawn(node(ctx.clone(), i, name, stop_rx.clone(), up_tx.clone()).instrument(span));
    }
    drop(up_tx);

    let shutdown = crate::host::shutdown_signal();
    tokio::pin!(shutdown);
    let mut up: BTreeSet<usize> = BTreeSet::new();
    loop {
        tokio::select! {
            ev = up_rx.recv() => {
                let Some((i, registered)) = ev else {
                    // Every hollow node has stopped on its own (each says why).
                    return Err(AgentError::Taken(
                        "no hollow node is left running: their names are taken by other \
                         agents (or their data dirs cannot be used); see the log".into(),
                    ));
                };
                if registered { up.insert(i); } else { up.remove(&i); }
                registered_gauge.set(up.len() as i64);
                let _ = ready_tx.send(if up.len() == count {
                    Readiness::Ready
                } else {
                    Readiness::NotReady(format!("{} of {count} hollow nodes registered", up.len()))
                });
            }
            _ = &mut shutdown => break,
        }
    }
    info!(
        nodes = count,
        "hollow agent exiting; revoking every hollow node's lease"
    );
    let _ = ready_tx.send(Readiness::NotReady("shutting down".into()));
    let _ = stop_tx.send(true);
    let all_done = async { while nodes.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(20), all_done)
        .await
        .is_err()
    {
        warn!("some hollow nodes did not finish in time; their leases will expire");
    }
    Ok(())
}

/// One hollow node: register, then watch its assignments and report, until told to
/// stop (then its lease is revoked) or its name is taken by another agent.
async fn node(
    ctx: Arc<Ctx>,
    index: usize,
    name: String,
    mut stop: watch::Receiver<bool>,
    up: mpsc::UnboundedSender<(usize, bool)>,
) {
    let store = &ctx.store;
    let data = match DataDir::new(&ctx.data_root.join(&name)) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            error!(error = %e, "hollow node not started: its data dir cannot be used");
            return;
        }
    };
    let mut record = registration::node_record(&name, ctx.address.clone());
    record.labels = ctx.labels.clone();
    record.capacity = ctx.capacity;
    let reg = tokio::select! {
        reg = register(&ctx, &data, record) => match reg {
            Some(reg) => reg,
            None => return,
        },
        _ = stopped(&mut stop) => return,
    };

    let (lease_tx, lease_rx) = watch::channel(reg.lease.id);
    let (renewed_tx, _renewed) = watch::channel(Instant::now());
    let (count_tx, count_rx) = watch::channel(0u32);
    let mut registered = lease_rx.clone();
    let mut keeper = tokio::spawn(
        registration::keep(
            store.clone(),
            data.clone(),
            reg,
            ctx.lease_ttl,
            lease_tx,
            renewed_tx,
            count_rx,
            // Simulated instances ask for no resources.
            watch::channel((0, 0)).1,
        )
        .instrument(Span::current()),
    );
    let (reports, reports_rx) = mpsc::unbounded_channel();
    // The reporter's phase gauges are per node: it gets metrics of its own, and the
    // shared gauges are kept below, summed over every hollow node.
    let reporter = tokio::spawn(
        reporter::run(
            store.clone(),
            reports_rx,
            lease_rx,
            Arc::new(AgentMetrics::default()),
        )
        .instrument(Span::current()),
    );
    let _ = up.send((index, true));
    let mut informer = watch_prefix(store.clone(), store.keys().assignments_of(&name));
    let mut hollow = Hollow::new(&name, store.keys().clone(), ctx.ready_after);
    let mut phases = Phases::new(&ctx.metrics);
    loop {
        let due = hollow.next_due();
        let step = tokio::select! {
            ev = informer.recv() => match ev {
                Some(WatchEvent::Reset { kvs, .. }) => hollow.reset(&kvs, Now::read()),
                Some(WatchEvent::Put(kv)) => hollow.put(&kv, Now::read()),
                Some(WatchEvent::Delete(kv)) => hollow.delete(&kv.key),
                Some(WatchEvent::Connected(_)) => Step::default(),
                None => break,
            },
            _ = sleep_until_opt(due) => hollow.tick(Now::read()),
            changed = registered.changed() => {
                if changed.is_err() {
                    // The registration task ended: the name was taken.
                    let taken = (&mut keeper).await;
                    return taken_over(taken, index, &up, reporter, phases);
                }
                let _ = up.send((index, *registered.borrow_and_update() != 0));
                Step::default()
            }
            taken = &mut keeper => {
                return taken_over(taken, index, &up, reporter, phases);
            }
            _ = stopped(&mut stop) => break,
        };
        for bad in step.unparseable {
            warn!(key = %bad.key, error = %bad.error, "ignoring an instance record that does not parse");
            ctx.metrics.unparseable_records.inc();
        }
        for r in step.reports {
            let _ = reports.send(r);
        }
        let _ = count_tx.send(hollow.len() as u32);
        phases.set(hollow.phases());
    }

    // Shutting down: no more renewals or status writes, then the lease goes and
    // with it the node key and every status on it.
    keeper.abort();
    let _ = keeper.await;
    reporter.abort();
    phases.set(BTreeMap::new());
    let lease = *registered.borrow();
    if lease != 0
        && let Err(e) = store.revoke_lease(lease).await
    {
        warn!(error = %e, "revoking the hollow node's lease failed; it will expire");
    }
}

/// Resolves once the process is shutting down (or its signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Registers, retrying while etcd fails; `None` when the name is taken (this hollow
/// node then does not run; the others do).
async fn register(
    ctx: &Ctx,
    data: &DataDir,
    record: crate::model::NodeRecord,
) -> Option<registration::Registration> {
    let _permit = ctx.registering.acquire().await.ok()?;
    let mut delay = Duration::from_millis(200);
    loop {
        match registration::register(&ctx.store, data, record.clone(), ctx.lease_ttl).await {
            Ok(reg) => return Some(reg),
            Err(e @ RegisterError::Taken { .. }) => {
                error!(error = %e, "hollow node not started");
                return None;
            }
            Err(e) => {
                warn!(error = %e, "registering a hollow node failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Another agent took this hollow node's name while its lease was lost: this hollow
/// node stops (its statuses went with its lease); the others go on.
fn taken_over(
    taken: Result<RegisterError, tokio::task::JoinError>,
    index: usize,
    up: &mpsc::UnboundedSender<(usize, bool)>,
    reporter: tokio::task::JoinHandle<()>,
    mut phases: Phases,
) {
    let why = match taken {
        Ok(e) => e.to_string(),
        Err(e) => format!("registration task failed: {e}"),
    };
    error!(reason = %why, "hollow node's name lost to another agent; this hollow node stops");
    reporter.abort();
    phases.set(BTreeMap::new());
    let _ = up.send((index, false));
}

/// One hollow node's share of the shared phase gauges (`rune_agent_instances`).
struct Phases {
    metrics: Arc<AgentMetrics>,
    last: BTreeMap<String, i64>,
}

impl Phases {
    fn new(metrics: &Arc<AgentMetrics>) -> Phases {
        Phases {
            metrics: metrics.clone(),
            last: BTreeMap::new(),
        }
    }

    /// Moves the shared gauges by the difference from this node's last counts.
    fn set(&mut self, now: BTreeMap<String, i64>) {
        let phases: BTreeSet<&String> = self.last.keys().chain(now.keys()).collect();
        for phase in phases {
            let delta = now.get(phase).unwrap_or(&0) - self.last.get(phase).unwrap_or(&0);
            if delta != 0 {
                self.metrics
                    .instances
                    .get_or_create(&PhaseLabel {
                        phase: phase.clone(),
                    })
                    .inc_by(delta);
            }
        }
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "h-0";

    fn hollow(ready_after: Duration) -> Hollow {
        Hollow::new(NODE, Keys::new("/t"), ready_after)
    }

    fn at(t0: Instant, secs: u64) -> Now {
        Now {
            at: t0 + Duration::from_secs(secs),
            wall: Timestamp::from_second(1_700_000_000 + secs as i64).unwrap(),
        }
    }

    fn record(id: &str, desired: DesiredState) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            namespace: "ns".into(),
            service: "api".into(),
            node: NODE.into(),
            desired,
            revision: 3,
            created_at: Timestamp::from_second(1_700_000_000).unwrap(),
            operation_id: None,
            node_lost: false,
        }
    }

    fn kv(record: &InstanceRecord) -> Kv {
        kv_raw(
            &format!("/t/assignments/{}/ns/api/{}", record.node, record.id),
            serde_json::to_vec(record).unwrap(),
        )
    }

    fn kv_raw(key: &str, value: Vec<u8>) -> Kv {
        Kv {
            key: key.into(),
            value,
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    /// The reports as (status key, status or None for a delete).
    fn reports(step: Step) -> Vec<(String, Option<InstanceStatus>)> {
        step.reports
            .into_iter()
            .map(|r| match r {
                Report::Set(k, s) => (k, Some(*s)),
                Report::Delete(k) => (k, None),
            })
            .collect()
    }

    fn one(step: Step) -> InstanceStatus {
        let mut r = reports(step);
        assert_eq!(r.len(), 1, "{r:?}");
        let (key, status) = r.remove(0);
        assert!(key.starts_with("/t/instance-status/ns/api/"), "{key}");
        status.expect("a status, not a delete")
    }

    #[test]
    fn a_running_record_is_ready_at_once_without_a_delay() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::ZERO);
        let s = one(h.put(&kv(&record("a", DesiredState::Running)), at(t0, 0)));
        assert_eq!(s.id, "a");
        assert_eq!(s.node, NODE);
        assert_eq!(s.phase, Phase::Running);
        assert!(s.ready);
        assert_eq!(s.pid, None);
        assert_eq!(s.restarts, 0);
        assert_eq!(s.message, MESSAGE);
        assert_eq!(s.started_at, Some(at(t0, 0).wall));
        assert_eq!(s.ready_at, Some(at(t0, 0).wall));
        assert_eq!(h.next_due(), None);
        // The same record again (a resync, an unrelated field) reports nothing new.
        assert!(reports(h.put(&kv(&record("a", DesiredState::Running)), at(t0, 1))).is_empty());
        assert_eq!(h.phases(), BTreeMap::from([("Running".to_string(), 1)]));
    }

    #[test]
    fn with_a_delay_it_starts_not_ready_and_becomes_ready_when_due() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::from_secs(2));
        let s = one(h.put(&kv(&record("a", DesiredState::Running)), at(t0, 0)));
        assert_eq!((s.phase, s.ready), (Phase::Starting, false));
        assert_eq!(s.started_at, Some(at(t0, 0).wall));
        assert_eq!(s.ready_at, None);
        assert_eq!(h.next_due(), Some(at(t0, 2).at));
        assert!(reports(h.tick(at(t0, 1))).is_empty(), "not due yet");
        let s = one(h.tick(at(t0, 2)));
        assert_eq!((s.phase, s.ready), (Phase::Running, true));
        assert_eq!(s.started_at, Some(at(t0, 0).wall));
        assert_eq!(s.ready_at, Some(at(t0, 2).wall));
        assert_eq!(h.next_due(), None);
        assert!(reports(h.tick(at(t0, 5))).is_empty(), "once");
    }

    #[test]
    fn a_stop_reports_exited_at_once_and_a_delete_removes_the_status() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::from_secs(2));
        let running = record("a", DesiredState::Running);
        h.put(&kv(&running), at(t0, 0));
        let s = one(h.put(&kv(&record("a", DesiredState::Stopped)), at(t0, 1)));
        assert_eq!((s.phase, s.ready), (Phase::Exited, false));
        assert_eq!(s.pid, None);
        assert_eq!(s.message, "stopped on request");
        let exit = s.last_exit.expect("how it ended");
        assert_eq!(exit.reason, "stopped on request");
        assert_eq!(exit.at, at(t0, 1).wall);
        assert_eq!(h.next_due(), None, "a stopped instance never becomes ready");
        assert!(reports(h.put(&kv(&record("a", DesiredState::Stopped)), at(t0, 2))).is_empty());

        let r = reports(h.delete(&kv(&running).key));
        assert_eq!(r, vec![("/t/instance-status/ns/api/a".to_string(), None)]);
        assert!(h.is_empty());
        assert!(reports(h.delete(&kv(&running).key)).is_empty(), "once");
    }

    #[test]
    fn a_record_stopped_from_the_start_is_reported_stopped_without_an_exit() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::ZERO);
        let s = one(h.put(&kv(&record("a", DesiredState::Stopped)), at(t0, 0)));
        assert_eq!(s.phase, Phase::Exited);
        assert_eq!((s.last_exit, s.started_at), (None, None));
    }

    #[test]
    fn running_again_after_a_stop_starts_afresh() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::ZERO);
        h.put(&kv(&record("a", DesiredState::Running)), at(t0, 0));
        h.put(&kv(&record("a", DesiredState::Stopped)), at(t0, 1));
        let s = one(h.put(&kv(&record("a", DesiredState::Running)), at(t0, 2)));
        assert_eq!((s.phase, s.ready), (Phase::Running, true));
        assert_eq!(s.started_at, Some(at(t0, 2).wall));
        assert_eq!(s.message, MESSAGE);
        assert!(
            s.last_exit.is_some(),
            "the last exit stays, as with a real agent"
        );
    }

    #[test]
    fn a_reset_reports_new_records_and_deletes_the_statuses_of_vanished_ones() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::ZERO);
        h.put(&kv(&record("gone", DesiredState::Running)), at(t0, 0));
        h.put(&kv(&record("kept", DesiredState::Running)), at(t0, 0));
        let listing = [
            kv(&record("kept", DesiredState::Running)),
            kv(&record("new", DesiredState::Running)),
        ];
        let r = reports(h.reset(&listing, at(t0, 1)));
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0], ("/t/instance-status/ns/api/gone".to_string(), None));
        assert_eq!(r[1].0, "/t/instance-status/ns/api/new");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn unparseable_and_foreign_records_never_crash_and_unparseable_ones_are_counted() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::ZERO);
        let good = record("a", DesiredState::Running);
        h.put(&kv(&good), at(t0, 0));

        // Garbage, an old-layout record, a record of the wrong shape: reported as
        // unparseable, and what was reported for the key stays.
        let old = serde_json::json!({"id": "a", "spec": {"command": ["x"]}});
        for value in [
            b"{not json".to_vec(),
            serde_json::to_vec(&old).unwrap(),
            b"[]".to_vec(),
            vec![0xff, 0xfe],
        ] {
            let step = h.put(&kv_raw(&kv(&good).key, value), at(t0, 1));
            assert_eq!(step.unparseable.len(), 1);
            assert!(step.reports.is_empty());
        }
        assert_eq!(h.len(), 1);
        let step = h.reset(&[kv_raw(&kv(&good).key, b"{".to_vec())], at(t0, 1));
        assert_eq!(step.unparseable.len(), 1);
        assert_eq!(h.len(), 1, "still tracked");

        // Keys that are no record of this node are ignored.
        for key in [
            "/t/assignments/h-1/ns/api/a",
            "/t/assignments/h-0/ns/api",
            "/t/assignments/h-0/ns/api/a/extra",
            "/t/instances/ns/api/a",
            "/other/assignments/h-0/ns/api/a",
        ] {
            let step = h.put(&kv_raw(key, serde_json::to_vec(&good).unwrap()), at(t0, 1));
            assert!(
                step.reports.is_empty() && step.unparseable.is_empty(),
                "{key}"
            );
        }

        // A record under our prefix that names another node is not ours (any more).
        let mut moved = good.clone();
        moved.node = "h-1".into();
        let mut moved_kv = kv(&moved);
        moved_kv.key = kv(&good).key;
        let r = reports(h.put(&moved_kv, at(t0, 1)));
        assert_eq!(r, vec![("/t/instance-status/ns/api/a".to_string(), None)]);
    }

    #[test]
    fn an_absurd_delay_never_becomes_ready_and_never_panics() {
        let t0 = Instant::now();
        let mut h = hollow(Duration::MAX);
        let s = one(h.put(&kv(&record("a", DesiredState::Running)), at(t0, 0)));
        assert_eq!((s.phase, s.ready), (Phase::Starting, false));
        assert_eq!(h.next_due(), None);
    }

    #[test]
    fn counts_and_names_are_bounded() {
        assert!(check_count(0).unwrap_err().to_string().contains("10000"));
        let e = check_count(10_001).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("10000"), "{e}");
        assert_eq!(check_count(10_000).unwrap(), 10_000);
        assert_eq!(names("n", 3).unwrap(), vec!["n-0", "n-1", "n-2"]);
        assert!(names("bad/name", 1).is_err());
        assert!(names(&"x".repeat(251), 11).is_err(), "n-10 is over 253");
    }
}
