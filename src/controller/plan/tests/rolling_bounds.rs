//! A property: whatever the world does between looks (instances becoming ready
//! or not, crashing, stopped ones exiting late, nodes lost and back, cordons and
//! drains, casts of a new template, a new scale or another strategy mid-rollout,
//! rolling restarts superseding each other), no look of a running rolling
//! operation creates an instance beyond `desired + maxSurge` records (nor, with a
//! pinned port, beside another record on its node), nor stops an available one
//! below `desired - maxUnavailable` available. And once the world behaves again,
//! every operation ends: one that succeeded leaves the desired count, all on the
//! spec's template (no rollout that loops or never finishes).

use proptest::prelude::*;

use super::rolling::{cast, current_stored, restart};
use super::*;

#[derive(Debug, Clone)]
enum Act {
    /// Time passes by this many seconds, then the controller looks.
    Look(u8),
    /// Agents report: each running instance ready or not by the mask's bit;
    /// stopped ones exit when `exit` says so.
    Agents {
        mask: u16,
        exit: bool,
    },
    /// The instance at this index (of the records) ends with an error.
    Crash(u8),
    /// A cast: template version, scale, and whether the strategy stays Rolling.
    Cast {
        version: u8,
        scale: u8,
        rolling: bool,
    },
    /// `rune restart --rolling` (a second one supersedes the first).
    Restart,
    /// Node n3 cordoned, drained, or back to normal.
    NodeState {
        cordoned: bool,
        draining: bool,
    },
    /// Node n2 goes away, or comes back.
    LoseNode,
    ReturnNode,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        5 => (1u8..20).prop_map(Act::Look),
        4 => (any::<u16>(), any::<bool>()).prop_map(|(mask, exit)| Act::Agents { mask, exit }),
        1 => (0u8..16).prop_map(Act::Crash),
        1 => (0u8..3, 0u8..6, prop::bool::weighted(0.8))
            .prop_map(|(version, scale, rolling)| Act::Cast { version, scale, rolling }),
        1 => Just(Act::Restart),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(cordoned, draining)| Act::NodeState { cordoned, draining }),
        1 => Just(Act::LoseNode),
        1 => Just(Act::ReturnNode),
    ]
}

fn spec_lines(update: &str, pinned: bool, version: u8) -> String {
    spec_lines_with(update, pinned, version, true)
}

fn spec_lines_with(update: &str, pinned: bool, version: u8, rolling: bool) -> String {
    let strategy = if rolling { "Rolling" } else { "Recreate" };
    let ports = if pinned {
        "  ports: [{name: http, port: 8080}]\n"
    } else {
        ""
    };
    format!("  update: {{strategy: {strategy}, {update}}}\n  env: {{V: '{version}'}}\n{ports}")
}

/// Available as the rollout counts it: running, on a live node, ready for minReadySeconds.
fn available(s: &Sim, min_ready: Duration) -> Vec<String> {
    s.o.instances
        .iter()
        .filter(|i| i.value.desired == DesiredState::Running)
        .filter(|i| s.o.nodes.contains_key(&i.value.node))
        .filter(|i| {
            s.o.statuses.get(&i.value.id).is_some_and(|st| {
                st.ready
                    && st
                        .ready_at
                        .is_some_and(|at| crate::model::duration::add(at, min_ready) <= s.o.now)
            })
        })
        .map(|i| i.value.id.clone())
        .collect()
}

/// Records that hold a slot: all but the ones given up with their lost node, and
/// stopped ones on a node lost for its grace (30s).
fn records(s: &Sim) -> usize {
    s.o.instances
        .iter()
        .filter(|i| !i.value.node_lost)
        .filter(|i| {
            i.value.desired == DesiredState::Running
                || s.o
                    .node_lost_for
                    .get(&i.value.node)
                    .is_none_or(|lost| *lost < Duration::from_secs(30))
        })
        .count()
}

