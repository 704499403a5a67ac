//! `rune node forget NODE`: the operator's word that a lost node will not come back
//! (as `kubectl delete node`). Until then rune cannot know whether that node's
//! instances still run, so it shows them `Unknown` and a stop or restart waits for
//! them. Forgetting deletes the node's instance records (and their reports), which
//! declares those instances gone: waiting operations go on, and the controller no
//! longer counts them.
//!
//! Refused while the node is registered: a live agent speaks for its own node. If
//! the agent does come back later, it stops every process that has no record.

use std::collections::{BTreeMap, BTreeSet};

use super::output::{Format, age, print_document, print_table, table};
use crate::exit::{self, Error};
use crate::model::{InstanceRecord, NodeRecord, NodeState, Versioned};
use crate::store::batch::{self, Write};
use crate::store::{Read, Store, cmp};

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Declare a lost node gone for good: its instances are forgotten.
    #[command(after_help = "Examples:
  rune node forget worker-7

Only for a node whose agent is gone (its registration expired). Its instances,
shown as Unknown until then, are declared gone: a stop or restart that waits for
them goes on, and nothing counts them any more. If that agent returns after all,
it stops the processes that no longer have a record.")]
    Forget {
        /// The node's name.
        node: String,
    },
    /// Mark a node unschedulable: no new instances go there; the ones it runs stay.
    #[command(after_help = "Examples:
  rune node cordon worker-7 --reason \"disk replacement\"
  rune get nodes

