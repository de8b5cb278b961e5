//! Helpers of the sign-in tests: a gateway with a database and no account, in front of the
//! fake Kiro, whose every URL (refresh, sign-in, profiles, portal) points at the fake.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::{serve_args, start_gateway, Harness};
use crate::tenancy_support::{call, database_url, ok, temp_dir, TempDir, ROOT};
use kiro_gateway::fake_kiro::FakeKiroConfig;
use serde_json::{json, Value};

pub struct LoginEnv {
    pub h: Harness,
    pub dir: TempDir,
}

/// The options pointing every upstream and sign-in URL at `base`.
pub fn fake_urls(base: &str) -> Vec<String> {
    vec![
        "--kiro-api-url".into(),
        base.into(),
        "--kiro-desktop-auth-url".into(),
        base.into(),
        "--kiro-oidc-url".into(),
        base.into(),
        "--kiro-profiles-url".into(),
        base.into(),
        "--kiro-signin-url".into(),
        format!("{base}/signin"),
    ]
}

pub async fn start_with(config: FakeKiroConfig) -> LoginEnv {
    start_with_args(config, &[]).await
}

/// [`start_with`] with these `serve` options added.
pub async fn start_with_args(config: FakeKiroConfig, extra: &[&str]) -> LoginEnv {
    let fake = kiro_gateway::fake_kiro::start(config).await.unwrap();
    let dir = temp_dir();
    let url = database_url(&dir);
    let key_file = dir.0.join("secret.key");
    let mut argv = fake_urls(&fake.base_url());
    argv.extend(
        [
            "--database-url",
            &url,
            "--admin-api-key",
            ROOT,
            "--secret-key-file",
            key_file.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    argv.extend(extra.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut h = start_gateway(serve_args(&argv)).await;
    h.fake = Some(fake);
    LoginEnv { h, dir }
}

pub async fn start() -> LoginEnv {
    start_with(FakeKiroConfig::default()).await
}

/// Starts a flow and returns its view.
pub async fn start_flow(h: &Harness, body: Value) -> Value {
    ok(h, "POST", "/admin/accounts/login/start", ROOT, Some(body)).await["login"].clone()
}

/// Follows a flow (long polling) until `done` holds; returns every status seen, in order, and
/// the last view.
pub async fn follow(h: &Harness, id: &str, done: impl Fn(&Value) -> bool) -> (Vec<String>, Value) {
    let mut seen = Vec::new();
    let mut version = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let path = format!("/admin/accounts/login/{id}?wait=5&version={version}");
        let view = ok(h, "GET", &path, ROOT, None).await["login"].clone();
        version = view["version"].as_u64().unwrap();
        let status = view["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if done(&view) {
            return (seen, view);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow {id} stuck: {seen:?} {view}"
        );
    }
}

pub fn is_final(view: &Value) -> bool {
    matches!(
        view["status"].as_str(),
        Some("succeeded" | "expired" | "denied" | "failed" | "cancelled")
    )
}

/// A user key, then one chat request with it; returns the status and body.
pub async fn chat_once(h: &Harness) -> (u16, String) {
    let user = ok(
        h,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": format!("u{}", uuid::Uuid::new_v4().simple()) })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let key = ok(
        h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user_id })),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let response = h
        .http
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&crate::common::chat("claude-sonnet-4.5", "hello", false))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub async fn accounts(h: &Harness) -> Vec<Value> {
    let (status, list) = call(h, "GET", "/admin/accounts", ROOT, None).await;
    assert_eq!(status, 200);
    list["data"].as_array().unwrap().clone()
}
