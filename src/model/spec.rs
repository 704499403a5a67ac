//! The service spec: what `rune cast` reads and GitOps tools write into
//! `services/<ns>/<name>`. Field names and defaults follow the contract.
//!
//! Validation runs inside deserialization (serde's `remote = "Self"` trick: the derived
//! impl is wrapped by a hand-written one that validates), so every error the user sees
//! carries the line and column the parser was at.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::account::{self, Account};
use super::names::Label;
use super::resources::Resources;
use super::source::{EnvValue, FileSource, SourceRef};
use super::update::{Strategy, UpdateSettings};
use super::{duration, limits};

pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: Label,
    #[serde(default = "default_namespace")]
    pub namespace: Label,
    /// Desired replicas. `None` in a cast file means "keep the live scale" on update.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "replicas"
    )]
    pub scale: Option<u32>,
    pub command: Command,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Health::is_empty")]
    pub health: Health,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(
        default = "default_grace",
        serialize_with = "duration::serialize",
        deserialize_with = "limits::stop_grace"
    )]
    pub stop_grace_period: Duration,
    /// How long an instance being stopped keeps running after it left the
    /// endpoints, before its SIGTERM (Nomad's `shutdown_delay`): time for load
    /// balancers following `endpoints/` to stop sending it requests.
    /// `stopGracePeriod` counts from the SIGTERM. Part of the revision.
    #[serde(
        default,
        skip_serializing_if = "Duration::is_zero",
        serialize_with = "duration::serialize",
        deserialize_with = "limits::shutdown_delay"
    )]
    pub shutdown_delay: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingDefaults>,
    /// Limits per instance (cgroups); none: unlimited, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Which nodes instances may go to, and how many per node. Part of the
    /// revision (what instances run with), as a pod template's nodeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// How far a voluntary disruption (`rune node drain`) may take the service down.
    /// Not part of the revision (as a PodDisruptionBudget is no part of a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<Disruption>,
    /// How instances are replaced (`Recreate` or `Rolling`). Not part of the
    /// revision (as a Deployment's strategy is no part of its pod template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSettings>,
    /// Configs and secrets written under the instance's `$RUNE_FILES` before it
    /// starts. Part of the revision (what instances run with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSource>,
    /// The user instances run as (a name, or a numeric id); none: the agent's own.
    /// Part of the revision. Resolved on the node (`agent/identity.rs`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "account::user"
    )]
    pub user: Option<Account>,
    /// The group instances run as (a name, or a numeric id); none: `user`'s
    /// primary group. Part of the revision.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "account::group"
    )]
    pub group: Option<Account>,
}

fn default_namespace() -> Label {
    Label::new("namespace", DEFAULT_NAMESPACE).expect("default namespace is a label")
}

fn default_grace() -> Duration {
    DEFAULT_STOP_GRACE
}

impl<'de> Deserialize<'de> for ServiceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = ServiceSpec::deserialize(d)?;
        spec.validate().map_err(de::Error::custom)?;
        Ok(spec)
    }
}

impl Serialize for ServiceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ServiceSpec::serialize(self, s)
    }
}

impl ServiceSpec {
    /// Cross-field rules that no single field can check on its own.
    pub fn validate(&self) -> Result<(), String> {
        let who = format!("service {:?}", self.name.as_str());
        if self.command.is_empty() {
            return Err(format!("{who}: command must not be empty"));
        }
        let mut names = BTreeSet::new();
        let mut pinned = BTreeSet::new();
        for p in &self.ports {
            if !names.insert(p.name.as_str()) {
                return Err(format!(
                    "{who}: port name {:?} is declared twice",
                    p.name.as_str()
                ));
            }
            if let Some(n) = p.port
                && !pinned.insert(n)
            {
                return Err(format!("{who}: port {n} is pinned twice"));
            }
        }
        for (which, probe) in self.health.probes() {
            match &probe.port {
                Some(PortRef::Name(n)) if !names.contains(n.as_str()) => {
                    let declared: Vec<_> = names.iter().copied().collect();
                    return Err(format!(
                        "{who}: {which} probe refers to port {n:?}, but the service declares {}",
                        if declared.is_empty() {
                            "no ports".to_string()
                        } else {
                            format!("only {}", declared.join(", "))
                        }
                    ));
                }
                None if probe.kind != ProbeKind::Exec && self.ports.is_empty() => {
                    return Err(format!(
                        "{who}: {which} probe of type {} needs a port: set `port:` or declare \
                         one under `ports:`",
                        probe.kind
                    ));
                }
                _ => {}
            }
        }
        super::source::check_files(&self.files).map_err(|e| format!("{who}: {e}"))?;
        Ok(())
    }

