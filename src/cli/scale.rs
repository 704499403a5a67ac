//! `rune scale`, `rune restart`, `rune stop`: write the new scale and an operation
//! record in one transaction (compare-and-swap on the spec's mod revision), then
//! wait for the controller's verdict unless `--no-wait`.

use std::time::Duration;

use jiff::Timestamp;

use super::wait::{self, WaitFor};
use crate::exit::{self, Error};
use crate::model::operation::{self, BASE_TIMEOUT, RollingRequest};
use crate::model::update::{self, Count};
use crate::model::{
    OperationKind, OperationRecord, ScaleMode, ScalePlan, StoredService, duration, limits,
};
use crate::store::cas::{Decision, Guard, Outcome};
use crate::store::{Store, op};

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// How long the whole operation may take, at least 1s; stored in the operation
    /// record, so the controller enforces it too (default 5m; longer for long
    /// gradual plans). When no controller picked the operation up by then, the CLI
    /// stops waiting (exit 3).
    #[arg(long, value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Return as soon as the request is stored; print the operation id.
    #[arg(long)]
    pub no_wait: bool,
    /// The service's namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Why (recorded in the operation and shown by `rune history`).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune scale api 5
  rune scale api 5 --no-wait
  rune scale api 10 --mode=gradual --step=2 --interval=30s
  rune scale api 10 --rollback-on-fail=false
  rune scale workers 50 --mode=gradual --step=5 --interval=1m
  rune scale api 3 --current-replicas 5      # only if it is at 5 now

