//! End-to-end tests of the cap on open answers (`MAX_OPEN_STREAMS`): past it, a new answer is
//! refused at once with a 503 in the client's dialect; the slot comes back when an answer ends
//! or its client goes away; other routes are not counted.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use serde_json::json;

/// A streamed chat request whose answer trickles for about 20 s.
fn slow(text: &str) -> serde_json::Value {
    chat(
        "claude-sonnet-4.5",
        &format!("[fake:drip:200:100] {text}"),
        true,
    )
}

/// Sends a request and waits for its response head (the answer is then open).
async fn open(h: &Harness, body: serde_json::Value) -> reqwest::Response {
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn answers_past_the_cap_get_a_503_in_their_dialect_until_one_closes() {
    let h = start_with(FakeKiroConfig::default(), &["--max-open-streams", "2"]).await;
    let first = open(&h, slow("one")).await;
    let mut second = open(&h, slow("two")).await.bytes_stream();
    // Both are really streaming.
    assert!(second.next().await.unwrap().is_ok());

    let refused = h.post("/v1/chat/completions", slow("three")).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_OPEN_STREAMS"),
        "{body}"
    );
    let refused = h
        .http
        .post(h.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-sonnet-4.5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    // Routes that are not answers are served while the cap is reached.
    let models = h
        .http
        .get(h.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(
        h.fake().stats().chat_requests,
        2,
        "refusals never reach Kiro"
    );

    // The client of the first answer goes away: its slot comes back.
    drop(first);
    let mut served = None;
    for _ in 0..100 {
        let response = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", "hi", false),
            )
            .await;
        if response.status() == 200 {
            served = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.unwrap().contains("hi"));
    drop(second);
    h.shutdown().await;
}

#[tokio::test]
async fn a_capped_read_buffer_still_serves_ordinary_heads_and_refuses_oversized_ones() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiro_gateway::server::serve_with(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
        kiro_gateway::server::ServerOptions {
            http1_max_buf_size: Some(8192),
        },
    ));
    let http = reqwest::Client::new();
    let get = |header: usize| {
        http.get(format!("http://{addr}/"))
            .header("x-padding", "a".repeat(header))
            .send()
    };
    let ordinary = get(4096).await.unwrap();
    assert_eq!(ordinary.status(), 200);
    assert_eq!(ordinary.text().await.unwrap(), "ok");
    let oversized = get(12_000).await.unwrap();
    assert_eq!(oversized.status(), 431, "request header fields too large");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
