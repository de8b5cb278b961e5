//! `DbPool`: the account pool over the accounts in the store (plus the credential configured
//! through the environment, which joins the pool). Allocation is the layers' [`RoundRobinPool`]
//! (strict round robin, per-account concurrency cap, rests on 429/402/403, a circuit breaker
//! over consecutive failures, `invalid_grant` disables); this module adds what needs the
//! database:
//!
//! - each Kiro account is a [`RefreshingCredential`] whose [`CredentialStore`] reads the account
//!   row and writes a rotated refresh token back with optimistic concurrency; each Cursor account
//!   is a [`CursorCredential`] (refreshed before its session token expires, one refresh at a
//!   time) whose [`CursorTokenStore`] writes the refreshed session token back, encrypted, with
//!   the machine id and client key stored when the account was added;
//! - outcomes are written to the shared [`AccountState`] (rest, failures, breaker) and
//!   `invalid_grant` disables the account in the store with the reason, so other processes
//!   skip it too; rests and open breakers written by other processes are applied here on
//!   notification (the breaker itself, with its single half-open probe, is the layers pool's);
//! - the round-robin turn is shared with the other processes on the database while there are
//!   any ([`StoreTurn`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use chrono::Utc;
use futures_util::future::BoxFuture;
use kiro_layers::cursor::auth::{CursorCredential, CursorSecrets, CursorTokenStore};
use kiro_layers::cursor::catalog::CatalogKeeper;
use kiro_layers::cursor::headers::CursorConfig;
use kiro_layers::kiro::auth::{CredentialStore, Endpoints, RefreshingCredential, TokenSet};
use kiro_layers::pool::{
    AccountStatus as LiveStatus, CredentialProvider, PoolObserver, PoolPolicy, RoundRobinPool,
};
use kiro_layers::store::{AccountState, AccountStatus, BreakerState, Store, StoreError};
use kiro_layers::traits::{AccountKind, AttemptOutcome, Lease, ResolvedModel, TokenSource};
use kiro_layers::GatewayError;

use super::state::PoolControl;
use super::turn::{StoreTurn, HEARTBEAT};

/// Reads an account row and writes rotated refresh tokens back, only over the version read.
struct DbCredentialStore {
    store: Arc<dyn Store>,
    id: i64,
    version: Mutex<i64>,
}

impl CredentialStore for DbCredentialStore {
    fn describe(&self) -> String {
        format!("database account {}", self.id)
    }

    fn load(&self) -> BoxFuture<'_, Result<TokenSet, GatewayError>> {
        Box::pin(async move {
            let row = self.store.get_account(self.id).await?;
            if let Ok(mut version) = self.version.lock() {
                *version = row.version;
            }
            Ok(TokenSet {
                refresh_token: row.refresh_token,
                client_id: row.client_id,
                client_secret: row.client_secret,
                profile_arn: row.profile_arn,
                sso_region: Some(row.sso_region),
                api_region: Some(row.api_region),
                ..TokenSet::default()
            })
        })
    }

    fn save(&self, tokens: &TokenSet) -> BoxFuture<'_, Result<(), GatewayError>> {
        let refresh_token = tokens.refresh_token.clone();
        Box::pin(async move {
            let expected = self.version.lock().map(|v| *v).unwrap_or(0);
            let won = self
                .store
                .update_refresh_token(self.id, expected, refresh_token)
                .await?;
            if won {
                if let Ok(mut version) = self.version.lock() {
                    *version = expected + 1;
                }
            } else {
                // Another process rotated first; the next refresh re-reads its token.
                tracing::info!(account = self.id, "refresh token was rotated elsewhere");
            }
            Ok(())
        })
    }
}

/// Writes a Cursor account's refreshed session token to its row.
struct DbCursorTokens {
    store: Arc<dyn Store>,
    id: i64,
}

impl CursorTokenStore for DbCursorTokens {
    fn save<'a>(
        &'a self,
        _account_id: &'a str,
        access_token: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            self.store
                .update_session_token(self.id, access_token.to_owned())
                .await
                .map_err(GatewayError::from)
        })
    }
}

