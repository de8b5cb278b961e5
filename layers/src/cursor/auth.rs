//! A Cursor account's credential: its session token (a JWT) and refresh token, refreshed before
//! the JWT expires (`POST /oauth/token`, cursor-protocol.md §5.4), one refresh at a time per
//! account (callers wait on the lock and reuse the result), and the new token written back
//! through [`CursorTokenStore`]. A refresh Cursor refuses for good (`shouldLogout`, 400/401) is an
//! `invalid_grant` error, which makes the pool disable the account with the reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::future::BoxFuture;

use super::headers::{derived_id, CursorConfig, REFRESH_PATH};
use crate::error::GatewayError;
use crate::pool::CredentialProvider;
use crate::traits::{AccountKind, Credential};

/// Refresh this long before the token expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where refreshed session tokens are written (the database, for stored accounts).
pub trait CursorTokenStore: Send + Sync + 'static {
    /// Stores the new session token of `account_id`.
    fn save<'a>(
        &'a self,
        account_id: &'a str,
        access_token: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;
}

/// Keeps tokens in memory only (accounts from the environment).
#[derive(Debug, Default)]
pub struct NoWriteBack;

impl CursorTokenStore for NoWriteBack {
    fn save<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What an operator hands in for a Cursor account.
#[derive(Clone)]
pub struct CursorSecrets {
    /// The session token (`cursorAuth/accessToken`).
    pub access_token: String,
    /// The refresh token (`cursorAuth/refreshToken`), when known.
    pub refresh_token: Option<String>,
    /// Stable machine id (64 hex); derived from the account id when absent.
    pub machine_id: Option<String>,
    /// Stable client key (64 hex); derived from the account id when absent.
    pub client_key: Option<String>,
}

impl std::fmt::Debug for CursorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSecrets").finish_non_exhaustive()
    }
}

/// See the module docs.
pub struct CursorCredential {
    account_id: String,
    tokens: tokio::sync::Mutex<CursorSecrets>,
    machine_id: String,
    client_key: String,
    config: Arc<CursorConfig>,
    http: reqwest::Client,
    store: Arc<dyn CursorTokenStore>,
}

impl CursorCredential {
    /// An account with these secrets.
    pub fn new(
        account_id: String,
        secrets: CursorSecrets,
        config: Arc<CursorConfig>,
        http: reqwest::Client,
        store: Arc<dyn CursorTokenStore>,
    ) -> Self {
        let machine_id = secrets
            .machine_id
            .clone()
            .unwrap_or_else(|| derived_id(&account_id, "machine"));
        let client_key = secrets
            .client_key
            .clone()
            .unwrap_or_else(|| derived_id(&account_id, "client-key"));
        CursorCredential {
            account_id,
            tokens: tokio::sync::Mutex::new(secrets),
            machine_id,
            client_key,
            config,
            http,
            store,
        }
    }

    fn credential(&self, access_token: &str) -> Credential {
        Credential {
            account_id: self.account_id.clone(),
            kind: AccountKind::CURSOR,
            access_token: access_token.to_owned(),
            profile_arn: None,
            api_base: self.config.api_base.clone(),
            fingerprint: self.machine_id.clone(),
            external_idp: false,
            client_key: Some(self.client_key.clone()),
        }
    }

    async fn get(&self, force: bool) -> Result<Credential, GatewayError> {
        // The lock makes refreshes single-flight: a second caller waits, then sees the new token.
        let mut tokens = self.tokens.lock().await;
        let expiring = token_expiry(&tokens.access_token)
            .is_some_and(|exp| exp.saturating_sub(REFRESH_MARGIN.as_secs()) <= now_seconds());
        if (force || expiring) && tokens.refresh_token.is_some() {
            let fresh = self
                .refresh(tokens.refresh_token.as_deref().unwrap_or(""))
                .await?;
            self.store.save(&self.account_id, &fresh).await?;
            tokens.access_token = fresh;
        }
        Ok(self.credential(&tokens.access_token))
    }

