//! The `Stale` condition: instances that run older configs or secrets than the
//! current ones, counted per source and version; cleared once none do.

use super::*;
use crate::model::ConditionStatus;

/// Every instance reports running secret db at `version`.
fn runs(s: &mut Sim, version: u64) {
    for st in s.o.statuses.values_mut() {
        st.sources.insert("secret/db".into(), version);
    }
}

#[test]
fn stale_instances_are_counted_and_the_condition_clears() {
    let mut s = Sim::converged(3, &["n1"]);
    assert!(
        s.o.status.condition(ConditionKind::Stale).is_none(),
        "services without configs or secrets never show it"
    );
    runs(&mut s, 2);
    s.o.source_versions.insert("secret/db".into(), Some(2));
    s.step();
    assert!(s.o.status.condition(ConditionKind::Stale).is_none());
    // The secret is rotated: every instance runs the old version.
    s.o.source_versions.insert("secret/db".into(), Some(3));
    s.step();
    let c = s.o.status.condition(ConditionKind::Stale).unwrap().clone();
    assert_eq!(c.status, ConditionStatus::True);
    assert_eq!(c.reason, "SourcesChanged");
    assert!(
        c.message
            .starts_with("3 of 3 instances run secret db version 2; current is 3"),
        "{}",
        c.message
    );
    // One instance restarted on the new version.
    let first = s.o.instances[0].value.id.clone();
    s.o.statuses
        .get_mut(&first)
        .unwrap()
        .sources
        .insert("secret/db".into(), 3);
    s.step();
    let c = s.o.status.condition(ConditionKind::Stale).unwrap();
    assert!(
        c.message
            .starts_with("2 of 3 instances run secret db version 2")
    );
    // All of them (a restart): cleared.
    runs(&mut s, 3);
    s.step();
    let c = s.o.status.condition(ConditionKind::Stale).unwrap();
    assert_eq!(c.status, ConditionStatus::False);
    assert_eq!(c.reason, "UpToDate");
}

#[test]
fn a_deleted_source_makes_nothing_stale() {
    let mut s = Sim::converged(2, &["n1"]);
    runs(&mut s, 2);
    s.o.source_versions.insert("secret/db".into(), None);
    s.step();
    assert!(s.o.status.condition(ConditionKind::Stale).is_none());
}
