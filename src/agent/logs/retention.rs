//! Which logs of ended instances to delete: a pure function of the ended logs (their
//! instance, end time and size), the policy and the time now, so the policy is tested
//! without files or clocks. `keeper.rs` gathers the input and deletes the answer.
//!
//! Logs of instances that still have a record never reach this function: only ended
//! ones are candidates, and they are kept for post-mortems within three bounds.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::model::{InstanceRef, ServiceRef};

/// How much of ended instances' logs an agent keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// The most recently ended instances kept per service: a crash-looping service
    /// replaced every few seconds keeps its last few, not hundreds.
    pub per_service: usize,
    /// Deleted this long after the instance ended.
    pub max_age: Duration,
    /// The kept logs together stay within this, the oldest deleted first.
    pub max_bytes: u64,
}

/// One ended instance's log, rotation included.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedLog {
    pub instance: InstanceRef,
    /// Wall-clock, not monotonic: it outlives the agent as the file's mtime.
    pub ended: SystemTime,
    pub bytes: u64,
}

/// The logs to delete now, oldest first. Kept are, newest first, those within their
/// service's count and the age limit, up to the first that would exceed the total
/// size: it and everything older goes, so the size limit deletes the oldest first.
pub fn expired(logs: &[EndedLog], policy: &Retention, now: SystemTime) -> Vec<InstanceRef> {
    let mut newest_first: Vec<&EndedLog> = logs.iter().collect();
    newest_first.sort_by(|a, b| (b.ended.cmp(&a.ended)).then_with(|| a.instance.cmp(&b.instance)));
    let mut per_service: HashMap<&ServiceRef, usize> = HashMap::new();
    let mut total = 0u64;
    let mut full = false;
    let mut doomed = Vec::new();
    for log in newest_first {
        let seen = per_service.entry(&log.instance.service).or_default();
        *seen += 1;
        // A clock stepped back makes an end time lie in the future: age zero.
        let age = now.duration_since(log.ended).unwrap_or_default();
        let counted = *seen <= policy.per_service && age <= policy.max_age;
        full = full || (counted && total.saturating_add(log.bytes) > policy.max_bytes);
        if counted && !full {
            total += log.bytes;
        } else {
            doomed.push(log.instance.clone());
        }
    }
    doomed.reverse();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const POLICY: Retention = Retention {
        per_service: 2,
        max_age: Duration::from_secs(3600),
        max_bytes: 10 * MIB,
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    /// `svc/id` ended at `ended` seconds, `bytes` long.
    fn log(instance: &str, ended: u64, bytes: u64) -> EndedLog {
        let (svc, id) = instance.split_once('/').unwrap();
        EndedLog {
            instance: ServiceRef::new("default", svc).instance(id),
            ended: at(ended),
            bytes,
        }
    }

    fn ids(doomed: &[InstanceRef]) -> Vec<String> {
        doomed
            .iter()
            .map(|i| format!("{}/{}", i.service.name, i.id))
            .collect()
    }

    #[test]
    fn nothing_ended_nothing_deleted() {
        assert!(expired(&[], &POLICY, at(0)).is_empty());
    }

    #[test]
    fn keeps_the_most_recently_ended_per_service() {
        let logs = [
            log("crash/a", 10, 1),
            log("crash/b", 20, 1),
            log("crash/c", 30, 1),
            log("crash/d", 40, 1),
            log("web/x", 5, 1),
        ];
        // web's one log is older than every crash log, but counts for web alone.
        assert_eq!(
            ids(&expired(&logs, &POLICY, at(60))),
            ["crash/a", "crash/b"]
        );
        let none = Retention {
            per_service: 0,
            ..POLICY
        };
        assert_eq!(expired(&logs, &none, at(60)).len(), logs.len());
    }

    #[test]
    fn deletes_past_the_age_limit_whatever_the_count() {
        let logs = [log("crash/old", 0, 1), log("crash/new", 3000, 1)];
        assert!(
            expired(&logs, &POLICY, at(3600)).is_empty(),
            "exactly at the limit"
        );
        assert_eq!(ids(&expired(&logs, &POLICY, at(3601))), ["crash/old"]);
        assert_eq!(expired(&logs, &POLICY, at(9999)).len(), 2);
    }

    #[test]
    fn an_end_time_in_the_future_counts_as_just_ended() {
        let logs = [log("crash/a", 100, 1)];
        assert!(expired(&logs, &POLICY, at(0)).is_empty());
    }

    #[test]
    fn the_total_size_deletes_the_oldest_first() {
        let logs = [
            log("a/1", 10, 4 * MIB),
            log("b/1", 20, 4 * MIB),
            log("c/1", 30, 4 * MIB),
            log("d/1", 40, MIB),
        ];
        // Newest first: d, c, b fit in 10 MiB (9); a would make 13.
        assert_eq!(ids(&expired(&logs, &POLICY, at(60))), ["a/1"]);
        // Once the cap is reached, an older log goes even when it alone would fit.
        let logs = [
            log("a/1", 10, 1),
            log("b/1", 20, 9 * MIB),
            log("c/1", 30, 2 * MIB),
        ];
        assert_eq!(ids(&expired(&logs, &POLICY, at(60))), ["a/1", "b/1"]);
        // A newest log larger than the cap on its own takes everything with it.
        let logs = [log("a/1", 10, 1), log("b/1", 20, 11 * MIB)];
        assert_eq!(ids(&expired(&logs, &POLICY, at(60))), ["a/1", "b/1"]);
    }

    #[test]
    fn logs_deleted_by_count_or_age_use_none_of_the_size() {
        let logs = [
            log("crash/a", 10, 9 * MIB), // beyond crash's count
            log("crash/b", 20, MIB),
            log("crash/c", 30, MIB),
            log("old/x", 0, 9 * MIB), // past the age limit below
            log("web/y", 3000, 8 * MIB),
        ];
        assert_eq!(
            ids(&expired(&logs, &POLICY, at(3601))),
            ["old/x", "crash/a"]
        );
    }

    proptest! {
        /// What is kept is within every bound, and the policy asks nothing more of
        /// what it kept: sweeping again deletes nothing.
        #[test]
        fn kept_logs_are_within_bounds_and_stay(
            raw in prop::collection::vec((0u8..4, 0u64..200, 0u64..5 * MIB), 0..40),
            per_service in 0usize..4,
            max_age in 0u64..200,
            max_bytes in 0u64..20 * MIB,
        ) {
            let logs: Vec<EndedLog> = raw
                .iter()
                .enumerate()
                .map(|(n, (svc, ended, bytes))| log(&format!("s{svc}/{n}"), *ended, *bytes))
                .collect();
            let policy = Retention { per_service, max_age: Duration::from_secs(max_age), max_bytes };
            let now = at(200);
            let doomed = expired(&logs, &policy, now);
            let kept: Vec<EndedLog> = logs
                .iter()
                .filter(|l| !doomed.contains(&l.instance))
                .cloned()
                .collect();
            prop_assert_eq!(kept.len() + doomed.len(), logs.len());
            prop_assert!(kept.iter().map(|l| l.bytes).sum::<u64>() <= max_bytes);
            for l in &kept {
                prop_assert!(now.duration_since(l.ended).unwrap() <= policy.max_age);
                let same = kept.iter().filter(|k| k.instance.service == l.instance.service);
                prop_assert!(same.count() <= per_service);
            }
            prop_assert!(expired(&kept, &policy, now).is_empty());
        }
    }
}
