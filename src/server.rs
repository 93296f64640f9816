//! The operator's HTTP endpoints: `/healthz` (the process is alive), `/readyz` (a standby waiting
//! for leadership, or a leader whose caches are synced) and `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// Shared with the controllers, which mark readiness once their caches are synced.
///
/// A standby (waiting for the leader-election Lease) is ready too: it is healthy and only waits.
/// Were it not, a rolling update of a Deployment with more than one replica (or with
/// `maxUnavailable: 0`) would never complete: the new pods wait for the Lease that the old leader
/// holds until the rollout replaces it, and the rollout waits for the new pods to be ready.
#[derive(Clone, Default)]
pub struct Health {
    state: Arc<AtomicU8>,
}

const NOT_READY: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;

impl Health {
    /// Leading (or leader election off), and the caches are synced (`true`) or not yet.
    pub fn set_ready(&self, ready: bool) {
        self.state
            .store(if ready { READY } else { NOT_READY }, Ordering::SeqCst);
    }
    /// Waiting for leadership.
    pub fn set_standby(&self) {
        self.state.store(STANDBY, Ordering::SeqCst);
    }
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) != NOT_READY
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Arc<Metrics>,
}

pub fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AppState { health, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.state.load(Ordering::SeqCst) {
        READY => (StatusCode::OK, "ready"),
        STANDBY => (StatusCode::OK, "standby"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet"),
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for health and metrics: {e}"))?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router(health, metrics))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
