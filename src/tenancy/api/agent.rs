//! `/agent/*`: a reseller, authenticated by an agent key, manages its own users and their keys,
//! moves quota from its balance to a user (recorded), and reads its users' usage. Anything
//! outside its own users answers 404, exactly like an id that does not exist.
//!
//! The rules live in the `pub` functions (`own_user`, `create_user`, `transfer`, ...); the
//! handlers and the web console (`crate::console`) both call them.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{
    AgentRow, ApiKeyRow, KeyKind, KeyOwner, NewUser, TransferRow, UsageAggregate, UsageFilter,
    UsageGroup, UserRow,
};
use kiro_layers::GatewayError;
use serde::Deserialize;
use serde_json::json;

use super::admin::UpdateUser;
use super::{
    create_key, parse_body, parse_id, parse_query, usage_group, valid_name, ApiError, ApiResult,
    AppState, Authed, CreatedKey, KeyOptions, UsageQuery, AGENT,
};
use crate::tenancy::keys::Caller;
use crate::tenancy::state::Tenancy;

type Agent = Authed<AGENT>;

/// The `/agent` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/me", get(me_h))
        .route("/agent/users", get(list_users_h).post(create_user_h))
        .route("/agent/users/{id}", get(get_user_h).patch(update_user_h))
        .route(
            "/agent/users/{id}/keys",
            get(list_keys_h).post(create_key_h),
        )
        .route("/agent/users/{id}/keys/{key_id}", delete(revoke_h))
        .route("/agent/users/{id}/transfer", post(transfer_h))
        .route("/agent/usage", get(usage_h))
        .route("/agent/transfers", get(transfers_h))
}

/// The caller's agent id; 403 for any other caller.
pub fn agent_id(caller: &Caller) -> Result<i64, ApiError> {
    match caller {
        Caller::Agent { agent_id, .. } => Ok(*agent_id),
        _ => Err(GatewayError::permission_denied("Not an agent key.").into()),
    }
}

/// The user `id` if it belongs to the caller's agent; 404 otherwise, exactly like a user that
/// does not exist.
pub async fn own_user(s: &Tenancy, caller: &Caller, id: i64) -> Result<UserRow, ApiError> {
    let agent = agent_id(caller)?;
    match s.store.get_user(id).await {
        Ok(user) if user.agent_id == Some(agent) => Ok(user),
        Ok(_) | Err(kiro_layers::store::StoreError::NotFound(_)) => {
            Err(GatewayError::not_found(format!("User {id} not found.")).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The caller's agent row (balance).
pub async fn me(s: &Tenancy, caller: &Caller) -> Result<AgentRow, ApiError> {
    Ok(s.store.get_agent(agent_id(caller)?).await?)
}

async fn me_h(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    Ok(Json(json!({ "agent": me(&s, &c).await? })))
}

/// The caller's users.
pub async fn list_users(s: &Tenancy, caller: &Caller) -> Result<Vec<UserRow>, ApiError> {
    Ok(s.store.list_users(Some(agent_id(caller)?)).await?)
}

/// One page of the caller's users (by id), and how many it has.
pub async fn page_users(
    s: &Tenancy,
    caller: &Caller,
    page: kiro_layers::store::PageRequest,
) -> Result<kiro_layers::store::UserPage, ApiError> {
    let query = kiro_layers::store::UserQuery {
        agent_id: Some(agent_id(caller)?),
        ..Default::default()
    };
    Ok(s.store.page_users(query, page).await?)
}

async fn list_users_h(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    Ok(Json(json!({ "data": list_users(&s, &c).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    #[serde(default)]
    rpm_limit: Option<u32>,
}

/// Creates a user of the caller's agent, with no quota: it gets what the agent transfers.
pub async fn create_user(
    s: &Tenancy,
    caller: &Caller,
    name: &str,
    rpm_limit: Option<u32>,
) -> Result<UserRow, ApiError> {
    let user = s
        .store
        .create_user(NewUser {
            agent_id: Some(agent_id(caller)?),
            name: valid_name("`name`", name)?,
            quota_limit: Some(0),
            rpm_limit,
        })
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        caller,
        "create",
        "user",
        user.id,
        json!({ "name": user.name }),
    )
    .await;
    Ok(user)
}

async fn create_user_h(State(s): State<AppState>, Authed(c): Agent, body: Bytes) -> ApiResult {
    let input: CreateUser = parse_body(&body)?;
    let user = create_user(&s, &c, &input.name, input.rpm_limit).await?;
    Ok(Json(json!({ "user": user })))
}

async fn get_user_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(
        json!({ "user": own_user(&s, &c, parse_id(&id)?).await? }),
    ))
}

/// Changes one of the caller's users.
pub async fn update_user(
    s: &Tenancy,
    caller: &Caller,
    id: i64,
    update: UpdateUser,
) -> Result<UserRow, ApiError> {
    let user = own_user(s, caller, id).await?;
    let update = update.into_update()?;
    let user = s.store.update_user(user.id, update).await?;
    s.reload_keys_and_quota().await?;
    s.audit(caller, "update", "user", user.id, json!({})).await;
    Ok(user)
}

async fn update_user_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let user = own_user(&s, &c, id).await?;
    let user = update_user(&s, &c, user.id, parse_body(&body)?).await?;
    Ok(Json(json!({ "user": user })))
}

/// The keys of one of the caller's users.
pub async fn list_user_keys(
    s: &Tenancy,
    caller: &Caller,
    user_id: i64,
) -> Result<Vec<ApiKeyRow>, ApiError> {
    let user = own_user(s, caller, user_id).await?;
    Ok(s.store.list_api_keys(KeyOwner::User(user.id)).await?)
}

async fn list_keys_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
) -> ApiResult {
    let keys = list_user_keys(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "data": keys })))
}

