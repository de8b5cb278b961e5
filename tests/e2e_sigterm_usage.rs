//! "Killing the gateway with SIGTERM mid-stream loses no usage record", on the database path: a
//! real gateway process on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL, streams open
//! against slow fake scenarios, SIGTERM while every stream has started, then the database,
//! opened through the store API after the process exited, must hold exactly one usage row per
//! upstream attempt.
//!
//! Two kinds of stream: `drip` streams finish inside the drain window (`--shutdown-timeout`)
//! and must end cleanly for the client; `stall` streams would outlive it, so the server cuts
//! them when the window closes, and their rows must still be written before the process exits.
//!
//! At scale: 1,000 streams open at once over HTTP/2 to the fake (`--kiro-http2 always`), the
//! same exactly-once rule (`benches/streams.sh` with `SIGTERM=1` does it with 10,000).

mod common;
mod process_support;

use std::time::Duration;

use common::chat;
use futures_util::StreamExt;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_layers::store::{UsageFilter, UsageGroup};
use process_support::*;
use tokio::sync::mpsc;

/// How many streams of each kind, and how long the drain window is.
struct Shape {
    /// Streams that finish within the drain window (`drip`).
    dripping: usize,
    /// The drip scenario: `drip:<deltas>:<ms>`.
    drip: &'static str,
    /// The last delta of a dripping stream.
    last_delta: &'static str,
    /// Streams that never finish by themselves.
    stalled: usize,
    /// The drain window, seconds.
    drain: u64,
    /// More gateway options.
    extra: &'static [&'static str],
}

/// How a client's stream ended.
#[derive(Debug)]
struct Ended {
    text: String,
    done: bool,
}

/// Opens one stream; reports on `started` once content has arrived, then reads to the end.
async fn open_stream(
    http: reqwest::Client,
    gw_url: String,
    key: String,
    text: String,
    started: mpsc::UnboundedSender<()>,
) -> Ended {
    let response = http
        .post(gw_url)
        .bearer_auth(key)
        .json(&chat("claude-sonnet-4.5", &text, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut reported = false;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            break; // cut by the server at the end of the drain window
        };
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if !reported && seen.contains("\"content\"") {
            reported = true;
            let _ = started.send(());
        }
    }
    Ended {
        done: seen.contains("data: [DONE]"),
        text: seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_loses_no_usage_record() {
    sigterm_mid_stream(Shape {
        dripping: 25,
        drip: "drip:20:100",
        last_delta: "\"d19@",
        stalled: 25,
        drain: 3,
        extra: &[],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_thousand_streams_open_loses_no_usage_record() {
    // A thousand client connections in this process, a thousand in the gateway's.
    let limit = kiro_gateway::open_streams::raise_open_file_limit();
    assert!(
        limit.is_none_or(|files| files >= 2_500),
        "this test needs an open-file limit of 2,500 (it is {limit:?}): raise the hard limit"
    );
    sigterm_mid_stream(Shape {
        dripping: 500,
        drip: "drip:30:200",
        last_delta: "\"d29@",
        stalled: 500,
        drain: 10,
        extra: &["--kiro-http2", "always"],
    })
    .await;
}

async fn sigterm_mid_stream(shape: Shape) {
    let Shape {
        dripping,
        drip,
        last_delta,
        stalled,
        drain,
        extra,
    } = shape;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    for (backend, url) in backend_urls(dir.path()).await {
        let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
            .await
            .unwrap();
        let mut args = fake_account_args(&fake);
        args.extend(["--shutdown-timeout".into(), drain.to_string()]);
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let mut gw = GatewayProcess::start(dir.path(), &url, &args).await;
        let (key_id, key) = gw.user_key("streamer", None).await;

        let (started_tx, mut started) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for i in 0..dripping + stalled {
            let scenario = if i < dripping { drip } else { "stall" };
            clients.push(tokio::spawn(open_stream(
                http.clone(),
                gw.url("/v1/chat/completions"),
                key.clone(),
                format!("[fake:{scenario}] stream {i}"),
                started_tx.clone(),
            )));
        }
        let all_started = async {
            for _ in 0..dripping + stalled {
                started.recv().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all_started)
            .await
            .expect("every stream starts");

        gw.terminate();
        let exited = gw.wait(Duration::from_secs(drain + 30)).await;
        assert!(exited.success(), "[{backend}] {exited}:\n{}", gw.log());
        let mut ended = Vec::new();
        for client in clients {
            ended.push(client.await.unwrap());
        }
        for (i, stream) in ended.iter().enumerate() {
            if i < dripping {
                assert!(
                    stream.done,
                    "[{backend}] stream {i} was cut: {}",
                    stream.text
                );
                assert!(stream.text.contains(last_delta), "{}", stream.text);
            } else {
                assert!(!stream.done, "[{backend}] a stalled stream finished?");
            }
        }
        let log = gw.log();
        assert!(!log.contains("usage record dropped"), "{log}");
        assert!(!log.contains("usage rows lost"), "{log}");

        // One row per upstream attempt: none lost, none doubled.
        let attempts = fake.stats().chat_requests;
        assert_eq!(attempts as usize, dripping + stalled, "no retries expected");
        let store = gw.store().await;
        let filter = UsageFilter {
            key_id: Some(key_id),
            ..UsageFilter::default()
        };
        let usage = store.query_usage(filter, UsageGroup::Key).await.unwrap();
        assert_eq!(usage.len(), 1, "{usage:?}");
        eprintln!(
            "[{backend}] {attempts} upstream attempts, {} usage rows ({} ok), {} charged",
            usage[0].requests, usage[0].successes, usage[0].charged
        );
        assert_eq!(usage[0].requests, attempts, "[{backend}]:\n{log}");
        assert_eq!(usage[0].successes as usize, dripping, "[{backend}]");
        let all = store
            .query_usage(UsageFilter::default(), UsageGroup::Key)
            .await
            .unwrap();
        assert_eq!(all.iter().map(|u| u.requests).sum::<u64>(), attempts);
        drop(fake);
    }
}
