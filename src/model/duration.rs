//! Durations as humantime strings (`30s`, `1m`, `1h30m`), the format the contract fixes,
//! and adding them to timestamps without panicking.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serializer, de};

/// Renders a duration the way a user would write it (`1m30s`, not `90s`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Parses `30s`, `1m`, `1h30m` (spaces allowed) into a duration.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 30s, 1m, 1h30m)"))
}

/// `ts + d`, saturating at the calendar's end (durations come from users, so they
/// can be absurd; a deadline must not panic over one, and one past the calendar's
/// end is never reached rather than already passed).
pub fn add(ts: Timestamp, d: Duration) -> Timestamp {
    ts.checked_add(d).unwrap_or(Timestamp::MAX)
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(de::Error::custom)
}

/// The same for `Option<Duration>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => parse(&s).map(Some).map_err(de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_compactly_and_parses_back() {
        for secs in [1, 30, 90, 3600, 5400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn adding_past_the_calendar_saturates() {
        let far = parse("300000000000y").unwrap();
        assert_eq!(add(Timestamp::UNIX_EPOCH, far), Timestamp::MAX);
        assert_eq!(add(Timestamp::MAX, Duration::from_nanos(1)), Timestamp::MAX);
        let minute = Duration::from_secs(60);
        assert_eq!(add(Timestamp::UNIX_EPOCH, minute).as_second(), 60);
    }

    #[test]
    fn rejects_garbage_with_examples() {
        let err = parse("soon").unwrap_err();
        assert!(err.contains("30s"), "{err}");
    }
}
