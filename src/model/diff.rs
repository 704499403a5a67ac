//! A small structural diff of two specs as JSON values, field by field: what
//! `rune rollout history --diff` and `rune diff` print. Pure.
//!
//! Objects are compared key by key (a key only on one side is added or removed);
//! lists of the same length element by element; anything else that differs —
//! a scalar, a list that grew or shrank, a value of another type — is one change
//! of the whole value, so `command: ["a"] → ["a", "b"]` reads as one line.

use std::fmt;

use serde_json::Value;

/// One difference, at a path such as `env.LOG_LEVEL` or `command[2]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Changed {
        path: String,
        old: Value,
        new: Value,
    },
    Added {
        path: String,
        new: Value,
    },
    Removed {
        path: String,
        old: Value,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Changed { path, old, new } => write!(f, "  {path}: {old} → {new}"),
            Change::Added { path, new } => write!(f, "+ {path}: {new}"),
            Change::Removed { path, old } => write!(f, "- {path}: {old}"),
        }
    }
}

/// Every difference from `old` to `new`, in key order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let at = field(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(o), Some(n)) => walk(&at, o, n, out),
                    (Some(o), None) => out.push(Change::Removed {
                        path: at,
                        old: o.clone(),
                    }),
                    (None, Some(n)) => out.push(Change::Added {
                        path: at,
                        new: n.clone(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (o, n)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), o, n, out);
            }
        }
        _ if old != new => out.push(Change::Changed {
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            old: old.clone(),
            new: new.clone(),
        }),
        _ => {}
    }
}

/// `path.key`, or `path["odd key"]` for a key that is not a plain word.
fn field(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.into())),
    }
}

/// The changes, one per line.
pub fn render(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("{c}\n")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lines(old: Value, new: Value) -> Vec<String> {
        diff(&old, &new).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"name": "api", "command": ["a", "b"], "env": {"A": "1"}});
        assert!(diff(&v, &v.clone()).is_empty());
    }

    #[test]
    fn fields_changed_added_and_removed_in_key_order() {
        let old = json!({"env": {"A": "1", "B": "2"}, "scale": 3, "workingDir": "/x"});
        let new = json!({"env": {"A": "9", "C": "3"}, "scale": 3, "ports": [{"name": "http"}]});
        assert_eq!(
            lines(old, new),
            [
                "  env.A: \"1\" → \"9\"",
                "- env.B: \"2\"",
                "+ env.C: \"3\"",
                "+ ports: [{\"name\":\"http\"}]",
                "- workingDir: \"/x\"",
            ]
        );
    }

    #[test]
    fn lists_of_one_length_compare_by_element_others_whole() {
        assert_eq!(
            lines(
                json!({"command": ["python3", "-m", "a"]}),
                json!({"command": ["python3", "-m", "b"]})
            ),
            ["  command[2]: \"a\" → \"b\""]
        );
        assert_eq!(
            lines(json!({"args": ["a"]}), json!({"args": ["a", "b"]})),
            ["  args: [\"a\"] → [\"a\",\"b\"]"]
        );
        assert_eq!(
            lines(
                json!({"health": {"readiness": {"path": "/a", "port": "http"}}}),
                json!({"health": {"readiness": {"path": "/b", "port": "http"}}})
            ),
            ["  health.readiness.path: \"/a\" → \"/b\""]
        );
    }

    #[test]
    fn a_value_of_another_type_is_one_change() {
        assert_eq!(
            lines(json!({"command": "a b"}), json!({"command": ["a", "b"]})),
            ["  command: \"a b\" → [\"a\",\"b\"]"]
        );
        assert_eq!(lines(json!(1), json!(2)), ["  .: 1 → 2"]);
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(
            lines(json!({"env": {"A.B": "1"}}), json!({"env": {"A.B": "2"}})),
            ["  env[\"A.B\"]: \"1\" → \"2\""]
        );
        assert_eq!(
            render(&diff(&json!({"a": 1}), &json!({"a": 2}))),
            "  a: 1 → 2\n"
        );
    }
}
