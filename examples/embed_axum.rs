//! Mounting the kiro-gateway pipeline inside your own axum application, next to your own
//! routes. Runs offline against the built-in fake Kiro upstream:
//!
//! ```sh
//! cargo run --example embed_axum
//! curl -s localhost:3000/hello
//! curl -s localhost:3000/v1/chat/completions -H 'Authorization: Bearer host-app-key' \
//!   -H 'Content-Type: application/json' \
//!   -d '{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"hi"}]}'
//! ```

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use kiro_gateway::fake_kiro::{self, FakeKiroConfig};
use kiro_layers::auth::SingleKeyStore;
use kiro_layers::kiro::auth::{Endpoints, MemoryStore, RefreshingCredential, TokenSet};
use kiro_layers::kiro::headers::fingerprint;
use kiro_layers::kiro::service::KiroConfig;
use kiro_layers::models::ModelRegistry;
use kiro_layers::pool::{CredentialProvider, PoolPolicy, RoundRobinPool};
use kiro_layers::stack::{chat_stack, StackDeps};
use kiro_layers::usage::LogUsageSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    // Stand-in for Kiro; point `Endpoints` at the real hosts (Endpoints::default()) in production.
    let config = FakeKiroConfig::default();
    let refresh_token = config.refresh_token.clone();
    let fake = fake_kiro::start(config).await?;
    let http = reqwest::Client::new();

    let credential = RefreshingCredential::new(
        "example-account".to_owned(),
        Arc::new(MemoryStore::new(TokenSet {
            refresh_token,
            ..TokenSet::default()
        })),
        Endpoints::all_at(&fake.base_url()),
        "us-east-1".to_owned(),
        None,
        Some(fake_kiro::FAKE_PROFILE_ARN.to_owned()),
        http.clone(),
        fingerprint("embed-example"),
    );
    let pool = RoundRobinPool::new(
        vec![Arc::new(credential) as Arc<dyn CredentialProvider>],
        PoolPolicy::default(),
    );
    let kiro = chat_stack(StackDeps {
        keys: Arc::new(SingleKeyStore::new("host-app-key")),
        tokens: Arc::new(pool),
        models: Arc::new(ModelRegistry::with_defaults()),
        usage: Arc::new(LogUsageSink),
        http: http.clone().into(),
        kiro: KiroConfig::default(),
        max_body_bytes: 8 * 1024 * 1024,
        thinking: Default::default(),
        capture: None,
        quota: Arc::new(kiro_layers::quota::Unlimited),
        compress: Default::default(),
        recover: Default::default(),
        // Kiro only: no other upstream.
        upstreams: Vec::new(),
    });

    let app = Router::new()
        .route("/hello", get(|| async { "hello from the host app\n" }))
        .route_service("/v1/chat/completions", kiro.clone())
        .route_service("/v1/messages", kiro);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "host app with kiro-gateway on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
