//! `GET /v1/logs/<ns>/<svc>/<id>` on the agent's listener: one instance's log as
//! chunked text, for `rune logs`. Query: `tail=N`, `since=<duration>` (humantime,
//! counted back from the agent's clock), `timestamps=1`, `follow=1`.
//!
//! Authenticated with a bearer token: 256 random bits the agent makes at each
//! start and publishes at `node-tokens/<node>` in etcd, where etcd's roles decide
//! who may read it (deploy/logs.md). Compared in constant time. With mutual TLS
//! (`--logs-client-ca`, `tls.rs`) the client certificate is the authentication
//! instead: the handshake refused everyone else, and no token is checked.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::Logs;
use super::read::{self, Reader};
use crate::model::ServiceRef;

/// A fresh token: 256 bits from the kernel's CSPRNG, hex-encoded.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `headers` carry `Authorization: Bearer <token>`. The comparison takes
/// the same time wherever the first difference is.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    !token.is_empty() && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Equal byte strings, in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Clone)]
struct LogsState {
    logs: Arc<Logs>,
    /// None: mutual TLS authenticated the client already.
    token: Option<Arc<str>>,
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    tail: Option<usize>,
    since: Option<String>,
    #[serde(default)]
    timestamps: Option<String>,
    #[serde(default)]
    follow: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | ""))
}

/// The routes, for [`crate::serve::serve_with`] or [`super::tls::serve`]. `token`:
/// the bearer token every request must carry; None only behind mutual TLS.
pub fn routes(logs: Arc<Logs>, token: Option<String>) -> Router {
    Router::new()
        .route("/v1/logs/{ns}/{svc}/{id}", get(instance_log))
        .with_state(LogsState {
            logs,
            token: token.map(Into::into),
        })
}

fn text(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

async fn instance_log(
    State(s): State<LogsState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &s.token
        && !authorized(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token (node-tokens/<node> in etcd) is required\n",
        )
            .into_response();
    }
    let valid_id = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if crate::model::names::check_dns_label("namespace", &ns).is_err()
        || crate::model::names::check_dns_label("service", &svc).is_err()
        || !valid_id
    {
        return text(StatusCode::BAD_REQUEST, "not an instance\n".into());
    }
    let since = match p.since.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => SystemTime::now().checked_sub(d),
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("since: {e}\n")),
    };
    let query = read::Query {
        tail: p.tail,
        since,
        timestamps: flag(&p.timestamps),
    };
    let instance = ServiceRef::new(ns, svc).instance(id);
    let reader = Reader::new(s.logs.path(&instance), query);
    if !reader.exists() {
        return text(
            StatusCode::NOT_FOUND,
            format!("no log of {instance} on this node\n"),
        );
    }
    let follow = flag(&p.follow);
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    // The file IO runs on the blocking pool, one look at a time, so a follower
    // holds no thread between looks; it ends when the client goes away (the body,
    // and with it the receiver, is dropped).
    tokio::spawn(async move {
        let Some(mut reader) = look(reader, tx.clone(), Look::History).await else {
            return;
        };
        if !follow {
            let rest = reader.finish();
            if !rest.is_empty() {
                let _ = tx.send(Ok(Bytes::from(rest))).await;
            }
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(read::POLL) => {}
                _ = tx.closed() => return,
            }
            match look(reader, tx.clone(), Look::Follow).await {
                Some(r) => reader = r,
                None => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

type Chunk = Result<Bytes, std::io::Error>;

enum Look {
    History,
    Follow,
}

/// One look at the log on the blocking pool, sending what it read. The reader
/// back, or `None` when the stream is over (client gone, or an error, sent).
async fn look(mut reader: Reader, tx: mpsc::Sender<Chunk>, what: Look) -> Option<Reader> {
    tokio::task::spawn_blocking(move || {
        let mut emit = |b: Vec<u8>| tx.blocking_send(Ok(Bytes::from(b))).is_ok();
        let read = match what {
            Look::History => reader.history(&mut emit),
            Look::Follow => reader.follow(&mut emit),
        };
        match read {
            Ok(true) => Some(reader),
            Ok(false) => None,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                None
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_and_checked_whole() {
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(authorized(&with(&format!("Bearer {t}")), &t));
        assert!(!authorized(&HeaderMap::new(), &t));
        assert!(!authorized(&with(&t), &t));
        assert!(!authorized(&with(&format!("Bearer {}", &t[..63])), &t));
        assert!(!authorized(&with(&format!("Bearer {t}0")), &t));
        let mut wrong = t.clone().into_bytes();
        wrong[63] ^= 1;
        let wrong = String::from_utf8(wrong).unwrap();
        assert!(!authorized(&with(&format!("Bearer {wrong}")), &t));
        assert!(
            !authorized(&with("Bearer "), ""),
            "an empty token is never set"
        );
    }
}
