//! A store that can be switched into failure modes, around a real backend: an outage (usage
//! inserts and pings fail fast, as against a stopped server), a bad spell with the database up
//! (inserts fail, pings answer), or lost acknowledgements (the insert commits, then reports a
//! connection error, as when the connection drops before the reply).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiro_layers::store::*;

/// What the next usage insert does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Everything works.
    Up = 0,
    /// Inserts and pings fail: the server is unreachable.
    Down = 1,
    /// Inserts fail, pings answer: something is wrong with the batch or the table.
    Refusing = 2,
    /// Inserts commit, then report a connection error.
    LosingAcks = 3,
}

pub struct FlakyStore {
    pub inner: Arc<dyn Store>,
    mode: AtomicU8,
    /// Insert attempts seen, whatever their outcome.
    pub inserts: AtomicU64,
    /// Acknowledgements still to lose in `LosingAcks` mode (then it behaves as `Up`).
    pub acks_to_lose: AtomicU32,
}

fn unreachable() -> StoreError {
    StoreError::Backend("postgres pool: connection refused (flaky test store)".into())
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(FlakyStore {
            inner,
            mode: AtomicU8::new(Mode::Up as u8),
            inserts: AtomicU64::new(0),
            acks_to_lose: AtomicU32::new(0),
        })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Down,
            2 => Mode::Refusing,
            3 => Mode::LosingAcks,
            _ => Mode::Up,
        }
    }
}

