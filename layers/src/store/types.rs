//! The rows and inputs of [`Store`](super::Store). Money and quota are `i64` micro-credits
//! (1 credit = 1 000 000); timestamps are UTC. Rows that hold secrets redact them in `Debug`
//! and never serialise them.

use std::time::Duration;

use serde::Serialize;

use super::kinds::*;
use crate::traits::UsageStatus;

/// A UTC timestamp.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// One credit in micro-credits.
pub const MICRO_PER_CREDIT: i64 = 1_000_000;

/// A Kiro upstream account.
#[derive(Clone, PartialEq, Serialize)]
pub struct AccountRow {
    /// Id.
    pub id: i64,
    /// Unique display name.
    pub name: String,
    /// The upstream the account belongs to (`kiro`, `cursor`).
    pub kind: crate::traits::AccountKind,
    /// Login kind (Kiro's refresh flow; `desktop` for a Cursor account).
    pub auth_kind: AuthKind,
    /// Refresh token, decrypted (encrypted at rest). Never serialised.
    #[serde(skip_serializing)]
    pub refresh_token: String,
    /// The current session token of a Cursor account, decrypted (encrypted at rest). Never
    /// serialised.
    #[serde(skip_serializing)]
    pub access_token: Option<String>,
    /// The stable machine id a Cursor account's checksum carries (64 hex).
    pub machine_id: Option<String>,
    /// The stable `x-client-key` of a Cursor account (64 hex).
    pub client_key: Option<String>,
    /// OIDC client id.
    pub client_id: Option<String>,
    /// OIDC client secret, decrypted (encrypted at rest). Never serialised.
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    /// `profileArn`, when known.
    pub profile_arn: Option<String>,
    /// Region of the login endpoints.
    pub sso_region: String,
    /// Region of the Kiro API.
    pub api_region: String,
    /// Active or disabled.
    pub status: AccountStatus,
    /// Why it was disabled (shown to the admin).
    pub disabled_reason: Option<String>,
    /// Per-account concurrency cap.
    pub max_concurrency: Option<u32>,
    /// Bumped by every refresh-token write (optimistic concurrency).
    pub version: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("auth_kind", &self.auth_kind)
            .field("refresh_token", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("status", &self.status)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Input of [`Store::create_account`](super::Store::create_account).
#[derive(Clone, PartialEq)]
pub struct NewAccount {
    /// Unique display name.
    pub name: String,
    /// The upstream the account belongs to.
    pub kind: crate::traits::AccountKind,
    /// Login kind.
    pub auth_kind: AuthKind,
    /// Refresh token (plaintext; encrypted by the backend).
    pub refresh_token: String,
    /// Cursor session token (plaintext; encrypted by the backend).
    pub access_token: Option<String>,
    /// Cursor machine id (64 hex).
    pub machine_id: Option<String>,
    /// Cursor client key (64 hex).
    pub client_key: Option<String>,
    /// OIDC client id.
    pub client_id: Option<String>,
    /// OIDC client secret (plaintext; encrypted by the backend).
    pub client_secret: Option<String>,
    /// `profileArn`.
    pub profile_arn: Option<String>,
    /// Login region.
    pub sso_region: String,
    /// API region.
    pub api_region: String,
    /// Concurrency cap.
    pub max_concurrency: Option<u32>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("auth_kind", &self.auth_kind)
            .finish_non_exhaustive()
    }
}

/// Runtime state of an account shared by every gateway process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountState {
    /// The account.
    pub account_id: i64,
    /// Not used before this time (429 cooldown, 402 until reset, open breaker).
    pub rest_until: Option<Timestamp>,
    /// The rest is a 429 cooldown.
    pub throttled: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Breaker position.
    pub breaker: BreakerState,
}

impl AccountState {
    /// The state of an account nothing has happened to.
    pub fn fresh(account_id: i64) -> Self {
        AccountState {
            account_id,
            rest_until: None,
            throttled: false,
            consecutive_failures: 0,
            breaker: BreakerState::Closed,
        }
    }
}

/// A reseller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Active or disabled.
    pub status: Status,
    /// Balance in micro-credits; never negative after a transfer.
    pub balance: i64,
    /// Created.
    pub created_at: Timestamp,
}

/// A user (owner of inference keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Owning agent; `None` for platform users.
    pub agent_id: Option<i64>,
    /// Name, unique among users that are not deleted.
    pub name: String,
    /// Active or disabled.
    pub status: Status,
    /// Quota in micro-credits; `None` = unlimited.
    pub quota_limit: Option<i64>,
    /// Charged so far, micro-credits.
    pub quota_used: i64,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
    /// Created.
    pub created_at: Timestamp,
}

