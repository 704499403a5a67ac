//! What the leader knows about node health, kept from its watch: which nodes are
//! registered, which nodes instance records name, and since when a named node has
//! been missing.
//!
//! Two rules keep an etcd or network outage from looking like machines dying:
//! - **Grace counts from health.** A node's lost time counts from the later of when
//!   it went missing and when this controller was last healthy with etcd again
//!   (a new leadership term, or the watch reconnecting). While etcd was away no
//!   agent could renew its lease, so every node "went missing" then.
//! - **Full disruption.** When more than a share of the nodes that hold instances
//!   are missing at once, the cause is more likely the network or etcd than that
//!   many machines; replacements pause until the share drops (Kubernetes' node
//!   lifecycle controller does the same with `--unhealthy-zone-threshold`).
//!
//! Pure: the current time is passed in, so the rules are unit-tested.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{NodeRecord, NodeState};
use crate::store::watch::WatchEvent;
use crate::store::{Keys, Kv};

#[derive(Debug)]
pub struct NodeTracker {
    /// Registered nodes (their key exists, so their lease is alive).
    alive: HashSet<String>,
    /// The registered nodes' records that parse: what placement chooses from. Kept
    /// here, from the watch, rather than read by each reconcile: a reconcile's reads
    /// then grow with its own service, not with the fleet's nodes.
    records: BTreeMap<String, NodeRecord>,
    /// Instance key → the node its record names.
    placements: HashMap<String, String>,
    /// How many records name each node (kept with `placements`, so that one event
    /// updates one node instead of rescanning every record).
    named: HashMap<String, usize>,
    /// Named nodes that are not registered, since when.
    missing_since: HashMap<String, Instant>,
    /// When this controller last became healthy with etcd.
    healthy_since: Instant,
    /// The operator's node states (`node-state/<node>`) that parse: cordoned and
    /// draining nodes take no new instances.
    states: HashMap<String, NodeState>,
    /// Set when a registered node's record changed where its instances are
    /// reached (an agent restarted with another `--node-ip` on the same lease):
    /// every service's endpoints must follow, not only at the next resync.
    readdressed: bool,
}

/// The tracker's verdict on the nodes, for one reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHealth {
    /// For each missing node: how long it counts as lost.
    pub lost_for: HashMap<String, Duration>,
    /// Set when replacements are paused (full disruption), saying why.
    pub disrupted: Option<String>,
}

impl NodeTracker {
    pub fn new(now: Instant) -> Self {
        NodeTracker {
            alive: HashSet::new(),
            records: BTreeMap::new(),
            placements: HashMap::new(),
            named: HashMap::new(),
            missing_since: HashMap::new(),
            healthy_since: now,
            states: HashMap::new(),
            readdressed: false,
        }
    }

    /// The full state from a listing (a new term, or after compaction).
    pub fn reset(
        &mut self,
        alive: impl IntoIterator<Item = String>,
        placements: impl IntoIterator<Item = (String, String)>,
        now: Instant,
    ) {
        self.alive = alive.into_iter().collect();
        self.placements = placements.into_iter().collect();
        self.named.clear();
        for node in self.placements.values() {
            *self.named.entry(node.clone()).or_default() += 1;
        }
        // Nodes still missing keep their time; the rest are refreshed.
        let (named, alive) = (&self.named, &self.alive);
        self.missing_since
            .retain(|node, _| named.contains_key(node) && !alive.contains(node));
        let nodes: Vec<String> = self.named.keys().cloned().collect();
        for node in nodes {
            self.refresh(&node, now);
        }
    }

    pub fn node_up(&mut self, node: &str, now: Instant) {
        self.alive.insert(node.to_string());
        self.refresh(node, now);
    }

    pub fn node_down(&mut self, node: &str, now: Instant) {
        self.alive.remove(node);
        self.refresh(node, now);
    }

    pub fn placed(&mut self, instance_key: &str, node: &str, now: Instant) {
        let before = self
            .placements
            .insert(instance_key.to_string(), node.to_string());
        if before.as_deref() == Some(node) {
            return;
        }
        *self.named.entry(node.to_string()).or_default() += 1;
        self.refresh(node, now);
        if let Some(before) = before {
            self.unname(&before, now);
        }
    }

