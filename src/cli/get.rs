//! `rune get services|service|instances` (and the dispatch of `endpoints`, `nodes`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::output::{Format, age, print_document, print_table, table};
use crate::exit::{self, Error};
use crate::model::{
    ConditionKind, InstanceRecord, InstanceStatus, OperationKind, Phase, ServiceRef, ServiceSpec,
    ServiceStatus, SpecError, StoredService,
};
use crate::store::{Kv, Read, Store, watch::WatchEvent};

#[derive(Debug, clap::Subcommand)]
pub enum GetCommand {
    /// List services with their replica counts.
    #[command(
        visible_alias = "svc",
        after_help = "Examples:
  rune get services
  rune get services -A -o wide
  rune get services -n prod -o json"
    )]
    Services {
        /// Namespace to list.
        #[arg(
            short,
            long,
            default_value = "default",
            conflicts_with = "all_namespaces"
        )]
        namespace: String,
        /// List services in every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep watching and print changes as they happen.
        #[arg(short, long)]
        watch: bool,
    },
    /// Show one service: its spec and status.
    #[command(after_help = "Examples:
  rune get service api
  rune get service api -o yaml | grep -A5 status
  rune get service api -w")]
    Service {
        /// The service.
        name: String,
        /// The service's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep watching and print changes as they happen.
        #[arg(short, long)]
        watch: bool,
    },
    /// List instances (of one service, or of the namespace).
    #[command(
        visible_alias = "inst",
        after_help = "Examples:
  rune get instances
  rune get instances api -o wide"
    )]
    Instances {
        service: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List configs (keys, sizes, version, age; values with -o yaml|json).
    #[command(
        visible_alias = "config",
        after_help = "Examples:
  rune get configs
  rune get config app -o yaml"
    )]
    Configs(super::configs::GetArgs),
    /// List secrets: keys, sizes, version and age; values only with --show-values
    /// (and the key file).
    #[command(
        visible_alias = "secret",
        after_help = "Examples:
  rune get secrets
  rune get secret db --show-values -o yaml"
    )]
    Secrets(super::configs::GetArgs),
    /// Where a service's ready instances answer (`endpoints/<ns>/<svc>`, what load
    /// balancers follow).
    #[command(
        visible_aliases = ["endpoint", "ep"],
        after_help = "Examples:
  rune get endpoints
  rune get endpoints api -o json"
    )]
    Endpoints {
        /// One service.
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List nodes: registered, lost (named by instances, not registered), cordoned.
    #[command(
        visible_aliases = ["node", "no"],
        after_help = "Examples:
  rune get nodes
  rune get nodes -o wide
  rune get node worker-1 -o json

STATUS is Ready, Cordoned, Draining (`rune node cordon|drain`), Lost (instance
records name it, but its agent is not registered) or NotRegistered (only cordoned)."
    )]
    Nodes {
        /// One node.
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

pub async fn run(store: &Store, cmd: GetCommand) -> exit::Result<()> {
    match cmd {
        GetCommand::Services {
            namespace,
            all_namespaces,
            output,
            watch,
        } => {
            let ns = (!all_namespaces).then_some(namespace);
            list_services(store, ns.as_deref(), output, None, watch).await
        }
        GetCommand::Service {
            name,
            namespace,
            output,
            watch,
        } => list_services(store, Some(&namespace), output, Some(&name), watch).await,
        GetCommand::Instances {
            service,
            namespace,
            output,
        } => list_instances(store, &namespace, service.as_deref(), output).await,
        GetCommand::Endpoints {
            name,
            namespace,
            output,
        } => super::endpoints::run(store, &namespace, name.as_deref(), output).await,
        GetCommand::Nodes { name, output } => {
            super::node::list_nodes(store, name.as_deref(), output).await
        }
        GetCommand::Configs(_) | GetCommand::Secrets(_) => {
            unreachable!("cli::run sends configs and secrets to cli::configs")
        }
    }
}

/// A service as `get` shows it: its spec (or why it could not be read) and status.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub namespace: String,
    /// The service.
    pub name: String,
    pub spec: Result<StoredService, SpecError>,
    pub status: ServiceStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceDocument<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    spec: Option<&'a ServiceSpec>,
    status: &'a ServiceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_timestamp: Option<jiff::Timestamp>,
}

