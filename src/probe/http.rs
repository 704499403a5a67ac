//! http probes: GET http://127.0.0.1:<port><path>; 2xx and 3xx are healthy.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub async fn check(port: u16, path: &str) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let uri: hyper::Uri = url.parse().map_err(|e| format!("http GET {url}: {e}"))?;
    // A fresh client per check: probes are rare and a pooled connection could hide
    // an instance that stopped accepting new connections.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let resp = client
        .get(uri)
        .await
        .map_err(|e| format!("http GET {path}: {}", root_cause(&e)))?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("http GET {path}: status {}", status.as_u16()))
    }
}

/// The innermost error says what went wrong ("connection refused"), the outer
/// ones only that the client failed.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
