//! `rune history NAME`: the last operations on a service and how they ended.

use serde::Serialize;

use super::output::{Format, age, print_document, print_table, table};
use crate::exit;
use crate::model::{HistoryEntry, duration};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune history api
  rune history api -o yaml")]
pub struct HistoryArgs {
    /// The service.
    pub name: String,
    /// The service's namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(store: &Store, a: HistoryArgs) -> exit::Result<()> {
    let state = store.service_state(&a.namespace, &a.name).await?;
    if state.spec.is_none() && state.status.is_none() {
        return Err(super::get::not_found(&a.namespace, &a.name));
    }
    let status = state.status();
    // The operation in progress first, then what is finished, newest first.
    let mut entries: Vec<HistoryEntry> = Vec::new();
    if let Some(p) = status.operation.as_ref().filter(|p| !p.phase.is_terminal()) {
        entries.push(p.history_entry(&p.message));
    }
    entries.extend(status.history.iter().cloned());
    match a.output {
        Format::Yaml | Format::Json => {
            #[derive(Serialize)]
            struct History {
                operations: Vec<HistoryEntry>,
            }
            print_document(
                a.output,
                &History {
                    operations: entries,
                },
            )
        }
        Format::Table | Format::Wide => {
            if entries.is_empty() {
                eprintln!("No operations recorded for {}/{} yet.", a.namespace, a.name);
                return Ok(());
            }
            let mut t = table(&[
                "OPERATION",
                "KIND",
                "FROM",
                "TO",
                "MODE",
                "BY",
                "RESULT",
                "STARTED",
                "TOOK",
                "REASON / ERROR",
            ]);
            for e in &entries {
                let took = e
                    .finished_at
                    .map(|f| {
                        let secs = f.duration_since(e.started_at).as_secs().max(0) as u64;
                        duration::format(std::time::Duration::from_secs(secs))
                    })
                    .unwrap_or_else(|| "-".into());
                t.add_row(vec![
                    short_id(&e.id),
                    e.kind.to_string(),
                    e.from.to_string(),
                    e.to.to_string(),
                    e.mode.to_string(),
                    e.requested_by.clone(),
                    e.result.to_string(),
                    format!("{} ago", age(Some(e.started_at))),
                    took,
                    e.remarks(),
                ]);
            }
            print_table(&t);
            Ok(())
        }
    }
}

/// UUIDs are long; their last 12 hex digits are random and enough to tell apart.
fn short_id(id: &str) -> String {
    if id.len() == 36 {
        id[24..].to_string()
    } else {
        id.to_string()
    }
}
