//! [`Store`]: everything the multi-tenant gateway keeps in a database, as one object-safe async
//! trait. The layers define it; the application implements it (SQLite and PostgreSQL), so this
//! crate stays free of database code.
//!
//! The rules every backend keeps (one behaviour test suite checks them on both):
//!
//! - **Ids** are `i64`, assigned by the database. Unknown ids give [`StoreError::NotFound`];
//!   duplicate unique names give [`StoreError::Conflict`]; bad input gives
//!   [`StoreError::Invalid`]. A failed call changes nothing.
//! - **Secrets**: account refresh tokens and client secrets are plaintext in [`AccountRow`] and
//!   encrypted at rest by the backend. API keys are stored only as a hash
//!   ([`ApiKeyRow::secret_hash`]); callers look a key up by its `public_id` and compare hashes.
//! - **Rotation**: [`Store::update_refresh_token`] writes only when the row still has the
//!   version the caller read, so of two processes refreshing at once exactly one wins and the
//!   other re-reads the account.
//! - **Money** is micro-credits (`i64`, 1 credit = [`MICRO_PER_CREDIT`]).
//!   [`Store::transfer_quota`] moves balance from an agent to one of its own users in one
//!   transaction and never leaves the agent's balance negative.
//! - **Usage** is idempotent by `(request_id, attempt)`: [`Store::insert_usage`] skips rows it
//!   already has, and charges each newly inserted row's `charged` exactly once, in the same
//!   transaction: to its key and user (`quota_used`), or, for a row with an agent but no user
//!   (an agent's own key), to the agent's balance. Nobody needs to call [`Store::charge`] for
//!   usage rows.
//! - **Soft delete**: a deleted user disappears from `get_user`/`list_users` (`NotFound`), its
//!   keys are revoked, and its usage stays.
//! - **Processes**: each gateway process heartbeats ([`Store::heartbeat`]); while more than
//!   one is alive they take round-robin turns from [`Store::next_turn`].
//! - **Changes**: every mutation bumps a version for its [`Topic`]; caches poll
//!   [`Store::changes_since`] or listen on [`Store::subscribe`] (PostgreSQL: `LISTEN/NOTIFY`,
//!   so other processes' changes arrive too; SQLite: a poll of the version table) and reload
//!   what changed. A lagged receiver should reload everything.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use kiro_layers::store::{Store, NewUser};
//! # async fn demo(store: Arc<dyn Store>) -> Result<(), kiro_layers::store::StoreError> {
//! let agent = store.create_agent("acme").await?;
//! store.add_quota(kiro_layers::store::QuotaSubject::Agent(agent.id), 10_000_000).await?;
//! let user = store
//!     .create_user(NewUser { agent_id: Some(agent.id), name: "alice".into(), ..Default::default() })
//!     .await?;
//! let transfer = store.transfer_quota(agent.id, user.id, 4_000_000).await?;
//! assert_eq!(transfer.agent_balance_after, 6_000_000);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::error::GatewayError;

mod kinds;
mod login_flows;
mod paging;
mod types;
mod usage_limits;

pub use kinds::*;
pub use login_flows::*;
pub use paging::*;
pub use types::*;
pub use usage_limits::*;

/// A stored Responses answer (see `dialect::responses::store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRow {
    /// Whose it is: `user:<id>` or `key:<id>`.
    pub owner: String,
    /// `resp_...`.
    pub id: String,
    /// The response object, JSON.
    pub response: String,
    /// The conversation up to this response, a JSON array of items.
    pub items: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds after which the row is gone.
    pub expires_at_ms: i64,
}

