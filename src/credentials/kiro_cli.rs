//! The kiro-cli (and amazon-q-developer-cli) SQLite database as a credential store
//! (`KIRO_CLI_DB_FILE`).
//!
//! Layout: table `auth_kv(key, value)` with JSON values (snake_case fields), table
//! `state(key, value)` with the selected profile under `api.codewhisperer.profile`. kiro-cli keeps
//! using and rotating the same tokens, so the gateway re-reads the database before every refresh
//! and merges its write-back into the row it loaded, keeping the fields it does not know.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::SecondsFormat;
use futures_util::future::BoxFuture;
use kiro_layers::kiro::auth::{parse_timestamp, CredentialStore, TokenSet};
use kiro_layers::GatewayError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};

/// Token rows, first match wins. `odic` is kiro-cli's own spelling.
pub const TOKEN_KEYS: [&str; 3] = [
    "kirocli:social:token",
    "kirocli:odic:token",
    "codewhisperer:odic:token",
];
/// External IdP (Entra ID / Okta) logins live here; their refresh flow is not supported.
pub const EXTERNAL_IDP_TOKEN_KEY: &str = "kirocli:external-idp:token";
/// Device registrations (OIDC client id/secret), first match wins.
pub const DEVICE_REGISTRATION_KEYS: [&str; 2] = [
    "kirocli:odic:device-registration",
    "codewhisperer:odic:device-registration",
];
/// Row of table `state` holding the selected profile (`{"arn": …}`).
pub const PROFILE_STATE_KEY: &str = "api.codewhisperer.profile";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A kiro-cli SQLite database holding one login.
pub struct KiroCliStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    read_only: bool,
    /// The token row the last load came from; write-back goes there.
    loaded_key: Mutex<Option<String>>,
}

