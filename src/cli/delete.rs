//! `rune delete service NAME`: mark the service for deletion. The controller stops
//! its instances gracefully, then removes every key of the service.

use jiff::Timestamp;

use super::get::not_found;
use crate::exit::{self, Error};
use crate::model::StoredService;
use crate::store::{Store, cmp, op};

#[derive(Debug, clap::Subcommand)]
pub enum DeleteCommand {
    /// Delete a service: its instances are stopped, then its records removed.
    #[command(
        visible_alias = "svc",
        after_help = "Examples:
  rune delete service api
  rune delete service api --wait           # until every instance is gone
  rune delete service worker -n batch

The service is marked for deletion and shows as Terminating until the controller
has stopped every instance and removed its keys. Without a running controller it
stays marked; nothing is stopped until a controller runs."
    )]
    Service {
        /// The service.
        name: String,
        /// The service's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Wait until the controller has stopped every instance and removed the
        /// service (exit 3 if that takes longer than --timeout).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = crate::model::duration::parse, requires = "wait")]
        timeout: std::time::Duration,
    },
    /// Delete a config (instances that use it fail to start until it is back).
    Config(super::configs::DeleteArgs),
    /// Delete a secret (instances that use it fail to start until it is back).
    Secret(super::configs::DeleteArgs),
}

pub async fn run(store: &Store, cmd: DeleteCommand) -> exit::Result<()> {
    let DeleteCommand::Service {
        name,
        namespace,
        wait,
        timeout,
    } = cmd
    else {
        unreachable!("cli::run sends configs and secrets to cli::configs")
    };
    let key = store.keys().service(&namespace, &name);
    let Some(kv) = store.get(&key).await? else {
        return Err(not_found(&namespace, &name));
    };
    let mark = match StoredService::parse(&key, &kv.value, &namespace, &name) {
        Ok(mut s) => {
            if s.deletion_timestamp.is_some() {
                println!("service {namespace}/{name} is already being deleted");
                return Ok(());
            }
            s.deletion_timestamp = Some(Timestamp::now());
            s.to_json()
        }
        // An unreadable spec cannot carry the mark; remove it outright. The
        // controller stops instances whose service no longer exists.
        Err(_) => {
            let res = store
                .txn(
                    vec![cmp::mod_rev(&key, kv.mod_revision)],
                    vec![op::delete(&key)],
                    vec![],
                )
                .await?;
            if !res.succeeded {
                return Err(Error::conflict(
                    "the service changed while deleting it; try again",
                ));
            }
            println!("service {namespace}/{name} deleted (its spec was invalid)");
            return Ok(());
        }
    };
    let res = store
        .txn(
            vec![cmp::mod_rev(&key, kv.mod_revision)],
            vec![op::put(&key, mark)],
            vec![],
        )
        .await?;
    if !res.succeeded {
        return Err(Error::conflict(
            "the service changed while deleting it; try again",
        ));
    }
    println!("service {namespace}/{name} marked for deletion");
    if wait {
        wait_gone(store, &key, timeout).await?;
        println!("service {namespace}/{name} deleted");
    }
    Ok(())
}

/// Watches the spec key until the controller removes it.
async fn wait_gone(store: &Store, key: &str, timeout: std::time::Duration) -> exit::Result<()> {
    use crate::store::watch::{WatchEvent, watch_prefix};
    let mut events = watch_prefix(store.clone(), key.to_string());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                return Err(Error::new(exit::Exit::StoppedWaiting, format!(
                    "stopped waiting after {}: the service is still being deleted (is rune-controller running?)",
                    crate::model::duration::format(timeout)
                )));
            }
            ev = events.recv() => match ev {
                Some(WatchEvent::Delete(kv)) if kv.key == key => return Ok(()),
                Some(WatchEvent::Reset { kvs, .. }) if !kvs.iter().any(|kv| kv.key == key) => return Ok(()),
                Some(_) => {}
                None => return Err(Error::etcd("lost the watch on etcd")),
            },
        }
    }
}