/// Creates an inference key for one of the caller's users.
pub async fn create_user_key(
    s: &Tenancy,
    caller: &Caller,
    user_id: i64,
    options: KeyOptions,
) -> Result<CreatedKey, ApiError> {
    let user = own_user(s, caller, user_id).await?;
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

async fn create_key_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    own_user(&s, &c, id).await?;
    let options: KeyOptions = parse_body(&body)?;
    Ok(Json(create_user_key(&s, &c, id, options).await?.to_json()))
}

/// Revokes a key of one of the caller's users.
pub async fn revoke_user_key(
    s: &Tenancy,
    caller: &Caller,
    user_id: i64,
    key_id: i64,
) -> Result<(), ApiError> {
    let user = own_user(s, caller, user_id).await?;
    let key = s.store.get_api_key(key_id).await?;
    if key.user_id != Some(user.id) {
        return Err(GatewayError::not_found(format!("API key {key_id} not found.")).into());
    }
    super::revoke_key_row(s, caller, key_id).await
}

async fn revoke_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let user = own_user(&s, &c, parse_id(&id)?).await?;
    revoke_user_key(&s, &c, user.id, parse_id(&key_id)?).await?;
    Ok(Json(json!({ "revoked": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    amount: i64,
}

/// Moves `amount` micro-credits from the caller's balance to one of its users (recorded).
pub async fn transfer(
    s: &Tenancy,
    caller: &Caller,
    user_id: i64,
    amount: i64,
) -> Result<TransferRow, ApiError> {
    let user = own_user(s, caller, user_id).await?;
    if amount <= 0 {
        return Err(GatewayError::invalid_request("`amount` must be positive.").into());
    }
    let row = s
        .store
        .transfer_quota(agent_id(caller)?, user.id, amount)
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        caller,
        "transfer",
        "user",
        user.id,
        json!({ "amount": amount }),
    )
    .await;
    Ok(row)
}

async fn transfer_h(
    State(s): State<AppState>,
    Authed(c): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = own_user(&s, &c, parse_id(&id)?).await?;
    let input: Transfer = parse_body(&body)?;
    let row = transfer(&s, &c, user.id, input.amount).await?;
    Ok(Json(json!({ "transfer": row })))
}

/// The groupings an agent may ask for.
pub const USAGE_GROUPS: &[UsageGroup] = &[UsageGroup::User, UsageGroup::Model, UsageGroup::Day];

/// Usage of the caller's users (or one of them), grouped as asked.
pub async fn usage(
    s: &Tenancy,
    caller: &Caller,
    group_by: Option<&str>,
    user_id: Option<i64>,
    from: Option<kiro_layers::store::Timestamp>,
    to: Option<kiro_layers::store::Timestamp>,
) -> Result<(UsageGroup, Vec<UsageAggregate>), ApiError> {
    let agent = agent_id(caller)?;
    let user_id = match user_id {
        Some(id) => Some(own_user(s, caller, id).await?.id),
        None => None,
    };
    let group = usage_group(group_by, USAGE_GROUPS)?;
    let filter = UsageFilter {
        agent_id: Some(agent),
        user_id,
        from,
        to,
        ..UsageFilter::default()
    };
    Ok((group, s.store.query_usage(filter, group).await?))
}

async fn usage_h(State(s): State<AppState>, Authed(c): Agent, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    let user_id = q.user_id.as_deref().map(parse_id).transpose()?;
    if let Some(id) = user_id {
        own_user(&s, &c, id).await?;
    }
    if q.key_id.is_some() || q.agent_id.is_some() {
        return Err(GatewayError::invalid_request(
            "Filter by `user_id`; `key_id` and `agent_id` are not accepted here.",
        )
        .into());
    }
    let (group, data) = usage(
        &s,
        &c,
        q.group_by.as_deref(),
        user_id,
        super::optional_time(q.from.as_deref(), "from")?,
        super::optional_time(q.to.as_deref(), "to")?,
    )
    .await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

/// The caller's transfers, newest first.
pub async fn transfers(s: &Tenancy, caller: &Caller) -> Result<Vec<TransferRow>, ApiError> {
    Ok(s.store.list_transfers(Some(agent_id(caller)?)).await?)
}

/// One page of the caller's transfers (newest first), and how many there are.
pub async fn page_transfers(
    s: &Tenancy,
    caller: &Caller,
    page: kiro_layers::store::PageRequest,
) -> Result<kiro_layers::store::TransferPage, ApiError> {
    Ok(s.store
        .page_transfers(Some(agent_id(caller)?), page)
        .await?)
}

async fn transfers_h(State(s): State<AppState>, Authed(c): Agent) -> ApiResult {
    Ok(Json(json!({ "data": transfers(&s, &c).await? })))
}