/// What a store call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The object does not exist (or is not visible to the caller); the message names it.
    NotFound(String),
    /// A uniqueness or state rule was broken (duplicate name, insufficient balance).
    Conflict(String),
    /// The input is malformed (empty name, negative amount).
    Invalid(String),
    /// The database failed; the message never contains secrets.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(m) => write!(f, "not found: {m}"),
            StoreError::Conflict(m) => write!(f, "conflict: {m}"),
            StoreError::Invalid(m) => write!(f, "invalid: {m}"),
            StoreError::Backend(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for GatewayError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(m) => GatewayError::not_found(format!("{m} not found.")),
            StoreError::Conflict(m) => GatewayError::conflict(m),
            StoreError::Invalid(m) => GatewayError::invalid_request(m),
            StoreError::Backend(m) => GatewayError::internal(format!("database error: {m}")),
        }
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The future every store method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, StoreResult<T>>;

/// Persistent state of the gateway. See the module docs for the rules.
pub trait Store: Send + Sync + 'static {
    // ---- accounts ----
    /// Adds a Kiro account (version 1, active).
    fn create_account(&self, account: NewAccount) -> StoreFuture<'_, AccountRow>;
    /// All accounts, by id.
    fn list_accounts(&self) -> StoreFuture<'_, Vec<AccountRow>>;
    /// One account.
    fn get_account(&self, id: i64) -> StoreFuture<'_, AccountRow>;
    /// Enables or disables an account; `reason` is shown to the admin (cleared when enabling).
    fn set_account_status(
        &self,
        id: i64,
        status: AccountStatus,
        reason: Option<String>,
    ) -> StoreFuture<'_, ()>;
    /// Removes an account and its state.
    fn delete_account(&self, id: i64) -> StoreFuture<'_, ()>;
    /// Writes a rotated refresh token if the row is still at `expected_version` (and bumps the
    /// version); `Ok(false)` when another writer got there first.
    fn update_refresh_token(
        &self,
        id: i64,
        expected_version: i64,
        new_refresh_token: String,
    ) -> StoreFuture<'_, bool>;
    /// Writes the refreshed session token of a Cursor account (encrypted like every secret), so
    /// that a restart starts from it. Bumps no topic: every process refreshes its own copy before
    /// expiry, and a pool rebuild per refresh would be churn for nothing.
    fn update_session_token(&self, id: i64, access_token: String) -> StoreFuture<'_, ()> {
        let _ = (id, access_token);
        Box::pin(async {
            Err(StoreError::Invalid(
                "this store keeps no session tokens".into(),
            ))
        })
    }
    /// Shared runtime state of an account ([`AccountState::fresh`] if never written).
    fn get_account_state(&self, account_id: i64) -> StoreFuture<'_, AccountState>;
    /// Runtime state of every account that has any.
    fn list_account_states(&self) -> StoreFuture<'_, Vec<AccountState>>;
    /// Replaces an account's runtime state.
    fn put_account_state(&self, state: AccountState) -> StoreFuture<'_, ()>;
    /// Records how an account was signed in (replacing an earlier record); removed with the
    /// account. Stores without the table refuse.
    fn put_account_login(&self, login: AccountLogin) -> StoreFuture<'_, ()> {
        let _ = login;
        Box::pin(async {
            Err(StoreError::Invalid(
                "this store keeps no sign-in details".into(),
            ))
        })
    }
    /// How an account was signed in, if recorded.
    fn get_account_login(&self, account_id: i64) -> StoreFuture<'_, Option<AccountLogin>> {
        let _ = account_id;
        Box::pin(async { Ok(None) })
    }

    // ---- gateway processes ----
    /// Marks gateway process `instance` alive now and returns how many processes (this one
    /// included) were seen within `alive_within`. An instance's first heartbeat (or the first
    /// after it was forgotten) bumps [`Topic::Instances`], so the others count again at once.
    fn heartbeat(&self, instance: &str, alive_within: Duration) -> StoreFuture<'_, u32>;
    /// Forgets `instance` (it is shutting down) and bumps [`Topic::Instances`].
    fn leave(&self, instance: &str) -> StoreFuture<'_, ()>;
    /// The next value of the round-robin turn all processes share: atomic across processes,
    /// strictly increasing, cheap (no transaction of the caller's is involved).
    fn next_turn(&self) -> StoreFuture<'_, i64>;

    // ---- agents ----
    /// Adds an agent (active, balance 0).
    fn create_agent(&self, name: &str) -> StoreFuture<'_, AgentRow>;
    /// One agent.
    fn get_agent(&self, id: i64) -> StoreFuture<'_, AgentRow>;
    /// All agents, by id.
    fn list_agents(&self) -> StoreFuture<'_, Vec<AgentRow>>;
    /// Enables or disables an agent.
    fn set_agent_status(&self, id: i64, status: Status) -> StoreFuture<'_, ()>;

    // ---- users ----
    /// Adds a user (active, nothing used).
    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRow>;
    /// One user (not deleted).
    fn get_user(&self, id: i64) -> StoreFuture<'_, UserRow>;
    /// Users not deleted, by id; `Some(agent)` only that agent's users.
    fn list_users(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<UserRow>>;
    /// Changes name, status or RPM limit.
    fn update_user(&self, id: i64, update: UserUpdate) -> StoreFuture<'_, UserRow>;
    /// Soft-deletes a user and revokes its keys.
    fn delete_user(&self, id: i64) -> StoreFuture<'_, ()>;

    // ---- API keys ----
    /// Stores a key. A user's key takes the user's agent; `Invalid` if `agent_id` disagrees.
    fn create_api_key(&self, key: NewApiKey) -> StoreFuture<'_, ApiKeyRow>;
    /// Keys of an owner, by id (revoked ones included).
    fn list_api_keys(&self, owner: KeyOwner) -> StoreFuture<'_, Vec<ApiKeyRow>>;
    /// One key.
    fn get_api_key(&self, id: i64) -> StoreFuture<'_, ApiKeyRow>;
    /// One key by its public id.
    fn get_api_key_by_public_id(&self, public_id: &str) -> StoreFuture<'_, ApiKeyRow>;
    /// Revokes a key (idempotent).
    fn revoke_api_key(&self, id: i64) -> StoreFuture<'_, ()>;
    /// Every key that may authenticate now, for the in-memory cache: active, and its user
    /// and agent (if any) active and not deleted. Expiry is left to the caller (time moves).
    fn list_active_keys(&self) -> StoreFuture<'_, Vec<ApiKeyRow>>;

    // ---- quota ----
    /// Applies every line in one transaction (see [`ChargeLine`]).
    fn charge<'a>(&'a self, lines: &'a [ChargeLine]) -> StoreFuture<'a, ()>;
    /// Moves `amount` (> 0) from an agent's balance to one of its users' quota limit, in one
    /// transaction, recorded. `NotFound` if the user is not the agent's; `Conflict` if the
    /// balance is too small.
    fn transfer_quota(
        &self,
        agent_id: i64,
        user_id: i64,
        amount: i64,
    ) -> StoreFuture<'_, TransferRow>;
    /// Transfers of one agent (or all), newest first.
    fn list_transfers(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<TransferRow>>;
    /// Sets a user's or key's quota limit (`None` = unlimited) or an agent's balance
    /// (`None` = 0).
    fn set_quota(&self, subject: QuotaSubject, limit: Option<i64>) -> StoreFuture<'_, ()>;
    /// Adds to a quota limit (unlimited counts as 0) or a balance; `Conflict` if the result
    /// would be negative.
    fn add_quota(&self, subject: QuotaSubject, amount: i64) -> StoreFuture<'_, ()>;

    // ---- usage ----
    /// Inserts the rows not already stored and charges them (see module docs); returns how
    /// many were new. Also advances the keys' `last_used_at`.
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> StoreFuture<'a, u64>;
    /// Totals per group, ordered by group.
    fn query_usage(
        &self,
        filter: UsageFilter,
        group_by: UsageGroup,
    ) -> StoreFuture<'_, Vec<UsageAggregate>>;

    // ---- web console sessions ----
    /// Stores a new session.
    fn create_console_session(&self, session: ConsoleSessionRow) -> StoreFuture<'_, ()>;
    /// The session with this id hash, if it exists and has not expired.
    fn get_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, Option<ConsoleSessionRow>>;
    /// Ends one session (logout).
    fn delete_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, ()>;
    /// Ends every session opened with this key (revoked) and every expired session; returns
    /// how many were removed.
    fn delete_console_sessions_of_key(&self, key_id: i64) -> StoreFuture<'_, u64>;

    // ---- models ----
    /// Creates or replaces an alias.
    fn set_alias(&self, alias: &str, model_id: &str) -> StoreFuture<'_, ()>;
    /// Removes an alias.
    fn delete_alias(&self, alias: &str) -> StoreFuture<'_, ()>;
    /// All aliases, by name.
    fn list_aliases(&self) -> StoreFuture<'_, Vec<AliasRow>>;
    /// Creates or replaces a combo (at least one member).
    fn set_combo(&self, name: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// Removes a combo.
    fn delete_combo(&self, name: &str) -> StoreFuture<'_, ()>;
    /// All combos, by name.
    fn list_combos(&self) -> StoreFuture<'_, Vec<ComboRow>>;
    /// Creates or replaces a model's price (no negative prices).
    fn set_price(&self, model_id: &str, price: Price) -> StoreFuture<'_, ()>;
    /// Removes a price.
    fn delete_price(&self, model_id: &str) -> StoreFuture<'_, ()>;
    /// All prices, by model.
    fn list_prices(&self) -> StoreFuture<'_, Vec<PriceRow>>;

    // ---- audit ----
    /// Appends an entry.
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()>;
    /// The newest `limit` entries, newest first.
    fn list_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditRow>>;

    // ---- health ----
    /// Answers `Ok` when the database can run a query now (readiness checks, the usage writer
    /// telling an outage from a bad batch).
    fn ping(&self) -> StoreFuture<'_, ()>;

    // ---- stored Responses answers ----
    /// Keeps (or replaces) `owner`'s response `row.id`, and drops every expired one. The
    /// default keeps nothing: a store without this table cannot hold responses.
    fn put_response(&self, row: ResponseRow) -> StoreFuture<'_, ()> {
        let _ = row;
        Box::pin(async { Err(StoreError::Backend("this store keeps no responses".into())) })
    }
    /// `owner`'s response `id`, unless it expired before `now_ms`.
    fn get_response<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, Option<ResponseRow>> {
        let _ = (owner, id, now_ms);
        Box::pin(async { Ok(None) })
    }
    /// Deletes `owner`'s response `id`; false when there was none.
    fn delete_response<'a>(&'a self, owner: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        let _ = (owner, id);
        Box::pin(async { Ok(false) })
    }

    // ---- paged listings (see [`PageRequest`]) ----
    /// One page of the users `query` selects (not deleted), and how many match. The default
    /// filters and slices [`Store::list_users`] in memory; the database backends do it in SQL.
    fn page_users(&self, query: UserQuery, page: PageRequest) -> StoreFuture<'_, UserPage> {
        Box::pin(async move {
            let mut users = self.list_users(query.agent_id).await?;
            users.retain(|u| query.matches(u));
            query.sort(&mut users);
            Ok(Paged::of(users, page))
        })
    }
    /// One page of an owner's keys (revoked included), oldest first, and how many there are.
    fn page_api_keys(&self, owner: KeyQuery, page: PageRequest) -> StoreFuture<'_, KeyPage> {
        Box::pin(async move { Ok(Paged::of(self.list_api_keys(owner).await?, page)) })
    }
    /// One page of the audit entries `query` selects, newest first, and how many match.
    fn page_audit(&self, query: AuditQuery, page: PageRequest) -> StoreFuture<'_, AuditPage> {
        Box::pin(async move {
            let mut all = self.list_audit(PageRequest::MAX_LIMIT).await?;
            all.retain(|e| query.matches(e));
            Ok(Paged::of(all, page))
        })
    }
    /// One page of an agent's (or all) transfers, newest first, and how many there are.
    fn page_transfers(
        &self,
        agent_id: TransferQuery,
        page: PageRequest,
    ) -> StoreFuture<'_, TransferPage> {
        Box::pin(async move { Ok(Paged::of(self.list_transfers(agent_id).await?, page)) })
    }

    // ---- Kiro usage limits per account (see [`AccountUsageLimits`]) ----
    /// Stores a successful fetch (`Ok`: replaces the snapshot, clears the error) or a failed
    /// one (`Err`: keeps the last snapshot, records why), at `at`. `NotFound` for an unknown
    /// account; removed with the account. Stores without the table refuse.
    fn put_usage_limits(
        &self,
        account_id: i64,
        outcome: Result<LimitSnapshot, String>,
        at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        let _ = (account_id, outcome, at);
        Box::pin(async {
            Err(StoreError::Invalid(
                "this store keeps no usage limits".into(),
            ))
        })
    }
    /// Every account's stored usage limits, by account id.
    fn list_usage_limits(&self) -> StoreFuture<'_, Vec<AccountUsageLimits>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    // ---- sign-in flows (see [`LoginFlowRow`]) ----
    /// Stores a new flow leased to `row.owner` for `lease`. `Conflict` when the id exists or
    /// `max_live` unfinished flows exist already. Stores without the table refuse.
    fn create_login_flow(
        &self,
        row: LoginFlowRow,
        lease: Duration,
        max_live: u32,
    ) -> StoreFuture<'_, ()> {
        let _ = (row, lease, max_live);
        Box::pin(async {
            Err(StoreError::Invalid(
                "this store keeps no sign-in flows".into(),
            ))
        })
    }
    /// One flow (finished ones until they are swept).
    fn get_login_flow(&self, id: &str) -> StoreFuture<'_, Option<LoginFlowRow>> {
        let _ = id;
        Box::pin(async { Ok(None) })
    }
    /// Compare-and-set: writes `row`'s status, view, plan, secrets, expiry and end time, with
    /// version `expected_version + 1`, only if the stored version is still `expected_version`;
    /// `Ok(false)` when another writer got there first (or the flow is gone). Owner and lease
    /// are left alone.
    fn update_login_flow(&self, row: LoginFlowRow, expected_version: i64) -> StoreFuture<'_, bool> {
        let _ = (row, expected_version);
        Box::pin(async { Ok(false) })
    }
    /// Takes or renews the lease of an unfinished flow for `owner`: succeeds when `owner` holds
    /// it already, nobody does, or the holder's lease has lapsed (by the database's clock).
    fn lease_login_flow(&self, id: &str, owner: &str, lease: Duration) -> StoreFuture<'_, bool> {
        let _ = (id, owner, lease);
        Box::pin(async { Ok(false) })
    }
    /// Ids of unfinished flows whose lease has lapsed (their process stopped).
    fn orphan_login_flows(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Deletes flows that finished more than `keep` ago, and unfinished ones that expired more
    /// than `keep` ago; returns how many.
    fn sweep_login_flows(&self, keep: Duration) -> StoreFuture<'_, u64> {
        let _ = keep;
        Box::pin(async { Ok(0) })
    }

    // ---- change notification ----
    /// Topics changed after `version` (0 = all) and the current version.
    fn changes_since(&self, version: i64) -> StoreFuture<'_, ChangeSet>;
    /// A receiver of changed topics, from this and (PostgreSQL, or SQLite by polling) other
    /// processes. On `Lagged`, reload everything.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Topic>;
}
