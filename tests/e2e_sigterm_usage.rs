//! "Killing the gateway with SIGTERM mid-stream loses no usage record", on the database path: a
//! real gateway process on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL, streams open
//! against slow fake scenarios, SIGTERM while every stream has started, then the database,
//! opened through the store API after the process exited, must hold exactly one usage row per
//! upstream attempt.
//!
//! Two kinds of stream: `drip` streams finish inside the drain window (`--shutdown-timeout`)
//! and must end cleanly for the client; `stall` streams would outlive it, so the server cuts
//! them when the window closes, and their rows must still be written before the process exits.

mod common;
mod process_support;

use std::time::Duration;

use common::chat;
use futures_util::StreamExt;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_layers::store::{UsageFilter, UsageGroup};
use process_support::*;
use tokio::sync::mpsc;

/// Streams that finish within the drain window: 20 deltas, one every 100 ms.
const DRIPPING: usize = 25;
/// Streams that never finish by themselves.
const STALLED: usize = 25;
/// The drain window, seconds.
const DRAIN: u64 = 3;

/// How a client's stream ended.
#[derive(Debug)]
struct Ended {
    text: String,
    done: bool,
}

/// Opens one stream; reports on `started` once content has arrived, then reads to the end.
async fn open_stream(
    gw_url: String,
    key: String,
    text: String,
    started: mpsc::UnboundedSender<()>,
) -> Ended {
    let response = reqwest::Client::new()
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
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backend_urls(dir.path()).await {
        let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
            .await
            .unwrap();
        let mut args = fake_account_args(&fake);
        args.extend(["--shutdown-timeout".into(), DRAIN.to_string()]);
        let mut gw = GatewayProcess::start(dir.path(), &url, &args).await;
        let (key_id, key) = gw.user_key("streamer", None).await;

        let (started_tx, mut started) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for i in 0..DRIPPING + STALLED {
            let scenario = if i < DRIPPING { "drip:20:100" } else { "stall" };
            clients.push(tokio::spawn(open_stream(
                gw.url("/v1/chat/completions"),
                key.clone(),
                format!("[fake:{scenario}] stream {i}"),
                started_tx.clone(),
            )));
        }
        for _ in 0..DRIPPING + STALLED {
            tokio::time::timeout(Duration::from_secs(20), started.recv())
                .await
                .expect("every stream starts")
                .unwrap();
        }

        gw.terminate();
        let exited = gw.wait(Duration::from_secs(DRAIN + 30)).await;
        assert!(exited.success(), "[{backend}] {exited}:\n{}", gw.log());
        let mut ended = Vec::new();
        for client in clients {
            ended.push(client.await.unwrap());
        }
        for (i, stream) in ended.iter().enumerate() {
            if i < DRIPPING {
                assert!(
                    stream.done,
                    "[{backend}] stream {i} was cut: {}",
                    stream.text
                );
                assert!(stream.text.contains("d19 "), "{}", stream.text);
            } else {
                assert!(!stream.done, "[{backend}] a stalled stream finished?");
            }
        }
        let log = gw.log();
        assert!(!log.contains("usage record dropped"), "{log}");
        assert!(!log.contains("usage rows lost"), "{log}");

        // One row per upstream attempt: none lost, none doubled.
        let attempts = fake.stats().chat_requests;
        assert_eq!(attempts as usize, DRIPPING + STALLED, "no retries expected");
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
        assert_eq!(usage[0].successes as usize, DRIPPING, "[{backend}]");
        let all = store
            .query_usage(UsageFilter::default(), UsageGroup::Key)
            .await
            .unwrap();
        assert_eq!(all.iter().map(|u| u.requests).sum::<u64>(), attempts);
        drop(fake);
    }
}
