//! Operator endpoints: `GET /metrics` (Prometheus text format) and `GET /ready` (readiness for a
//! load balancer). `GET /health` (liveness) stays in [`crate::routes`].

pub mod admin_debug;
pub mod prometheus;
pub mod ready;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kiro_layers::kiro::auth::RefreshingCredential;
use kiro_layers::pool::RoundRobinPool;

pub use ready::{AccountsStatus, Readiness, ReadinessCheck, ReadinessDetail};

/// What the operator endpoints read.
#[derive(Clone)]
pub struct OpsState {
    /// The account pool (per-account state and in-flight leases).
    pub pool: RoundRobinPool,
    /// The configured credentials (refresh counts).
    pub credentials: Vec<Arc<RefreshingCredential>>,
    /// Readiness checks.
    pub readiness: Readiness,
}

/// `/metrics` and `/ready`, to merge into the gateway's router.
pub fn routes(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn metrics(State(state): State<OpsState>) -> Response {
    match prometheus::render(&state.pool, &state.credentials) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are unavailable: another metrics recorder was installed first\n",
        )
            .into_response(),
    }
}

async fn ready(State(state): State<OpsState>) -> Response {
    let (ready, body) = state.readiness.check().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
