//! End-to-end tests of HTTP/2 to Kiro (`KIRO_HTTP2`): with `always`, answers go to the fake
//! over h2c (prior knowledge) and share connections, a new connection opening when one carries
//! as many answers as allowed, so no answer waits behind another's for its first byte; the
//! answers, errors and usage are what they are over HTTP/1.1. `auto` (plain http://) and `never`
//! keep HTTP/1.1.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_layers::kiro::http::UpstreamClient;

/// A fake that lets one connection carry at most `per` streams at once, and a gateway told to
/// put at most `per` answers on one connection.
async fn h2c(per: u32) -> Harness {
    let per_text = per.to_string();
    start_with(
        FakeKiroConfig {
            http2_max_concurrent_streams: per,
            ..FakeKiroConfig::default()
        },
        &[
            "--kiro-http2",
            "always",
            "--kiro-http2-streams-per-connection",
            &per_text,
            "--fake-reasoning",
            "false",
        ],
    )
    .await
}

fn lanes(h: &Harness) -> usize {
    match &h.gateway.deps.http {
        UpstreamClient::Direct(lanes) => lanes.lane_count(),
        UpstreamClient::Reqwest(_) => panic!("the direct client is in use"),
    }
}

/// Reads SSE bytes until the first text delta has arrived; returns what was read.
async fn until_first_delta(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
) -> String {
    let mut seen = String::new();
    while !seen.contains("\"content\":\"d0") {
        let chunk = stream.next().await.expect("the stream goes on").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

#[tokio::test]
async fn answers_share_h2c_connections_and_none_waits_behind_another() {
    let h = h2c(4).await;
    // Ten long answers open at once: with four per connection, three connections. Were they
    // queued on one connection, the fifth would get no first byte until the first ended (15 s).
    let opening = async {
        let mut streams = Vec::new();
        let mut heads = Vec::new();
        for i in 0..10 {
            let response = h
                .post(
                    "/v1/chat/completions",
                    chat(
                        "claude-sonnet-4.5",
                        &format!("[fake:drip:100:150] stream {i}"),
                        true,
                    ),
                )
                .await;
            assert_eq!(response.status(), 200);
            let mut stream = response.bytes_stream();
            heads.push(until_first_delta(&mut stream).await);
            streams.push(stream);
        }
        (heads, streams)
    };
    let (heads, streams) = tokio::time::timeout(Duration::from_secs(10), opening)
        .await
        .expect("every answer starts while the others are open");
    assert_eq!(lanes(&h), 3, "ten answers at four per connection");
    let stats = h.fake().stats();
    assert_eq!(stats.chat_requests, 10);
    assert_eq!(stats.http2_chat_requests, 10, "every call went over h2c");

    // Each answer arrives whole and in order.
    let expected: String = (0..100).map(|i| format!("d{i} ")).collect();
    for (head, stream) in heads.into_iter().zip(streams) {
        let rest: Vec<_> = stream.collect().await;
        let mut body = head;
        for chunk in rest {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        let (chunks, done) = openai_sse(&body);
        assert!(done, "{body}");
        // Each drip delta carries the fake's send time (`d7@<µs> `); the order is what counts.
        let unstamped: String = openai_text(&chunks)
            .split_terminator(' ')
            .map(|word| {
                let (delta, stamp) = word.split_once('@').expect("a stamped delta");
                assert!(stamp.parse::<u64>().is_ok(), "{word}");
                format!("{delta} ")
            })
            .collect();
        assert_eq!(unstamped, expected);
        assert_eq!(openai_finish(&chunks).as_deref(), Some("stop"));
    }
    h.settle(10).await;
    assert_eq!(h.usage.records().len(), 10, "one usage record per answer");

    // The connections stay for what comes next: no new lane for one more answer.
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "hi", false),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(lanes(&h), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn errors_and_resets_over_h2c_are_reported_as_over_http1() {
    let h = h2c(100).await;
    // A refusal before any output: the same well-formed client error.
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "[fake:status:400] nope", false),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    // A normal answer.
    let body = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "[fake:text:hello over h2c]", false),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"], "hello over h2c",
        "{body}"
    );
    // A stream reset before the head: every attempt on the only account is reset, the last
    // failure is reported (the account then rests, as over HTTP/1.1).
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "[fake:reset]", false),
        )
        .await;
    assert!(
        matches!(response.status().as_u16(), 502..=503),
        "{}",
        response.status()
    );
    let stats = h.fake().stats();
    assert_eq!(stats.http2_chat_requests, stats.chat_requests);
    h.settle(0).await;
    h.shutdown().await;
}

#[tokio::test]
async fn auto_over_plain_http_and_never_keep_http1() {
    for extra in [&[][..], &["--kiro-http2", "never"][..]] {
        let h = start_with(FakeKiroConfig::default(), extra).await;
        let response = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", "hi", true),
            )
            .await;
        assert_eq!(response.status(), 200);
        let (_, done) = openai_sse(&response.text().await.unwrap());
        assert!(done);
        let stats = h.fake().stats();
        assert_eq!(stats.chat_requests, 1, "{extra:?}");
        assert_eq!(stats.http2_chat_requests, 0, "{extra:?}");
        h.shutdown().await;
    }
}
