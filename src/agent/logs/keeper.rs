//! Which instance logs are in use and which belong to ended instances, and the task
//! that rotates the first and deletes the second per [`Retention`].
//!
//! A log is *live* while something holds it: its supervisor, from spawn until it
//! forgets the instance (the record is gone and the process stopped), and the
//! self-fence while it lasts (the records are still there; the instances start again
//! when it ends). A log nothing holds is *ended*, with the time it ended; only those
//! are ever deleted. The set survives restarts through the files themselves: at start
//! every log without a data-dir entry is ended, at its mtime, which the keeper sets
//! to the end time when it first sees an ended log.
//!
//! The file IO — scanning the directory once at start, copying and truncating live
//! logs, sizing and deleting ended ones — runs on tokio's blocking pool. The book
//! itself is in memory behind a mutex never held across IO or an await. Rotation
//! looks at live logs only: an ended log no longer grows.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tracing::{info, warn};

use super::retention::{EndedLog, Retention, expired};
use crate::model::InstanceRef;

/// How often live logs are checked against the cap, and ended ones against the age
/// limit. An instance ending sweeps at once (the count and size limits).
const EVERY: Duration = Duration::from_secs(5);

/// The agent's instance logs; shared by the supervisors and the keeper task.
pub struct Logs {
    dir: PathBuf,
    /// A live log past this is rotated.
    cap: u64,
    book: Mutex<Book>,
    /// An instance ended: sweep now rather than at the next tick.
    ended: Notify,
    /// A sweep finished deleting: starts waiting for their log to be gone go on.
    swept: Notify,
}

#[derive(Default)]
struct Book {
    /// Live logs and how many hold each.
    live: HashMap<InstanceRef, u32>,
    ended: HashMap<InstanceRef, Ended>,
    /// Being deleted right now: an instance coming back must not open its log
    /// before the deletion is done, or it would write to an unlinked file.
    deleting: HashSet<InstanceRef>,
}

#[derive(Debug, Clone, Copy)]
struct Ended {
    at: SystemTime,
    /// Read once, the first time the keeper sees it ended.
    bytes: Option<u64>,
}

/// Runs blocking file IO off the async threads; `None` if it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(error = %e, "instance log housekeeping failed");
            None
        }
    }
}

impl Logs {
    /// The logs in `dir`; nothing is known of them until [`Self::keep`] scans it.
    pub fn new(dir: &Path) -> Arc<Logs> {
        Self::with_cap(dir, super::LOG_CAP)
    }

    /// The logs in `dir`, each rotated past `cap` bytes.
    pub fn with_cap(dir: &Path, cap: u64) -> Arc<Logs> {
        Arc::new(Logs {
            dir: dir.to_path_buf(),
            cap,
            book: Mutex::default(),
            ended: Notify::new(),
            swept: Notify::new(),
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // The book stays consistent whatever panicked while holding it: every
        // change is a single insert or remove.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self, i: &InstanceRef) -> PathBuf {
        self.dir.join(format!("{}.log", i.file_name()))
    }

    /// Marks `i`'s log in use until the matching [`Self::release`].
    pub fn hold(&self, i: &InstanceRef) {
        let mut book = self.book();
        *book.live.entry(i.clone()).or_default() += 1;
        book.ended.remove(i);
    }

    /// Drops a hold; with the last one the log is ended as of now.
    pub fn release(&self, i: &InstanceRef) {
        let mut book = self.book();
        if let Some(n) = book.live.get_mut(i) {
            *n -= 1;
            if *n > 0 {
                return;
            }
            book.live.remove(i);
        }
        book.ended.insert(
            i.clone(),
            Ended {
                at: SystemTime::now(),
                bytes: None,
            },
        );
        self.ended.notify_one();
    }

    /// Returns once `i`'s log is not being deleted. Called before an instance
    /// writes to it: a hold keeps later sweeps off, this waits out one under way.
    pub async fn writable(&self, i: &InstanceRef) {
        loop {
            // Registered before the check, so a sweep ending in between still wakes it.
            let swept = self.swept.notified();
            if !self.book().deleting.contains(i) {
                return;
            }
            swept.await;
        }
    }

    /// The keeper task: learns the ended logs a previous agent left, then rotates
    /// live logs and sweeps ended ones. `known`: the data dir's instances, whose logs
    /// are not ended (adopted, or stopped once etcd says their record is gone).
    pub async fn keep(self: Arc<Self>, policy: Retention, known: HashSet<InstanceRef>) {
        let dir = self.dir.clone();
        match blocking(move || super::scan(&dir)).await {
            Some(Ok(found)) => self.restore(found, &known),
            Some(Err(e)) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot list instance logs")
            }
            None => {}
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.rotate().await,
                _ = self.ended.notified() => {}
            }
            self.sweep(&policy).await;
        }
    }

