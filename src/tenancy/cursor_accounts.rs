//! Turning what an admin hands over for a Cursor Pro account into a [`NewAccount`]: the IDE's
//! session token (with its refresh token), Cursor's `state.vscdb` (by path or uploaded), or a
//! cursor.com browser cookie (`<userId>::<jwt>`), which is upgraded to a session token the way
//! cursor-protocol.md §5.3 describes or refused with directions. Each account gets a random
//! machine id and client key here, once, and keeps them (churning them locks accounts, §4.2).
//!
//! Bad input is a 400 naming what was wrong: not a JWT, an expired token without a refresh
//! token to renew it, a file that is not SQLite, a `state.vscdb` without Cursor's keys.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kiro_layers::cursor::auth::{
    token_expiry, token_type, CursorCredential, CursorSecrets, NoWriteBack,
};
use kiro_layers::cursor::headers::{
    CursorConfig, DEFAULT_API_BASE, DEFAULT_OAUTH_CLIENT_ID, DEFAULT_WEBSITE_URL, POLL_PATH,
    UPGRADE_PATH,
};
use kiro_layers::pool::CredentialProvider;
use kiro_layers::store::{AuthKind, NewAccount};
use kiro_layers::traits::AccountKind;
use kiro_layers::GatewayError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use super::accounts::AccountSource;
use crate::store::validate;

/// Where to reach Cursor when an account is added (its refresh and the cookie upgrade).
#[derive(Debug, Clone)]
pub struct CursorAccountSettings {
    /// The API (`CURSOR_API_URL`): refresh and the upgrade's poll.
    pub api_base: String,
    /// The website (`CURSOR_WEBSITE_URL`): the cookie upgrade.
    pub website_url: String,
    /// Client for both.
    pub http: reqwest::Client,
    /// Polls of the upgrade before giving up, and the pause between them.
    pub upgrade_polls: u32,
    /// See `upgrade_polls`.
    pub poll_interval: Duration,
}