    pub fn unplaced(&mut self, instance_key: &str, now: Instant) {
        if let Some(node) = self.placements.remove(instance_key) {
            self.unname(&node, now);
        }
    }

    fn unname(&mut self, node: &str, now: Instant) {
        if let Some(count) = self.named.get_mut(node) {
            *count -= 1;
            if *count == 0 {
                self.named.remove(node);
            }
        }
        self.refresh(node, now);
    }

    /// The controller reached etcd again after losing it: lost time starts over.
    pub fn healthy_again(&mut self, now: Instant) {
        self.healthy_since = now;
    }

    /// A node is missing while a record names it and it is not registered; a node
    /// that nothing names any more is forgotten.
    fn refresh(&mut self, node: &str, now: Instant) {
        if self.named.contains_key(node) && !self.alive.contains(node) {
            self.missing_since.entry(node.to_string()).or_insert(now);
        } else {
            self.missing_since.remove(node);
        }
    }

    /// The registered nodes whose records parse, by name, each with the number of
    /// instance records naming it as this controller knows it (fresher than the
    /// count the agent reports, which trails by a round trip and a debounce).
    pub fn records(&self) -> BTreeMap<String, NodeRecord> {
        let mut records = self.records.clone();
        for (name, record) in records.iter_mut() {
            record.instances = self.named.get(name).copied().unwrap_or(0) as u32;
        }
        records
    }

    /// The node states (cordoned, draining) by node name.
    pub fn states(&self) -> HashMap<String, NodeState> {
        self.states.clone()
    }

    /// How long each missing node counts as lost, and whether replacements pause
    /// (more than `threshold` of the nodes that matter missing at once).
    pub fn health(&self, now: Instant, threshold: f64) -> NodeHealth {
        let lost_for = self
            .missing_since
            .iter()
            .map(|(n, since)| {
                (
                    n.clone(),
                    now.duration_since((*since).max(self.healthy_since)),
                )
            })
            .collect();
        let missing = self.missing_since.len();
        let total = self.alive.len() + missing;
        // One node of one is no "share": a single-node system whose node died is
        // a machine failure as far as anyone can tell.
        let disrupted = (total >= 2 && missing as f64 > threshold * total as f64).then(|| {
            format!(
                "{missing} of {total} nodes are lost at once: more likely an etcd or network \
                 problem than failed machines, so nothing is replaced until fewer than {:.0}% \
                 are lost (or `rune node forget` the dead ones)",
                threshold * 100.0
            )
        });
        NodeHealth {
            lost_for,
            disrupted,
        }
    }
}

/// Just the field the tracker needs from an instance record.
#[derive(serde::Deserialize)]
struct Placement {
    node: String,
}

/// A node key whose record does not parse: it counts as not registered.
#[derive(Debug)]
pub struct BadNode {
    pub key: String,
    pub revision: i64,
    pub error: String,
}

