//! The multi-tenant business layer: API keys served from memory, quotas and rate limits,
//! prices and charging, the database-backed account pool, and the admin, user and agent APIs.

pub mod accounts;
pub mod api;
pub mod cli;
pub mod cursor_accounts;
pub mod keys;
pub mod limits;
pub mod models;
pub mod pool;
pub mod pricing;
pub mod shared_limits;
pub mod state;
pub mod turn;
pub mod wire;

use std::sync::Arc;

/// The `/admin`, `/user` and `/agent` routes over `tenancy`, ready to merge into the gateway's
/// router.
pub fn router(tenancy: Arc<state::Tenancy>) -> axum::Router {
    api::admin::router()
        .merge(api::user::router())
        .merge(api::agent::router())
        .with_state(tenancy)
}
