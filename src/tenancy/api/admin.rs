//! `/admin/*`: accounts, users, keys, quotas, aliases and combos, prices, agents, usage and the
//! audit log. Authenticated by `ADMIN_API_KEY` or a database admin key. Every mutation is
//! audited (without secrets) and reloads the caches it touches before answering.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use kiro_layers::store::{
    AccountStatus, KeyKind, KeyOwner, NewUser, Price, Status, UsageGroup, UserUpdate,
};
use kiro_layers::GatewayError;
use serde::Deserialize;
use serde_json::json;

use super::{
    create_key, parse_body, parse_id, parse_query, usage_filter, usage_group, valid_model,
    valid_name, ApiError, ApiResult, AppState, Authed, KeyOptions, UsageQuery, ADMIN,
};
use crate::tenancy::accounts::{new_account, AccountSource};
use crate::tenancy::state::quota_subject;

type Admin = Authed<ADMIN>;

/// The `/admin` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/accounts", get(list_accounts).post(create_account))
        .route(
            "/admin/accounts/{id}",
            axum::routing::delete(delete_account),
        )
        .route("/admin/accounts/{id}/enable", post(enable_account))
        .route("/admin/accounts/{id}/disable", post(disable_account))
        .route("/admin/accounts/{id}/refresh", post(refresh_account))
        .route("/admin/users", get(list_users).post(create_user))
        .route(
            "/admin/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/admin/keys", get(list_keys).post(create_admin_key))
        .route("/admin/keys/{id}", axum::routing::delete(revoke_key))
        .route("/admin/quotas/set", post(set_quota))
        .route("/admin/quotas/add", post(add_quota))
        .route("/admin/aliases", get(list_aliases))
        .route("/admin/aliases/{name}", put(set_alias).delete(delete_alias))
        .route("/admin/combos", get(list_combos))
        .route("/admin/combos/{name}", put(set_combo).delete(delete_combo))
        .route("/admin/prices", get(list_prices))
        .route("/admin/prices/{model}", put(set_price))
        .route("/admin/agents", get(list_agents).post(create_agent))
        .route("/admin/agents/{id}/topup", post(top_up_agent))
        .route("/admin/transfers", get(list_transfers))
        .route("/admin/usage", get(usage))
        .route("/admin/audit", get(audit))
}

async fn list_accounts(State(s): State<AppState>, _: Admin) -> ApiResult {
    let accounts = s.store.list_accounts().await?;
    let states = s.store.list_account_states().await?;
    let live = s.pool_status();
    let list: Vec<_> = accounts
        .iter()
        .map(|a| {
            let state = states.iter().find(|st| st.account_id == a.id);
            let live = live.iter().find(|l| l.account_id == a.id.to_string());
            json!({
                "account": a,
                "state": state,
                "in_flight": live.map_or(0, |l| l.in_flight),
                "resting_for_seconds": live.and_then(|l| l.resting_for).map(|d| d.as_secs()),
                "leases": live.map_or(0, |l| l.leases),
            })
        })
        .collect();
    Ok(Json(json!({ "data": list })))
}

async fn create_account(
    State(s): State<AppState>,
    Authed(caller): Admin,
    body: Bytes,
) -> ApiResult {
    let source: AccountSource = parse_body(&body)?;
    let account = new_account(source).await?;
    let row = s.store.create_account(account).await?;
    s.pool_changed().await;
    s.audit(
        &caller,
        "create",
        "account",
        row.id,
        json!({ "name": row.name }),
    )
    .await;
    Ok(Json(json!({ "account": row })))
}

async fn set_account_status(
    s: &AppState,
    caller: &crate::tenancy::keys::Caller,
    id: &str,
    status: AccountStatus,
) -> ApiResult {
    let id = parse_id(id)?;
    let reason = (status == AccountStatus::Disabled).then(|| "disabled by the admin".to_owned());
    s.store.set_account_status(id, status, reason).await?;
    s.pool_changed().await;
    s.audit(caller, status.as_str(), "account", id, json!({}))
        .await;
    Ok(Json(json!({ "account": s.store.get_account(id).await? })))
}

async fn enable_account(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    set_account_status(&s, &c, &id, AccountStatus::Active).await
}

async fn disable_account(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    set_account_status(&s, &c, &id, AccountStatus::Disabled).await
}

