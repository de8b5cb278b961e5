//! The PostgreSQL backend: tokio-postgres through a bb8 pool. Every mutation bumps its topic's
//! row in `changes` (from one sequence) and sends `NOTIFY kiro_gateway_changes`; a dedicated
//! listening connection turns notifications from every process into [`Store::subscribe`]
//! events, and reconnects (announcing every topic, since some may have been missed) when the
//! connection drops. Rows are always locked in the order agents, users, api_keys, changes, so
//! concurrent transactions cannot deadlock.

use std::sync::Arc;
use std::time::Duration;

use bb8::{Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use futures_util::StreamExt;
use kiro_layers::store::*;
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Config, NoTls, Transaction};

use super::{redact_url, Migration, Secret, POSTGRES_MIGRATIONS};

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

const CHANNEL: &str = "kiro_gateway_changes";
/// Serialises migrations of several processes starting at once.
const MIGRATION_LOCK: i64 = 0x6b69_726f_6777;

/// The error type inside the backend: lets `?` take both driver and store errors.
pub(crate) struct PgErr(pub(crate) StoreError);

impl From<tokio_postgres::Error> for PgErr {
    fn from(error: tokio_postgres::Error) -> Self {
        PgErr(StoreError::Backend(format!("postgres: {error}")))
    }
}

impl From<RunError<tokio_postgres::Error>> for PgErr {
    fn from(error: RunError<tokio_postgres::Error>) -> Self {
        PgErr(StoreError::Backend(format!("postgres pool: {error}")))
    }
}

impl From<StoreError> for PgErr {
    fn from(error: StoreError) -> Self {
        PgErr(error)
    }
}

/// Result inside the backend.
pub(crate) type R<T> = Result<T, PgErr>;

/// Turns a unique violation into `Conflict(message)`.
pub(crate) fn unique<T>(
    result: Result<T, tokio_postgres::Error>,
    message: impl FnOnce() -> String,
) -> R<T> {
    match result {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(PgErr(StoreError::Conflict(message())))
        }
        other => Ok(other?),
    }
}

/// Bumps `topic` inside the transaction; the notification goes out at commit.
pub(crate) async fn bump(tx: &Transaction<'_>, topic: Topic) -> R<()> {
    tx.execute(
        "UPDATE changes SET version = nextval('change_seq') WHERE topic = $1 \
         RETURNING pg_notify('kiro_gateway_changes', $1)",
        &[&topic.as_str()],
    )
    .await?;
    Ok(())
}

type PgPool = Pool<PostgresConnectionManager<NoTls>>;
pub(crate) type Conn<'a> = PooledConnection<'a, PostgresConnectionManager<NoTls>>;

struct Inner {
    pool: PgPool,
    secret: Secret,
    changes: broadcast::Sender<Topic>,
    /// Dropping it stops the listener task.
    _stop: oneshot::Sender<()>,
}

/// PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl PgStore {
    /// Connects, applies the first `upto` migrations and starts listening for changes.
    pub async fn connect(url: &str, secret: Secret, upto: usize) -> Result<Self, String> {
        let shown = redact_url(url);
        let config: Config = url
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL {shown}: {e}"))?;
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = Pool::builder()
            .max_size(16)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .await
            .map_err(|e| format!("could not connect to {shown}: {e}"))?;
        {
            let mut conn = pool
                .get()
                .await
                .map_err(|e| format!("could not connect to {shown}: {e}"))?;
            let migrations = &POSTGRES_MIGRATIONS[..upto.min(POSTGRES_MIGRATIONS.len())];
            migrate(&mut conn, migrations).await.map_err(|e| {
                let detail = e.as_db_error().map(|d| format!(": {}", d.message()));
                format!(
                    "migrating {shown} failed: {e}{}",
                    detail.unwrap_or_default()
                )
            })?;
        }
        let (changes, _) = broadcast::channel(256);
        let (stop_tx, stop_rx) = oneshot::channel();
        let listener = Listener::connect(&config)
            .await
            .map_err(|e| format!("could not LISTEN on {shown}: {e}"))?;
        tokio::spawn(listen(config, listener, changes.clone(), stop_rx));
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                secret,
                changes,
                _stop: stop_tx,
            }),
        })
    }

    pub(crate) async fn conn(&self) -> R<Conn<'_>> {
        Ok(self.inner.pool.get().await?)
    }

    async fn ping_(&self) -> R<()> {
        self.conn().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub(crate) fn secret(&self) -> &Secret {
        &self.inner.secret
    }
}

