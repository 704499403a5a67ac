//! `update:`: how a service's instances are replaced — by a restart, or by a
//! rollout of a new spec revision. `Recreate` (the default) is the seed's
//! stop-the-world restart; `Rolling` replaces instances batch by batch, after a
//! Deployment's RollingUpdate (`maxSurge`, `maxUnavailable`, `minReadySeconds`,
//! `progressDeadlineSeconds`) and Nomad's `auto_revert` (`onFailure: rollback`).
//!
//! Like a Deployment's strategy it is not part of the spec revision (see
//! `revision::template`): changing it makes no rollout.
//!
//! Counts are whole numbers or percentages of the desired scale (`25%`), rounded
//! as Kubernetes rounds them: `maxSurge` up, `maxUnavailable` down, and when both
//! come to 0, one may be unavailable.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{duration, limits};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Stop every instance, then start them again (the seed's restart); a spec
    /// change waits for a restart.
    #[default]
    Recreate,
    /// Replace instances batch by batch; a spec change rolls out by itself.
    Rolling,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Write the previous revision's template back into the spec and roll the
    /// instances back to it.
    #[default]
    Rollback,
    /// Stop where it is and report; a later restart or cast resumes.
    Pause,
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFailure::Rollback => "rollback",
            OnFailure::Pause => "pause",
        })
    }
}

/// A count of instances: absolute, or a percentage of the desired scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Absolute(u32),
    Percent(u32),
}

impl Count {
    /// The count for `desired` instances, rounded up (`maxSurge`) or down.
    pub fn resolve(self, desired: u32, round_up: bool) -> u32 {
        match self {
            Count::Absolute(n) => n,
            Count::Percent(p) => {
                let scaled = u64::from(desired) * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                n as u32
            }
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, Count::Absolute(0) | Count::Percent(0))
    }

    /// Parses `3` or `25%` (what the CLI flags take), naming `what` in errors.
    pub fn parse(what: &str, text: &str) -> Result<Count, String> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            let n: u64 = p.trim().parse().map_err(|_| {
                format!("{what} must be a whole number or a percentage, got {text:?}")
            })?;
            return limits::within(what, n, 0, 100).map(Count::Percent);
        }
        let n: u64 = text
            .parse()
            .map_err(|_| format!("{what} must be a whole number or a percentage, got {text:?}"))?;
        limits::within(what, n, 0, limits::MAX_SCALE as u64).map(Count::Absolute)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Absolute(n) => write!(f, "{n}"),
            Count::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Absolute(n) => s.serialize_u32(*n),
            Count::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of instances or a percentage like \"25%\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                limits::within("count", v, 0, limits::MAX_SCALE as u64)
                    .map(Count::Absolute)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                if v < 0 {
                    return Err(E::custom(format!("count must be 0 or more, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                Count::parse("count", v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub const DEFAULT_MAX_SURGE: Count = Count::Absolute(1);
pub const DEFAULT_MAX_UNAVAILABLE: Count = Count::Absolute(0);
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// The spec's `update:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSettings {
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "default_surge")]
    pub max_surge: Count,
    #[serde(default = "default_unavailable")]
    pub max_unavailable: Count,
    /// How long a new instance must stay ready before it counts as available.
    #[serde(default, deserialize_with = "min_ready_seconds")]
    pub min_ready_seconds: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A rollout that makes no progress for this long fails.
    #[serde(
        default = "default_deadline",
        serialize_with = "duration::serialize",
        deserialize_with = "progress_deadline"
    )]
    pub progress_deadline: Duration,
}

fn default_surge() -> Count {
    DEFAULT_MAX_SURGE
}
fn default_unavailable() -> Count {
    DEFAULT_MAX_UNAVAILABLE
}
fn default_deadline() -> Duration {
    DEFAULT_PROGRESS_DEADLINE
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            strategy: Strategy::Recreate,
            max_surge: DEFAULT_MAX_SURGE,
            max_unavailable: DEFAULT_MAX_UNAVAILABLE,
            min_ready_seconds: 0,
            on_failure: OnFailure::Rollback,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        }
    }
}

