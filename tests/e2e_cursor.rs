//! The real server with a Kiro account (fake Kiro) and a Cursor account from the configuration
//! (`--cursor-session-token`, fake Cursor over HTTP/2 prior knowledge): Cursor's catalog joins
//! `/v1/models` (each name once), a Cursor-only model is served by the Cursor account over
//! loopback, and its usage row names that account.

mod common;

use std::time::Duration;

use kiro_gateway::fake_cursor::{self, FakeCursorConfig};
use kiro_gateway::fake_kiro::FakeKiroConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_cursor_account_serves_its_models_through_the_server() {
    let cursor = fake_cursor::start(FakeCursorConfig {
        models: vec!["claude-sonnet-4.5".into(), "gpt-5.4-medium".into()],
        ..FakeCursorConfig::default()
    })
    .await
    .unwrap();
    let session = format!("user_01FAKE::{}", cursor.issue_session_token(3600));
    let refresh = cursor.issue_refresh_token();
    let base = cursor.base_url();
    let harness = common::start_with(
        FakeKiroConfig::default(),
        &[
            "--cursor-session-token",
            &session,
            "--cursor-refresh-token",
            &refresh,
            "--cursor-api-url",
            &base,
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", harness.addr);
    // Cursor's catalog loads in the background.
    let mut listed = serde_json::Value::Null;
    for _ in 0..50 {
        listed = client
            .get(url("/v1/models"))
            .bearer_auth(common::KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed.to_string().contains("gpt-5.4-medium") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"gpt-5.4-medium"), "{ids:?}");
    assert_eq!(
        ids.iter().filter(|id| **id == "claude-sonnet-4.5").count(),
        1,
        "{ids:?}"
    );

    let answer: serde_json::Value = client
        .post(url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .json(&serde_json::json!({"model":"gpt-5.4-medium","messages":[{"role":"user","content":"through the server"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"], "echo: through the server",
        "{answer}"
    );
    let records = harness.usage.records();
    let last = records.last().unwrap();
    assert_eq!(last.account_id.as_deref(), Some("cursor"));
    assert!(last.output_tokens > 0);
    assert_eq!(cursor.stats().chat_calls, 1);
}
