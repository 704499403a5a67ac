//! `resources: {memory, cpu, pids}`: the limits an instance runs under, enforced by
//! the agent with cgroups. Quantities are written as Kubernetes writes them: memory
//! in bytes or with a binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`)
//! suffix, CPU in cores (`0.5`, `2`) or millicores (`500m`). Every value is bounded
//! (`limits.rs`) and rejected where it is read, so errors carry line and column.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::limits;

/// Limits for each instance of a service. All optional; a spec without
/// `resources` runs unlimited, as before (limits are opt-in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Memory limit; the kernel kills the instance past it (`OOMKilled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU limit in cores (CFS quota): the instance is throttled past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Most processes and threads the instance may have at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "pids"
    )]
    pub pids: Option<u32>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu.is_none() && self.pids.is_none()
    }
}

/// A memory quantity in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Memory(pub u64);

/// A CPU quantity in millicores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cpu(pub u32);

const BINARY: [(&str, u64); 4] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
];
const DECIMAL: [(&str, u64); 4] = [
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// `digits[.digits]` times `unit`, exactly (a fraction that leaves part of a unit
/// is an error, not rounded). None when it is not such a number or overflows.
fn scaled(number: &str, unit: u64) -> Result<u64, String> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return Err(format!("{number:?} is not a number"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too large".to_string())?
    };
    let mut value = whole
        .checked_mul(unit)
        .ok_or_else(|| "too large".to_string())?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let f: u128 = frac.parse().map_err(|_| "not a number".to_string())?;
        let part = f * unit as u128;
        if !part.is_multiple_of(scale) {
            return Err(format!("{number:?} is not a whole number of units"));
        }
        value = value
            .checked_add((part / scale) as u64)
            .ok_or_else(|| "too large".to_string())?;
    }
    Ok(value)
}

impl Memory {
    /// `256Mi`, `1Gi`, `1.5Gi`, `500M`, `1048576`.
    pub fn parse(s: &str) -> Result<Memory, String> {
        let t = s.trim();
        let bad = |why: String| {
            format!(
                "memory {s:?}: {why}; use bytes or a number with Ki, Mi, Gi, Ti (or k, M, G, T)"
            )
        };
        let (number, unit) = BINARY
            .iter()
            .chain(DECIMAL.iter())
            .find_map(|(suffix, unit)| t.strip_suffix(suffix).map(|n| (n, *unit)))
            .unwrap_or((t, 1));
        let bytes = scaled(number, unit).map_err(bad)?;
        Memory::bounded(bytes)
    }

    fn bounded(bytes: u64) -> Result<Memory, String> {
        if !(limits::MIN_MEMORY..=limits::MAX_MEMORY).contains(&bytes) {
            return Err(format!(
                "memory {} is outside {} to {}",
                Memory(bytes),
                Memory(limits::MIN_MEMORY),
                Memory(limits::MAX_MEMORY)
            ));
        }
        Ok(Memory(bytes))
    }
}

