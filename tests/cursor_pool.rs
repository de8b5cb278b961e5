//! One pipeline, two kinds of account: the embeddable stack with a pool holding one Kiro account
//! (against the fake Kiro) and one Cursor account (against the fake Cursor). A model both serve
//! alternates between them, a Cursor-only model goes only to Cursor, usage rows name the account
//! that served, and a Cursor account that is rate limited or out of usage rests while the next
//! request is served by the other account, each attempt recorded once.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use kiro_gateway::fake_cursor::{self, FakeCursorConfig, FakeCursorHandle, Scenario};
use kiro_gateway::fake_kiro::{self, FakeKiroConfig, FakeKiroHandle};
use kiro_layers::auth::SingleKeyStore;
use kiro_layers::cursor::auth::{CursorCredential, CursorSecrets, NoWriteBack};
use kiro_layers::cursor::headers::CursorConfig;
use kiro_layers::cursor::service::CursorService;
use kiro_layers::kiro::auth::{Endpoints, MemoryStore, RefreshingCredential, TokenSet};
use kiro_layers::kiro::service::KiroConfig;
use kiro_layers::models::{fallback_models, ModelRegistry};
use kiro_layers::pool::{CredentialProvider, PoolPolicy, RoundRobinPool};
use kiro_layers::stack::{chat_stack, ChatStack, StackDeps};
use kiro_layers::traits::{AccountKind, ModelInfo, UsageStatus};
use kiro_layers::upstream::Upstream;
use kiro_layers::usage::MemoryUsageSink;
use tower::ServiceExt;

const SHARED: &str = "claude-sonnet-4.5";
const CURSOR_ONLY: &str = "gpt-5.4-medium";

struct Setup {
    stack: ChatStack,
    usage: MemoryUsageSink,
    pool: RoundRobinPool,
    cursor: FakeCursorHandle,
    _kiro: FakeKiroHandle,
}

async fn setup() -> Setup {
    setup_with(CursorConfig::default().client_version).await
}

