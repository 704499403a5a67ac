//! The `Stale` condition: instances run configs or secrets older than the current
//! ones, so a restart would change what they see ("3 of 5 instances run secret db
//! version 2; current is 3"). Kubernetes has no such signal (users add Reloader).
//!
//! Each agent reports the versions an instance started with (`sources` in its
//! status); the reconcile reads the current version of each config and secret the
//! spec or an instance names — metadata in clear, never the data, so the
//! controller needs no key. A source that is gone now is no reason to restart
//! (a restart would fail): it is left out here, and a start reports it.

use std::collections::BTreeMap;

use super::Observed;
use super::census::Census;
use crate::model::{ConditionKind, ConditionStatus, ServiceStatus};

/// Sets `Stale` True with what is stale, or False once nothing is (only when it
/// was set before, so services without configs or secrets never show it).
pub(super) fn stale(observed: &Observed, census: &Census, status: &mut ServiceStatus) {
    let running: Vec<_> = census
        .active
        .iter()
        .filter_map(|a| observed.statuses.get(&a.value.id))
        .filter(|s| s.pid.is_some())
        .collect();
    let total = running.len();
    // (source, version it runs) → how many instances.
    let mut old: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for s in &running {
        for (source, version) in &s.sources {
            let current = observed.source_versions.get(source).copied().flatten();
            if current.is_some_and(|c| c != *version) {
                *old.entry((source.as_str(), *version)).or_default() += 1;
            }
        }
    }
    if old.is_empty() {
        if status.is_true(ConditionKind::Stale) {
            status.set_condition(
                ConditionKind::Stale,
                ConditionStatus::False,
                "UpToDate",
                "every instance runs the current configs and secrets",
                observed.now,
            );
        }
        return;
    }
    let parts: Vec<String> = old
        .iter()
        .map(|((source, version), n)| {
            let current = observed.source_versions[*source].expect("counted only when current");
            let what = source.replacen('/', " ", 1);
            format!("{n} of {total} instances run {what} version {version}; current is {current}")
        })
        .collect();
    let message = format!(
        "{}; a restart picks up the current versions",
        parts.join("; ")
    );
    status.set_condition(
        ConditionKind::Stale,
        ConditionStatus::True,
        "SourcesChanged",
        &message,
        observed.now,
    );
}