impl ServiceView {
    fn document(&self) -> ServiceDocument<'_> {
        ServiceDocument {
            error: self.spec.as_ref().err().map(|e| e.to_string()),
            spec: self.spec.as_ref().ok().map(|s| &s.service),
            status: &self.status,
            deletion_timestamp: self.spec.as_ref().ok().and_then(|s| s.deletion_timestamp),
        }
    }

    /// A short word for the STATUS column.
    fn state(&self) -> String {
        match &self.spec {
            Err(_) => return "SpecInvalid".into(),
            Ok(s) if s.deletion_timestamp.is_some() => return "Terminating".into(),
            _ => {}
        }
        if self.status.is_true(ConditionKind::SpecInvalid) {
            return "SpecInvalid".into();
        }
        if let Some(op) = &self.status.operation
            && !op.phase.is_terminal()
        {
            return match op.kind {
                OperationKind::Scale => "Scaling",
                OperationKind::Restart => "Restarting",
                OperationKind::Stop => "Stopping",
                OperationKind::Rollout => "RollingOut",
            }
            .into();
        }
        let st = &self.status;
        if st.observed_generation == 0 {
            "Pending".into()
        } else if st.ready_replicas == st.desired_replicas
            && st.current_replicas == st.desired_replicas
        {
            if st.desired_replicas == 0 {
                "Stopped".into()
            } else {
                "Ready".into()
            }
        } else {
            "NotReady".into()
        }
    }

    fn message(&self) -> String {
        match &self.spec {
            Err(e) => e.to_string(),
            Ok(_) => self
                .status
                .conditions
                .iter()
                .find(|c| {
                    c.kind == ConditionKind::SpecInvalid
                        && c.status == crate::model::ConditionStatus::True
                })
                .map(|c| c.message.clone())
                .or_else(|| self.status.operation.as_ref().map(|o| o.message.clone()))
                .unwrap_or_default(),
        }
    }

    fn desired(&self) -> String {
        match &self.spec {
            Ok(s) => s.service.desired_scale().to_string(),
            Err(_) => self.status.desired_replicas.to_string(),
        }
    }
}

/// Reads services (of one namespace or all) and their statuses at one revision.
pub async fn load_services(
    store: &Store,
    ns: Option<&str>,
    name: Option<&str>,
) -> exit::Result<(Vec<ServiceView>, i64)> {
    let k = store.keys();
    let (specs_prefix, status_prefix) = match (ns, name) {
        (Some(ns), Some(n)) => (k.service(ns, n), k.status(ns, n)),
        (Some(ns), None) => (k.services_in(ns), format!("{}{ns}/", k.statuses())),
        _ => (k.services(), k.statuses()),
    };
    let reads = if name.is_some() {
        [Read::Key(&specs_prefix), Read::Key(&status_prefix)]
    } else {
        [Read::Prefix(&specs_prefix), Read::Prefix(&status_prefix)]
    };
    let (r, rev) = store.snapshot(&reads).await?;
    let statuses: BTreeMap<ServiceRef, &Kv> = r[1]
        .iter()
        .filter_map(|kv| k.service_of(&kv.key).map(|id| (id, kv)))
        .collect();
    let mut views = Vec::new();
    for kv in &r[0] {
        let Some(svc) = k.service_of(&kv.key) else {
            eprintln!(
                "warning: {}: not a service key (expected {}<namespace>/<name>); ignored",
                kv.key,
                k.services()
            );
            continue;
        };
        let status = statuses
            .get(&svc)
            .and_then(|kv| kv.json().ok())
            .unwrap_or_default();
        views.push(ServiceView {
            spec: StoredService::parse(&kv.key, &kv.value, &svc.namespace, &svc.name),
            namespace: svc.namespace,
            name: svc.name,
            status,
        });
    }
    Ok((views, rev))
}

