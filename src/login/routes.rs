//! The JSON admin endpoints of sign-in and import (admin keys only; every change audited):
//!
//! - `POST /admin/accounts/login/start`: body [`LoginRequest`]; answers the flow.
//! - `GET /admin/accounts/login/{id}`: the flow; `?wait=S&version=N` waits up to `S` seconds
//!   (at most 30) for a change from version `N` (long polling).
//! - `POST /admin/accounts/login/{id}/profile`: `{"profile_arn": ...}` answers
//!   `needs_profile_choice`.
//! - `POST /admin/accounts/login/{id}/redirect`: `{"url": ...}`, the paste fallback.
//! - `POST /admin/accounts/login/{id}/cancel`.
//! - `POST /admin/accounts/import`: body [`ImportRequest`]; one result per entry.
//! - `GET /admin/accounts/{id}/login`: how an account was signed in, and whether its client
//!   registration expires within 14 days (`sign_in_again_soon`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use super::batch::{import, ImportRequest, Outcome};
use super::{FlowView, LoginRequest, Logins};
use crate::tenancy::api::{parse_body, parse_id, parse_query, ApiError, ApiResult, Authed, ADMIN};
use crate::tenancy::keys::Caller;
use kiro_layers::GatewayError;

type LoginState = Arc<Logins>;

/// `sign_in_again_soon` turns true this many days before the client registration expires.
const RENEW_WITHIN_DAYS: i64 = 14;

/// An admin caller, checked with the tenancy's keys.
struct Admin(Caller);

impl FromRequestParts<LoginState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &LoginState,
    ) -> Result<Self, Self::Rejection> {
        let tenancy = Arc::clone(&state.context().tenancy);
        let Authed(caller) = Authed::<ADMIN>::from_request_parts(parts, &tenancy).await?;
        Ok(Admin(caller))
    }
}

/// The routes, ready to merge into the gateway's router.
pub fn router(logins: Arc<Logins>) -> Router {
    Router::new()
        .route("/admin/accounts/login/start", post(start))
        .route("/admin/accounts/login/{id}", get(status))
        .route("/admin/accounts/login/{id}/profile", post(choose_profile))
        .route("/admin/accounts/login/{id}/redirect", post(redirect))
        .route("/admin/accounts/login/{id}/cancel", post(cancel))
        .route("/admin/accounts/import", post(batch_import))
        .route("/admin/accounts/{id}/login", get(account_login))
        .with_state(logins)
}

async fn start(State(logins): State<LoginState>, Admin(caller): Admin, body: Bytes) -> ApiResult {
    let request: LoginRequest = parse_body(&body)?;
    let flow = start_audited(&logins, &caller, request).await?;
    Ok(Json(json!({ "login": flow })))
}

/// Starts a flow and audits it: what `POST /admin/accounts/login/start` and the console's
/// wizard both call.
pub async fn start_audited(
    logins: &Arc<Logins>,
    caller: &Caller,
    request: LoginRequest,
) -> Result<FlowView, GatewayError> {
    let flow = logins.start(caller, request).await?;
    logins
        .context()
        .tenancy
        .audit(
            caller,
            "login-start",
            "login",
            &flow.id,
            json!({ "method": flow.method }),
        )
        .await;
    Ok(flow)
}

/// Answers `needs_profile_choice` and audits it (JSON endpoint and console).
pub async fn choose_profile_audited(
    logins: &Logins,
    caller: &Caller,
    id: &str,
    profile_arn: &str,
) -> Result<FlowView, GatewayError> {
    let flow = logins.choose_profile(id, profile_arn).await?;
    logins
        .context()
        .tenancy
        .audit(
            caller,
            "login-profile",
            "login",
            id,
            json!({ "profile_arn": profile_arn }),
        )
        .await;
    Ok(flow)
}

/// Cancels a flow and audits it (JSON endpoint and console).
pub async fn cancel_audited(
    logins: &Logins,
    caller: &Caller,
    id: &str,
) -> Result<FlowView, GatewayError> {
    let flow = logins.cancel(id).await?;
    logins
        .context()
        .tenancy
        .audit(caller, "login-cancel", "login", id, json!({}))
        .await;
    Ok(flow)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

async fn status(
    State(logins): State<LoginState>,
    _: Admin,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query: WaitQuery = parse_query(query.as_deref())?;
    let number = |text: &Option<String>, what: &str| -> Result<Option<u64>, ApiError> {
        text.as_deref()
            .map(|t| {
                t.parse::<u64>().map_err(|_| {
                    ApiError(kiro_layers::GatewayError::invalid_request(format!(
                        "`{what}` must be a whole number."
                    )))
                })
            })
            .transpose()
    };
    let wait = number(&query.wait, "wait")?.unwrap_or(0).min(30);
    let flow = match number(&query.version, "version")? {
        Some(seen) if wait > 0 => logins.wait(&id, seen, Duration::from_secs(wait)).await?,
        _ => logins.status(&id).await?,
    };
    Ok(Json(json!({ "login": flow })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileChoice {
    profile_arn: String,
}

async fn choose_profile(
    State(logins): State<LoginState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let choice: ProfileChoice = parse_body(&body)?;
    let flow = choose_profile_audited(&logins, &caller, &id, &choice.profile_arn).await?;
    Ok(Json(json!({ "login": flow })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pasted {
    url: String,
}

async fn redirect(
    State(logins): State<LoginState>,
    _: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let pasted: Pasted = parse_body(&body)?;
    // The success itself is audited where the account is stored.
    let flow = logins.complete_redirect(&id, &pasted.url).await?;
    Ok(Json(json!({ "login": flow })))
}

async fn cancel(
    State(logins): State<LoginState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let flow = cancel_audited(&logins, &caller, &id).await?;
    Ok(Json(json!({ "login": flow })))
}

async fn batch_import(
    State(logins): State<LoginState>,
    Admin(caller): Admin,
    body: Bytes,
) -> ApiResult {
    let request: ImportRequest = parse_body(&body)?;
    let results = import(logins.context(), &caller, request).await?;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    Ok(Json(json!({
        "added": count(Outcome::Added),
        "duplicates": count(Outcome::Duplicate),
        "failed": count(Outcome::Failed),
        "results": results,
    })))
}

async fn account_login(
    State(logins): State<LoginState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let store = &logins.context().tenancy.store;
    store.get_account(id).await?;
    let login = store.get_account_login(id).await?;
    // Refreshes stop working when the client registration expires; say so two weeks ahead
    // (console-and-login notes C.8) so the operator signs in again in time.
    let expires_in_days = login
        .as_ref()
        .and_then(|l| l.client_secret_expires_at)
        .map(|at| (at - chrono::Utc::now()).num_days());
    Ok(Json(json!({
        "login": login,
        "registration_expires_in_days": expires_in_days,
        "sign_in_again_soon": expires_in_days.is_some_and(|days| days < RENEW_WITHIN_DAYS),
    })))
}