impl Default for CursorAccountSettings {
    fn default() -> Self {
        CursorAccountSettings {
            api_base: DEFAULT_API_BASE.to_owned(),
            website_url: DEFAULT_WEBSITE_URL.to_owned(),
            http: reqwest::Client::new(),
            upgrade_polls: 10,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Where to find the IDE's session token, said in every refusal.
pub const SESSION_TOKEN_HELP: &str = "Use the Cursor IDE's session token instead: the values of \
    `cursorAuth/accessToken` and `cursorAuth/refreshToken` in Cursor's state.vscdb \
    (~/.config/Cursor/User/globalStorage/ on Linux, ~/Library/Application Support/Cursor/User/\
    globalStorage/ on macOS, %APPDATA%\\Cursor\\User\\globalStorage\\ on Windows), or upload the \
    whole state.vscdb file.";

/// The tokens of a Cursor account.
pub struct CursorTokens {
    /// Session token (a JWT of `type: session`).
    pub access_token: String,
    /// Refresh token, when known.
    pub refresh_token: Option<String>,
    /// `cursorAuth/cachedEmail`, when read from state.vscdb.
    pub email: Option<String>,
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message)
}

/// True when `source` describes a Cursor account (its kind, or a Cursor-only field).
pub fn is_cursor(source: &AccountSource) -> bool {
    source
        .kind
        .as_deref()
        .is_some_and(|k| AccountKind::new(k) == AccountKind::CURSOR)
        || source.session_token.is_some()
        || source.state_vscdb_path.is_some()
        || source.state_vscdb_base64.is_some()
}

/// Loads and checks the Cursor account `source` describes (see the module docs).
pub async fn new_cursor_account(
    source: AccountSource,
    settings: &CursorAccountSettings,
) -> Result<NewAccount, GatewayError> {
    if let Some(kind) = source.kind.as_deref() {
        if AccountKind::new(kind) != AccountKind::CURSOR {
            return Err(bad(format!(
                "`kind` is `{kind}` but Cursor fields were given; use `\"kind\": \"cursor\"`."
            )));
        }
    }
    let kiro_only = [
        ("creds", source.creds.is_some()),
        ("cli_db_path", source.cli_db_path.is_some()),
        ("cli_db_base64", source.cli_db_base64.is_some()),
        ("profile_arn", source.profile_arn.is_some()),
        ("region", source.region.is_some()),
        ("api_region", source.api_region.is_some()),
    ];
    if let Some((field, _)) = kiro_only.iter().find(|(_, given)| *given) {
        return Err(bad(format!(
            "`{field}` is for Kiro accounts; a Cursor account takes `session_token` (with \
             `refresh_token`), `state_vscdb_path` or `state_vscdb_base64`."
        )));
    }
    let given = [
        source.session_token.is_some(),
        source.state_vscdb_path.is_some(),
        source.state_vscdb_base64.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(bad(
            "Give exactly one of `session_token` (with `refresh_token`), `state_vscdb_path` or \
             `state_vscdb_base64` for a Cursor account.",
        ));
    }
    let refresh_token = source
        .refresh_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let tokens = if let Some(input) = &source.session_token {
        let mut tokens = session_from_input(input, settings).await?;
        if refresh_token.is_some() {
            tokens.refresh_token = refresh_token;
        }
        tokens
    } else {
        if refresh_token.is_some() {
            return Err(bad(
                "`refresh_token` goes with `session_token`; state.vscdb holds its own.",
            ));
        }
        let bytes = match (&source.state_vscdb_path, &source.state_vscdb_base64) {
            (Some(path), _) => std::fs::read(path).map_err(|e| {
                bad(format!(
                    "could not read `state_vscdb_path` {}: {e}",
                    path.display()
                ))
            })?,
            (_, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad("`state_vscdb_base64` is not valid base64."))?,
            _ => return Err(bad("No credential source given.")),
        };
        let tokens = tokio::task::spawn_blocking(move || read_state_vscdb_bytes(&bytes))
            .await
            .map_err(|e| GatewayError::internal(format!("state.vscdb reader failed: {e}")))??;
        checked_session(tokens, settings).await?
    };
    let tokens = renewed_if_expired(tokens, settings).await?;
    let mut name = source.name.trim().to_owned();
    if name.is_empty() {
        name = tokens.email.clone().unwrap_or_default();
    }
    validate::name("`name`", &name)?;
    Ok(NewAccount {
        name,
        kind: AccountKind::CURSOR,
        auth_kind: AuthKind::Desktop,
        refresh_token: tokens.refresh_token.unwrap_or_default(),
        access_token: Some(tokens.access_token),
        machine_id: Some(random_hex64()),
        client_key: Some(random_hex64()),
        client_id: None,
        client_secret: None,
        profile_arn: None,
        sso_region: String::new(),
        api_region: String::new(),
        max_concurrency: source.max_concurrency,
    })
}

/// 32 random bytes as 64 lower-case hex characters.
fn random_hex64() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The claims of a JWT, if its payload decodes.
fn claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Splits `<userId>::<jwt>` / `<userId>%3A%3A<jwt>` / `<jwt>`.
fn split_cookie(input: &str) -> (Option<&str>, &str) {
    let input = input.trim();
    match input
        .rsplit_once("%3A%3A")
        .or_else(|| input.rsplit_once("::"))
    {
        Some((user, jwt)) => (Some(user).filter(|u| !u.is_empty()), jwt),
        None => (None, input),
    }
}

/// A pasted token: a session token is taken as it is; a browser cookie token (`type: web`) is
/// upgraded (§5.3) or refused with directions.
pub async fn session_from_input(
    input: &str,
    settings: &CursorAccountSettings,
) -> Result<CursorTokens, GatewayError> {
    let (user, jwt) = split_cookie(input);
    validate::session_token(jwt).map_err(|_| {
        bad(format!(
            "`session_token` is not a Cursor token (a JWT with three dot-separated parts, \
             optionally after `<userId>::`). {SESSION_TOKEN_HELP}"
        ))
    })?;
    let Some(claims) = claims(jwt) else {
        return Err(bad(format!(
            "`session_token` is not a Cursor token (its payload does not decode as JSON). \
             {SESSION_TOKEN_HELP}"
        )));
    };
    if claims["type"] == "web" {
        let user = user
            .map(str::to_owned)
            .or_else(|| user_id_of(&claims))
            .ok_or_else(|| {
                bad(format!(
                    "this browser cookie token names no user (`<userId>::<jwt>`). {SESSION_TOKEN_HELP}"
                ))
            })?;
        return upgrade_web_cookie(&user, jwt, settings).await;
    }
    Ok(CursorTokens {
        access_token: jwt.to_owned(),
        refresh_token: None,
        email: None,
    })
}

/// `user_...` from the `sub` claim (`auth0|user_...`).
fn user_id_of(claims: &serde_json::Value) -> Option<String> {
    let sub = claims["sub"].as_str()?;
    Some(sub.rsplit('|').next().unwrap_or(sub).to_owned()).filter(|u| !u.is_empty())
}

/// A token read from a file must be a session token too.
async fn checked_session(
    tokens: CursorTokens,
    settings: &CursorAccountSettings,
) -> Result<CursorTokens, GatewayError> {
    let mut checked = session_from_input(&tokens.access_token, settings).await?;
    checked.refresh_token = checked.refresh_token.or(tokens.refresh_token);
    checked.email = tokens.email;
    Ok(checked)
}

/// An expired session token is renewed with its refresh token now (so a dead refresh token is
/// a 400 here, not a disabled account later); without one it is refused.
async fn renewed_if_expired(
    mut tokens: CursorTokens,
    settings: &CursorAccountSettings,
) -> Result<CursorTokens, GatewayError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expired = token_expiry(&tokens.access_token).is_some_and(|exp| exp <= now);
    if !expired {
        return Ok(tokens);
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        return Err(bad(format!(
            "this Cursor session token has expired and no `refresh_token` was given to renew it. \
             {SESSION_TOKEN_HELP}"
        )));
    };
    let config = CursorConfig {
        api_base: settings.api_base.clone(),
        oauth_client_id: DEFAULT_OAUTH_CLIENT_ID.to_owned(),
        ..CursorConfig::default()
    };
    let credential = CursorCredential::new(
        "new-account".to_owned(),
        CursorSecrets {
            access_token: tokens.access_token.clone(),
            refresh_token: Some(refresh_token),
            machine_id: None,
            client_key: None,
        },
        Arc::new(config),
        settings.http.clone(),
        Arc::new(NoWriteBack),
    );
    let renewed = credential.force_refresh().await.map_err(|e| {
        bad(format!(
            "this Cursor session token has expired and renewing it failed: {}",
            e.message()
        ))
    })?;
    tokens.access_token = renewed.access_token;
    Ok(tokens)
}

/// Reads `cursorAuth/accessToken`, `cursorAuth/refreshToken` and `cursorAuth/cachedEmail` from
/// the bytes of a state.vscdb file.
pub fn read_state_vscdb_bytes(bytes: &[u8]) -> Result<CursorTokens, GatewayError> {
    let file = tempfile_with(bytes)?;
    read_state_vscdb(&file.0)
}

/// Reads the Cursor keys of a state.vscdb file (opened read-only).
pub fn read_state_vscdb(path: &Path) -> Result<CursorTokens, GatewayError> {
    let not_sqlite = |e: rusqlite::Error| {
        bad(format!(
            "the state.vscdb given is not a Cursor state database ({e}). It is the SQLite file \
             ~/.config/Cursor/User/globalStorage/state.vscdb (Linux; see docs/cursor.md for \
             macOS and Windows)."
        ))
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(not_sqlite)?;
    let read = |key: &str| -> Result<Option<String>, GatewayError> {
        let value = connection
            .query_row("SELECT value FROM ItemTable WHERE key = ?1", [key], |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                    _ => None,
                })
            })
            .optional()
            .map_err(not_sqlite)?
            .flatten();
        // VS Code stores some values JSON-encoded; a quoted string is unquoted.
        Ok(value
            .map(|v| serde_json::from_str::<String>(&v).unwrap_or_else(|_| v.trim().to_owned()))
            .filter(|v| !v.is_empty()))
    };
    let access_token = read("cursorAuth/accessToken")?.ok_or_else(|| {
        bad(
            "state.vscdb holds no `cursorAuth/accessToken`: sign in to Cursor on that machine \
             first, then upload the file again.",
        )
    })?;
    Ok(CursorTokens {
        access_token,
        refresh_token: read("cursorAuth/refreshToken")?,
        email: read("cursorAuth/cachedEmail")?,
    })
}

