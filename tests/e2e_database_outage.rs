//! Fault case "the database down and back", on PostgreSQL: a gateway process whose only Kiro
//! account lives in the database, on a PostgreSQL server of this test's own (so stopping it
//! disturbs no other test). While the server is stopped (`pg_ctl stop -m fast`):
//!
//! - chat keeps being served from the in-memory caches (keys, quota book, the account and its
//!   access token), for keys created before the outage, including one created through this
//!   gateway a moment before it;
//! - `/ready` answers 503 naming the database; management calls fail with a JSON 500;
//! - usage records stay queued and are retried (the queue depth shows on `/metrics`).
//!
//! When the server is back: `/ready` is 200 again, every usage record is stored exactly once
//! (one row per upstream attempt, charged once), management calls work, a key created by
//! another process just before the outage becomes usable, nothing panicked. Finally, SIGTERM
//! with the database down again ends within `SHUTDOWN_TIMEOUT` twice over; the row queued during
//! that second outage goes to the spill file, and the next start stores it exactly once.

mod common;
#[path = "store_support/pg_cluster.rs"]
mod pg_cluster;
mod process_support;

use std::time::{Duration, Instant};

use common::chat;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use kiro_gateway::store::crypto::{generate_api_key, hash_api_key, key_suffix};
use kiro_gateway::store::Secret;
use kiro_layers::store::{KeyKind, NewApiKey, NewUser, Store, UsageFilter, UsageGroup};
use pg_cluster::PgCluster;
use process_support::*;
use serde_json::{json, Value};

/// A chat request with `key`: status, body, and how long it took.
async fn ask(gw: &GatewayProcess, key: &str, text: &str, stream: bool) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("claude-sonnet-4.5", text, stream))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, started.elapsed())
}

