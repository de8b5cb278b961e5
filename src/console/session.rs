//! Console sessions, CSRF and the login rate limit.
//!
//! - A session id is 32 random bytes (hex in the cookie `kg_console`: HttpOnly,
//!   SameSite=Strict, `Secure` when the request came over HTTPS per `X-Forwarded-Proto`, path
//!   limited to the console). The store keeps only its SHA-256, the role and the key it was
//!   opened with; it ends after [`SESSION_LIFETIME`], at logout, or as soon as its key is no
//!   longer active (revoked, expired, deleted): every request re-derives the caller from the
//!   live key cache, so a revoked key opens nothing even before its rows are deleted.
//! - CSRF: the cookie is SameSite=Strict; every `POST` must also carry the session's token
//!   (SHA-256 of a label and the session id, so it is never stored and cannot be computed
//!   without the cookie) in the `_csrf` field, and a present `Origin` (or else `Referer`)
//!   must name the host the request was sent to.
//! - Logins: at most [`MAX_FAILED_LOGINS`] failures per client address in
//!   [`FAILURE_WINDOW`], and [`MAX_FAILED_LOGINS_ALL`] over all clients (so spoofed addresses
//!   cannot multiply the budget), then 429 until the window has passed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderMap;
use kiro_layers::store::ConsoleSessionRow;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::i18n::Lang;
use super::pages::PageError;
use super::Console;
use crate::tenancy::keys::Caller;

/// The session cookie's name.
pub const COOKIE: &str = "kg_console";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Failed logins one client may make per window.
pub const MAX_FAILED_LOGINS: u32 = 10;
/// Failed logins all clients together may make per window.
pub const MAX_FAILED_LOGINS_ALL: u32 = 100;
/// The login rate limit's window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(600);

/// The three kinds of console user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The operator.
    Admin,
    /// A reseller.
    Agent,
    /// A user of the gateway.
    User,
}

impl Role {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::User => "user",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    /// The role of a caller.
    pub fn of(caller: &Caller) -> Role {
        match caller {
            Caller::RootAdmin | Caller::Cli | Caller::Admin(_) => Role::Admin,
            Caller::Agent { .. } => Role::Agent,
            Caller::User { .. } => Role::User,
        }
    }
}

/// A signed-in session, re-checked on this request.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, derived from the live key cache.
    pub caller: Caller,
    /// Its role.
    pub role: Role,
    /// The CSRF token forms must send back.
    pub csrf: String,
    id_hash: Vec<u8>,
}

impl Session {
    /// SHA-256 of the session id (what the store keys sessions by).
    pub fn id_hash(&self) -> &[u8] {
        &self.id_hash
    }
}

/// What every page needs: language, URL prefix and the session, if any.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Display language.
    pub lang: Lang,
    /// The console's URL prefix (`/base/console`).
    pub root: String,
    /// The signed-in session.
    pub session: Option<Session>,
    /// A message from the previous request (redirect after post).
    pub flash: Option<Flash>,
    /// Whether the request came over HTTPS (`X-Forwarded-Proto`).
    pub https: bool,
    /// `scheme://host` the browser used, for the quick-start base URL.
    pub origin: String,
}

/// A one-shot message carried across a redirect in a short-lived cookie.
#[derive(Debug, Clone)]
pub struct Flash {
    /// An error (else a success).
    pub error: bool,
    /// Text (escaped when shown).
    pub text: String,
}

/// SHA-256 of `bytes`.
fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

fn csrf_of(session_id: &str) -> String {
    hex::encode(sha256(&[
        b"kiro-gateway console csrf\0",
        session_id.as_bytes(),
    ]))
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.split(',').next().unwrap_or("").trim() == "https")
}

/// The host the browser sent the request to (a proxy's `X-Forwarded-Host` first).
fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(|h| {
            h.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|h| !h.is_empty())
}

