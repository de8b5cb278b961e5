//! Assembling a gateway from its configuration: credentials, pool, models, the route table, and
//! (in demo mode) the built-in fake upstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kiro_layers::auth::SingleKeyStore;
use kiro_layers::kiro::auth::{Endpoints, RefreshingCredential};
use kiro_layers::kiro::catalog::{CatalogHandle, CatalogRefresher};
use kiro_layers::kiro::headers::fingerprint;
use kiro_layers::kiro::service::KiroConfig;
use kiro_layers::models::{fallback_models, ModelRegistry};
use kiro_layers::pool::{CredentialProvider, RoundRobinPool, NO_ACCOUNT_HELP};
use kiro_layers::stack::StackDeps;
use kiro_layers::traits::UsageSink;
use kiro_layers::usage::LogUsageSink;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::credentials::{load_configured, CredentialSettings};
use crate::fake_kiro::{FakeKiroConfig, FakeKiroHandle};
use crate::routes::VERSION;
use crate::server::{serve_with, shutdown_signal, ServerOptions};

/// A gateway ready to serve: its routes and the handles tests and operators look at.
pub struct Gateway {
    /// All routes.
    pub router: Router,
    /// What the stack was built from.
    pub deps: StackDeps,
    /// The account pool.
    pub pool: RoundRobinPool,
    /// The configured credentials, in pool order.
    pub credentials: Vec<Arc<RefreshingCredential>>,
    /// The fake upstream, in demo mode.
    pub demo_upstream: Option<FakeKiroHandle>,
    /// The configured Cursor account (its upstream, and the fake Cursor in demo mode).
    pub cursor: Option<crate::cursor_account::CursorAccount>,
    /// The background `ListAvailableModels` refresher of the model catalog.
    pub catalog: CatalogHandle,
    /// Keeps Cursor's models in the catalog while the pool holds Cursor accounts (its task
    /// stops when this and the database pool's copy are dropped).
    pub cursor_catalog: kiro_layers::cursor::catalog::CatalogKeeper,
    /// `GET /ready`: add checks (the database) with [`crate::ops::Readiness::add`].
    pub readiness: crate::ops::Readiness,
    /// The debug capture writer, when `DEBUG_MODE` is not off.
    pub debug: Option<Arc<crate::debug::DebugWriter>>,
    /// Users, keys, quotas and the database-backed pool (unless `--database-url none`).
    pub tenancy: Option<Arc<crate::tenancy::wire::TenancyRuntime>>,
    /// Account sign-in flows (with a database).
    pub logins: Option<Arc<crate::login::Logins>>,
}

/// The fingerprint seed kiro-gateway uses: host and user name of this machine.
fn machine_seed() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "user".to_owned());
    format!("{host}-{user}")
}

/// The HTTP client used for every call to Kiro and its login services.
pub fn upstream_http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // Kiro and its login services answer in place; a redirect would be a misconfigured base
        // URL (reported as the upstream error it is) and never a place to send tokens to. Not
        // following them also spares every request the redirect machinery's URL parsing.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("could not build the HTTP client: {e}"))
}

