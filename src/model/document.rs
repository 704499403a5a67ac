//! Turning bytes into specs: cast files (`service:`, `services:`, several YAML
//! documents, or JSON) and the stored form under `services/<ns>/<name>`.
//! Every error names the source, line and column.

use std::fmt;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::limits;
use super::source::SourceDocument;
use super::spec::ServiceSpec;

/// An input that could not be turned into specs, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// A file path, or an etcd key for stored specs.
    pub source: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.source, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.source, self.message),
            _ => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    pub fn new(source: &str, message: impl Into<String>) -> Self {
        SpecError {
            source: source.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn from_json(source: &str, e: serde_json::Error) -> Self {
        // serde_json appends " at line L column C"; we print the location up front.
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        SpecError {
            source: source.to_string(),
            line: (e.line() > 0).then_some(e.line() as u64),
            column: (e.column() > 0).then_some(e.column() as u64),
            message: msg,
        }
    }

    fn from_yaml(source: &str, e: serde_saphyr::Error) -> Self {
        let loc = e.location().filter(|l| l.line() > 0);
        // The crate's Display adds a location and sometimes a source snippet; keep
        // only the first line so our own `file:line:col:` prefix is the one shown.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").to_string();
        let message = strip_location_suffix(&first);
        SpecError {
            source: source.to_string(),
            line: loc.map(|l| l.line()),
            column: loc.map(|l| l.column()),
            message,
        }
    }
}

fn strip_location_suffix(s: &str) -> String {
    // "error: line 3 column 15: message" -> "message"
    let s = s.strip_prefix("error: ").unwrap_or(s);
    if let Some(rest) = s.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        return msg.to_string();
    }
    for marker in [" at line ", " at ", ", line "] {
        if let Some((m, rest)) = s.rsplit_once(marker)
            && rest
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == 'l')
        {
            return m.trim_end_matches(':').to_string();
        }
    }
    s.to_string()
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Most events that aliases and merge keys may replay in one input, and most merge
/// keys (`<<`). The crate's defaults (a million, ten thousand) let a file of a few
/// hundred bytes (a merge key doubling a map at each level) cost a third of a second
/// of CPU per parse (seconds unoptimized), and stored specs are parsed on every
/// reconcile. Real files replay far less: 50 services sharing a command and a
/// 40-variable `env` (`<<: *common`) replay 4,000 events with 49 merge keys (the
/// crate's alias-per-anchor ratio stops many more aliases of as few anchors anyway).
const MAX_REPLAYED_EVENTS: usize = 10_000;
const MAX_MERGE_KEYS: usize = 1_000;

/// Most bytes of scalars one input may amount to, aliases expanded. The crate's
/// default, 64 MiB, lets a 60 kB spec expand to 17 MB. A spec is stored in etcd and
/// snapshotted into each instance record, whose requests etcd caps at 1.5 MiB by
/// default, so a spec that large could never run; 4 MiB leaves a file room for
/// several.
const MAX_SCALAR_BYTES: usize = 4 << 20;

/// YAML 1.2 booleans only: `command: y` or `name: no` stay strings (the "Norway
/// problem" of YAML 1.1). The crate's budget (depth, nodes, anchors, aliases) stays
/// on; alias replay, merge keys and scalar bytes are bounded tighter (above).
fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    // `007` and `1_000` stay text where a string may go (an env value), instead of
    // becoming 7 and 1000; where a number must go they are refused.
    o.leading_zero_numbers_as_strings = true;
    o.underscored_numbers_as_strings = true;
    o.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_merge_keys = MAX_MERGE_KEYS;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    o.budget = Some(budget);
    o
}

fn parse_one<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, SpecError> {
    if looks_like_json(text) {
        parse_json(source, text)
    } else {
        parse_yaml(source, text)
    }
}

/// The JSON half of [`parse_one`] (also what the fuzz harness drives directly).
pub(super) fn parse_json<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, SpecError> {
    serde_json::from_str(text).map_err(|e| SpecError::from_json(source, e))
}

/// The YAML half of [`parse_one`] (also what the fuzz harness drives directly).
pub(super) fn parse_yaml<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, SpecError> {
    serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| SpecError::from_yaml(source, e))
}

/// One document of a cast file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDocument {
    #[serde(default)]
    service: Option<ServiceSpec>,
    #[serde(default)]
    services: Option<Vec<ServiceSpec>>,
    #[serde(default)]
    config: Option<SourceDocument>,
    #[serde(default)]
    secret: Option<SourceDocument>,
}

/// Everything a cast file holds: services, configs and secrets.
#[derive(Debug, Default)]
pub struct CastFile {
    pub services: Vec<ServiceSpec>,
    pub configs: Vec<SourceDocument>,
    pub secrets: Vec<SourceDocument>,
}

