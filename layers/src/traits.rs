//! The seams the host application fills: who may call ([`KeyStore`]), which Kiro credential
//! serves a request ([`TokenSource`]), which models exist ([`ModelCatalog`]) and where usage
//! records go ([`UsageSink`]). The layers know nothing about databases; the app does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use crate::error::GatewayError;

/// The authenticated caller, put in request extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// Stable id of the API key (never the key itself).
    pub key_id: String,
    /// Owning user, when the key store knows users.
    pub user_id: Option<String>,
    /// Owning agent (reseller), if any.
    pub agent_id: Option<String>,
    /// Models this key may use; empty means all.
    pub allowed_models: Vec<String>,
}

/// Checks a presented API key. Must compare in constant time and must not block on I/O: serve
/// from memory.
pub trait KeyStore: Send + Sync + 'static {
    /// Returns the principal for a valid key, or an `unauthenticated` error.
    fn authenticate(&self, presented_key: &str) -> Result<Principal, GatewayError>;
}

/// Which upstream an account belongs to: `kiro`, `cursor`, or any later one. A name rather than
/// an enum so that a new upstream needs no change here or in any layer: the pool compares kinds,
/// the bottom service dispatches on them, and nothing else looks inside.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKind(std::borrow::Cow<'static, str>);

impl AccountKind {
    /// Amazon's Kiro API (the default kind: accounts stored before kinds existed are Kiro's).
    pub const KIRO: AccountKind = AccountKind(std::borrow::Cow::Borrowed("kiro"));
    /// Cursor's IDE chat API (a Cursor Pro account).
    pub const CURSOR: AccountKind = AccountKind(std::borrow::Cow::Borrowed("cursor"));

    /// A kind by name (lower-cased).
    pub fn new(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "kiro" => AccountKind::KIRO,
            "cursor" => AccountKind::CURSOR,
            other => AccountKind(std::borrow::Cow::Owned(other.to_owned())),
        }
    }

    /// The kind's name, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AccountKind {
    fn default() -> Self {
        AccountKind::KIRO
    }
}

impl serde::Serialize for AccountKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for AccountKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(AccountKind::new(&name))
    }
}

impl std::fmt::Display for AccountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to call an upstream as one account. Holds a secret: never log it.
#[derive(Clone)]
pub struct Credential {
    /// Stable account id (for usage records and logs).
    pub account_id: String,
    /// The upstream this account belongs to; the bottom service dispatches on it.
    pub kind: AccountKind,
    /// Bearer token for the Kiro API.
    pub access_token: String,
    /// `profileArn` sent with every request, when known.
    pub profile_arn: Option<String>,
    /// API base URL such as `https://runtime.us-east-1.kiro.dev`.
    pub api_base: String,
    /// Stable per-account fingerprint used in the user agent headers.
    pub fingerprint: String,
    /// External IdP tokens need the `TokenType: EXTERNAL_IDP` header.
    pub external_idp: bool,
    /// A stable per-account client key, for upstreams that send one (Cursor's `x-client-key`).
    pub client_key: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("account_id", &self.account_id)
            .field("kind", &self.kind)
            .field("access_token", &"<redacted>")
            .field("profile_arn", &self.profile_arn)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// What happened to an upstream attempt made with a lease; feeds the pool's health logic.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The attempt got a 200 (whatever happened later in the stream).
    Success,
    /// 429: rest this account, for `retry_after` if the upstream said.
    Throttled {
        /// Upstream `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 402 / monthly quota: rest until the quota resets.
    QuotaExhausted,
    /// 403 even after a forced refresh.
    Forbidden,
    /// The refresh token is dead (`invalid_grant`): disable the account.
    InvalidGrant {
        /// Why, for the admin.
        reason: String,
    },
    /// Connect/reset/5xx before any output.
    TransportError,
}

/// The account side of a lease: the pool implements it.
pub trait AccountHandle: Send + Sync + 'static {
    /// Refreshes the credential now (after an upstream 403) and returns the new one.
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>>;
    /// Reports how an attempt went.
    fn report(&self, outcome: AttemptOutcome);
    /// Called exactly once when the lease is dropped (the response stream ended or was dropped).
    fn release(&self);
}

/// A credential on loan for one upstream attempt. Dropping it returns the slot to the pool, so
/// it travels inside the response stream until the last event.
pub struct Lease {
    /// The credential to call Kiro with.
    pub credential: Credential,
    handle: Arc<dyn AccountHandle>,
}

impl Lease {
    /// Wraps a credential and the handle that will be told about outcomes and release.
    pub fn new(credential: Credential, handle: Arc<dyn AccountHandle>) -> Self {
        Lease { credential, handle }
    }

    /// Forces a refresh and swaps in the new credential.
    pub async fn force_refresh(&mut self) -> Result<(), GatewayError> {
        self.credential = self.handle.force_refresh().await?;
        Ok(())
    }

    /// Reports how the attempt went.
    pub fn report(&self, outcome: AttemptOutcome) {
        self.handle.report(outcome);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.handle.release();
    }
}

/// Carries a [`Lease`] through request extensions (which need `Clone`) from the pool layer to
/// the service that calls Kiro; that service takes it out and keeps it in its response stream.
#[derive(Clone, Default)]
pub struct LeaseSlot(Arc<std::sync::Mutex<Option<Lease>>>);

impl LeaseSlot {
    /// A slot holding `lease`.
    pub fn new(lease: Lease) -> Self {
        LeaseSlot(Arc::new(std::sync::Mutex::new(Some(lease))))
    }

