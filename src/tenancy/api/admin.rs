//! `/admin/*`: accounts, users, keys, quotas, aliases and combos, prices, agents, usage and the
//! audit log. Authenticated by `ADMIN_API_KEY` or a database admin key. Every mutation is
//! audited (without secrets) and reloads the caches it touches before answering.
//!
//! Each route is a thin handler over a `pub` function of the same name (`create_user`,
//! `top_up_agent`, ...) that holds the rules; the web console (`crate::console`) calls the same
//! functions, so the JSON API and the console cannot drift apart.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{
    AccountRow, AccountState, AccountStatus, AgentRow, AuditRow, KeyKind, KeyOwner, NewUser, Price,
    Status, UsageAggregate, UsageFilter, UsageGroup, UserRow, UserUpdate,
};
use kiro_layers::GatewayError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    create_key, parse_body, parse_id, parse_query, usage_filter, usage_group, valid_model,
    valid_name, ApiError, ApiResult, AppState, Authed, CreatedKey, KeyOptions, UsageQuery, ADMIN,
};
use crate::tenancy::accounts::{new_account, AccountSource};
use crate::tenancy::cursor_accounts::{is_cursor, new_cursor_account};
use crate::tenancy::keys::Caller;
use crate::tenancy::state::{quota_subject, Tenancy};

type Admin = Authed<ADMIN>;

/// The `/admin` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/accounts",
            get(list_accounts_h)
                .post(create_account_h)
                // A Cursor state.vscdb upload (base64) is larger than axum's default limit.
                .layer(axum::extract::DefaultBodyLimit::max(ACCOUNT_UPLOAD_LIMIT)),
        )
        .route(
            "/admin/accounts/{id}",
            axum::routing::delete(delete_account_h),
        )
        .route("/admin/accounts/{id}/enable", post(enable_account_h))
        .route("/admin/accounts/{id}/disable", post(disable_account_h))
        .route("/admin/accounts/{id}/refresh", post(refresh_account_h))
        .route("/admin/users", get(list_users_h).post(create_user_h))
        .route(
            "/admin/users/{id}",
            get(get_user_h).patch(update_user_h).delete(delete_user_h),
        )
        .route("/admin/keys", get(list_keys_h).post(create_admin_key_h))
        .route("/admin/keys/{id}", axum::routing::delete(revoke_key_h))
        .route("/admin/quotas/set", post(set_quota_h))
        .route("/admin/quotas/add", post(add_quota_h))
        .route("/admin/aliases", get(list_aliases_h))
        .route(
            "/admin/aliases/{name}",
            put(set_alias_h).delete(delete_alias_h),
        )
        .route("/admin/combos", get(list_combos_h))
        .route(
            "/admin/combos/{name}",
            put(set_combo_h).delete(delete_combo_h),
        )
        .route("/admin/prices", get(list_prices_h))
        .route("/admin/prices/{model}", put(set_price_h))
        .route("/admin/agents", get(list_agents_h).post(create_agent_h))
        .route("/admin/agents/{id}/topup", post(top_up_agent_h))
        .route("/admin/transfers", get(list_transfers_h))
        .route("/admin/usage", get(usage_h))
        .route("/admin/audit", get(audit_h))
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// The largest `POST /admin/accounts` body: room for a Cursor state.vscdb of about 48 MiB as
/// base64 (the IDE keeps chat history in it; a larger one is given by path, see docs/cursor.md).
pub const ACCOUNT_UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// One account as the admin sees it: the stored row, its shared state and its live load.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// The stored account.
    pub account: AccountRow,
    /// Cooldown, breaker and failures, when any were recorded.
    pub state: Option<AccountState>,
    /// Requests running on it in this process.
    pub in_flight: usize,
    /// Seconds until it is used again, while resting.
    pub resting_for_seconds: Option<u64>,
    /// Leases handed out in this process.
    pub leases: u64,
}

/// Every account with its state and live load.
pub async fn list_accounts(s: &Tenancy) -> Result<Vec<AccountView>, ApiError> {
    let accounts = s.store.list_accounts().await?;
    let states = s.store.list_account_states().await?;
    let live = s.pool_status();
    Ok(accounts
        .into_iter()
        .map(|account| {
            let state = states
                .iter()
                .find(|st| st.account_id == account.id)
                .cloned();
            let live = live.iter().find(|l| l.account_id == account.id.to_string());
            AccountView {
                state,
                in_flight: live.map_or(0, |l| l.in_flight),
                resting_for_seconds: live.and_then(|l| l.resting_for).map(|d| d.as_secs()),
                leases: live.map_or(0, |l| l.leases),
                account,
            }
        })
        .collect())
}

