//! End-to-end tests of the account pool's handling of upstream failures: what the client gets,
//! and one usage record per upstream attempt.

mod common;

use std::time::Duration;

use common::*;
use kiro_gateway::fake_kiro::{FakeKiroConfig, Scenario};
use kiro_layers::traits::{UsageRecord, UsageStatus};

/// Waits for `n` usage records and returns them.
async fn records(h: &Harness, n: usize) -> Vec<UsageRecord> {
    h.settle(n).await;
    // Records are written when streams drop; give stragglers a moment, then count exactly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let records = h.usage.records();
    assert_eq!(records.len(), n, "{records:#?}");
    records
}

/// The answer's text, streamed or not.
async fn answer(response: reqwest::Response, stream: bool) -> String {
    let body = response.text().await.unwrap();
    if stream {
        return openai_text(&openai_sse(&body).0);
    }
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The statuses and attempt numbers of `records`, which all belong to one request and account.
fn attempts(records: &[UsageRecord]) -> Vec<(u32, UsageStatus)> {
    for record in records {
        assert_eq!(record.request_id, records[0].request_id);
        assert_eq!(record.account_id, records[0].account_id);
    }
    records.iter().map(|r| (r.attempt, r.status)).collect()
}

#[tokio::test]
async fn a_transient_failure_on_the_only_account_is_retried_on_it() {
    for (scenario, stream) in [
        (Scenario::Status(503), false),
        (Scenario::Status(500), true),
        (Scenario::ResetBeforeHeaders, false),
    ] {
        let h = start_with(FakeKiroConfig::default(), &["--retry-base-delay-ms", "10"]).await;
        h.fake().push_scenario(scenario.clone());
        let response = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", "hello", stream),
            )
            .await;
        assert_eq!(response.status(), 200, "{scenario:?}");
        let text = answer(response, stream).await;
        assert!(text.contains("hello"), "{scenario:?}: {text}");
        assert_eq!(h.fake().stats().chat_requests, 2, "{scenario:?}");
        assert_eq!(
            attempts(&records(&h, 2).await),
            [(1, UsageStatus::UpstreamError), (2, UsageStatus::Ok)],
            "{scenario:?}"
        );
        // One failure is not a reason to rest: the next request is served at once.
        let status = &h.gateway.pool.status()[0];
        assert_eq!(status.resting_for, None, "{scenario:?}");
        assert_eq!(status.consecutive_failures, 0, "{scenario:?}");
        h.shutdown().await;
    }
}