fn min_ready_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    let max = limits::MAX_MIN_READY.as_secs();
    if n < 0 {
        return Err(de::Error::custom(format!(
            "update.minReadySeconds must be from 0 to {max}, got {n}"
        )));
    }
    limits::within("update.minReadySeconds", n as u64, 0, max).map_err(de::Error::custom)
}

fn progress_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let parsed = duration::parse(&text).map_err(de::Error::custom)?;
    check_progress_deadline(parsed).map_err(de::Error::custom)
}

/// `progressDeadline`: from [`limits::MIN_TIMEOUT`] to [`limits::MAX_TIMEOUT`].
pub fn check_progress_deadline(d: Duration) -> Result<Duration, String> {
    if d < limits::MIN_TIMEOUT {
        return Err(format!(
            "update.progressDeadline must be at least {}, got {}",
            duration::format(limits::MIN_TIMEOUT),
            duration::format(d)
        ));
    }
    limits::at_most("update.progressDeadline", d, limits::MAX_TIMEOUT)
}

impl<'de> Deserialize<'de> for UpdateSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let u = UpdateSettings::deserialize(d)?;
        check_counts(u.max_surge, u.max_unavailable).map_err(de::Error::custom)?;
        Ok(u)
    }
}

impl Serialize for UpdateSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        UpdateSettings::serialize(self, s)
    }
}

/// `maxSurge` and `maxUnavailable` cannot both be 0: nothing could ever move.
pub fn check_counts(surge: Count, unavailable: Count) -> Result<(), String> {
    if surge.is_zero() && unavailable.is_zero() {
        return Err(
            "update.maxSurge and update.maxUnavailable cannot both be 0: no instance could be \
             replaced"
                .into(),
        );
    }
    Ok(())
}

/// The settings a rolling operation runs with, resolved for its desired scale:
/// the spec's `update:` with the CLI's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    /// At most `desired + max_surge` instance records at any time (stopping ones
    /// count: they still hold their process and port).
    pub max_surge: u32,
    /// At least `desired - max_unavailable` available at any time (as far as the
    /// rollout's own stops go).
    pub max_unavailable: u32,
}

impl Bounds {
    /// Resolves the counts for `desired` as Kubernetes does: surge rounded up,
    /// unavailable down, and one unavailable when both come to 0.
    pub fn resolve(surge: Count, unavailable: Count, desired: u32) -> Bounds {
        let max_surge = surge.resolve(desired, true);
        let mut max_unavailable = unavailable.resolve(desired, false);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Bounds {
            max_surge,
            max_unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let b = Bounds::resolve(Count::Percent(25), Count::Percent(25), 10);
        assert_eq!((b.max_surge, b.max_unavailable), (3, 2));
        let b = Bounds::resolve(Count::Percent(10), Count::Percent(10), 4);
        assert_eq!((b.max_surge, b.max_unavailable), (1, 0));
        let b = Bounds::resolve(Count::Percent(0), Count::Percent(10), 4);
        assert_eq!(
            (b.max_surge, b.max_unavailable),
            (0, 1),
            "both 0: one unavailable"
        );
    }

    #[test]
    fn counts_parse_and_name_their_bound() {
        assert_eq!(Count::parse("--max-surge", "25%"), Ok(Count::Percent(25)));
        assert_eq!(Count::parse("--max-surge", "3"), Ok(Count::Absolute(3)));
        assert!(
            Count::parse("--max-surge", "101%")
                .unwrap_err()
                .contains("from 0 to 100")
        );
        assert!(
            Count::parse("--max-surge", "x")
                .unwrap_err()
                .contains("--max-surge")
        );
        assert!(check_counts(Count::Absolute(0), Count::Percent(0)).is_err());
    }
}