async fn list_accounts_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": list_accounts(&s).await? })))
}

/// Adds a Kiro account (refresh token, credentials JSON or kiro-cli database) or a Cursor
/// account (session token, state.vscdb, browser cookie).
pub async fn create_account(
    s: &Tenancy,
    caller: &Caller,
    source: AccountSource,
) -> Result<AccountRow, ApiError> {
    let account = if is_cursor(&source) {
        new_cursor_account(source, &s.cursor).await?
    } else {
        new_account(source).await?
    };
    let row = s.store.create_account(account).await?;
    s.pool_changed().await;
    s.audit(
        caller,
        "create",
        "account",
        row.id,
        json!({ "name": row.name, "kind": row.kind }),
    )
    .await;
    Ok(row)
}

async fn create_account_h(
    State(s): State<AppState>,
    Authed(caller): Admin,
    body: Bytes,
) -> ApiResult {
    let source: AccountSource = parse_body(&body)?;
    let row = create_account(&s, &caller, source).await?;
    Ok(Json(json!({ "account": row })))
}

/// Enables or disables an account.
pub async fn set_account_status(
    s: &Tenancy,
    caller: &Caller,
    id: i64,
    status: AccountStatus,
) -> Result<AccountRow, ApiError> {
    let reason = (status == AccountStatus::Disabled).then(|| "disabled by the admin".to_owned());
    s.store.set_account_status(id, status, reason).await?;
    s.pool_changed().await;
    s.audit(caller, status.as_str(), "account", id, json!({}))
        .await;
    Ok(s.store.get_account(id).await?)
}

async fn enable_account_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let row = set_account_status(&s, &c, parse_id(&id)?, AccountStatus::Active).await?;
    Ok(Json(json!({ "account": row })))
}

async fn disable_account_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let row = set_account_status(&s, &c, parse_id(&id)?, AccountStatus::Disabled).await?;
    Ok(Json(json!({ "account": row })))
}

/// Refreshes an account's access token now.
pub async fn refresh_account(s: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    s.store.get_account(id).await?;
    s.refresh_account(id).await?;
    s.audit(caller, "refresh", "account", id, json!({})).await;
    Ok(())
}

async fn refresh_account_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    refresh_account(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "refreshed": true })))
}

/// Deletes an account.
pub async fn delete_account(s: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    s.store.delete_account(id).await?;
    s.pool_changed().await;
    s.audit(caller, "delete", "account", id, json!({})).await;
    Ok(())
}

async fn delete_account_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    delete_account(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "deleted": true })))
}

// ---------------------------------------------------------------------------------------------
// Users

/// A new platform user (or a user of an agent, created by the admin).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Name.
    pub name: String,
    /// Owning agent.
    #[serde(default)]
    pub agent_id: Option<i64>,
    /// Quota, micro-credits (`None` = unlimited).
    #[serde(default)]
    pub quota_limit: Option<i64>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm_limit: Option<u32>,
}

async fn list_users_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_users(None).await? })))
}

/// Creates a user.
pub async fn create_user(
    s: &Tenancy,
    caller: &Caller,
    input: CreateUser,
) -> Result<UserRow, ApiError> {
    if input.quota_limit.is_some_and(|q| q < 0) {
        return Err(GatewayError::invalid_request("`quota_limit` must not be negative.").into());
    }
    if let Some(agent) = input.agent_id {
        s.store.get_agent(agent).await?;
    }
    let user = s
        .store
        .create_user(NewUser {
            agent_id: input.agent_id,
            name: valid_name("`name`", &input.name)?,
            quota_limit: input.quota_limit,
            rpm_limit: input.rpm_limit,
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

async fn create_user_h(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let user = create_user(&s, &c, parse_body(&body)?).await?;
    Ok(Json(json!({ "user": user })))
}

async fn get_user_h(State(s): State<AppState>, _: Admin, Path(id): Path<String>) -> ApiResult {
    let user = s.store.get_user(parse_id(&id)?).await?;
    Ok(Json(json!({ "user": user })))
}

/// Body of a user update (admin and agent).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// `active` or `disabled`.
    #[serde(default)]
    pub status: Option<String>,
    /// New RPM limit; `null` removes it.
    #[serde(default, with = "double_option")]
    pub rpm_limit: Option<Option<u32>>,
}

impl UpdateUser {
    /// The checked store update.
    pub fn into_update(self) -> Result<UserUpdate, ApiError> {
        if self.name.is_none() && self.status.is_none() && self.rpm_limit.is_none() {
            return Err(GatewayError::invalid_request(
                "Nothing to update: give at least one of `name`, `status`, `rpm_limit`.",
            )
            .into());
        }
        Ok(UserUpdate {
            name: self
                .name
                .as_deref()
                .map(|name| valid_name("`name`", name))
                .transpose()?,
            status: self.status.as_deref().map(Status::parse).transpose()?,
            rpm_limit: self.rpm_limit,
        })
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
}

/// Changes a user (any user: the admin's view).
pub async fn update_user(
    s: &Tenancy,
    caller: &Caller,
    id: i64,
    update: UpdateUser,
) -> Result<UserRow, ApiError> {
    let update = update.into_update()?;
    let user = s.store.update_user(id, update).await?;
    s.reload_keys_and_quota().await?;
    s.audit(caller, "update", "user", id, json!({})).await;
    Ok(user)
}

async fn update_user_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let user = update_user(&s, &c, id, parse_body(&body)?).await?;
    Ok(Json(json!({ "user": user })))
}

/// Deletes a user.
pub async fn delete_user(s: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    s.store.delete_user(id).await?;
    s.reload_keys_and_quota().await?;
    s.audit(caller, "delete", "user", id, json!({})).await;
    Ok(())
}

async fn delete_user_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    delete_user(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "deleted": true })))
}