/// Writes outcomes to the shared account state.
struct StateWriter {
    store: Arc<dyn Store>,
    /// Accounts whose shared state was last written unhealthy, so that recovery is shared too.
    unhealthy: Mutex<HashSet<i64>>,
}

impl PoolObserver for StateWriter {
    fn outcome(&self, outcome: &AttemptOutcome, account: &LiveStatus) {
        let Ok(id) = account.account_id.parse::<i64>() else {
            return; // the environment credential has no row
        };
        let disable = match outcome {
            AttemptOutcome::InvalidGrant { reason } => Some(reason.clone()),
            _ => None,
        };
        let healthy = account.resting_for.is_none()
            && account.consecutive_failures == 0
            && account.breaker == BreakerState::Closed;
        {
            let Ok(mut unhealthy) = self.unhealthy.lock() else {
                return;
            };
            let was_unhealthy = if healthy {
                unhealthy.remove(&id)
            } else {
                !unhealthy.insert(id)
            };
            // Nothing to share: a healthy account stays healthy.
            if healthy && !was_unhealthy && disable.is_none() {
                return;
            }
        }
        let rest_until = account
            .resting_for
            .and_then(|r| chrono::Duration::from_std(r).ok().map(|d| Utc::now() + d));
        let state = AccountState {
            account_id: id,
            throttled: account.throttled && rest_until.is_some(),
            rest_until,
            consecutive_failures: account.consecutive_failures,
            breaker: account.breaker,
        };
        let store = Arc::clone(&self.store);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = store.put_account_state(state).await {
                    tracing::warn!(account = id, "could not share the account state: {error}");
                }
                if let Some(reason) = disable {
                    let reason = format!("refresh token rejected (invalid_grant): {reason}");
                    if let Err(error) = store
                        .set_account_status(id, AccountStatus::Disabled, Some(reason))
                        .await
                    {
                        tracing::warn!(account = id, "could not disable the account: {error}");
                    }
                }
            });
        }
    }
}

/// How the pool builds credentials.
#[derive(Clone)]
pub struct PoolSettings {
    /// Login and API URLs.
    pub endpoints: Endpoints,
    /// HTTP client for Kiro.
    pub http: reqwest::Client,
    /// User-agent fingerprint.
    pub fingerprint: String,
    /// Rest periods and the per-account concurrency cap.
    pub policy: PoolPolicy,
    /// Where Cursor accounts are served (URL, client version, OAuth client id).
    pub cursor: Arc<CursorConfig>,
    /// Keeps Cursor's models in the catalog while the pool holds a Cursor account (none in
    /// tests that do not look at models).
    pub cursor_catalog: Option<CatalogKeeper>,
}

/// Credentials by account id, with the creation time that tells a re-created account apart.
type CredentialMap = HashMap<i64, (i64, Arc<dyn CredentialProvider>)>;

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct DbPool {
    store: Arc<dyn Store>,
    settings: PoolSettings,
    env: Vec<Arc<dyn CredentialProvider>>,
    pool: Arc<RwLock<RoundRobinPool>>,
    credentials: Arc<RwLock<CredentialMap>>,
    /// One rebuild at a time: two at once (an admin change and its store notification) would
    /// each make a new credential for a new account, and one of them refresh a second time.
    rebuilding: Arc<tokio::sync::Mutex<()>>,
    turn: Arc<StoreTurn>,
}

