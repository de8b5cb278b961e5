//! Assembling the tenancy from the serve options: open the store, load the caches, start the
//! pool, the usage writer and the sync tasks. `app::assemble` calls [`start`] and swaps the
//! returned pieces into the stack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiro_layers::cursor::catalog::CatalogKeeper;
use kiro_layers::cursor::headers::CursorConfig;
use kiro_layers::kiro::auth::Endpoints;
use kiro_layers::models::ModelRegistry;
use kiro_layers::pool::CredentialProvider;
use kiro_layers::store::Store;
use kiro_layers::traits::{ModelCatalog, UsageRecord, UsageSink};

use super::cursor_accounts::CursorAccountSettings;
use super::keys::{KeyCache, KeyHasher};
use super::models::TenantCatalog;
use super::pool::{DbPool, PoolSettings};
use super::pricing::{ChargingSink, PricedSink};
use super::shared_limits::SharedLimits;
use super::state::{PoolControl, Tenancy};
use crate::config::ServeArgs;
use crate::store::crypto::{hash_api_key, Secret};
use crate::store::usage_writer::usage_row;
use crate::store::{UsageWriter, UsageWriterConfig, UsageWriterHandle};

/// How often the caches reload even without a change notification.
pub const FALLBACK_RELOAD: Duration = Duration::from_secs(30);

/// The running tenancy.
pub struct TenancyRuntime {
    /// Store and caches.
    pub tenancy: Arc<Tenancy>,
    /// The account pool.
    pub pool: DbPool,
    /// Model catalog with the store's aliases and combos.
    pub models: Arc<TenantCatalog>,
    /// Prices, charges and queues usage records.
    pub usage: Arc<dyn UsageSink>,
    /// Rate and concurrency counters shared with other processes, when configured.
    pub shared_limits: Option<Arc<SharedLimits>>,
    writer: Mutex<Option<UsageWriterHandle>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TenancyRuntime {
    /// Writes every queued usage record, stops the background tasks and leaves the list of
    /// gateway processes.
    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.pool.leave().await;
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let stats = handle.shutdown().await;
            tracing::info!(written = stats.written(), "usage queue drained");
        }
    }
}

impl Drop for TenancyRuntime {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for TenancyRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenancyRuntime")
    }
}

impl PricedSink for UsageWriter {
    fn record_priced(&self, record: UsageRecord, cost_micro: i64) {
        self.push(usage_row(record, cost_micro));
    }
}

/// Records go to `first` (logs, tests) and to `second` (the store).
struct Tee(Arc<dyn UsageSink>, Arc<dyn UsageSink>);

impl UsageSink for Tee {
    fn record(&self, record: UsageRecord) {
        self.0.record(record.clone());
        self.1.record(record);
    }
}

/// Opens the store the options name; `None` for `--database-url none`.
pub async fn open_store(args: &ServeArgs) -> Result<Option<(Arc<dyn Store>, Secret)>, String> {
    if args.database_url.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (secret, source) = Secret::load(&args.secret_key_file)?;
    tracing::info!(?source, "server secret loaded");
    let store = crate::store::open(&args.database_url, &secret).await?;
    tracing::info!("database: {}", crate::store::redact_url(&args.database_url));
    Ok(Some((store, secret)))
}

/// The key hash of the store for `secret`.
pub fn hasher(secret: Secret) -> KeyHasher {
    Arc::new(move |key: &str| hash_api_key(&secret, key).to_vec())
}

