//! `Tenancy`: the store plus the in-memory views the request path reads (keys, quota book,
//! prices, combos), and the task that keeps those views in step with the store: a reload on
//! every change notification (other processes' too on PostgreSQL) and every few seconds as a
//! fallback.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kiro_layers::store::{AuditEntry, QuotaSubject, Store, StoreError, Topic};
use kiro_layers::GatewayError;

use super::keys::{Caller, KeyCache, KeyHasher};
use super::limits::{Limits, QuotaBook, Subject};
use super::pricing::PriceTable;

/// A freshly minted API key: the secret is shown once and never stored.
pub struct MintedKey {
    /// The whole key (`sk-<public id><random>`).
    pub secret: String,
    /// The public id stored in clear.
    pub public_id: String,
    /// HMAC of the whole key.
    pub hash: Vec<u8>,
    /// Last four characters, to recognise the key in lists.
    pub suffix: String,
}

/// What the admin API needs from the live account pool.
pub trait PoolControl: Send + Sync + 'static {
    /// Live health and load per account (ids as decimal strings).
    fn status(&self) -> Vec<kiro_layers::pool::AccountStatus>;
    /// Re-reads the accounts from the store (after a create, enable, disable or delete).
    fn reload(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Refreshes one account's access token now.
    fn refresh(&self, account_id: i64) -> BoxFuture<'_, Result<(), GatewayError>>;
    /// A valid credential of one enabled account (refreshed first when due), for the
    /// gateway's own calls about the account (its Kiro usage limits).
    fn credential(
        &self,
        account_id: i64,
    ) -> BoxFuture<'_, Result<kiro_layers::traits::Credential, GatewayError>> {
        let _ = account_id;
        Box::pin(async { Err(GatewayError::no_account("This pool lends no credentials.")) })
    }
}

/// See the module docs.
pub struct Tenancy {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Keys, served from memory.
    pub keys: KeyCache,
    /// Quota and rate counters.
    pub book: QuotaBook,
    /// Prices.
    pub prices: PriceTable,
    /// Combo models: name to ordered members.
    pub combos: Arc<RwLock<HashMap<String, Vec<String>>>>,
    /// Model aliases from the store.
    pub aliases: Arc<RwLock<HashMap<String, String>>>,
    /// Where to reach Cursor when a Cursor account is added.
    pub cursor: super::cursor_accounts::CursorAccountSettings,
    hasher: KeyHasher,
    pool: RwLock<Option<Arc<dyn PoolControl>>>,
    /// One key-and-quota reload at a time: two overlapping reloads could otherwise finish in
    /// the wrong order, and the older snapshot (read before a key was created) would replace
    /// the newer one and make a just-created key unknown until the next reload.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy").finish_non_exhaustive()
    }
}

