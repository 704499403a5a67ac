//! `rune logs NAME [INSTANCE]`: instance logs, read from each instance's agent.
//!
//! The CLI finds the instances in etcd (`instances/<ns>/<svc>/`), each agent by its
//! node record's `address`, and the agent's bearer token at `node-tokens/<node>`;
//! then it streams `GET /v1/logs/<ns>/<svc>/<id>` from every agent at once. Without
//! `-f` each instance's lines are printed together, instances in the order they were
//! created; with `-f` lines are printed as they arrive, whole, and the instance
//! records are listed again every second: a new instance joins the stream from its
//! first line, one whose record is gone leaves it.
//!
//! An agent whose node record has `logs` serves them on a listener of its own,
//! maybe over TLS: verified with `--logs-tls-ca`, and with mutual TLS the client
//! presents `--logs-tls-cert`/`--logs-tls-key` instead of a token. What cannot be
//! read names its node in a warning, as an unreachable node does.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agent::logs::read::Lines;
use crate::agent::logs::tls;
use crate::exit::{self, Error};
use crate::model::{InstanceRecord, NodeRecord};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rune logs api                          every instance's log, each line prefixed with its instance
  rune logs api api-3f2a9c1b0e --tail 20 one instance, its last 20 lines
  rune logs api -f --since 10m           follow; instances that start later join

Lines carry no time of their own: --timestamps and --since work from what the agent
knows (see docs/configuration.md, \"rune logs\"). An unreachable node's instances are
named in a warning; the others still print. Exit 0 when any log could be read (or
there is no instance), 4 when the service or instance does not exist or no log could
be read, 5 when etcd cannot be reached.")]
pub struct LogsArgs {
    /// The service.
    pub name: String,
    /// One instance (its id, as `rune get instances` shows) instead of all.
    pub instance: Option<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Keep streaming: appended lines, across rotations, and instances that start
    /// (or end) meanwhile.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each instance's log so far [default: all].
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Leave out a log file (the log or its one rotation) last written longer ago
    /// than this (e.g. 10m); see docs/configuration.md for the granularity.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Prefix every line with its instance id, also when there is only one.
    #[arg(long = "prefix")]
    pub prefix_lines: bool,
    /// Prefix every line with when the agent knew it was written (an upper bound).
    #[arg(long)]
    pub timestamps: bool,
    /// CA certificate (PEM) that signed the agents' logs certificates: verifies
    /// agents that serve logs over TLS (rune-agent --logs-tls-cert).
    #[arg(long, env = "RUNE_LOGS_TLS_CA", value_name = "FILE")]
    pub logs_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for agents that serve logs over mutual TLS
    /// (rune-agent --logs-client-ca). Needs --logs-tls-ca and --logs-tls-key.
    #[arg(long, env = "RUNE_LOGS_TLS_CERT", value_name = "FILE", requires_all = ["logs_tls_key", "logs_tls_ca"])]
    pub logs_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --logs-tls-cert.
    #[arg(
        long,
        env = "RUNE_LOGS_TLS_KEY",
        value_name = "FILE",
        requires = "logs_tls_cert"
    )]
    pub logs_tls_key: Option<PathBuf>,
}

/// How `rune logs` talks TLS to agents that serve logs over it.
struct Transport {
    /// None: no --logs-tls-ca, so no agent serving TLS can be read.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// A client certificate is presented (for mutual TLS).
    identity: bool,
}

impl Transport {
    fn new(args: &LogsArgs) -> exit::Result<Transport> {
        let identity = args
            .logs_tls_cert
            .as_deref()
            .zip(args.logs_tls_key.as_deref());
        let tls = match &args.logs_tls_ca {
            Some(ca) => Some(tls::client_config(ca, identity).map_err(Error::usage)?),
            None => None,
        };
        Ok(Transport {
            tls,
            identity: identity.is_some(),
        })
    }
}

/// Where a node's agent serves logs, and how.
struct Endpoint {
    address: String,
    tls: bool,
    mutual: bool,
    /// The bearer token, unless mutual TLS authenticates instead.
    token: Option<String>,
}

