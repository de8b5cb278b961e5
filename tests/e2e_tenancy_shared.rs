//! End-to-end tests of two gateways on one database (PostgreSQL when TEST_DATABASE_URL is set,
//! else a SQLite file): quotas and account cooldowns are shared through the store.

mod common;
mod tenancy_support;

use std::time::Duration;

use common::chat;
use serde_json::json;
use tenancy_support::*;

#[tokio::test]
async fn two_gateways_on_one_database_share_quotas() {
    let dir = temp_dir();
    let url = shared_database_url(&dir).await;
    let a = start_on(&dir, &url).await;
    let b = start_on(&dir, &url).await;
    let user = ok(
        &a,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": "shared", "quota_limit": 1 })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let key = ok(
        &a,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user_id })),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    // B learns the key from the store, serves it, and A sees B's charge.
    wait_for(&b, "/user/me", &key, |_| true).await;
    let r = b
        .http
        .post(b.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("claude-sonnet-4.5", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // A's in-memory book learns B's charge from the store's change notification...
    let book = a.gateway.tenancy.as_ref().unwrap().tenancy.book.clone();
    let subject = kiro_gateway::tenancy::limits::Subject::User(user_id.to_string());
    for _ in 0..300 {
        if book.used(&subject) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        book.used(&subject) > 0,
        "gateway A never saw gateway B's charge"
    );
    // ...and refuses A's very first request.
    let r = a
        .http
        .post(a.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("claude-sonnet-4.5", "from a", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn two_gateways_share_account_cooldowns_through_the_store() {
    let dir = temp_dir();
    let url = shared_database_url(&dir).await;
    let a = start_on(&dir, &url).await;
    let token = a.fake().config().refresh_token.clone();
    let created = ok(&a, "POST", "/admin/accounts", ROOT, Some(json!({ "name": format!("cool-{}", uuid::Uuid::new_v4().simple()), "refresh_token": token }))).await;
    let id = created["account"]["id"].as_i64().unwrap();
    let b = start_on(&dir, &url).await;
    // Gateway A learns that the account is throttled (as its observer writes after a 429).
    let store = a.gateway.tenancy.as_ref().unwrap().tenancy.store.clone();
    store
        .put_account_state(kiro_layers::store::AccountState {
            account_id: id,
            rest_until: Some(chrono::Utc::now() + chrono::Duration::seconds(600)),
            throttled: true,
            consecutive_failures: 0,
            breaker: kiro_layers::store::BreakerState::Closed,
        })
        .await
        .unwrap();
    // Gateway B rests it too, without ever having called it.
    let listed = wait_for(&b, "/admin/accounts", ROOT, |v| {
        v["data"].as_array().unwrap().iter().any(|acc| {
            acc["account"]["id"] == id
                && acc["resting_for_seconds"].as_u64().is_some_and(|s| s > 500)
        })
    })
    .await;
    assert!(listed.to_string().contains("\"throttled\":true"));
    for i in 0..4 {
        let r = b
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", &format!("b{i}"), false),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let id_text = id.to_string();
    assert!(b
        .usage
        .records()
        .iter()
        .all(|r| r.account_id.as_deref() != Some(id_text.as_str())));
    a.shutdown().await;
    b.shutdown().await;
}

/// The usage record of the request `h` just served (records trail the body a little).
async fn served_by(h: &common::Harness, records: usize) -> String {
    for _ in 0..500 {
        let all = h.usage.records();
        if all.len() >= records {
            return all[records - 1].account_id.clone().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no usage record for request {records}");
}

/// Requests alternating between two gateways take the accounts in one strict turn.
async fn strict_turn_across_gateways(dir: &TempDir, url: &str) {
    let a = start_on(dir, url).await;
    let token = a.fake().config().refresh_token.clone();
    for _ in 0..3 {
        let name = format!("turn-{}", uuid::Uuid::new_v4().simple());
        ok(&a, "POST", "/admin/accounts", ROOT, Some(json!({ "name": name, "refresh_token": token, "profile_arn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE" }))).await;
    }
    let b = start_on(dir, url).await;
    let pool = |h: &common::Harness| h.gateway.tenancy.as_ref().unwrap().pool.clone();
    // Each sees the environment credential and the three accounts, and the other process.
    for _ in 0..500 {
        let ready = [&a, &b]
            .iter()
            .all(|h| pool(h).shares_turn() && pool(h).status().len() == 4);
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pool(&a).shares_turn() && pool(&b).shares_turn());
    let mut turns = Vec::new();
    for i in 0..8 {
        let h = if i % 2 == 0 { &a } else { &b };
        let r = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", &format!("turn {i}"), false),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        turns.push(served_by(h, i / 2 + 1).await);
    }
    // Four accounts (the environment's, the same in both, and three in the database), each
    // once per round, in the same order every round, whichever process served.
    let round: std::collections::HashSet<_> = turns[..4].iter().collect();
    assert_eq!(round.len(), 4, "{turns:?}");
    assert_eq!(turns[..4], turns[4..], "{turns:?}");
    // A process that leaves stops the other from asking the database for turns.
    pool(&a).leave().await;
    for _ in 0..500 {
        if !pool(&b).shares_turn() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pool(&b).shares_turn());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn two_gateways_on_one_database_take_accounts_in_one_strict_turn() {
    let dir = temp_dir();
    strict_turn_across_gateways(&dir, &database_url(&dir)).await;
    let dir = temp_dir();
    let url = shared_database_url(&dir).await;
    if url.starts_with("postgres") {
        strict_turn_across_gateways(&dir, &url).await;
    }
}