impl DbPool {
    /// A pool over the store's accounts plus `env` (the environment's credentials, first).
    pub async fn start(
        store: Arc<dyn Store>,
        settings: PoolSettings,
        env: Vec<Arc<dyn CredentialProvider>>,
    ) -> Result<Self, StoreError> {
        let writer = Arc::new(StateWriter {
            store: Arc::clone(&store),
            unhealthy: Mutex::new(HashSet::new()),
        });
        let turn = Arc::new(StoreTurn::new(Arc::clone(&store)));
        if let Err(error) = turn.heartbeat().await {
            tracing::warn!("could not register with the other gateway processes: {error}");
        }
        let pool = RoundRobinPool::new(Vec::new(), settings.policy.clone())
            .with_observer(writer as Arc<dyn PoolObserver>)
            .with_shared_turn(Arc::clone(&turn) as Arc<dyn kiro_layers::pool::SharedTurn>);
        let db_pool = DbPool {
            store,
            settings,
            env,
            pool: Arc::new(RwLock::new(pool)),
            credentials: Arc::new(RwLock::new(HashMap::new())),
            rebuilding: Arc::new(tokio::sync::Mutex::new(())),
            turn,
        };
        db_pool.rebuild().await?;
        Ok(db_pool)
    }

    fn current(&self) -> RoundRobinPool {
        match self.pool.read() {
            Ok(pool) => pool.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the accounts (keeping the credentials, and so the access tokens, of accounts
    /// that did not change) and applies the shared rests.
    pub async fn rebuild(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let rows = self.store.list_accounts().await?;
        let old = self
            .credentials
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        let mut next = HashMap::new();
        let mut providers: Vec<Arc<dyn CredentialProvider>> =
            self.env.iter().map(Arc::clone).collect();
        for row in rows.iter().filter(|r| r.status == AccountStatus::Active) {
            let credential = match old.get(&row.id) {
                Some((created, credential)) if *created == row.created_at.timestamp() => {
                    Arc::clone(credential)
                }
                _ if row.kind == AccountKind::KIRO => self.kiro_credential(row),
                _ if row.kind == AccountKind::CURSOR => self.cursor_credential(row),
                _ => {
                    tracing::warn!(account = row.id, kind = %row.kind, "this gateway has no upstream for the account's kind; skipped");
                    continue;
                }
            };
            providers.push(Arc::clone(&credential));
            next.insert(row.id, (row.created_at.timestamp(), credential));
        }
        // A Cursor account that joins (at start or when added) fetches Cursor's catalog, so its
        // models resolve without a restart.
        if let Some(catalog) = &self.settings.cursor_catalog {
            catalog.set_accounts(providers.clone());
        }
        let mut policy = self.settings.policy.clone();
        // One cap for the whole pool: the smallest any account asks for.
        if let Some(cap) = rows.iter().filter_map(|r| r.max_concurrency).min() {
            policy.max_concurrency_per_account = cap as usize;
        }
        // Unchanged accounts keep their live state (leases out, rests, breaker and its probe).
        let pool = self.current().rebuilt(providers, policy);
        if let Ok(mut slot) = self.pool.write() {
            *slot = pool;
        }
        if let Ok(mut creds) = self.credentials.write() {
            *creds = next;
        }
        self.apply_shared_state().await
    }

    fn kiro_credential(&self, row: &kiro_layers::store::AccountRow) -> Arc<dyn CredentialProvider> {
        Arc::new(RefreshingCredential::new(
            row.id.to_string(),
            Arc::new(DbCredentialStore {
                store: Arc::clone(&self.store),
                id: row.id,
                version: Mutex::new(row.version),
            }),
            self.settings.endpoints.clone(),
            row.sso_region.clone(),
            None,
            row.profile_arn.clone(),
            self.settings.http.clone(),
            self.settings.fingerprint.clone(),
        ))
    }

    fn cursor_credential(
        &self,
        row: &kiro_layers::store::AccountRow,
    ) -> Arc<dyn CredentialProvider> {
        Arc::new(CursorCredential::new(
            row.id.to_string(),
            CursorSecrets {
                access_token: row.access_token.clone().unwrap_or_default(),
                refresh_token: Some(row.refresh_token.clone()).filter(|t| !t.is_empty()),
                machine_id: row.machine_id.clone(),
                client_key: row.client_key.clone(),
            },
            Arc::clone(&self.settings.cursor),
            self.settings.http.clone(),
            Arc::new(DbCursorTokens {
                store: Arc::clone(&self.store),
                id: row.id,
            }),
        ))
    }

    /// Applies rests and open breakers other processes wrote.
    pub async fn apply_shared_state(&self) -> Result<(), StoreError> {
        let states = self.store.list_account_states().await?;
        let pool = self.current();
        let now = Utc::now();
        for state in states {
            let Some(left) = state
                .rest_until
                .filter(|u| *u > now)
                .and_then(|until| (until - now).to_std().ok())
            else {
                continue;
            };
            let id = state.account_id.to_string();
            if state.breaker == BreakerState::Open {
                pool.open_breaker(&id, left);
            } else {
                pool.rest_account(&id, left, state.throttled);
            }
        }
        Ok(())
    }

    /// True while other processes on the database share the round-robin turn.
    pub fn shares_turn(&self) -> bool {
        kiro_layers::pool::SharedTurn::is_shared(&*self.turn)
    }

    /// Leaves the list of gateway processes (graceful shutdown).
    pub async fn leave(&self) {
        self.turn.leave().await;
    }

    /// The current round-robin pool (replaced when the accounts change).
    pub fn snapshot(&self) -> RoundRobinPool {
        self.current()
    }

    /// Live status per account.
    pub fn status(&self) -> Vec<LiveStatus> {
        self.current().status()
    }

    /// Keeps the pool in step with the store, and this process's heartbeat going, until the
    /// task is aborted.
    pub fn spawn_sync(&self) -> tokio::task::JoinHandle<()> {
        let pool = self.clone();
        let mut changes = self.store.subscribe();
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let result = tokio::select! {
                    _ = heartbeat.tick() => pool.turn.heartbeat().await.map(|_| ()),
                    change = changes.recv() => match change {
                        Ok(kiro_layers::store::Topic::Accounts) => pool.rebuild().await,
                        Ok(kiro_layers::store::Topic::AccountState) => {
                            pool.apply_shared_state().await
                        }
                        Ok(kiro_layers::store::Topic::Instances) => {
                            pool.turn.heartbeat().await.map(|_| ())
                        }
                        Ok(_) => Ok(()),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            match pool.rebuild().await {
                                Ok(()) => pool.turn.heartbeat().await.map(|_| ()),
                                error => error,
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            changes = pool.store.subscribe();
                            Ok(())
                        }
                    },
                };
                if let Err(error) = result {
                    tracing::warn!("could not refresh the account pool: {error}");
                }
            }
        })
    }
}