async fn refresh_account(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    s.store.get_account(id).await?;
    s.refresh_account(id).await?;
    s.audit(&c, "refresh", "account", id, json!({})).await;
    Ok(Json(json!({ "refreshed": true })))
}

async fn delete_account(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    s.store.delete_account(id).await?;
    s.pool_changed().await;
    s.audit(&c, "delete", "account", id, json!({})).await;
    Ok(Json(json!({ "deleted": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(default)]
    quota_limit: Option<i64>,
    #[serde(default)]
    rpm_limit: Option<u32>,
}

async fn list_users(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_users(None).await? })))
}

async fn create_user(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: CreateUser = parse_body(&body)?;
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
    s.audit(&c, "create", "user", user.id, json!({ "name": user.name }))
        .await;
    Ok(Json(json!({ "user": user })))
}

async fn get_user(State(s): State<AppState>, _: Admin, Path(id): Path<String>) -> ApiResult {
    let user = s.store.get_user(parse_id(&id)?).await?;
    Ok(Json(json!({ "user": user })))
}

/// Body of a user update (admin and agent).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, with = "double_option")]
    rpm_limit: Option<Option<u32>>,
}

impl UpdateUser {
    pub(crate) fn into_update(self) -> Result<UserUpdate, ApiError> {
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

async fn update_user(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let update = parse_body::<UpdateUser>(&body)?.into_update()?;
    let user = s.store.update_user(id, update).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "update", "user", id, json!({})).await;
    Ok(Json(json!({ "user": user })))
}

async fn delete_user(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    s.store.delete_user(id).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "delete", "user", id, json!({})).await;
    Ok(Json(json!({ "deleted": true })))
}

#[derive(Deserialize, Default)]
struct KeyListQuery {
    user_id: Option<String>,
    agent_id: Option<String>,
}

async fn list_keys(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
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
struct CreateKey {
    kind: String,
    #[serde(default)]
    user_id: Option<i64>,
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(flatten)]
    options: serde_json::Map<String, serde_json::Value>,
}

async fn create_admin_key(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: CreateKey = parse_body(&body)?;
    let kind = KeyKind::parse(&input.kind)?;
    let options: KeyOptions = serde_json::from_value(serde_json::Value::Object(input.options))
        .map_err(|e| {
            ApiError(GatewayError::invalid_request(format!(
                "Invalid request body: {e}."
            )))
        })?;
    match kind {
        KeyKind::Inference if input.user_id.is_none() => {
            return Err(GatewayError::invalid_request("An inference key needs `user_id`.").into())
        }
        KeyKind::Agent if input.agent_id.is_none() => {
            return Err(GatewayError::invalid_request("An agent key needs `agent_id`.").into())
        }
        _ => {}
    }
    if let Some(user) = input.user_id {
        s.store.get_user(user).await?;
    }
    if let Some(agent) = input.agent_id {
        s.store.get_agent(agent).await?;
    }
    create_key(&s, &c, kind, input.user_id, input.agent_id, options).await
}

async fn revoke_key(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    s.store.get_api_key(id).await?;
    s.store.revoke_api_key(id).await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "revoke", "api_key", id, json!({})).await;
    Ok(Json(json!({ "revoked": true })))
}

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

async fn set_quota(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: QuotaChange = parse_body(&body)?;
    if input.limit.is_some_and(|l| l < 0) {
        return Err(GatewayError::invalid_request("`limit` must not be negative.").into());
    }
    let subject = quota_subject(&input.subject, input.id)?;
    s.store.set_quota(subject, input.limit).await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        &c,
        "set_quota",
        &input.subject,
        input.id,
        json!({ "limit": input.limit }),
    )
    .await;
    Ok(Json(json!({ "ok": true })))
}

async fn add_quota(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: QuotaChange = parse_body(&body)?;
    let Some(amount) = input.amount else {
        return Err(GatewayError::invalid_request("`amount` is required.").into());
    };
    let subject = quota_subject(&input.subject, input.id)?;
    s.store.add_quota(subject, amount).await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        &c,
        "add_quota",
        &input.subject,
        input.id,
        json!({ "amount": amount }),
    )
    .await;
    Ok(Json(json!({ "ok": true })))
}

async fn list_aliases(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_aliases().await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    model: String,
}