async fn migrate(
    conn: &mut Conn<'_>,
    migrations: &[Migration],
) -> Result<(), tokio_postgres::Error> {
    // Processes starting together must not race on CREATE TABLE IF NOT EXISTS (PostgreSQL can
    // fail one of two concurrent creators): the whole migration runs under a session lock.
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply_migrations(conn, migrations).await;
    let unlocked = conn
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result.and(unlocked.map(|_| ()))
}

async fn apply_migrations(
    conn: &mut Conn<'_>,
    migrations: &[Migration],
) -> Result<(), tokio_postgres::Error> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    for (index, (name, sql)) in migrations.iter().enumerate() {
        let version = index as i64 + 1;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, name],
            )
            .await?;
            tracing::info!(migration = name, "applied database migration");
        }
        tx.commit().await?;
    }
    Ok(())
}

/// A connection that has run `LISTEN`, and the stream of its messages.
struct Listener {
    _client: tokio_postgres::Client,
    messages: futures_util::stream::BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>,
}

impl Listener {
    async fn connect(config: &Config) -> Result<Self, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let mut messages =
            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
        // The connection only makes progress while polled: run LISTEN while draining messages.
        {
            let command = format!("LISTEN {CHANNEL}");
            let listen = client.batch_execute(&command);
            tokio::pin!(listen);
            loop {
                tokio::select! {
                    result = &mut listen => { result?; break; }
                    message = messages.next() => {
                        if let Some(Err(e)) = message { return Err(e); }
                    }
                }
            }
        }
        Ok(Listener {
            _client: client,
            messages,
        })
    }
}

/// Forwards notifications until the store is dropped; reconnects after failures.
async fn listen(
    config: Config,
    mut listener: Listener,
    changes: broadcast::Sender<Topic>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            _ = &mut stop => return,
            message = listener.messages.next() => message,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if let Ok(topic) = Topic::parse(n.payload()) {
                    let _ = changes.send(topic);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                tracing::warn!("lost the PostgreSQL LISTEN connection; reconnecting");
                listener = loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if let Ok(listener) = Listener::connect(&config).await {
                        break listener;
                    }
                };
                for topic in [
                    Topic::Keys,
                    Topic::Accounts,
                    Topic::AccountState,
                    Topic::Models,
                    Topic::Quota,
                    Topic::Instances,
                ] {
                    let _ = changes.send(topic);
                }
            }
        }
    }
}

/// Runs an async backend call and unwraps its error.
macro_rules! call {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        Box::pin(async move { $self.$method($($arg),*).await.map_err(|e| e.0) })
    };
}

