//! The admin JSON endpoints of Kiro usage limits (admin keys only):
//!
//! - `GET /admin/accounts/usage-limits`: every account's stored snapshot and last error.
//! - `POST /admin/accounts/{id}/usage-limits`: asks Kiro now; answers the stored row (a
//!   failed fetch is a 502 naming Kiro's answer, and is stored as the account's last error).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::request::Parts;
use serde_json::json;

use super::UsageLimits;
use crate::tenancy::api::{parse_id, ApiError, ApiResult, Authed, ADMIN};

type LimitsState = Arc<UsageLimits>;

/// An admin caller, checked with the tenancy's keys.
struct Admin;

impl FromRequestParts<LimitsState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &LimitsState,
    ) -> Result<Self, Self::Rejection> {
        let tenancy = Arc::clone(&state.tenancy);
        Authed::<ADMIN>::from_request_parts(parts, &tenancy).await?;
        Ok(Admin)
    }
}

/// The routes, ready to merge into the gateway's router.
pub fn router(limits: Arc<UsageLimits>) -> Router {
    Router::new()
        .route("/admin/accounts/usage-limits", get(list))
        .route("/admin/accounts/{id}/usage-limits", post(refresh))
        .with_state(limits)
}

async fn list(State(limits): State<LimitsState>, _: Admin) -> ApiResult {
    let rows = limits.stored().await?;
    let near: Vec<i64> = rows
        .iter()
        .filter(|r| r.snapshot.as_ref().is_some_and(|s| limits.is_near(s)))
        .map(|r| r.account_id)
        .collect();
    Ok(Json(
        json!({ "data": rows, "near_limit": near, "warn_at": limits.warn_at }),
    ))
}

async fn refresh(State(limits): State<LimitsState>, _: Admin, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    limits.refresh(id).await?;
    let row = limits
        .stored()
        .await?
        .into_iter()
        .find(|r| r.account_id == id);
    Ok(Json(json!({ "usage_limits": row })))
}