fn service_table(views: &[ServiceView], wide: bool) -> comfy_table::Table {
    let mut header = vec![
        "NAME",
        "NAMESPACE",
        "DESIRED",
        "READY",
        "CURRENT",
        "STATUS",
        "LAST SCALE",
        "AGE",
    ];
    if wide {
        header.extend(["UPDATED", "REVISION", "REASON", "MESSAGE"]);
    }
    let mut t = table(&header);
    for v in views {
        let mut row = vec![
            v.name.clone(),
            v.namespace.clone(),
            v.desired(),
            v.status.ready_replicas.to_string(),
            v.status.current_replicas.to_string(),
            v.state(),
            v.status
                .last_scale_at
                .map(|t| format!("{} ago", age(Some(t))))
                .unwrap_or_else(|| "-".into()),
            age(v
                .spec
                .as_ref()
                .ok()
                .and_then(|s| s.created_at)
                .or(v.status.first_seen_at)),
        ];
        if wide {
            row.push(v.status.updated_replicas.to_string());
            row.push(revisions(&v.status));
            row.push(v.status.last_scale_reason.clone());
            row.push(v.message());
        }
        t.add_row(row);
    }
    t
}

/// `3`, or `2→3` while instances of revision 2 are replaced by (or wait for a
/// restart to become) revision 3.
fn revisions(status: &crate::model::ServiceStatus) -> String {
    match (status.current_revision, status.update_revision) {
        (Some(current), Some(update)) if current != update => format!("{current}→{update}"),
        (_, Some(update)) => update.to_string(),
        (Some(current), None) => current.to_string(),
        (None, None) => "-".into(),
    }
}

fn print_services(views: &[ServiceView], format: Format, single: bool) -> exit::Result<()> {
    match format {
        Format::Table | Format::Wide => {
            print_table(&service_table(views, format == Format::Wide));
            if single {
                // A restart would change what the instances see (configs, secrets).
                let stale = views[0].status.condition(ConditionKind::Stale);
                if let Some(c) = stale.filter(|c| c.status == crate::model::ConditionStatus::True) {
                    println!("\nStale: {}", c.message);
                }
            }
            for v in views.iter().filter(|v| v.spec.is_err()) {
                if format == Format::Table {
                    eprintln!("warning: {}", v.spec.as_ref().unwrap_err());
                }
            }
            Ok(())
        }
        _ if single => print_document(format, &views[0].document()),
        _ => {
            #[derive(Serialize)]
            struct List<'a> {
                items: Vec<ServiceDocument<'a>>,
            }
            print_document(
                format,
                &List {
                    items: views.iter().map(ServiceView::document).collect(),
                },
            )
        }
    }
}

async fn list_services(
    store: &Store,
    ns: Option<&str>,
    format: Format,
    name: Option<&str>,
    watch: bool,
) -> exit::Result<()> {
    let (views, _) = load_services(store, ns, name).await?;
    if let Some(name) = name
        && views.is_empty()
    {
        return Err(not_found(ns.unwrap_or("default"), name));
    }
    if views.is_empty() && matches!(format, Format::Table | Format::Wide) && !watch {
        match ns {
            Some(ns) => eprintln!("No services in namespace {ns}."),
            None => eprintln!("No services."),
        }
        return Ok(());
    }
    print_services(&views, format, name.is_some())?;
    if watch {
        follow(store, ns, name, format, views).await?;
    }
    Ok(())
}

/// `-w`: print each service again whenever its spec or status changes.
async fn follow(
    store: &Store,
    ns: Option<&str>,
    name: Option<&str>,
    format: Format,
    mut last: Vec<ServiceView>,
) -> exit::Result<()> {
    let mut events =
        crate::store::watch::watch_prefix(store.clone(), store.keys().root().to_string());
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(ev) = ev else { return Ok(()) };
        let touched = match &ev {
            WatchEvent::Put(kv) | WatchEvent::Delete(kv) => {
                store.keys().service_of(&kv.key).is_some_and(|svc| {
                    ns.is_none_or(|x| x == svc.namespace) && name.is_none_or(|x| x == svc.name)
                })
            }
            WatchEvent::Reset { .. } => true,
            WatchEvent::Connected(up) => {
                if !up {
                    eprintln!(
                        "warning: lost the connection to etcd at {}; retrying",
                        store.endpoints()
                    );
                }
                false
            }
        };
        if !touched {
            continue;
        }
        let (views, _) = load_services(store, ns, name).await?;
        let changed: Vec<ServiceView> = views
            .iter()
            .filter(|v| !last.contains(v))
            .cloned()
            .collect();
        if !changed.is_empty() {
            match format {
                Format::Table | Format::Wide => {
                    let t = service_table(&changed, format == Format::Wide);
                    // Rows only: the header was printed once at the start.
                    for line in t.to_string().lines().skip(1) {
                        println!("{}", line.trim_end());
                    }
                }
                _ => {
                    for v in &changed {
                        if format == Format::Yaml {
                            println!("---");
                        }
                        print_document(format, &v.document())?;
                    }
                }
            }
        }
        last = views;
    }
}

