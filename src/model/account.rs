//! The spec's `user:` and `group:`: who an instance runs as, by name or by numeric
//! id, as a pod's `runAsUser`/`runAsGroup` or a systemd unit's `User=`/`Group=`.
//!
//! Only the syntax is checked here (the model does no I/O): whether the name exists
//! is the node's business, since users are per host, and the agent reports an
//! unknown one as the instance's start failure (`agent/identity.rs`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// Longest user or group name (Linux's useradd limit).
pub const MAX_NAME: usize = 32;

/// A user or group: a name resolved on the node, or a numeric id used as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    Name(String),
    Id(u32),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Name(n) => write!(f, "{n:?}"),
            Account::Id(id) => write!(f, "{id}"),
        }
    }
}

impl Serialize for Account {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Account::Name(n) => s.serialize_str(n),
            Account::Id(id) => s.serialize_u32(*id),
        }
    }
}

impl Account {
    /// Parses `what`'s value (`user` or `group`): all digits is an id, else a name
    /// of letters, digits, `_`, `.`, `-` (not first) and an optional final `$`
    /// (Samba machine accounts), at most [`MAX_NAME`] long.
    pub fn parse(what: &str, s: &str) -> Result<Account, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u32>()
                .ok()
                .filter(|id| *id != u32::MAX)
                .map(Account::Id)
                .ok_or_else(|| format!("{what} id {s} is out of range (0 to 4294967294)"));
        }
        let body = s.strip_suffix('$').unwrap_or(s);
        let valid = !body.is_empty()
            && s.len() <= MAX_NAME
            && !body.starts_with('-')
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if valid {
            Ok(Account::Name(s.to_string()))
        } else {
            Err(format!(
                "{what} {s:?} is not a {what} name or id: use a number, or up to {MAX_NAME} \
                 letters, digits, '_', '.' or '-' (not first)"
            ))
        }
    }
}

fn account<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
) -> Result<Option<Account>, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = Option<Account>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {} name or numeric id", self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Account::parse(self.0, v).map(Some).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom(format!("{} id {v} is negative", self.0)));
            }
            self.visit_str(&v.to_string())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(what))
}

/// `deserialize_with` for the spec's `user:`.
pub fn user<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Account>, D::Error> {
    account(d, "user")
}

/// `deserialize_with` for the spec's `group:`.
pub fn group<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Account>, D::Error> {
    account(d, "group")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_parse_and_bad_ones_are_named() {
        assert_eq!(
            Account::parse("user", "nobody"),
            Ok(Account::Name("nobody".into()))
        );
        assert_eq!(
            Account::parse("user", "www-data"),
            Ok(Account::Name("www-data".into()))
        );
        assert_eq!(
            Account::parse("user", "host$"),
            Ok(Account::Name("host$".into()))
        );
        assert_eq!(Account::parse("user", "65534"), Ok(Account::Id(65534)));
        assert_eq!(Account::parse("group", "0"), Ok(Account::Id(0)));
        for bad in ["", "-x", "a b", "a/b", "$", "x:y", &"a".repeat(33)] {
            let e = Account::parse("user", bad).unwrap_err();
            assert!(e.contains("user"), "{bad}: {e}");
        }
        assert!(
            Account::parse("group", "4294967295")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(Account::parse("group", "99999999999").is_err());
    }
}
