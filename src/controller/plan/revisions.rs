//! Spec revisions: each distinct spec the service runs is stored once, under
//! `revisions/<ns>/<svc>/<n>`, and instance records name it. A spec change other
//! than `scale`/`scaling` makes the next revision; new instances run the latest.
//! Revisions are immutable, so the planner only ever creates or deletes them: it
//! keeps the last [`KEEP_REVISIONS`] (what rollout history will show) and any
//! revision an instance still runs, and deletes the rest. A revision is written
//! before (in an earlier or the same transaction as) any record naming it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Observed, Plan, RecordKind};
use crate::model::{KEEP_REVISIONS, Revision, StoredService, Versioned, revision::template};

/// Every revision number stored for the service, with its key's mod revision —
/// also those whose value does not parse: their numbers are never handed out
/// again, and they age out like the others.
fn stored_numbers(observed: &Observed) -> BTreeMap<u64, i64> {
    let parsed = observed
        .revisions
        .iter()
        .map(|r| (r.value.revision, r.revision));
    let unparsed = observed
        .unparseable
        .iter()
        .filter(|bad| bad.kind == RecordKind::Revision)
        .filter_map(|bad| Some((bad.name.parse().ok()?, bad.revision)));
    parsed.chain(unparsed).collect()
}

/// The revision new instances run: the latest, or a new one (put in
/// `plan.new_revision`) when the spec differs from it.
pub(super) fn current(
    observed: &Observed,
    stored: &StoredService,
    spec_revision: i64,
    plan: &mut Plan,
) -> u64 {
    let wanted = template(&stored.service);
    let highest = stored_numbers(observed).keys().next_back().copied();
    let latest = observed.revisions.iter().max_by_key(|r| r.value.revision);
    if let Some(latest) = latest
        && Some(latest.value.revision) == highest
        && latest.value.spec == wanted
    {
        return latest.value.revision;
    }
    let n = highest.unwrap_or(0) + 1;
    plan.new_revision = Some(Revision {
        namespace: stored.service.namespace().to_string(),
        service: stored.service.name().to_string(),
        revision: n,
        spec: wanted,
        spec_revision,
        created_at: observed.now,
        changed_by: stored.changed_by.clone(),
        change_cause: stored.change_cause.clone(),
    });
    n
}

/// Deletes the revisions beyond the last [`KEEP_REVISIONS`] that no instance
/// record names (counting the records and the revision this plan creates).
pub(super) fn prune(observed: &Observed, plan: &mut Plan) {
    let mut numbers = stored_numbers(observed);
    if let Some(new) = &plan.new_revision {
        numbers.insert(new.revision, 0);
    }
    let referenced: BTreeSet<u64> = observed
        .instances
        .iter()
        .map(|instance| instance.value.revision)
        .chain(plan.create.iter().map(|record| record.revision))
        .collect();
    let newest: BTreeSet<u64> = numbers.keys().rev().take(KEEP_REVISIONS).copied().collect();
    plan.prune_revisions = numbers
        .into_iter()
        .filter(|(n, _)| !newest.contains(n) && !referenced.contains(n))
        .map(|(n, mod_revision)| Versioned::new(n, mod_revision))
        .collect();
}
