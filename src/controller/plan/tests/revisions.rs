//! Spec revisions: one per distinct spec (not per scale), records naming the
//! latest, the last ten kept plus any still run, and all purged with the service.

use super::*;
use crate::model::KEEP_REVISIONS;

/// Writes a new spec (same scale) with `env: {V: <v>}`.
fn edit_env(s: &mut Sim, v: u32) {
    s.rev += 1;
    let scale = match &s.o.spec {
        SpecState::Valid { stored: st, .. } => st.service.desired_scale(),
        _ => 0,
    };
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, &format!("  env: {{V: \"{v}\"}}\n"))),
        revision: s.rev,
    };
}

fn numbers(s: &Sim) -> Vec<u64> {
    let mut n: Vec<u64> = s.o.revisions.iter().map(|r| r.value.revision).collect();
    n.sort();
    n
}

#[test]
fn the_first_look_makes_revision_1_and_records_name_it() {
    let mut s = Sim::new(2, &["n1"]);
    let p = s.step();
    let new = p.new_revision.as_ref().expect("a first revision");
    assert_eq!(new.revision, 1);
    assert_eq!(new.spec_revision, 10, "the spec key's mod revision");
    assert_eq!(new.spec.scale, None, "scale is not part of a revision");
    assert_eq!(p.create.len(), 2);
    assert!(p.create.iter().all(|r| r.revision == 1));
    let p = s.step();
    assert!(p.new_revision.is_none(), "the same spec makes none");
    assert_eq!(numbers(&s), [1]);
}

#[test]
fn a_spec_change_makes_the_next_revision_and_new_instances_run_it() {
    let mut s = Sim::converged(2, &["n1"]);
    edit_env(&mut s, 1);
    let p = s.step();
    assert_eq!(p.new_revision.as_ref().map(|r| r.revision), Some(2));
    assert!(p.create.is_empty(), "running instances keep their spec");
    assert!(s.o.instances.iter().all(|i| i.value.revision == 1));
    // A scale-up now places instances of revision 2.
    s.scale_op(3, ScaleMode::Immediate, 1, 0, true);
    if let SpecState::Valid { stored: st, .. } = &mut s.o.spec {
        st.service.env.insert("V".into(), "1".into());
    }
    let p = s.step();
    assert!(p.new_revision.is_none(), "a scale makes no revision");
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].revision, 2);
}

#[test]
fn scale_and_scaling_changes_make_no_revision() {
    let mut s = Sim::converged(2, &["n1"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert!(p.new_revision.is_none());
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(4, "  scaling: {mode: gradual, step: 2}\n")),
        revision: s.rev,
    };
    let p = s.step();
    assert!(
        p.new_revision.is_none(),
        "scaling is not what instances run"
    );
    assert_eq!(numbers(&s), [1]);
}

#[test]
fn the_health_gate_reads_the_probe_from_the_records_revision() {
    let probe = "  health:\n    readiness: {type: tcp, port: 1, failureThreshold: 2}\n";
    let mut s = Sim::new(1, &["n1"]);
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(1, probe)),
        revision: 10,
    };
    s.step();
    s.agents(true);
    s.step();
    s.scale_op(2, ScaleMode::Immediate, 1, 0, true);
    if let SpecState::Valid { stored: st, .. } = &mut s.o.spec {
        **st = stored(2, probe);
    }
    let p = s.step();
    assert_eq!(p.create.len(), 1);
    let id = p.create[0].id.clone();
    let mut st = status(&id, Phase::Running, false);
    st.readiness_failures = 1;
    s.o.statuses.insert(id.clone(), st.clone());
    s.step();
    assert_eq!(
        s.phase(),
        OperationPhase::Progressing,
        "below the threshold"
    );
    st.readiness_failures = 2;
    st.probe_error = "refused".into();
    s.o.statuses.insert(id, st);
    s.step();
    assert_eq!(s.phase(), OperationPhase::RolledBack, "{:?}", s.o.status);
}

#[test]
fn the_last_ten_and_those_still_run_are_kept() {
    let mut s = Sim::converged(1, &["n1"]);
    for v in 0..14 {
        edit_env(&mut s, v);
        s.step();
    }
    // Revision 1 is still run by the first instance; 2..=5 are run by none.
    let mut want: Vec<u64> = vec![1];
    want.extend(15 - KEEP_REVISIONS as u64 + 1..=15);
    assert_eq!(numbers(&s), want);
    // Once nothing runs revision 1 either, it goes too.
    let first = s.o.instances[0].value.clone();
    s.o.instances.clear();
    s.o.statuses.remove(&first.id);
    let p = s.step();
    assert!(p.create.iter().all(|r| r.revision == 15));
    assert!(
        p.prune_revisions.iter().any(|v| v.value == 1),
        "{:?}",
        p.prune_revisions
    );
    assert_eq!(numbers(&s).len(), KEEP_REVISIONS);
}

#[test]
fn numbers_are_never_reused_not_even_after_an_unparseable_one() {
    let mut s = Sim::converged(1, &["n1"]);
    s.o.unparseable.push(Unparseable {
        kind: RecordKind::Revision,
        key: "/r/revisions/default/api/7".into(),
        name: "7".into(),
        revision: 3,
        error: "expected value".into(),
    });
    let p = s.step();
    assert_eq!(p.new_revision.as_ref().map(|r| r.revision), Some(8));
}

#[test]
fn deleting_the_service_purges_its_revisions() {
    let mut s = Sim::converged(1, &["n1"]);
    edit_env(&mut s, 1);
    s.step();
    assert_eq!(numbers(&s), [1, 2]);
    s.o.spec = SpecState::Missing;
    s.step();
    s.agents(false);
    let p = s.step();
    assert!(p.purge, "the revisions are purged with the rest");
    assert!(s.o.revisions.is_empty());
    // Revisions alone left over still make a purge (they would be orphans).
    s.o.has_status = false;
    s.o.operation_revision = None;
    s.o.revisions.push(Versioned::new(
        Revision {
            namespace: "default".into(),
            service: "api".into(),
            revision: 1,
            spec: crate::model::revision::template(&stored(1, "").service),
            spec_revision: 1,
            created_at: t(0),
            changed_by: None,
            change_cause: None,
        },
        5,
    ));
    let p = s.step();
    assert!(p.purge);
}

#[test]
fn a_revision_records_who_changed_the_spec_and_why() {
    let mut s = Sim::converged(1, &["n1"]);
    let mut next = stored(1, "  env: {A: b}\n");
    next.changed_by = Some("ana@laptop".into());
    next.change_cause = Some("bump A".into());
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(next),
        revision: s.rev,
    };
    let p = s.step();
    let new = p.new_revision.expect("the spec changed");
    assert_eq!(new.revision, 2);
    assert_eq!(new.changed_by.as_deref(), Some("ana@laptop"));
    assert_eq!(new.change_cause.as_deref(), Some("bump A"));
    // A cause alone changes no spec: no revision.
    let mut same = stored(1, "  env: {A: b}\n");
    same.change_cause = Some("only words".into());
    s.rev += 1;
    s.o.spec = SpecState::Valid {
        stored: Box::new(same),
        revision: s.rev,
    };
    assert!(s.step().new_revision.is_none());
}