/// A cookie header value for this console.
pub fn set_cookie(ctx: &Ctx, name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut cookie = format!(
        "{name}={value}; Path={}; HttpOnly; SameSite=Strict",
        ctx.root
    );
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if ctx.https {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Opens a session for `caller` (just authenticated by its key); answers the `Set-Cookie`
/// value.
pub async fn open(
    state: &Console,
    ctx: &Ctx,
    caller: &Caller,
    user_agent: &str,
) -> Result<String, PageError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let id = hex::encode(raw);
    let key_id = match caller {
        Caller::Admin(id) => Some(*id),
        Caller::Agent { key_id, .. } | Caller::User { key_id, .. } => Some(*key_id),
        Caller::RootAdmin | Caller::Cli => None,
    };
    let row = ConsoleSessionRow {
        id_hash: sha256(&[id.as_bytes()]),
        role: Role::of(caller).as_str().to_owned(),
        key_id,
        expires_at: chrono::Utc::now()
            + chrono::Duration::from_std(SESSION_LIFETIME).unwrap_or_default(),
        user_agent: user_agent.chars().take(200).collect(),
    };
    state
        .tenancy
        .store
        .create_console_session(row)
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?;
    Ok(set_cookie(ctx, COOKIE, &id, Some(SESSION_LIFETIME)))
}

/// The live session named by the request's cookie, if any. A session whose key is no longer
/// active is deleted here.
async fn load(state: &Console, headers: &HeaderMap) -> Result<Option<Session>, PageError> {
    let Some(id) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let id_hash = sha256(&[id.as_bytes()]);
    let store = &state.tenancy.store;
    let Some(row) = store
        .get_console_session(id_hash.clone())
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let keys = &state.tenancy.keys;
    let caller = match row.key_id {
        Some(key_id) => keys.caller_by_key_id(key_id),
        None => keys.has_root_admin().then_some(Caller::RootAdmin),
    };
    let role = Role::parse(&row.role);
    match (caller, role) {
        (Some(caller), Some(role)) if Role::of(&caller) == role => Ok(Some(Session {
            caller,
            role,
            csrf: csrf_of(id),
            id_hash,
        })),
        _ => {
            // The key was revoked or expired: the session ends with it.
            let _ = store.delete_console_session(id_hash).await;
            Ok(None)
        }
    }
}

fn flash_of(headers: &HeaderMap) -> Option<Flash> {
    let value = cookie(headers, "kg_flash")?;
    let (kind, text) = value.split_once('.')?;
    let text = super::form::percent_decode(text);
    Some(Flash {
        error: kind == "e",
        text: text.chars().take(500).collect(),
    })
}

/// Cookie value of a flash message.
pub fn flash_cookie(ctx: &Ctx, error: bool, text: &str) -> String {
    let encoded = super::form::percent_encode(&text.chars().take(300).collect::<String>());
    set_cookie(
        ctx,
        "kg_flash",
        &format!("{}.{encoded}", if error { "e" } else { "o" }),
        Some(Duration::from_secs(60)),
    )
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Console) -> Result<Self, Response> {
        let headers = &parts.headers;
        let session = load(state, headers)
            .await
            .map_err(IntoResponse::into_response)?;
        let https = https(headers);
        let origin = format!(
            "{}://{}",
            if https { "https" } else { "http" },
            request_host(headers).unwrap_or_else(|| "localhost".to_owned())
        );
        Ok(Ctx {
            lang: Lang::from_request(headers),
            root: state.root(),
            session,
            flash: flash_of(headers),
            https,
            origin,
        })
    }
}

/// Checks a form post: a present `Origin` (or `Referer`) names this host, and `_csrf` is the
/// session's token (compared in constant time).
pub fn check_post(session: &Session, headers: &HeaderMap, token: Option<&str>) -> bool {
    let same_origin = match headers
        .get(http::header::ORIGIN)
        .or_else(|| headers.get(http::header::REFERER))
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(origin) => {
            let host = origin
                .split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
                .unwrap_or("")
                .to_ascii_lowercase();
            request_host(headers).is_some_and(|h| h == host)
        }
    };
    let token_ok = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.csrf.as_bytes())));
    same_origin && token_ok
}

/// The client address the rate limit counts by.
pub fn client_of(parts_ext: &http::Extensions) -> String {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Failed logins per client in a sliding window (see the module docs).
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

const ALL: &str = "\0all";

impl LoginLimiter {
    /// True when `client` may try to log in now.
    pub fn allowed(&self, client: &str) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        let now = Instant::now();
        for list in map.values_mut() {
            list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        }
        map.retain(|_, list| !list.is_empty());
        let mine = map.get(client).map_or(0, Vec::len);
        let all = map.get(ALL).map_or(0, Vec::len);
        mine < MAX_FAILED_LOGINS as usize && all < MAX_FAILED_LOGINS_ALL as usize
    }

    /// Records a failed login of `client`.
    pub fn failed(&self, client: &str) {
        if let Ok(mut map) = self.failures.lock() {
            let now = Instant::now();
            map.entry(client.to_owned()).or_default().push(now);
            map.entry(ALL.to_owned()).or_default().push(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_stops_a_client_after_its_failures_and_everyone_after_the_total() {
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILED_LOGINS {
            assert!(limiter.allowed("1.2.3.4"));
            limiter.failed("1.2.3.4");
        }
        assert!(!limiter.allowed("1.2.3.4"));
        assert!(limiter.allowed("5.6.7.8"));
        for i in 0..MAX_FAILED_LOGINS_ALL {
            limiter.failed(&format!("10.0.0.{i}"));
        }
        assert!(!limiter.allowed("9.9.9.9"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "xkg_console=bad; kg_console=good; other=1".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("good"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn the_csrf_token_depends_on_the_session_and_is_not_its_stored_hash() {
        let a = csrf_of("a");
        assert_ne!(a, csrf_of("b"));
        assert_ne!(a, hex::encode(sha256(&[b"a"])));
    }
}