Waits until the rollout completes; exits 0 when done, 1 when it failed and was rolled
back (or pinned with --rollback-on-fail=false), 3 when it stopped waiting, 4 when
another operation superseded it or --current-replicas did not hold, 5 on etcd trouble.")]
pub struct ScaleArgs {
    /// The service.
    pub name: String,
    /// Desired number of instances.
    #[arg(allow_negative_numbers = true)]
    pub replicas: i64,
    /// immediate: go to N at once; gradual: --step instances every --interval.
    #[arg(long, value_enum, default_value = "immediate")]
    pub mode: ModeArg,
    /// Instances added or removed per step (gradual), 1 to 10000.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub step: i64,
    /// Time between steps (gradual), at most 24h.
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Revert to the previous scale on health failure.
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rollback_on_fail: bool,
    /// Precondition: only scale if the service's scale is this now (exit 4 otherwise).
    #[arg(long)]
    pub current_replicas: Option<u32>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Immediate,
    Gradual,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune restart api
  rune restart api --no-wait
  rune restart api --rolling
  rune restart api --rolling --max-surge 25% --max-unavailable 0 --min-ready 10s

Stops every instance, waits until all are gone, then starts the previous scale from
the current spec (this is how spec edits reach running instances). On a stopped
service it brings back the last non-zero scale.

With --rolling, or on a service whose spec says `update: {strategy: Rolling}`, it
replaces instances batch by batch instead: new ones start (at most --max-surge
beyond the scale), and old ones stop once new ones are ready for --min-ready, never
leaving fewer than scale - --max-unavailable ready. The defaults come from the
spec's `update:` (maxSurge 1, maxUnavailable 0, minReadySeconds 0).")]
pub struct RestartArgs {
    /// The service.
    pub name: String,
    /// Replace instances batch by batch instead of stopping them all first.
    #[arg(long)]
    pub rolling: bool,
    /// Rolling: most instances beyond the scale at once, a number or a
    /// percentage of the scale (rounded up) [default: the spec's update.maxSurge, 1].
    #[arg(long, value_name = "N|P%", value_parser = parse_surge)]
    pub max_surge: Option<Count>,
    /// Rolling: most instances below the scale that may be unavailable, a number or
    /// a percentage (rounded down) [default: the spec's update.maxUnavailable, 0].
    #[arg(long, value_name = "N|P%", value_parser = parse_unavailable)]
    pub max_unavailable: Option<Count>,
    /// Rolling: how long a new instance must stay ready before it counts, at most
    /// 1h [default: the spec's update.minReadySeconds, 0s].
    #[arg(long, value_name = "D", value_parser = parse_min_ready)]
    pub min_ready: Option<Duration>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn parse_surge(text: &str) -> Result<Count, String> {
    Count::parse("--max-surge", text)
}

fn parse_unavailable(text: &str) -> Result<Count, String> {
    Count::parse("--max-unavailable", text)
}

/// `--min-ready`: at most [`limits::MAX_MIN_READY`].
fn parse_min_ready(text: &str) -> Result<Duration, String> {
    limits::at_most("--min-ready", duration::parse(text)?, limits::MAX_MIN_READY)
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune stop api
  rune scale api 3      # bring it back

Sets the desired scale to 0 and waits until every process is gone. The spec stays.")]
pub struct StopArgs {
    /// The service.
    pub name: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `--timeout`: a duration from [`MIN_TIMEOUT`] to 7 days (outside them, clap's
/// usage error names the bound: exit 2).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    operation::check_timeout(duration::parse(text)?)
}

/// `--interval`: at most [`limits::MAX_INTERVAL`].
fn parse_interval(text: &str) -> Result<Duration, String> {
    limits::at_most("the interval", duration::parse(text)?, limits::MAX_INTERVAL)
}

struct Request {
    /// A restart's rolling overrides, when asked with --rolling or its flags.
    rolling: Option<RollingRequest>,
    kind: OperationKind,
    mode: ScaleMode,
    step: u32,
    interval: Duration,
    rollback_on_fail: bool,
    precondition: Option<u32>,
}

pub async fn scale(store: &Store, a: ScaleArgs) -> exit::Result<()> {
    // Read into the stored type only through the bounds: nothing truncates.
    let bounded = |what: &str, n: i64, min: u64| {
        let n = u64::try_from(n)
            .map_err(|_| Error::usage(format!("{what} must be {min} or more, got {n}")))?;
        limits::within(what, n, min, limits::MAX_SCALE as u64).map_err(Error::usage)
    };
    let to = bounded("replicas", a.replicas, 0)?;
    let step = bounded("--step", a.step, 1)?;
    let req = Request {
        rolling: None,
        kind: OperationKind::Scale,
        mode: match a.mode {
            ModeArg::Immediate => ScaleMode::Immediate,
            ModeArg::Gradual => ScaleMode::Gradual,
        },
        step,
        interval: a.interval,
        rollback_on_fail: a.rollback_on_fail,
        precondition: a.current_replicas,
    };
    submit(store, &a.name, Target::Exactly(to), req, a.wait).await
}

pub async fn restart(store: &Store, a: RestartArgs) -> exit::Result<()> {
    let overrides = RollingRequest {
        max_surge: a.max_surge,
        max_unavailable: a.max_unavailable,
        min_ready: a.min_ready,
    };
    let rolling = (a.rolling || overrides != RollingRequest::default()).then_some(overrides);
    let req = Request {
        rolling,
        kind: OperationKind::Restart,
        mode: ScaleMode::Immediate,
        step: 1,
        interval: Duration::ZERO,
        rollback_on_fail: false,
        precondition: None,
    };
    submit(store, &a.name, Target::Current, req, a.wait).await
}

pub async fn stop(store: &Store, a: StopArgs) -> exit::Result<()> {
    let req = Request {
        rolling: None,
        kind: OperationKind::Stop,
        mode: ScaleMode::Immediate,
        step: 1,
        interval: Duration::ZERO,
        rollback_on_fail: false,
        precondition: None,
    };
    submit(store, &a.name, Target::Exactly(0), req, a.wait).await
}

enum Target {
    Exactly(u32),
    /// The current scale (restart); a stopped service gets its last non-zero scale.
    Current,
}

async fn submit(
    store: &Store,
    name: &str,
    target: Target,
    req: Request,
    w: WaitArgs,
) -> exit::Result<()> {
    let ns = w.namespace.as_str();
    let mut submission = Submission {
        ns,
        name,
        target,
        req,
        args: &w,
        announced: false,
    };
    // A conflict reads the spec again and applies on top: the latest intent wins,
    // the other writer's operation is superseded.
    let what = format!("service {ns}/{name}");
    let written = store
        .read_modify_write(&what, async || submission.decide(store).await)
        .await?;
    let Outcome::Written {
        answer: record,
        revision,
    } = written
    else {
        unreachable!("every attempt decides to write");
    };
    if w.no_wait {
        println!("{}", record.id);
        return Ok(());
    }
    wait::wait(store, ns, name, &record, revision, WaitFor::default()).await
}

/// A request on its way into etcd: what each attempt decides from, and whether a
/// note was printed already (an attempt after a conflict must not repeat it).
struct Submission<'a> {
    ns: &'a str,
    name: &'a str,
    target: Target,
    req: Request,
    args: &'a WaitArgs,
    announced: bool,
}

impl Submission<'_> {
    /// A restart's rolling settings: the flags' overrides (`--rolling` or any of
    /// its flags), or none for a `Rolling` service (the spec's `update:` then),
    /// checked against the spec's so both counts are never 0. `None` for a
    /// stop-the-world restart, a scale, a stop.
    fn rolling(&self, stored: &StoredService) -> exit::Result<Option<RollingRequest>> {
        if self.req.kind != OperationKind::Restart {
            return Ok(None);
        }
        let spec = stored.service.update_settings();
        let request = match &self.req.rolling {
            Some(request) => request.clone(),
            None if stored.service.is_rolling() => RollingRequest::default(),
            None => return Ok(None),
        };
        update::check_counts(
            request.max_surge.unwrap_or(spec.max_surge),
            request.max_unavailable.unwrap_or(spec.max_unavailable),
        )
        .map_err(|e| {
            Error::usage(format!(
                "{e} (--max-surge {}, --max-unavailable {}, with the spec's update: settings)",
                request.max_surge.unwrap_or(spec.max_surge),
                request.max_unavailable.unwrap_or(spec.max_unavailable)
            ))
        })?;
        Ok(Some(request))
    }

    /// One attempt: read the service, check the request against it, and decide the
    /// spec's new scale and the operation record, guarded on the spec as read.
    async fn decide(&mut self, store: &Store) -> exit::Result<Decision<OperationRecord>> {
        let (ns, name, req) = (self.ns, self.name, &self.req);
        let spec_key = store.keys().service(ns, name);
        let op_key = store.keys().operation(ns, name);
        let state = store.service_state(ns, name).await?;
        let Some(kv) = &state.spec else {
            return Err(super::get::not_found(ns, name));
        };
        let stored = StoredService::parse(&kv.key, &kv.value, ns, name)
            .map_err(|e| Error::usage(format!("the stored spec is invalid; fix it first: {e}")))?;
        if stored.deletion_timestamp.is_some() {
            return Err(Error::conflict(format!(
                "service {ns}/{name} is being deleted"
            )));
        }
        let from = stored.service.desired_scale();
        if let Some(expect) = req.precondition
            && expect != from
        {
            return Err(Error::conflict(format!(
                "precondition failed: service {ns}/{name} is at scale {from}, not {expect} (--current-replicas)"
            )));
        }
        let to = match self.target {
            Target::Exactly(n) => n,
            Target::Current if from > 0 => from,
            Target::Current => {
                let last = state.status().last_nonzero_replicas.filter(|n| *n > 0).ok_or_else(|| {
                    Error::conflict(format!(
                        "service {ns}/{name} is stopped and has never run at a non-zero scale; use rune scale {name} N"
                    ))
                })?;
                if !self.announced {
                    eprintln!(
                        "service {ns}/{name} is stopped; restarting it at its last scale, {last}"
                    );
                    self.announced = true;
                }
                last
            }
        };
        let rolling = self.rolling(&stored)?;
        let plan = ScalePlan {
            mode: req.mode,
            from,
            to,
            step: req.step,
            interval: req.interval,
        };
        let needed = plan.length();
        let timeout = match self.args.timeout {
            Some(t) if t < needed => {
                return Err(Error::usage(format!(
                    "--timeout {} is shorter than the plan needs: {} steps {} apart take {}",
                    duration::format(t),
                    plan.steps(),
                    duration::format(req.interval),
                    duration::format(needed)
                )));
            }
            Some(t) => t,
            None => {
                let t = plan.default_timeout();
                if t > BASE_TIMEOUT && !self.announced {
                    eprintln!(
                        "note: this plan needs {} of intervals; --timeout defaults to {} (plan + 5m)",
                        duration::format(needed),
                        duration::format(t)
                    );
                    self.announced = true;
                }
                t
            }
        };
        // The record we overwrite, if no controller took it up yet, lives on in
        // ours: the controller records it as superseded, so it shows in history.
        let observed_operation = state.status().observed_operation;
        let supersedes = state
            .operation
            .as_ref()
            .and_then(|kv| {
                let previous = kv.json::<OperationRecord>().ok()?;
                Some(previous.carried_over(kv.mod_revision, observed_operation))
            })
            .unwrap_or_default();
        let record = OperationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind: req.kind,
            from,
            to,
            mode: req.mode,
            step: req.step,
            interval: req.interval,
            rollback_on_fail: req.rollback_on_fail,
            timeout,
            requested_at: Timestamp::now(),
            requested_by: requested_by(),
            reason: self.args.reason.clone().unwrap_or_default(),
            supersedes,
            rolling,
        };
        let mut next = stored.clone();
        next.service.scale = Some(to);
        Ok(Decision::Write {
            guard: Guard::on(&spec_key, Some(kv)),
            ops: vec![
                op::put(&spec_key, next.to_json()),
                op::put_json(&op_key, &record),
            ],
            answer: record,
        })
    }
}

/// `user@host`, for the operation record.
pub(crate) fn requested_by() -> String {
    let user = std::env::var("USER")
        .ok()
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", crate::host::hostname())
}