fn check(update: &str, pinned: bool, scale: u32, acts: &[Act]) -> Result<(), TestCaseError> {
    let mut s = Sim::new(scale, &["n1", "n2", "n3"]);
    let mut version = 0;
    s.o.spec = SpecState::Valid {
        stored: Box::new(stored(scale, &spec_lines(update, pinned, version))),
        revision: 10,
    };
    s.step();
    s.agents(true);
    s.step();
    let mut lost: Option<(String, NodeRecord)> = None;
    let mut lost_at = 0;
    let mut now = 100;
    for a in acts {
        match a {
            Act::Look(secs) => {
                now += i64::from(*secs);
                s.o.now = t(now);
                if let Some((name, _)) = &lost {
                    let since = Duration::from_secs((now - lost_at) as u64);
                    s.o.node_lost_for.insert(name.clone(), since);
                }
                // Ready (and since when) before the look; available as the
                // rollout counts it once its minReadySeconds is known.
                let ready_before: Vec<(String, Timestamp)> = available(&s, Duration::ZERO)
                    .into_iter()
                    .filter_map(|id| Some((id.clone(), s.o.statuses.get(&id)?.ready_at?)))
                    .collect();
                let p = s.step();
                let Some(op) = s.o.status.running_operation() else {
                    continue;
                };
                let Some(rolling) = op.rolling.clone() else {
                    continue;
                };
                let desired = op.to as usize;
                let before: Vec<&String> = ready_before
                    .iter()
                    .filter(|(_, at)| {
                        crate::model::duration::add(*at, rolling.min_ready) <= s.o.now
                    })
                    .map(|(id, _)| id)
                    .collect();
                if !p.create.is_empty() {
                    prop_assert!(
                        records(&s) <= desired + rolling.max_surge as usize,
                        "{} records > {desired} + {} after creating {}: {:?}",
                        records(&s),
                        rolling.max_surge,
                        p.create.len(),
                        s.o.status.operation
                    );
                }
                if pinned {
                    // A pinned port: never two records (running or stopping) on
                    // the node of a new one.
                    for created in &p.create {
                        let on_node =
                            s.o.instances
                                .iter()
                                .filter(|i| !i.value.node_lost && i.value.node == created.node)
                                .count();
                        prop_assert!(on_node <= 1, "{on_node} records on {}", created.node);
                    }
                }
                // With a pinned port and no free node it stops one, then starts one.
                let max_unavailable = if pinned {
                    rolling.max_unavailable.max(1)
                } else {
                    rolling.max_unavailable
                };
                let stopped_available = p
                    .stop
                    .iter()
                    .filter(|stop| before.contains(&&stop.value.id))
                    .count();
                if stopped_available > 0 {
                    let after = available(&s, rolling.min_ready).len();
                    prop_assert!(
                        after + max_unavailable as usize >= desired,
                        "{after} available < {desired} - {max_unavailable} after stopping \
                         {stopped_available} available: {:?}",
                        s.o.status.operation
                    );
                }
            }
            Act::Agents { mask, exit } => {
                let ids: Vec<(String, bool, bool)> =
                    s.o.instances
                        .iter()
                        .map(|i| {
                            (
                                i.value.id.clone(),
                                i.value.desired == DesiredState::Stopped,
                                s.o.nodes.contains_key(&i.value.node),
                            )
                        })
                        .collect();
                for (n, (id, stopped, alive)) in ids.into_iter().enumerate() {
                    if !alive {
                        continue;
                    }
                    let st =
                        s.o.statuses
                            .entry(id.clone())
                            .or_insert_with(|| status(&id, Phase::Running, false));
                    if stopped {
                        if *exit {
                            st.phase = Phase::Exited;
                            st.ready = false;
                        }
                        continue;
                    }
                    if !st.phase.is_live() {
                        continue;
                    }
                    let ready = mask & (1 << (n % 16)) != 0;
                    if ready && !st.ready {
                        st.ready_at = Some(t(now));
                    }
                    st.ready = ready;
                }
            }
            Act::Crash(n) => {
                let Some(id) = s.o.instances.get(*n as usize).map(|i| i.value.id.clone()) else {
                    continue;
                };
                if let Some(st) = s.o.statuses.get_mut(&id) {
                    st.phase = Phase::Failed;
                    st.ready = false;
                }
            }
            Act::Cast {
                version: v,
                scale: to,
                rolling,
            } => {
                version = *v;
                let lines = spec_lines_with(update, pinned, version, *rolling);
                cast(&mut s, u32::from(*to), &lines);
            }
            Act::Restart => {
                restart(&mut s, Some(Default::default()));
            }
            Act::NodeState { cordoned, draining } => {
                s.o.node_states.insert(
                    "n3".into(),
                    NodeState {
                        cordoned: *cordoned || *draining,
                        draining: *draining,
                        by: "me@here".into(),
                        at: t(now),
                        reason: String::new(),
                    },
                );
            }
            Act::LoseNode => {
                if lost.is_none() {
                    lost = s.o.nodes.remove_entry("n2");
                    lost_at = now;
                    if let Some((name, _)) = &lost {
                        s.o.node_lost_for.insert(name.clone(), Duration::ZERO);
                    }
                }
            }
            Act::ReturnNode => {
                if let Some((name, record)) = lost.take() {
                    s.o.node_lost_for.remove(&name);
                    s.o.nodes.insert(name, record);
                }
            }
        }
    }
    settle(&mut s, lost, now)
}

