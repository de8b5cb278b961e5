//! Cursor accounts in the database, through the real routes (gateway in-process, fake Kiro and
//! fake Cursor over loopback): `POST /admin/accounts` takes a session token with its refresh
//! token, a state.vscdb by path or uploaded, and a browser cookie (upgraded through the fake's
//! §5.3 endpoints); bad input is a clear 400; the pool serves the account, refreshes its token
//! once for many callers before it expires and writes the new one back encrypted; a refresh
//! Cursor refuses for good disables the account with the reason.

mod common;
mod tenancy_support;

use std::time::Duration;

use base64::Engine as _;
use kiro_gateway::fake_cursor::{self, FakeCursorConfig, FakeCursorHandle};
use serde_json::{json, Value};
use tenancy_support::*;

async fn gateway(cursor: &FakeCursorHandle) -> (common::Harness, TempDir) {
    let dir = temp_dir();
    let url = database_url(&dir);
    let key_file = dir.0.join("secret.key");
    let base = cursor.base_url();
    let h = common::start_with(
        kiro_gateway::fake_kiro::FakeKiroConfig::default(),
        &[
            "--database-url",
            &url,
            "--admin-api-key",
            ROOT,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--cursor-api-url",
            &base,
            "--cursor-website-url",
            &base,
        ],
    )
    .await;
    (h, dir)
}

/// A state.vscdb as Cursor writes it (the keys this gateway reads, and one it ignores).
fn state_vscdb(dir: &TempDir, access: &str, refresh: &str, email: &str) -> std::path::PathBuf {
    let path = dir
        .0
        .join(format!("state-{}.vscdb", uuid::Uuid::new_v4().simple()));
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB);\
         INSERT INTO ItemTable VALUES ('cursorAuth/cachedSignUpType', 'Auth_0');",
    )
    .unwrap();
    for (key, value) in [
        ("cursorAuth/accessToken", access),
        ("cursorAuth/refreshToken", refresh),
        ("cursorAuth/cachedEmail", email),
    ] {
        db.execute("INSERT INTO ItemTable VALUES (?1, ?2)", [key, value])
            .unwrap();
    }
    path
}

fn jwt(claims: Value) -> String {
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.c2ln")
}

