//! The etcd store: connection, the key layout, and every read and write rune makes.
//! Nothing outside this module builds a key or talks to etcd directly.

pub mod batch;
pub mod cas;
mod keys;
pub mod layout;
pub mod lease;
mod metrics;
mod range;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, Retryable};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, KeyValue, KvClient, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchClient,
};

pub use batch::Write;
pub use keys::Keys;
pub use metrics::StoreMetrics;
pub use range::{DEFAULT_PAGE_SIZE, MAX_RESPONSE_BYTES, PAGE_SIZE_ENV, Read};

/// How to reach etcd; shared by every binary (flags and environment).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "etcd connection")]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(
        long = "etcd-endpoints",
        env = "RUNE_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379",
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Key prefix; two prefixes in one etcd are two independent systems.
    #[arg(
        long = "etcd-prefix",
        env = "RUNE_ETCD_PREFIX",
        default_value = "/rune",
        global = true
    )]
    pub prefix: String,
    /// CA certificate (PEM) to verify etcd's server certificate (enables TLS).
    #[arg(long = "etcd-ca", env = "RUNE_ETCD_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "etcd-cert", env = "RUNE_ETCD_CERT", global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "etcd-key", env = "RUNE_ETCD_KEY", global = true)]
    pub key: Option<std::path::PathBuf>,
    /// etcd user (etcd's username/password authentication); the password comes
    /// from --etcd-password-file, else from RUNE_ETCD_PASSWORD.
    #[arg(long = "etcd-user", env = "RUNE_ETCD_USER", global = true)]
    pub user: Option<String>,
    /// File holding the etcd user's password (its first line); safer than
    /// RUNE_ETCD_PASSWORD.
    #[arg(
        long = "etcd-password-file",
        env = "RUNE_ETCD_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<std::path::PathBuf>,
    /// The password from `RUNE_ETCD_PASSWORD` (environment only: a flag would show
    /// it in `ps`); `--etcd-password-file` wins.
    #[arg(skip = Password::from_env())]
    pub password: Option<Password>,
}

impl EtcdArgs {
    pub fn local(endpoints: Vec<String>, prefix: &str) -> Self {
        EtcdArgs {
            endpoints,
            prefix: prefix.to_string(),
            ca: None,
            cert: None,
            key: None,
            user: None,
            password_file: None,
            password: None,
        }
    }

    /// The user and password to authenticate with, if a user is set: the password
    /// from `--etcd-password-file`, else `RUNE_ETCD_PASSWORD`.
    fn credentials(&self) -> Result<Option<(String, String)>, StoreError> {
        let Some(user) = self.user.as_deref().filter(|u| !u.is_empty()) else {
            if self.password_file.is_some() {
                return Err(StoreError::Invalid(
                    "--etcd-password-file needs --etcd-user (RUNE_ETCD_USER)".into(),
                ));
            }
            return Ok(None);
        };
        let password = match (&self.password_file, &self.password) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    StoreError::Invalid(format!("--etcd-password-file {}: {e}", path.display()))
                })?;
                let first = text.lines().next().unwrap_or_default().to_string();
                if first.is_empty() {
                    return Err(StoreError::Invalid(format!(
                        "--etcd-password-file {}: the first line (the password) is empty",
                        path.display()
                    )));
                }
                first
            }
            (None, Some(p)) => p.0.clone(),
            (None, None) => {
                return Err(StoreError::Invalid(format!(
                    "--etcd-user {user} needs a password: --etcd-password-file \
                     (RUNE_ETCD_PASSWORD_FILE), or RUNE_ETCD_PASSWORD"
                )));
            }
        };
        Ok(Some((user.to_string(), password)))
    }
}

