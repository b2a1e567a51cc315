//! The health and metrics server: /healthz, /readyz and /metrics.

use crate::runtime::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the probes read.
#[derive(Clone)]
pub struct HealthState {
    /// Metrics to serve.
    pub metrics: Arc<Metrics>,
    /// Set when the caches are synced.
    pub readiness: Readiness,
    /// True while this replica waits for the lease (a standby is ready by definition).
    pub standby: Arc<AtomicBool>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    if s.standby.load(Ordering::Relaxed) {
        (StatusCode::OK, "standby: waiting for the leader lease")
    } else if s.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

async fn metrics(State(s): State<HealthState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, state: HealthState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app).await
}

/// Set once every cache has its first full list; /readyz reads it.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Whether the caches are synced.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// Marks the caches synced.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed)
    }
}