/// Then the world behaves (the node back, every agent prompt, nothing crashing):
/// whatever runs ends, and a rollout that succeeded leaves exactly the desired
/// instances, every one on the spec's template.
fn settle(
    s: &mut Sim,
    lost: Option<(String, NodeRecord)>,
    mut now: i64,
) -> Result<(), TestCaseError> {
    if let Some((name, record)) = lost {
        s.o.node_lost_for.remove(&name);
        s.o.nodes.insert(name, record);
    }
    s.o.node_states.clear();
    for _ in 0..300 {
        now += 10;
        s.o.now = t(now);
        agents_prompt(s, now);
        s.step();
    }
    prop_assert!(
        s.o.status.running_operation().is_none(),
        "never ends: {:?}\nhistory: {:#?}",
        s.o.status.operation,
        s.o.status
            .history
            .iter()
            .map(|h| format!("{h:?}"))
            .collect::<Vec<_>>()
    );
    let op = s.o.status.operation.clone();
    // (A failed rollout pauses where it is, by design; a scale beyond the nodes a
    // pinned port allows never succeeds.)
    if op
        .as_ref()
        .is_some_and(|op| op.phase == OperationPhase::Succeeded)
        && current_stored(s).service.is_rolling()
    {
        let wanted = crate::model::revision::template(&current_stored(s).service);
        let running: Vec<_> =
            s.o.instances
                .iter()
                .filter(|i| i.value.desired == DesiredState::Running)
                .collect();
        prop_assert_eq!(
            running.len() as u32,
            s.o.status.desired_replicas,
            "{:?}",
            op
        );
        for i in running {
            let spec =
                s.o.revisions
                    .iter()
                    .find(|r| r.value.revision == i.value.revision)
                    .map(|r| crate::model::revision::template(&r.value.spec));
            prop_assert_eq!(spec.as_ref(), Some(&wanted), "{:?}", op);
        }
    }
    Ok(())
}

/// Every agent does its job at once: running instances ready (since `now`),
/// stopped ones exited, crashed ones stay crashed until replaced.
fn agents_prompt(s: &mut Sim, now: i64) {
    for instance in &s.o.instances {
        let record = &instance.value;
        let st =
            s.o.statuses
                .entry(record.id.clone())
                .or_insert_with(|| status(&record.id, Phase::Running, false));
        if record.desired == DesiredState::Stopped {
            st.phase = Phase::Exited;
            st.ready = false;
        } else if st.phase.is_live() && !st.ready {
            st.ready = true;
            st.ready_at = Some(t(now));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn rolling_looks_keep_the_surge_and_availability_bounds(
        update in prop_oneof![
            Just("maxSurge: 1, maxUnavailable: 0"),
            Just("maxSurge: 2, maxUnavailable: 1"),
            Just("maxSurge: 0, maxUnavailable: 1"),
            Just("maxSurge: 25%, maxUnavailable: 25%, minReadySeconds: 5"),
            Just("maxSurge: 50%, maxUnavailable: 0, progressDeadline: 30s"),
        ],
        pinned in any::<bool>(),
        scale in 0u32..6,
        acts in proptest::collection::vec(act(), 1..80),
    ) {
        check(update, pinned, scale, &acts)?;
    }
}