/// Builds everything `args` describes. `usage` receives the usage records.
pub async fn assemble(args: &ServeArgs, usage: Arc<dyn UsageSink>) -> Result<Gateway, String> {
    let mut args = args.clone();
    let demo_upstream = if args.demo {
        let fake = crate::fake_kiro::start(FakeKiroConfig::default())
            .await
            .map_err(|e| format!("could not start the demo upstream: {e}"))?;
        let base = fake.base_url();
        tracing::info!("demo mode: using the built-in fake Kiro upstream at {base}");
        args.kiro_api_url = base.clone();
        args.kiro_desktop_auth_url = base.clone();
        args.kiro_oidc_url = base.clone();
        args.login_urls.kiro_profiles_url = base.clone();
        args.login_urls.kiro_signin_url = format!("{base}/signin");
        args.usage_limits.point_at(&base);
        args.refresh_token = Some(FakeKiroConfig::default().refresh_token);
        args.creds_file = None;
        args.cli_db_file = None;
        args.profile_arn =
            Some("arn:aws:codewhisperer:us-east-1:000000000000:profile/DEMO".to_owned());
        Some(fake)
    } else {
        None
    };

    let http = upstream_http_client()?;
    let settings = CredentialSettings {
        refresh_token: args.refresh_token.clone(),
        profile_arn: args.profile_arn.clone(),
        region: args.region.clone(),
        api_region: args.api_region.clone(),
        creds_file: args.creds_file.clone(),
        cli_db_file: args.cli_db_file.clone(),
        sqlite_readonly: args.sqlite_readonly,
        endpoints: Endpoints {
            desktop_auth_url: args.kiro_desktop_auth_url.clone(),
            oidc_url: args.kiro_oidc_url.clone(),
            api_url: args.kiro_api_url.clone(),
        },
    };
    let credentials = load_configured(&settings, http.clone(), fingerprint(&machine_seed()))?;
    let endpoints = settings.endpoints.clone();
    let endpoints_for_login = settings.endpoints.clone();
    if credentials.is_empty() {
        tracing::warn!("{NO_ACCOUNT_HELP}");
    } else {
        for credential in &credentials {
            tracing::info!(
                account = credential.account_id(),
                "Kiro account from {}",
                credential.describe_store()
            );
        }
    }
    let fingerprint_value = fingerprint(&machine_seed());
    let providers: Vec<Arc<dyn CredentialProvider>> = credentials
        .iter()
        .map(|c| Arc::clone(c) as Arc<dyn CredentialProvider>)
        .collect();
    let cursor = crate::cursor_account::configure(&args, http.clone()).await?;
    // Always there, so that Cursor accounts added to the database are served without a restart.
    let cursor_service = match &cursor {
        Some(account) => account.service.clone(),
        None => kiro_layers::cursor::service::CursorService::new(
            crate::cursor_account::cursor_config(&args),
        ),
    };
    let mut pool_providers = providers.clone();
    if let Some(account) = &cursor {
        pool_providers.push(Arc::clone(&account.credential) as Arc<dyn CredentialProvider>);
    }
    let pool = RoundRobinPool::new(pool_providers.clone(), args.pool_policy());

    let aliases: HashMap<String, String> = args.aliases()?.into_iter().collect();
    let models = ModelRegistry::new(fallback_models(), aliases)
        .pass_through_unknown(args.pass_through_unknown_models);
    // In the background: start-up never waits for ListAvailableModels or AvailableModels.
    let cursor_catalog = kiro_layers::cursor::catalog::CatalogKeeper::spawn(
        models.clone(),
        cursor_service.config().clone(),
        http.clone(),
        Duration::from_secs(args.model_cache_ttl),
    );
    cursor_catalog.set_accounts(pool_providers.clone());
    let catalog = CatalogRefresher::new(models.clone(), providers, http.clone())
        .with_ttl(Duration::from_secs(args.model_cache_ttl))
        .spawn();

    let kiro = KiroConfig {
        read_timeout: args.read_timeout(),
        keep_alive: args.upstream_keep_alive,
        merge_ready_deltas: args.merge_ready_deltas,
        build: kiro_layers::kiro::request::BuildOptions {
            tool_description_max_len: args.tool_description_max_length,
            ..Default::default()
        },
    };
    crate::ops::prometheus::install();
    let debug = crate::debug::DebugWriter::start(args.debug_settings()?)?;
    let tenancy = crate::tenancy::wire::start(
        &args,
        // The environment's accounts (Kiro's, and a configured Cursor account) join the pool.
        pool_providers,
        http.clone(),
        endpoints,
        fingerprint_value,
        models.clone(),
        Arc::new(cursor_service.config().clone()),
        cursor_catalog.clone(),
        Arc::clone(&usage),
    )
    .await?
    .map(Arc::new);
    let mut deps = StackDeps {
        keys: Arc::new(SingleKeyStore::new(&args.proxy_api_key)),
        tokens: Arc::new(pool.clone()),
        models: Arc::new(models),
        usage,
        http: kiro_layers::kiro::http::UpstreamClient::for_environment(
            http.clone(),
            args.direct_options(),
        ),
        kiro,
        max_body_bytes: args.max_body_bytes,
        thinking: args.thinking_config()?,
        capture: debug
            .clone()
            .map(|d| d as Arc<dyn kiro_layers::capture::CaptureSink>),
        quota: Arc::new(kiro_layers::quota::Unlimited),
        compress: args.compress_config(),
        recover: args.recover_config(),
        upstreams: vec![
            Arc::new(cursor_service.clone()) as Arc<dyn kiro_layers::upstream::Upstream>
        ],
    };
    let mut routes = None;
    let mut pool = pool;
    let logins = tenancy.as_ref().map(|t| {
        let logins = crate::login::Logins::new(
            Arc::clone(&t.tenancy),
            http.clone(),
            crate::login::LoginUrls::new(endpoints_for_login.clone(), &args.login_urls),
            fingerprint(&machine_seed()),
            args.login_urls.lease(),
        );
        // Takes over the flows of gateway processes that stopped.
        logins.spawn_housekeeping();
        logins
    });
    let usage_limits = tenancy.as_ref().map(|t| {
        Arc::new(crate::usage_limits::UsageLimits::new(
            Arc::clone(&t.tenancy),
            http.clone(),
            &args.usage_limits,
        ))
    });
    if let (Some(limits), minutes @ 1..) = (&usage_limits, args.usage_limits.every_minutes) {
        Arc::clone(limits).spawn_periodic(Duration::from_secs(minutes.saturating_mul(60)));
    }
    if let Some(t) = &tenancy {
        deps.keys = Arc::new(t.tenancy.keys.clone());
        deps.tokens = Arc::new(t.pool.clone());
        deps.models = t.models.clone();
        deps.usage = Arc::clone(&t.usage);
        deps.quota = Arc::new(t.tenancy.book.clone());
        pool = t.pool.snapshot();
        let console = crate::console::router(
            Arc::clone(&t.tenancy),
            crate::console::ConsoleConfig {
                base_path: crate::console::normalise_base_path(&args.public_base_path),
                models: t.models.clone(),
                debug_dir: args.debug_dir.clone(),
                logins: logins.clone(),
                usage_limits: usage_limits.clone(),
            },
        );
        routes = Some(crate::tenancy::router(Arc::clone(&t.tenancy)).merge(console));
    }
    let readiness = match &tenancy {
        Some(t) => {
            let live = t.pool.clone();
            let readiness = crate::ops::Readiness::with_accounts(Arc::new(move || live.status()));
            readiness.add("database", database_check(Arc::clone(&t.tenancy.store)));
            if let Some(shared) = t.shared_limits.clone() {
                readiness.add_detail("shared_limits", Arc::new(move || shared.status()));
            }
            readiness
        }
        None => crate::ops::Readiness::new(pool.clone()),
    };
    {
        // "Update Required" is the operator's to fix (CURSOR_CLIENT_VERSION): /ready says so.
        let alerts = cursor_service.alerts();
        let check = move || -> futures_util::future::BoxFuture<'static, Result<(), String>> {
            let outdated = alerts.outdated_client();
            Box::pin(async move {
                match outdated {
                    Some(detail) => Err(format!(
                        "Cursor refuses the configured client version ({detail}); set CURSOR_CLIENT_VERSION"
                    )),
                    None => Ok(()),
                }
            })
        };
        readiness.add("cursor_client_version", Arc::new(check));
    }
    let mut ops = crate::ops::routes(crate::ops::OpsState {
        pool: pool.clone(),
        credentials: credentials.clone(),
        readiness: readiness.clone(),
    });
    if let Some(admin_key) = args.admin_api_key.as_deref().filter(|k| !k.is_empty()) {
        ops = ops.merge(crate::ops::admin_debug::routes(
            admin_key,
            args.debug_dir.clone(),
        ));
    }
    let responses = tenancy.as_ref().map(|t| {
        let retention = Duration::from_secs(u64::from(args.responses_retention_days) * 86_400);
        Arc::new(crate::responses_api::DbResponses::new(
            Arc::clone(&t.tenancy.store),
            retention,
        )) as Arc<dyn kiro_layers::dialect::responses::store::ResponseStore>
    });
    let streams = crate::open_streams::OpenStreams::new(crate::open_streams::stream_cap(
        args.max_open_streams,
        crate::open_streams::open_file_limit(),
        args.shared_upstream_connections(),
    ));
    tracing::info!(
        cap = streams.cap(),
        "open answers capped (MAX_OPEN_STREAMS)"
    );
    let mut app = crate::routes::router_with_responses(deps.clone(), responses)
        .layer(axum::middleware::from_fn_with_state(
            streams,
            crate::open_streams::cap,
        ))
        .merge(ops);
    if let Some(routes) = routes {
        app = app.merge(routes);
    }
    if let Some(logins) = &logins {
        app = app.merge(crate::login::routes::router(Arc::clone(logins)));
    }
    if let Some(limits) = &usage_limits {
        app = app.merge(crate::usage_limits::routes::router(Arc::clone(limits)));
    }
    Ok(Gateway {
        router: app,
        deps,
        pool,
        credentials,
        demo_upstream,
        cursor,
        catalog,
        cursor_catalog,
        readiness,
        debug,
        tenancy,
        logins,
    })
}