/// Parses a cast file: `service:`, `services: [...]`, several YAML documents, or the
/// same as JSON. `source` names the file in errors.
pub fn parse_cast_file(source: &str, text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
    let file = parse_cast_documents(source, text)?;
    if file.services.is_empty() {
        // Point at the top of the file, so editors and CI annotations can jump there.
        return Err(SpecError {
            line: Some(1),
            column: Some(1),
            ..SpecError::new(
                source,
                "no services in this file (expected `service:` or `services:`)",
            )
        });
    }
    Ok(file.services)
}

/// Parses a cast file that may also hold `config:` and `secret:` documents (what
/// `rune cast` takes).
pub fn parse_cast_documents(source: &str, text: &str) -> Result<CastFile, SpecError> {
    if text.len() > limits::MAX_FILE_BYTES {
        return Err(SpecError::new(
            source,
            format!(
                "the file is {}, over the limit of {} per file",
                limits::size(text.len()),
                limits::size(limits::MAX_FILE_BYTES)
            ),
        ));
    }
    let docs: Vec<FileDocument> = if looks_like_json(text) {
        vec![parse_one(source, text)?]
    } else {
        serde_saphyr::from_multiple_with_options(text, yaml_options())
            .map_err(|e| SpecError::from_yaml(source, e))?
    };
    let mut file = CastFile::default();
    for (i, doc) in docs.into_iter().enumerate() {
        let empty = doc.service.is_none()
            && doc.services.is_none()
            && doc.config.is_none()
            && doc.secret.is_none();
        if empty {
            return Err(SpecError::new(
                source,
                format!(
                    "document {}: expected `service:` or `services:` (or `config:`, `secret:`)",
                    i + 1
                ),
            ));
        }
        file.services.extend(doc.service);
        file.services.extend(doc.services.unwrap_or_default());
        file.configs.extend(doc.config);
        file.secrets.extend(doc.secret);
    }
    if file.services.is_empty() && file.configs.is_empty() && file.secrets.is_empty() {
        return Err(SpecError {
            line: Some(1),
            column: Some(1),
            ..SpecError::new(
                source,
                "no services in this file (expected `service:` or `services:`)",
            )
        });
    }
    Ok(file)
}

/// A stored spec over [`limits::MAX_SPEC_BYTES`] is refused: `rune cast` before it
/// writes, the controller (as `SpecInvalid`) when a GitOps writer stored it.
pub fn check_stored_size(what: &str, bytes: usize) -> Result<(), SpecError> {
    if bytes > limits::MAX_SPEC_BYTES {
        return Err(SpecError::new(
            what,
            format!(
                "the stored spec is {}, over the limit of {} per service",
                limits::size(bytes),
                limits::size(limits::MAX_SPEC_BYTES)
            ),
        ));
    }
    Ok(())
}

/// The value stored under `services/<ns>/<name>`: the same `service:` document a user
/// casts, plus the deletion mark `rune delete` sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredService {
    pub service: ServiceSpec,
    /// When `rune cast` first created the service (absent for GitOps writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Set by `rune delete`: the controller stops the instances, then removes the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Timestamp>,
    /// Why the spec was last written (`rune cast --reason`, `rune rollout undo`),
    /// as Kubernetes' `kubernetes.io/change-cause` annotation; the controller
    /// copies it into the revision the write makes. A GitOps writer may set it
    /// (a commit subject, say); without it, history shows `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    /// Who last wrote the spec (`user@host` of `rune cast` or `rune rollout
    /// undo`); copied into the revision like `changeCause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl StoredService {
    pub fn new(service: ServiceSpec) -> Self {
        StoredService {
            service,
            created_at: None,
            deletion_timestamp: None,
            change_cause: None,
            changed_by: None,
        }
    }

    /// Parses a stored spec (YAML or JSON), checking it belongs under `key`'s name.
    pub fn parse(key: &str, bytes: &[u8], namespace: &str, name: &str) -> Result<Self, SpecError> {
        check_stored_size(key, bytes.len())?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| SpecError::new(key, format!("not UTF-8: {e}")))?;
        let stored: StoredService = parse_one(key, text)?;
        let s = &stored.service;
        if s.name() != name || s.namespace() != namespace {
            return Err(SpecError::new(
                key,
                format!(
                    "spec names {}/{} but is stored under {namespace}/{name}",
                    s.namespace(),
                    s.name()
                ),
            ));
        }
        Ok(stored)
    }

    /// A spec whose `scale` is over `max`, a controller's `--max-scale` (the parser
    /// already enforces the absolute [`limits::MAX_SCALE`]): refused naming the
    /// limit, as every other bound is.
    pub fn check_scale(&self, key: &str, max: u32) -> Result<(), SpecError> {
        match self.service.scale {
            Some(scale) if scale > max => Err(SpecError::new(
                key,
                format!("scale {scale} is over this controller's limit of {max} (--max-scale)"),
            )),
            _ => Ok(()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("specs always serialize")
    }
}