impl TokenSource for DbPool {
    fn acquire<'a>(&'a self, kiro_model_id: &'a str) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        let pool = self.current();
        let model = kiro_model_id.to_owned();
        Box::pin(async move { pool.acquire(&model).await })
    }

    fn acquire_for<'a>(
        &'a self,
        model: &'a ResolvedModel,
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        let pool = self.current();
        Box::pin(async move { pool.acquire_for(model).await })
    }
}

impl PoolControl for DbPool {
    fn status(&self) -> Vec<LiveStatus> {
        DbPool::status(self)
    }

    fn reload(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.rebuild())
    }

    fn refresh(&self, account_id: i64) -> BoxFuture<'_, Result<(), GatewayError>> {
        let credential = self
            .credentials
            .read()
            .ok()
            .and_then(|c| c.get(&account_id).map(|(_, c)| Arc::clone(c)));
        Box::pin(async move {
            match credential {
                Some(credential) => credential.force_refresh().await.map(|_| ()),
                None => Err(GatewayError::conflict(format!(
                    "Account {account_id} is disabled; enable it first."
                ))),
            }
        })
    }

    fn credential(
        &self,
        account_id: i64,
    ) -> BoxFuture<'_, Result<kiro_layers::traits::Credential, GatewayError>> {
        let credential = self
            .credentials
            .read()
            .ok()
            .and_then(|c| c.get(&account_id).map(|(_, c)| Arc::clone(c)));
        Box::pin(async move {
            match credential {
                Some(credential) => credential.current().await,
                None => Err(GatewayError::conflict(format!(
                    "Account {account_id} is disabled; enable it first."
                ))),
            }
        })
    }
}
