//! `/agent/*`: a reseller, authenticated by an agent key, manages its own users and their keys,
//! moves quota from its balance to a user (recorded), and reads its users' usage. Anything
//! outside its own users answers 404, exactly like an id that does not exist.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{KeyKind, KeyOwner, NewUser, UsageFilter, UsageGroup, UserRow};
use kiro_layers::GatewayError;
use serde::Deserialize;
use serde_json::json;

use super::admin::UpdateUser;
use super::{
    create_key, parse_body, parse_id, parse_query, usage_group, valid_name, ApiError, ApiResult,
    AppState, Authed, KeyOptions, UsageQuery, AGENT,
};
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

type Agent = Authed<AGENT>;

/// The `/agent` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/me", get(me))
        .route("/agent/users", get(list_users).post(create_user))
        .route("/agent/users/{id}", get(get_user).patch(update_user))
        .route("/agent/users/{id}/keys", get(list_keys).post(create))
        .route("/agent/users/{id}/keys/{key_id}", delete(revoke))
        .route("/agent/users/{id}/transfer", post(transfer))
        .route("/agent/usage", get(usage))
        .route("/agent/transfers", get(transfers))
}

fn agent_id(caller: &Caller) -> Result<i64, ApiError> {
    match caller {
        Caller::Agent { agent_id, .. } => Ok(*agent_id),
        _ => Err(GatewayError::permission_denied("Not an agent key.").into()),
    }
}

/// The user `id` if it belongs to the caller's agent; 404 otherwise.
async fn own_user(s: &Tenancy, caller: &Caller, id: &str) -> Result<UserRow, ApiError> {
    let id = parse_id(id)?;
    let agent = agent_id(caller)?;
    match s.store.get_user(id).await {
        Ok(user) if user.agent_id == Some(agent) => Ok(user),
        Ok(_) | Err(kiro_layers::store::StoreError::NotFound(_)) => {
            Err(GatewayError::not_found(format!("User {id} not found.")).into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn me(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    Ok(Json(
        json!({ "agent": s.store.get_agent(agent_id(&c)?).await? }),
    ))
}

async fn list_users(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    let users = s.store.list_users(Some(agent_id(&c)?)).await?;
    Ok(Json(json!({ "data": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    #[serde(default)]
    rpm_limit: Option<u32>,
}

async fn create_user(State(s): State<AppState>, Authed(c): Agent, body: Bytes) -> ApiResult {
    let input: CreateUser = parse_body(&body)?;
    let user = s
        .store
        .create_user(NewUser {
            agent_id: Some(agent_id(&c)?),
            name: valid_name("`name`", &input.name)?,
            // An agent's user starts with no quota: it gets what the agent transfers.
            quota_limit: Some(0),
            rpm_limit: input.rpm_limit,
        })
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "create", "user", user.id, json!({ "name": user.name }))
        .await;
    Ok(Json(json!({ "user": user })))
}

async fn get_user(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(json!({ "user": own_user(&s, &c, &id).await? })))
}

async fn update_user(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = own_user(&s, &c, &id).await?;
    let update = parse_body::<UpdateUser>(&body)?.into_update()?;
    let user = s.store.update_user(user.id, update).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "update", "user", user.id, json!({})).await;
    Ok(Json(json!({ "user": user })))
}

async fn list_keys(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
) -> ApiResult {
    let user = own_user(&s, &c, &id).await?;
    Ok(Json(
        json!({ "data": s.store.list_api_keys(KeyOwner::User(user.id)).await? }),
    ))
}

async fn create(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = own_user(&s, &c, &id).await?;
    let options: KeyOptions = parse_body(&body)?;
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

async fn revoke(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let user = own_user(&s, &c, &id).await?;
    let key_id = parse_id(&key_id)?;
    let key = s.store.get_api_key(key_id).await?;
    if key.user_id != Some(user.id) {
        return Err(GatewayError::not_found(format!("API key {key_id} not found.")).into());
    }
    s.store.revoke_api_key(key_id).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "revoke", "api_key", key_id, json!({})).await;
    Ok(Json(json!({ "revoked": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    amount: i64,
}

async fn transfer(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = own_user(&s, &c, &id).await?;
    let input: Transfer = parse_body(&body)?;
    if input.amount <= 0 {
        return Err(GatewayError::invalid_request("`amount` must be positive.").into());
    }
    let row = s
        .store
        .transfer_quota(agent_id(&c)?, user.id, input.amount)
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        &c,
        "transfer",
        "user",
        user.id,
        json!({ "amount": input.amount }),
    )
    .await;
    Ok(Json(json!({ "transfer": row })))
}

async fn usage(State(s): State<AppState>, Authed(c): Agent, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    let agent = agent_id(&c)?;
    let user_id = match q.user_id.as_deref() {
        Some(id) => Some(own_user(&s, &c, id).await?.id),
        None => None,
    };
    if q.key_id.is_some() || q.agent_id.is_some() {
        return Err(GatewayError::invalid_request(
            "Filter by `user_id`; `key_id` and `agent_id` are not accepted here.",
        )
        .into());
    }
    let group = usage_group(
        q.group_by.as_deref(),
        &[UsageGroup::User, UsageGroup::Model, UsageGroup::Day],
    )?;
    let filter = UsageFilter {
        agent_id: Some(agent),
        user_id,
        from: super::optional_time(q.from.as_deref(), "from")?,
        to: super::optional_time(q.to.as_deref(), "to")?,
        ..UsageFilter::default()
    };
    let data = s.store.query_usage(filter, group).await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

async fn transfers(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    Ok(Json(
        json!({ "data": s.store.list_transfers(Some(agent_id(&c)?)).await? }),
    ))
}
