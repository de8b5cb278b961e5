//! The management APIs (`/admin`, `/user`, `/agent`): JSON in, JSON out, errors as
//! `{"error":{"message","type",...}}` with 400/401/403/404/409. Bodies and path ids are parsed
//! by hand so a wrong type or a missing field is a 400 with a message, never axum's plain text.

pub mod admin;
pub mod agent;
pub mod user;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use kiro_layers::auth::presented_key;
use kiro_layers::chat::Dialect;
use kiro_layers::store::{ApiKeyRow, KeyKind, NewApiKey, StoreError, Timestamp, UsageGroup};
use kiro_layers::GatewayError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::Caller;
use super::state::Tenancy;

/// An API error, answered as an OpenAI-shaped error body.
#[derive(Debug)]
pub struct ApiError(pub GatewayError);

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        ApiError(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response = self.0.to_response(Dialect::OpenAi);
        response.map(axum::body::Body::from)
    }
}

/// Result of a handler.
pub type ApiResult = Result<axum::Json<Value>, ApiError>;

/// Shared state of the API routers.
pub type AppState = Arc<Tenancy>;

/// Parses a JSON body into `T`, with a 400 naming the problem. The body must be a JSON object:
/// serde would otherwise read an array as a struct's fields in order (`[1,2]` as
/// `{"input_per_m":1,"output_per_m":2}`).
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| {
        ApiError(GatewayError::invalid_request(format!(
            "Invalid request body: {e}."
        )))
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            return Err(
                GatewayError::invalid_request("The request body must be a JSON object.").into(),
            )
        }
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
            return Err(
                GatewayError::invalid_request("The request body must be a JSON object.").into(),
            )
        }
        Err(e) => return Err(invalid(e)),
    };
    serde_json::from_value(value).map_err(invalid)
}

/// Parses a path id; anything but a positive integer is a 400.
pub fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError(GatewayError::invalid_request(format!(
                "`{}` is not a valid id: ids are positive integers.",
                text.chars().take(40).collect::<String>()
            )))
        })
}

/// Extracts an authenticated caller of one API.
pub struct Authed<const API: u8>(pub Caller);

/// `/admin`.
pub const ADMIN: u8 = 0;
/// `/agent`.
pub const AGENT: u8 = 1;
/// `/user`.
pub const USER: u8 = 2;

impl<const API: u8> FromRequestParts<AppState> for Authed<API> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request = http::Request::from_parts(parts.clone(), ());
        let Some(key) = presented_key(&request) else {
            return Err(GatewayError::unauthenticated(
                "Missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            )
            .into());
        };
        let caller = match API {
            ADMIN => state.keys.admin(key),
            AGENT => state.keys.agent(key),
            _ => state.keys.user(key),
        }?;
        Ok(Authed(caller))
    }
}

/// Options of a new key, shared by the three APIs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOptions {
    /// Label.
    #[serde(default)]
    pub name: Option<String>,
    /// RFC 3339 expiry.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Model allow-list.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm_limit: Option<u32>,
    /// Requests at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Quota of its own, micro-credits.
    #[serde(default)]
    pub quota_limit: Option<i64>,
}

/// A key just created: the secret (shown this once, never stored) and the stored row.
pub struct CreatedKey {
    /// The whole key.
    pub secret: String,
    /// The stored row.
    pub row: ApiKeyRow,
}

impl CreatedKey {
    /// The JSON answer of the create-key endpoints.
    pub fn to_json(&self) -> Value {
        json!({ "key": self.secret, "api_key": self.row })
    }
}

/// Creates a key and answers with the secret (shown this once) and the stored row.
pub async fn create_key(
    state: &Tenancy,
    caller: &Caller,
    kind: KeyKind,
    user_id: Option<i64>,
    agent_id: Option<i64>,
    options: KeyOptions,
) -> Result<CreatedKey, ApiError> {
    if options.quota_limit.is_some_and(|q| q < 0) {
        return Err(GatewayError::invalid_request("`quota_limit` must not be negative.").into());
    }
    let name = match &options.name {
        Some(name) => valid_name("`name`", name)?,
        None => format!("{} key", kind.as_str()),
    };
    let allowed_models = options
        .allowed_models
        .iter()
        .map(|m| valid_model("`allowed_models`", m))
        .collect::<Result<Vec<_>, _>>()?;
    let minted = state.mint_key();
    let row = state
        .store
        .create_api_key(NewApiKey {
            public_id: minted.public_id.clone(),
            kind,
            user_id,
            agent_id,
            name,
            secret_hash: minted.hash.clone(),
            suffix: minted.suffix.clone(),
            expires_at: options.expires_at,
            allowed_models,
            rpm_limit: options.rpm_limit,
            max_concurrency: options.max_concurrency,
            quota_limit: options.quota_limit,
        })
        .await?;
    state.reload_keys_and_quota().await?;
    state
        .audit(
            caller,
            "create",
            "api_key",
            row.id,
            json!({ "kind": kind.as_str(), "user_id": user_id, "agent_id": agent_id }),
        )
        .await;
    Ok(CreatedKey {
        secret: minted.secret,
        row,
    })
}