/// A password, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl Password {
    /// `RUNE_ETCD_PASSWORD`, when set and not empty.
    pub const ENV: &str = "RUNE_ETCD_PASSWORD";

    fn from_env() -> Option<Password> {
        std::env::var(Self::ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Password)
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Failures talking to etcd, kept apart from "the data said no".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd at {endpoints} is unreachable: {detail}")]
    Unreachable { endpoints: String, detail: String },
    #[error("etcd at {endpoints} refused the request: {detail}")]
    Refused { endpoints: String, detail: String },
    #[error("etcd at {endpoints} did not answer within {timeout:?}")]
    Timeout {
        endpoints: String,
        timeout: Duration,
    },
    /// etcd refused the user and password (or takes none: its authentication is
    /// off). Never retried: the same credentials get the same answer.
    #[error("etcd at {endpoints} refused to authenticate user {user:?}: {detail}")]
    Unauthenticated {
        endpoints: String,
        user: String,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The prefix holds a key layout this build does not read (see `layout.rs`).
    #[error("{0}")]
    Layout(String),
}

/// One key as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Kv {
    fn from_etcd(kv: &KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.value).map_err(|e| format!("{}: {e}", self.key))
    }
}

/// The result of a transaction: whether the comparisons held, the revision it
/// committed at, and what its reads returned.
#[derive(Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    pub revision: i64,
    pub ranges: Vec<Vec<Kv>>,
}

/// A handle on etcd under one prefix. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    /// KV and watch clients that accept responses up to [`MAX_RESPONSE_BYTES`]
    /// (gRPC's default of 4 MiB is one big listing away from failing).
    kv: KvClient,
    watch: WatchClient,
    /// Keys per page of a range read (see `range.rs`).
    page_size: i64,
    keys: Keys,
    endpoints: String,
    /// The etcd user the requests are made as, if any (named when etcd refuses one).
    user: Option<String>,
    request_timeout: Duration,
    metrics: Arc<StoreMetrics>,
}

/// How long a unary request may take before it counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `connect` keeps trying before it names the endpoint and gives up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(4);

impl Store {
    /// Connects and proves the connection with `status()` (the client connects
    /// lazily), retrying for at most [`CONNECT_DEADLINE`].
    pub async fn connect(args: &EtcdArgs) -> Result<Store, StoreError> {
        Self::connect_within(args, CONNECT_DEADLINE).await
    }