// ---------------------------------------------------------------------------------------------
// Keys

#[derive(Deserialize, Default)]
struct KeyListQuery {
    user_id: Option<String>,
    agent_id: Option<String>,
}

async fn list_keys_h(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
    let q: KeyListQuery = parse_query(q.as_deref())?;
    let owner = match (q.user_id.as_deref(), q.agent_id.as_deref()) {
        (Some(u), _) => KeyOwner::User(parse_id(u)?),
        (None, Some(a)) => KeyOwner::Agent(parse_id(a)?),
        (None, None) => KeyOwner::All,
    };
    Ok(Json(json!({ "data": s.store.list_api_keys(owner).await? })))
}

// No `deny_unknown_fields` here: the rest goes to `KeyOptions`, which has it.
#[derive(Deserialize)]
struct CreateKeyBody {
    kind: String,
    #[serde(default)]
    user_id: Option<i64>,
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(flatten)]
    options: serde_json::Map<String, serde_json::Value>,
}

/// Creates a key of any kind: an inference key needs a user, an agent key an agent.
pub async fn create_admin_key(
    s: &Tenancy,
    caller: &Caller,
    kind: KeyKind,
    user_id: Option<i64>,
    agent_id: Option<i64>,
    options: KeyOptions,
) -> Result<CreatedKey, ApiError> {
    match kind {
        KeyKind::Inference if user_id.is_none() => {
            return Err(GatewayError::invalid_request("An inference key needs `user_id`.").into())
        }
        KeyKind::Agent if agent_id.is_none() => {
            return Err(GatewayError::invalid_request("An agent key needs `agent_id`.").into())
        }
        _ => {}
    }
    if let Some(user) = user_id {
        s.store.get_user(user).await?;
    }
    if let Some(agent) = agent_id {
        s.store.get_agent(agent).await?;
    }
    create_key(s, caller, kind, user_id, agent_id, options).await
}

async fn create_admin_key_h(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: CreateKeyBody = parse_body(&body)?;
    let kind = KeyKind::parse(&input.kind)?;
    let options: KeyOptions = serde_json::from_value(serde_json::Value::Object(input.options))
        .map_err(|e| {
            ApiError(GatewayError::invalid_request(format!(
                "Invalid request body: {e}."
            )))
        })?;
    let created = create_admin_key(&s, &c, kind, input.user_id, input.agent_id, options).await?;
    Ok(Json(created.to_json()))
}

/// Revokes any key; the console sessions opened with it end too.
pub async fn revoke_key(s: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    s.store.get_api_key(id).await?;
    super::revoke_key_row(s, caller, id).await
}

async fn revoke_key_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    revoke_key(&s, &c, parse_id(&id)?).await?;
    Ok(Json(json!({ "revoked": true })))
}

// ---------------------------------------------------------------------------------------------
// Quotas

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaChange {
    subject: String,
    id: i64,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    amount: Option<i64>,
}

/// Sets the quota limit of a user, key or agent (`None` = unlimited).
pub async fn set_quota(
    s: &Tenancy,
    caller: &Caller,
    subject: &str,
    id: i64,
    limit: Option<i64>,
) -> Result<(), ApiError> {
    if limit.is_some_and(|l| l < 0) {
        return Err(GatewayError::invalid_request("`limit` must not be negative.").into());
    }
    let quota = quota_subject(subject, id)?;
    s.store.set_quota(quota, limit).await?;
    s.reload_keys_and_quota().await?;
    s.audit(caller, "set_quota", subject, id, json!({ "limit": limit }))
        .await;
    Ok(())
}