impl fmt::Display for Memory {
    /// The largest binary unit that divides it exactly (`256Mi`), else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, unit) in BINARY.iter().rev() {
            if self.0 >= *unit && self.0.is_multiple_of(*unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Cpu {
    /// `0.5`, `2`, `500m`.
    pub fn parse(s: &str) -> Result<Cpu, String> {
        let t = s.trim();
        let bad =
            |why: String| format!("cpu {s:?}: {why}; use cores (0.5, 2) or millicores (500m)");
        let millis = match t.strip_suffix('m') {
            Some(n) => scaled(n, 1),
            None => scaled(t, 1000),
        }
        .map_err(bad)?;
        Cpu::bounded(millis)
    }

    fn bounded(millis: u64) -> Result<Cpu, String> {
        if !(limits::MIN_CPU_MILLIS as u64..=limits::MAX_CPU_MILLIS as u64).contains(&millis) {
            return Err(format!(
                "cpu {}m is outside {} to {}",
                millis,
                Cpu(limits::MIN_CPU_MILLIS),
                Cpu(limits::MAX_CPU_MILLIS)
            ));
        }
        Ok(Cpu(millis as u32))
    }

    /// Cores, as a float (for display and capacity sums).
    pub fn cores(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for Cpu {
    /// Whole cores as `2`, anything else as millicores (`500m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl Serialize for Memory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Cpu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Memory;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a memory quantity such as 256Mi, 1Gi or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Memory, E> {
                Memory::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Memory, E> {
                Memory::bounded(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Memory, E> {
                Memory::bounded(u64::try_from(v).unwrap_or(0)).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Memory, E> {
                Err(E::custom(format!(
                    "memory {v}: not a whole number of bytes; use a unit (1.5Gi)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cpu;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CPU quantity such as 0.5, 2 or 500m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cpu, E> {
                Cpu::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpu, E> {
                Cpu::bounded(v.saturating_mul(1000)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpu, E> {
                Cpu::bounded(u64::try_from(v).unwrap_or(0).saturating_mul(1000)).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cpu, E> {
                // Through its shortest decimal form: 0.1 is 100m, not 100.000…1m.
                let text = format!("{v}");
                if !v.is_finite() || text.contains('e') || text.starts_with('-') {
                    return Err(E::custom(format!("cpu {v}: not a CPU quantity")));
                }
                Cpu::parse(&text).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn pids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    let n = u64::try_from(n).unwrap_or(0);
    limits::within("pids", n, 1, limits::MAX_PIDS as u64)
        .map(Some)
        .map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(Memory::parse("256Mi").unwrap(), Memory(256 << 20));
        assert_eq!(Memory::parse("1Gi").unwrap(), Memory(1 << 30));
        assert_eq!(Memory::parse("1.5Gi").unwrap(), Memory(3 << 29));
        assert_eq!(Memory::parse("500M").unwrap(), Memory(500_000_000));
        assert_eq!(Memory::parse("1048576").unwrap(), Memory(1 << 20));
        assert_eq!(Memory::parse("2048k").unwrap(), Memory(2_048_000));
        for bad in [
            "",
            "Mi",
            "-1Mi",
            "1.5",
            "1Mb",
            "1 Mi x",
            "1e6",
            "0.0000001Ki",
        ] {
            assert!(Memory::parse(bad).is_err(), "{bad}");
        }
        let e = Memory::parse("1Ki").unwrap_err();
        assert!(e.contains("outside 1Mi to"), "{e}");
        assert!(Memory::parse("99999999999999999999Ti").is_err());
        assert!(Memory::parse("100Ti").is_err());
        assert_eq!(Memory(256 << 20).to_string(), "256Mi");
        assert_eq!(Memory(3 << 29).to_string(), "1536Mi");
        assert_eq!(Memory(2_048_000).to_string(), "2000Ki");
        assert_eq!(Memory(2_048_001).to_string(), "2048001");
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(Cpu::parse("0.5").unwrap(), Cpu(500));
        assert_eq!(Cpu::parse("500m").unwrap(), Cpu(500));
        assert_eq!(Cpu::parse("2").unwrap(), Cpu(2000));
        assert_eq!(Cpu::parse(".25").unwrap(), Cpu(250));
        for bad in ["", "m", "0.0001", "1.5m", "-1", "1 core", "0"] {
            assert!(Cpu::parse(bad).is_err(), "{bad}");
        }
        assert!(Cpu::parse("5m").unwrap_err().contains("outside 10m"));
        assert_eq!(Cpu(500).to_string(), "500m");
        assert_eq!(Cpu(2000).to_string(), "2");
    }

    #[test]
    fn yaml_numbers_and_strings() {
        let r: Resources =
            serde_json::from_str(r#"{"memory": 268435456, "cpu": 0.1, "pids": 64}"#).unwrap();
        assert_eq!(r.memory, Some(Memory(256 << 20)));
        assert_eq!(r.cpu, Some(Cpu(100)));
        assert_eq!(r.pids, Some(64));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"memory":"256Mi","cpu":"100m","pids":64}"#);
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), r);
        let r: Resources = serde_json::from_str(r#"{"cpu": 2}"#).unwrap();
        assert_eq!(r.cpu, Some(Cpu(2000)));
        assert!(serde_json::from_str::<Resources>(r#"{"pids": 0}"#).is_err());
        assert!(serde_json::from_str::<Resources>(r#"{"pids": -3}"#).is_err());
        assert!(serde_json::from_str::<Resources>(r#"{"gpu": 1}"#).is_err());
        assert!(serde_json::from_str::<Resources>(r#"{"memory": 1.5}"#).is_err());
    }
}
