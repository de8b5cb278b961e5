//! The database behind [`kiro_layers::store::Store`]: an embedded SQLite file (the default) or
//! PostgreSQL, chosen by the URL scheme. Migrations in `schema/<backend>/NNNN_name.sql` are
//! compiled in and applied at start-up, in order, each in its own transaction, and recorded in
//! `schema_migrations`, so a database written by an older version upgrades in place.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use kiro_gateway::store::{open, crypto::Secret};
//! let (secret, _) = Secret::load(std::path::Path::new("kiro-gateway.key"))?;
//! let store = open("sqlite://kiro-gateway.db", &secret).await?;
//! let agents = store.list_agents().await.map_err(|e| e.to_string())?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use kiro_layers::store::{Store, StoreError, StoreResult};

pub mod crypto;
pub mod postgres;
pub mod sqlite;
pub mod usage_daily;
pub mod usage_spill;
pub mod usage_writer;
pub mod validate;

pub use crypto::Secret;
pub use usage_writer::{UsageWriter, UsageWriterConfig, UsageWriterHandle, UsageWriterStats};

/// The default database when no URL is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kiro-gateway.db";

/// The default key file when `KIRO_GATEWAY_SECRET` is not set.
pub const DEFAULT_KEY_FILE: &str = "kiro-gateway.key";

/// One migration: its name (`0001_tenancy`) and SQL.
pub type Migration = (&'static str, &'static str);

/// SQLite migrations, in order.
pub const SQLITE_MIGRATIONS: &[Migration] = &[
    (
        "0001_tenancy",
        include_str!("../../schema/sqlite/0001_tenancy.sql"),
    ),
    (
        "0002_usage_models_audit",
        include_str!("../../schema/sqlite/0002_usage_models_audit.sql"),
    ),
    (
        "0003_shared_turn",
        include_str!("../../schema/sqlite/0003_shared_turn.sql"),
    ),
    (
        "0004_account_kinds",
        include_str!("../../schema/sqlite/0004_account_kinds.sql"),
    ),
    (
        "0005_responses",
        include_str!("../../schema/sqlite/0005_responses.sql"),
    ),
    (
        "0006_console_sessions",
        include_str!("../../schema/sqlite/0006_console_sessions.sql"),
    ),
    (
        "0007_account_logins",
        include_str!("../../schema/sqlite/0007_account_logins.sql"),
    ),
    (
        "0008_usage_account_kind",
        include_str!("../../schema/sqlite/0008_usage_account_kind.sql"),
    ),
    (
        "0009_shared_limits",
        include_str!("../../schema/sqlite/0009_shared_limits.sql"),
    ),
    (
        "0010_usage_daily",
        include_str!("../../schema/sqlite/0010_usage_daily.sql"),
    ),
    (
        "0011_account_usage_limits",
        include_str!("../../schema/sqlite/0011_account_usage_limits.sql"),
    ),
    (
        "0012_login_flows",
        include_str!("../../schema/sqlite/0012_login_flows.sql"),
    ),
];

/// PostgreSQL migrations, in order.
pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    (
        "0001_tenancy",
        include_str!("../../schema/postgres/0001_tenancy.sql"),
    ),
    (
        "0002_usage_models_audit",
        include_str!("../../schema/postgres/0002_usage_models_audit.sql"),
    ),
    (
        "0003_shared_turn",
        include_str!("../../schema/postgres/0003_shared_turn.sql"),
    ),
    (
        "0004_account_kinds",
        include_str!("../../schema/postgres/0004_account_kinds.sql"),
    ),
    (
        "0005_responses",
        include_str!("../../schema/postgres/0005_responses.sql"),
    ),
    (
        "0006_console_sessions",
        include_str!("../../schema/postgres/0006_console_sessions.sql"),
    ),
    (
        "0007_account_logins",
        include_str!("../../schema/postgres/0007_account_logins.sql"),
    ),
    (
        "0008_usage_account_kind",
        include_str!("../../schema/postgres/0008_usage_account_kind.sql"),
    ),
    (
        "0009_shared_limits",
        include_str!("../../schema/postgres/0009_shared_limits.sql"),
    ),
    (
        "0010_usage_daily",
        include_str!("../../schema/postgres/0010_usage_daily.sql"),
    ),
    (
        "0011_account_usage_limits",
        include_str!("../../schema/postgres/0011_account_usage_limits.sql"),
    ),
    (
        "0012_login_flows",
        include_str!("../../schema/postgres/0012_login_flows.sql"),
    ),
];

/// Opens the store at `url` and applies every pending migration. `sqlite://path` (or
/// `sqlite:path`, or a bare path) opens or creates a SQLite file; `postgres://...` or
/// `postgresql://...` connects to PostgreSQL.
pub async fn open(url: &str, secret: &Secret) -> Result<Arc<dyn Store>, String> {
    open_with_migrations(url, secret, usize::MAX).await
}

/// Like [`open`], but applies at most the first `upto` migrations (upgrade tests).
pub async fn open_with_migrations(
    url: &str,
    secret: &Secret,
    upto: usize,
) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect(url, secret.clone(), upto).await?;
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(url)?;
    let store = sqlite::SqliteStore::open(&path, secret.clone(), upto).await?;
    Ok(Arc::new(store))
}

/// The file path of a SQLite URL.
pub fn sqlite_path(url: &str) -> Result<String, String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
        return Err(format!(
            "unsupported database URL scheme in `{}`: use sqlite://<file> or postgres://user@host/db",
            redact_url(url)
        ));
    }
    Ok(path.to_owned())
}

/// `url` without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Maps a decryption failure to a store error.
fn crypto_error(message: String) -> StoreError {
    StoreError::Backend(message)
}

/// Converts an `i64` column to `u32` (limits), rejecting corrupt values.
fn to_u32(value: Option<i64>) -> StoreResult<Option<u32>> {
    value
        .map(|v| u32::try_from(v).map_err(|_| StoreError::Backend(format!("{v} is not a u32"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(sqlite_path("sqlite://a/b.db").unwrap(), "a/b.db");
        assert_eq!(sqlite_path("sqlite:x.db").unwrap(), "x.db");
        assert_eq!(sqlite_path("x.db").unwrap(), "x.db");
        assert!(sqlite_path("mysql://h/db").is_err());
        assert_eq!(
            redact_url("postgres://u:pw@h:5/db"),
            "postgres://u:***@h:5/db"
        );
    }
}