impl NodeTracker {
    /// Follows one event of the leader's watch over the whole prefix; returns the
    /// node records in it that do not parse (to be logged and counted).
    pub fn observe(&mut self, keys: &Keys, ev: &WatchEvent, now: Instant) -> Vec<BadNode> {
        let node_of = |kv: &Kv| keys.segments("nodes", &kv.key).map(|s| s.join("/"));
        let placement_of = |kv: &Kv| {
            keys.segments("instances", &kv.key)?;
            Some(serde_json::from_slice::<Placement>(&kv.value).ok()?.node)
        };
        let state_of = |kv: &Kv| keys.segments("node-state", &kv.key).map(|s| s.join("/"));
        let mut bad = Vec::new();
        match ev {
            WatchEvent::Reset { kvs, .. } => {
                self.records.clear();
                self.states.clear();
                for kv in kvs {
                    if let Some(n) = node_of(kv) {
                        self.record(n, kv, &mut bad);
                    } else if let Some(n) = state_of(kv) {
                        self.state(n, kv, &mut bad);
                    }
                }
                self.reset(
                    kvs.iter().filter_map(node_of),
                    kvs.iter()
                        .filter_map(|kv| Some((kv.key.clone(), placement_of(kv)?))),
                    now,
                )
            }
            WatchEvent::Put(kv) => {
                if let Some(n) = node_of(kv) {
                    self.node_up(&n, now);
                    self.record(n, kv, &mut bad);
                } else if let Some(n) = state_of(kv) {
                    self.state(n, kv, &mut bad);
                } else if let Some(n) = placement_of(kv) {
                    self.placed(&kv.key, &n, now);
                }
            }
            WatchEvent::Delete(kv) => {
                if let Some(n) = node_of(kv) {
                    self.node_down(&n, now);
                    self.records.remove(&n);
                } else if let Some(n) = state_of(kv) {
                    self.states.remove(&n);
                } else if keys.segments("instances", &kv.key).is_some() {
                    self.unplaced(&kv.key, now);
                }
            }
            WatchEvent::Connected(true) => self.healthy_again(now),
            WatchEvent::Connected(false) => {}
        }
        bad
    }

    /// A node state that does not parse counts as cordoned: an operator meant
    /// something by writing it, and placing nothing there is the safe reading.
    fn state(&mut self, node: String, kv: &Kv, bad: &mut Vec<BadNode>) {
        match kv.json::<NodeState>() {
            Ok(state) => {
                self.states.insert(node, state);
            }
            Err(error) => {
                self.states.insert(
                    node,
                    NodeState {
                        cordoned: true,
                        draining: false,
                        by: String::new(),
                        at: jiff::Timestamp::UNIX_EPOCH,
                        reason: format!("node state does not parse: {error}"),
                    },
                );
                bad.push(BadNode {
                    key: kv.key.clone(),
                    revision: kv.mod_revision,
                    error,
                });
            }
        }
    }

    /// Whether a node's address changed since last asked (see `readdressed`).
    pub fn take_readdressed(&mut self) -> bool {
        std::mem::take(&mut self.readdressed)
    }

