//! End to end: Anthropic Messages clients through the real server and every layer, against the
//! strict fake Kiro upstream over loopback.

mod common;

use common::*;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use serde_json::{json, Value};

const VERSION: &str = "2023-06-01";

fn messages(model: &str, text: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

async fn post_anthropic(h: &Harness, path: &str, body: &Value) -> reqwest::Response {
    h.http
        .post(h.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn message(h: &Harness, body: &Value) -> Value {
    let response = post_anthropic(h, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// An Anthropic SSE body as (event name, data) pairs; checks the two agree.
fn anthropic_sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("SSE event without a name: {event:?}"));
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("SSE event without data: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{event}");
            (name.to_owned(), data)
        })
        .collect()
}

async fn stream(h: &Harness, body: &Value) -> Vec<(String, Value)> {
    let response = post_anthropic(h, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    anthropic_sse(&response.text().await.unwrap())
}

/// Concatenates the deltas of one kind (`text_delta` -> `text`, `thinking_delta` -> `thinking`…).
fn deltas(events: &[(String, Value)], kind: &str, field: &str) -> String {
    events
        .iter()
        .filter(|(_, d)| d["type"] == "content_block_delta" && d["delta"]["type"] == kind)
        .map(|(_, d)| d["delta"][field].as_str().unwrap().to_owned())
        .collect()
}

fn message_delta(events: &[(String, Value)]) -> &Value {
    &events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .expect("a message_delta")
        .1
}

fn assert_usage_shape(usage: &Value) {
    for field in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        assert!(usage[field].is_u64(), "{field} missing in {usage}");
    }
}

async fn error_of(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn non_streamed_text() {
    let h = start().await;
    let body = message(
        &h,
        &messages("claude-sonnet-4-5-20250929", "Hello there, gateway", false),
    )
    .await;
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(body["content"][0]["type"], "text");
    let text = body["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Hello there, gateway"), "{text}");
    assert_usage_shape(&body["usage"]);
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);
    h.settle(1).await;
    assert_eq!(h.usage.records()[0].resolved_model, "claude-sonnet-4.5");
    h.shutdown().await;
}