/// A temporary copy of an upload, removed on drop.
struct TempCopy(std::path::PathBuf);

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_with(bytes: &[u8]) -> Result<TempCopy, GatewayError> {
    let path = std::env::temp_dir().join(format!(
        "kiro-gateway-state-{}.vscdb",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, bytes)
        .map_err(|e| GatewayError::internal(format!("could not write a temporary file: {e}")))?;
    Ok(TempCopy(path))
}

/// §5.3: the website is shown the browser cookie and a PKCE challenge, then the API is polled
/// with the verifier until it hands out the session and refresh tokens (404 while pending).
async fn upgrade_web_cookie(
    user: &str,
    web_jwt: &str,
    settings: &CursorAccountSettings,
) -> Result<CursorTokens, GatewayError> {
    let refused = |why: String| {
        bad(format!(
            "this is a cursor.com browser cookie token (type \"web\"), which Cursor refuses for \
             chat, and upgrading it to a session token failed: {why}. {SESSION_TOKEN_HELP}"
        ))
    };
    let verifier =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    let uuid = uuid::Uuid::new_v4().to_string();
    let url = format!(
        "{}{UPGRADE_PATH}",
        settings.website_url.trim_end_matches('/')
    );
    let answer = settings
        .http
        .post(&url)
        .header(
            http::header::COOKIE,
            format!("WorkosCursorSessionToken={user}%3A%3A{web_jwt}"),
        )
        .header(http::header::REFERER, settings.website_url.as_str())
        .json(&serde_json::json!({ "uuid": uuid, "challenge": challenge }))
        .send()
        .await
        .map_err(|e| refused(format!("{url} could not be reached ({e})")))?;
    if !answer.status().is_success() {
        return Err(refused(format!("{url} answered HTTP {}", answer.status())));
    }
    let poll = format!("{}{POLL_PATH}", settings.api_base.trim_end_matches('/'));
    for attempt in 0..settings.upgrade_polls.max(1) {
        if attempt > 0 {
            tokio::time::sleep(settings.poll_interval).await;
        }
        let answer = settings
            .http
            .get(&poll)
            .query(&[("uuid", uuid.as_str()), ("verifier", verifier.as_str())])
            .send()
            .await
            .map_err(|e| refused(format!("{poll} could not be reached ({e})")))?;
        match answer.status() {
            http::StatusCode::NOT_FOUND => continue,
            status if status.is_success() => {
                let tokens: serde_json::Value = answer.json().await.unwrap_or_default();
                let access = tokens["accessToken"].as_str().unwrap_or_default();
                if access.is_empty() || token_type(access).as_deref() == Some("web") {
                    return Err(refused("the poll answer holds no session token".into()));
                }
                return Ok(CursorTokens {
                    access_token: access.to_owned(),
                    refresh_token: tokens["refreshToken"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                    email: None,
                });
            }
            status => return Err(refused(format!("{poll} answered HTTP {status}"))),
        }
    }
    Err(refused("Cursor never confirmed the login".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.sig")
    }

    #[test]
    fn the_cookie_forms_split_into_user_and_token() {
        assert_eq!(split_cookie("user_1::a.b.c"), (Some("user_1"), "a.b.c"));
        assert_eq!(split_cookie("user_1%3A%3Aa.b.c"), (Some("user_1"), "a.b.c"));
        assert_eq!(split_cookie(" a.b.c "), (None, "a.b.c"));
        let claims = serde_json::json!({"sub": "auth0|user_01ABC"});
        assert_eq!(user_id_of(&claims).as_deref(), Some("user_01ABC"));
    }

    #[tokio::test]
    async fn not_a_jwt_and_an_expired_token_without_refresh_are_clear_400s() {
        let settings = CursorAccountSettings::default();
        for input in ["", "garbage", "a.b", "a.!!!.c"] {
            let error = session_from_input(input, &settings).await.err().unwrap();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{input}");
            assert!(
                error.message().contains("state.vscdb"),
                "{}",
                error.message()
            );
        }
        let expired = CursorTokens {
            access_token: jwt(serde_json::json!({"type":"session","exp": 1})),
            refresh_token: None,
            email: None,
        };
        let error = renewed_if_expired(expired, &settings).await.err().unwrap();
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
        assert!(error.message().contains("expired"), "{}", error.message());
    }

    #[test]
    fn a_file_that_is_not_sqlite_and_one_without_the_keys_are_clear_400s() {
        let error = read_state_vscdb_bytes(b"this is not a database, just some text....")
            .err()
            .unwrap();
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
        assert!(
            error.message().contains("not a Cursor state database"),
            "{}",
            error.message()
        );

        let dir = std::env::temp_dir().join(format!("vscdb-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.vscdb");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB);",
        )
        .unwrap();
        let error = read_state_vscdb(&path).err().unwrap();
        assert!(
            error.message().contains("cursorAuth/accessToken"),
            "{}",
            error.message()
        );
        db.execute(
            "INSERT INTO ItemTable VALUES ('cursorAuth/accessToken', ?1), \
             ('cursorAuth/refreshToken', '\"quoted-refresh\"'), ('cursorAuth/cachedEmail', 'me@example.com')",
            ["a.b.c"],
        )
        .unwrap();
        let tokens = read_state_vscdb(&path).unwrap();
        assert_eq!(tokens.access_token, "a.b.c");
        assert_eq!(tokens.refresh_token.as_deref(), Some("quoted-refresh"));
        assert_eq!(tokens.email.as_deref(), Some("me@example.com"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
