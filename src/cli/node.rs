//! `rune node forget NODE`: the operator's word that a lost node will not come back
//! (as `kubectl delete node`). Until then rune cannot know whether that node's
//! instances still run, so it shows them `Unknown` and a stop or restart waits for
//! them. Forgetting deletes the node's instance records (and their reports), which
//! declares those instances gone: waiting operations go on, and the controller no
//! longer counts them.
//!
//! Refused while the node is registered: a live agent speaks for its own node. If
//! the agent does come back later, it stops every process that has no record.

use crate::exit::{self, Error};
use crate::model::{InstanceRecord, Versioned};
use crate::store::batch::{self, Write};
use crate::store::{Store, cmp};

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
}

pub async fn run(store: &Store, cmd: NodeCommand) -> exit::Result<()> {
    let NodeCommand::Forget { node } = cmd;
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