async fn set_quota_h(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: QuotaChange = parse_body(&body)?;
    set_quota(&s, &c, &input.subject, input.id, input.limit).await?;
    Ok(Json(json!({ "ok": true })))
}

/// Adds to (or, negative, takes from) the quota of a user, key or agent.
pub async fn add_quota(
    s: &Tenancy,
    caller: &Caller,
    subject: &str,
    id: i64,
    amount: i64,
) -> Result<(), ApiError> {
    let quota = quota_subject(subject, id)?;
    s.store.add_quota(quota, amount).await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        caller,
        "add_quota",
        subject,
        id,
        json!({ "amount": amount }),
    )
    .await;
    Ok(())
}

async fn add_quota_h(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: QuotaChange = parse_body(&body)?;
    let Some(amount) = input.amount else {
        return Err(GatewayError::invalid_request("`amount` is required.").into());
    };
    add_quota(&s, &c, &input.subject, input.id, amount).await?;
    Ok(Json(json!({ "ok": true })))
}

// ---------------------------------------------------------------------------------------------
// Aliases, combos, prices

async fn list_aliases_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_aliases().await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    model: String,
}

/// Points an alias at a model; answers the checked (alias, model).
pub async fn set_alias(
    s: &Tenancy,
    caller: &Caller,
    name: &str,
    model: &str,
) -> Result<(String, String), ApiError> {
    let name = valid_model("The alias name in the path", name)?;
    let model = valid_model("`model`", model)?;
    s.store.set_alias(&name, &model).await?;
    s.models_changed().await?;
    s.audit(caller, "set", "alias", &name, json!({ "model": model }))
        .await;
    Ok((name, model))
}

async fn set_alias_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: AliasBody = parse_body(&body)?;
    let (name, model) = set_alias(&s, &c, &name, &input.model).await?;
    Ok(Json(json!({ "alias": name, "model": model })))
}

/// Removes an alias.
pub async fn delete_alias(s: &Tenancy, caller: &Caller, name: &str) -> Result<(), ApiError> {
    s.store.delete_alias(name).await?;
    s.models_changed().await?;
    s.audit(caller, "delete", "alias", name, json!({})).await;
    Ok(())
}

async fn delete_alias_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
) -> ApiResult {
    delete_alias(&s, &c, &name).await?;
    Ok(Json(json!({ "deleted": true })))
}

async fn list_combos_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_combos().await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComboBody {
    members: Vec<String>,
}

/// Sets a combo's members, in order; answers the checked (name, members).
pub async fn set_combo(
    s: &Tenancy,
    caller: &Caller,
    name: &str,
    members: &[String],
) -> Result<(String, Vec<String>), ApiError> {
    let name = valid_model("The combo name in the path", name)?;
    if members.is_empty() {
        return Err(
            GatewayError::invalid_request("`members` must name at least one model.").into(),
        );
    }
    let members = members
        .iter()
        .map(|m| valid_model("`members`", m))
        .collect::<Result<Vec<_>, _>>()?;
    s.store.set_combo(&name, members.clone()).await?;
    s.models_changed().await?;
    s.audit(caller, "set", "combo", &name, json!({ "members": members }))
        .await;
    Ok((name, members))
}

async fn set_combo_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: ComboBody = parse_body(&body)?;
    let (name, members) = set_combo(&s, &c, &name, &input.members).await?;
    Ok(Json(json!({ "combo": name, "members": members })))
}

/// Removes a combo.
pub async fn delete_combo(s: &Tenancy, caller: &Caller, name: &str) -> Result<(), ApiError> {
    s.store.delete_combo(name).await?;
    s.models_changed().await?;
    s.audit(caller, "delete", "combo", name, json!({})).await;
    Ok(())
}

async fn delete_combo_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
) -> ApiResult {
    delete_combo(&s, &c, &name).await?;
    Ok(Json(json!({ "deleted": true })))
}

/// Every priced model, by model id.
pub fn list_prices(s: &Tenancy) -> Vec<(String, Price)> {
    s.prices.all().into_iter().collect()
}

