//! End-to-end tests of the multi-tenant gateway: the real server on loopback, the fake Kiro
//! upstream, a SQLite database in a temporary directory per test. The two-gateway test runs on
//! PostgreSQL when TEST_DATABASE_URL is set (it only touches objects it creates, so it can
//! share the database with other runs).

mod common;
mod tenancy_support;

use common::chat;
use kiro_layers::traits::UsageStatus;
use serde_json::{json, Value};
use tenancy_support::*;

#[tokio::test]
async fn admin_creates_a_user_whose_key_is_shown_once_and_stored_hashed() {
    let Env { h, _dir } = start().await;
    let user = ok(
        &h,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": "alice" })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let created = ok(
        &h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user_id, "name": "laptop" })),
    )
    .await;
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-"));
    // Never again: not in lists, and the hash is not served either.
    for path in ["/admin/keys", &format!("/admin/keys?user_id={user_id}")] {
        let listed = ok(&h, "GET", path, ROOT, None).await.to_string();
        assert!(!listed.contains(&secret[3..]), "{path} leaks the key");
        assert!(!listed.contains("secret_hash"));
        assert!(listed.contains("laptop"));
    }
    let mine = ok(&h, "GET", "/user/keys", &secret, None).await.to_string();
    assert!(!mine.contains(&secret[3..]));
    let audit = ok(&h, "GET", "/admin/audit", ROOT, None).await.to_string();
    assert!(audit.contains("api_key") && !audit.contains(&secret[3..]));

    // The key works for inference, is charged, and the usage shows in every grouping.
    let response = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&chat("claude-sonnet-4.5", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    for group in ["user", "key", "model", "account", "day"] {
        let usage = wait_for(&h, &format!("/admin/usage?group_by={group}"), ROOT, |v| {
            v["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
        assert_eq!(usage["data"][0]["requests"], 1, "{group}: {usage}");
    }
    let quota = ok(&h, "GET", "/user/quota", &secret, None).await;
    assert!(quota["quota_used"].as_i64().unwrap() > 0, "{quota}");
    let by_model = ok(&h, "GET", "/user/usage?group_by=model", &secret, None).await;
    assert_eq!(by_model["data"][0]["group"], "claude-sonnet-4.5");

    // Revoked keys stop working at once.
    let key_id = created["api_key"]["id"].as_i64().unwrap();
    ok(&h, "DELETE", &format!("/admin/keys/{key_id}"), ROOT, None).await;
    let (status, _) = call(&h, "GET", "/user/me", &secret, None).await;
    assert_eq!(status, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn quota_refusal_in_both_dialects_is_recorded_as_rejected() {
    let Env { h, _dir } = start().await;
    let user = ok(
        &h,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": "bob", "quota_limit": 1 })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let key = ok(
        &h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user_id })),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let first = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("claude-sonnet-4.5", "hello", false))
        .send()
        .await
        .unwrap();
    let status = first.status();
    let text = first.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let calls_before = h.fake().stats().chat_requests;
    let openai = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("claude-sonnet-4.5", "again", false))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 429);
    let body: Value = openai.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("quota of user `{user_id}`")),
        "{body}"
    );
    let anthropic = h.http.post(h.url("/v1/messages")).header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({ "model": "claude-sonnet-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}] }))
        .send().await.unwrap();
    assert_eq!(anthropic.status(), 429);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("quota"));
    // Refused before Kiro, and recorded.
    assert_eq!(h.fake().stats().chat_requests, calls_before);
    let rejected = h
        .usage
        .records()
        .iter()
        .filter(|r| r.status == UsageStatus::Rejected)
        .count();
    assert_eq!(rejected, 2);
    // The admin adds quota: requests flow again.
    ok(
        &h,
        "POST",
        "/admin/quotas/add",
        ROOT,
        Some(json!({ "subject": "user", "id": user_id, "amount": 100_000_000 })),
    )
    .await;
    let again = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("claude-sonnet-4.5", "third", false))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn an_agent_cannot_reach_another_agents_users() {
    let Env { h, _dir } = start().await;
    let (_, a_key, a_user, _) = agent_with_user(&h, "acme", 5_000_000).await;
    let (_, b_key, b_user, b_user_key) = agent_with_user(&h, "globex", 5_000_000).await;
    // Sanity: each agent reaches its own user.
    ok(&h, "GET", &format!("/agent/users/{a_user}"), &a_key, None).await;
    let b_keys = ok(
        &h,
        "GET",
        &format!("/agent/users/{b_user}/keys"),
        &b_key,
        None,
    )
    .await;
    let b_key_id = b_keys["data"][0]["id"].as_i64().unwrap();
    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/agent/users/{b_user}"), None),
        (
            "PATCH",
            format!("/agent/users/{b_user}"),
            Some(json!({ "name": "stolen" })),
        ),
        ("GET", format!("/agent/users/{b_user}/keys"), None),
        (
            "POST",
            format!("/agent/users/{b_user}/keys"),
            Some(json!({})),
        ),
        (
            "DELETE",
            format!("/agent/users/{b_user}/keys/{b_key_id}"),
            None,
        ),
        (
            "POST",
            format!("/agent/users/{b_user}/transfer"),
            Some(json!({ "amount": 1 })),
        ),
        ("GET", format!("/agent/usage?user_id={b_user}"), None),
    ];
    for (method, path, body) in attempts {
        let (status, value) = call(&h, method, &path, &a_key, body).await;
        assert_eq!(status, 404, "{method} {path}: {value}");
        assert!(value["error"]["message"].is_string());
    }
    let listed = ok(&h, "GET", "/agent/users", &a_key, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    // B's user and key are untouched.
    let b = ok(&h, "GET", &format!("/agent/users/{b_user}"), &b_key, None).await;
    assert_eq!(b["user"]["name"], "globex-user");
    ok(&h, "GET", "/user/me", &b_user_key, None).await;
    // A transfer inside the agent's own users is recorded and moves the balance.
    let t = ok(
        &h,
        "POST",
        &format!("/agent/users/{a_user}/transfer"),
        &a_key,
        Some(json!({ "amount": 2_000_000 })),
    )
    .await;
    assert_eq!(t["transfer"]["agent_balance_after"], 3_000_000);
    let (status, _) = call(
        &h,
        "POST",
        &format!("/agent/users/{a_user}/transfer"),
        &a_key,
        Some(json!({ "amount": 9_000_000 })),
    )
    .await;
    assert_eq!(status, 409);
    let transfers = ok(&h, "GET", "/agent/transfers", &a_key, None).await;
    assert_eq!(transfers["data"].as_array().unwrap().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_user_sees_only_its_own_keys() {
    let Env { h, _dir } = start().await;
    let mut keys = Vec::new();
    for name in ["u1", "u2"] {
        let user = ok(
            &h,
            "POST",
            "/admin/users",
            ROOT,
            Some(json!({ "name": name })),
        )
        .await;
        let id = user["user"]["id"].as_i64().unwrap();
        let key = ok(
            &h,
            "POST",
            "/admin/keys",
            ROOT,
            Some(json!({ "kind": "inference", "user_id": id })),
        )
        .await;
        keys.push((
            key["key"].as_str().unwrap().to_owned(),
            key["api_key"]["id"].as_i64().unwrap(),
        ));
    }
    let mine = ok(&h, "GET", "/user/keys", &keys[0].0, None).await;
    let ids: Vec<i64> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [keys[0].1]);
    let (status, _) = call(
        &h,
        "DELETE",
        &format!("/user/keys/{}", keys[1].1),
        &keys[0].0,
        None,
    )
    .await;
    assert_eq!(status, 404);
    ok(&h, "GET", "/user/me", &keys[1].0, None).await;
    // A user creates and revokes its own second key.
    let second = ok(
        &h,
        "POST",
        "/user/keys",
        &keys[0].0,
        Some(json!({ "name": "ci" })),
    )
    .await;
    let second_id = second["api_key"]["id"].as_i64().unwrap();
    ok(
        &h,
        "DELETE",
        &format!("/user/keys/{second_id}"),
        &keys[0].0,
        None,
    )
    .await;
    // Admin and agent APIs refuse a user key.
    assert_eq!(
        call(&h, "GET", "/admin/users", &keys[0].0, None).await.0,
        403
    );
    assert_eq!(
        call(&h, "GET", "/agent/users", &keys[0].0, None).await.0,
        403
    );
    assert_eq!(
        call(&h, "GET", "/admin/users", "sk-nonsense", None).await.0,
        401
    );
    h.shutdown().await;
}

#[tokio::test]
async fn accounts_join_the_pool_and_share_the_round_robin() {
    let Env { h, _dir } = start().await;
    let token = h.fake().config().refresh_token.clone();
    for name in ["one", "two"] {
        ok(&h, "POST", "/admin/accounts", ROOT, Some(json!({ "name": name, "refresh_token": token, "profile_arn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE" }))).await;
    }
    let listed = ok(&h, "GET", "/admin/accounts", ROOT, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    for i in 0..6 {
        let r = h
            .post(
                "/v1/chat/completions",
                chat("claude-sonnet-4.5", &format!("n{i}"), false),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let accounts: Vec<Option<String>> = h
        .usage
        .records()
        .iter()
        .map(|r| r.account_id.clone())
        .collect();
    // Env credential plus two database accounts, strictly in turn.
    assert_eq!(accounts.len(), 6);
    assert_eq!(accounts[0..3], accounts[3..6]);
    let distinct: std::collections::HashSet<_> = accounts.iter().collect();
    assert_eq!(distinct.len(), 3, "{accounts:?}");
    // Disabled accounts leave the rotation; the reason is visible.
    let id = listed["data"][0]["account"]["id"].as_i64().unwrap();
    ok(
        &h,
        "POST",
        &format!("/admin/accounts/{id}/disable"),
        ROOT,
        None,
    )
    .await;
    let listed = ok(&h, "GET", "/admin/accounts", ROOT, None).await;
    assert_eq!(listed["data"][0]["account"]["status"], "disabled");
    assert!(listed["data"][0]["account"]["disabled_reason"].is_string());
    ok(
        &h,
        "POST",
        &format!("/admin/accounts/{id}/enable"),
        ROOT,
        None,
    )
    .await;
    ok(&h, "DELETE", &format!("/admin/accounts/{id}"), ROOT, None).await;
    assert_eq!(
        ok(&h, "GET", "/admin/accounts", ROOT, None).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.shutdown().await;
}

/// A client may send the same `x-request-id` on every request: each request still gets its own
/// usage row and its own charge in the database (rows are unique by request id and attempt, so
/// a shared id used to hide every request but the first).
#[tokio::test]
async fn a_reused_client_request_id_neither_hides_usage_nor_spares_the_charge() {
    let dir = temp_dir();
    for (backend, url) in backend_urls(&dir).await {
        let h = start_on(&dir, &url).await;
        let body = json!({ "name": "reuser" });
        let user = ok(&h, "POST", "/admin/users", ROOT, Some(body)).await;
        let body = json!({ "kind": "inference", "user_id": user["user"]["id"] });
        let key = ok(&h, "POST", "/admin/keys", ROOT, Some(body)).await;
        let (key_id, key) = (key["api_key"]["id"].clone(), key["key"].as_str().unwrap());
        for i in 0..3 {
            let response = h
                .http
                .post(h.url("/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-request-id", "same-trace-id")
                .json(&chat("claude-sonnet-4.5", &format!("hello {i}"), false))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-request-id"], "same-trace-id");
            response.text().await.unwrap();
        }
        let path = format!("/admin/usage?group_by=key&key_id={key_id}");
        let usage = wait_for(&h, &path, ROOT, |v| v["data"][0]["requests"] == 3).await;
        let charged = usage["data"][0]["charged"].as_i64().unwrap();
        let quota = ok(&h, "GET", "/user/quota", key, None).await;
        assert_eq!(quota["quota_used"], charged, "[{backend}] {quota}");
        let one = h.usage.records()[0].clone();
        assert!(
            charged >= 3 * (one.input_tokens as i64),
            "[{backend}] {usage}"
        );
        h.shutdown().await;
    }
}
