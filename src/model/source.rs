//! Configs and secrets: named, namespaced maps of keys to values that specs refer
//! to (`env: {K: {secret: S, key: K}}`, `files: [{config: C, path: P}]`).
//!
//! Stored under `configs/<ns>/<name>` and `secrets/<ns>/<name>` as a
//! [`StoredSource`]: the metadata (keys, sizes, version, times) in clear, so that
//! `rune get secrets` and the controller's `Stale` condition work without the
//! encryption key; a config's data in clear, a secret's data sealed (see
//! `crate::secrets`). Every write bumps `version` (1 on create), compare-and-swapped,
//! so an instance can say which version it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::limits;
use super::names::Label;

/// Config or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Config,
    Secret,
}

impl SourceKind {
    /// The key collection: `configs` or `secrets`.
    pub fn collection(self) -> &'static str {
        match self {
            SourceKind::Config => "configs",
            SourceKind::Secret => "secrets",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Config => "config",
            SourceKind::Secret => "secret",
        })
    }
}

/// A config or secret of the spec's namespace, by name: `secret/db`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub name: String,
}

impl SourceRef {
    pub fn new(kind: SourceKind, name: &str) -> Self {
        SourceRef {
            kind,
            name: name.to_string(),
        }
    }

    /// Parses `secret/db` or `config/app` (the form instance statuses report).
    pub fn parse(s: &str) -> Option<SourceRef> {
        let (kind, name) = s.split_once('/')?;
        let kind = match kind {
            "config" => SourceKind::Config,
            "secret" => SourceKind::Secret,
            _ => return None,
        };
        Some(SourceRef::new(kind, name))
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Key names as Kubernetes allows them in ConfigMaps and Secrets: 1-253 characters
/// of `[-._a-zA-Z0-9]`, not `.` or `..` (each key becomes a file name).
pub fn check_key_name(key: &str) -> Result<(), String> {
    let chars_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if key.is_empty() || key.len() > 253 || !chars_ok || key == "." || key == ".." {
        return Err(format!(
            "invalid key name {key:?}: must be 1-253 characters of letters, digits, '-', '_' \
             and '.', and not '.' or '..'"
        ));
    }
    Ok(())
}

/// Checks every key name and the total size of a config's or secret's data.
pub fn check_data(what: &str, data: &BTreeMap<String, String>) -> Result<(), String> {
    for key in data.keys() {
        check_key_name(key).map_err(|e| format!("{what}: {e}"))?;
    }
    let bytes = data_bytes(data);
    if bytes > limits::MAX_SOURCE_BYTES {
        return Err(format!(
            "{what} is {}, over the limit of {} per config or secret",
            limits::size(bytes),
            limits::size(limits::MAX_SOURCE_BYTES)
        ));
    }
    Ok(())
}

/// What a map of data weighs: keys and values, in bytes.
pub fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// A secret's data as stored: ciphertext of the JSON map of its keys and values,
/// with the nonce and the id of the key that sealed it (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The value under `configs/<ns>/<name>` or `secrets/<ns>/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSource {
    pub name: String,
    pub namespace: String,
    /// 1 on create, +1 on every change (compare-and-swapped).
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Each key and the size of its value in bytes (in clear, also for secrets).
    pub keys: BTreeMap<String, u64>,
    /// A config's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    /// A secret's data, encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

impl StoredSource {
    pub fn parse(key: &str, bytes: &[u8]) -> Result<StoredSource, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{key} does not parse: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("sources always serialize")
    }

    /// The sizes of `data`'s values, by key.
    pub fn sizes(data: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
        data.iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect()
    }
}

/// A `config:` or `secret:` document of a cast file (data in clear: the CLI seals
/// a secret before it writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceDocument {
    pub name: Label,
    #[serde(default = "default_namespace")]
    pub namespace: Label,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

fn default_namespace() -> Label {
    Label::new("namespace", super::spec::DEFAULT_NAMESPACE).expect("default namespace is a label")
}

impl<'de> Deserialize<'de> for SourceDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let doc = SourceDocument::deserialize(d)?;
        check_data(&format!("{:?}", doc.name.as_str()), &doc.data).map_err(de::Error::custom)?;
        Ok(doc)
    }
}

impl Serialize for SourceDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SourceDocument::serialize(self, s)
    }
}

