//! Two real gateway processes (the `kiro-gateway` binary) on one database, in front of the fake
//! Kiro: a key's `rpm_limit` and `max_concurrency` hold across both, counted in PostgreSQL (the
//! default `SHARED_LIMITS=auto` once the processes see each other) or in Redis. With Redis
//! stopped, both keep serving with their own counters and say so in `/ready`, the log and
//! `/metrics`; with Redis back, the limits are shared again.
//!
//! The bound stated in docs/deploy.md and checked here: while the engine answers, exactly the
//! limit is admitted across all processes (4 of 10 for `rpm_limit` 4, 2 at once for
//! `max_concurrency` 2); while it is down, each process admits up to the limit on its own.

mod common;
mod limits_support;
mod process_support;

use std::time::{Duration, Instant};

use common::chat;
use kiro_gateway::fake_kiro::{FakeKiroConfig, FakeKiroHandle};
use limits_support::{away_from_window_end, new_pg_database, server_url, OwnRedis};
use process_support::*;
use serde_json::{json, Value};

/// One non-streamed chat request: the status and body.
async fn ask(gw: &GatewayProcess, key: &str, text: &str) -> (u16, Value) {
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("claude-sonnet-4.5", text, false))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `/ready` of `gw` once its shared limits are in `state`.
async fn wait_state(gw: &GatewayProcess, engine: &str, state: &str) -> Value {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < Duration::from_secs(20) {
        let response = gw.http.get(gw.url("/ready")).send().await.unwrap();
        last = response.json().await.unwrap();
        if last["shared_limits"]["engine"] == engine && last["shared_limits"]["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "shared limits never became {engine}/{state}: {last}\n{}",
        gw.log()
    );
}

/// A user and an inference key with these limits, created through `gw`.
async fn limited_key(gw: &GatewayProcess, rpm: Option<u32>, at_once: Option<u32>) -> String {
    let name = format!("limited-{}", uuid::Uuid::new_v4().simple());
    let user = gw
        .ok("POST", "/admin/users", ROOT, Some(json!({ "name": name })))
        .await;
    let body = json!({
        "kind": "inference", "user_id": user["user"]["id"],
        "rpm_limit": rpm, "max_concurrency": at_once,
    });
    let key = gw.ok("POST", "/admin/keys", ROOT, Some(body)).await;
    key["key"].as_str().unwrap().to_owned()
}

/// Requests alternating between the two processes, one at a time: how many were served.
async fn served_in_turn(a: &GatewayProcess, b: &GatewayProcess, key: &str, n: usize) -> usize {
    let mut served = 0;
    for i in 0..n {
        let gw = if i % 2 == 0 { a } else { b };
        let (status, body) = ask(gw, key, &format!("request {i}")).await;
        match status {
            200 => served += 1,
            429 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("rate limit of API key"),
                "{body}"
            ),
            other => panic!("request {i}: {other} {body}"),
        }
    }
    served
}

/// `n` slow requests at once, alternating between the processes: how many were served.
async fn served_at_once(a: &GatewayProcess, b: &GatewayProcess, key: &str, n: usize) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let gw = if i % 2 == 0 { a } else { b };
        let request = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat(
                "claude-sonnet-4.5",
                "[fake:slow_first_byte:1500] hold on",
                false,
            ))
            .timeout(Duration::from_secs(30))
            .send();
        tasks.push(tokio::spawn(async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut served = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => served += 1,
            429 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("concurrency limit of API key"),
                "{body}"
            ),
            other => panic!("{other} {body}"),
        }
    }
    served
}

struct Pair {
    a: GatewayProcess,
    b: GatewayProcess,
    rpm_key: String,
    at_once_key: String,
    spare_keys: Vec<String>,
}

