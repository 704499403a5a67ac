//! Waiting on an operation: watch (not poll) the service's status and operation
//! keys until the controller reaches a verdict, showing progress as it goes — a
//! live bar on a terminal, one plain line per change elsewhere (CI logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;

use crate::exit::{self, Error, Exit};
use crate::model::{OperationKind, OperationPhase, OperationRecord, ServiceStatus, duration};
use crate::store::Store;
use crate::store::watch::{WatchEvent, watch_prefix};

/// How long the CLI waits past a deadline for the controller's verdict.
#[derive(Debug, Clone)]
pub struct WaitFor {
    /// Past the request's own deadline while no controller picked the operation
    /// up: just long enough for a pickup at the last moment to show.
    pub unclaimed: Duration,
    /// Past the controller's deadline once one picked the operation up: its
    /// reconcile at the deadline writes the verdict.
    pub verdict: Duration,
    /// How long without etcd before giving up with exit 5.
    pub etcd_outage: Duration,
}

impl Default for WaitFor {
    fn default() -> Self {
        WaitFor {
            unclaimed: Duration::from_millis(500),
            verdict: Duration::from_secs(3),
            etcd_outage: Duration::from_secs(30),
        }
    }
}

/// The monotonic instant `grace` after the wall-clock `deadline`, seen from
/// `now` (wall clock) and `now_instant` (monotonic, the same moment).
fn past(deadline: Timestamp, grace: Duration, now: Timestamp, now_instant: Instant) -> Instant {
    let left: Duration = deadline.duration_since(now).try_into().unwrap_or_default();
    now_instant + left + grace
}

/// What a status says about our operation.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not picked up by a controller yet.
    Waiting,
    /// Under way; the line to show.
    Progress,
    Done(OperationPhase, String, Option<String>),
}

/// Reads our operation's fate out of a status.
pub fn verdict(status: &ServiceStatus, op: &OperationRecord) -> Verdict {
    if let Some(p) = status.operation.as_ref().filter(|p| p.id == op.id) {
        return if p.phase.is_terminal() {
            Verdict::Done(p.phase, p.message.clone(), p.superseded_by.clone())
        } else {
            Verdict::Progress
        };
    }
    if let Some(h) = status.history.iter().find(|h| h.id == op.id) {
        let by = status.operation.as_ref().map(|p| p.id.clone());
        let msg = if h.error.is_empty() {
            format!("{}", h.result)
        } else {
            h.error.clone()
        };
        return Verdict::Done(h.result, msg, by);
    }
    Verdict::Waiting
}

fn left(now: Timestamp, until: Timestamp) -> String {
    let secs = until.duration_since(now).as_secs().max(0) as u64;
    duration::format(Duration::from_secs(secs))
}

/// One line of progress: counts, step i of n, time left in the interval, timeout.
pub fn progress_line(status: &ServiceStatus, now: Timestamp) -> String {
    let mut line = status.counts();
    let Some(p) = &status.operation else {
        return line;
    };
    if let Some(rolling) = &p.rolling {
        line = format!("updated {}/{} · {line}", rolling.updated, p.to);
    }
    if p.steps > 1 {
        line.push_str(&format!(
            " · step {} of {} (to {})",
            p.step, p.steps, p.step_target
        ));
    }
    if let Some(next) = p.next_step_at()
        && !p.hold().is_zero()
    {
        line.push_str(&format!(" · next step in {}", left(now, next)));
    }
    line.push_str(&format!(" · timeout in {}", left(now, p.deadline)));
    line
}

fn done_word(kind: OperationKind, to: u32) -> String {
    match kind {
        OperationKind::Scale => format!("scaled to {to}"),
        OperationKind::Restart => format!("restarted ({to} ready)"),
        OperationKind::Stop => "stopped (every instance is gone)".into(),
        OperationKind::Rollout => format!("rolled out ({to} updated)"),
    }
}

struct Display {
    bar: Option<ProgressBar>,
    last: String,
}

