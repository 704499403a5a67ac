//! `rune get endpoints [NAME]`: what `endpoints/<ns>/<svc>` says, the ready
//! instances' addresses and ports (the controller's; see
//! `controller::endpoints`).

use super::output::{Format, age, print_document, print_table, table};
use crate::exit::{self, Error};
use crate::model::Endpoints;
use crate::store::{Kv, Store};

/// One service's endpoints, or every service's in the namespace.
pub async fn run(
    store: &Store,
    namespace: &str,
    name: Option<&str>,
    output: Format,
) -> exit::Result<()> {
    let k = store.keys();
    let list: Vec<Endpoints> = match name {
        Some(name) => {
            let Some(kv) = store.get(&k.endpoints_of(namespace, name)).await? else {
                if store.get(&k.service(namespace, name)).await?.is_none() {
                    return Err(super::get::not_found(namespace, name));
                }
                // A service the controller has not looked at yet: none ready.
                // (On stderr: standard output stays parseable for `-o json`.)
                eprintln!("service {namespace}/{name} has no endpoints yet");
                return Ok(());
            };
            vec![parse(&kv)?]
        }
        None => {
            let (kvs, _) = store.list(&k.endpoints_in(namespace)).await?;
            kvs.iter().map(parse).collect::<exit::Result<_>>()?
        }
    };
    match (output, name) {
        (Format::Json | Format::Yaml, Some(_)) => print_document(output, &list[0]),
        (Format::Json | Format::Yaml, None) => print_document(output, &list),
        (Format::Table | Format::Wide, _) => {
            print_table(&render(&list));
            for e in list.iter().filter(|e| e.truncated) {
                println!(
                    "note: {} has more ready instances than one value holds; the first {} are listed",
                    e.service,
                    e.endpoints.len()
                );
            }
            Ok(())
        }
    }
}

fn parse(kv: &Kv) -> exit::Result<Endpoints> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| Error::etcd(format!("{}: stored endpoints do not parse: {e}", kv.key)))
}

/// One row per endpoint; a service with none shows `<none>`, as kubectl does.
fn render(list: &[Endpoints]) -> comfy_table::Table {
    let mut t = table(&["SERVICE", "INSTANCE", "NODE", "ADDRESS", "PORTS", "UPDATED"]);
    for e in list {
        let updated = age(Some(e.updated_at));
        if e.endpoints.is_empty() {
            t.add_row([e.service.as_str(), "<none>", "", "", "", &updated]);
        }
        for one in &e.endpoints {
            let ports = one
                .ports
                .iter()
                .map(|(name, port)| format!("{name}:{port}"))
                .collect::<Vec<_>>()
                .join(",");
            t.add_row([
                e.service.as_str(),
                &one.instance,
                &one.node,
                &one.address,
                &ports,
                &updated,
            ]);
        }
    }
    t
}