/// `[id] line`, or the line as is.
pub fn prefixed(id: &str, line: &[u8], prefix: bool) -> Vec<u8> {
    if !prefix {
        return line.to_vec();
    }
    let mut out = Vec::with_capacity(id.len() + 3 + line.len());
    out.push(b'[');
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(line);
    out
}

/// Instance ids grouped by the node that could not be reached, one warning each.
pub fn unreachable_warnings(failed: &BTreeMap<String, (String, Vec<String>)>) -> Vec<String> {
    failed
        .iter()
        .map(|(node, (why, ids))| {
            format!(
                "warning: node {node}: {why}: no logs of instance{} {}",
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", ")
            )
        })
        .collect()
}

/// The service's instance records, oldest first.
async fn instances(store: &Store, ns: &str, svc: &str) -> exit::Result<Vec<InstanceRecord>> {
    let (kvs, _) = store.list(&store.keys().instances_of(ns, svc)).await?;
    let mut v: Vec<InstanceRecord> = kvs
        .iter()
        .filter_map(|kv| InstanceRecord::parse(&kv.value).ok())
        .collect();
    v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(v)
}

/// Where a node's agent serves logs (its node record's `logs`, else its
/// `address`), and its token unless it takes mutual TLS.
async fn endpoint(store: &Store, node: &str) -> Result<Endpoint, String> {
    let keys = store.keys();
    let record = store
        .get(&keys.node(node))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("not registered (agent down?)")?;
    let record: NodeRecord = record.json().map_err(|e| format!("node record: {e}"))?;
    let mut endpoint = match record.logs {
        Some(logs) => Endpoint {
            address: logs.address,
            tls: logs.tls,
            mutual: logs.client_certificates,
            token: None,
        },
        None => Endpoint {
            address: record.address,
            tls: false,
            mutual: false,
            token: None,
        },
    };
    if !endpoint.mutual {
        let token = store
            .get(&keys.node_token(node))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("publishes no logs token (a hollow node, or an agent without logs)")?;
        endpoint.token = Some(String::from_utf8_lossy(&token.value).trim().to_string());
    }
    Ok(endpoint)
}

/// Sends `request` to the agent at `endpoint`: plain HTTP, or over TLS with
/// `transport`'s configuration. An error says what failed, naming the address.
async fn send(
    endpoint: &Endpoint,
    transport: &Transport,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, (String, bool)> {
    let address = &endpoint.address;
    let unreachable = |why: String| (format!("unreachable at {address} ({why})"), true);
    if !endpoint.tls {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(http);
        return match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(unreachable(root_cause(&e))),
            Err(_) => Err(unreachable("timed out".into())),
        };
    }
    let Some(config) = transport.tls.clone() else {
        return Err((
            format!(
                "its agent serves logs over TLS at {address}: give the CA that signed its \
                 certificate with --logs-tls-ca{}",
                if endpoint.mutual {
                    ", and a client certificate with --logs-tls-cert and --logs-tls-key"
                } else {
                    ""
                }
            ),
            false,
        ));
    };
    if endpoint.mutual && !transport.identity {
        return Err((
            format!(
                "its agent at {address} takes mutual TLS: give a client certificate with \
                 --logs-tls-cert and --logs-tls-key"
            ),
            false,
        ));
    }
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address.as_str())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let refused = |e: &(dyn std::error::Error + 'static)| {
            (
                format!(
                    "the TLS handshake with its agent at {address} failed ({})",
                    root_cause(e)
                ),
                true,
            )
        };
        let stream = tls::connect(config, address, tcp)
            .await
            .map_err(|e| refused(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| refused(&e))?;
        tokio::spawn(conn);
        // With TLS 1.3 the server judges the client's certificate after the
        // client's handshake is done: its refusal (an alert) ends the first
        // exchange.
        sender.send_request(request).await.map_err(|e| {
            if !endpoint.mutual {
                refused(&e)
            } else {
                (
                    format!(
                        "its agent at {address} refused the TLS connection ({}; is the client \
                         certificate signed by its --logs-client-ca?)",
                        root_cause(&e)
                    ),
                    true,
                )
            }
        })
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(r) => r,
        Err(_) => Err(unreachable("timed out".into())),
    }
}