    /// Takes the lease out (once).
    pub fn take(&self) -> Option<Lease> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// The account kind of the lease, if still in the slot.
    pub fn account_kind(&self) -> Option<AccountKind> {
        self.0
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|l| l.credential.kind.clone()))
    }

    /// The account id of the lease, if still in the slot.
    pub fn account_id(&self) -> Option<String> {
        self.0
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|l| l.credential.account_id.clone()))
    }
}

impl std::fmt::Debug for LeaseSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSlot")
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("credential", &self.credential)
            .finish()
    }
}

/// Hands out leases on Kiro credentials.
pub trait TokenSource: Send + Sync + 'static {
    /// Leases a credential able to serve `kiro_model_id`. Fails with `no_account` (503) when none
    /// is configured or all are resting.
    fn acquire<'a>(&'a self, kiro_model_id: &'a str) -> BoxFuture<'a, Result<Lease, GatewayError>>;

    /// Leases a credential of one of the kinds that serve `model` (any kind when it names
    /// none). Sources that hold a single kind need not override this.
    fn acquire_for<'a>(
        &'a self,
        model: &'a ResolvedModel,
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        self.acquire(&model.kiro_id)
    }
}

/// A model the gateway can serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The Kiro model id, e.g. `claude-sonnet-4.5`.
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Context window in tokens.
    pub context_window: u64,
    /// Output limit in tokens.
    pub max_output_tokens: u64,
    /// The kinds of account whose catalog lists this model (empty: any kind).
    pub kinds: Vec<AccountKind>,
    /// The id a kind knows this model by, where it differs from `id` (Cursor's
    /// `claude-4.5-sonnet` for the public `claude-sonnet-4.5`). Those ids resolve too.
    pub upstream_ids: Vec<(AccountKind, String)>,
}

/// The outcome of resolving a client's model name; put in request extensions by the model layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// What the client asked for (echoed in answers).
    pub requested: String,
    /// The upstream's model id (sent to Kiro as `modelId`, to Cursor as `model_name`; the
    /// field is older than the second upstream).
    pub kiro_id: String,
    /// Context window in tokens.
    pub context_window: u64,
    /// Output limit in tokens.
    pub max_output_tokens: u64,
    /// The kinds of account that serve it; the pool leases only those (empty: any kind).
    pub kinds: Vec<AccountKind>,
    /// The id a kind knows the model by, where it differs from `kiro_id`.
    pub upstream_ids: Vec<(AccountKind, String)>,
}

impl ResolvedModel {
    /// The model id to send to an upstream of `kind`: its own spelling, else `kiro_id` (the
    /// public id). Each upstream asks for its kind, so one public name can be served by kinds
    /// that spell it differently.
    pub fn upstream_id(&self, kind: &AccountKind) -> &str {
        self.upstream_ids
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(self.kiro_id.as_str(), |(_, id)| id.as_str())
    }
}

/// Knows the models and resolves client names.
pub trait ModelCatalog: Send + Sync + 'static {
    /// Resolves a client's model name (aliases, normalisation, `[1m]` suffix); `None` if unknown.
    fn resolve(&self, requested: &str) -> Option<ResolvedModel>;
    /// The models to list on `GET /v1/models`, including alias names.
    fn list(&self) -> Vec<ModelInfo>;
    /// For a combo model: the members to try, in order, after the one `resolve` returned when
    /// it has no capacity. Empty for plain models (the default).
    fn fallbacks(&self, _requested: &str) -> Vec<ResolvedModel> {
        Vec::new()
    }
}

/// The fallback members of a combo model, put in request extensions by the model layer and
/// tried by the token pool layer when the first choice has no account.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelFallbacks(pub Vec<ResolvedModel>);

/// How an upstream attempt ended, for the usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// The stream completed.
    Ok,
    /// The upstream failed (status or broken stream).
    UpstreamError,
    /// The client went away before the end.
    ClientAbort,
    /// Refused before reaching Kiro (quota, rate limit).
    Rejected,
}

impl UsageStatus {
    /// Lower-case name for storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageStatus::Ok => "ok",
            UsageStatus::UpstreamError => "upstream_error",
            UsageStatus::ClientAbort => "client_abort",
            UsageStatus::Rejected => "rejected",
        }
    }
}

/// One upstream attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// Request id (shared by all attempts of one client request).
    pub request_id: String,
    /// 1-based attempt number within the request.
    pub attempt: u32,
    /// Caller.
    pub principal: Principal,
    /// Model name the client sent.
    pub requested_model: String,
    /// Kiro model id.
    pub resolved_model: String,
    /// Account that served the attempt.
    pub account_id: Option<String>,
    /// The kind of that account (`kiro`, `cursor`).
    pub account_kind: Option<AccountKind>,
    /// The token counts are the gateway's own estimate (the upstream reported neither counts
    /// nor a context share to derive them from: always so for Cursor).
    pub estimated: bool,
    /// Input tokens (real when Kiro reported them, else derived or estimated).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache read tokens.
    pub cache_read_tokens: u64,
    /// Cache write tokens.
    pub cache_write_tokens: u64,
    /// Kiro credits from `meteringEvent`.
    pub credits: f64,
    /// How it ended.
    pub status: UsageStatus,
    /// Time to the first output event.
    pub time_to_first_token: Option<Duration>,
    /// Whole duration.
    pub duration: Duration,
    /// Wall-clock start.
    pub started_at: SystemTime,
}

/// Receives usage records. Must not block: queue the record and return.
pub trait UsageSink: Send + Sync + 'static {
    /// Takes one record.
    fn record(&self, record: UsageRecord);
}