/// Input of [`Store::create_user`](super::Store::create_user).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewUser {
    /// Owning agent.
    pub agent_id: Option<i64>,
    /// Name.
    pub name: String,
    /// Quota, micro-credits.
    pub quota_limit: Option<i64>,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
}

/// Changes for [`Store::update_user`](super::Store::update_user); `None` leaves a field alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserUpdate {
    /// New name.
    pub name: Option<String>,
    /// New status.
    pub status: Option<Status>,
    /// New RPM limit (`Some(None)` removes it).
    pub rpm_limit: Option<Option<u32>>,
}

/// An API key (the secret itself is never stored).
#[derive(Clone, PartialEq, Serialize)]
pub struct ApiKeyRow {
    /// Id.
    pub id: i64,
    /// 12-character public part of the key, unique; used for lookup.
    pub public_id: String,
    /// What it may be used for.
    pub kind: KeyKind,
    /// Owning user.
    pub user_id: Option<i64>,
    /// Owning agent (for a user's key: the user's agent).
    pub agent_id: Option<i64>,
    /// Label.
    pub name: String,
    /// HMAC-SHA256 of the full key with the server secret. Never serialised.
    #[serde(skip_serializing)]
    pub secret_hash: Vec<u8>,
    /// Last 4 characters of the key, for display.
    pub suffix: String,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Stops working after this time.
    pub expires_at: Option<Timestamp>,
    /// Model allow-list; empty = all.
    pub allowed_models: Vec<String>,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
    /// Concurrent requests.
    pub max_concurrency: Option<u32>,
    /// Own quota, micro-credits; `None` = only the user's quota applies.
    pub quota_limit: Option<i64>,
    /// Charged so far.
    pub quota_used: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Latest usage record seen for this key.
    pub last_used_at: Option<Timestamp>,
}

impl std::fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("id", &self.id)
            .field("public_id", &self.public_id)
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("agent_id", &self.agent_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Input of [`Store::create_api_key`](super::Store::create_api_key).
#[derive(Clone, PartialEq)]
pub struct NewApiKey {
    /// 12-character public id (from `generate_api_key`).
    pub public_id: String,
    /// Kind.
    pub kind: KeyKind,
    /// Owning user (its agent becomes the key's agent).
    pub user_id: Option<i64>,
    /// Owning agent (agent keys; or must match the user's agent).
    pub agent_id: Option<i64>,
    /// Label.
    pub name: String,
    /// HMAC-SHA256 of the full key.
    pub secret_hash: Vec<u8>,
    /// Last 4 characters.
    pub suffix: String,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Allow-list; empty = all.
    pub allowed_models: Vec<String>,
    /// RPM.
    pub rpm_limit: Option<u32>,
    /// Concurrency.
    pub max_concurrency: Option<u32>,
    /// Own quota.
    pub quota_limit: Option<i64>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("public_id", &self.public_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Which keys [`Store::list_api_keys`](super::Store::list_api_keys) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// Every key.
    All,
    /// Keys of one user.
    User(i64),
    /// Keys whose agent is this one (the agent's own keys and its users' keys).
    Agent(i64),
}

/// Whose quota [`Store::set_quota`](super::Store::set_quota) / `add_quota` change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSubject {
    /// A user's `quota_limit`.
    User(i64),
    /// A key's own `quota_limit`.
    Key(i64),
    /// An agent's `balance`.
    Agent(i64),
}

/// One charge: `amount` micro-credits added to the key's and user's `quota_used` and taken from
/// the agent's balance (whichever ids are set). May drive a balance negative: usage already
/// happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChargeLine {
    /// Key to charge.
    pub key_id: Option<i64>,
    /// User to charge.
    pub user_id: Option<i64>,
    /// Agent whose balance pays.
    pub agent_id: Option<i64>,
    /// Micro-credits.
    pub amount: i64,
}

/// A recorded quota transfer from an agent to one of its users.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferRow {
    /// Id.
    pub id: i64,
    /// Paying agent.
    pub agent_id: i64,
    /// Receiving user.
    pub user_id: i64,
    /// Micro-credits moved.
    pub amount: i64,
    /// Agent balance after the move.
    pub agent_balance_after: i64,
    /// When.
    pub created_at: Timestamp,
}