/// Gateway A, the keys (created before B starts, so B loads them at start on any backend),
/// then gateway B.
async fn two_gateways(
    dir: &std::path::Path,
    url: &str,
    fake: &FakeKiroHandle,
    env: &[(&str, String)],
) -> Pair {
    let args = fake_account_args(fake);
    let a = GatewayProcess::start_with_env(dir, url, &args, env).await;
    let rpm_key = limited_key(&a, Some(4), None).await;
    let at_once_key = limited_key(&a, None, Some(2)).await;
    let mut spare_keys = Vec::new();
    for _ in 0..2 {
        spare_keys.push(limited_key(&a, Some(3), None).await);
    }
    let b = GatewayProcess::start_with_env(dir, url, &args, env).await;
    Pair {
        a,
        b,
        rpm_key,
        at_once_key,
        spare_keys,
    }
}

/// rpm_limit 4: 4 of 10 across both; max_concurrency 2: 2 of 6 at once, then the slots are
/// free again.
async fn limits_hold_across_both(pair: &Pair) {
    away_from_window_end().await;
    assert_eq!(served_in_turn(&pair.a, &pair.b, &pair.rpm_key, 10).await, 4);
    assert_eq!(
        served_at_once(&pair.a, &pair.b, &pair.at_once_key, 6).await,
        2
    );
    // The slots came back (released when the answers ended).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let served = served_at_once(&pair.a, &pair.b, &pair.at_once_key, 2).await;
        if served == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgres_share_rate_and_concurrency_limits() {
    let Some(admin) = server_url("TEST_DATABASE_URL", "PostgreSQL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = new_pg_database(&admin).await;
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    // The default settings: SHARED_LIMITS=auto, no REDIS_URL.
    let pair = two_gateways(dir.path(), &url, &fake, &[]).await;
    wait_state(&pair.a, "postgres", "shared").await;
    wait_state(&pair.b, "postgres", "shared").await;
    limits_hold_across_both(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_limits_in_redis_and_count_alone_while_it_is_down() {
    if server_url("TEST_REDIS_URL", "Redis").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Any shared database will do; Redis holds the counters.
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => new_pg_database(&admin).await,
        _ => format!("sqlite://{}", dir.path().join("gateway.db").display()),
    };
    let mut redis = OwnRedis::start(dir.path(), 0);
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let env = [
        ("SHARED_LIMITS", "redis".to_owned()),
        ("REDIS_URL", redis.url()),
    ];
    let pair = two_gateways(dir.path(), &url, &fake, &env).await;
    wait_state(&pair.a, "redis", "shared").await;
    wait_state(&pair.b, "redis", "shared").await;
    limits_hold_across_both(&pair).await;

    // Redis goes away: requests are still served, each process counting alone.
    redis.stop();
    let key = &pair.spare_keys[0];
    let mut served = 0;
    for i in 0..5 {
        let (status, body) = ask(&pair.a, key, &format!("a {i}")).await;
        assert!(status == 200 || status == 429, "{status} {body}");
        served += usize::from(status == 200);
    }
    assert_eq!(served, 3, "process A applies the limit of 3 on its own");
    assert_eq!(served_in_turn(&pair.b, &pair.b, key, 4).await, 3);
    for gw in [&pair.a, &pair.b] {
        let ready = wait_state(gw, "redis", "degraded").await;
        assert_eq!(ready["status"], "ready", "degraded still serves: {ready}");
        assert!(ready["shared_limits"]["error"]
            .as_str()
            .unwrap()
            .contains("redis"));
        let metrics = gw.http.get(gw.url("/metrics")).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        assert!(
            metrics.contains("kiro_gateway_shared_limits_degraded{engine=\"redis\"} 1"),
            "{metrics}"
        );
        assert_eq!(gw.log().matches("shared limits degraded").count(), 1);
    }

    // Redis is back: shared again within the probe interval.
    redis.restart();
    for gw in [&pair.a, &pair.b] {
        wait_state(gw, "redis", "shared").await;
        assert_eq!(gw.log().matches("shared limits restored").count(), 1);
        let metrics = gw.http.get(gw.url("/metrics")).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        assert!(metrics.contains("kiro_gateway_shared_limits_degraded{engine=\"redis\"} 0"));
    }
    away_from_window_end().await;
    assert_eq!(
        served_in_turn(&pair.a, &pair.b, &pair.spare_keys[1], 8).await,
        3
    );
}
