//! `rune diff FILE...`: what casting the files would change, field by field,
//! without writing (as `kubectl diff`). Exits 0 when nothing would change, 1 when
//! something would, 2 for a file that is no valid spec, 5 when etcd cannot be read.

use std::path::PathBuf;

use serde_json::Value;

use crate::exit::{self, Error, Exit};
use crate::model::diff::{self, Change};
use crate::model::{ServiceSpec, StoredService};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rune diff manifests/web.yaml
  rune diff manifests/*.yaml && echo 'nothing to cast'

Compares each spec with the stored one as `rune cast` would write it (a spec without
`scale:` keeps the live scale). Lines read `  path: old → new`, `+ path: new` (added)
and `- path: old` (removed).

Exit codes: 0 nothing would change · 1 something would · 2 a file is not a valid
spec · 5 etcd unreachable or refused the request.")]
pub struct DiffArgs {
    /// Spec files (YAML or JSON; `-` reads standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn run(store: &Store, args: DiffArgs) -> exit::Result<()> {
    let specs = super::cast::read_specs(&args.files)?;
    let mut differs = false;
    for spec in specs {
        let changes = changes(store, &spec).await?;
        differs |= !changes.is_empty();
    }
    if differs {
        return Err(Error::silent(Exit::OperationFailed));
    }
    Ok(())
}

/// Prints and returns what casting `spec` would change.
async fn changes(store: &Store, spec: &ServiceSpec) -> exit::Result<Vec<Change>> {
    let (ns, name) = (spec.namespace(), spec.name());
    let key = store.keys().service(ns, name);
    let what = format!("service {ns}/{name}");
    let mut next = spec.clone();
    let existing = match store.get(&key).await? {
        None => None,
        Some(kv) => match StoredService::parse(&key, &kv.value, ns, name) {
            Ok(stored) => Some(stored),
            Err(e) => {
                // A cast replaces a stored spec that does not parse: show all it writes.
                if next.scale.is_none() {
                    next.scale = Some(super::cast::live_scale(store, spec, None).await?);
                }
                println!("{what}: the stored spec is invalid ({e}); a cast would replace it");
                let changes = diff::diff(&Value::Object(Default::default()), &as_value(&next));
                print!("{}", diff::render(&changes));
                return Ok(changes);
            }
        },
    };
    let changes = match &existing {
        None => {
            next.scale = Some(next.scale.unwrap_or(1));
            println!("{what}: would be created");
            diff::diff(&Value::Object(Default::default()), &as_value(&next))
        }
        Some(stored) => {
            if next.scale.is_none() {
                next.scale = Some(super::cast::live_scale(store, spec, Some(stored)).await?);
            }
            let changes = diff::diff(&as_value(&stored.service), &as_value(&next));
            if stored.deletion_timestamp.is_some() {
                println!("{what}: being deleted; a cast is refused until it is gone");
            } else if changes.is_empty() {
                println!("{what}: no changes");
            } else {
                println!("{what}:");
            }
            changes
        }
    };
    print!("{}", diff::render(&changes));
    Ok(changes)
}

fn as_value(spec: &ServiceSpec) -> Value {
    serde_json::to_value(spec).expect("specs serialize")
}
