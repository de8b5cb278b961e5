//! Helpers of the tenancy end-to-end tests: a gateway on a fresh database, JSON calls.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{start_with, Harness};
use kiro_gateway::fake_kiro::FakeKiroConfig;
use serde_json::{json, Value};

pub const ROOT: &str = "root-admin-key";

pub struct Env {
    pub h: Harness,
    pub _dir: TempDir,
}

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("kgw-tenancy-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn database_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.0.join("gw.db").display())
}

#[path = "../store_support/pg.rs"]
mod pg;

/// One database two gateways share: a fresh PostgreSQL database when `TEST_DATABASE_URL` is
/// set, else a SQLite file in `dir`.
pub async fn shared_database_url(dir: &TempDir) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => pg::fresh_pg_database(&admin).await,
        _ => database_url(dir),
    }
}

/// Every backend a test runs on: a SQLite file in `dir`, and a fresh PostgreSQL database when
/// `TEST_DATABASE_URL` is set (scripts/pg.sh).
pub async fn backend_urls(dir: &TempDir) -> Vec<(&'static str, String)> {
    let mut urls = vec![("sqlite", database_url(dir))];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        if !admin.is_empty() {
            urls.push(("postgres", pg::fresh_pg_database(&admin).await));
        }
    }
    urls
}

pub async fn start_on(dir: &TempDir, url: &str) -> Harness {
    let key_file = dir.0.join("secret.key");
    start_with(
        FakeKiroConfig::default(),
        &[
            "--database-url",
            url,
            "--admin-api-key",
            ROOT,
            "--secret-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await
}

pub async fn start() -> Env {
    let dir = temp_dir();
    let url = database_url(&dir);
    Env {
        h: start_on(&dir, &url).await,
        _dir: dir,
    }
}

pub async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = h.http.request(method, h.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn call_raw(
    h: &Harness,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = h
        .http
        .request(method, h.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn ok(h: &Harness, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let (status, value) = call(h, method, path, key, body).await;
    assert_eq!(status, 200, "{method} {path}: {value}");
    value
}

/// Creates an agent with `balance`, its agent key, one user and the user's key.
pub async fn agent_with_user(h: &Harness, name: &str, balance: i64) -> (i64, String, i64, String) {
    let agent = ok(
        h,
        "POST",
        "/admin/agents",
        ROOT,
        Some(json!({ "name": name })),
    )
    .await;
    let agent_id = agent["agent"]["id"].as_i64().unwrap();
    if balance > 0 {
        ok(
            h,
            "POST",
            &format!("/admin/agents/{agent_id}/topup"),
            ROOT,
            Some(json!({ "amount": balance })),
        )
        .await;
    }
    let key = ok(
        h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "agent", "agent_id": agent_id })),
    )
    .await;
    let agent_key = key["key"].as_str().unwrap().to_owned();
    let user = ok(
        h,
        "POST",
        "/agent/users",
        &agent_key,
        Some(json!({ "name": format!("{name}-user") })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let key = ok(
        h,
        "POST",
        &format!("/agent/users/{user_id}/keys"),
        &agent_key,
        Some(json!({})),
    )
    .await;
    (
        agent_id,
        agent_key,
        user_id,
        key["key"].as_str().unwrap().to_owned(),
    )
}

pub async fn wait_for<F: Fn(&Value) -> bool>(h: &Harness, path: &str, key: &str, done: F) -> Value {
    for _ in 0..300 {
        let (status, value) = call(h, "GET", path, key, None).await;
        if status == 200 && done(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never got there");
}

/// Everything an admin sees, to check that refused calls changed nothing.
pub async fn snapshot(h: &Harness) -> (Value, Value, Value, Value, Value) {
    (
        ok(h, "GET", "/admin/users", ROOT, None).await,
        ok(h, "GET", "/admin/keys", ROOT, None).await,
        ok(h, "GET", "/admin/agents", ROOT, None).await,
        ok(h, "GET", "/admin/aliases", ROOT, None).await,
        ok(h, "GET", "/admin/combos", ROOT, None).await,
    )
}