#[tokio::test]
async fn streamed_text_in_anthropic_event_order() {
    let h = start().await;
    let literal = "héllo 世界 🌍 — done";
    let events = stream(
        &h,
        &messages("claude-haiku-4.5", &format!("[fake:text:{literal}]"), true),
    )
    .await;
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[1], "content_block_start");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-haiku-4.5");
    assert_usage_shape(&start["usage"]);
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(start["usage"]["output_tokens"], 0);
    assert_eq!(deltas(&events, "text_delta", "text"), literal);
    let end = message_delta(&events);
    assert_eq!(end["delta"]["stop_reason"], "end_turn");
    assert_eq!(end["delta"]["stop_sequence"], Value::Null);
    assert_usage_shape(&end["usage"]);
    assert!(end["usage"]["output_tokens"].as_u64().unwrap() > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn thinking_tags_become_thinking_blocks() {
    let h = start().await;
    let mut body = messages("claude-sonnet-4.5", "[fake:thinking] what is it?", false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2000});
    let answer = message(&h, &body).await;
    let content = answer["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "thinking", "{answer}");
    assert_eq!(content[0]["thinking"], "Let me think about this carefully.");
    assert!(!content[0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(content[1]["type"], "text");
    assert_eq!(
        content[1]["text"].as_str().unwrap().trim(),
        "The answer is 42."
    );

    body["stream"] = json!(true);
    let events = stream(&h, &body).await;
    assert_eq!(
        events[1].1["content_block"]["type"], "thinking",
        "{events:?}"
    );
    assert_eq!(
        deltas(&events, "thinking_delta", "thinking"),
        "Let me think about this carefully."
    );
    assert!(!deltas(&events, "signature_delta", "signature").is_empty());
    assert_eq!(
        deltas(&events, "text_delta", "text").trim(),
        "The answer is 42."
    );
    h.shutdown().await;
}

#[tokio::test]
async fn native_reasoning_events_become_thinking_blocks() {
    let h = start().await;
    let answer = message(
        &h,
        &messages("claude-sonnet-4.5", "[fake:reasoning_event]", false),
    )
    .await;
    assert_eq!(answer["content"][0]["type"], "thinking");
    assert_eq!(
        answer["content"][0]["thinking"],
        "The user wants a short answer; 42 will do."
    );
    assert_eq!(answer["content"][1]["text"], "The answer is 42.");
    let events = stream(
        &h,
        &messages("claude-sonnet-4.5", "[fake:reasoning_event]", true),
    )
    .await;
    assert_eq!(
        deltas(&events, "thinking_delta", "thinking"),
        "The user wants a short answer; 42 will do."
    );
    h.shutdown().await;
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    })
}

#[tokio::test]
async fn tool_use_round_trip() {
    let h = start().await;
    let question = "[fake:tool_call] What is the weather in Paris?";
    let mut body = messages("claude-sonnet-4.5", question, false);
    body["tools"] = json!([weather_tool()]);
    let first = message(&h, &body).await;
    assert_eq!(first["stop_reason"], "tool_use", "{first}");
    let call = first["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block")
        .clone();
    assert_eq!(call["name"], "get_weather");
    assert!(call["input"]["city"].is_string(), "{call}");

    // Streamed: the arguments arrive as input_json_delta fragments that form the object.
    body["stream"] = json!(true);
    let events = stream(&h, &body).await;
    assert_eq!(message_delta(&events)["delta"]["stop_reason"], "tool_use");
    let streamed: Value =
        serde_json::from_str(&deltas(&events, "input_json_delta", "partial_json")).unwrap();
    assert!(streamed["city"].is_string());

    // The client runs the tool and sends the result back.
    let follow_up = json!({
        "model": "claude-sonnet-4.5",
        "max_tokens": 1024,
        "tools": [weather_tool()],
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny, 24 °C"}
            ]},
        ],
    });
    let answer = message(&h, &follow_up).await;
    assert_eq!(answer["stop_reason"], "end_turn", "{answer}");
    let text = answer["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Sunny, 24 °C"), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_are_enforced() {
    let h = start().await;
    let mut body = messages("claude-sonnet-4.5", "[fake:long:300]", false);
    body["max_tokens"] = json!(5);
    let answer = message(&h, &body).await;
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert!(answer["content"][0]["text"].as_str().unwrap().len() < 300);
    body["stream"] = json!(true);
    let events = stream(&h, &body).await;
    assert_eq!(message_delta(&events)["delta"]["stop_reason"], "max_tokens");

    let mut body = messages(
        "claude-sonnet-4.5",
        "[fake:text:alpha beta STOP gamma]",
        false,
    );
    body["stop_sequences"] = json!(["never", "STOP"]);
    let answer = message(&h, &body).await;
    assert_eq!(answer["stop_reason"], "stop_sequence");
    assert_eq!(answer["stop_sequence"], "STOP");
    assert_eq!(answer["content"][0]["text"], "alpha beta ");
    body["stream"] = json!(true);
    let events = stream(&h, &body).await;
    let end = message_delta(&events);
    assert_eq!(end["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(end["delta"]["stop_sequence"], "STOP");
    assert_eq!(deltas(&events, "text_delta", "text"), "alpha beta ");
    h.shutdown().await;
}

#[tokio::test]
async fn errors_are_anthropic_bodies_with_the_right_type() {
    // Without a wait in line, Kiro's 429 reaches the client at once (e2e_throttle.rs covers
    // the retries).
    let h = start_with(FakeKiroConfig::default(), &["--pool-queue-timeout", "0"]).await;
    let mut no_max = messages("claude-sonnet-4.5", "hi", false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let message = error_of(
        post_anthropic(&h, "/v1/messages", &no_max).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(message.contains("max_tokens"), "{message}");

    let system_role = json!({
        "model": "claude-sonnet-4.5", "max_tokens": 10,
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hi"}],
    });
    let message = error_of(
        post_anthropic(&h, "/v1/messages", &system_role).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(message.contains("role"), "{message}");

    let wrong_key = h
        .http
        .post(h.url("/v1/messages"))
        .header("x-api-key", "not-the-key")
        .header("anthropic-version", VERSION)
        .json(&messages("claude-sonnet-4.5", "hi", false))
        .send()
        .await
        .unwrap();
    error_of(wrong_key, 401, "authentication_error").await;

    let message = error_of(
        post_anthropic(&h, "/v1/messages", &messages("gpt-nope", "hi", false)).await,
        404,
        "not_found_error",
    )
    .await;
    assert!(message.contains("gpt-nope"), "{message}");

    let too_long = messages(
        "claude-sonnet-4.5",
        "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]",
        false,
    );
    let message = error_of(
        post_anthropic(&h, "/v1/messages", &too_long).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(message.contains("prompt is too long"), "{message}");

    let throttled = messages("claude-sonnet-4.5", "[fake:status:429]", false);
    let response = post_anthropic(&h, "/v1/messages", &throttled).await;
    assert!(response.headers().contains_key("retry-after"));
    error_of(response, 429, "rate_limit_error").await;
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_request_too_large() {
    let h = start_with(FakeKiroConfig::default(), &["--max-body-bytes", "1000"]).await;
    let body = messages("claude-sonnet-4.5", &"x".repeat(5000), false);
    error_of(
        post_anthropic(&h, "/v1/messages", &body).await,
        413,
        "request_too_large",
    )
    .await;
    h.shutdown().await;
}

/// A 1x1 PNG, base64.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

#[tokio::test]
async fn count_tokens_grows_with_system_tools_and_images() {
    let h = start().await;
    let count = |body: Value| {
        let h = &h;
        async move {
            let response = post_anthropic(h, "/v1/messages/count_tokens", &body).await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["input_tokens"].as_u64().unwrap()
        }
    };
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "How many tokens is this question?"}],
    });
    let plain = count(body.clone()).await;
    assert!(plain > 0);
    body["system"] = json!([{"type": "text", "text": "You are a careful assistant. ".repeat(20),
        "cache_control": {"type": "ephemeral"}}]);
    let with_system = count(body.clone()).await;
    assert!(with_system > plain + 50, "{with_system} vs {plain}");
    body["tools"] = json!([weather_tool()]);
    let with_tools = count(body.clone()).await;
    assert!(with_tools > with_system, "{with_tools} vs {with_system}");
    body["messages"][0]["content"] = json!([
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "How many tokens is this question?"},
    ]);
    let with_image = count(body.clone()).await;
    assert!(with_image > with_tools, "{with_image} vs {with_tools}");

    // Names resolve as on /v1/messages: aliases work, unknown models are 404.
    body["model"] = json!("auto-kiro");
    assert_eq!(count(body.clone()).await, with_image);
    body["model"] = json!("gpt-nope");
    error_of(
        post_anthropic(&h, "/v1/messages/count_tokens", &body).await,
        404,
        "not_found_error",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn models_list_in_anthropic_shape_from_list_available_models() {
    let h = start().await;
    h.gateway.catalog.wait_for_rounds(1).await;
    assert!(h.fake().stats().list_models_requests >= 1);
    let response = h
        .http
        .get(h.url("/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert!(data.len() >= 13, "{body}");
    for model in data {
        assert_eq!(model["type"], "model");
        assert!(model["id"].is_string() && model["display_name"].is_string());
        assert!(model["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], data[0]["id"]);
    assert_eq!(body["last_id"], data[data.len() - 1]["id"]);
    assert!(data.iter().any(|m| m["id"] == "claude-opus-4.7"));
    // The fake describes deepseek-3.2 with a 164k window, the static list says 128k.
    let openai: Value = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deepseek = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "deepseek-3.2")
        .unwrap()
        .clone();
    assert_eq!(deepseek["context_window"], 164_000);
    h.shutdown().await;
}

#[tokio::test]
async fn the_static_list_serves_when_the_host_has_no_catalog() {
    let config = FakeKiroConfig {
        serve_list_models: false,
        ..FakeKiroConfig::default()
    };
    let h = start_with(config, &[]).await;
    h.gateway.catalog.wait_for_rounds(1).await;
    assert!(h.fake().stats().list_models_requests >= 1);
    assert_eq!(
        h.gateway.catalog.status().source,
        kiro_layers::kiro::catalog::CatalogSource::Fallback
    );
    let openai: Value = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let models = openai["data"].as_array().unwrap();
    // claude-opus-4.8 is only in the static list; deepseek-3.2 has its static 128k window.
    assert!(models.iter().any(|m| m["id"] == "claude-opus-4.8"));
    let deepseek = models.iter().find(|m| m["id"] == "deepseek-3.2").unwrap();
    assert_eq!(deepseek["context_window"], 128_000);
    let answer = message(&h, &messages("claude-sonnet-4.5", "hi", false)).await;
    assert_eq!(answer["stop_reason"], "end_turn");
    h.shutdown().await;
}

/// Usage from `contextUsagePercentage` uses the resolved model's real window: for deepseek-3.2
/// the fetched 164k, not the static 128k. Then input + output tokens match what the fake counts
/// for a body of the same size, which `[fake:metadata]` reports as real `metadataEvent` counts.
#[tokio::test]
async fn usage_uses_real_counts_or_the_resolved_window() {
    let h = start().await;
    h.gateway.catalog.wait_for_rounds(1).await;
    // Both directives are 15 characters, so both request bodies have the same size.
    let real = message(&h, &messages("deepseek-3.2", "[fake:metadata]", false)).await;
    let derived = message(&h, &messages("deepseek-3.2", "[fake:text:Hi!]", false)).await;
    assert_usage_shape(&real["usage"]);
    assert_usage_shape(&derived["usage"]);
    let real_input = real["usage"]["input_tokens"].as_u64().unwrap();
    let derived_total = derived["usage"]["input_tokens"].as_u64().unwrap()
        + derived["usage"]["output_tokens"].as_u64().unwrap();
    assert!(
        real_input.abs_diff(derived_total) <= 2,
        "real {real_input} vs derived {derived_total}"
    );
    // Streamed answers carry the same real counts in message_delta.
    let events = stream(&h, &messages("deepseek-3.2", "[fake:metadata]", true)).await;
    assert_eq!(message_delta(&events)["usage"]["input_tokens"], real_input);
    h.settle(3).await;
    assert!(h.usage.records().iter().all(|r| r.credits > 0.0));
    h.shutdown().await;
}

/// Claude Code sends `system` messages inside `messages` for newer models, with the
/// `per-turn-control` beta; their text joins the system prompt sent to Kiro.
#[tokio::test]
async fn system_messages_are_accepted_with_the_per_turn_control_beta() {
    let h = start().await;
    let body = json!({
        "model": "claude-sonnet-5-5", "max_tokens": 100,
        "system": "You are Claude Code.",
        "messages": [
            {"role": "user", "content": "[fake:text:HELLO]"},
            {"role": "system", "content": [{"type": "text", "text": "Working directory: /tmp/x"}]},
        ],
    });
    let response = h
        .http
        .post(h.url("/v1/messages?beta=true"))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .header(
            "anthropic-beta",
            "claude-code-20250219,per-turn-control-2026-07-01",
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "HELLO");
    let sent = h.fake().stats().last_request_body.unwrap().to_string();
    assert!(sent.contains("Working directory: /tmp/x"), "{sent}");
    assert!(sent.contains("You are Claude Code."));
    h.settle(1).await;
    // `claude-sonnet-5-5` is not in the catalog: it lands on the newest Sonnet.
    assert_eq!(h.usage.records()[0].resolved_model, "claude-sonnet-4.6");
    h.shutdown().await;
}