    /// The configs and secrets this spec refers to (`env` and `files`).
    pub fn sources(&self) -> BTreeSet<SourceRef> {
        let from_env = self.env.values().filter_map(|v| match v {
            EnvValue::From { source, .. } => Some(source.clone()),
            EnvValue::Plain(_) => None,
        });
        let from_files = self.files.iter().map(|f| f.source.clone());
        from_env.chain(from_files).collect()
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_str()
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The scale a spec names, or 1 when it names none (what a new service starts
    /// at; the controller keeps an existing service's scale instead).
    pub fn desired_scale(&self) -> u32 {
        self.scale.unwrap_or(1)
    }

    /// The `update:` settings, defaults filled in.
    pub fn update_settings(&self) -> UpdateSettings {
        self.update.clone().unwrap_or_default()
    }

    /// Whether restarts and spec changes roll out batch by batch.
    pub fn is_rolling(&self) -> bool {
        self.update_settings().strategy == Strategy::Rolling
    }

    pub fn scaling_defaults(&self) -> ScalingDefaults {
        self.scaling.clone().unwrap_or_default()
    }
}

/// Scale values: whole numbers of 0 or more, with a message that says so.
fn replicas<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number of replicas, 0 or more")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom(format!("scale must be 0 or more, got {v}")));
            }
            self.visit_u64(v as u64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            limits::within("scale", v, 0, limits::MAX_SCALE as u64)
                .map(Some)
                .map_err(E::custom)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The command: one string run through `/bin/sh -c`, or an argv list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl Command {
    fn is_empty(&self) -> bool {
        match self {
            Command::Shell(s) => s.trim().is_empty(),
            Command::Argv(v) => v.is_empty() || v[0].is_empty(),
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Command::Shell(c) => s.serialize_str(c),
            Command::Argv(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string (run by /bin/sh -c) or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            // `command: true` is the shell builtin, not a boolean.
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut argv = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    argv.push(a);
                }
                Ok(Command::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    pub name: Label,
    /// A pinned port; without it each instance gets its own free port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

impl Health {
    pub fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none()
    }

    pub fn probes(&self) -> impl Iterator<Item = (&'static str, &Probe)> {
        [("readiness", &self.readiness), ("liveness", &self.liveness)]
            .into_iter()
            .filter_map(|(n, p)| p.as_ref().map(|p| (n, p)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Http,
    Tcp,
    Exec,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Http => "http",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Exec => "exec",
        })
    }
}

/// A readiness or liveness probe. Timing fields and defaults are Kubernetes'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    /// Port name or number; defaults to the instance's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub initial_delay_seconds: u32,
    #[serde(default = "ten")]
    pub interval_seconds: u32,
    #[serde(default = "one")]
    pub timeout_seconds: u32,
    #[serde(default = "three")]
    pub failure_threshold: u32,
    #[serde(default = "one")]
    pub success_threshold: u32,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn ten() -> u32 {
    10
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = Probe::deserialize(d)?;
        p.validate().map_err(de::Error::custom)?;
        Ok(p)
    }
}

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Probe::serialize(self, s)
    }
}

impl Probe {
    fn validate(&self) -> Result<(), String> {
        let k = self.kind;
        let seconds = limits::MAX_PROBE_SECONDS as u64;
        let thresholds = limits::MAX_PROBE_THRESHOLD as u64;
        for (what, n, min, max) in [
            (
                "initialDelaySeconds",
                self.initial_delay_seconds,
                0,
                seconds,
            ),
            ("intervalSeconds", self.interval_seconds, 1, seconds),
            ("timeoutSeconds", self.timeout_seconds, 1, seconds),
            ("failureThreshold", self.failure_threshold, 1, thresholds),
            ("successThreshold", self.success_threshold, 1, thresholds),
        ] {
            limits::within(what, n as u64, min, max)?;
        }
        match k {
            ProbeKind::Exec => {
                if self.command.as_ref().is_none_or(|c| c.is_empty()) {
                    return Err("exec probe needs `command: [..]`".into());
                }
                if self.port.is_some() || self.path.is_some() {
                    return Err("exec probe takes `command`, not `port` or `path`".into());
                }
            }
            ProbeKind::Http | ProbeKind::Tcp => {
                if self.command.is_some() {
                    return Err(format!("{k} probe takes `port`, not `command`"));
                }
                if k == ProbeKind::Tcp && self.path.is_some() {
                    return Err("tcp probe takes no `path` (did you mean type: http?)".into());
                }
                if let Some(p) = &self.path
                    && !p.starts_with('/')
                {
                    return Err(format!("http probe path {p:?} must start with '/'"));
                }
            }
        }
        for (field, v) in [
            ("intervalSeconds", self.interval_seconds),
            ("timeoutSeconds", self.timeout_seconds),
            ("failureThreshold", self.failure_threshold),
            ("successThreshold", self.success_threshold),
        ] {
            if v == 0 {
                return Err(format!("probe {field} must be at least 1"));
            }
        }
        Ok(())
    }

    pub fn http_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// A probe's port: the name of one of the service's ports, or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Name(String),
    Number(u16),
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortRef::Name(n) => s.serialize_str(n),
            PortRef::Number(n) => s.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRef, E> {
                Ok(PortRef::Name(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRef, E> {
                u16::try_from(v)
                    .ok()
                    .filter(|p| *p > 0)
                    .map(PortRef::Number)
                    .ok_or_else(|| E::custom(format!("port {v} is out of range 1-65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRef, E> {
                if v < 0 {
                    return Err(E::custom(format!("port {v} is out of range 1-65535")));
                }
                self.visit_u64(v as u64)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMode {
    #[default]
    Immediate,
    Gradual,
}

impl fmt::Display for ScaleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScaleMode::Immediate => "immediate",
            ScaleMode::Gradual => "gradual",
        })
    }
}

pub const DEFAULT_STEP: u32 = 1;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Defaults for scale changes that arrive as spec writes (GitOps), and the seed's
/// defaults for `rune scale` flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingDefaults {
    #[serde(default)]
    pub mode: ScaleMode,
    #[serde(default = "default_step", deserialize_with = "limits::step")]
    pub step: u32,
    #[serde(
        default = "default_interval",
        serialize_with = "duration::serialize",
        deserialize_with = "limits::interval"
    )]
    pub interval: Duration,
    #[serde(default = "yes")]
    pub rollback_on_fail: bool,
}

impl Default for ScalingDefaults {
    fn default() -> Self {
        ScalingDefaults {
            mode: ScaleMode::Immediate,
            step: DEFAULT_STEP,
            interval: DEFAULT_INTERVAL,
            rollback_on_fail: true,
        }
    }
}

fn default_step() -> u32 {
    DEFAULT_STEP
}
fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn yes() -> bool {
    true
}

/// `placement:`: where instances may run. Kubernetes' `nodeSelector` (every label
/// must match) and Nomad's `distinct_hosts` generalised to a count (`maxPerNode`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Only nodes carrying every one of these labels (`rune-agent --label`).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "node_selector"
    )]
    pub node_selector: BTreeMap<String, String>,
    /// At most this many of the service's instances on one node.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_per_node"
    )]
    pub max_per_node: Option<u32>,
}

