//! `rune events [NAME] [-w]`: what happened to services and their instances,
//! oldest first (newest last, as `kubectl get events`), from `events/`.

use serde::Serialize;

use super::output::{age, print_table, table, to_json};
use crate::exit;
use crate::model::event::Event;
use crate::store::{Kv, Store, watch::WatchEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Events live about an hour after they were last seen; a repeat \
raises COUNT instead of adding a line.

Examples:
  rune events
  rune events api -w
  rune events -A -o json"
)]
pub struct EventsArgs {
    /// Only this service's events (and its instances').
    pub name: Option<String>,
    /// The namespace.
    #[arg(
        short,
        long,
        default_value = "default",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: String,
    /// Events of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After the list, keep watching and print events as they happen (a repeat
    /// again, with its new count).
    #[arg(short, long)]
    pub watch: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: EventsFormat,
}

/// The prefix the arguments select.
fn prefix(store: &Store, a: &EventsArgs) -> String {
    let k = store.keys();
    match (&a.name, a.all_namespaces) {
        (_, true) => k.events(),
        (Some(name), false) => k.events_of(&a.namespace, name),
        (None, false) => k.events_in(&a.namespace),
    }
}

/// The events stored under `prefix`, oldest first, and the read's revision.
pub async fn load(store: &Store, prefix: &str) -> exit::Result<(Vec<Event>, i64)> {
    let (kvs, revision) = store.list(prefix).await?;
    let mut events: Vec<Event> = kvs.iter().filter_map(parse).collect();
    sort(&mut events);
    Ok((events, revision))
}

fn parse(kv: &Kv) -> Option<Event> {
    kv.json::<Event>().ok()
}

/// Newest last; ties by first seen, then object.
pub fn sort(events: &mut [Event]) {
    events.sort_by(|a, b| {
        (a.last_seen, a.first_seen, &a.object).cmp(&(b.last_seen, b.first_seen, &b.object))
    });
}

pub async fn run(store: &Store, a: EventsArgs) -> exit::Result<()> {
    let prefix = prefix(store, &a);
    let (events, revision) = load(store, &prefix).await?;
    if let Some(name) = a
        .name
        .as_deref()
        .filter(|_| events.is_empty() && !a.all_namespaces)
    {
        let state = store.service_state(&a.namespace, name).await?;
        if state.spec.is_none() && state.status.is_none() {
            return Err(super::get::not_found(&a.namespace, name));
        }
    }
    let all = a.all_namespaces;
    match a.output {
        EventsFormat::Json if !a.watch => {
            #[derive(Serialize)]
            struct List<'a> {
                events: &'a [Event],
            }
            println!("{}", to_json(&List { events: &events }));
        }
        EventsFormat::Json => {
            for e in &events {
                println!("{}", serde_json::to_string(e).expect("events serialize"));
            }
        }
        EventsFormat::Table => {
            if events.is_empty() && !a.watch {
                match (&a.name, all) {
                    (_, true) => eprintln!("No events."),
                    (Some(name), false) => eprintln!("No events for {}/{name}.", a.namespace),
                    (None, false) => eprintln!("No events in namespace {}.", a.namespace),
                }
                return Ok(());
            }
            // With -w and nothing yet: the header alone, the rows follow.
            print_table(&events_table(&events, all));
        }
    }
    if a.watch {
        follow(store, prefix, revision, a.output, all).await?;
    }
    Ok(())
}

/// The events table: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, COUNT (NAMESPACE
/// first with `-A`).
pub fn events_table(events: &[Event], namespaces: bool) -> comfy_table::Table {
    let mut columns = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE", "COUNT"];
    if namespaces {
        columns.insert(0, "NAMESPACE");
    }
    let mut t = table(&columns);
    for e in events {
        let mut row = vec![
            age(Some(e.last_seen)),
            e.kind.to_string(),
            e.reason.clone(),
            e.object.clone(),
            e.message.clone(),
            e.count.to_string(),
        ];
        if namespaces {
            row.insert(0, e.namespace.clone());
        }
        t.add_row(row);
    }
    t
}

async fn follow(
    store: &Store,
    prefix: String,
    revision: i64,
    format: EventsFormat,
    namespaces: bool,
) -> exit::Result<()> {
    let mut watch = crate::store::watch::watch_prefix_after(store.clone(), prefix, revision);
    loop {
        let ev = tokio::select! {
            ev = watch.recv() => ev,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(ev) = ev else { return Ok(()) };
        let mut events: Vec<Event> = match ev {
            WatchEvent::Put(kv) => parse(&kv).into_iter().collect(),
            // After a compaction: the whole list again is no news; only what is
            // newer than what was printed would be, and that is not known here.
            WatchEvent::Reset { .. } | WatchEvent::Delete(_) => continue,
            WatchEvent::Connected(up) => {
                if !up {
                    eprintln!(
                        "warning: lost the connection to etcd at {}; retrying",
                        store.endpoints()
                    );
                }
                continue;
            }
        };
        sort(&mut events);
        match format {
            EventsFormat::Json => {
                for e in &events {
                    println!("{}", serde_json::to_string(e).expect("events serialize"));
                }
            }
            EventsFormat::Table => {
                let t = events_table(&events, namespaces);
                for line in t.to_string().lines().skip(1) {
                    println!("{}", line.trim_end());
                }
            }
        }
    }
}