async fn setup_with(client_version: String) -> Setup {
    let kiro_config = FakeKiroConfig::default();
    let refresh_token = kiro_config.refresh_token.clone();
    let kiro = fake_kiro::start(kiro_config).await.unwrap();
    let cursor = fake_cursor::start(FakeCursorConfig {
        models: vec![SHARED.into(), CURSOR_ONLY.into()],
        ..FakeCursorConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let kiro_account = RefreshingCredential::new(
        "kiro-1".into(),
        Arc::new(MemoryStore::new(TokenSet {
            refresh_token,
            ..TokenSet::default()
        })),
        Endpoints::all_at(&kiro.base_url()),
        "us-east-1".into(),
        None,
        Some(fake_kiro::FAKE_PROFILE_ARN.into()),
        http.clone(),
        "f".repeat(64),
    );
    let cursor_config = Arc::new(CursorConfig {
        api_base: cursor.base_url(),
        client_version,
        ..CursorConfig::default()
    });
    let cursor_account = CursorCredential::new(
        "cursor-1".into(),
        CursorSecrets {
            access_token: cursor.issue_session_token(3600),
            refresh_token: Some(cursor.issue_refresh_token()),
            machine_id: None,
            client_key: None,
        },
        Arc::clone(&cursor_config),
        http.clone(),
        Arc::new(NoWriteBack),
    );
    let pool = RoundRobinPool::new(
        vec![
            Arc::new(kiro_account) as Arc<dyn CredentialProvider>,
            Arc::new(cursor_account) as Arc<dyn CredentialProvider>,
        ],
        PoolPolicy::default(),
    );
    // Each kind's catalog: Kiro's defaults, Cursor's list; the shared name is served by both.
    let mut models: Vec<ModelInfo> = fallback_models();
    for model in &mut models {
        if model.id == SHARED {
            model.kinds.push(AccountKind::CURSOR);
        }
    }
    models.push(ModelInfo {
        id: CURSOR_ONLY.into(),
        display_name: "GPT-5.4".into(),
        context_window: 200_000,
        max_output_tokens: 32_000,
        kinds: vec![AccountKind::CURSOR],
        upstream_ids: Vec::new(),
    });
    let registry = ModelRegistry::with_defaults();
    registry.replace_models(models);
    let usage = MemoryUsageSink::default();
    let stack = chat_stack(StackDeps {
        keys: Arc::new(SingleKeyStore::new("k")),
        tokens: Arc::new(pool.clone()),
        models: Arc::new(registry),
        usage: Arc::new(usage.clone()),
        http: http.clone().into(),
        kiro: KiroConfig::default(),
        max_body_bytes: 1 << 20,
        thinking: Default::default(),
        capture: None,
        quota: Arc::new(kiro_layers::quota::Unlimited),
        compress: Default::default(),
        recover: Default::default(),
        upstreams: vec![Arc::new(CursorService::new((*cursor_config).clone())) as Arc<dyn Upstream>],
    });
    Setup {
        stack,
        usage,
        pool,
        cursor,
        _kiro: kiro,
    }
}

async fn openai(stack: &ChatStack, body: serde_json::Value) -> (u16, Vec<u8>) {
    let request = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer k")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = stack.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

async fn anthropic(stack: &ChatStack, body: serde_json::Value) -> (u16, Vec<u8>) {
    let request = Request::post("/v1/messages")
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = stack.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn served_by(usage: &MemoryUsageSink) -> Vec<(String, UsageStatus)> {
    usage
        .records()
        .iter()
        .map(|r| (r.account_id.clone().unwrap_or_default(), r.status))
        .collect()
}

#[tokio::test]
async fn a_model_both_kinds_serve_alternates_and_a_cursor_only_model_goes_to_cursor() {
    let s = setup().await;
    for i in 0..4 {
        let (status, body) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content": format!("hello {i}")}]}),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let accounts: Vec<String> = served_by(&s.usage).into_iter().map(|(a, _)| a).collect();
    assert!(accounts.contains(&"kiro-1".to_owned()), "{accounts:?}");
    assert!(accounts.contains(&"cursor-1".to_owned()), "{accounts:?}");
    let before = s.usage.records().len();
    for _ in 0..3 {
        let (status, body) = openai(
            &s.stack,
            serde_json::json!({"model": CURSOR_ONLY, "messages": [{"role":"user","content":"only cursor"}]}),
        )
        .await;
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "echo: only cursor"
        );
        assert!(
            body["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{body}"
        );
    }
    let records = s.usage.records();
    assert!(records[before..]
        .iter()
        .all(|r| r.account_id.as_deref() == Some("cursor-1") && r.status == UsageStatus::Ok));
    assert!(records[before..]
        .iter()
        .all(|r| r.output_tokens > 0 && r.input_tokens > 0));
}

#[tokio::test]
async fn openai_and_anthropic_clients_stream_tools_and_thinking_through_cursor() {
    let s = setup().await;
    // OpenAI, streamed, thinking -> reasoning_content.
    let (status, body) = openai(
        &s.stack,
        serde_json::json!({"model": CURSOR_ONLY, "stream": true, "reasoning_effort": "high",
            "messages": [{"role":"user","content":"[cursor:thinking] 2+2?"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let sse = String::from_utf8_lossy(&body);
    assert!(sse.contains("reasoning_content"), "{sse}");
    assert!(sse.contains("answer "), "{sse}");
    // Anthropic, not streamed, a tool call whose id survives the round trip.
    let tools = serde_json::json!([{"name":"get_weather","description":"Weather",
        "input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]);
    let (status, body) = anthropic(
        &s.stack,
        serde_json::json!({"model": CURSOR_ONLY, "max_tokens": 200, "tools": tools,
            "messages": [{"role":"user","content":"[cursor:tool] weather?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    let call = answer["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"]["city"], "Paris");
    let id = call["id"].as_str().unwrap().to_owned();
    let (status, body) = anthropic(
        &s.stack,
        serde_json::json!({"model": CURSOR_ONLY, "max_tokens": 200, "tools": tools, "stream": true,
        "messages": [
            {"role":"user","content":"[cursor:tool] weather?"},
            {"role":"assistant","content":[call]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id": id, "content":"21C"}]}
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let sse = String::from_utf8_lossy(&body);
    assert!(
        sse.contains("toolu_fake_01=21C"),
        "the id came back unchanged: {sse}"
    );
}

#[tokio::test]
async fn a_rate_limited_or_exhausted_cursor_account_rests_and_kiro_serves_charged_once() {
    for scenario in [
        Scenario::Error {
            code: 50,
            connect: "resource_exhausted",
            title: "Rate limited",
        },
        Scenario::Error {
            code: 10,
            connect: "resource_exhausted",
            title: "Usage limit",
        },
    ] {
        let s = setup().await;
        // Turn order: kiro-1, cursor-1. Spend Kiro's turn first so Cursor's comes next.
        let (status, _) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content":"first"}]}),
        )
        .await;
        assert_eq!(status, 200);
        s.cursor.push_scenario(scenario.clone());
        let (status, body) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content":"second"}]}),
        )
        .await;
        assert_eq!(
            status,
            200,
            "{scenario:?}: {}",
            String::from_utf8_lossy(&body)
        );
        let rows = served_by(&s.usage);
        assert_eq!(
            rows[1..],
            [
                ("cursor-1".to_owned(), UsageStatus::UpstreamError),
                ("kiro-1".to_owned(), UsageStatus::Ok)
            ],
            "{scenario:?}"
        );
        let cursor = s
            .pool
            .status()
            .into_iter()
            .find(|a| a.account_id == "cursor-1")
            .unwrap();
        assert!(
            cursor.resting_for.is_some(),
            "{scenario:?}: the Cursor account rests"
        );
        // The next request for a model both serve goes to Kiro while Cursor rests.
        let (status, _) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content":"third"}]}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(served_by(&s.usage).last().unwrap().0, "kiro-1");
    }
}

#[tokio::test]
async fn a_logged_out_cursor_account_is_disabled_with_the_reason() {
    let s = setup().await;
    s.cursor.revoke_refresh_tokens();
    // An expired session forces a refresh, which Cursor refuses for good.
    s.cursor.push_scenario(Scenario::Error {
        code: 2,
        connect: "unauthenticated",
        title: "Not logged in.",
    });
    for i in 0..2 {
        let (status, _) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content": format!("n{i}")}]}),
        )
        .await;
        assert_eq!(status, 200, "Kiro serves");
    }
    let cursor = s
        .pool
        .status()
        .into_iter()
        .find(|a| a.account_id == "cursor-1")
        .unwrap();
    let reason = cursor.disabled.expect("disabled");
    assert!(reason.contains("sign in to Cursor again"), "{reason}");
}

#[tokio::test]
async fn an_outdated_client_version_fails_over_without_charging_the_cursor_account() {
    let s = setup_with("2.0.77".into()).await;
    for i in 0..3 {
        let (status, body) = openai(
            &s.stack,
            serde_json::json!({"model": SHARED, "messages": [{"role":"user","content": format!("v{i}")}]}),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let rows = served_by(&s.usage);
    assert!(
        rows.contains(&("cursor-1".to_owned(), UsageStatus::UpstreamError)),
        "{rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|(_, st)| *st == UsageStatus::Ok).count(),
        3
    );
    let cursor = s
        .pool
        .status()
        .into_iter()
        .find(|a| a.account_id == "cursor-1")
        .unwrap();
    assert!(
        cursor.resting_for.is_none() && cursor.disabled.is_none(),
        "{cursor:?}"
    );
    assert_eq!(cursor.consecutive_failures, 0);
}