impl Store for PgStore {
    fn create_account(&self, account: NewAccount) -> StoreFuture<'_, AccountRow> {
        call!(self.create_account_(account))
    }
    fn list_accounts(&self) -> StoreFuture<'_, Vec<AccountRow>> {
        call!(self.list_accounts_())
    }
    fn get_account(&self, id: i64) -> StoreFuture<'_, AccountRow> {
        call!(self.get_account_(id))
    }
    fn set_account_status(
        &self,
        id: i64,
        status: AccountStatus,
        reason: Option<String>,
    ) -> StoreFuture<'_, ()> {
        call!(self.set_account_status_(id, status, reason))
    }
    fn delete_account(&self, id: i64) -> StoreFuture<'_, ()> {
        call!(self.delete_account_(id))
    }
    fn update_refresh_token(
        &self,
        id: i64,
        expected_version: i64,
        new_refresh_token: String,
    ) -> StoreFuture<'_, bool> {
        call!(self.update_refresh_token_(id, expected_version, new_refresh_token))
    }
    fn update_session_token(&self, id: i64, access_token: String) -> StoreFuture<'_, ()> {
        call!(self.update_session_token_(id, access_token))
    }
    fn get_account_state(&self, account_id: i64) -> StoreFuture<'_, AccountState> {
        call!(self.get_account_state_(account_id))
    }
    fn list_account_states(&self) -> StoreFuture<'_, Vec<AccountState>> {
        call!(self.list_account_states_())
    }
    fn put_account_state(&self, state: AccountState) -> StoreFuture<'_, ()> {
        call!(self.put_account_state_(state))
    }
    fn put_account_login(&self, login: AccountLogin) -> StoreFuture<'_, ()> {
        call!(self.put_account_login_(login))
    }
    fn get_account_login(&self, account_id: i64) -> StoreFuture<'_, Option<AccountLogin>> {
        call!(self.get_account_login_(account_id))
    }
    fn heartbeat(&self, instance: &str, alive_within: Duration) -> StoreFuture<'_, u32> {
        let instance = instance.to_owned();
        Box::pin(async move {
            self.heartbeat_(&instance, alive_within)
                .await
                .map_err(|e| e.0)
        })
    }
    fn leave(&self, instance: &str) -> StoreFuture<'_, ()> {
        let instance = instance.to_owned();
        Box::pin(async move { self.leave_(&instance).await.map_err(|e| e.0) })
    }
    fn next_turn(&self) -> StoreFuture<'_, i64> {
        call!(self.next_turn_())
    }
    fn create_agent(&self, name: &str) -> StoreFuture<'_, AgentRow> {
        let name = name.to_owned();
        call!(self.create_agent_(name))
    }
    fn get_agent(&self, id: i64) -> StoreFuture<'_, AgentRow> {
        call!(self.get_agent_(id))
    }
    fn list_agents(&self) -> StoreFuture<'_, Vec<AgentRow>> {
        call!(self.list_agents_())
    }
    fn set_agent_status(&self, id: i64, status: Status) -> StoreFuture<'_, ()> {
        call!(self.set_agent_status_(id, status))
    }
    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRow> {
        call!(self.create_user_(user))
    }
    fn get_user(&self, id: i64) -> StoreFuture<'_, UserRow> {
        call!(self.get_user_(id))
    }
    fn list_users(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<UserRow>> {
        call!(self.list_users_(agent_id))
    }
    fn update_user(&self, id: i64, update: UserUpdate) -> StoreFuture<'_, UserRow> {
        call!(self.update_user_(id, update))
    }
    fn delete_user(&self, id: i64) -> StoreFuture<'_, ()> {
        call!(self.delete_user_(id))
    }
    fn create_api_key(&self, key: NewApiKey) -> StoreFuture<'_, ApiKeyRow> {
        call!(self.create_api_key_(key))
    }
    fn list_api_keys(&self, owner: KeyOwner) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        call!(self.list_api_keys_(owner))
    }
    fn get_api_key(&self, id: i64) -> StoreFuture<'_, ApiKeyRow> {
        call!(self.get_api_key_(id))
    }
    fn get_api_key_by_public_id(&self, public_id: &str) -> StoreFuture<'_, ApiKeyRow> {
        let public_id = public_id.to_owned();
        call!(self.get_api_key_by_public_id_(public_id))
    }
    fn revoke_api_key(&self, id: i64) -> StoreFuture<'_, ()> {
        call!(self.revoke_api_key_(id))
    }
    fn list_active_keys(&self) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        call!(self.list_active_keys_())
    }
    fn charge<'a>(&'a self, lines: &'a [ChargeLine]) -> StoreFuture<'a, ()> {
        call!(self.charge_(lines))
    }
    fn transfer_quota(
        &self,
        agent_id: i64,
        user_id: i64,
        amount: i64,
    ) -> StoreFuture<'_, TransferRow> {
        call!(self.transfer_quota_(agent_id, user_id, amount))
    }
    fn list_transfers(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<TransferRow>> {
        call!(self.list_transfers_(agent_id))
    }
    fn set_quota(&self, subject: QuotaSubject, limit: Option<i64>) -> StoreFuture<'_, ()> {
        call!(self.set_quota_(subject, limit))
    }
    fn add_quota(&self, subject: QuotaSubject, amount: i64) -> StoreFuture<'_, ()> {
        call!(self.add_quota_(subject, amount))
    }
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> StoreFuture<'a, u64> {
        call!(self.insert_usage_(rows))
    }
    fn query_usage(
        &self,
        filter: UsageFilter,
        group_by: UsageGroup,
    ) -> StoreFuture<'_, Vec<UsageAggregate>> {
        call!(self.query_usage_(filter, group_by))
    }
    fn set_alias(&self, alias: &str, model_id: &str) -> StoreFuture<'_, ()> {
        let (alias, model_id) = (alias.to_owned(), model_id.to_owned());
        call!(self.set_alias_(alias, model_id))
    }
    fn delete_alias(&self, alias: &str) -> StoreFuture<'_, ()> {
        let alias = alias.to_owned();
        call!(self.delete_named_(records::Named::Alias, alias))
    }
    fn list_aliases(&self) -> StoreFuture<'_, Vec<AliasRow>> {
        call!(self.list_aliases_())
    }
    fn set_combo(&self, name: &str, members: Vec<String>) -> StoreFuture<'_, ()> {
        let name = name.to_owned();
        call!(self.set_combo_(name, members))
    }
    fn delete_combo(&self, name: &str) -> StoreFuture<'_, ()> {
        let name = name.to_owned();
        call!(self.delete_named_(records::Named::Combo, name))
    }
    fn list_combos(&self) -> StoreFuture<'_, Vec<ComboRow>> {
        call!(self.list_combos_())
    }
    fn set_price(&self, model_id: &str, price: Price) -> StoreFuture<'_, ()> {
        let model_id = model_id.to_owned();
        call!(self.set_price_(model_id, price))
    }
    fn delete_price(&self, model_id: &str) -> StoreFuture<'_, ()> {
        let model_id = model_id.to_owned();
        call!(self.delete_named_(records::Named::Price, model_id))
    }
    fn list_prices(&self) -> StoreFuture<'_, Vec<PriceRow>> {
        call!(self.list_prices_())
    }
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        call!(self.append_audit_(entry))
    }
    fn list_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditRow>> {
        call!(self.list_audit_(limit))
    }
    fn put_usage_limits(
        &self,
        account_id: i64,
        outcome: Result<LimitSnapshot, String>,
        at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        call!(self.put_usage_limits_(account_id, outcome, at))
    }
    fn create_login_flow(
        &self,
        row: LoginFlowRow,
        lease: Duration,
        max_live: u32,
    ) -> StoreFuture<'_, ()> {
        call!(self.create_login_flow_(row, lease, max_live))
    }
    fn get_login_flow(&self, id: &str) -> StoreFuture<'_, Option<LoginFlowRow>> {
        let id = id.to_owned();
        Box::pin(async move { self.get_login_flow_(&id).await.map_err(|e| e.0) })
    }
    fn update_login_flow(&self, row: LoginFlowRow, expected_version: i64) -> StoreFuture<'_, bool> {
        call!(self.update_login_flow_(row, expected_version))
    }
    fn lease_login_flow(&self, id: &str, owner: &str, lease: Duration) -> StoreFuture<'_, bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        Box::pin(async move {
            self.lease_login_flow_(&id, &owner, lease)
                .await
                .map_err(|e| e.0)
        })
    }
    fn orphan_login_flows(&self) -> StoreFuture<'_, Vec<String>> {
        call!(self.orphan_login_flows_())
    }
    fn sweep_login_flows(&self, keep: Duration) -> StoreFuture<'_, u64> {
        call!(self.sweep_login_flows_(keep))
    }
    fn list_usage_limits(&self) -> StoreFuture<'_, Vec<AccountUsageLimits>> {
        call!(self.list_usage_limits_())
    }
    fn page_users(&self, query: UserQuery, page: PageRequest) -> StoreFuture<'_, UserPage> {
        call!(self.page_users_(query, page))
    }
    fn page_api_keys(&self, owner: KeyQuery, page: PageRequest) -> StoreFuture<'_, KeyPage> {
        call!(self.page_api_keys_(owner, page))
    }
    fn page_audit(&self, query: AuditQuery, page: PageRequest) -> StoreFuture<'_, AuditPage> {
        call!(self.page_audit_(query, page))
    }
    fn page_transfers(
        &self,
        agent_id: TransferQuery,
        page: PageRequest,
    ) -> StoreFuture<'_, TransferPage> {
        call!(self.page_transfers_(agent_id, page))
    }
    fn create_console_session(&self, session: ConsoleSessionRow) -> StoreFuture<'_, ()> {
        call!(self.create_console_session_(session))
    }
    fn get_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, Option<ConsoleSessionRow>> {
        call!(self.get_console_session_(id_hash))
    }
    fn delete_console_session(&self, id_hash: Vec<u8>) -> StoreFuture<'_, ()> {
        call!(self.delete_console_session_(id_hash))
    }
    fn delete_console_sessions_of_key(&self, key_id: i64) -> StoreFuture<'_, u64> {
        call!(self.delete_console_sessions_of_key_(key_id))
    }
    fn changes_since(&self, version: i64) -> StoreFuture<'_, ChangeSet> {
        call!(self.changes_since_(version))
    }
    fn put_response(&self, row: ResponseRow) -> StoreFuture<'_, ()> {
        call!(self.put_response_(row))
    }
    fn get_response<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, Option<ResponseRow>> {
        call!(self.get_response_(owner, id, now_ms))
    }
    fn delete_response<'a>(&'a self, owner: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        call!(self.delete_response_(owner, id))
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        call!(self.ping_())
    }
    fn subscribe(&self) -> broadcast::Receiver<Topic> {
        self.inner.changes.subscribe()
    }
}
