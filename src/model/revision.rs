//! Spec revisions (`revisions/<ns>/<svc>/<n>`): each distinct spec a service has
//! run, stored once and never changed, numbered per service 1, 2, 3 … Instance
//! records name a revision instead of carrying a copy of the spec, so a thousand
//! instances of one spec store it once; the numbers are what rollout history and
//! undo will show the user, so they are never reused while the service exists.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::spec::ServiceSpec;

/// How many revisions of a service are kept (plus any an instance still runs).
pub const KEEP_REVISIONS: usize = 10;

/// One revision, written by the controller leader before any record names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub namespace: String,
    pub service: String,
    pub revision: u64,
    /// What an instance runs with: the spec without `scale` and `scaling` (see
    /// [`template`]).
    pub spec: ServiceSpec,
    /// The spec key's mod revision this was taken from.
    pub spec_revision: i64,
    pub created_at: Timestamp,
    /// Who wrote the spec this was taken from (the stored document's `changedBy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Why (the stored document's `changeCause`): what `rune rollout history` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
}

/// The part of a spec that instances run with. `scale` and `scaling` say how many
/// run and how a count changes, `disruption` how many a drain may take down, and
/// `update` how instances are replaced, not what runs: changing them makes no revision
/// (as a Deployment's replicas and strategy are not part of its pod template), and
/// undoing to a revision will not bring an old scale back.
pub fn template(spec: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        scale: None,
        scaling: None,
        disruption: None,
        update: None,
        ..spec.clone()
    }
}
