//! `/user/*`: a user, authenticated by one of its own inference keys, sees its profile, its
//! quota, its usage by day or model, and manages its own keys. Keys of other users are
//! invisible (404).
//!
//! The rules live in the `pub` functions; the handlers and the web console both call them.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{
    ApiKeyRow, KeyKind, KeyOwner, Timestamp, UsageAggregate, UsageFilter, UsageGroup, UserRow,
};
use kiro_layers::GatewayError;
use serde::Serialize;
use serde_json::json;

use super::{
    create_key, parse_body, parse_id, parse_query, usage_group, ApiError, ApiResult, AppState,
    Authed, CreatedKey, KeyOptions, UsageQuery, USER,
};
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

type User = Authed<USER>;

/// The `/user` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user/me", get(me_h))
        .route("/user/quota", get(quota_h))
        .route("/user/usage", get(usage_h))
        .route("/user/keys", get(list_keys_h).post(create_h))
        .route("/user/keys/{id}", delete(revoke_h))
}

/// The caller's user id; 403 for any other caller.
pub fn user_id(caller: &Caller) -> Result<i64, ApiError> {
    match caller {
        Caller::User { user_id, .. } => Ok(*user_id),
        _ => Err(GatewayError::permission_denied("Not a user key.").into()),
    }
}

/// The caller's user row.
pub async fn me(s: &Tenancy, caller: &Caller) -> Result<UserRow, ApiError> {
    Ok(s.store.get_user(user_id(caller)?).await?)
}

async fn me_h(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    Ok(Json(json!({ "user": me(&s, &c).await? })))
}

/// A user's quota position, micro-credits.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    /// Limit (`None` = unlimited).
    pub quota_limit: Option<i64>,
    /// Charged so far.
    pub quota_used: i64,
    /// What is left (`None` = unlimited).
    pub quota_left: Option<i64>,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
}

/// The caller's quota.
pub async fn quota(s: &Tenancy, caller: &Caller) -> Result<QuotaView, ApiError> {
    let user = me(s, caller).await?;
    Ok(QuotaView {
        quota_limit: user.quota_limit,
        quota_used: user.quota_used,
        quota_left: user.quota_limit.map(|l| (l - user.quota_used).max(0)),
        rpm_limit: user.rpm_limit,
    })
}

async fn quota_h(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    Ok(Json(
        serde_json::to_value(quota(&s, &c).await?).unwrap_or_default(),
    ))
}

/// The groupings a user may ask for.
pub const USAGE_GROUPS: &[UsageGroup] = &[UsageGroup::Day, UsageGroup::Model];

/// The caller's own usage, grouped as asked.
pub async fn usage(
    s: &Tenancy,
    caller: &Caller,
    group_by: Option<&str>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<(UsageGroup, Vec<UsageAggregate>), ApiError> {
    let group = usage_group(group_by, USAGE_GROUPS)?;
    let filter = UsageFilter {
        user_id: Some(user_id(caller)?),
        from,
        to,
        ..UsageFilter::default()
    };
    Ok((group, s.store.query_usage(filter, group).await?))
}

async fn usage_h(State(s): State<AppState>, Authed(c): User, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    if q.user_id.is_some() || q.agent_id.is_some() || q.key_id.is_some() {
        return Err(GatewayError::invalid_request(
            "Only `group_by`, `from` and `to` may be given here.",
        )
        .into());
    }
    let (group, data) = usage(
        &s,
        &c,
        q.group_by.as_deref(),
        super::optional_time(q.from.as_deref(), "from")?,
        super::optional_time(q.to.as_deref(), "to")?,
    )
    .await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

/// The caller's keys.
pub async fn list_keys(s: &Tenancy, caller: &Caller) -> Result<Vec<ApiKeyRow>, ApiError> {
    Ok(s.store
        .list_api_keys(KeyOwner::User(user_id(caller)?))
        .await?)
}

async fn list_keys_h(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    Ok(Json(json!({ "data": list_keys(&s, &c).await? })))
}

/// Creates an inference key for the caller.
pub async fn create(
    s: &Tenancy,
    caller: &Caller,
    options: KeyOptions,
) -> Result<CreatedKey, ApiError> {
    let user = me(s, caller).await?;
    create_key(
        s,
        caller,
        KeyKind::Inference,
        Some(user.id),
        user.agent_id,
        options,
    )
    .await
}

async fn create_h(State(s): State<AppState>, Authed(c): User, body: Bytes) -> ApiResult {
    let options: KeyOptions = parse_body(&body)?;
    Ok(Json(create(&s, &c, options).await?.to_json()))
}

/// Revokes one of the caller's keys; any other key is a 404.
pub async fn revoke(s: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let key = s.store.get_api_key(id).await?;
    if key.user_id != Some(user_id(caller)?) {
        return Err(GatewayError::not_found(format!("API key {id} not found.")).into());
    }
    super::revoke_key_row(s, caller, id).await
}

async fn revoke_h(State(s): State<AppState>, Authed(c): User, Path(id): Path<String>) -> ApiResult {
    revoke(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "revoked": true })))
}