impl Display {
    fn new() -> Display {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").unwrap());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Display {
            bar,
            last: String::new(),
        }
    }

    fn show(&mut self, line: &str) {
        if line == self.last {
            return;
        }
        self.last = line.to_string();
        match &self.bar {
            Some(b) => b.set_message(line.to_string()),
            None => println!("{} {line}", Timestamp::now().strftime("%H:%M:%S")),
        }
    }

    /// A live display (terminal) re-renders countdowns; plain output does not.
    fn live(&self) -> bool {
        self.bar.is_some()
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub async fn wait(
    store: &Store,
    ns: &str,
    name: &str,
    op: &OperationRecord,
    committed_at: i64,
    cfg: WaitFor,
) -> exit::Result<()> {
    let status_key = store.keys().status(ns, name);
    let op_key = store.keys().operation(ns, name);
    let mut statuses = watch_prefix(store.clone(), status_key.clone());
    let mut ops = watch_prefix(store.clone(), op_key.clone());
    let started = Instant::now();
    // Until a controller says when the operation's deadline is, it is the
    // request's own: the time a controller had to pick it up.
    let requested_deadline = duration::add(op.requested_at, op.timeout);
    let mut give_up_at = past(requested_deadline, cfg.unclaimed, Timestamp::now(), started);
    let mut display = Display::new();
    let mut outage: Option<Instant> = None;
    let mut picked_up = false;
    let what = format!("{} {ns}/{name}", op.kind);
    display.show(&format!(
        "{what}: waiting for the controller (operation {})",
        op.id
    ));
    let mut shown: Option<ServiceStatus> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The exit for a finished operation.
    let conclude = |v: Verdict| -> Option<exit::Result<String>> {
        match v {
            Verdict::Waiting | Verdict::Progress => None,
            Verdict::Done(OperationPhase::Succeeded, _, _) => Some(Ok(format!(
                "service {ns}/{name} {} in {:.1}s",
                done_word(op.kind, op.to),
                started.elapsed().as_secs_f64()
            ))),
            Verdict::Done(OperationPhase::Superseded, msg, by) => {
                Some(Err(Error::conflict(format!(
                    "{what} was superseded{}: {msg}",
                    by.map(|b| format!(" by operation {b}")).unwrap_or_default()
                ))))
            }
            Verdict::Done(phase, msg, _) => Some(Err(Error::new(
                Exit::OperationFailed,
                format!("{what} {}: {msg}", phase.to_string().to_lowercase()),
            ))),
        }
    };
    let outcome = loop {
        let timer = tokio::time::sleep_until(give_up_at.into());
        let hint = tokio::time::sleep(Duration::from_secs(10));
        // The watch reports an outage once; this gives up when it lasts too long.
        let outage_over =
            tokio::time::sleep_until(outage.map_or(give_up_at, |o| o + cfg.etcd_outage).into());
        tokio::select! {
            _ = timer => {
                let why = if picked_up {
                    format!("no outcome by the operation's deadline (+{}s)", cfg.verdict.as_secs())
                } else {
                    format!(
                        "no controller picked the operation up within its timeout ({}): is rune-controller running? \
                         It stays requested: a controller that starts later runs it then (rune history {name} -n {ns} shows it)",
                        duration::format(op.timeout)
                    )
                };
                break Err(Error::new(Exit::StoppedWaiting, format!("stopped waiting for {what}: {why}")));
            }
            _ = outage_over, if outage.is_some() => {
                break Err(Error::etcd(format!(
                    "etcd at {} unreachable for {}s while waiting for {what}; the operation goes on in the controller",
                    store.endpoints(), cfg.etcd_outage.as_secs()
                )));
            }
            _ = hint, if !picked_up => {
                display.show(&format!("{what}: no controller has picked this up yet (is rune-controller running?)"));
            }
            _ = tick.tick(), if display.live() && shown.is_some() => {
                // Countdowns move even when nothing changes in etcd.
                if let Some(st) = &shown {
                    display.show(&format!("{what}: {}", progress_line(st, Timestamp::now())));
                }
            }
            _ = tokio::signal::ctrl_c() => {
                break Err(Error::new(Exit::StoppedWaiting, format!(
                    "stopped waiting for {what}; the operation goes on in the controller (follow it: rune get service {name} -n {ns} -w)"
                )));
            }
            ev = ops.recv() => {
                let kv = match ev {
                    Some(WatchEvent::Put(kv)) => Some(kv),
                    Some(WatchEvent::Reset { kvs, .. }) => kvs.into_iter().find(|k| k.key == op_key),
                    _ => None,
                };
                if let Some(kv) = kv
                    && kv.key == op_key
                    && kv.mod_revision > committed_at
                    && let Ok(newer) = kv.json::<OperationRecord>()
                    && newer.id != op.id
                {
                    // Ours may have finished just before: its verdict wins.
                    let status = store.get(&status_key).await?.and_then(|kv| kv.json::<ServiceStatus>().ok());
                    if let Some(done) = status.and_then(|st| conclude(verdict(&st, op))) {
                        break done;
                    }
                    break Err(Error::conflict(format!(
                        "{what} was superseded by operation {} ({} to {} requested by {})",
                        newer.id, newer.kind, newer.to, newer.requested_by
                    )));
                }
            }
            ev = statuses.recv() => {
                let Some(ev) = ev else { break Err(Error::etcd("lost the watch on etcd")) };
                let kv = match ev {
                    WatchEvent::Put(kv) if kv.key == status_key => Some(kv),
                    WatchEvent::Reset { kvs, .. } => kvs.into_iter().find(|kv| kv.key == status_key),
                    WatchEvent::Connected(false) => {
                        outage.get_or_insert_with(Instant::now);
                        display.show(&format!("{what}: lost etcd at {}; retrying", store.endpoints()));
                        None
                    }
                    WatchEvent::Connected(true) => { outage = None; None }
                    _ => None,
                };
                let Some(kv) = kv else { continue };
                let Ok(status) = kv.json::<ServiceStatus>() else { continue };
                let v = verdict(&status, op);
                if v == Verdict::Progress {
                    picked_up = true;
                    if let Some(p) = &status.operation {
                        // The controller's deadline bounds the wait now (a late
                        // pickup counts its own).
                        give_up_at = past(p.deadline, cfg.verdict, Timestamp::now(), Instant::now());
                    }
                    display.show(&format!("{what}: {}", progress_line(&status, Timestamp::now())));
                    shown = Some(status);
                    continue;
                }
                if let Some(done) = conclude(v) {
                    break done;
                }
            }
        }
    };
    display.finish();
    let line = outcome?;
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ScaleMode;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn the_wait_ends_a_grace_after_the_deadline_even_one_already_past() {
        let now = Instant::now();
        let grace = Duration::from_secs(1);
        assert_eq!(past(t(3), grace, t(0), now), now + Duration::from_secs(4));
        assert_eq!(past(t(-5), grace, t(0), now), now + grace, "already past");
    }

    #[test]
    fn a_stop_shows_what_is_left_never_ready_of_zero() {
        let stop = OperationRecord {
            id: "op".into(),
            kind: OperationKind::Stop,
            from: 8,
            to: 0,
            mode: ScaleMode::Immediate,
            step: 1,
            interval: Duration::ZERO,
            rollback_on_fail: false,
            timeout: Duration::from_secs(300),
            requested_at: t(0),
            requested_by: "me@here".into(),
            reason: String::new(),
            supersedes: vec![],
            rolling: None,
        };
        let mut progress = stop.start(1, 8, &[], t(0));
        (progress.step, progress.steps, progress.step_target) = (1, 1, 0);
        let status = ServiceStatus {
            ready_replicas: 8,
            current_replicas: 8,
            operation: Some(progress),
            ..ServiceStatus::default()
        };
        assert_eq!(
            progress_line(&status, t(0)),
            "8 running, stopping · timeout in 5m"
        );
    }
}