/// Revokes a key the caller may revoke (checked by the caller's API): the key stops working
/// at once (cache reload), and the web console sessions opened with it end.
pub async fn revoke_key_row(state: &Tenancy, caller: &Caller, id: i64) -> Result<(), ApiError> {
    state.store.revoke_api_key(id).await?;
    state.reload_keys_and_quota().await?;
    if let Err(error) = state.store.delete_console_sessions_of_key(id).await {
        // The console also checks the key on every request, so a left-over row opens nothing.
        tracing::warn!("could not end the console sessions of key {id}: {error}");
    }
    state
        .audit(caller, "revoke", "api_key", id, json!({}))
        .await;
    Ok(())
}

/// The usage grouping named by a query string value.
pub fn usage_group(text: Option<&str>, allowed: &[UsageGroup]) -> Result<UsageGroup, ApiError> {
    let group = UsageGroup::parse(text.unwrap_or("day"))?;
    if allowed.contains(&group) {
        Ok(group)
    } else {
        Err(GatewayError::invalid_request(format!(
            "`group_by` must be one of: {}.",
            allowed
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into())
    }
}

/// Query string of the usage endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    /// Grouping.
    pub group_by: Option<String>,
    /// Only this user.
    pub user_id: Option<String>,
    /// Only this key.
    pub key_id: Option<String>,
    /// Only this agent.
    pub agent_id: Option<String>,
    /// From (RFC 3339).
    pub from: Option<String>,
    /// To (RFC 3339).
    pub to: Option<String>,
}

/// Parses an optional id filter.
pub fn optional_id(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(parse_id).transpose()
}

/// Parses an optional RFC 3339 time.
pub fn optional_time(text: Option<&str>, field: &str) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&chrono::Utc))
            .map_err(|_| {
                ApiError(GatewayError::invalid_request(format!(
                    "`{field}` must be an RFC 3339 time such as 2026-01-31T00:00:00Z."
                )))
            })
    })
    .transpose()
}

/// Parses the query string into `T` with a 400 on bad values.
pub fn parse_query<T: DeserializeOwned + Default>(query: Option<&str>) -> Result<T, ApiError> {
    match query {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded_from(q),
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs: serde_json::Map<String, Value> = url_pairs(query)
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    serde_json::from_value(Value::Object(pairs)).map_err(|e| {
        ApiError(GatewayError::invalid_request(format!(
            "Invalid query string: {e}."
        )))
    })
}

pub(crate) fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match text.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                    Some(Ok(b)) => {
                        out.push(b);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the usage filter and grouping of a usage query.
pub fn usage_filter(query: &UsageQuery) -> Result<kiro_layers::store::UsageFilter, ApiError> {
    Ok(kiro_layers::store::UsageFilter {
        user_id: optional_id(query.user_id.as_deref())?,
        key_id: optional_id(query.key_id.as_deref())?,
        agent_id: optional_id(query.agent_id.as_deref())?,
        from: optional_time(query.from.as_deref(), "from")?,
        to: optional_time(query.to.as_deref(), "to")?,
    })
}

/// A name (user, agent, key, account): trimmed, then checked against the name rule
/// ([`crate::store::validate::name`]); the 400 starts with `what` (the field) and lists the
/// allowed characters.
pub fn valid_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    crate::store::validate::name(what, name)?;
    Ok(name.to_owned())
}

/// A model name (alias, combo, member, priced or allowed model), checked against the model
/// name rule ([`crate::store::validate::model_name`]).
pub fn valid_model(what: &str, model: &str) -> Result<String, ApiError> {
    let model = model.trim();
    crate::store::validate::model_name(what, model)?;
    Ok(model.to_owned())
}