async fn set_alias(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: AliasBody = parse_body(&body)?;
    let name = valid_model("The alias name in the path", &name)?;
    let model = valid_model("`model`", &input.model)?;
    s.store.set_alias(&name, &model).await?;
    s.models_changed().await?;
    s.audit(&c, "set", "alias", &name, json!({ "model": model }))
        .await;
    Ok(Json(json!({ "alias": name, "model": model })))
}

async fn delete_alias(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
) -> ApiResult {
    s.store.delete_alias(&name).await?;
    s.models_changed().await?;
    s.audit(&c, "delete", "alias", &name, json!({})).await;
    Ok(Json(json!({ "deleted": true })))
}

async fn list_combos(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_combos().await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComboBody {
    members: Vec<String>,
}

async fn set_combo(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: ComboBody = parse_body(&body)?;
    let name = valid_model("The combo name in the path", &name)?;
    if input.members.is_empty() {
        return Err(
            GatewayError::invalid_request("`members` must name at least one model.").into(),
        );
    }
    let members = input
        .members
        .iter()
        .map(|m| valid_model("`members`", m))
        .collect::<Result<Vec<_>, _>>()?;
    s.store.set_combo(&name, members.clone()).await?;
    s.models_changed().await?;
    s.audit(&c, "set", "combo", &name, json!({ "members": members }))
        .await;
    Ok(Json(json!({ "combo": name, "members": members })))
}

async fn delete_combo(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(name): Path<String>,
) -> ApiResult {
    s.store.delete_combo(&name).await?;
    s.models_changed().await?;
    s.audit(&c, "delete", "combo", &name, json!({})).await;
    Ok(Json(json!({ "deleted": true })))
}

async fn list_prices(State(s): State<AppState>, _: Admin) -> ApiResult {
    let data: Vec<_> = s
        .prices
        .all()
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

async fn set_price(
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
    if [
        b.input_per_m,
        b.output_per_m,
        b.cache_read_per_m,
        b.cache_write_per_m,
    ]
    .iter()
    .any(|p| *p < 0)
    {
        return Err(GatewayError::invalid_request("Prices must not be negative.").into());
    }
    let model = valid_model("The model name in the path", &model)?;
    s.store.set_price(&model, price).await?;
    s.prices.set(&model, price);
    s.audit(&c, "set", "price", &model, json!({ "price": price }))
        .await;
    Ok(Json(json!({ "model_id": model, "price": price })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    name: String,
}

async fn list_agents(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_agents().await? })))
}

async fn create_agent(State(s): State<AppState>, Authed(c): Admin, body: Bytes) -> ApiResult {
    let input: CreateAgent = parse_body(&body)?;
    let agent = s
        .store
        .create_agent(&valid_name("`name`", &input.name)?)
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(
        &c,
        "create",
        "agent",
        agent.id,
        json!({ "name": agent.name }),
    )
    .await;
    Ok(Json(json!({ "agent": agent })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: i64,
}

async fn top_up_agent(
    State(s): State<AppState>,
    Authed(c): Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let input: TopUp = parse_body(&body)?;
    if input.amount <= 0 {
        return Err(GatewayError::invalid_request("`amount` must be positive.").into());
    }
    s.store.get_agent(id).await?;
    s.store
        .add_quota(kiro_layers::store::QuotaSubject::Agent(id), input.amount)
        .await?;
    s.reload_keys_and_quota().await?;
    s.audit(&c, "top_up", "agent", id, json!({ "amount": input.amount }))
        .await;
    Ok(Json(json!({ "agent": s.store.get_agent(id).await? })))
}

async fn list_transfers(State(s): State<AppState>, _: Admin) -> ApiResult {
    Ok(Json(json!({ "data": s.store.list_transfers(None).await? })))
}

async fn usage(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    let group = usage_group(
        q.group_by.as_deref(),
        &[
            UsageGroup::User,
            UsageGroup::Key,
            UsageGroup::Model,
            UsageGroup::Account,
            UsageGroup::Day,
        ],
    )?;
    let data = s.store.query_usage(usage_filter(&q)?, group).await?;
    Ok(Json(json!({ "group_by": group.as_str(), "data": data })))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    limit: Option<String>,
}

async fn audit(State(s): State<AppState>, _: Admin, RawQuery(q): RawQuery) -> ApiResult {
    let q: AuditQuery = parse_query(q.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError(GatewayError::invalid_request("`limit` must be 1 to 1000.")))?,
    };
    Ok(Json(json!({ "data": s.store.list_audit(limit).await? })))
}