/// Usage rows of `key_id` (or all keys) as stored: (rows, successes, charged).
async fn stored(store: &dyn Store, key_id: Option<i64>) -> (u64, u64, i64) {
    let filter = UsageFilter {
        key_id,
        ..UsageFilter::default()
    };
    let rows = store.query_usage(filter, UsageGroup::Key).await.unwrap();
    (
        rows.iter().map(|r| r.requests).sum(),
        rows.iter().map(|r| r.successes).sum(),
        rows.iter().map(|r| r.charged).sum(),
    )
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Stops or starts the cluster off the async threads (pg_ctl waits).
async fn pg(cluster: &std::sync::Arc<PgCluster>, up: bool) {
    let cluster = std::sync::Arc::clone(cluster);
    tokio::task::spawn_blocking(move || {
        if up {
            cluster.start_server()
        } else {
            cluster.stop_server()
        }
    })
    .await
    .unwrap();
}

/// A user and key written straight into the store, as another gateway process or the CLI
/// would: this gateway learns of it only through the change notification.
async fn key_from_elsewhere(store: &dyn Store, secret: &Secret) -> (i64, String) {
    let user = store
        .create_user(NewUser {
            name: "from elsewhere".into(),
            ..NewUser::default()
        })
        .await
        .unwrap();
    let (full, public_id) = generate_api_key();
    let row = store
        .create_api_key(NewApiKey {
            public_id,
            kind: KeyKind::Inference,
            user_id: Some(user.id),
            agent_id: None,
            name: "elsewhere".into(),
            secret_hash: hash_api_key(secret, &full).to_vec(),
            suffix: key_suffix(&full),
            expires_at: None,
            allowed_models: Vec::new(),
            rpm_limit: None,
            max_concurrency: None,
            quota_limit: None,
        })
        .await
        .unwrap();
    (row.id, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_down_and_back() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    let url = fresh_pg_database(&cluster.admin_url()).await;
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = upstream_args(&fake);
    args.extend(["--shutdown-timeout".into(), "2".into()]);
    let mut gw = GatewayProcess::start(dir.path(), &url, &args).await;

    // The only Kiro account comes from the database.
    let account = json!({
        "name": "db account", "refresh_token": fake.config().refresh_token,
        "profile_arn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE",
    });
    gw.ok("POST", "/admin/accounts", ROOT, Some(account)).await;
    let (k1_id, k1) = gw.user_key("before", None).await;
    for (i, stream) in [false, true].into_iter().enumerate() {
        let (status, body, _) = ask(&gw, &k1, &format!("warm up {i}"), stream).await;
        assert_eq!(status, 200, "{body}");
    }
    // Ready, with the account added through the API (not one from the environment).
    let ready: Value = gw.ok("GET", "/ready", ROOT, None).await;
    assert_eq!(ready["accounts"]["usable"], 1, "{ready}");
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");
    let store = gw.store().await;
    let (secret, _) = Secret::load(&gw.key_file).unwrap();
    wait_until(
        "the warm-up rows are stored",
        Duration::from_secs(10),
        || async { stored(store.as_ref(), Some(k1_id)).await.0 == 2 },
    )
    .await;

    // Right before the outage: a key through this gateway's API, and one from "elsewhere".
    let (k2_id, k2) = gw.user_key("just before", None).await;
    let (k3_id, k3) = key_from_elsewhere(store.as_ref(), &secret).await;
    pg(&cluster, false).await;
    let outage = Instant::now();

    // Chat is served from memory, fast.
    for (key, label) in [(&k1, "k1"), (&k2, "k2")] {
        for (i, stream) in [false, true, false].into_iter().enumerate() {
            let (status, body, took) = ask(&gw, key, &format!("{label} during {i}"), stream).await;
            assert_eq!(status, 200, "{label}: {body}");
            let complete = if stream { "data: [DONE]" } else { "during" };
            assert!(body.contains(complete), "{body}");
            assert!(took < Duration::from_secs(3), "{label} took {took:?}");
        }
    }
    let (k3_status, k3_body, _) = ask(&gw, &k3, "k3 during", false).await;
    eprintln!("a key created elsewhere just before the outage: {k3_status} during it");
    assert!(k3_status == 200 || k3_status == 401, "{k3_body}");
    let k3_served = u64::from(k3_status == 200);

    // /ready says what is wrong.
    let response = gw.http.get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let ready: Value = response.json().await.unwrap();
    assert_ne!(ready["checks"]["database"], "ok", "{ready}");
    assert_eq!(
        ready["accounts"]["usable"], 1,
        "only the database is missing: {ready}"
    );
    let reason = ready["reason"].as_str().unwrap();
    assert!(reason.starts_with("database: "), "{ready}");
    eprintln!("/ready during the outage: {ready}");

    // Management calls need the database: a JSON error, within the pool's timeout.
    let started = Instant::now();
    let (status, body) = gw
        .call(
            "POST",
            "/admin/users",
            ROOT,
            Some(json!({ "name": "during" })),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("database"));
    assert!(started.elapsed() < Duration::from_secs(15));

    // The usage writer noticed and keeps the records queued.
    wait_until(
        "the writer reports the outage",
        Duration::from_secs(30),
        || async { gw.log().contains("the database is unreachable") },
    )
    .await;
    let metrics = gw.http.get(gw.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let depth = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kiro_gateway_usage_queue_depth "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_default();
    assert!(depth >= 1.0, "queue depth {depth}:\n{metrics}");
    eprintln!(
        "outage of {:?}; {depth} usage rows queued",
        outage.elapsed()
    );

    // Back up.
    pg(&cluster, true).await;
    let recovered = Instant::now();
    let mut ready = Value::Null;
    for _ in 0..300 {
        let response = gw.http.get(gw.url("/ready")).send().await.unwrap();
        let status = response.status();
        ready = response.json().await.unwrap();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready["status"], "ready", "{ready}\n{}", gw.log());
    let attempts = || fake.stats().chat_requests;
    wait_until("every row is stored", Duration::from_secs(40), || async {
        stored(store.as_ref(), None).await.0 >= attempts()
    })
    .await;
    eprintln!(
        "all rows stored {:?} after the database came back",
        recovered.elapsed()
    );
    // Exactly once: one row per upstream attempt, and it stays that way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rows, ok_rows, charged) = stored(store.as_ref(), None).await;
    assert_eq!(rows, attempts(), "{}", gw.log());
    assert_eq!(ok_rows, rows);
    assert_eq!(stored(store.as_ref(), Some(k1_id)).await.0, 2 + 3);
    assert_eq!(stored(store.as_ref(), Some(k2_id)).await.0, 3);
    assert_eq!(stored(store.as_ref(), Some(k3_id)).await.0, k3_served);
    // Charged once: the users' quota_used is what their rows charged.
    let users = store.list_users(None).await.unwrap();
    assert_eq!(users.iter().map(|u| u.quota_used).sum::<i64>(), charged);
    assert!(charged > 0);

    // Management works again, and the key from elsewhere is known now.
    gw.ok(
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": "after" })),
    )
    .await;
    wait_until(
        "the key from elsewhere works",
        Duration::from_secs(40),
        || async { gw.call("GET", "/user/me", &k3, None).await.0 == 200 },
    )
    .await;
    let (status, body, _) = ask(&gw, &k1, "after the outage", true).await;
    assert_eq!(status, 200, "{body}");
    wait_until(
        "the row after the outage is stored",
        Duration::from_secs(10),
        || async { stored(store.as_ref(), None).await.0 == attempts() },
    )
    .await;

    // SIGTERM with the database down again: bounded, and that outage's row waits in the
    // spill file until the next start stores it.
    pg(&cluster, false).await;
    let (status, body, _) = ask(&gw, &k2, "during the second outage", false).await;
    assert_eq!(status, 200, "{body}");
    let stopping = Instant::now();
    gw.terminate();
    let exited = gw.wait(Duration::from_secs(20)).await;
    let took = stopping.elapsed();
    let log = gw.log();
    assert!(exited.success(), "{exited}:\n{log}");
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    assert!(
        log.contains("1 usage rows go to usage-spill.jsonl"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("SIGTERM with the database down: exited in {took:?}");
    let spill = dir.path().join("usage-spill.jsonl");
    assert_eq!(std::fs::read_to_string(&spill).unwrap().lines().count(), 1);
    pg(&cluster, true).await;
    let store = kiro_gateway::store::open(&url, &secret).await.unwrap();
    assert_eq!(stored(store.as_ref(), None).await.0, attempts() - 1);

    // The next start stores it, once, and removes the file.
    let gw = GatewayProcess::start(dir.path(), &url, &args).await;
    assert_eq!(stored(store.as_ref(), None).await.0, attempts());
    assert!(!spill.exists());
    assert!(
        gw.log().contains("stored the usage rows saved in"),
        "{}",
        gw.log()
    );
    // Charged once: the key's quota counts exactly what its rows charged, the replayed one too.
    let (_, _, charged) = stored(store.as_ref(), Some(k2_id)).await;
    let keys = gw.ok("GET", "/admin/keys", ROOT, None).await;
    let quota_used = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == k2_id)
        .map(|k| k["quota_used"].as_i64().unwrap())
        .unwrap();
    assert_eq!(quota_used, charged);
    assert!(charged > 0);
}
