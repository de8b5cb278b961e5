//! The SQLite backend: one connection in WAL mode behind a mutex, used from `spawn_blocking`
//! so the async runtime never waits on disk. Writes run in `BEGIN IMMEDIATE` transactions, so
//! several processes may share one file (SQLite serialises their writes). Other processes'
//! changes reach [`Store::subscribe`] through a poll of the `changes` table every second.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kiro_layers::store::*;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::broadcast;

use super::{Migration, Secret, SQLITE_MIGRATIONS};

mod accounts;
mod console;
mod instances;
mod login_flows;
mod logins;
mod paging;
mod records;
mod responses;
mod tenancy;
mod usage_daily;
mod usage_limits;

const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The error type inside the blocking closures: lets `?` take both rusqlite and store errors.
pub(crate) struct SqlErr(pub(crate) StoreError);

impl From<rusqlite::Error> for SqlErr {
    fn from(error: rusqlite::Error) -> Self {
        SqlErr(StoreError::Backend(format!("sqlite: {error}")))
    }
}

impl From<StoreError> for SqlErr {
    fn from(error: StoreError) -> Self {
        SqlErr(error)
    }
}

impl From<serde_json::Error> for SqlErr {
    fn from(error: serde_json::Error) -> Self {
        SqlErr(StoreError::Backend(format!(
            "stored JSON is corrupt: {error}"
        )))
    }
}

/// Result inside the blocking closures.
pub(crate) type R<T> = Result<T, SqlErr>;

/// Turns a unique-constraint failure into `Conflict(message)`.
pub(crate) fn unique<T>(result: rusqlite::Result<T>, message: impl FnOnce() -> String) -> R<T> {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(SqlErr(StoreError::Conflict(message())))
        }
        other => Ok(other?),
    }
}

/// Milliseconds since the epoch, as stored.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// A stored millisecond value as a timestamp.
pub(crate) fn ts(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Now, in stored form.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sets `topic`'s version above every other version (inside the caller's transaction) and
/// remembers it for publishing after commit.
pub(crate) fn bump(tx: &Connection, topics: &mut Vec<Topic>, topic: Topic) -> R<()> {
    tx.execute(
        "UPDATE changes SET version = (SELECT MAX(version) FROM changes) + 1 WHERE topic = ?1",
        [topic.as_str()],
    )?;
    if !topics.contains(&topic) {
        topics.push(topic);
    }
    Ok(())
}

struct Inner {
    conn: Mutex<Connection>,
    secret: Secret,
    changes: broadcast::Sender<Topic>,
}

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (or creates) the file and applies the first `upto` migrations.
    pub async fn open(path: &str, secret: Secret, upto: usize) -> Result<Self, String> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open_connection(&path, upto))
            .await
            .map_err(|e| format!("sqlite open task failed: {e}"))??;
        let (changes, _) = broadcast::channel(256);
        let inner = Arc::new(Inner {
            conn: Mutex::new(conn),
            secret,
            changes,
        });
        // The starting version is read now, not in the task, so a change made right after
        // `open` returns is still announced.
        let start = current_version(&inner).await.unwrap_or(0);
        tokio::spawn(poll_changes(Arc::downgrade(&inner), start));
        Ok(SqliteStore { inner })
    }

    /// Runs `work` on the blocking pool with the connection; publishes the topics it bumped
    /// once it returns `Ok`.
    fn run<T, F>(&self, work: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Secret, &mut Vec<Topic>) -> R<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = inner
                    .conn
                    .lock()
                    .map_err(|_| StoreError::Backend("sqlite connection poisoned".into()))?;
                let mut topics = Vec::new();
                let value = work(&mut conn, &inner.secret, &mut topics).map_err(|e| e.0)?;
                for topic in topics {
                    // No receivers is fine.
                    let _ = inner.changes.send(topic);
                }
                Ok(value)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
        })
    }
}

fn open_connection(path: &str, upto: usize) -> Result<Connection, String> {
    let fail = |e: rusqlite::Error| format!("could not open the SQLite database {path}: {e}");
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
        }
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(fail)?;
    migrate(
        &mut conn,
        &SQLITE_MIGRATIONS[..upto.min(SQLITE_MIGRATIONS.len())],
    )
    .map_err(|e| format!("migrating {path} failed: {e}"))?;
    Ok(conn)
}