    pub async fn connect_within(args: &EtcdArgs, deadline: Duration) -> Result<Store, StoreError> {
        let endpoints = args.endpoints.join(",");
        let unreachable = |detail: String| StoreError::Unreachable {
            endpoints: endpoints.clone(),
            detail,
        };
        let credentials = args.credentials()?;
        let user = credentials.as_ref().map(|(u, _)| u.clone());
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // HTTP/2 keep-alive notices a dead etcd under a long-lived watch.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = tls_options(args)? {
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &credentials {
            // etcd's simple tokens expire after --auth-token-ttl (300 s) unused:
            // a request refused for an expired token authenticates again and is
            // sent once more (unary requests and the opening of streams; see
            // `watch.rs` for a watch refused for its token).
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        let started = Instant::now();
        // Without a user the client connects lazily and `status()` below proves the
        // connection; with one, connecting authenticates at once, so an etcd not
        // up yet is retried here, within the same deadline, and a refusal is final.
        let client = loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            let attempt = tokio::time::timeout(
                remaining,
                Client::connect(args.endpoints.clone(), Some(options.clone())),
            )
            .await
            .map_err(|_| unreachable(format!("no connection within {deadline:?}")))?;
            match attempt {
                Ok(client) => break client,
                Err(e) => {
                    if let (Some(user), Some(refused)) = (&user, refusal(&e)) {
                        let hint = if refused.contains("not enabled") {
                            "drop --etcd-user, or enable etcd's authentication"
                        } else {
                            "check --etcd-user and the password in --etcd-password-file \
                             or RUNE_ETCD_PASSWORD"
                        };
                        let detail = format!("{refused} ({hint})");
                        return Err(StoreError::Unauthenticated {
                            endpoints: endpoints.clone(),
                            user: user.clone(),
                            detail,
                        });
                    }
                    let pause = Duration::from_millis(200);
                    if user.is_none() || started.elapsed() + pause >= deadline {
                        return Err(unreachable(e.to_string()));
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        };
        let store = Store {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            client,
            page_size: range::page_size_from_env(),
            keys: Keys::new(&args.prefix),
            endpoints: endpoints.clone(),
            user,
            request_timeout: REQUEST_TIMEOUT,
            metrics: Arc::new(StoreMetrics::default()),
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        let probe = || async {
            let mut c = store.client.clone();
            tokio::time::timeout(Duration::from_millis(1500), c.status())
                .await
                .map_err(|_| "status request timed out".to_string())?
                .map_err(|e| e.to_string())
        };
        let attempt = probe.retry(
            ConstantBuilder::default()
                .with_delay(Duration::from_millis(200))
                .with_max_times(50),
        );
        match tokio::time::timeout(remaining, attempt).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(unreachable(e)),
            Err(_) => Err(unreachable(format!("no answer within {deadline:?}"))),
        }
    }

    /// Authenticates again (a new token), when a user is set. For a watch etcd
    /// refused for its token: the refusal comes in the watch's first response (a
    /// cancellation), which etcd-client's own token refresh does not look at.
    pub(crate) async fn reauthenticate(&self) -> Result<(), StoreError> {
        if self.user.is_none() {
            return Ok(());
        }
        let client = self.client.clone();
        self.call("auth", async move { client.refresh_token().await })
            .await
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn watch_client(&self) -> WatchClient {
        self.watch.clone()
    }

    /// The same store reading `keys` per page. For tests that drive a `Store` in
    /// their own process, where [`PAGE_SIZE_ENV`] would be process-wide; not a
    /// setting (the default is right for every deployment).
    #[doc(hidden)]
    pub fn with_page_size(mut self, keys: i64) -> Store {
        self.page_size = keys.max(1);
        self
    }

    /// Runs one request with the request timeout, recording metrics and turning
    /// transport failures into errors that name the endpoint.
    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.request(op, fut).await.map_err(|e| self.classify(e))
    }

    /// [`call`](Self::call), keeping etcd's own error: paging tells a compacted
    /// revision and an oversized response apart from other failures.
    async fn request<T, F>(&self, op: &'static str, fut: F) -> Result<T, Failed>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let out = match tokio::time::timeout(self.request_timeout, fut).await {
            Err(_) => Err(Failed::Timeout),
            Ok(r) => r.map_err(Failed::Etcd),
        };
        self.metrics.record(op, started.elapsed(), out.is_ok());
        out
    }

    fn classify(&self, e: Failed) -> StoreError {
        let endpoints = self.endpoints.clone();
        let e = match e {
            Failed::Timeout => {
                return StoreError::Timeout {
                    endpoints,
                    timeout: self.request_timeout,
                };
            }
            Failed::Etcd(e) => e,
        };
        match e {
            etcd_client::Error::GRpcStatus(s) if answered(&s) => {
                let mut detail = s.message().to_string();
                if let Some(user) = &self.user
                    && matches!(
                        s.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    )
                {
                    // Which role lacks the permission: the user's.
                    detail = format!("{detail} (as etcd user {user:?})");
                }
                if self.user.is_none() && detail.contains("user name is empty") {
                    detail = format!(
                        "{detail} (this etcd has authentication enabled: set --etcd-user, \
                         or a client certificate whose CN is an etcd user)"
                    );
                }
                StoreError::Refused { endpoints, detail }
            }
            other => StoreError::Unreachable {
                endpoints,
                detail: other.to_string(),
            },
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, StoreError> {
        let mut c = self.kv.clone();
        let resp = self.call("get", c.get(key, None)).await?;
        Ok(resp.kvs().first().map(Kv::from_etcd))
    }

    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<i64, StoreError> {
        let mut c = self.kv.clone();
        let resp = self.call("put", c.put(key, value.into(), None)).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.kv.clone();
        self.call("delete", c.delete(key, None)).await?;
        Ok(())
    }

    /// Runs a transaction: `when` all comparisons hold, `then`; otherwise `otherwise`.
    pub async fn txn(
        &self,
        when: Vec<Compare>,
        then: Vec<TxnOp>,
        otherwise: Vec<TxnOp>,
    ) -> Result<TxnResult, StoreError> {
        let mut c = self.kv.clone();
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let resp: TxnResponse = self.call("txn", c.txn(txn)).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let ranges = resp
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g.kvs().iter().map(Kv::from_etcd).collect()),
                _ => None,
            })
            .collect();
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision,
            ranges,
        })
    }
}

