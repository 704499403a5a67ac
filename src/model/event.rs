//! Events (`events/<ns>/<svc>/<id>`): what happened to a service and its instances,
//! recorded by the controller and the agents, shown by `rune events` and
//! `rune describe`. A repeat (same object, reason and message) is the same key,
//! so its id is a hash of those three: the writer bumps `count` and `lastSeen`.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// One CamelCase word: `Scheduled`, `Started`, `Exited`, `BackOff`, ….
    pub reason: String,
    pub message: String,
    /// `service/<name>` or `instance/<id>`.
    pub object: String,
    pub namespace: String,
    pub service: String,
    /// The node the object is on, when it is an instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// `controller` or `agent <node>`.
    pub source: String,
    pub count: u32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// The object name of a service's events.
pub fn service_object(name: &str) -> String {
    format!("service/{name}")
}

/// The object name of an instance's events.
pub fn instance_object(id: &str) -> String {
    format!("instance/{id}")
}

/// The key segment of an event: 16 hex digits of a 64-bit FNV-1a hash of object,
/// reason and message. Stable across builds and platforms (std's hasher is not), so
/// every writer of a repeat lands on the same key.
pub fn event_id(object: &str, reason: &str, message: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [object, reason, message] {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl Event {
    pub fn id(&self) -> String {
        event_id(&self.object, &self.reason, &self.message)
    }

    /// This event seen once more at `now`.
    pub fn repeat(&mut self, now: Timestamp) {
        self.count = self.count.saturating_add(1);
        self.last_seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_and_tells_fields_apart() {
        let id = event_id("instance/a1", "Exited", "exit code 1");
        assert_eq!(id.len(), 16);
        assert_eq!(id, event_id("instance/a1", "Exited", "exit code 1"));
        // A fixed value: the id must not change between builds (writers of one
        // prefix may run different builds during an upgrade).
        assert_eq!(id, "dec359e2a2542c5c");
        assert_ne!(id, event_id("instance/a1", "Exited", "exit code 2"));
        assert_ne!(id, event_id("instance/a2", "Exited", "exit code 1"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(event_id("ab", "c", "m"), event_id("a", "bc", "m"));
    }

    #[test]
    fn json_fields_are_the_documented_ones() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = Event {
            kind: EventType::Warning,
            reason: "Exited".into(),
            message: "exit code 1".into(),
            object: instance_object("a1"),
            namespace: "default".into(),
            service: "api".into(),
            node: "n1".into(),
            source: "agent n1".into(),
            count: 2,
            first_seen: at,
            last_seen: at,
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        for field in [
            "type",
            "reason",
            "message",
            "object",
            "node",
            "source",
            "count",
            "firstSeen",
            "lastSeen",
        ] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        assert_eq!(v["type"], "Warning");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