    /// Takes up the logs found at start: those of instances neither in the data dir
    /// nor seen by this agent meanwhile ended at their mtime.
    fn restore(&self, found: Vec<super::Found>, known: &HashSet<InstanceRef>) {
        let mut book = self.book();
        for f in found {
            let seen = book.live.contains_key(&f.instance) || book.ended.contains_key(&f.instance);
            if !seen && !known.contains(&f.instance) {
                let ended = Ended {
                    at: f.modified,
                    bytes: Some(f.bytes),
                };
                book.ended.insert(f.instance, ended);
            }
        }
    }

    /// Copy-then-truncate for every live log past the cap.
    async fn rotate(&self) {
        let paths: Vec<PathBuf> = self.book().live.keys().map(|i| self.path(i)).collect();
        let cap = self.cap;
        blocking(move || {
            for p in paths {
                if let Err(e) = super::rotate_if_needed(&p, cap) {
                    warn!(path = %p.display(), error = %e, "log rotation failed");
                }
            }
        })
        .await;
    }

    /// Sizes (and seals) newly ended logs, then deletes what the policy says.
    async fn sweep(&self, policy: &Retention) {
        let new: Vec<(InstanceRef, PathBuf, SystemTime)> = self
            .book()
            .ended
            .iter()
            .filter(|(_, e)| e.bytes.is_none())
            .map(|(i, e)| (i.clone(), self.path(i), e.at))
            .collect();
        if !new.is_empty() {
            let sealed = blocking(move || {
                new.into_iter()
                    .map(|(i, path, at)| (i, at, super::seal(&path, at)))
                    .collect::<Vec<_>>()
            })
            .await;
            let mut book = self.book();
            for (i, at, bytes) in sealed.unwrap_or_default() {
                // Unless it came back (and maybe ended again) meanwhile.
                if let Some(e) = book.ended.get_mut(&i).filter(|e| e.at == at) {
                    e.bytes = Some(bytes);
                }
            }
        }
        let doomed = {
            let mut book = self.book();
            let logs: Vec<EndedLog> = book
                .ended
                .iter()
                .filter_map(|(i, e)| {
                    Some(EndedLog {
                        instance: i.clone(),
                        ended: e.at,
                        bytes: e.bytes?,
                    })
                })
                .collect();
            let doomed = expired(&logs, policy, SystemTime::now());
            for i in &doomed {
                book.ended.remove(i);
                book.deleting.insert(i.clone());
            }
            doomed
        };
        if doomed.is_empty() {
            return;
        }
        let paths: Vec<PathBuf> = doomed.iter().map(|i| self.path(i)).collect();
        blocking(move || {
            for p in paths {
                if let Err(e) = super::remove(&p) {
                    warn!(path = %p.display(), error = %e, "cannot delete an ended instance's log");
                }
            }
        })
        .await;
        self.book().deleting.clear();
        self.swept.notify_waiters();
        let instances: Vec<String> = doomed.iter().map(ToString::to_string).collect();
        info!(?instances, "deleted logs of ended instances");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceRef;

    const KEEP_ONE: Retention = Retention {
        per_service: 1,
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
    };

    fn inst(id: &str) -> InstanceRef {
        ServiceRef::new("default", "svc").instance(id)
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("rune-keeper-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        /// Writes `name` with a modification time `ago` in the past.
        fn file(&self, name: &str, ago: Duration) {
            let p = self.0.join(name);
            std::fs::write(&p, "log line\n").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::now() - ago).unwrap();
        }

        fn names(&self) -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn a_restarted_agent_ends_the_logs_no_instance_claims_and_sweeps_them() {
        let d = Dir::new("restore");
        let min = Duration::from_secs(60);
        d.file("default_svc_old.log", 3 * min);
        d.file("default_svc_old.log.1", 4 * min);
        d.file("default_svc_newer.log", 2 * min);
        d.file("default_svc_adopted.log", 10 * min);
        d.file("notes.txt", 10 * min);
        d.file("not_an_instance_log_at_all.log", 10 * min);
        let logs = Logs::new(&d.0);
        let found = super::super::scan(&d.0).unwrap();
        logs.restore(found, &HashSet::from([inst("adopted")]));
        logs.sweep(&KEEP_ONE).await;
        // The oldest ended one goes with its rotation; what the data dir knows,
        // and what is not an instance log, stays.
        assert_eq!(
            d.names(),
            [
                "default_svc_adopted.log",
                "default_svc_newer.log",
                "not_an_instance_log_at_all.log",
                "notes.txt"
            ]
        );
    }

    #[tokio::test]
    async fn held_logs_are_never_deleted_and_the_last_release_ends_them() {
        let d = Dir::new("hold");
        let logs = Logs::new(&d.0);
        let (a, b) = (inst("a"), inst("b"));
        for i in [&a, &b] {
            d.file(&format!("{}.log", i.file_name()), Duration::ZERO);
            logs.hold(i);
        }
        let none = Retention {
            per_service: 0,
            ..KEEP_ONE
        };
        logs.sweep(&none).await;
        assert_eq!(
            d.names().len(),
            2,
            "live logs are not the policy's to judge"
        );

        // Held twice (its supervisor and the fence): ended only with the last.
        logs.hold(&a);
        logs.release(&a);
        logs.sweep(&none).await;
        assert_eq!(d.names().len(), 2);
        logs.release(&a);
        // Ended, then back before a sweep (the fence ended): live again.
        logs.release(&b);
        logs.hold(&b);
        logs.sweep(&none).await;
        assert_eq!(d.names(), ["default_svc_b.log"]);
    }

    #[tokio::test]
    async fn an_ended_log_carries_its_end_time_to_the_next_agent() {
        let d = Dir::new("seal");
        d.file("default_svc_a.log", Duration::from_secs(7200));
        let logs = Logs::new(&d.0);
        logs.hold(&inst("a"));
        logs.release(&inst("a"));
        logs.sweep(&KEEP_ONE).await;
        // Written to last two hours ago, but ended just now: a new agent sees that.
        let next = Logs::new(&d.0);
        next.restore(super::super::scan(&d.0).unwrap(), &HashSet::new());
        let age = next.book().ended[&inst("a")].at.elapsed().unwrap();
        assert!(age < Duration::from_secs(60), "{age:?}");
        next.sweep(&KEEP_ONE).await;
        assert_eq!(d.names(), ["default_svc_a.log"]);
    }

    #[tokio::test]
    async fn a_start_waits_for_its_log_deletion_under_way() {
        let d = Dir::new("wait");
        let logs = Logs::new(&d.0);
        let a = inst("a");
        logs.book().deleting.insert(a.clone());
        let waiting = tokio::spawn({
            let (logs, a) = (logs.clone(), a.clone());
            async move { logs.writable(&a).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        logs.writable(&inst("other")).await;
        logs.book().deleting.clear();
        logs.swept.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken once the deletion is done")
            .unwrap();
    }
}