/// What etcd answered when it refused to authenticate (wrong user or password,
/// authentication not enabled); `None` for failures to reach it, which are retried.
fn refusal(e: &etcd_client::Error) -> Option<String> {
    match e {
        etcd_client::Error::GRpcStatus(s) if answered(s) => Some(s.message().to_string()),
        _ => None,
    }
}

/// Whether a gRPC status is etcd's own answer (a refusal), rather than a failure
/// to reach it (unavailable, deadline, or a transport error gRPC calls unknown).
fn answered(s: &tonic::Status) -> bool {
    !matches!(
        s.code(),
        tonic_code::UNAVAILABLE | tonic_code::DEADLINE_EXCEEDED | tonic_code::UNKNOWN
    )
}

/// How one request failed, before it becomes a [`StoreError`].
enum Failed {
    Etcd(etcd_client::Error),
    Timeout,
}

/// Comparison helpers, so callers need not import etcd-client.
pub mod cmp {
    use super::*;

    /// The key's last write was at `rev` (0 = the key does not exist).
    pub fn mod_rev(key: &str, rev: i64) -> Compare {
        Compare::mod_revision(key, CompareOp::Equal, rev)
    }

    pub fn absent(key: &str) -> Compare {
        Compare::create_revision(key, CompareOp::Equal, 0)
    }

    pub fn created_at(key: &str, rev: i64) -> Compare {
        Compare::create_revision(key, CompareOp::Equal, rev)
    }
}

/// Write helpers for transactions.
pub mod op {
    use super::*;
    use etcd_client::PutOptions;

    pub fn put(key: &str, value: impl Into<Vec<u8>>) -> TxnOp {
        TxnOp::put(key, value.into(), None)
    }

    pub fn put_json<T: serde::Serialize>(key: &str, value: &T) -> TxnOp {
        put(
            key,
            serde_json::to_vec(value).expect("model values serialize"),
        )
    }

    pub fn put_with_lease(key: &str, value: impl Into<Vec<u8>>, lease: i64) -> TxnOp {
        TxnOp::put(key, value.into(), Some(PutOptions::new().with_lease(lease)))
    }

    pub fn delete(key: &str) -> TxnOp {
        TxnOp::delete(key, None)
    }

    pub fn delete_prefix(prefix: &str) -> TxnOp {
        TxnOp::delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
    }

    pub fn get(key: &str) -> TxnOp {
        TxnOp::get(key, None)
    }
}

/// gRPC status codes we treat as "could not reach etcd" rather than "etcd said no".
mod tonic_code {
    use tonic::Code;
    pub const UNAVAILABLE: Code = Code::Unavailable;
    pub const DEADLINE_EXCEEDED: Code = Code::DeadlineExceeded;
    pub const UNKNOWN: Code = Code::Unknown;
}

fn tls_options(args: &EtcdArgs) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    if args.ca.is_none() && args.cert.is_none() {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display())))
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &args.ca {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Invalid(
                "--etcd-cert and --etcd-key go together".into(),
            ));
        }
    }
    Ok(Some(tls))
}

/// Everything stored about one service, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct ServiceState {
    pub spec: Option<Kv>,
    pub operation: Option<Kv>,
    pub status: Option<Kv>,
    pub instances: Vec<Kv>,
    pub instance_statuses: Vec<Kv>,
    /// The service's spec revisions (`revisions/<ns>/<svc>/<n>`), in key order.
    pub revisions: Vec<Kv>,
    /// `endpoints/<ns>/<svc>` (read by [`Store::service_state_full`] only).
    pub endpoints: Option<Kv>,
    pub revision: i64,
}

