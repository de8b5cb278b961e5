//! End-to-end tests of throttling absorbed: Kiro's 429s before any output are retried (after
//! the account's short rest, in line with the other waiting requests) and reach the client only
//! when the throttle budget (`POOL_QUEUE_TIMEOUT`) is spent; a quota rest stays long.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kiro_gateway::fake_kiro::{FakeKiroConfig, Scenario};

fn throttling(every: u64) -> FakeKiroConfig {
    FakeKiroConfig {
        throttle_every: Some(every),
        ..FakeKiroConfig::default()
    }
}

/// The text of an OpenAI answer, streamed or not.
async fn answer_text(response: reqwest::Response, stream: bool) -> String {
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

#[tokio::test]
async fn a_burst_of_30_on_one_account_throttling_one_request_in_3_sees_no_429() {
    let h = start_with(throttling(3), &[]).await;
    let requests = (0..30).map(|i| {
        let h = &h;
        async move {
            let stream = i % 2 == 0;
            let prompt = format!("burst request {i}");
            let response = h
                .post(
                    "/v1/chat/completions",
                    chat("claude-sonnet-4.5", &prompt, stream),
                )
                .await;
            let status = response.status();
            let text = answer_text(response, stream).await;
            (i, status, prompt, text)
        }
    });
    for (i, status, prompt, text) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "request {i}: {text}");
        assert!(text.contains(&prompt), "request {i}: {text}");
    }
    let upstream = h.fake().stats().chat_requests as usize;
    assert!(upstream > 30, "some attempts were throttled: {upstream}");
    // One usage record per upstream attempt, throttled ones included.
    h.settle(upstream).await;
    assert_eq!(h.usage.records().len(), upstream);
    h.shutdown().await;
}

#[tokio::test]
async fn a_permanently_throttling_account_gives_a_429_after_the_retries_within_the_budget() {
    let budget = Duration::from_secs(4);
    let h = start_with(throttling(1), &["--pool-queue-timeout", "4"]).await;
    let start = Instant::now();
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "hi", false),
        )
        .await;
    let took = start.elapsed();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Rests of 1 s and 2 s were waited for; the third (4 s) would end past the budget.
    assert_eq!(h.fake().stats().chat_requests, 3);
    assert!(took < budget + Duration::from_secs(1), "{took:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_quota_exhausted_account_still_rests_until_its_reset() {
    let h = start().await;
    h.fake().push_scenario(Scenario::Status(402));
    for _ in 0..2 {
        let response = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", "hi", false),
            )
            .await;
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after > 3000, "{retry_after}");
    }
    // Asked once; the retry and the next request met the resting account without waiting.
    assert_eq!(h.fake().stats().chat_requests, 1);
    let status = &h.gateway.pool.status()[0];
    assert!(status.resting_for.unwrap() > Duration::from_secs(3000));
    assert!(!status.throttled);
    h.shutdown().await;
}
