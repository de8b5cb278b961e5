//! `/user/*`: a user, authenticated by one of its own inference keys, sees its profile, its
//! quota, its usage by day or model, and manages its own keys. Keys of other users are
//! invisible (404).

use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{KeyKind, KeyOwner, UsageFilter, UsageGroup};
use kiro_layers::GatewayError;
use serde_json::json;

use super::{
    create_key, parse_body, parse_id, parse_query, usage_group, ApiError, ApiResult, AppState,
    Authed, KeyOptions, UsageQuery, USER,
};
use crate::tenancy::keys::Caller;

type User = Authed<USER>;

/// The `/user` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user/me", get(me))
        .route("/user/quota", get(quota))
        .route("/user/usage", get(usage))
        .route("/user/keys", get(list_keys).post(create))
        .route("/user/keys/{id}", delete(revoke))
}

fn user_id(caller: &Caller) -> Result<i64, ApiError> {
    match caller {
        Caller::User { user_id, .. } => Ok(*user_id),
        _ => Err(GatewayError::permission_denied("Not a user key.").into()),
    }
}

async fn me(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    let user = s.store.get_user(user_id(&c)?).await?;
    Ok(Json(json!({ "user": user })))
}

async fn quota(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    let user = s.store.get_user(user_id(&c)?).await?;
    let left = user.quota_limit.map(|l| (l - user.quota_used).max(0));
    Ok(Json(json!({
        "quota_limit": user.quota_limit,
        "quota_used": user.quota_used,
        "quota_left": left,
        "rpm_limit": user.rpm_limit,
    })))
}

async fn usage(State(s): State<AppState>, Authed(c): User, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    if q.user_id.is_some() || q.agent_id.is_some() || q.key_id.is_some() {
        return Err(GatewayError::invalid_request(
            "Only `group_by`, `from` and `to` may be given here.",
        )
        .into());
    }
    let group = usage_group(q.group_by.as_deref(), &[UsageGroup::Day, UsageGroup::Model])?;
    let filter = UsageFilter {
        user_id: Some(user_id(&c)?),
        from: super::optional_time(q.from.as_deref(), "from")?,
        to: super::optional_time(q.to.as_deref(), "to")?,
        ..UsageFilter::default()
    };
    let data = s.store.query_usage(filter, group).await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

async fn list_keys(State(s): State<AppState>, Authed(c): User) -> ApiResult {
    let keys = s.store.list_api_keys(KeyOwner::User(user_id(&c)?)).await?;
    Ok(Json(json!({ "data": keys })))
}

async fn create(State(s): State<AppState>, Authed(c): User, body: Bytes) -> ApiResult {
    let options: KeyOptions = parse_body(&body)?;
    let user = s.store.get_user(user_id(&c)?).await?;
    create_key(
        &s,
        &c,
        KeyKind::Inference,
        Some(user.id),
        user.agent_id,
        options,
    )
    .await
}

async fn revoke(State(s): State<AppState>, Authed(c): User, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let key = s.store.get_api_key(id).await?;
    if key.user_id != Some(user_id(&c)?) {
        return Err(GatewayError::not_found(format!("API key {id} not found.")).into());
    }
    s.store.revoke_api_key(id).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "revoke", "api_key", id, json!({})).await;
    Ok(Json(json!({ "revoked": true })))
}
