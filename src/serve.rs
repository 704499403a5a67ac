//! The HTTP endpoints every daemon exposes: `/healthz` (the process is alive),
//! `/readyz` (it can do its job: etcd reachable, and for the controller, caught up),
//! and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    ready: watch::Receiver<Readiness>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// Binds `addr` (fails fast, naming the address, when it is taken) and serves in the
/// background. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<Readiness>,
) -> anyhow::Result<SocketAddr> {
    serve_with(addr, registry, ready, Router::new()).await
}

/// [`serve`], with `more` routes beside the three (the agent's `/v1/logs/`).
pub async fn serve_with(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<Readiness>,
    more: Router,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let state = AppState {
        registry: Arc::new(registry),
        ready,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(more);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    Ok(bound)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match &*s.ready.borrow() {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_string()),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