/// What one instance's stream came to.
#[derive(Debug)]
enum Outcome {
    /// Streamed to its end (without -f: the whole log).
    Done,
    /// Never got the log; nothing was printed for it.
    Failed {
        node: String,
        why: String,
        retry: bool,
    },
    /// Broke after lines were printed.
    Broke(String),
}

struct Request {
    ns: String,
    svc: String,
    since: Option<Duration>,
    timestamps: bool,
    follow: bool,
}

/// Streams one instance's log, sending each complete line.
async fn stream(
    store: Store,
    transport: Arc<Transport>,
    req: std::sync::Arc<Request>,
    rec: InstanceRecord,
    tail: Option<usize>,
    lines_tx: mpsc::UnboundedSender<(String, Vec<u8>)>,
) -> Outcome {
    let fail = |why: String, retry: bool| Outcome::Failed {
        node: rec.node.clone(),
        why,
        retry,
    };
    let endpoint = match endpoint(&store, &rec.node).await {
        Ok(e) => e,
        Err(why) => return fail(why, true),
    };
    let address = endpoint.address.clone();
    // The path only (with a Host header): origin form, for plain and TLS alike.
    let mut url = format!(
        "/v1/logs/{}/{}/{}?timestamps={}&follow={}",
        req.ns, req.svc, rec.id, req.timestamps as u8, req.follow as u8
    );
    if let Some(n) = tail {
        url.push_str(&format!("&tail={n}"));
    }
    if let Some(d) = req.since {
        url.push_str(&format!("&since={}ms", d.as_millis()));
    }
    if !endpoint.tls {
        url = format!("http://{address}{url}");
    }
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return fail(format!("bad address {address:?}: {e}"), false),
    };
    let mut request = hyper::Request::get(uri).header("host", address.as_str());
    if let Some(token) = &endpoint.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match request.body(Empty::new()) {
        Ok(r) => r,
        Err(e) => return fail(format!("bad address {address:?}: {e}"), false),
    };
    let resp = match send(&endpoint, &transport, request).await {
        Ok(r) => r,
        Err((why, retry)) => return fail(why, retry),
    };
    match resp.status().as_u16() {
        200 => {}
        401 => return fail(format!("its agent at {address} refused the token"), true),
        // Not started yet (a new record), or a hollow node.
        404 => return fail(format!("no log of the instance at {address}"), true),
        s => return fail(format!("its agent at {address} answered {s}"), true),
    }
    let mut body = resp.into_body();
    let mut lines = Lines::new(false);
    let id = rec.id.clone();
    let send = |bytes: Vec<u8>| {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let _ = lines_tx.send((id.clone(), line.to_vec()));
        }
    };
    // Without -f an agent that stops sending mid-log is given up on.
    let idle = if req.follow {
        Duration::MAX
    } else {
        Duration::from_secs(30)
    };
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(f) => f,
            Err(_) => {
                send(lines.flush(std::time::SystemTime::now()));
                return Outcome::Broke(format!("node {}: no data for 30s", rec.node));
            }
        };
        match frame {
            None => {
                send(lines.flush(std::time::SystemTime::now()));
                return Outcome::Done;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    send(lines.push(&data, std::time::SystemTime::now()));
                }
            }
            Some(Err(e)) => {
                send(lines.flush(std::time::SystemTime::now()));
                return Outcome::Broke(format!(
                    "node {}: the connection broke ({}; agent down?)",
                    rec.node,
                    root_cause(&e)
                ));
            }
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Writes to stdout; false once stdout is gone (`| head`).
fn print(out: &mut impl Write, bytes: &[u8]) -> bool {
    out.write_all(bytes).and_then(|()| out.flush()).is_ok()
}

