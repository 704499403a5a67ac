//! A service at the end of its life: its spec carries a deletion timestamp (`rune
//! delete`) or its spec key vanished. Every instance is stopped; once none is left,
//! the service's keys are purged. Kept apart from the other concerns because none
//! of them runs for a service that is going away.

use std::time::Duration;

use super::census::Census;
use super::{Observed, Plan, SpecState, conditions};
use crate::model::{ConditionKind, ConditionStatus, DesiredState, InstanceRecord};

/// Stops everything, then purges the service's keys.
pub(super) fn terminate(observed: &Observed, census: &Census, plan: &mut Plan) {
    let spec_exists = !matches!(observed.spec, SpecState::Missing);
    if !spec_exists
        && observed.instances.is_empty()
        && observed.operation_revision.is_none()
        && !observed.has_status
        && !observed.has_revisions()
    {
        // Already purged (an event about its last keys brought us here): writing
        // a status now would bring a deleted service back as a stray key.
        return;
    }
    for active in &census.active {
        plan.stop.push(active.map(|record| InstanceRecord {
            desired: DesiredState::Stopped,
            ..record.clone()
        }));
    }
    plan.status.desired_replicas = 0;
    plan.status.set_condition(
        ConditionKind::Terminating,
        ConditionStatus::True,
        "Deleting",
        &match census.waiting_on_lost_nodes() {
            Some(why) => format!("stopping {} instance(s): {why}", census.left_for_target(0)),
            None => format!("stopping {} instance(s)", census.left_for_target(0)),
        },
        observed.now,
    );
    conditions::count_replicas(observed, census, &mut plan.status);
    if census.left_for_target(0) == 0 {
        plan.purge = spec_exists
            || observed.operation_revision.is_some()
            || observed.has_status
            || observed.has_revisions();
    } else {
        plan.requeue(Duration::from_secs(2));
    }
}
