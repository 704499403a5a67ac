//! The census: finished records are removed, but only once they are finished:
//! after a lost node's grace, an ended instance's pause, or its agent's report.

use super::*;

#[test]
fn lost_nodes_are_replaced_only_after_the_grace_period() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.remove("n2");
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(5));
    let p = s.step();
    assert!(p.create.is_empty(), "within grace");
    assert!(p.requeue_after.unwrap() <= Duration::from_secs(25));
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(31));
    let p = s.step();
    assert!(p.remove.is_empty(), "nobody can say it is gone");
    assert_eq!(p.stop.len(), 1);
    assert!(p.stop[0].value.node_lost && p.stop[0].value.desired == DesiredState::Stopped);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].node, "n1");
    assert_eq!(
        s.o.status.current_replicas, 1,
        "the given-up one is not counted"
    );
    let lost = s.o.status.condition(ConditionKind::NodeLost).unwrap();
    assert_eq!(lost.reason, "Replaced");

    // The node's agent comes back and reports the process it stopped: removed.
    s.o.nodes.insert("n2".into(), node("n2").1);
    s.o.node_lost_for.clear();
    s.agents(true);
    let p = s.step();
    assert_eq!(p.remove.len(), 1);
}

#[test]
fn too_many_nodes_lost_at_once_pauses_replacements() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.clear();
    for n in ["n1", "n2"] {
        s.o.node_lost_for.insert(n.into(), Duration::from_secs(600));
    }
    s.o.disruption = Some("2 of 2 nodes are lost at once".into());
    let p = s.step();
    assert!(p.stop.is_empty() && p.create.is_empty() && p.remove.is_empty());
    assert_eq!(
        s.o.status.current_replicas, 2,
        "still counted: state unknown"
    );
    let lost = s.o.status.condition(ConditionKind::NodeLost).unwrap();
    assert_eq!(lost.reason, "ReplacementsPaused");
}

#[test]
fn a_stop_waits_for_instances_of_a_lost_node_and_fails_naming_them() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.clear();
    s.scale_op(0, ScaleMode::Immediate, 1, 0, true);
    let p = s.step();
    assert_eq!(p.stop.len(), 2);
    assert!(p.remove.is_empty(), "no agent confirmed anything");
    s.step();
    assert_eq!(s.phase(), OperationPhase::Progressing);
    s.o.now = t(301);
    s.step();
    let op = s.o.status.operation.as_ref().unwrap();
    assert!(op.phase.is_terminal(), "{:?}", op.phase);
    assert!(
        op.message.contains("on lost nodes")
            && op.message.contains("node n1")
            && op.message.contains("rune node forget n1 n2"),
        "{}",
        op.message
    );
}

#[test]
fn an_instance_that_ended_for_good_is_replaced_after_a_pause_not_in_a_tight_loop() {
    let mut s = Sim::converged(1, &["n1"]);
    let id = s.o.instances[0].value.id.clone();
    let st = s.o.statuses.get_mut(&id).unwrap();
    st.phase = Phase::Failed;
    st.ready = false;
    st.last_exit = Some(ExitInfo {
        code: Some(1),
        signal: None,
        at: t(0),
        reason: String::new(),
    });
    let p = s.step();
    assert!(
        p.create.is_empty() && p.remove.is_empty(),
        "keeps its slot for a while"
    );
    assert!(p.requeue_after.unwrap() <= replace_after(0));
    s.o.now = t(replace_after(0).as_secs() as i64);
    let p = s.step();
    assert_eq!((p.remove.len(), p.create.len()), (1, 1));
}

#[test]
fn a_stopped_record_waits_for_its_agents_report() {
    let mut s = Sim::new(1, &["n1"]);
    s.step();
    let id = s.o.instances[0].value.id.clone();
    s.o.instances[0].value.desired = DesiredState::Stopped;
    let p = s.step();
    assert!(
        p.remove.is_empty(),
        "no status yet: the process may be starting"
    );
    s.o.now = t(UNREPORTED_GRACE.as_secs() as i64);
    let p = s.step();
    assert_eq!(
        p.remove.first().map(|removed| removed.value.clone()),
        Some(id)
    );
}

#[test]
fn a_lost_node_during_a_step_is_looked_at_after_the_grace_not_the_deadline() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.scale_op(4, ScaleMode::Immediate, 1, 0, true);
    s.o.nodes.remove("n2");
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(10));
    let p = s.step();
    assert!(
        p.requeue_after.unwrap() <= Duration::from_secs(20),
        "{:?}",
        p.requeue_after
    );
}

#[test]
fn a_stop_after_the_grace_still_waits_for_the_given_up_instances() {
    let mut s = Sim::converged(2, &["n1", "n2"]);
    s.o.nodes.remove("n2");
    s.o.node_lost_for
        .insert("n2".into(), Duration::from_secs(600));
    s.step(); // the n2 instance is given up and replaced on n1
    s.agents(true);
    s.step();
    assert_eq!(s.o.status.current_replicas, 2);
    s.scale_op(0, ScaleMode::Immediate, 1, 0, true);
    s.step();
    s.agents(true);
    s.step();
    assert_eq!(
        s.phase(),
        OperationPhase::Progressing,
        "n1's instances are gone, n2's is unconfirmed"
    );
    s.o.now = t(400);
    s.step();
    let op = s.o.status.operation.as_ref().unwrap();
    assert!(op.message.contains("node n2"), "{}", op.message);
}

#[test]
fn replacements_of_instances_that_keep_failing_back_off_and_say_so() {
    let mut s = Sim::converged(1, &["n1"]);
    let mut waited = Vec::new();
    for round in 0..4 {
        let id =
            s.o.instances
                .iter()
                .find(|instance| instance.value.desired == DesiredState::Running)
                .unwrap()
                .value
                .id
                .clone();
        let st =
            s.o.statuses
                .entry(id.clone())
                .or_insert_with(|| status(&id, Phase::Failed, false));
        st.phase = Phase::Failed;
        st.ready = false;
        st.ready_at = None;
        st.last_exit = Some(ExitInfo {
            code: Some(1),
            signal: None,
            at: s.o.now,
            reason: String::new(),
        });
        let ended_at = s.o.now;
        // Not replaced a second before its back-off is over; replaced at it.
        let mut wait = 0;
        loop {
            let p = s.step();
            if !p.remove.is_empty() {
                assert_eq!(p.create.len(), 1, "round {round}");
                break;
            }
            wait += 1;
            s.o.now = t(ended_at.as_second() - 1_800_000_000 + wait);
        }
        waited.push(wait);
        assert_eq!(s.o.status.consecutive_failures, round + 1);
    }
    assert_eq!(waited, [10, 20, 40, 80], "doubling from 10s");
    let failing =
        s.o.status
            .condition(ConditionKind::InstancesFailing)
            .unwrap();
    assert_eq!(failing.reason, "CrashLoopBackOff");
    assert!(
        failing.message.contains("4 instance(s) in a row"),
        "{}",
        failing.message
    );

    // An instance that comes up ready forgives it all.
    s.agents(true);
    s.step();
    assert_eq!(s.o.status.consecutive_failures, 0);
    assert!(!s.o.status.is_true(ConditionKind::InstancesFailing));
}
