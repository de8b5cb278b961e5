//! The real server with a Kiro account (fake Kiro) and a Cursor account from the configuration
//! (`--cursor-session-token`, fake Cursor over HTTP/2 prior knowledge): Cursor's catalog joins
//! `/v1/models` (each name once), a Cursor-only model is served by the Cursor account over
//! loopback, and its usage row names that account. A failed `AvailableModels` is retried, and
//! the catalog is fetched again every `MODEL_CACHE_TTL`.

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
    let harness = start_with_cursor(&cursor, &[]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", harness.addr);
    // Cursor's catalog loads in the background.
    let ids = listed_until(&harness, "gpt-5.4-medium", Duration::from_secs(5)).await;
    assert!(ids.iter().any(|id| id == "gpt-5.4-medium"), "{ids:?}");
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

/// A gateway (on the fake Kiro) whose configured Cursor account is an account of `cursor`.
async fn start_with_cursor(
    cursor: &fake_cursor::FakeCursorHandle,
    extra: &[&str],
) -> common::Harness {
    let session = format!("user_01FAKE::{}", cursor.issue_session_token(3600));
    let refresh = cursor.issue_refresh_token();
    let base = cursor.base_url();
    let mut args = vec![
        "--cursor-session-token",
        &session,
        "--cursor-refresh-token",
        &refresh,
        "--cursor-api-url",
        &base,
    ];
    args.extend_from_slice(extra);
    common::start_with(FakeKiroConfig::default(), &args).await
}

/// The ids `/v1/models` lists once `wanted` is among them, or when `within` has passed.
async fn listed_until(harness: &common::Harness, wanted: &str, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let listed: serde_json::Value = harness
            .http
            .get(harness.url("/v1/models"))
            .bearer_auth(common::KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().any(|id| id == wanted) || tokio::time::Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_models_that_failed_to_load_at_start_arrive_later_and_are_fetched_again_each_ttl() {
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    // Cursor is down when the gateway starts: the first two fetches fail.
    cursor.fail_model_lists(2);
    let harness = start_with_cursor(&cursor, &["--model-cache-ttl", "1"]).await;
    // Retried (after at most the TTL) until Cursor answers: no restart needed.
    let ids = listed_until(&harness, "gpt-5.4-medium", Duration::from_secs(15)).await;
    assert!(ids.iter().any(|id| id == "gpt-5.4-medium"), "{ids:?}");
    let after_load = cursor.stats().model_lists;
    assert!(after_load >= 3, "{after_load} fetches");
    // And asked again each TTL.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while cursor.stats().model_lists == after_load && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cursor.stats().model_lists > after_load);
}