/// Starts everything; `log_sink` still receives every usage record.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    args: &ServeArgs,
    env_credentials: Vec<Arc<dyn CredentialProvider>>,
    http: reqwest::Client,
    endpoints: Endpoints,
    fingerprint: String,
    models: ModelRegistry,
    cursor: Arc<CursorConfig>,
    cursor_catalog: CatalogKeeper,
    log_sink: Arc<dyn UsageSink>,
) -> Result<Option<TenancyRuntime>, String> {
    let Some((store, secret)) = open_store(args).await? else {
        return Ok(None);
    };
    // Before anything reads usage (the quota book): rows an earlier shutdown could not store.
    let spill_file = (!args.usage_spill_file.is_empty())
        .then(|| std::path::PathBuf::from(&args.usage_spill_file));
    if let Some(file) = &spill_file {
        replay_spilled_usage(store.as_ref(), file).await;
    }
    let keys = KeyCache::new(
        Some(&args.proxy_api_key),
        args.admin_api_key.as_deref(),
        hasher(secret.clone()),
    );
    let mut tenancy = Tenancy::new(Arc::clone(&store), keys, hasher(secret));
    tenancy.cursor = CursorAccountSettings {
        api_base: cursor.api_base.clone(),
        website_url: args.cursor_website_url.clone(),
        http: http.clone(),
        ..CursorAccountSettings::default()
    };
    let tenancy = Arc::new(tenancy);
    tenancy.reload().await.map_err(|e| e.to_string())?;
    let pool = DbPool::start(
        Arc::clone(&store),
        PoolSettings {
            endpoints,
            http,
            fingerprint,
            policy: args.pool_policy(),
            cursor,
            cursor_catalog: Some(cursor_catalog),
        },
        env_credentials,
    )
    .await
    .map_err(|e| e.to_string())?;
    tenancy.set_pool(Arc::new(pool.clone()) as Arc<dyn PoolControl>);
    let (writer, handle) = UsageWriter::start(
        Arc::clone(&store),
        UsageWriterConfig {
            shutdown_grace: Duration::from_secs(args.shutdown_timeout),
            spill_file,
            ..UsageWriterConfig::default()
        },
        Arc::new(|record| usage_row(record, 0)),
    );
    let charging = ChargingSink::new(
        tenancy.prices.clone(),
        tenancy.book.clone(),
        Arc::new(writer),
    );
    let models = Arc::new(TenantCatalog::new(
        Arc::new(models) as Arc<dyn ModelCatalog>,
        Arc::clone(&tenancy.aliases),
        Arc::clone(&tenancy.combos),
    ));
    let mut tasks = vec![tenancy.spawn_sync(FALLBACK_RELOAD), pool.spawn_sync()];
    let shared_limits = start_shared_limits(args, &pool)?;
    if let Some(shared) = &shared_limits {
        tenancy.book.share(Arc::clone(shared));
        tasks.push(shared.spawn());
    }
    Ok(Some(TenancyRuntime {
        tenancy,
        pool,
        models,
        usage: Arc::new(Tee(log_sink, Arc::new(charging))),
        shared_limits,
        writer: Mutex::new(Some(handle)),
        tasks,
    }))
}

/// The shared rate and concurrency counters `SHARED_LIMITS` and `REDIS_URL` select; in `auto`
/// mode consulted only while the pool's heartbeat sees other processes on the database.
fn start_shared_limits(
    args: &ServeArgs,
    pool: &DbPool,
) -> Result<Option<Arc<SharedLimits>>, String> {
    use super::shared_limits::{select, PeersPresent, Selected};
    let Some(Selected {
        engine,
        only_with_peers,
    }) = select(
        args.shared_limits,
        &args.database_url,
        args.redis_url.as_deref(),
        args.shared_limits_pg_pool,
    )?
    else {
        tracing::info!("rate and concurrency limits are counted in this process only");
        return Ok(None);
    };
    let peers = only_with_peers.then(|| {
        let pool = pool.clone();
        Arc::new(move || pool.shares_turn()) as PeersPresent
    });
    tracing::info!(
        engine = engine.name(),
        only_with_peers,
        "rate and concurrency limits are shared with the other gateway processes"
    );
    Ok(Some(SharedLimits::new(engine, peers)))
}

/// Stores the usage rows an earlier shutdown saved while the database was down.
async fn replay_spilled_usage(store: &dyn kiro_layers::store::Store, file: &std::path::Path) {
    match crate::store::usage_spill::replay(store, file).await {
        Ok(replayed) if replayed.rows + replayed.unreadable > 0 => tracing::warn!(
            rows = replayed.rows,
            new = replayed.stored,
            unreadable = replayed.unreadable,
            "stored the usage rows saved in {} at an earlier shutdown",
            file.display()
        ),
        Ok(_) => {}
        Err(error) => tracing::error!("{error}"),
    }
}
