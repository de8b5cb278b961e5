//! Backends for the store behaviour suite: a fresh SQLite file per test, and, when
//! `TEST_DATABASE_URL` points at a PostgreSQL server (scripts/pg.sh starts one), a fresh
//! database on it per test.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kiro_gateway::store::crypto::{generate_api_key, hash_api_key, key_suffix};
use kiro_gateway::store::{open, open_with_migrations, Secret};
use kiro_layers::store::*;
use kiro_layers::traits::UsageStatus;
use tokio_postgres::NoTls;

/// Where a test database lives.
pub struct Place {
    pub name: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// One opened backend.
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub secret: Secret,
    pub store: Arc<dyn Store>,
    _place: Place,
}

pub fn secret() -> Secret {
    Secret::from_bytes([42; 32])
}

mod pg;
pub use pg::fresh_pg_database;

pub mod flaky;
pub mod writer;

/// A fresh, empty database on every available backend.
pub async fn places() -> Vec<Place> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiro-gateway.db").display());
    let mut places = vec![Place {
        name: "sqlite",
        url,
        _dir: Some(dir),
    }];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        if !admin.is_empty() {
            places.push(Place {
                name: "postgres",
                url: fresh_pg_database(&admin).await,
                _dir: None,
            });
        }
    }
    places
}

/// Every backend, opened with all migrations.
pub async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    for place in places().await {
        let store = open(&place.url, &secret()).await.unwrap();
        out.push(Backend {
            name: place.name,
            url: place.url.clone(),
            secret: secret(),
            store,
            _place: place,
        });
    }
    out
}

/// Opens `place` with only the first `upto` migrations.
pub async fn open_place(place: &Place, upto: usize) -> Arc<dyn Store> {
    open_with_migrations(&place.url, &secret(), upto)
        .await
        .unwrap()
}

/// Inserts a Kiro account the way a store before migration 0004 did (no kind column
/// mentioned), straight into the database; returns nothing (the id is 1 in a fresh database).
pub async fn insert_legacy_account(place: &Place, name: &str, refresh_token: &str) {
    let token = secret().encrypt("accounts.refresh_token", refresh_token);
    if place.name == "sqlite" {
        let path = place.url.trim_start_matches("sqlite://").to_owned();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute(
                "INSERT INTO accounts (name, auth_kind, refresh_token_enc, sso_region, \
                 api_region, created_at, updated_at) \
                 VALUES (?1, 'desktop', ?2, 'us-east-1', 'us-east-1', 0, 0)",
                rusqlite::params![name, token],
            )
            .unwrap();
        })
        .await
        .unwrap();
    } else {
        let (client, connection) = tokio_postgres::connect(&place.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .execute(
                "INSERT INTO accounts (name, auth_kind, refresh_token_enc, sso_region, \
                 api_region) VALUES ($1, 'desktop', $2, 'us-east-1', 'us-east-1')",
                &[&name, &token],
            )
            .await
            .unwrap();
    }
}

/// The bytes of the first column of every row of `sql`, read straight from the database.
pub async fn raw_bytes(b: &Backend, sql: &str) -> Vec<Vec<u8>> {
    if b.name == "sqlite" {
        let path = b.url.trim_start_matches("sqlite://").to_owned();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map([], |r| r.get::<_, Option<Vec<u8>>>(0))
                .unwrap();
            rows.map(|r| r.unwrap().unwrap_or_default()).collect()
        })
        .await
        .unwrap()
    } else {
        let (client, connection) = tokio_postgres::connect(&b.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<Vec<u8>>>(0).unwrap_or_default())
            .collect()
    }
}

/// Text full of SQL metacharacters: refused as a name, stored verbatim as free data (audit
/// details, client ids).
pub fn nasty(tag: &str) -> String {
    format!("{tag} o'brien\"; DROP TABLE users;-- %_\\ ✓")
}

/// A name at the edge of the name rule: letters of several scripts and every allowed
/// punctuation character.
pub fn unusual(tag: &str) -> String {
    format!("{tag} Zoë O.Brien-Smith (ops) bob+ci@x.io:eu/1 東京")
}

/// A model name at the edge of the model name rule.
pub fn unusual_model(tag: &str) -> String {
    format!("{tag}-4.5[1m]:beta/x_y")
}

pub fn new_account(name: &str, token: &str) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        kind: kiro_layers::traits::AccountKind::KIRO,
        auth_kind: AuthKind::Desktop,
        refresh_token: token.to_owned(),
        access_token: None,
        machine_id: None,
        client_key: None,
        client_id: None,
        client_secret: None,
        profile_arn: Some("arn:aws:codewhisperer:us-east-1:123456789012:profile/P".into()),
        sso_region: "us-east-1".into(),
        api_region: "us-east-1".into(),
        max_concurrency: Some(4),
    }
}

/// A new key for `user_id`/`agent_id`; returns the full key too.
pub fn new_key(
    secret: &Secret,
    kind: KeyKind,
    user_id: Option<i64>,
    agent_id: Option<i64>,
) -> (NewApiKey, String) {
    let (full, public_id) = generate_api_key();
    let key = NewApiKey {
        public_id,
        kind,
        user_id,
        agent_id,
        name: "laptop".into(),
        secret_hash: hash_api_key(secret, &full).to_vec(),
        suffix: key_suffix(&full),
        expires_at: None,
        allowed_models: vec!["claude-sonnet-4.5".into()],
        rpm_limit: Some(60),
        max_concurrency: Some(2),
        quota_limit: None,
    };
    (key, full)
}

pub fn usage(request_id: &str, attempt: u32, key: Option<&ApiKeyRow>, charged: i64) -> UsageRow {
    UsageRow {
        request_id: request_id.to_owned(),
        attempt,
        user_id: key.and_then(|k| k.user_id),
        agent_id: key.and_then(|k| k.agent_id),
        key_id: key.map(|k| k.id),
        requested_model: "claude-sonnet-4-5".into(),
        resolved_model: "claude-sonnet-4.5".into(),
        account_id: Some("7".into()),
        input_tokens: 100,
        output_tokens: 20,
        cache_read_tokens: 5,
        cache_write_tokens: 1,
        credits: 0.25,
        status: UsageStatus::Ok,
        time_to_first_token: Some(Duration::from_millis(120)),
        duration: Duration::from_millis(900),
        started_at: chrono::DateTime::<chrono::Utc>::from(SystemTime::now()),
        charged,
        account_kind: None,
        estimated: false,
    }
}