/// The readiness check of the store: a trivial query. Chat keeps being served from the caches
/// while it fails; `/ready` says so, so a load balancer can prefer a process that can write.
fn database_check(
    store: Arc<dyn kiro_layers::store::Store>,
) -> Arc<dyn crate::ops::ReadinessCheck> {
    let ping = move || -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = Arc::clone(&store);
        Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
    };
    Arc::new(ping)
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let addr = args.listen_addr()?;
    if args.proxy_api_key == "my-super-secret-password-123" && !addr.ip().is_loopback() {
        tracing::warn!(
            "PROXY_API_KEY is the public default while listening on {addr}: set your own key"
        );
    }
    // Before anything opens files: MAX_OPEN_STREAMS is derived from the limit in force.
    crate::open_streams::raise_open_file_limit();
    let gateway = assemble(&args, Arc::new(LogUsageSink)).await?;
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "could not listen on {addr}: {e} (is another process using the port? set SERVER_PORT)"
        )
    })?;
    tracing::info!("kiro-gateway {VERSION} listening on http://{addr} (OpenAI: /v1/chat/completions, Anthropic: /v1/messages)");
    let served = serve_with(
        listener,
        gateway.router,
        shutdown_signal(),
        Duration::from_secs(args.shutdown_timeout),
        ServerOptions {
            http1_max_buf_size: (args.max_request_head_bytes > 0)
                .then_some(args.max_request_head_bytes),
        },
    )
    .await
    .map_err(|e| format!("server error: {e}"));
    // Other processes on the database finish this one's sign-ins without waiting for the
    // leases to lapse.
    if let Some(logins) = &gateway.logins {
        logins.hand_over().await;
    }
    // Streams are finished: write every queued usage record before exiting.
    if let Some(tenancy) = &gateway.tenancy {
        tenancy.shutdown().await;
    }
    served
}