    async fn refresh(&self, refresh_token: &str) -> Result<String, GatewayError> {
        let url = format!(
            "{}{REFRESH_PATH}",
            self.config.api_base.trim_end_matches('/')
        );
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "client_id": self.config.oauth_client_id,
            "refresh_token": refresh_token,
        });
        let response = self.http.post(&url).json(&body).send().await.map_err(|e| {
            GatewayError::upstream_stream(format!("Could not refresh the Cursor token: {e}"))
        })?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        let token = answer["access_token"].as_str().unwrap_or("");
        if status.is_success() && !token.is_empty() && answer["shouldLogout"] != true {
            return Ok(token.to_owned());
        }
        if status.is_client_error() || answer["shouldLogout"] == true {
            return Err(GatewayError::upstream(
                http::StatusCode::UNAUTHORIZED,
                format!(
                    "Cursor refused the refresh token (HTTP {status}); sign in to Cursor again and \
                     update the account's session and refresh tokens"
                ),
            )
            .with_upstream_reason("invalid_grant"));
        }
        Err(GatewayError::upstream(
            http::StatusCode::BAD_GATEWAY,
            format!("Cursor's token refresh failed (HTTP {status})"),
        ))
    }
}

impl CredentialProvider for CursorCredential {
    fn account_id(&self) -> &str {
        &self.account_id
    }
    fn current(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        Box::pin(self.get(false))
    }
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        Box::pin(self.get(true))
    }
    fn kind(&self) -> AccountKind {
        AccountKind::CURSOR
    }
}

/// The claims (payload) of a JWT, without checking its signature: only the gateway's own
/// bookkeeping reads them (when to refresh, which kind of token was pasted).
fn claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `exp` claim of a JWT, if it has one.
pub fn token_expiry(jwt: &str) -> Option<u64> {
    claims(jwt)?["exp"].as_u64()
}

/// The claim `type` of a JWT (`session` for the IDE's token, `web` for a browser cookie's).
pub fn token_type(jwt: &str) -> Option<String> {
    claims(jwt)?["type"].as_str().map(str::to_owned)
}

/// Turns what an operator pasted into a session token: a bare JWT, or `<userId>::<jwt>` /
/// `<userId>%3A%3A<jwt>` (the browser cookie form). A browser cookie's token (`type: web`) does
/// not work for chat; it is refused with directions, since upgrading it needs a browser login.
pub fn session_token_from_input(input: &str) -> Result<String, String> {
    let input = input.trim();
    let jwt = input
        .rsplit_once("%3A%3A")
        .or_else(|| input.rsplit_once("::"))
        .map_or(input, |(_, jwt)| jwt);
    if !is_jwt_shaped(jwt) {
        return Err(
            "this is not a Cursor session token (a JWT with three dot-separated parts)".into(),
        );
    }
    match token_type(jwt).as_deref() {
        Some("web") => Err(
            "this is a cursor.com browser cookie token (type \"web\"), which Cursor refuses for chat. \
             Use the IDE's session token instead: the value of `cursorAuth/accessToken` (and \
             `cursorAuth/refreshToken`) in Cursor's state.vscdb (~/.config/Cursor/User/globalStorage/ \
             on Linux, ~/Library/Application Support/Cursor/User/globalStorage/ on macOS, \
             %APPDATA%\\Cursor\\User\\globalStorage\\ on Windows)."
                .into(),
        ),
        _ => Ok(jwt.to_owned()),
    }
}

/// Three dot-separated parts of URL-safe base64, header and payload not empty: the shape of a
/// signed JWT, so pasted text with stray separators or whitespace inside is refused here rather
/// than sent to Cursor.
fn is_jwt_shaped(s: &str) -> bool {
    let url_safe = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| url_safe(p))
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.sig")
    }

    #[test]
    fn cookie_forms_give_the_jwt_and_web_tokens_are_refused_with_directions() {
        let session = jwt(serde_json::json!({"type":"session","exp":1}));
        assert_eq!(session_token_from_input(&session).unwrap(), session);
        assert_eq!(
            session_token_from_input(&format!("user_01ABC::{session}")).unwrap(),
            session
        );
        assert_eq!(
            session_token_from_input(&format!("user_01ABC%3A%3A{session}")).unwrap(),
            session
        );
        let web = jwt(serde_json::json!({"type":"web"}));
        let refused = session_token_from_input(&format!("user_01ABC%3A%3A{web}")).unwrap_err();
        assert!(refused.contains("state.vscdb"), "{refused}");
        assert!(session_token_from_input("garbage").is_err());
        // Stray separators or spaces inside are not a token, whichever form they came in.
        let (head, rest) = session.split_once('.').unwrap();
        assert!(session_token_from_input(&format!("{head}.{rest} x")).is_err());
        assert!(session_token_from_input(&format!("u%3A%3A{head}.a::b.{rest}")).is_err());
        assert!(session_token_from_input(&format!(".{rest}")).is_err());
        assert_eq!(token_expiry(&session), Some(1));
    }
}