    fn record(&mut self, node: String, kv: &Kv, bad: &mut Vec<BadNode>) {
        match kv.json::<NodeRecord>() {
            Ok(record) => {
                let address = super::endpoints::address_of(&record);
                if let Some(before) = self.records.insert(node, record) {
                    self.readdressed |= super::endpoints::address_of(&before) != address;
                }
            }
            Err(error) => {
                self.records.remove(&node);
                bad.push(BadNode {
                    key: kv.key.clone(),
                    revision: kv.mod_revision,
                    error,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn tracker(t0: Instant, alive: &[&str], placed: &[(&str, &str)]) -> NodeTracker {
        let mut t = NodeTracker::new(t0);
        t.reset(
            alive.iter().map(|s| s.to_string()),
            placed.iter().map(|(i, n)| (i.to_string(), n.to_string())),
            t0,
        );
        t
    }

    #[test]
    fn a_missing_node_counts_from_when_it_went_missing() {
        let t0 = Instant::now();
        let mut t = tracker(t0, &["a", "b", "c"], &[("i1", "a"), ("i2", "b")]);
        t.node_down("a", t0 + secs(10));
        let h = t.health(t0 + secs(40), 0.55);
        assert_eq!(h.lost_for.get("a"), Some(&secs(30)));
        assert_eq!(h.disrupted, None, "1 of 3 is not a disruption");
        t.node_up("a", t0 + secs(41));
        assert!(t.health(t0 + secs(41), 0.55).lost_for.is_empty());
    }

    #[test]
    fn lost_time_starts_over_when_the_controller_is_healthy_again() {
        let t0 = Instant::now();
        let mut t = tracker(t0, &["a", "b"], &[("i1", "a")]);
        t.node_down("a", t0);
        t.healthy_again(t0 + secs(25));
        assert_eq!(
            t.health(t0 + secs(30), 0.55).lost_for.get("a"),
            Some(&secs(5))
        );
    }

    #[test]
    fn most_nodes_missing_at_once_pauses_replacements() {
        let t0 = Instant::now();
        let mut t = tracker(
            t0,
            &["a", "b", "c"],
            &[("i1", "a"), ("i2", "b"), ("i3", "c")],
        );
        t.node_down("a", t0);
        t.node_down("b", t0);
        let h = t.health(t0 + secs(100), 0.55);
        assert!(h.disrupted.as_deref().unwrap().contains("2 of 3"), "{h:?}");
        t.node_up("b", t0 + secs(101));
        assert_eq!(t.health(t0 + secs(101), 0.55).disrupted, None);
    }

    #[test]
    fn a_single_node_is_never_a_disruption() {
        let t0 = Instant::now();
        let mut t = tracker(t0, &["a"], &[("i1", "a")]);
        t.node_down("a", t0);
        assert_eq!(t.health(t0 + secs(100), 0.55).disrupted, None);
    }

    #[test]
    fn nodes_nothing_names_are_forgotten_and_missing_at_reset_counts_from_then() {
        let t0 = Instant::now();
        let mut t = tracker(t0, &["b"], &[("i1", "a")]);
        assert_eq!(
            t.health(t0 + secs(5), 0.55).lost_for.get("a"),
            Some(&secs(5))
        );
        t.unplaced("i1", t0 + secs(6));
        assert!(t.health(t0 + secs(7), 0.55).lost_for.is_empty());
        // A node that is down but holds nothing is not part of the share.
        t.node_down("b", t0 + secs(8));
        assert_eq!(t.health(t0 + secs(9), 0.55), NodeHealth::default());
    }

    #[test]
    fn node_states_follow_the_watch_and_a_bad_one_counts_as_cordoned() {
        let t0 = Instant::now();
        let keys = Keys::new("/t");
        let kv = |key: String, value: &str| Kv {
            key,
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 2,
            lease: 0,
        };
        let mut t = NodeTracker::new(t0);
        let state = r#"{"cordoned":true,"by":"me@here","at":"2027-01-15T08:00:00Z"}"#;
        let bad = t.observe(&keys, &WatchEvent::Put(kv(keys.node_state("a"), state)), t0);
        assert!(bad.is_empty());
        assert!(t.states()["a"].cordoned);
        let bad = t.observe(&keys, &WatchEvent::Put(kv(keys.node_state("b"), "{")), t0);
        assert_eq!(bad.len(), 1);
        assert!(t.states()["b"].unschedulable());
        t.observe(&keys, &WatchEvent::Delete(kv(keys.node_state("a"), "")), t0);
        assert!(!t.states().contains_key("a"));
        let reset = WatchEvent::Reset {
            kvs: vec![kv(keys.node_state("c"), state)],
            revision: 3,
        };
        t.observe(&keys, &reset, t0);
        assert_eq!(t.states().keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn a_node_record_rewritten_with_another_address_is_noticed() {
        let t0 = Instant::now();
        let keys = Keys::new("/t");
        let put = |ip: &str, instances: u32| {
            let value = serde_json::json!({
                "name": "a", "address": "10.0.0.9:9465", "agentVersion": "t",
                "startedAt": "2027-01-15T08:00:00Z", "instances": instances, "leaseId": 1,
                "ip": ip,
            });
            WatchEvent::Put(Kv {
                key: keys.node("a"),
                value: value.to_string().into_bytes(),
                create_revision: 1,
                mod_revision: 2 + i64::from(instances),
                lease: 1,
            })
        };
        let mut t = NodeTracker::new(t0);
        t.observe(&keys, &put("127.0.0.1", 0), t0);
        assert!(!t.take_readdressed(), "a new node is no change of address");
        t.observe(&keys, &put("127.0.0.1", 1), t0);
        assert!(
            !t.take_readdressed(),
            "an instance count is no change of address"
        );
        t.observe(&keys, &put("127.0.0.2", 1), t0);
        assert!(t.take_readdressed(), "same key, same lease, another ip");
        assert!(!t.take_readdressed(), "told once");
    }
}