async fn refused(h: &common::Harness, body: Value, needle: &str) {
    let (status, answer) = call(h, "POST", "/admin/accounts", ROOT, Some(body.clone())).await;
    assert_eq!(status, 400, "{body}: {answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{body}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_accounts_are_added_in_every_form_and_bad_input_is_a_clear_400() {
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    let (h, dir) = gateway(&cursor).await;

    // (a) a session token in the cookie form, with its refresh token.
    let session = cursor.issue_session_token(3600);
    let added = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "cursor token", "session_token": format!("user_01X::{session}"), "refresh_token": cursor.issue_refresh_token()})),
    )
    .await;
    let a = &added["account"];
    assert_eq!(a["kind"], "cursor", "{added}");
    let hex64 = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(hex64(&a["machine_id"]) && hex64(&a["client_key"]), "{a}");
    let shown = added.to_string();
    assert!(
        !shown.contains(&session),
        "the session token is never shown"
    );

    // (b) state.vscdb by path (named after its email) and uploaded.
    let file = state_vscdb(
        &dir,
        &cursor.issue_session_token(3600),
        &cursor.issue_refresh_token(),
        "pro@example.com",
    );
    let by_path = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "", "state_vscdb_path": file})),
    )
    .await;
    assert_eq!(by_path["account"]["name"], "pro@example.com", "{by_path}");
    assert_ne!(
        by_path["account"]["machine_id"], a["machine_id"],
        "each account its own machine id"
    );
    let upload = state_vscdb(
        &dir,
        &cursor.issue_session_token(3600),
        &cursor.issue_refresh_token(),
        "up@example.com",
    );
    // A real state.vscdb carries the IDE's chat history: several MiB, past axum's 2 MiB default.
    rusqlite::Connection::open(&upload)
        .unwrap()
        .execute(
            "INSERT INTO ItemTable VALUES ('history', ?1)",
            [vec![7u8; 4 << 20]],
        )
        .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&upload).unwrap());
    let uploaded = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "uploaded", "state_vscdb_base64": encoded})),
    )
    .await;
    assert_eq!(uploaded["account"]["kind"], "cursor");

    // (c) a browser cookie token, upgraded to a session token (§5.3) through the fake.
    let web = cursor.issue_web_token(3600);
    let upgraded = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "from cookie", "kind": "cursor", "web_cookie": format!("user_01FAKE%3A%3A{web}")})),
    )
    .await;
    let store = std::sync::Arc::clone(&h.gateway.tenancy.as_ref().unwrap().tenancy.store);
    let row = store
        .get_account(upgraded["account"]["id"].as_i64().unwrap())
        .await
        .unwrap();
    let token = row.access_token.unwrap();
    assert_eq!(
        kiro_layers::cursor::auth::token_type(&token).as_deref(),
        Some("session")
    );
    assert!(
        !row.refresh_token.is_empty(),
        "the upgrade hands out a refresh token"
    );

    // An expired session token is renewed at once with its refresh token.
    let refreshes = cursor.stats().refreshes;
    ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "renewed", "session_token": cursor.issue_session_token(-60), "refresh_token": cursor.issue_refresh_token()})),
    )
    .await;
    assert_eq!(cursor.stats().refreshes, refreshes + 1);

    // Bad input: a clear 400 each, and nothing added.
    let before = ok(&h, "GET", "/admin/accounts", ROOT, None).await["data"]
        .as_array()
        .unwrap()
        .len();
    refused(
        &h,
        json!({"name": "x", "session_token": "not-a-jwt"}),
        "not a Cursor token",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "session_token": "a.!!!.c"}),
        "payload",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "session_token": cursor.issue_session_token(-60)}),
        "expired",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "session_token": cursor.issue_session_token(-60), "refresh_token": "revoked"}),
        "renewing it failed",
    )
    .await;
    let forged_web =
        jwt(json!({"type": "web", "sub": "auth0|user_01NOBODY", "exp": 4_000_000_000u64}));
    refused(
        &h,
        json!({"name": "x", "session_token": format!("user_01NOBODY::{forged_web}")}),
        "cursorAuth/accessToken",
    )
    .await;
    refused(&h, json!({"name": "x", "state_vscdb_base64": base64::engine::general_purpose::STANDARD.encode(b"plain text, not SQLite at all, padded to be long enough")}), "not a Cursor state database").await;
    refused(
        &h,
        json!({"name": "x", "state_vscdb_base64": "%%%"}),
        "base64",
    )
    .await;
    let empty = dir.0.join("empty.vscdb");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE ItemTable (key TEXT, value BLOB);")
        .unwrap();
    refused(
        &h,
        json!({"name": "x", "state_vscdb_path": empty}),
        "cursorAuth/accessToken",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "state_vscdb_path": dir.0.join("missing.vscdb")}),
        "could not read",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "session_token": session, "state_vscdb_path": file}),
        "exactly one",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "session_token": session, "profile_arn": "arn:aws:x"}),
        "Kiro accounts",
    )
    .await;
    refused(
        &h,
        json!({"name": "x", "kind": "kiro", "session_token": session}),
        "kind",
    )
    .await;
    let after = ok(&h, "GET", "/admin/accounts", ROOT, None).await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_cursor_account_serves_refreshes_once_writes_back_and_is_disabled_when_refused() {
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    let (h, dir) = gateway(&cursor).await;
    // Expires within the refresh margin: the first use refreshes it.
    let session = cursor.issue_session_token(120);
    let added = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        Some(json!({"name": "soon expired", "session_token": session, "refresh_token": cursor.issue_refresh_token()})),
    )
    .await;
    let id = added["account"]["id"].as_i64().unwrap();
    // Cursor's catalog loads in the background once the account joins.
    for _ in 0..100 {
        let models = ok(&h, "GET", "/v1/models", common::KEY, None).await;
        if models.to_string().contains("gpt-5.4-medium") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut calls = Vec::new();
    for i in 0..4 {
        let http = h.http.clone();
        let url = h.url("/v1/chat/completions");
        calls.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(common::KEY)
                .json(&common::chat("gpt-5.4-medium", &format!("call {i}"), false))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            format!("echo: call {i}"),
            "{answer}"
        );
    }
    assert_eq!(cursor.stats().refreshes, 1, "one refresh for four callers");
    assert_eq!(cursor.stats().chat_calls, 4);
    h.settle(4).await;
    let record = h.usage.records().into_iter().last().unwrap();
    assert_eq!(record.account_id, Some(id.to_string()));
    assert_eq!(
        record.account_kind,
        Some(kiro_layers::traits::AccountKind::CURSOR)
    );
    assert!(record.estimated && record.output_tokens > 0, "{record:?}");

    // Written back: the row holds the new token, and the file never holds it in clear.
    let store = std::sync::Arc::clone(&h.gateway.tenancy.as_ref().unwrap().tenancy.store);
    let fresh = store.get_account(id).await.unwrap().access_token.unwrap();
    assert_ne!(fresh, session);
    let file = std::fs::read(dir.0.join("gw.db")).unwrap();
    let plain = String::from_utf8_lossy(&file);
    assert!(!plain.contains(&fresh[40..80]) && !plain.contains(&session[40..80]));

    // A second account whose refresh Cursor refuses for good: disabled with the reason.
    let doomed = ok(
        &h,
        "POST",
        "/admin/accounts",
        ROOT,
        // A refresh token Cursor does not know (revoked, or the account logged out elsewhere).
        Some(json!({"name": "logged out", "session_token": cursor.issue_session_token(120), "refresh_token": "revoked-refresh-token"})),
    )
    .await["account"]["id"]
        .as_i64()
        .unwrap();
    for _ in 0..4 {
        let _ = h
            .http
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(common::KEY)
            .json(&common::chat("gpt-5.4-medium", "who serves", false))
            .send()
            .await
            .unwrap()
            .bytes()
            .await;
    }
    let mut reason = Value::Null;
    for _ in 0..100 {
        let accounts = ok(&h, "GET", "/admin/accounts", ROOT, None).await;
        let row = accounts["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"]["id"] == doomed)
            .cloned()
            .unwrap();
        if row["account"]["status"] == "disabled" {
            reason = row["account"]["disabled_reason"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("Cursor refused the refresh token")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_cursor_account_joins_the_database_pool() {
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let url = database_url(&dir);
    let key_file = dir.0.join("secret.key");
    let session = cursor.issue_session_token(3600);
    let refresh = cursor.issue_refresh_token();
    let base = cursor.base_url();
    let h = common::start_with(
        kiro_gateway::fake_kiro::FakeKiroConfig::default(),
        &[
            "--database-url",
            &url,
            "--admin-api-key",
            ROOT,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--cursor-api-url",
            &base,
            "--cursor-session-token",
            &session,
            "--cursor-refresh-token",
            &refresh,
        ],
    )
    .await;
    let mut answer = Value::Null;
    for _ in 0..100 {
        answer = h
            .post(
                "/v1/chat/completions",
                common::chat("gpt-5.4-medium", "from the environment", false),
            )
            .await
            .json()
            .await
            .unwrap();
        if answer["choices"].is_array() {
            break;
        }
        // Cursor's catalog is still loading.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer["choices"][0]["message"]["content"], "echo: from the environment",
        "{answer}"
    );
    h.settle(1).await;
    let record = h.usage.records().into_iter().last().unwrap();
    assert_eq!(record.account_id.as_deref(), Some("cursor"));
    assert_eq!(
        record.account_kind,
        Some(kiro_layers::traits::AccountKind::CURSOR)
    );
}
