//! End to end: OpenAI clients through the real server and every layer, against the strict fake
//! Kiro upstream over loopback.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_layers::traits::UsageStatus;
use serde_json::json;

#[tokio::test]
async fn health_answers() {
    let h = start().await;
    let response = h.http.get(h.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn non_streamed_text() {
    let h = start().await;
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "Hello there, gateway", false),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-sonnet-4.5");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("Hello there, gateway"), "{content}");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    h.settle(1).await;
    let records = h.usage.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, UsageStatus::Ok);
    assert_eq!(records[0].resolved_model, "claude-sonnet-4.5");
    h.shutdown().await;
}

#[tokio::test]
async fn streamed_multibyte_text_survives_awkward_splits() {
    let h = start().await;
    let literal = "héllo 世界, ÿ 🌍🚀 格格 — done";
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-haiku-4.5", &format!("[fake:text:{literal}]"), true),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = response.text().await.unwrap();
    let (chunks, done) = openai_sse(&body);
    assert!(done, "stream must end with [DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(openai_text(&chunks), literal);
    assert_eq!(openai_finish(&chunks).as_deref(), Some("stop"));
    h.shutdown().await;
}

#[tokio::test]
async fn streamed_tool_call_has_incremental_arguments() {
    let h = start().await;
    let body = json!({
        "model": "claude-sonnet-4.5",
        "stream": true,
        "messages": [{"role": "user", "content": "[fake:tool_call] weather?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}
        }}]
    });
    let text = h
        .post("/v1/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();
    let (chunks, done) = openai_sse(&text);
    assert!(done);
    let deltas: Vec<&serde_json::Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        deltas.len() > 2,
        "arguments must stream in several deltas: {deltas:?}"
    );
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[0]["id"].as_str().is_some());
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    let parsed: serde_json::Value = serde_json::from_str(&arguments).unwrap();
    assert!(parsed["city"].is_string());
    assert_eq!(openai_finish(&chunks).as_deref(), Some("tool_calls"));
    h.shutdown().await;
}

#[tokio::test]
async fn long_tool_names_are_shortened_upstream_and_restored() {
    let h = start().await;
    let long_name = format!("mcp__plugin_{}_tool", "very_long_segment_".repeat(5));
    assert!(long_name.len() > 64);
    let body = json!({
        "model": "claude-sonnet-4.5",
        "messages": [{"role": "user", "content": "[fake:tool_call] go"}],
        "tools": [{"type": "function", "function": {"name": long_name, "description": "d",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    });
    let response: serde_json::Value = h
        .post("/v1/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        response["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        long_name.as_str()
    );
    let sent = h.fake().stats().last_request_body.unwrap();
    let upstream_name = sent["conversationState"]["currentMessage"]["userInputMessage"]
        ["userInputMessageContext"]["tools"][0]["toolSpecification"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(upstream_name.len() <= 64);
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_streams_with_an_expiring_credential_refresh_once() {
    let h = start().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = h.http.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(KEY)
                .json(&chat("auto", &format!("request {i}"), true))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let (chunks, done) = openai_sse(&response.text().await.unwrap());
            assert!(done);
            assert!(openai_text(&chunks).contains(&format!("request {i}")));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(h.fake().stats().refreshes, 1);
    h.settle(100).await;
    assert_eq!(h.usage.records().len(), 100);
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_403_forces_one_refresh_and_a_retry() {
    let h = start().await;
    let first = h
        .post("/v1/chat/completions", chat("auto", "one", false))
        .await;
    assert_eq!(first.status(), 200);
    h.fake().expire_all_tokens();
    let second = h
        .post("/v1/chat/completions", chat("auto", "two", false))
        .await;
    assert_eq!(second.status(), 200);
    assert_eq!(h.fake().stats().refreshes, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_releases_the_lease_and_records_once() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", chat("auto", "[fake:stall]", true))
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert_eq!(h.gateway.pool.in_flight(), 1);
    drop(body);
    h.settle(1).await;
    let records = h.usage.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, UsageStatus::ClientAbort);
    assert_eq!(h.gateway.pool.in_flight(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn errors_are_openai_shaped() {
    // Without a wait in line, Kiro's 429 reaches the client at once (e2e_throttle.rs covers
    // the retries).
    let h = start_with(FakeKiroConfig::default(), &["--pool-queue-timeout", "0"]).await;
    // Missing key.
    let response = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&chat("auto", "x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    // Bad JSON.
    let response = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // Wrong type names the field.
    let response = h
        .post(
            "/v1/chat/completions",
            json!({"model": "auto", "messages": "hi"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );
    // Unknown model.
    let response = h
        .post("/v1/chat/completions", chat("gpt-nope", "x", false))
        .await;
    assert_eq!(response.status(), 404);
    // Context too long.
    let response = h
        .post(
            "/v1/chat/completions",
            chat(
                "auto",
                "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]",
                false,
            ),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    // Upstream throttling: 429 with Retry-After; the account then rests, so the next request
    // is refused by the gateway itself, also as a 429.
    for _ in 0..2 {
        let response = h
            .post(
                "/v1/chat/completions",
                chat("auto", "[fake:status:429]", false),
            )
            .await;
        assert_eq!(response.status(), 429);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }
    assert_eq!(
        h.fake().stats().chat_requests,
        2,
        "the resting account is not asked again"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = start_with(FakeKiroConfig::default(), &["--max-body-bytes", "1000"]).await;
    let response = h
        .post(
            "/v1/chat/completions",
            chat("auto", &"x".repeat(5000), false),
        )
        .await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1000"));
    h.shutdown().await;
}

#[tokio::test]
async fn failures_after_streaming_began_end_with_an_error_chunk() {
    let h = start().await;
    for scenario in ["[fake:exception_mid_stream]", "[fake:cut_stream]"] {
        let response = h
            .post("/v1/chat/completions", chat("auto", scenario, true))
            .await;
        assert_eq!(response.status(), 200, "{scenario}");
        let text = tokio::time::timeout(Duration::from_secs(20), response.text())
            .await
            .expect("must not hang")
            .unwrap_or_default();
        let (chunks, _) = openai_sse(&text);
        let error = chunks.iter().find(|c| c.get("error").is_some());
        assert!(error.is_some(), "{scenario}: no error chunk in {text}");
        assert_ne!(
            openai_finish(&chunks).as_deref(),
            Some("stop"),
            "{scenario}"
        );
    }
    h.settle(2).await;
    assert!(h
        .usage
        .records()
        .iter()
        .all(|r| r.status == UsageStatus::UpstreamError));
    h.shutdown().await;
}

#[tokio::test]
async fn no_credentials_means_a_clear_503() {
    let h = start_gateway(serve_args(&[])).await;
    let response = h
        .post("/v1/chat/completions", chat("auto", "hi", false))
        .await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("REFRESH_TOKEN"));
    let health = h.http.get(h.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn models_list_in_openai_shape() {
    let h = start().await;
    let body: serde_json::Value = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"claude-opus-4.7"));
    assert!(ids.contains(&"auto-kiro"));
    h.shutdown().await;
}

#[tokio::test]
async fn alias_is_resolved_on_the_chat_path() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", chat("auto-kiro", "hi", false))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["model"], "auto-kiro");
    let sent = h.fake().stats().last_request_body.unwrap();
    assert_eq!(
        sent["conversationState"]["currentMessage"]["userInputMessage"]["modelId"],
        "auto"
    );
    h.shutdown().await;
}
