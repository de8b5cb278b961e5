//! "200 concurrent requests on a key with a quota overspend by at most the requests already in
//! flight", end to end: a real gateway process on each backend (SQLite, and PostgreSQL when
//! `TEST_DATABASE_URL` is set), a key whose quota fits `N` requests, 200 chat requests.
//!
//! The bound. The gateway admits a request while the key's spent amount is below its quota and
//! charges it when its answer ends; a non-streamed answer is charged before its response is
//! written (the collector drops the event stream, which emits the usage record, which the
//! charging sink books at once). Take the last admitted request L: when it was admitted, the
//! charged requests `m` had spent `m * C < Q`, so `m <= N - 1` with `N = ceil(Q / C)`; every
//! other admitted request was in flight then, and a client with `K` connections has at most
//! `K` requests in flight, L included. So
//!
//! ```text
//! N  <=  successes  <=  N - 1 + K
//! ```
//!
//! (at least `N`: nothing is refused before `N` charges close the quota). With `K = 1` that is
//! exactly `N`; the test also runs `K = 16` and `K = 200` (all at once). Every other request
//! must be a 429 in OpenAI's error shape naming the key's quota, and the database must hold
//! exactly one row per request and charge exactly `successes * C`.

mod common;
mod process_support;

use std::sync::Arc;
use std::time::Duration;

use common::chat;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use process_support::*;
use serde_json::Value;
use tokio::sync::Semaphore;

const REQUESTS: usize = 200;

/// What 200 requests of one client got: (status, body) each.
async fn fire(gw: &GatewayProcess, key: &str, connections: usize) -> Vec<(u16, Value)> {
    let gate = Arc::new(Semaphore::new(connections));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let gate = Arc::clone(&gate);
        let request = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat(
                "claude-sonnet-4.5",
                "price me the same every time",
                false,
            ));
        tasks.push(tokio::spawn(async move {
            let _connection = gate.acquire_owned().await.unwrap();
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen
}

/// The key's usage once all `requests` rows are stored: (requests, successes, charged).
async fn stored_usage(gw: &GatewayProcess, key_id: i64, requests: u64) -> (u64, u64, i64) {
    let path = format!("/admin/usage?group_by=key&key_id={key_id}");
    for _ in 0..500 {
        let usage = gw.ok("GET", &path, ROOT, None).await;
        if let Some(row) = usage["data"].as_array().and_then(|d| d.first()) {
            let counts = (
                row["requests"].as_u64().unwrap(),
                row["successes"].as_u64().unwrap(),
                row["charged"].as_i64().unwrap(),
            );
            if counts.0 >= requests {
                return counts;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("key {key_id}: the usage rows never all arrived");
}

/// The quota_used the database has for `key_id`.
async fn stored_quota_used(gw: &GatewayProcess, key_id: i64) -> i64 {
    let keys = gw.ok("GET", "/admin/keys", ROOT, None).await;
    keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id)
        .map(|k| k["quota_used"].as_i64().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_overspend_a_key_quota_by_at_most_what_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backend_urls(dir.path()).await {
        let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
            .await
            .unwrap();
        let args = fake_account_args(&fake);
        let gw = GatewayProcess::start(dir.path(), &url, &args).await;

        // The price of one request (same prompt, same answer, same tokens): two keys, one
        // request each, must cost the same.
        let mut costs = Vec::new();
        for name in ["calibrate-a", "calibrate-b"] {
            let (id, key) = gw.user_key(name, None).await;
            let seen = fire_one(&gw, &key).await;
            assert_eq!(seen.0, 200, "{}", seen.1);
            costs.push(stored_usage(&gw, id, 1).await.2);
        }
        let cost = costs[0];
        assert!(cost > 10 && costs[1] == cost, "[{backend}] costs {costs:?}");
        let quota = 5 * cost - cost / 2;
        let fits = (quota + cost - 1) / cost; // N = ceil(Q / C)
        assert_eq!(fits, 5);

        for connections in [1, 16, REQUESTS] {
            let name = format!("k{connections}");
            let (key_id, key) = gw.user_key(&name, Some(quota)).await;
            let seen = fire(&gw, &key, connections).await;
            let successes = seen.iter().filter(|(status, _)| *status == 200).count() as i64;
            let quota_message = format!("The quota of API key `{key_id}` is exhausted");
            for (status, body) in seen.iter().filter(|(status, _)| *status != 200) {
                assert_eq!(*status, 429, "[{backend}] K={connections}: {body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.starts_with(&quota_message), "[{backend}] {body}");
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                assert!(body["error"]["type"].is_string(), "{body}");
            }
            let bound = fits - 1 + connections as i64;
            eprintln!(
                "[{backend}] K={connections:>3}: {successes} of {REQUESTS} succeeded; the quota \
                 fits {fits}, the bound is {bound}; overspend {} micro-credits ({} requests)",
                successes * cost - quota,
                successes - fits,
            );
            assert!(
                (fits..=bound).contains(&successes),
                "[{backend}] K={connections}: {successes} successes outside {fits}..={bound}"
            );
            // The database agrees: one row per request, each success charged once.
            let (rows, ok_rows, charged) = stored_usage(&gw, key_id, REQUESTS as u64).await;
            assert_eq!((rows, ok_rows), (REQUESTS as u64, successes as u64));
            assert_eq!(charged, successes * cost, "[{backend}] K={connections}");
            assert_eq!(stored_quota_used(&gw, key_id).await, successes * cost);
            // And the quota stays closed.
            assert_eq!(fire_one(&gw, &key).await.0, 429);
        }
        drop(gw);
        drop(fake);
    }
}

async fn fire_one(gw: &GatewayProcess, key: &str) -> (u16, Value) {
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat(
            "claude-sonnet-4.5",
            "price me the same every time",
            false,
        ))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