pub async fn run(store: &Store, args: LogsArgs) -> exit::Result<()> {
    // Bad TLS files are bad input, before anything is read.
    let transport = Arc::new(Transport::new(&args)?);
    let (ns, svc) = (args.namespace.clone(), args.name.clone());
    let all = instances(store, &ns, &svc).await?;
    if all.is_empty() && store.get(&store.keys().service(&ns, &svc)).await?.is_none() {
        return Err(super::get::not_found(&ns, &svc));
    }
    let pick = |v: Vec<InstanceRecord>| -> Vec<InstanceRecord> {
        match &args.instance {
            Some(id) => v.into_iter().filter(|r| &r.id == id).collect(),
            None => v,
        }
    };
    let chosen = pick(all);
    if let Some(id) = &args.instance
        && chosen.is_empty()
    {
        return Err(Error::conflict(format!(
            "instance {id} of service {ns}/{svc} not found"
        )));
    }
    let req = std::sync::Arc::new(Request {
        ns: ns.clone(),
        svc: svc.clone(),
        since: args.since,
        timestamps: args.timestamps,
        follow: args.follow,
    });
    let mut prefix = args.prefix_lines || chosen.len() > 1;
    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
    let start = |rec: &InstanceRecord, tail: Option<usize>| -> JoinHandle<Outcome> {
        tokio::spawn(stream(
            store.clone(),
            transport.clone(),
            req.clone(),
            rec.clone(),
            tail,
            lines_tx.clone(),
        ))
    };
    let mut out = std::io::stdout().lock();

    if !args.follow {
        let tasks: Vec<(InstanceRecord, JoinHandle<Outcome>)> = chosen
            .iter()
            .map(|r| (r.clone(), start(r, args.tail)))
            .collect();
        drop(lines_tx);
        let mut by_id: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        while let Some((id, line)) = lines_rx.recv().await {
            by_id.entry(id).or_default().push(line);
        }
        let mut failed: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        let mut read = 0;
        for (rec, task) in tasks {
            match task.await.unwrap_or_else(|e| Outcome::Broke(e.to_string())) {
                Outcome::Done => read += 1,
                Outcome::Failed { node, why, .. } => failed
                    .entry(node)
                    .or_insert((why, vec![]))
                    .1
                    .push(rec.id.clone()),
                Outcome::Broke(why) => {
                    read += 1;
                    eprintln!(
                        "warning: {why}: the log of instance {} was cut short",
                        rec.id
                    )
                }
            }
            for line in by_id.remove(&rec.id).unwrap_or_default() {
                if !print(&mut out, &prefixed(&rec.id, &line, prefix)) {
                    return Ok(());
                }
            }
        }
        for w in unreachable_warnings(&failed) {
            eprintln!("{w}");
        }
        if read == 0 && !chosen.is_empty() {
            return Err(Error::conflict(format!(
                "no log of service {ns}/{svc} could be read"
            )));
        }
        return Ok(());
    }

    // Following. Each instance: its task, whether a failure was already reported,
    // and since when its record is gone (it leaves the stream a moment later, so
    // that the last lines its agent reads still come).
    struct Followed {
        rec: InstanceRecord,
        task: JoinHandle<Outcome>,
        /// The tail it was started with (a retry asks the same; nothing printed yet).
        tail: Option<usize>,
        warned: bool,
        gone_since: Option<Instant>,
        finished: bool,
    }
    const LINGER: Duration = Duration::from_secs(1);
    let mut followed: BTreeMap<String, Followed> = BTreeMap::new();
    for r in &chosen {
        let task = start(r, args.tail);
        followed.insert(
            r.id.clone(),
            Followed {
                rec: r.clone(),
                task,
                tail: args.tail,
                warned: false,
                gone_since: None,
                finished: false,
            },
        );
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut etcd_warned = false;
    loop {
        tokio::select! {
            Some((id, line)) = lines_rx.recv() => {
                if !print(&mut out, &prefixed(&id, &line, prefix)) {
                    break;
                }
            }
            _ = tick.tick() => {
                // etcd away for a moment: keep streaming what streams, and look again.
                let now = match instances(store, &ns, &svc).await {
                    Ok(v) => {
                        etcd_warned = false;
                        pick(v)
                    }
                    Err(e) => {
                        if !etcd_warned {
                            eprintln!("warning: cannot list the instances (still streaming): {e}");
                            etcd_warned = true;
                        }
                        continue;
                    }
                };
                // New instances join, from their first line.
                for r in &now {
                    if !followed.contains_key(&r.id) {
                        let task = start(r, None);
                        followed.insert(r.id.clone(), Followed {
                            rec: r.clone(), task, tail: None, warned: false, gone_since: None, finished: false,
                        });
                    }
                }
                prefix |= followed.len() > 1;
                for f in followed.values_mut() {
                    let listed = now.iter().any(|r| r.id == f.rec.id);
                    if listed {
                        f.gone_since = None;
                    } else if f.gone_since.is_none() {
                        f.gone_since = Some(Instant::now());
                    }
                    if f.finished || !f.task.is_finished() {
                        continue;
                    }
                    match (&mut f.task).await.unwrap_or_else(|e| Outcome::Broke(e.to_string())) {
                        Outcome::Failed { node, why, retry } if retry && listed => {
                            if !f.warned && !why.starts_with("no log") {
                                eprintln!("warning: node {node}: {why}: no logs of instance {} yet; retrying", f.rec.id);
                                f.warned = true;
                            }
                            f.task = start(&f.rec, f.tail);
                        }
                        Outcome::Failed { node, why, .. } => {
                            if listed {
                                eprintln!("warning: node {node}: {why}: no logs of instance {}", f.rec.id);
                            }
                            f.finished = true;
                        }
                        // The agent went away mid-stream (killed, restarted, upgraded;
                        // its instances keep running): follow again once it is back,
                        // from the log's end then. What was written meanwhile is skipped.
                        Outcome::Broke(why) if listed => {
                            eprintln!("warning: {why}: no logs of instance {} until it is back (lines written meanwhile are skipped)", f.rec.id);
                            f.warned = true;
                            f.tail = Some(0);
                            f.task = start(&f.rec, f.tail);
                        }
                        Outcome::Done if listed => {
                            eprintln!("warning: node {}: the agent ended the stream (restarted?): no logs of instance {} until it is back (lines written meanwhile are skipped)", f.rec.node, f.rec.id);
                            f.warned = true;
                            f.tail = Some(0);
                            f.task = start(&f.rec, f.tail);
                        }
                        Outcome::Broke(_) | Outcome::Done => f.finished = true,
                    }
                }
                // Instances whose record is gone leave the stream.
                followed.retain(|_, f| {
                    let leave = f.gone_since.is_some_and(|t| t.elapsed() >= LINGER);
                    if leave {
                        f.task.abort();
                    }
                    !leave
                });
                if followed.is_empty()
                    && (args.instance.is_some()
                        || matches!(store.get(&store.keys().service(&ns, &svc)).await, Ok(None)))
                {
                    // The one instance asked for ended, or the service is gone.
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_with_their_instance_when_asked() {
        assert_eq!(prefixed("a1", b"hello\n", true), b"[a1] hello\n");
        assert_eq!(prefixed("a1", b"hello\n", false), b"hello\n");
    }

    #[test]
    fn one_warning_per_unreachable_node_names_its_instances() {
        let mut failed = BTreeMap::new();
        failed.insert(
            "n2".to_string(),
            (
                "unreachable at 10.0.0.2:9465 (connection refused)".to_string(),
                vec!["a".to_string(), "b".to_string()],
            ),
        );
        failed.insert(
            "n3".to_string(),
            ("not registered".to_string(), vec!["c".to_string()]),
        );
        assert_eq!(
            unreachable_warnings(&failed),
            vec![
                "warning: node n2: unreachable at 10.0.0.2:9465 (connection refused): no logs of instances a, b",
                "warning: node n3: not registered: no logs of instance c",
            ]
        );
    }
}
