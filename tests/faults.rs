//! Fault injection against the fake upstream: for every fault the client gets a well-formed
//! answer or a well-formed error, nothing hangs past the configured timeouts, every lease goes
//! back to the pool, and there is exactly one usage record per upstream attempt.

mod common;

use std::time::Duration;

use common::*;
use kiro_gateway::fake_kiro::{FakeKiroConfig, Scenario};
use serde_json::{json, Value};

/// Short timeouts so faults resolve quickly; every wait below is bounded by these.
const FAST: &[&str] = &[
    "--first-token-timeout",
    "1",
    "--streaming-read-timeout",
    "2",
    "--retry-base-delay-ms",
    "10",
];

/// Longest any single request may take here (the timeouts above, times the attempts, plus slack).
const NO_HANG: Duration = Duration::from_secs(20);

/// What the client saw, after checking that it is well formed.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A complete answer: its text and finish reason.
    Answer { text: String, finish: String },
    /// An HTTP error status with an OpenAI error body.
    Error(u16),
    /// A stream that began and then carried an error event.
    StreamError { text: String },
}

async fn ask(h: &Harness, body: Value) -> Seen {
    let stream = body["stream"].as_bool().unwrap_or(false);
    let exchange = async {
        let response = h.post("/v1/chat/completions", body).await;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .expect("the body is readable to its end");
        (status, text)
    };
    let (status, text) = tokio::time::timeout(NO_HANG, exchange)
        .await
        .expect("the gateway answers within the configured timeouts");
    if status != 200 {
        let error: Value = serde_json::from_str(&text).expect("errors are JSON");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{error}"
        );
        assert!(error["error"]["type"].is_string(), "{error}");
        return Seen::Error(status);
    }
    if !stream {
        let answer: Value = serde_json::from_str(&text).expect("answers are JSON");
        return Seen::Answer {
            text: answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            finish: answer["choices"][0]["finish_reason"]
                .as_str()
                .expect("a finish reason")
                .to_owned(),
        };
    }
    let (chunks, done) = openai_sse(&text);
    let content = openai_text(&chunks);
    if let Some(error) = chunks.iter().find(|c| c.get("error").is_some()) {
        assert!(error["error"]["message"].is_string(), "{error}");
        return Seen::StreamError { text: content };
    }
    assert!(done, "a stream without an error ends with [DONE]: {text}");
    Seen::Answer {
        text: content,
        finish: openai_finish(&chunks).expect("a finish reason"),
    }
}

/// No lease out, and one usage record per upstream attempt.
async fn assert_accounted(h: &Harness) {
    let attempts = h.fake().stats().chat_requests as usize;
    h.settle(attempts).await;
    // Records are written when streams drop; give stragglers a moment, then count exactly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.gateway.pool.in_flight(), 0, "a lease leaked");
    assert_eq!(
        h.usage.records().len(),
        attempts,
        "one usage record per upstream attempt"
    );
}

fn request(text: &str, stream: bool) -> Value {
    chat("auto", text, stream)
}

async fn fast() -> Harness {
    start_with(FakeKiroConfig::default(), FAST).await
}

#[tokio::test]
async fn broken_bodies_before_output_are_retried_into_an_answer() {
    for scenario in [Scenario::Garbage, Scenario::HugeFrame] {
        for stream in [false, true] {
            let h = fast().await;
            h.fake().push_scenario(scenario.clone());
            let seen = ask(&h, request("say hello", stream)).await;
            let Seen::Answer { text, finish } = seen else {
                panic!("{scenario:?}: {seen:?}");
            };
            assert!(!text.is_empty());
            assert_eq!(finish, "stop");
            assert_eq!(h.fake().stats().chat_requests, 2, "{scenario:?}");
            assert_accounted(&h).await;
            h.shutdown().await;
        }
    }
}

