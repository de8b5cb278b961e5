//! End-to-end tests of the account pool's handling of upstream failures: what the client gets,
//! and one usage record per upstream attempt.

mod common;
mod tenancy_support;

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

#[tokio::test]
async fn a_403_refresh_and_retry_are_two_attempts_with_two_records() {
    let h = start().await;
    let warm = h
        .post("/v1/chat/completions", chat("auto", "warm up", false))
        .await;
    assert_eq!(warm.status(), 200);
    warm.text().await.unwrap();
    records(&h, 1).await;
    let refreshes = h.fake().stats().refreshes;
    // Kiro refuses the access token: the gateway refreshes it and tries again once.
    h.fake().expire_all_tokens();
    let response = h
        .post("/v1/chat/completions", chat("auto", "after expiry", true))
        .await;
    assert_eq!(response.status(), 200);
    assert!(answer(response, true).await.contains("after expiry"));
    assert_eq!(h.fake().stats().refreshes, refreshes + 1);
    assert_eq!(h.fake().stats().chat_requests, 3);
    let all = records(&h, 3).await;
    assert_eq!(
        attempts(&all[1..]),
        [(1, UsageStatus::UpstreamError), (2, UsageStatus::Ok)]
    );
    assert!(all[1].output_tokens == 0 && all[2].output_tokens > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn both_attempts_of_a_403_retry_reach_the_store() {
    let tenancy_support::Env { h, _dir } = tenancy_support::start().await;
    for text in ["warm up", "after expiry"] {
        let response = h
            .post("/v1/chat/completions", chat("auto", text, false))
            .await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
        h.fake().expire_all_tokens();
    }
    let store = h.gateway.tenancy.as_ref().unwrap().tenancy.store.clone();
    let mut stored = Vec::new();
    for _ in 0..500 {
        stored = store
            .query_usage(Default::default(), kiro_layers::store::UsageGroup::Account)
            .await
            .unwrap();
        if stored.iter().map(|g| g.requests).sum::<u64>() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The warm-up, then the refused attempt and its retry (one account).
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!((stored[0].requests, stored[0].successes), (3, 2));
    h.shutdown().await;
}