impl Store for FlakyStore {
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.inserts.fetch_add(1, Ordering::SeqCst);
            match self.mode() {
                Mode::Up => self.inner.insert_usage(rows).await,
                Mode::Down => Err(unreachable()),
                Mode::Refusing => Err(StoreError::Backend("deadlock detected (flaky)".into())),
                Mode::LosingAcks => {
                    let inserted = self.inner.insert_usage(rows).await?;
                    let lose = self
                        .acks_to_lose
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if lose {
                        Err(StoreError::Backend("connection closed (flaky)".into()))
                    } else {
                        Ok(inserted)
                    }
                }
            }
        })
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            match self.mode() {
                Mode::Down => Err(unreachable()),
                _ => self.inner.ping().await,
            }
        })
    }

    // Everything else goes straight through.
    fn create_account(&self, a: NewAccount) -> StoreFuture<'_, AccountRow> {
        self.inner.create_account(a)
    }
    fn list_accounts(&self) -> StoreFuture<'_, Vec<AccountRow>> {
        self.inner.list_accounts()
    }
    fn get_account(&self, id: i64) -> StoreFuture<'_, AccountRow> {
        self.inner.get_account(id)
    }
    fn set_account_status(
        &self,
        id: i64,
        status: AccountStatus,
        reason: Option<String>,
    ) -> StoreFuture<'_, ()> {
        self.inner.set_account_status(id, status, reason)
    }
    fn delete_account(&self, id: i64) -> StoreFuture<'_, ()> {
        self.inner.delete_account(id)
    }
    fn update_refresh_token(&self, id: i64, v: i64, token: String) -> StoreFuture<'_, bool> {
        self.inner.update_refresh_token(id, v, token)
    }
    fn update_session_token(&self, id: i64, token: String) -> StoreFuture<'_, ()> {
        self.inner.update_session_token(id, token)
    }
    fn get_account_state(&self, id: i64) -> StoreFuture<'_, AccountState> {
        self.inner.get_account_state(id)
    }
    fn heartbeat(&self, instance: &str, alive_within: Duration) -> StoreFuture<'_, u32> {
        self.inner.heartbeat(instance, alive_within)
    }
    fn leave(&self, instance: &str) -> StoreFuture<'_, ()> {
        self.inner.leave(instance)
    }
    fn next_turn(&self) -> StoreFuture<'_, i64> {
        self.inner.next_turn()
    }
    fn list_account_states(&self) -> StoreFuture<'_, Vec<AccountState>> {
        self.inner.list_account_states()
    }
    fn put_account_state(&self, state: AccountState) -> StoreFuture<'_, ()> {
        self.inner.put_account_state(state)
    }
    fn create_agent(&self, name: &str) -> StoreFuture<'_, AgentRow> {
        self.inner.create_agent(name)
    }
    fn get_agent(&self, id: i64) -> StoreFuture<'_, AgentRow> {
        self.inner.get_agent(id)
    }
    fn list_agents(&self) -> StoreFuture<'_, Vec<AgentRow>> {
        self.inner.list_agents()
    }
    fn set_agent_status(&self, id: i64, status: Status) -> StoreFuture<'_, ()> {
        self.inner.set_agent_status(id, status)
    }
    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRow> {
        self.inner.create_user(user)
    }
    fn get_user(&self, id: i64) -> StoreFuture<'_, UserRow> {
        self.inner.get_user(id)
    }
    fn list_users(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<UserRow>> {
        self.inner.list_users(agent_id)
    }
    fn update_user(&self, id: i64, update: UserUpdate) -> StoreFuture<'_, UserRow> {
        self.inner.update_user(id, update)
    }
    fn delete_user(&self, id: i64) -> StoreFuture<'_, ()> {
        self.inner.delete_user(id)
    }
    fn create_api_key(&self, key: NewApiKey) -> StoreFuture<'_, ApiKeyRow> {
        self.inner.create_api_key(key)
    }
    fn list_api_keys(&self, owner: KeyOwner) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        self.inner.list_api_keys(owner)
    }
    fn get_api_key(&self, id: i64) -> StoreFuture<'_, ApiKeyRow> {
        self.inner.get_api_key(id)
    }
    fn get_api_key_by_public_id(&self, public_id: &str) -> StoreFuture<'_, ApiKeyRow> {
        self.inner.get_api_key_by_public_id(public_id)
    }
    fn revoke_api_key(&self, id: i64) -> StoreFuture<'_, ()> {
        self.inner.revoke_api_key(id)
    }
    fn list_active_keys(&self) -> StoreFuture<'_, Vec<ApiKeyRow>> {
        self.inner.list_active_keys()
    }
    fn charge<'a>(&'a self, lines: &'a [ChargeLine]) -> StoreFuture<'a, ()> {
        self.inner.charge(lines)
    }
    fn transfer_quota(&self, agent: i64, user: i64, amount: i64) -> StoreFuture<'_, TransferRow> {
        self.inner.transfer_quota(agent, user, amount)
    }
    fn list_transfers(&self, agent_id: Option<i64>) -> StoreFuture<'_, Vec<TransferRow>> {
        self.inner.list_transfers(agent_id)
    }
    fn set_quota(&self, subject: QuotaSubject, limit: Option<i64>) -> StoreFuture<'_, ()> {
        self.inner.set_quota(subject, limit)
    }
    fn add_quota(&self, subject: QuotaSubject, amount: i64) -> StoreFuture<'_, ()> {
        self.inner.add_quota(subject, amount)
    }
    fn query_usage(&self, f: UsageFilter, g: UsageGroup) -> StoreFuture<'_, Vec<UsageAggregate>> {
        self.inner.query_usage(f, g)
    }
    fn set_alias(&self, alias: &str, model_id: &str) -> StoreFuture<'_, ()> {
        self.inner.set_alias(alias, model_id)
    }
    fn delete_alias(&self, alias: &str) -> StoreFuture<'_, ()> {
        self.inner.delete_alias(alias)
    }
    fn list_aliases(&self) -> StoreFuture<'_, Vec<AliasRow>> {
        self.inner.list_aliases()
    }
    fn set_combo(&self, name: &str, members: Vec<String>) -> StoreFuture<'_, ()> {
        self.inner.set_combo(name, members)
    }
    fn delete_combo(&self, name: &str) -> StoreFuture<'_, ()> {
        self.inner.delete_combo(name)
    }
    fn list_combos(&self) -> StoreFuture<'_, Vec<ComboRow>> {
        self.inner.list_combos()
    }
    fn set_price(&self, model_id: &str, price: Price) -> StoreFuture<'_, ()> {
        self.inner.set_price(model_id, price)
    }
    fn delete_price(&self, model_id: &str) -> StoreFuture<'_, ()> {
        self.inner.delete_price(model_id)
    }
    fn list_prices(&self) -> StoreFuture<'_, Vec<PriceRow>> {
        self.inner.list_prices()
    }
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        self.inner.append_audit(entry)
    }
    fn list_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditRow>> {
        self.inner.list_audit(limit)
    }
    fn create_console_session(&self, s: ConsoleSessionRow) -> StoreFuture<'_, ()> {
        self.inner.create_console_session(s)
    }
    fn get_console_session(&self, h: Vec<u8>) -> StoreFuture<'_, Option<ConsoleSessionRow>> {
        self.inner.get_console_session(h)
    }
    fn delete_console_session(&self, h: Vec<u8>) -> StoreFuture<'_, ()> {
        self.inner.delete_console_session(h)
    }
    fn delete_console_sessions_of_key(&self, key_id: i64) -> StoreFuture<'_, u64> {
        self.inner.delete_console_sessions_of_key(key_id)
    }
    fn changes_since(&self, version: i64) -> StoreFuture<'_, ChangeSet> {
        self.inner.changes_since(version)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Topic> {
        self.inner.subscribe()
    }
}