pub fn not_found(ns: &str, name: &str) -> Error {
    Error::conflict(format!("service {ns}/{name} not found"))
}

#[derive(Serialize)]
struct InstanceDocument {
    instance: InstanceRecord,
    status: Option<InstanceStatus>,
}

async fn list_instances(
    store: &Store,
    ns: &str,
    service: Option<&str>,
    format: Format,
) -> exit::Result<()> {
    let k = store.keys();
    let (ip, sp) = match service {
        Some(s) => (k.instances_of(ns, s), k.instance_statuses_of(ns, s)),
        None => (
            format!("{}{ns}/", k.instances()),
            format!("{}{ns}/", k.instance_statuses()),
        ),
    };
    let nodes_prefix = k.nodes();
    let (r, _) = store
        .snapshot(&[
            Read::Prefix(&ip),
            Read::Prefix(&sp),
            Read::Prefix(&nodes_prefix),
        ])
        .await?;
    let registered: std::collections::HashSet<&str> = r[2]
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(&nodes_prefix))
        .collect();
    let statuses: BTreeMap<String, InstanceStatus> = r[1]
        .iter()
        .filter_map(|kv| kv.json::<InstanceStatus>().ok())
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut docs: Vec<InstanceDocument> = r[0]
        .iter()
        .filter_map(|kv| kv.json::<InstanceRecord>().ok())
        .map(|i| InstanceDocument {
            // A lost node's reports went with its lease: say what is known, that
            // nothing is (never "gone": the process may well run).
            status: if registered.contains(i.node.as_str()) {
                statuses.get(&i.id).cloned()
            } else {
                Some(InstanceStatus {
                    phase: Phase::Unknown,
                    message: format!("node {} is lost: state unknown", i.node),
                    ..InstanceStatus::pending(&i.id, &i.node)
                })
            },
            instance: i,
        })
        .collect();
    docs.sort_by(|a, b| {
        (&a.instance.service, a.instance.created_at)
            .cmp(&(&b.instance.service, b.instance.created_at))
    });
    match format {
        Format::Yaml | Format::Json => print_document(format, &docs),
        Format::Table | Format::Wide => {
            if docs.is_empty() {
                eprintln!("No instances in namespace {ns}.");
                return Ok(());
            }
            let wide = format == Format::Wide;
            let mut header = vec![
                "ID", "SERVICE", "NODE", "PID", "PORT", "PHASE", "READY", "RESTARTS", "AGE",
            ];
            if wide {
                header.extend(["REVISION", "DESIRED", "LAST EXIT", "MESSAGE"]);
                header.extend(["MEMORY", "CPU TIME"]);
            }
            let mut t = table(&header);
            for d in &docs {
                let s = d.status.as_ref();
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                let mut row = vec![
                    d.instance.id.clone(),
                    d.instance.service.clone(),
                    d.instance.node.clone(),
                    opt(s.and_then(|s| s.pid).map(|p| p.to_string())),
                    opt(s.and_then(|s| s.port).map(|p| p.to_string())),
                    opt(s.map(|s| s.phase.to_string())),
                    s.map(|s| s.ready).unwrap_or(false).to_string(),
                    s.map(|s| s.restarts).unwrap_or(0).to_string(),
                    age(Some(d.instance.created_at)),
                ];
                if wide {
                    row.push(d.instance.revision.to_string());
                    row.push(format!("{:?}", d.instance.desired));
                    row.push(opt(s
                        .and_then(|s| s.last_exit.as_ref())
                        .map(|e| e.to_string())));
                    row.push(s.map(|s| s.message.clone()).unwrap_or_default());
                    let usage = s.and_then(|s| s.usage);
                    row.push(opt(usage.map(|u| u.memory_text())));
                    row.push(opt(usage.map(|u| format!("{:.1}s", u.cpu_seconds))));
                }
                t.add_row(row);
            }
            print_table(&t);
            Ok(())
        }
    }
}
