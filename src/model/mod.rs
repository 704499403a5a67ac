//! The data model: every value rune stores in etcd, and the rules that make a spec
//! valid. Pure: no I/O here.

pub mod account;
pub mod diff;
pub mod document;
pub mod duration;
pub mod endpoints;
pub mod event;
#[doc(hidden)]
pub mod fuzz;
pub mod instance;
pub mod limits;
pub mod names;
pub mod node;
pub mod operation;
pub mod refs;
pub mod resources;
pub mod revision;
pub mod source;
pub mod spec;
pub mod status;
pub mod update;

pub use account::Account;
pub use document::{SpecError, StoredService, parse_cast_file};
pub use endpoints::{Endpoint, Endpoints};
pub use instance::{DesiredState, ExitInfo, InstanceRecord, InstanceStatus, Phase, Usage};
pub use node::{NodeRecord, NodeState};
pub use operation::{
    OperationKind, OperationPhase, OperationProgress, OperationRecord, OperationSummary, ScalePlan,
};
pub use refs::{InstanceRef, ServiceRef, Versioned};
pub use resources::{Cpu, Memory, Resources};
pub use revision::{KEEP_REVISIONS, Revision};
pub use source::{EnvValue, FileSource, SourceKind, SourceRef, StoredSource};
pub use spec::{
    Command, Disruption, Health, Placement, PortRef, PortSpec, Probe, ProbeKind, RestartPolicy,
    ScaleMode, ScalingDefaults, ServiceSpec,
};
pub use status::{Condition, ConditionKind, ConditionStatus, HistoryEntry, ServiceStatus};
pub use update::{Bounds, Count, OnFailure, UpdateSettings};

#[cfg(test)]
mod tests;