/// One `env` value of a spec: a plain string (`${VAR}` expanded), or a key of a
/// config or secret of the service's namespace, taken verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    From { source: SourceRef, key: String },
}

impl EnvValue {
    pub fn plain(&self) -> Option<&str> {
        match self {
            EnvValue::Plain(s) => Some(s),
            EnvValue::From { .. } => None,
        }
    }
}

impl From<&str> for EnvValue {
    fn from(s: &str) -> Self {
        EnvValue::Plain(s.to_string())
    }
}

impl From<String> for EnvValue {
    fn from(s: String) -> Self {
        EnvValue::Plain(s)
    }
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            EnvValue::Plain(v) => s.serialize_str(v),
            EnvValue::From { source, key } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry(&source.kind.to_string(), &source.name)?;
                m.serialize_entry("key", key)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, {secret: NAME, key: KEY} or {config: NAME, key: KEY}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                // YAML reads `1.10` as the number 1.1: taking it would change the
                // value silently. Say so, as Kubernetes refuses any number here.
                Err(E::custom(format!(
                    "an env value that YAML reads as a number with a fraction or an \
                     exponent ({v}) would lose its spelling (`1.10` reads as 1.1): \
                     quote it, e.g. \"1.10\""
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                let fields = RefFields::collect(map, "key")?;
                Ok(EnvValue::From {
                    source: fields.source,
                    key: fields.other,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `{secret|config: NAME, <other>: VALUE}`, the shape of env refs and files.
struct RefFields {
    source: SourceRef,
    other: String,
}

impl RefFields {
    fn collect<'de, A: MapAccess<'de>>(mut map: A, other: &str) -> Result<RefFields, A::Error> {
        let mut source: Option<SourceRef> = None;
        let mut value: Option<String> = None;
        while let Some(field) = map.next_key::<String>()? {
            let kind = match field.as_str() {
                "secret" => SourceKind::Secret,
                "config" => SourceKind::Config,
                f if f == other => {
                    value = Some(map.next_value()?);
                    continue;
                }
                f => {
                    return Err(de::Error::custom(format!(
                        "unknown field `{f}`, expected `secret` or `config`, and `{other}`"
                    )));
                }
            };
            let name: String = map.next_value()?;
            super::names::check_dns_label(&format!("{kind} name"), &name)
                .map_err(de::Error::custom)?;
            if source.is_some() {
                return Err(de::Error::custom(
                    "name either one `secret:` or one `config:`, not both",
                ));
            }
            source = Some(SourceRef::new(kind, &name));
        }
        let source = source.ok_or_else(|| {
            de::Error::custom(format!(
                "missing `secret:` or `config:` (beside `{other}:`)"
            ))
        })?;
        let other_value =
            value.ok_or_else(|| de::Error::custom(format!("{source}: missing `{other}:`")))?;
        Ok(RefFields {
            source,
            other: other_value,
        })
    }
}

/// One `files:` entry: every key of a config or secret becomes
/// `$RUNE_FILES/<path>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub source: SourceRef,
    /// Relative, no `..`, checked when parsed.
    pub path: String,
}

/// A `files:` path: relative, made of names (no `.`, `..` or empty parts), at most
/// 255 bytes.
pub fn check_file_path(path: &str) -> Result<(), String> {
    let why = if path.is_empty() {
        Some("must not be empty")
    } else if path.starts_with('/') {
        Some("must be relative (it is placed under $RUNE_FILES)")
    } else if path.len() > 255 {
        Some("must be at most 255 bytes")
    } else if path.split('/').any(|p| p == "..") {
        Some("must not contain '..' (it would escape $RUNE_FILES)")
    } else if path.split('/').any(|p| p.is_empty() || p == ".") {
        Some("must be names separated by single '/', without '.' parts")
    } else if path.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("files path {path:?} {why}")),
        None => Ok(()),
    }
}

impl Serialize for FileSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(&self.source.kind.to_string(), &self.source.name)?;
        m.serialize_entry("path", &self.path)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for FileSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{secret: NAME, path: PATH} or {config: NAME, path: PATH}")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileSource, A::Error> {
                let fields = RefFields::collect(map, "path")?;
                check_file_path(&fields.other).map_err(de::Error::custom)?;
                Ok(FileSource {
                    source: fields.source,
                    path: fields.other,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Two `files:` entries may not share a path, nor may one lie inside another's.
pub fn check_files(files: &[FileSource]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for f in files {
        for other in &seen {
            let (a, b): (&String, &String) = (other, &f.path);
            let nested =
                a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"));
            if nested {
                return Err(format!(
                    "files paths {a:?} and {b:?} overlap: each config or secret needs a \
                     directory of its own"
                ));
            }
        }
        seen.insert(f.path.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_kubernetes() {
        for ok in ["password", "tls.crt", "a-b_c.D9", "..x"] {
            check_key_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "sp ace", "é", &"x".repeat(254)] {
            let e = check_key_name(bad).unwrap_err();
            assert!(e.contains("invalid key name"), "{e}");
        }
    }

    #[test]
    fn file_paths_stay_inside() {
        for ok in ["db", "a/b", "x.y/z-1"] {
            check_file_path(ok).unwrap();
        }
        for bad in ["", "/etc", "..", "a/../../b", "a//b", "./a", "a/"] {
            assert!(check_file_path(bad).is_err(), "{bad}");
        }
        assert!(check_file_path("../x").unwrap_err().contains("escape"));
    }

    #[test]
    fn data_over_the_limit_is_refused_naming_it() {
        let mut data = BTreeMap::new();
        data.insert("k".to_string(), "x".repeat(limits::MAX_SOURCE_BYTES));
        let e = check_data("secret \"db\"", &data).unwrap_err();
        assert!(e.contains("over the limit of 1 MiB"), "{e}");
        data.insert("k".to_string(), "x".repeat(limits::MAX_SOURCE_BYTES - 1));
        check_data("secret \"db\"", &data).unwrap();
    }

    #[test]
    fn env_values_round_trip() {
        let text = r#"{"A":"plain","B":{"secret":"db","key":"password"},"C":{"config":"app","key":"mode"},"D":7}"#;
        let env: BTreeMap<String, EnvValue> = serde_json::from_str(text).unwrap();
        assert_eq!(env["A"], EnvValue::Plain("plain".into()));
        assert_eq!(
            env["B"],
            EnvValue::From {
                source: SourceRef::new(SourceKind::Secret, "db"),
                key: "password".into()
            }
        );
        assert_eq!(env["D"], EnvValue::Plain("7".into()));
        let back: BTreeMap<String, EnvValue> =
            serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
        assert_eq!(back, env);
        for bad in [
            r#"{"B":{"secret":"db"}}"#,
            r#"{"B":{"key":"x"}}"#,
            r#"{"B":{"secret":"db","config":"x","key":"k"}}"#,
            r#"{"B":{"secret":"Bad_Name","key":"k"}}"#,
            r#"{"B":{"secret":"db","key":"k","extra":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<BTreeMap<String, EnvValue>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn overlapping_files_are_refused() {
        let f = |p: &str| FileSource {
            source: SourceRef::new(SourceKind::Config, "c"),
            path: p.into(),
        };
        check_files(&[f("a"), f("b"), f("ab")]).unwrap();
        assert!(check_files(&[f("a"), f("a/b")]).is_err());
        assert!(check_files(&[f("a"), f("a")]).is_err());
    }
}

#[cfg(test)]
mod yaml_scalars {
    /// An env value is a string or a ref (a map), so YAML's plain scalars are read
    /// by their YAML type first. Whole numbers and booleans keep their text
    /// (leading zeros and underscores included); a number with a fraction would
    /// not, so it is refused, naming where (documented in docs/gitops.md).
    #[test]
    fn yaml_env_scalars_become_strings() {
        let spec = crate::model::parse_cast_file(
            "t",
            "service:\n  name: a\n  command: x\n  env: {B: 7, Z: 007, U: 1_000, C: true, Q: \"1.10\", R: {secret: db, key: p}}\n",
        )
        .unwrap()
        .remove(0);
        let plain = |k: &str| spec.env[k].plain().unwrap().to_string();
        assert_eq!(
            [plain("B"), plain("Z"), plain("U"), plain("C"), plain("Q")],
            ["7", "007", "1_000", "true", "1.10"]
        );
        assert!(spec.env["R"].plain().is_none());
        let err = crate::model::parse_cast_file(
            "t.yaml",
            "service:\n  name: a\n  command: x\n  env:\n    V: 1.10\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.yaml:5:") && err.contains("quote it"),
            "{err}"
        );
    }
}