The mark is the operator's (key node-state/<node>), not the agent's: it holds
across agent restarts and while the node is lost, until `rune node uncordon`.
A node rune does not know (not registered, no instances) is an error (exit 4).")]
    Cordon {
        /// The node's name.
        node: String,
        /// Why, shown by `rune get nodes -o wide`.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Cordon a node and move every instance off it, replacements first.
    #[command(after_help = "Examples:
  rune node drain worker-7 --deadline 10m --reason \"kernel upgrade\"

The controller starts a replacement elsewhere and stops an instance of the node only
once its replacement is ready, never taking a service's ready instances to its
`disruption.minAvailable` or below. The command waits until nothing runs on the
node (exit 0; the node stays cordoned) or the deadline passes (exit 1; the node
stays draining and the controller goes on). `rune node uncordon` ends a drain.")]
    Drain {
        /// The node's name.
        node: String,
        /// How long to wait for the node to empty (at most 7d).
        #[arg(long, default_value = "5m", value_parser = deadline)]
        deadline: std::time::Duration,
        /// Why, shown by `rune get nodes -o wide`.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Mark a node schedulable again (undoes `rune node cordon`).
    #[command(after_help = "Examples:
  rune node uncordon worker-7")]
    Uncordon {
        /// The node's name.
        node: String,
    },
}

pub async fn run(store: &Store, cmd: NodeCommand) -> exit::Result<()> {
    match cmd {
        NodeCommand::Forget { node } => forget(store, node).await,
        NodeCommand::Cordon { node, reason } => cordon(store, &node, reason).await,
        NodeCommand::Uncordon { node } => uncordon(store, &node).await,
        NodeCommand::Drain {
            node,
            deadline,
            reason,
        } => drain(store, &node, deadline, reason).await,
    }
}

/// `rune node drain NODE`: marks the node draining, then waits until no instance
/// runs there any more.
async fn drain(
    store: &Store,
    node: &str,
    deadline: std::time::Duration,
    reason: String,
) -> exit::Result<()> {
    check_name(node)?;
    let keys = store.keys();
    let key = keys.node_state(node);
    let current = store.get(&key).await?;
    let state: Option<NodeState> = current.as_ref().and_then(|kv| kv.json().ok());
    if current.is_none() && !known(store, node).await? {
        return Err(not_found(node));
    }
    let until = tokio::time::Instant::now() + deadline;
    let mut marked = match (&state, &current) {
        (Some(s), Some(kv)) if s.draining => (s.clone(), kv.mod_revision),
        _ => {
            let state = NodeState {
                cordoned: true,
                draining: true,
                by: super::scale::requested_by(),
                at: jiff::Timestamp::now(),
                reason,
            };
            let put = crate::store::op::put_json(&key, &state);
            let revision = change_state(store, node, current.as_ref(), put).await?;
            println!("node {node} cordoned; draining");
            (state, revision)
        }
    };
    let mut last = None;
    loop {
        let (copies, _) = store.list(&keys.assignments_of(node)).await?;
        let records: Vec<InstanceRecord> = copies.iter().filter_map(|kv| kv.json().ok()).collect();
        let running = records
            .iter()
            .filter(|r| r.desired == crate::model::DesiredState::Running)
            .count();
        let registered = store.get(&keys.node(node)).await?.is_some();
        let now = (running, records.len());
        if last != Some(now) {
            println!(
                "node {node}: {running} instance(s) to move, {} stopping",
                records.len() - running
            );
            last = Some(now);
        }
        if running == 0 && (records.is_empty() || !registered) {
            break;
        }
        match store.get(&key).await? {
            Some(kv) if kv.json::<NodeState>().is_ok_and(|s| s.draining) => {
                marked.1 = kv.mod_revision;
            }
            _ => {
                return Err(Error::conflict(format!(
                    "node {node}: the drain was ended meanwhile (uncordoned or cordoned \
                     again); {running} instance(s) still on it"
                )));
            }
        }
        if tokio::time::Instant::now() >= until {
            let ids: Vec<String> = records
                .iter()
                .filter(|r| r.desired == crate::model::DesiredState::Running)
                .map(|r| format!("{}/{}/{}", r.namespace, r.service, r.id))
                .collect();
            return Err(Error::new(
                exit::Exit::OperationFailed,
                format!(
                    "node {node}: the deadline ({}) passed with {running} instance(s) still \
                     on it ({}): a replacement cannot be placed or made ready, or \
                     disruption.minAvailable holds it (`rune get services -o wide` says \
                     why). The node stays draining and the controller goes on; `rune node \
                     uncordon {node}` ends the drain",
                    crate::model::duration::format(deadline),
                    ids.join(", ")
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Drained: the node stays cordoned (as after kubectl drain), no longer draining.
    let (state, revision) = marked;
    let cordoned = NodeState {
        draining: false,
        ..state
    };
    store
        .txn(
            vec![cmp::mod_rev(&key, revision)],
            vec![crate::store::op::put_json(&key, &cordoned)],
            vec![],
        )
        .await?;
    println!("node {node} drained");
    Ok(())
}

/// `--deadline`: a duration of at most 7d.
fn deadline(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    crate::model::limits::at_most("--deadline", d, crate::model::limits::MAX_TIMEOUT)
}

/// A node name as agents take it (one key segment), or exit 2.
fn check_name(node: &str) -> exit::Result<()> {
    crate::agent::check_node_name(node).map_err(|e| Error::usage(e.to_string()))
}

/// Whether rune knows the node: registered, or named by an instance.
async fn known(store: &Store, node: &str) -> exit::Result<bool> {
    let keys = store.keys();
    if store.get(&keys.node(node)).await?.is_some() {
        return Ok(true);
    }
    Ok(!store
        .list_keys_limited(&keys.assignments_of(node), 1)
        .await?
        .is_empty())
}

/// `rune node cordon NODE`: writes `node-state/<node>`, compare-and-swap on the
/// state as read.
async fn cordon(store: &Store, node: &str, reason: String) -> exit::Result<()> {
    check_name(node)?;
    let key = store.keys().node_state(node);
    let current = store.get(&key).await?;
    let state: Option<NodeState> = current.as_ref().and_then(|kv| kv.json().ok());
    if state.as_ref().is_some_and(|s| s.cordoned) {
        println!("node {node} already cordoned");
        return Ok(());
    }
    if current.is_none() && !known(store, node).await? {
        return Err(not_found(node));
    }
    let state = NodeState {
        cordoned: true,
        draining: false,
        by: super::scale::requested_by(),
        at: jiff::Timestamp::now(),
        reason,
    };
    let put = crate::store::op::put_json(&key, &state);
    change_state(store, node, current.as_ref(), put).await?;
    println!("node {node} cordoned");
    Ok(())
}

/// `rune node uncordon NODE`: deletes `node-state/<node>` as read.
async fn uncordon(store: &Store, node: &str) -> exit::Result<()> {
    check_name(node)?;
    let key = store.keys().node_state(node);
    let Some(current) = store.get(&key).await? else {
        if !known(store, node).await? {
            return Err(not_found(node));
        }
        println!("node {node} already uncordoned");
        return Ok(());
    };
    let delete = crate::store::op::delete(&key);
    change_state(store, node, Some(&current), delete).await?;
    println!("node {node} uncordoned");
    Ok(())
}

/// Writes (or deletes) `node-state/<node>` only while it is as read (`current`;
/// `None`: still absent); returns the revision it committed at.
async fn change_state(
    store: &Store,
    node: &str,
    current: Option<&crate::store::Kv>,
    op: etcd_client::TxnOp,
) -> exit::Result<i64> {
    let key = store.keys().node_state(node);
    let guard = match current {
        Some(kv) => cmp::mod_rev(&key, kv.mod_revision),
        None => cmp::absent(&key),
    };
    let r = store.txn(vec![guard], vec![op], vec![]).await?;
    if !r.succeeded {
        return Err(Error::conflict(format!(
            "node {node}'s state changed meanwhile; run the command again"
        )));
    }
    Ok(r.revision)
}

async fn forget(store: &Store, node: String) -> exit::Result<()> {
    let keys = store.keys();
    let node_key = keys.node(&node);
    if let Some(kv) = store.get(&node_key).await? {
        return Err(Error::conflict(format!(
            "node {node} is registered (its agent renews lease {:x}): stop that agent first; \
             only a lost node can be forgotten",
            kv.lease
        )));
    }
    // The node's own copies name exactly its instances (a read the size of the
    // node, not of the fleet). A copy changes in the same transaction as its
    // record, so "the copy as read" guards the record as well.
    let (copies, _) = store.list(&keys.assignments_of(&node)).await?;
    let mine: Vec<Versioned<InstanceRecord>> = copies
        .iter()
        .filter_map(|kv| {
            Some(Versioned::new(
                kv.json::<InstanceRecord>().ok()?,
                kv.mod_revision,
            ))
        })
        .filter(|instance| instance.value.node == node)
        .collect();
    if mine.is_empty() {
        println!("node {node} holds no instances; nothing to forget");
        return Ok(());
    }
    let writes = mine.iter().map(|instance| {
        let record = &instance.value;
        let (ns, svc, id) = (&record.namespace, &record.service, &record.id);
        let copy = keys.assignment(&node, ns, svc, id);
        // Only records as read; the record, its copy and its report go together.
        Write::delete(&copy)
            .if_mod_rev(&copy, instance.revision)
            .and(Write::delete(&keys.instance(ns, svc, id)))
            .and(Write::delete(&keys.instance_status(ns, svc, id)))
    });
    for txn in batch::split(writes) {
        // Only while the node stays unregistered.
        let (mut guards, ops) = txn.into_parts();
        guards.push(cmp::absent(&node_key));
        if !store.txn(guards, ops, vec![]).await?.succeeded {
            return Err(Error::conflict(format!(
                "node {node} registered again or its instances changed meanwhile; \
                 run the command again"
            )));
        }
    }
    let ids: Vec<String> = mine
        .iter()
        .map(|instance| &instance.value)
        .map(|record| format!("{}/{}/{}", record.namespace, record.service, record.id))
        .collect();
    println!(
        "node {node} forgotten: {} instance(s) declared gone: {}",
        ids.len(),
        ids.join(", ")
    );
    Ok(())
}

/// A node as `rune get nodes` shows it: what its agent registered, what the
/// operator said (`node-state/`), and how many instance records name it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub status: String,
    /// Whether its agent is registered (its lease alive).
    pub registered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    /// Most instances it accepts (0 = no limit).
    pub capacity: u32,
    /// Instance records naming it.
    pub instances: usize,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
}

impl NodeView {
    fn new(
        name: &str,
        record: Option<NodeRecord>,
        state: Option<NodeState>,
        instances: usize,
    ) -> NodeView {
        let registered = record.is_some();
        let mut status = match (&record, &state) {
            (None, _) if instances > 0 => "Lost".to_string(),
            (None, _) => "NotRegistered".to_string(),
            (Some(_), Some(s)) if s.draining => "Draining".to_string(),
            (Some(_), Some(s)) if s.cordoned => "Cordoned".to_string(),
            (Some(_), _) => "Ready".to_string(),
        };
        if !registered && state.as_ref().is_some_and(|s| s.unschedulable()) {
            status.push_str(if state.as_ref().is_some_and(|s| s.draining) {
                ",Draining"
            } else {
                ",Cordoned"
            });
        }
        NodeView {
            name: name.to_string(),
            status,
            registered,
            address: record.as_ref().map(|r| r.address.clone()),
            agent_version: record.as_ref().map(|r| r.agent_version.clone()),
            started_at: record.as_ref().map(|r| r.started_at),
            capacity: record.as_ref().map_or(0, |r| r.capacity),
            instances,
            labels: record.map(|r| r.labels).unwrap_or_default(),
            state,
        }
    }
}

/// Reads the nodes (one, or all): registrations and node states at one revision,
/// and the instance count of each from the node-scoped copies' keys (keys only:
/// the read is the size of the key names, not of the records).
pub async fn load_nodes(store: &Store, name: Option<&str>) -> exit::Result<Vec<NodeView>> {
    let keys = store.keys();
    let (nodes_prefix, states_prefix) = (keys.nodes(), keys.node_states());
    let (node_key, state_key) = match name {
        Some(n) => (keys.node(n), keys.node_state(n)),
        None => (nodes_prefix.clone(), states_prefix.clone()),
    };
    let reads = if name.is_some() {
        [Read::Key(&node_key), Read::Key(&state_key)]
    } else {
        [Read::Prefix(&node_key), Read::Prefix(&state_key)]
    };
    let (r, _) = store.snapshot(&reads).await?;
    let assignments = match name {
        Some(n) => keys.assignments_of(n),
        None => keys.assignments(),
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for key in store.list_keys(&assignments).await? {
        if let Some(segments) = keys.segments("assignments", &key)
            && segments.len() == 4
        {
            *counts.entry(segments[0].to_string()).or_default() += 1;
        }
    }
    let mut records: BTreeMap<String, NodeRecord> = BTreeMap::new();
    for kv in &r[0] {
        let Some(node) = keys.segments("nodes", &kv.key).map(|s| s.join("/")) else {
            continue;
        };
        match kv.json::<NodeRecord>() {
            Ok(record) => {
                records.insert(node, record);
            }
            Err(e) => eprintln!("warning: {}: does not parse: {e}", kv.key),
        }
    }
    let mut states: BTreeMap<String, NodeState> = BTreeMap::new();
    for kv in &r[1] {
        let Some(node) = keys.segments("node-state", &kv.key).map(|s| s.join("/")) else {
            continue;
        };
        match kv.json::<NodeState>() {
            Ok(state) => {
                states.insert(node, state);
            }
            Err(e) => eprintln!("warning: {}: does not parse: {e}", kv.key),
        }
    }
    let names: BTreeSet<String> = records
        .keys()
        .chain(states.keys())
        .chain(counts.keys())
        .cloned()
        .collect();
    Ok(names
        .into_iter()
        .map(|n| {
            let count = counts.get(&n).copied().unwrap_or(0);
            NodeView::new(&n, records.remove(&n), states.remove(&n), count)
        })
        .collect())
}

/// `rune get nodes [NAME]`.
pub async fn list_nodes(store: &Store, name: Option<&str>, format: Format) -> exit::Result<()> {
    let views = load_nodes(store, name).await?;
    if let Some(name) = name
        && views.is_empty()
    {
        return Err(not_found(name));
    }
    match format {
        Format::Yaml | Format::Json if name.is_some() => print_document(format, &views[0]),
        Format::Yaml | Format::Json => {
            #[derive(serde::Serialize)]
            struct List<'a> {
                items: &'a [NodeView],
            }
            print_document(format, &List { items: &views })
        }
        Format::Table | Format::Wide => {
            if views.is_empty() {
                eprintln!("No nodes.");
                return Ok(());
            }
            let wide = format == Format::Wide;
            let mut header = vec!["NAME", "STATUS", "INSTANCES", "CAPACITY", "AGE", "VERSION"];
            if wide {
                header.extend(["ADDRESS", "LABELS", "MESSAGE"]);
            }
            let mut t = table(&header);
            for v in &views {
                let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
                let mut row = vec![
                    v.name.clone(),
                    v.status.clone(),
                    v.instances.to_string(),
                    if v.capacity == 0 {
                        "-".into()
                    } else {
                        v.capacity.to_string()
                    },
                    age(v.started_at),
                    dash(v.agent_version.clone()),
                ];
                if wide {
                    row.push(dash(v.address.clone()));
                    let labels: Vec<String> =
                        v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    row.push(if labels.is_empty() {
                        "-".into()
                    } else {
                        labels.join(",")
                    });
                    row.push(v.state.as_ref().map(state_message).unwrap_or_default());
                }
                t.add_row(row);
            }
            print_table(&t);
            Ok(())
        }
    }
}

/// "cordoned by ann@host 5m ago: disk failing".
fn state_message(s: &NodeState) -> String {
    let what = if s.draining { "draining" } else { "cordoned" };
    let mut m = format!("{what} by {} {} ago", s.by, age(Some(s.at)));
    if !s.reason.is_empty() {
        m.push_str(": ");
        m.push_str(&s.reason);
    }
    m
}

/// kubectl's wording: `Error from server (NotFound): nodes "x" not found`.
fn not_found(node: &str) -> Error {
    Error::conflict(format!(
        "node {node} not found (not registered, no instances, not cordoned)"
    ))
}