#[tokio::test]
async fn a_slow_first_byte_is_dropped_and_retried() {
    let h = fast().await;
    h.fake()
        .push_scenario(Scenario::SlowFirstByte(Duration::from_secs(5)));
    let seen = ask(&h, request("hello", true)).await;
    assert!(matches!(seen, Seen::Answer { .. }), "{seen:?}");
    assert_eq!(h.fake().stats().chat_requests, 2);
    assert_accounted(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn faults_after_output_end_the_stream_with_an_error_event() {
    for directive in [
        "[fake:bad_crc]",
        "[fake:cut_stream]",
        "[fake:stall]",
        "[fake:exception_mid_stream:InternalServerException]",
    ] {
        let h = fast().await;
        let seen = ask(&h, request(directive, true)).await;
        assert!(
            matches!(&seen, Seen::StreamError { text } if !text.is_empty()),
            "{directive}: {seen:?}"
        );
        let seen = ask(&h, request(directive, false)).await;
        assert!(matches!(seen, Seen::Error(_)), "{directive}: {seen:?}");
        assert_accounted(&h).await;
        h.shutdown().await;
    }
}

#[tokio::test]
async fn connection_reset_before_headers_is_a_well_formed_error() {
    let h = fast().await;
    let seen = ask(&h, request("[fake:reset]", false)).await;
    // Every attempt on the only account is reset; the last failure is reported.
    assert!(matches!(seen, Seen::Error(502..=503)), "{seen:?}");
    assert_accounted(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn bursts_of_upstream_errors_end_in_well_formed_errors() {
    for (codes, expected) in [(vec![500, 503, 500], 503), (vec![503, 503, 503], 503)] {
        let h = fast().await;
        for code in &codes {
            h.fake().push_scenario(Scenario::Status(*code));
        }
        let seen = ask(&h, request("hello", false)).await;
        assert_eq!(seen, Seen::Error(expected), "{codes:?}");
        assert_accounted(&h).await;
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_burst_of_throttles_is_absorbed_within_the_budget_and_reported_past_it() {
    // Rests of 1 s and 2 s fit a 10 s budget: the fourth attempt answers.
    let h = fast().await;
    for _ in 0..3 {
        h.fake().push_scenario(Scenario::Status(429));
    }
    let seen = ask(&h, request("hello", false)).await;
    assert!(matches!(seen, Seen::Answer { .. }), "{seen:?}");
    assert_eq!(h.fake().stats().chat_requests, 4);
    assert_accounted(&h).await;
    h.shutdown().await;
    // With a 2 s budget the second rest (2 s) ends too late: a 429 after two attempts.
    let mut args = FAST.to_vec();
    args.extend(["--pool-queue-timeout", "2"]);
    let h = start_with(FakeKiroConfig::default(), &args).await;
    for _ in 0..3 {
        h.fake().push_scenario(Scenario::Status(429));
    }
    let seen = ask(&h, request("hello", false)).await;
    assert_eq!(seen, Seen::Error(429));
    assert_eq!(h.fake().stats().chat_requests, 2);
    assert_accounted(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_cut_tool_call_is_reported_as_length_not_as_a_call() {
    let h = fast().await;
    let body = json!({
        "model": "auto",
        "stream": true,
        "messages": [{"role": "user", "content": "[fake:truncated_tool] write the file"}],
        "tools": [{"type": "function", "function": {
            "name": "write_file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}
        }}],
    });
    let seen = ask(&h, body).await;
    assert!(
        matches!(&seen, Seen::Answer { finish, .. } if finish == "length"),
        "{seen:?}"
    );
    assert_accounted(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_refresh_endpoint_down_is_a_well_formed_error_and_recovers() {
    let h = fast().await;
    assert!(matches!(
        ask(&h, request("hi", false)).await,
        Seen::Answer { .. }
    ));
    h.fake().expire_all_tokens();
    h.fake().set_refresh_down(true);
    let seen = ask(&h, request("hi", false)).await;
    assert!(matches!(seen, Seen::Error(500..=599)), "{seen:?}");
    h.fake().set_refresh_down(false);
    // The service's own refresh-and-retry after the 403 is an upstream attempt of its own,
    // with its own record: two upstream calls, two records.
    h.settle(3).await;
    assert_eq!(h.usage.records().len(), 3);
    assert_eq!(h.gateway.pool.in_flight(), 0);
    assert_eq!(h.fake().stats().chat_requests, 3);
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_conversations_are_compressed_or_refused_in_the_dialect() {
    // 40 rounds of big tool output: far over the 600 kB payload limit.
    let mut messages = vec![json!({"role": "user", "content": "start"})];
    for i in 0..40 {
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("call_{i}"), "type": "function",
             "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"),
            "content": format!("line {i} ").repeat(4_000)}));
    }
    messages.push(json!({"role": "user", "content": "summarise"}));
    let body = json!({
        "model": "auto", "messages": messages,
        "tools": [{"type": "function", "function": {"name": "read",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
    });
    let h = fast().await;
    let response = h.post("/v1/chat/completions", body.clone()).await;
    let status = response.status();
    let header = response.headers().get("x-kiro-compression").cloned();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
    let header = header.unwrap().to_str().unwrap().to_owned();
    assert!(header.starts_with("level="), "{header}");
    h.shutdown().await;

    let mut args = FAST.to_vec();
    args.extend(["--context-compression", "false"]);
    let h = start_with(FakeKiroConfig::default(), &args).await;
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "context_length_exceeded", "{error}");
    assert_eq!(h.fake().stats().chat_requests, 0, "never sent to Kiro");
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_under_load_finishes_every_stream_and_records_it() {
    let h = start_with(FakeKiroConfig::default(), &[]).await;
    let http = h.http.clone();
    let url = h.url("/v1/chat/completions");
    let mut clients = Vec::new();
    for i in 0..50 {
        let http = http.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(KEY)
                .json(&chat(
                    "auto",
                    &format!("[fake:slow_first_byte:800] n{i}"),
                    true,
                ))
                .send()
                .await
                .unwrap();
            response.text().await.unwrap()
        }));
    }
    while h.fake().stats().chat_requests < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = h.usage.clone();
    let pool = h.gateway.pool.clone();
    // The server's shutdown future fires while all 50 streams are open.
    let stopping = tokio::spawn(h.shutdown());
    for client in clients {
        let body = tokio::time::timeout(NO_HANG, client)
            .await
            .unwrap()
            .unwrap();
        let (chunks, done) = openai_sse(&body);
        let errored = chunks.iter().any(|c| c.get("error").is_some());
        assert!(done || errored, "stream ended uncleanly: {body}");
    }
    stopping.await.unwrap();
    for _ in 0..100 {
        if usage.records().len() == 50 && pool.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(usage.records().len(), 50);
    assert_eq!(pool.in_flight(), 0);
}