async fn list_prices_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    let data: Vec<_> = list_prices(&s)
        .into_iter()
        .map(|(model, price)| json!({ "model_id": model, "price": price }))
        .collect();
    Ok(Json(json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    input_per_m: i64,
    output_per_m: i64,
    #[serde(default)]
    cache_read_per_m: i64,
    #[serde(default)]
    cache_write_per_m: i64,
}

/// Sets a model's price; answers the checked model id.
pub async fn set_price(
    s: &Tenancy,
    caller: &Caller,
    model: &str,
    price: Price,
) -> Result<String, ApiError> {
    if [
        price.input_per_m,
        price.output_per_m,
        price.cache_read_per_m,
        price.cache_write_per_m,
    ]
    .iter()
    .any(|p| *p < 0)
    {
        return Err(GatewayError::invalid_request("Prices must not be negative.").into());
    }
    let model = valid_model("The model name in the path", model)?;
    s.store.set_price(&model, price).await?;
    s.prices.set(&model, price);
    s.audit(caller, "set", "price", &model, json!({ "price": price }))
        .await;
    Ok(model)
}

async fn set_price_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(model): Path<String>,
    body: Bytes,
) -> ApiResult {
    let b: PriceBody = parse_body(&body)?;
    let price = Price {
        input_per_m: b.input_per_m,
        output_per_m: b.output_per_m,
        cache_read_per_m: b.cache_read_per_m,
        cache_write_per_m: b.cache_write_per_m,
    };
    let model = set_price(&s, &c, &model, price).await?;
    Ok(Json(json!({ "model_id": model, "price": price })))
}

// ---------------------------------------------------------------------------------------------
// Agents

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    name: String,
}

async fn list_agents_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_agents().await? })))
}

/// Creates an agent (a reseller) with a zero balance.
pub async fn create_agent(s: &Tenancy, caller: &Caller, name: &str) -> Result<AgentRow, ApiError> {
    let agent = s.store.create_agent(&valid_name("`name`", name)?).await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        caller,
        "create",
        "agent",
        agent.id,
        json!({ "name": agent.name }),
    )
    .await;
    Ok(agent)
}

async fn create_agent_h(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: CreateAgent = parse_body(&body)?;
    let agent = create_agent(&s, &c, &input.name).await?;
    Ok(Json(json!({ "agent": agent })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: i64,
}

/// Adds `amount` micro-credits to an agent's balance.
pub async fn top_up_agent(
    s: &Tenancy,
    caller: &Caller,
    id: i64,
    amount: i64,
) -> Result<AgentRow, ApiError> {
    if amount <= 0 {
        return Err(GatewayError::invalid_request("`amount` must be positive.").into());
    }
    s.store.get_agent(id).await?;
    s.store
        .add_quota(kiro_layers::store::QuotaSubject::Agent(id), amount)
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(caller, "top_up", "agent", id, json!({ "amount": amount }))
        .await;
    Ok(s.store.get_agent(id).await?)
}

async fn top_up_agent_h(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let input: TopUp = parse_body(&body)?;
    let agent = top_up_agent(&s, &c, id, input.amount).await?;
    Ok(Json(json!({ "agent": agent })))
}

async fn list_transfers_h(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_transfers(None).await? })))
}

// ---------------------------------------------------------------------------------------------
// Usage and audit

/// The groupings the admin may ask for.
pub const USAGE_GROUPS: &[UsageGroup] = &[
    UsageGroup::User,
    UsageGroup::Key,
    UsageGroup::Model,
    UsageGroup::Account,
    UsageGroup::Day,
    UsageGroup::Agent,
    UsageGroup::Hour,
    UsageGroup::Kind,
];

/// Usage totals over everything `filter` selects, grouped as asked (aggregated by the store).
pub async fn usage(
    s: &Tenancy,
    group_by: Option<&str>,
    filter: UsageFilter,
) -> Result<(UsageGroup, Vec<UsageAggregate>), ApiError> {
    let group = usage_group(group_by, USAGE_GROUPS)?;
    Ok((group, s.store.query_usage(filter, group).await?))
}

async fn usage_h(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    let (group, data) = usage(&s, q.group_by.as_deref(), usage_filter(&q)?).await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    limit: Option<String>,
}

/// The newest `limit` audit entries (1 to 1000).
pub async fn audit(s: &Tenancy, limit: u32) -> Result<Vec<AuditRow>, ApiError> {
    if !(1..=1000).contains(&limit) {
        return Err(GatewayError::invalid_request("`limit` must be 1 to 1000.").into());
    }
    Ok(s.store.list_audit(limit).await?)
}

async fn audit_h(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
    let q: AuditQuery = parse_query(q.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l.parse::<u32>().unwrap_or(0),
    };
    Ok(Json(json!({ "data": audit(&s, limit).await? })))
}