impl Tenancy {
    /// Views over `store`; `hasher` must be the store's API key hash.
    pub fn new(store: Arc<dyn Store>, keys: KeyCache, hasher: KeyHasher) -> Self {
        Tenancy {
            store,
            keys,
            book: QuotaBook::new(),
            prices: PriceTable::default(),
            combos: Arc::new(RwLock::new(HashMap::new())),
            aliases: Arc::new(RwLock::new(HashMap::new())),
            cursor: super::cursor_accounts::CursorAccountSettings::default(),
            hasher,
            pool: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Connects the live pool (for the admin account views).
    pub fn set_pool(&self, pool: Arc<dyn PoolControl>) {
        if let Ok(mut slot) = self.pool.write() {
            *slot = Some(pool);
        }
    }

    fn pool(&self) -> Option<Arc<dyn PoolControl>> {
        self.pool.read().ok().and_then(|p| p.clone())
    }

    /// Live per-account status (empty without a pool).
    pub fn pool_status(&self) -> Vec<kiro_layers::pool::AccountStatus> {
        self.pool().map(|p| p.status()).unwrap_or_default()
    }

    /// Tells the pool its accounts changed.
    pub async fn pool_changed(&self) {
        if let Some(pool) = self.pool() {
            if let Err(error) = pool.reload().await {
                tracing::warn!("could not reload the account pool: {error}");
            }
        }
    }

    /// Refreshes one account now.
    pub async fn refresh_account(&self, id: i64) -> Result<(), GatewayError> {
        match self.pool() {
            Some(pool) => pool.refresh(id).await,
            None => Err(GatewayError::no_account("No account pool is running.")),
        }
    }

    /// A valid credential of one enabled account (see [`PoolControl::credential`]).
    pub async fn account_credential(
        &self,
        id: i64,
    ) -> Result<kiro_layers::traits::Credential, GatewayError> {
        match self.pool() {
            Some(pool) => pool.credential(id).await,
            None => Err(GatewayError::no_account("No account pool is running.")),
        }
    }

    /// Reloads aliases and combos after an admin change.
    pub async fn models_changed(&self) -> Result<(), StoreError> {
        self.reload_models().await
    }

    async fn reload_models(&self) -> Result<(), StoreError> {
        let combos = self.store.list_combos().await?;
        if let Ok(mut map) = self.combos.write() {
            *map = combos.into_iter().map(|c| (c.name, c.members)).collect();
        }
        let aliases = self.store.list_aliases().await?;
        if let Ok(mut map) = self.aliases.write() {
            *map = aliases
                .into_iter()
                .map(|a| (a.alias.to_ascii_lowercase(), a.model_id))
                .collect();
        }
        Ok(())
    }

    /// A new random key and its hash.
    pub fn mint_key(&self) -> MintedKey {
        let (secret, public_id) = crate::store::crypto::generate_api_key();
        let suffix = crate::store::crypto::key_suffix(&secret);
        MintedKey {
            hash: (self.hasher)(&secret),
            secret,
            public_id,
            suffix,
        }
    }

    /// Reloads every view from the store.
    pub async fn reload(&self) -> Result<(), StoreError> {
        self.reload_keys_and_quota().await?;
        self.prices.load(self.store.list_prices().await?);
        self.reload_models().await
    }

    /// Reloads keys and the quota book (after a key, user, agent or quota change).
    pub async fn reload_keys_and_quota(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let keys = self.store.list_active_keys().await?;
        let users = self.store.list_users(None).await?;
        let agents = self.store.list_agents().await?;
        let mut keep = HashSet::new();
        for key in &keys {
            let subject = Subject::Key(key.id.to_string());
            self.book.merge(
                subject.clone(),
                Limits {
                    quota_limit: key.quota_limit,
                    quota_used: key.quota_used,
                    rpm_limit: key.rpm_limit,
                    max_concurrency: key.max_concurrency,
                },
            );
            keep.insert(subject);
        }
        for user in &users {
            let subject = Subject::User(user.id.to_string());
            self.book.merge(
                subject.clone(),
                Limits {
                    quota_limit: user.quota_limit,
                    quota_used: user.quota_used,
                    rpm_limit: user.rpm_limit,
                    max_concurrency: None,
                },
            );
            keep.insert(subject);
        }
        for agent in &agents {
            // An agent's own keys spend its balance: what is left is the limit.
            let subject = Subject::Agent(agent.id.to_string());
            self.book.set(
                subject.clone(),
                Limits {
                    quota_limit: Some(agent.balance.max(0)),
                    ..Limits::default()
                },
            );
            keep.insert(subject);
        }
        self.book.retain(&keep);
        self.keys.replace(keys);
        Ok(())
    }

    /// Appends an audit entry; a failure is logged, not returned (the change itself was made).
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        object_type: &str,
        object_id: impl ToString,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            actor: caller.actor(),
            action: action.to_owned(),
            object_type: object_type.to_owned(),
            object_id: object_id.to_string(),
            detail,
        };
        if let Err(error) = self.store.append_audit(entry).await {
            tracing::error!("could not write the audit log: {error}");
        }
    }

    /// Keeps the views in step with the store until the returned task is aborted.
    pub fn spawn_sync(self: &Arc<Self>, fallback_every: Duration) -> tokio::task::JoinHandle<()> {
        let tenancy = Arc::clone(self);
        let mut changes = self.store.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(fallback_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let result = tokio::select! {
                    _ = tick.tick() => tenancy.reload().await,
                    change = changes.recv() => match change {
                        Ok(Topic::Keys | Topic::Quota) => tenancy.reload_keys_and_quota().await,
                        Ok(Topic::Models) => tenancy.reload().await,
                        Ok(Topic::Accounts) => {
                            tenancy.pool_changed().await;
                            Ok(())
                        }
                        Ok(_) => Ok(()),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            tenancy.reload().await
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            changes = tenancy.store.subscribe();
                            Ok(())
                        }
                    },
                };
                if let Err(error) = result {
                    tracing::warn!("could not refresh the key and quota caches: {error}");
                }
            }
        })
    }
}

/// The quota subject of a usage charge, for the admin quota API.
pub fn quota_subject(kind: &str, id: i64) -> Result<QuotaSubject, StoreError> {
    match kind {
        "user" => Ok(QuotaSubject::User(id)),
        "key" => Ok(QuotaSubject::Key(id)),
        "agent" => Ok(QuotaSubject::Agent(id)),
        other => Err(StoreError::Invalid(format!(
            "`subject` must be user, key or agent, not `{}`",
            other.chars().take(40).collect::<String>()
        ))),
    }
}