impl KiroCliStore {
    /// A store over the database at `path`; with `read_only` refreshed tokens are never written
    /// back (`SQLITE_READONLY=true`).
    pub fn new(path: impl Into<PathBuf>, read_only: bool) -> Self {
        KiroCliStore {
            inner: Arc::new(Inner {
                path: path.into(),
                read_only,
                loaded_key: Mutex::new(None),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The token row the last successful load used (e.g. `kirocli:social:token`).
    pub fn loaded_key(&self) -> Option<String> {
        lock(&self.inner.loaded_key).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl CredentialStore for KiroCliStore {
    fn describe(&self) -> String {
        format!("kiro-cli database {}", self.inner.path.display())
    }

    fn load(&self) -> BoxFuture<'_, Result<TokenSet, GatewayError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.load_blocking())
                .await
                .map_err(|err| GatewayError::internal(format!("kiro-cli loader failed: {err}")))?
        })
    }

    fn save(&self, tokens: &TokenSet) -> BoxFuture<'_, Result<(), GatewayError>> {
        let inner = Arc::clone(&self.inner);
        let tokens = tokens.clone();
        Box::pin(async move {
            if inner.read_only {
                tracing::debug!(db = %inner.path.display(), "read-only kiro-cli database: not writing tokens back");
                return Ok(());
            }
            tokio::task::spawn_blocking(move || inner.save_blocking(&tokens))
                .await
                .map_err(|err| GatewayError::internal(format!("kiro-cli writer failed: {err}")))?
        })
    }
}

impl Inner {
    fn fail(&self, what: &str, err: impl std::fmt::Display) -> GatewayError {
        GatewayError::internal(format!(
            "kiro-cli database {}: {what}: {err}",
            self.path.display()
        ))
    }

    fn open(&self, writable: bool) -> Result<Connection, GatewayError> {
        if !self.path.is_file() {
            return Err(GatewayError::internal(format!(
                "the kiro-cli database {} does not exist; run `kiro-cli login` or fix KIRO_CLI_DB_FILE",
                self.path.display()
            )));
        }
        let flags = if writable {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let connection = Connection::open_with_flags(&self.path, flags)
            .map_err(|err| self.fail("cannot open", err))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|err| self.fail("cannot set the busy timeout", err))?;
        Ok(connection)
    }

    fn load_blocking(&self) -> Result<TokenSet, GatewayError> {
        let connection = self.open(false)?;
        let mut found = None;
        for key in TOKEN_KEYS {
            if let Some(object) = read_json(&connection, "auth_kv", key)
                .map_err(|e| self.fail("cannot read auth_kv", e))?
            {
                found = Some((key, object));
                break;
            }
        }
        let Some((key, token)) = found else {
            let external = read_json(&connection, "auth_kv", EXTERNAL_IDP_TOKEN_KEY)
                .ok()
                .flatten()
                .is_some();
            let hint = if external {
                "it only holds an External IdP login, which this gateway does not support yet"
            } else {
                "run `kiro-cli login` first"
            };
            return Err(GatewayError::internal(format!(
                "the kiro-cli database {} has no usable token ({hint})",
                self.path.display()
            )));
        };

        let refresh_token = text(&token, "refresh_token").ok_or_else(|| {
            GatewayError::internal(format!(
                "kiro-cli token `{key}` in {} has no refresh_token; run `kiro-cli login`",
                self.path.display()
            ))
        })?;
        let mut registration = None;
        for reg_key in DEVICE_REGISTRATION_KEYS {
            if let Ok(Some(object)) = read_json(&connection, "auth_kv", reg_key) {
                registration = Some(object);
                break;
            }
        }
        // The `state` table is optional (older databases lack it).
        let state_arn = read_json(&connection, "state", PROFILE_STATE_KEY)
            .ok()
            .flatten()
            .and_then(|profile| text(&profile, "arn"));

        let registration = registration.unwrap_or_default();
        let tokens = TokenSet {
            access_token: text(&token, "access_token"),
            refresh_token,
            expires_at: text(&token, "expires_at").and_then(|t| parse_timestamp(&t)),
            profile_arn: text(&token, "profile_arn").or(state_arn),
            client_id: text(&registration, "client_id"),
            client_secret: text(&registration, "client_secret"),
            sso_region: text(&token, "region").or_else(|| text(&registration, "region")),
            api_region: None,
        };
        *lock(&self.loaded_key) = Some(key.to_string());
        Ok(tokens)
    }

    fn save_blocking(&self, tokens: &TokenSet) -> Result<(), GatewayError> {
        let mut connection = self.open(true)?;
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|err| self.fail("cannot start a write", err))?;
        let remembered = lock(&self.loaded_key).clone();
        let mut target = None;
        let candidates = remembered.iter().map(String::as_str).chain(TOKEN_KEYS);
        for key in candidates {
            if let Some(object) = read_json(&transaction, "auth_kv", key)
                .map_err(|e| self.fail("cannot read auth_kv", e))?
            {
                target = Some((key.to_string(), object));
                break;
            }
        }
        let Some((key, mut object)) = target else {
            return Err(GatewayError::internal(format!(
                "kiro-cli database {}: no token row to write the refreshed token into",
                self.path.display()
            )));
        };
        if let Some(access) = &tokens.access_token {
            object.insert("access_token".into(), Value::String(access.clone()));
        }
        object.insert(
            "refresh_token".into(),
            Value::String(tokens.refresh_token.clone()),
        );
        if let Some(expires_at) = tokens.expires_at {
            object.insert(
                "expires_at".into(),
                Value::String(expires_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            );
        }
        // Only touch profile_arn when kiro-cli keeps one in this row.
        if let (Some(arn), true) = (&tokens.profile_arn, object.contains_key("profile_arn")) {
            object.insert("profile_arn".into(), Value::String(arn.clone()));
        }
        let text = Value::Object(object).to_string();
        transaction
            .execute(
                "UPDATE auth_kv SET value = ?1 WHERE key = ?2",
                rusqlite::params![text, key],
            )
            .map_err(|err| self.fail("cannot write the token", err))?;
        transaction
            .commit()
            .map_err(|err| self.fail("cannot commit the token", err))?;
        *lock(&self.loaded_key) = Some(key);
        Ok(())
    }
}

/// Reads `table.value` for `key` as a JSON object; `None` when the row is missing or not an
/// object (a garbled row is skipped like a missing one).
fn read_json(
    connection: &Connection,
    table: &str,
    key: &str,
) -> rusqlite::Result<Option<Map<String, Value>>> {
    // `table` is one of our constants, never input.
    let sql = format!("SELECT value FROM {table} WHERE key = ?1");
    let value: Option<String> = connection
        .query_row(&sql, [key], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    Ok(value.and_then(|text| match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }))
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike, Utc};
    use serde_json::json;

    fn temp_db(rows: &[(&str, Value)], state_arn: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiro-cli-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.sqlite3");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT);
                 CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT);",
            )
            .unwrap();
        for (key, value) in rows {
            connection
                .execute(
                    "INSERT INTO auth_kv (key, value) VALUES (?1, ?2)",
                    rusqlite::params![key, value.to_string()],
                )
                .unwrap();
        }
        if let Some(arn) = state_arn {
            connection
                .execute(
                    "INSERT INTO state (key, value) VALUES (?1, ?2)",
                    rusqlite::params![PROFILE_STATE_KEY, json!({"arn": arn}).to_string()],
                )
                .unwrap();
        }
        path
    }

    fn row(path: &Path, key: &str) -> Value {
        let connection = Connection::open(path).unwrap();
        let text: String = connection
            .query_row("SELECT value FROM auth_kv WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn loads_oidc_token_with_nanosecond_expiry_and_registration() {
        let path = temp_db(
            &[
                (
                    "kirocli:odic:token",
                    json!({"access_token": "acc", "refresh_token": "ref", "region": "eu-west-1",
                           "expires_at": "2026-05-24T09:04:22.123456789Z", "scopes": ["a"]}),
                ),
                (
                    "kirocli:odic:device-registration",
                    json!({"client_id": "cid", "client_secret": "csec", "region": "eu-west-1"}),
                ),
            ],
            Some("arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC"),
        );
        let store = KiroCliStore::new(&path, false);
        let tokens = store.load().await.unwrap();
        assert_eq!(tokens.refresh_token, "ref");
        assert_eq!(tokens.client_id.as_deref(), Some("cid"));
        assert_eq!(tokens.client_secret.as_deref(), Some("csec"));
        assert_eq!(tokens.sso_region.as_deref(), Some("eu-west-1"));
        let expires = tokens.expires_at.unwrap();
        assert_eq!(expires.nanosecond(), 123_456_789);
        assert_eq!(
            tokens.profile_arn.as_deref(),
            Some("arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC")
        );
        assert_eq!(store.loaded_key().as_deref(), Some("kirocli:odic:token"));
    }

    #[tokio::test]
    async fn social_key_wins_over_odic_keys() {
        let path = temp_db(
            &[
                (
                    "codewhisperer:odic:token",
                    json!({"refresh_token": "legacy"}),
                ),
                ("kirocli:odic:token", json!({"refresh_token": "odic"})),
                ("kirocli:social:token", json!({"refresh_token": "social"})),
            ],
            None,
        );
        let store = KiroCliStore::new(&path, false);
        assert_eq!(store.load().await.unwrap().refresh_token, "social");
        assert_eq!(store.loaded_key().as_deref(), Some("kirocli:social:token"));

        let only_legacy = temp_db(
            &[(
                "codewhisperer:odic:token",
                json!({"refresh_token": "legacy"}),
            )],
            None,
        );
        let tokens = KiroCliStore::new(&only_legacy, false).load().await.unwrap();
        assert_eq!(tokens.refresh_token, "legacy");
        assert_eq!(tokens.profile_arn, None);
    }

    #[tokio::test]
    async fn external_idp_only_is_reported_as_unsupported() {
        let path = temp_db(
            &[(EXTERNAL_IDP_TOKEN_KEY, json!({"refresh_token": "x"}))],
            None,
        );
        let err = KiroCliStore::new(&path, false).load().await.unwrap_err();
        assert!(err.message().contains("External IdP"), "{}", err.message());
    }

    #[tokio::test]
    async fn token_row_arn_beats_state_arn() {
        let path = temp_db(
            &[(
                "kirocli:social:token",
                json!({"refresh_token": "r", "profile_arn": "arn:aws:codewhisperer:eu-central-1:1:profile/T"}),
            )],
            Some("arn:aws:codewhisperer:us-east-1:1:profile/S"),
        );
        let tokens = KiroCliStore::new(&path, false).load().await.unwrap();
        assert_eq!(
            tokens.profile_arn.as_deref(),
            Some("arn:aws:codewhisperer:eu-central-1:1:profile/T")
        );
    }

    #[tokio::test]
    async fn write_back_merges_into_the_loaded_row() {
        let path = temp_db(
            &[
                (
                    "kirocli:social:token",
                    json!({"refresh_token": "social-untouched"}),
                ),
                (
                    "kirocli:odic:token",
                    json!({"access_token": "a0", "refresh_token": "r0", "region": "us-east-1",
                           "expires_at": "2026-01-01T00:00:00.000000001Z",
                           "start_url": "https://d-123.awsapps.com/start", "provider": "BuilderId",
                           "scopes": ["codewhisperer:completions"]}),
                ),
            ],
            None,
        );
        // Make the odic row the loaded one by deleting the social row first.
        Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM auth_kv WHERE key = 'kirocli:social:token'", [])
            .unwrap();
        let store = KiroCliStore::new(&path, false);
        let mut tokens = store.load().await.unwrap();
        tokens.access_token = Some("a1".into());
        tokens.refresh_token = "r1".into();
        tokens.expires_at = Some(Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap());
        store.save(&tokens).await.unwrap();

        let saved = row(&path, "kirocli:odic:token");
        assert_eq!(saved["access_token"], "a1");
        assert_eq!(saved["refresh_token"], "r1");
        assert_eq!(saved["start_url"], "https://d-123.awsapps.com/start");
        assert_eq!(saved["provider"], "BuilderId");
        assert_eq!(saved["scopes"], json!(["codewhisperer:completions"]));
        assert_eq!(saved["region"], "us-east-1");
        let expires = parse_timestamp(saved["expires_at"].as_str().unwrap()).unwrap();
        assert_eq!(expires, Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap());
        assert_eq!(store.load().await.unwrap().refresh_token, "r1");
    }

    #[tokio::test]
    async fn read_only_never_writes() {
        let path = temp_db(
            &[("kirocli:social:token", json!({"refresh_token": "r0"}))],
            None,
        );
        let store = KiroCliStore::new(&path, true);
        let mut tokens = store.load().await.unwrap();
        tokens.refresh_token = "r1".into();
        store.save(&tokens).await.unwrap();
        assert_eq!(row(&path, "kirocli:social:token")["refresh_token"], "r0");
    }

    #[tokio::test]
    async fn missing_database_names_the_path() {
        let err = KiroCliStore::new("/nonexistent/data.sqlite3", false)
            .load()
            .await
            .unwrap_err();
        assert!(err.message().contains("/nonexistent/data.sqlite3"));
    }
}