impl ServiceState {
    /// The parsed status, or the zero status when none was written yet.
    pub fn status(&self) -> crate::model::ServiceStatus {
        self.status
            .as_ref()
            .and_then(|kv| kv.json().ok())
            .unwrap_or_default()
    }
}

impl Store {
    /// The service's own keys (spec, operation record, status) at one revision:
    /// what the CLI decides on. Its instances are left unread (empty here), so a
    /// command on a service of thousands of instances stays one small read.
    pub async fn service_state(&self, ns: &str, name: &str) -> Result<ServiceState, StoreError> {
        let k = &self.keys;
        let (spec, op, status) = (
            k.service(ns, name),
            k.operation(ns, name),
            k.status(ns, name),
        );
        let reads = [Read::Key(&spec), Read::Key(&op), Read::Key(&status)];
        let (mut r, revision) = self.snapshot(&reads).await?;
        let mut first = |i: usize| std::mem::take(&mut r[i]).into_iter().next();
        Ok(ServiceState {
            spec: first(0),
            operation: first(1),
            status: first(2),
            revision,
            ..ServiceState::default()
        })
    }

    /// Everything stored about the service, read at one revision (what a
    /// reconcile decides on): its reads grow with its own instances only.
    pub async fn service_state_full(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<ServiceState, StoreError> {
        let k = &self.keys;
        let (spec, op, status) = (
            k.service(ns, name),
            k.operation(ns, name),
            k.status(ns, name),
        );
        let (inst, ist, revs) = (
            k.instances_of(ns, name),
            k.instance_statuses_of(ns, name),
            k.revisions_of(ns, name),
        );
        let endpoints = k.endpoints_of(ns, name);
        let reads = [
            Read::Key(&spec),
            Read::Key(&op),
            Read::Key(&status),
            Read::Prefix(&inst),
            Read::Prefix(&ist),
            Read::Prefix(&revs),
            Read::Key(&endpoints),
        ];
        let (mut r, revision) = self.snapshot(&reads).await?;
        let mut take = |i: usize| std::mem::take(&mut r[i]);
        let state = ServiceState {
            spec: take(0).into_iter().next(),
            operation: take(1).into_iter().next(),
            status: take(2).into_iter().next(),
            instances: take(3),
            instance_statuses: take(4),
            revisions: take(5),
            endpoints: take(6).into_iter().next(),
            revision,
        };
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(user: Option<&str>, file: Option<&std::path::Path>, env: Option<&str>) -> EtcdArgs {
        EtcdArgs {
            user: user.map(String::from),
            password_file: file.map(std::path::Path::to_path_buf),
            password: env.map(|p| Password(p.to_string())),
            ..EtcdArgs::local(vec![], "/rune")
        }
    }

    #[test]
    fn credentials_come_from_the_file_else_the_environment() {
        let dir = std::env::temp_dir().join(format!("rune-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret word\nignored\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();

        assert_eq!(args(None, None, Some("x")).credentials().unwrap(), None);
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        assert_eq!(
            args(Some("u"), Some(&file), Some("env"))
                .credentials()
                .unwrap(),
            pair("u", "s3cret word"),
            "the file's first line, and the file wins"
        );
        assert_eq!(
            args(Some("u"), None, Some("env")).credentials().unwrap(),
            pair("u", "env")
        );
        for (a, says) in [
            (args(Some("u"), None, None), "needs a password"),
            (args(Some("u"), Some(&empty), None), "is empty"),
            (args(Some("u"), Some(&dir.join("nope")), None), "nope"),
            (args(None, Some(&file), None), "needs --etcd-user"),
        ] {
            let e = a.credentials().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(!format!("{:?}", args(Some("u"), None, Some("env"))).contains("env\""));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