fn node_selector<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let selector = BTreeMap::<String, String>::deserialize(d)?;
    super::node::check_labels(&selector)
        .map_err(|e| de::Error::custom(format!("placement.nodeSelector: {e}")))?;
    Ok(selector)
}

fn max_per_node<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(n) if n < 1 => Err(de::Error::custom(format!(
            "placement.maxPerNode must be from 1 to {}, got {n}",
            limits::MAX_SCALE
        ))),
        Some(n) => limits::within(
            "placement.maxPerNode",
            n as u64,
            1,
            limits::MAX_SCALE as u64,
        )
        .map(Some)
        .map_err(de::Error::custom),
    }
}

/// `disruption:`: Kubernetes' PodDisruptionBudget `minAvailable`, for drains.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disruption {
    /// A drain never stops a ready instance while this many or fewer are ready.
    #[serde(default, deserialize_with = "min_available")]
    pub min_available: u32,
}

fn min_available<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    if n < 0 {
        return Err(de::Error::custom(format!(
            "disruption.minAvailable must be from 0 to {}, got {n}",
            limits::MAX_SCALE
        )));
    }
    limits::within(
        "disruption.minAvailable",
        n as u64,
        0,
        limits::MAX_SCALE as u64,
    )
    .map_err(de::Error::custom)
}