/// One upstream attempt as stored: the fields of
/// [`UsageRecord`](crate::traits::UsageRecord) with numeric owner ids and the price charged.
/// Serialized only for the spill file that keeps rows across a database outage at shutdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    /// Request id; with `attempt` the idempotency key.
    pub request_id: String,
    /// 1-based attempt.
    pub attempt: u32,
    /// User.
    pub user_id: Option<i64>,
    /// Agent.
    pub agent_id: Option<i64>,
    /// Key.
    pub key_id: Option<i64>,
    /// Model the client sent.
    pub requested_model: String,
    /// Kiro model id.
    pub resolved_model: String,
    /// Account that served it.
    pub account_id: Option<String>,
    /// Kind of that account (`kiro`, `cursor`); absent in rows spilled by older versions.
    #[serde(default)]
    pub account_kind: Option<String>,
    /// The token counts are estimated (see [`crate::traits::UsageRecord::estimated`]).
    #[serde(default)]
    pub estimated: bool,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache read tokens.
    pub cache_read_tokens: u64,
    /// Cache write tokens.
    pub cache_write_tokens: u64,
    /// Kiro credits.
    pub credits: f64,
    /// Outcome.
    pub status: UsageStatus,
    /// Time to first output.
    pub time_to_first_token: Option<Duration>,
    /// Whole duration.
    pub duration: Duration,
    /// Start.
    pub started_at: Timestamp,
    /// Micro-credits charged for this attempt.
    pub charged: i64,
}

/// Which usage [`Store::query_usage`](super::Store::query_usage) counts; `None` = any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageFilter {
    /// Only this user.
    pub user_id: Option<i64>,
    /// Only this key.
    pub key_id: Option<i64>,
    /// Only this agent.
    pub agent_id: Option<i64>,
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub to: Option<Timestamp>,
}

/// Totals for one group.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UsageAggregate {
    /// Group value (id, model, account or `YYYY-MM-DD`); empty when the row had none.
    pub group: String,
    /// Attempts.
    pub requests: u64,
    /// Attempts with status `ok`.
    pub successes: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache read tokens.
    pub cache_read_tokens: u64,
    /// Cache write tokens.
    pub cache_write_tokens: u64,
    /// Kiro credits.
    pub credits: f64,
    /// Micro-credits charged.
    pub charged: i64,
    /// Attempts whose token counts were estimated (no upstream counts).
    pub estimated_requests: u64,
}

/// A model alias.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasRow {
    /// Name clients send.
    pub alias: String,
    /// Model it resolves to.
    pub model_id: String,
}

/// A combo model: a name that tries its members in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComboRow {
    /// Name clients send.
    pub name: String,
    /// Member models, in order (at least one).
    pub members: Vec<String>,
}

/// Prices of one model in micro-credits per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Price {
    /// Input.
    pub input_per_m: i64,
    /// Output.
    pub output_per_m: i64,
    /// Cache read.
    pub cache_read_per_m: i64,
    /// Cache write.
    pub cache_write_per_m: i64,
}

/// A model's price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceRow {
    /// Model id.
    pub model_id: String,
    /// Prices.
    pub price: Price,
}

/// An audit entry to append. `detail` must not contain secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who (e.g. `admin`, `key:<public_id>`, `agent:7`, `cli`).
    pub actor: String,
    /// What (e.g. `user.create`).
    pub action: String,
    /// Kind of object.
    pub object_type: String,
    /// Which object.
    pub object_id: String,
    /// Extra facts.
    pub detail: serde_json::Value,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// Id (increasing).
    pub id: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Kind of object.
    pub object_type: String,
    /// Which object.
    pub object_id: String,
    /// Extra facts.
    pub detail: serde_json::Value,
    /// When.
    pub created_at: Timestamp,
}

/// Topics changed since a version, see [`Store::changes_since`](super::Store::changes_since).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeSet {
    /// The latest version; pass it to the next call.
    pub version: i64,
    /// Topics changed after the version asked about.
    pub topics: Vec<Topic>,
}

/// How an account was signed in: what a new sign-in or a warning before the client
/// registration expires needs beyond the account row itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountLogin {
    /// The account.
    pub account_id: i64,
    /// `builder-id`, `identity-center`, `social-google`, `social-github` or `import`.
    pub method: String,
    /// The IAM Identity Center start URL (Builder ID's fixed one for Builder ID).
    pub start_url: Option<String>,
    /// When the OIDC client registration (and so every refresh) stops working.
    pub client_secret_expires_at: Option<Timestamp>,
}

/// A web console session. The session id itself is never stored, only its SHA-256.
#[derive(Clone, PartialEq)]
pub struct ConsoleSessionRow {
    /// SHA-256 of the session id (the cookie value).
    pub id_hash: Vec<u8>,
    /// `admin`, `agent` or `user`.
    pub role: String,
    /// The gateway key it was opened with; `None` for the configured `ADMIN_API_KEY`.
    pub key_id: Option<i64>,
    /// Ends at.
    pub expires_at: Timestamp,
    /// Browser, shown in lists (truncated).
    pub user_agent: String,
}

impl std::fmt::Debug for ConsoleSessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSessionRow")
            .field("role", &self.role)
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
