//! The full stack's per-request cost against calling the fake upstream directly, in one run.
//!
//! Both paths go over loopback TCP to the same fake Kiro, which answers every chat request with
//! one pre-encoded body of 100 text deltas. `upstream_direct` is the floor (client + fake);
//! `gateway_*` adds the gateway in between: auth, parsing, model resolution, the pool, the Kiro
//! request builder, the event-stream decoder and the SSE encoder. The difference is the
//! gateway's cost per request.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use kiro_gateway::app::assemble;
use kiro_gateway::config::{Cli, Command};
use kiro_gateway::fake_kiro::{self, Chunking, FakeKiroConfig, FAKE_PROFILE_ARN};
use kiro_layers::usage::MemoryUsageSink;
use serde_json::json;

const KEY: &str = "bench-key";
const DELTAS: usize = 100;

struct Setup {
    client: reqwest::Client,
    upstream_url: String,
    upstream_token: String,
    upstream_body: Vec<u8>,
    gateway_url: String,
}

async fn setup() -> Setup {
    let config = FakeKiroConfig {
        precomputed_deltas: Some(DELTAS),
        chunking: Chunking::Whole,
        ..FakeKiroConfig::default()
    };
    let refresh_token = config.refresh_token.clone();
    let fake = fake_kiro::start(config).await.expect("fake starts");
    let base = fake.base_url();
    let upstream_token = fake.issue_access_token();
    // Keep the fake alive for the whole run.
    let fake = Box::leak(Box::new(fake));

    let argv = [
        "kiro-gateway",
        "serve",
        "--proxy-api-key",
        KEY,
        "--log-level",
        "error",
        "--refresh-token",
        &refresh_token,
        "--profile-arn",
        FAKE_PROFILE_ARN,
        "--kiro-api-url",
        &base,
        "--kiro-desktop-auth-url",
        &base,
        "--kiro-oidc-url",
        &base,
        "--fake-reasoning",
        "false",
        // The stack alone: no database (benches/load_tenancy.sh measures that path).
        "--database-url",
        "none",
    ];
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("arguments").command else {
        unreachable!("the arguments name the serve command")
    };
    let gateway = assemble(&args, Arc::new(MemoryUsageSink::default()))
        .await
        .expect("assembles");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kiro_gateway::server::serve(
        listener,
        gateway.router,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let _ = fake;

    let upstream_body = serde_json::to_vec(&json!({
        "conversationState": {
            "chatTriggerType": "MANUAL",
            "conversationId": "00000000-0000-4000-8000-000000000000",
            "currentMessage": {"userInputMessage": {"content": "hi", "modelId": "auto", "origin": "AI_EDITOR"}}
        },
        "profileArn": FAKE_PROFILE_ARN
    }))
    .unwrap();
    Setup {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        upstream_url: format!("{base}/generateAssistantResponse"),
        upstream_token,
        upstream_body,
        gateway_url,
    }
}

fn stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = Arc::new(runtime.block_on(setup()));
    let openai = serde_json::to_vec(
        &json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let openai_limited = serde_json::to_vec(&json!({"model": "auto", "stream": true, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    let anthropic = serde_json::to_vec(&json!({"model": "auto", "stream": true, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]})).unwrap();

    let mut group = c.benchmark_group("per_request_100_deltas");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("upstream_direct", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = setup
                .client
                .post(&setup.upstream_url)
                .bearer_auth(&setup.upstream_token)
                .header("content-type", "application/json")
                .body(setup.upstream_body.clone())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap()
        })
    });
    for (name, path, body) in [
        ("gateway_openai_stream", "/v1/chat/completions", &openai),
        (
            "gateway_openai_stream_max_tokens",
            "/v1/chat/completions",
            &openai_limited,
        ),
        ("gateway_anthropic_stream", "/v1/messages", &anthropic),
    ] {
        let url = format!("{}{path}", setup.gateway_url);
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = setup
                    .client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                response.bytes().await.unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
