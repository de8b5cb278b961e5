//! The pipeline mounted in a host axum app next to the host's own routes, as
//! examples/embed_axum.rs does, answers both.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use kiro_gateway::fake_kiro::{self, FakeKiroConfig};
use kiro_layers::auth::SingleKeyStore;
use kiro_layers::kiro::auth::{Endpoints, MemoryStore, RefreshingCredential, TokenSet};
use kiro_layers::kiro::service::KiroConfig;
use kiro_layers::models::ModelRegistry;
use kiro_layers::pool::{CredentialProvider, PoolPolicy, RoundRobinPool};
use kiro_layers::stack::{chat_stack, StackDeps};
use kiro_layers::usage::MemoryUsageSink;
use tower::ServiceExt;

#[tokio::test]
async fn host_routes_and_gateway_routes_live_side_by_side() {
    let config = FakeKiroConfig::default();
    let refresh_token = config.refresh_token.clone();
    let fake = fake_kiro::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let credential = RefreshingCredential::new(
        "embedded".into(),
        Arc::new(MemoryStore::new(TokenSet {
            refresh_token,
            ..TokenSet::default()
        })),
        Endpoints::all_at(&fake.base_url()),
        "us-east-1".into(),
        None,
        Some(fake_kiro::FAKE_PROFILE_ARN.into()),
        http.clone(),
        "f".repeat(64),
    );
    let usage = MemoryUsageSink::default();
    let kiro = chat_stack(StackDeps {
        keys: Arc::new(SingleKeyStore::new("host-key")),
        tokens: Arc::new(RoundRobinPool::new(
            vec![Arc::new(credential) as Arc<dyn CredentialProvider>],
            PoolPolicy::default(),
        )),
        models: Arc::new(ModelRegistry::with_defaults()),
        usage: Arc::new(usage.clone()),
        http: http.clone().into(),
        kiro: KiroConfig::default(),
        max_body_bytes: 1 << 20,
        thinking: Default::default(),
        capture: None,
        quota: Arc::new(kiro_layers::quota::Unlimited),
        compress: Default::default(),
        recover: Default::default(),
        // Kiro only: no other upstream.
        upstreams: Vec::new(),
    });
    let app = Router::new()
        .route("/hello", get(|| async { "host" }))
        .route_service("/v1/messages", kiro);

    let hello = app
        .clone()
        .oneshot(Request::get("/hello").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        hello.into_body().collect().await.unwrap().to_bytes(),
        "host"
    );

    let request = Request::post("/v1/messages")
        .header("x-api-key", "host-key")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"model":"claude-haiku-4.5","max_tokens":100,"messages":[{"role":"user","content":"embedded hello"}]}"#,
        ))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["type"], "message");
    let text = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<String>();
    assert!(text.contains("embedded hello"), "{body}");
    assert_eq!(usage.records().len(), 1);
}