/// Applies the migrations not yet recorded, each in its own immediate transaction.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    for (index, (name, sql)) in migrations.iter().enumerate() {
        let version = index as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: i64 = tx.query_row(
            "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1",
            [version],
            |r| r.get(0),
        )?;
        if done == 0 {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, now_ms()],
            )?;
            tracing::info!(migration = name, "applied database migration");
        }
        tx.commit()?;
    }
    Ok(())
}

/// Publishes topics other processes changed; ends when the store is dropped.
async fn poll_changes(inner: Weak<Inner>, start: i64) {
    let mut seen = start;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if strong.changes.receiver_count() == 0 {
            continue;
        }
        let since = seen;
        let work = Arc::clone(&strong);
        let result = tokio::task::spawn_blocking(move || {
            let conn = work.conn.lock().map_err(|_| ())?;
            records::changes_since(&conn, since).map_err(|_| ())
        })
        .await;
        if let Ok(Ok(set)) = result {
            seen = set.version;
            for topic in set.topics {
                let _ = strong.changes.send(topic);
            }
        }
    }
}

async fn current_version(inner: &Arc<Inner>) -> Option<i64> {
    let work = Arc::clone(inner);
    tokio::task::spawn_blocking(move || {
        let conn = work.conn.lock().ok()?;
        records::changes_since(&conn, i64::MAX)
            .ok()
            .map(|s| s.version)
    })
    .await
    .ok()
    .flatten()
}

