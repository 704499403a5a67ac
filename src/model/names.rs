//! Name rules. Service names and namespaces are DNS-1123 labels, as in Kubernetes, so
//! that they are safe in etcd keys, environment variables, and host names.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};

/// Checks a DNS-1123 label: 1-63 characters of `[a-z0-9-]`, starting and ending
/// alphanumeric.
pub fn check_dns_label(what: &str, s: &str) -> Result<(), String> {
    let valid_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if s.is_empty() || s.len() > 63 || !valid_chars || !ends_ok {
        return Err(format!(
            "invalid {what} {s:?}: must be a DNS-1123 label (1-63 characters, lowercase \
             letters, digits and '-', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// A validated DNS-1123 label. Validation happens while deserializing so that the
/// parser attaches the line and column of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub fn new(what: &str, s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_dns_label(what, &s)?;
        Ok(Label(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Label::new("name", s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["api", "a", "web-1", "0abc", &"a".repeat(63)] {
            assert!(check_dns_label("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_non_labels() {
        for bad in ["", "Api", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label("name", bad).is_err(), "{bad}");
        }
    }
}