impl Store for SqliteStore {
    fn create_account(&self, account: NewAccount) -> StoreFuture<'_, AccountRow> {
        self.run(move |c, s, t| accounts::create_account(c, s, t, account))
    }
    fn list_accounts(&self) -> StoreFuture<'_, Vec<AccountRow>> {
        self.run(|c, s, _| accounts::list_accounts(c, s))
    }
    fn get_account(&self, id: i64) -> StoreFuture<'_, AccountRow> {
        self.run(move |c, s, _| accounts::get_account(c, s, id))
    }
    fn set_account_status(
        &self,
        id: i64,
        status: AccountStatus,
        reason: Option<String>,
    ) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| accounts::set_account_status(c, t, id, status, reason))
    }
    fn delete_account(&self, id: i64) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| accounts::delete_account(c, t, id))
    }
    fn update_refresh_token(
        &self,
        id: i64,
        expected_version: i64,
        new_refresh_token: String,
    ) -> StoreFuture<'_, bool> {
        self.run(move |c, s, t| {
            accounts::update_refresh_token(c, s, t, id, expected_version, &new_refresh_token)
        })
    }
    fn update_session_token(&self, id: i64, access_token: String) -> StoreFuture<'_, ()> {
        self.run(move |c, s, _| accounts::update_session_token(c, s, id, &access_token))
    }
    fn get_account_state(&self, account_id: i64) -> StoreFuture<'_, AccountState> {
        self.run(move |c, _, _| accounts::get_account_state(c, account_id))
    }
    fn list_account_states(&self) -> StoreFuture<'_, Vec<AccountState>> {
        self.run(|c, _, _| accounts::list_account_states(c))
    }
    fn put_account_state(&self, state: AccountState) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| accounts::put_account_state(c, t, state))
    }
    fn put_account_login(&self, login: AccountLogin) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| logins::put_account_login(c, login))
    }
    fn get_account_login(&self, account_id: i64) -> StoreFuture<'_, Option<AccountLogin>> {
        self.run(move |c, _, _| logins::get_account_login(c, account_id))
    }
    fn heartbeat(&self, instance: &str, alive_within: Duration) -> StoreFuture<'_, u32> {
        let instance = instance.to_owned();
        self.run(move |c, _, t| instances::heartbeat(c, t, &instance, alive_within))
    }
    fn leave(&self, instance: &str) -> StoreFuture<'_, ()> {
        let instance = instance.to_owned();
        self.run(move |c, _, t| instances::leave(c, t, &instance))
    }
    fn next_turn(&self) -> StoreFuture<'_, i64> {
        self.run(|c, _, _| instances::next_turn(c))
    }
    fn create_agent(&self, name: &str) -> StoreFuture<'_, AgentRow> {
        let name = name.to_owned();
        self.run(move |c, _, t| tenancy::create_agent(c, t, &name))
    }
    fn get_agent(&self, id: i64) -> StoreFuture<'_, AgentRow> {
        self.run(move |c, _, _| tenancy::get_agent(c, id))
    }
    fn list_agents(&self) -> StoreFuture<'_, Vec<AgentRow>> {
        self.run(|c, _, _| tenancy::list_agents(c))
    }
    fn set_agent_status(&self, id: i64, status: Status) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| tenancy::set_agent_status(c, t, id, status))
    }
    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRow> {
        self.run(move |c, _, t| tenancy::create_user(c, t, user))
    }
    fn get_user(&self, id: i64) -> StoreFuture<'_, UserRow> {
        self.run(move |c, _, _| tenancy::get_user(c, id))
    }
    fn list_users(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<UserRow>> {
        self.run(move |c, _, _| tenancy::list_users(c, agent_id))
    }
    fn update_user(&self, id: i64, update: UserUpdate) -> StoreFuture<'_, UserRow> {
        self.run(move |c, _, t| tenancy::update_user(c, t, id, update))
    }
    fn delete_user(&self, id: i64) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| tenancy::delete_user(c, t, id))
    }
    fn create_api_key(&self, key: NewApiKey) -> StoreFuture<'_, ApiKeyRow> {
        self.run(move |c, _, t| tenancy::create_api_key(c, t, key))
    }
    fn list_api_keys(&self, owner: KeyOwner) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        self.run(move |c, _, _| tenancy::list_api_keys(c, owner))
    }
    fn get_api_key(&self, id: i64) -> StoreFuture<'_, ApiKeyRow> {
        self.run(move |c, _, _| tenancy::get_api_key(c, "k.id = ?1", id))
    }
    fn get_api_key_by_public_id(&self, public_id: &str) -> StoreFuture<'_, ApiKeyRow> {
        let public_id = public_id.to_owned();
        self.run(move |c, _, _| tenancy::get_api_key(c, "k.public_id = ?1", public_id))
    }
    fn revoke_api_key(&self, id: i64) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| tenancy::revoke_api_key(c, t, id))
    }
    fn list_active_keys(&self) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        self.run(|c, _, _| tenancy::list_active_keys(c))
    }
    fn charge<'a>(&'a self, lines: &'a [ChargeLine]) -> StoreFuture<'a, ()> {
        let lines = lines.to_vec();
        self.run(move |c, _, t| tenancy::charge(c, t, &lines))
    }
    fn transfer_quota(
        &self,
        agent_id: i64,
        user_id: i64,
        amount: i64,
    ) -> StoreFuture<'_, TransferRow> {
        self.run(move |c, _, t| tenancy::transfer_quota(c, t, agent_id, user_id, amount))
    }
    fn list_transfers(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<TransferRow>> {
        self.run(move |c, _, _| tenancy::list_transfers(c, agent_id))
    }
    fn set_quota(&self, subject: QuotaSubject, limit: Option<i64>) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| tenancy::set_quota(c, t, subject, limit))
    }
    fn add_quota(&self, subject: QuotaSubject, amount: i64) -> StoreFuture<'_, ()> {
        self.run(move |c, _, t| tenancy::add_quota(c, t, subject, amount))
    }
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> StoreFuture<'a, u64> {
        let rows = rows.to_vec();
        self.run(move |c, _, t| records::insert_usage(c, t, &rows))
    }
    fn query_usage(
        &self,
        filter: UsageFilter,
        group_by: UsageGroup,
    ) -> StoreFuture<'_, Vec<UsageAggregate>> {
        self.run(move |c, _, _| usage_daily::query_usage(c, &filter, group_by))
    }
    fn set_alias(&self, alias: &str, model_id: &str) -> StoreFuture<'_, ()> {
        let (alias, model_id) = (alias.to_owned(), model_id.to_owned());
        self.run(move |c, _, t| records::set_alias(c, t, &alias, &model_id))
    }
    fn delete_alias(&self, alias: &str) -> StoreFuture<'_, ()> {
        let alias = alias.to_owned();
        self.run(move |c, _, t| records::delete_named(c, t, records::Named::Alias, &alias))
    }
    fn list_aliases(&self) -> StoreFuture<'_, Vec<AliasRow>> {
        self.run(|c, _, _| records::list_aliases(c))
    }
    fn set_combo(&self, name: &str, members: Vec<String>) -> StoreFuture<'_, ()> {
        let name = name.to_owned();
        self.run(move |c, _, t| records::set_combo(c, t, &name, &members))
    }
    fn delete_combo(&self, name: &str) -> StoreFuture<'_, ()> {
        let name = name.to_owned();
        self.run(move |c, _, t| records::delete_named(c, t, records::Named::Combo, &name))
    }
    fn list_combos(&self) -> StoreFuture<'_, Vec<ComboRow>> {
        self.run(|c, _, _| records::list_combos(c))
    }
    fn set_price(&self, model_id: &str, price: Price) -> StoreFuture<'_, ()> {
        let model_id = model_id.to_owned();
        self.run(move |c, _, t| records::set_price(c, t, &model_id, price))
    }
    fn delete_price(&self, model_id: &str) -> StoreFuture<'_, ()> {
        let model_id = model_id.to_owned();
        self.run(move |c, _, t| records::delete_named(c, t, records::Named::Price, &model_id))
    }
    fn list_prices(&self) -> StoreFuture<'_, Vec<PriceRow>> {
        self.run(|c, _, _| records::list_prices(c))
    }
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| records::append_audit(c, &entry))
    }
    fn list_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditRow>> {
        self.run(move |c, _, _| records::list_audit(c, limit))
    }
    fn put_usage_limits(
        &self,
        account_id: i64,
        outcome: Result<LimitSnapshot, String>,
        at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| usage_limits::put(c, account_id, outcome, at))
    }
    fn create_login_flow(
        &self,
        row: LoginFlowRow,
        lease: Duration,
        max_live: u32,
    ) -> StoreFuture<'_, ()> {
        self.run(move |c, s, _| login_flows::create(c, s, row, lease, max_live))
    }
    fn get_login_flow(&self, id: &str) -> StoreFuture<'_, Option<LoginFlowRow>> {
        let id = id.to_owned();
        self.run(move |c, s, _| login_flows::get(c, s, &id))
    }
    fn update_login_flow(&self, row: LoginFlowRow, expected_version: i64) -> StoreFuture<'_, bool> {
        self.run(move |c, s, _| login_flows::update(c, s, row, expected_version))
    }
    fn lease_login_flow(&self, id: &str, owner: &str, lease: Duration) -> StoreFuture<'_, bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |c, _, _| login_flows::lease(c, &id, &owner, lease))
    }
    fn orphan_login_flows(&self) -> StoreFuture<'_, Vec<String>> {
        self.run(|c, _, _| login_flows::orphans(c))
    }
    fn sweep_login_flows(&self, keep: Duration) -> StoreFuture<'_, u64> {
        self.run(move |c, _, _| login_flows::sweep(c, keep))
    }
    fn list_usage_limits(&self) -> StoreFuture<'_, Vec<AccountUsageLimits>> {
        self.run(|c, _, _| usage_limits::list(c))
    }
    fn page_users(&self, query: UserQuery, page: PageRequest) -> StoreFuture<'_, UserPage> {
        self.run(move |c, _, _| paging::page_users(c, &query, page))
    }
    fn page_api_keys(&self, owner: KeyQuery, page: PageRequest) -> StoreFuture<'_, KeyPage> {
        self.run(move |c, _, _| paging::page_api_keys(c, owner, page))
    }
    fn page_audit(&self, query: AuditQuery, page: PageRequest) -> StoreFuture<'_, AuditPage> {
        self.run(move |c, _, _| paging::page_audit(c, &query, page))
    }
    fn page_transfers(
        &self,
        agent_id: TransferQuery,
        page: PageRequest,
    ) -> StoreFuture<'_, TransferPage> {
        self.run(move |c, _, _| paging::page_transfers(c, agent_id, page))
    }
    fn create_console_session(&self, session: ConsoleSessionRow) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| console::create(c, &session))
    }
    fn get_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, Option<ConsoleSessionRow>> {
        self.run(move |c, _, _| console::get(c, &id_hash))
    }
    fn delete_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| console::delete(c, &id_hash))
    }
    fn delete_console_sessions_of_key(&self, key_id: i64) -> StoreFuture<'_, u64> {
        self.run(move |c, _, _| console::delete_of_key(c, key_id))
    }
    fn changes_since(&self, version: i64) -> StoreFuture<'_, ChangeSet> {
        self.run(move |c, _, _| records::changes_since(c, version))
    }
    fn put_response(&self, row: ResponseRow) -> StoreFuture<'_, ()> {
        self.run(move |c, _, _| responses::put(c, &row))
    }
    fn get_response<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, Option<ResponseRow>> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.run(move |c, _, _| responses::get(c, &owner, &id, now_ms))
    }
    fn delete_response<'a>(&'a self, owner: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.run(move |c, _, _| responses::delete(c, &owner, &id))
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|c, _, _| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }
    fn subscribe(&self) -> broadcast::Receiver<Topic> {
        self.inner.changes.subscribe()
    }
}
