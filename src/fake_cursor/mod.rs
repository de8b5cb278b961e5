//! A fake Cursor upstream, as strict as what is known of the real service
//! (docs/cursor.md, cursor-protocol.md §11.2), for tests and `serve --demo`.
//!
//! One port serves `POST /aiserver.v1.ChatService/StreamUnifiedChatWithTools` (HTTP/2 only:
//! HTTP/1.1 gets a 464 like AWS's load balancer), `POST /aiserver.v1.AiService/AvailableModels`,
//! `POST /oauth/token`, and the browser-cookie upgrade of cursor-protocol.md §5.3 (the website's
//! `POST /api/auth/loginDeepCallbackControl`, then `GET /auth/poll`). Every chat request is checked ([`checks`]) and a violation is answered
//! the way the real service does: a plain HTTP status for transport-level faults, else HTTP 200
//! with an error end-of-stream frame.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kiro_gateway::fake_cursor::{FakeCursorConfig, Scenario};
//! let fake = kiro_gateway::fake_cursor::start(FakeCursorConfig::default()).await?;
//! let token = fake.issue_session_token(3600);
//! fake.push_scenario(Scenario::Error { code: 50, connect: "resource_exhausted", title: "Rate limited" });
//! println!("{} (Bearer {token})", fake.base_url());
//! # Ok(()) }
//! ```
//!
//! Which answer a chat request gets: the next pushed [`Scenario`], else a `[cursor:NAME]`
//! directive in the last user message, else an echo of it.

pub mod checks;
mod scenarios;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use scenarios::Scenario;

/// The JWT header every Cursor session token starts with (HS256).
pub const JWT_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// How the fake refuses an old client version (both have been seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutdatedStyle {
    /// `resource_exhausted` + ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT titled "Update Required".
    #[default]
    UpdateRequired,
    /// ERROR_OUTDATED_CLIENT.
    OutdatedClient,
}

/// Settings of the fake.
#[derive(Debug, Clone)]
pub struct FakeCursorConfig {
    /// Lowest `x-cursor-client-version` accepted.
    pub min_client_version: String,
    /// How an older one is refused.
    pub outdated_style: OutdatedStyle,
    /// Models it knows.
    pub models: Vec<String>,
    /// How far the checksum's time may be from now, in units of 1 000 s (Cursor's `k`).
    pub checksum_window: u64,
    /// Bytes per written chunk (frames are cut across chunks).
    pub chunk: usize,
}

impl Default for FakeCursorConfig {
    fn default() -> Self {
        FakeCursorConfig {
            min_client_version: "3.0.0".to_owned(),
            outdated_style: OutdatedStyle::default(),
            models: vec![
                "claude-4.5-sonnet".to_owned(),
                "claude-4.5-sonnet-thinking".to_owned(),
                "gpt-5.4-medium".to_owned(),
                "default".to_owned(),
            ],
            checksum_window: 2,
            chunk: 7,
        }
    }
}

/// Counters a test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeCursorStats {
    /// Chat calls answered.
    pub chat_calls: u64,
    /// Chat calls refused by a check.
    pub refused: u64,
    /// Refreshes served.
    pub refreshes: u64,
    /// `AvailableModels` calls (answered or failed).
    pub model_lists: u64,
}

pub(crate) struct State {
    pub config: FakeCursorConfig,
    /// Issued session tokens and their expiry (unix seconds).
    pub tokens: Mutex<HashMap<String, u64>>,
    /// Refresh tokens and the account they belong to.
    pub refresh_tokens: Mutex<HashMap<String, u64>>,
    /// Cookie upgrades under way: login uuid to PKCE challenge.
    pub pending_logins: Mutex<HashMap<String, String>>,
    pub scenarios: Mutex<Vec<Scenario>>,
    pub chat_calls: AtomicU64,
    pub refused: AtomicU64,
    pub refreshes: AtomicU64,
    pub model_lists: AtomicU64,
    /// How many of the next `AvailableModels` calls answer 503 (an outage).
    pub failing_model_lists: AtomicU64,
    serial: AtomicU64,
}

impl State {
    pub fn issue(&self, ttl_seconds: i64) -> String {
        self.issue_of_type(ttl_seconds, "session")
    }

    /// A token of `type` (`session` for the IDE, `web` for a cursor.com browser cookie).
    pub fn issue_of_type(&self, ttl_seconds: i64, token_type: &str) -> String {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let exp = (now_seconds() as i64 + ttl_seconds).max(0) as u64;
        let payload = serde_json::json!({
            "sub": format!("auth0|user_01FAKECURSOR{serial:014}"),
            "time": now_seconds().to_string(),
            "randomness": format!("{serial:08x}-0000-4000-8000"),
            "exp": exp,
            "iss": "https://authentication.cursor.sh",
            "scope": "openid profile email offline_access",
            "aud": "https://cursor.com",
            "type": token_type,
        });
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
        let signature = Sha256::digest(format!("{JWT_HEADER}.{body}.fake-cursor-secret"));
        let token = format!(
            "{JWT_HEADER}.{body}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        );
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone(), exp);
        }
        token
    }

    pub fn issue_refresh_token(&self) -> String {
        let token = format!("fake-cursor-refresh-{}", uuid::Uuid::new_v4().simple());
        if let Ok(mut tokens) = self.refresh_tokens.lock() {
            tokens.insert(token.clone(), 0);
        }
        token
    }

    pub fn next_scenario(&self) -> Option<Scenario> {
        let mut scenarios = self.scenarios.lock().ok()?;
        (!scenarios.is_empty()).then(|| scenarios.remove(0))
    }
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Starts the fake on a free loopback port.
pub async fn start(config: FakeCursorConfig) -> std::io::Result<FakeCursorHandle> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Binds `addr` and serves until the handle is dropped.
pub async fn start_on(
    config: FakeCursorConfig,
    addr: SocketAddr,
) -> std::io::Result<FakeCursorHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        config,
        tokens: Mutex::default(),
        refresh_tokens: Mutex::default(),
        pending_logins: Mutex::default(),
        scenarios: Mutex::default(),
        chat_calls: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        refreshes: AtomicU64::new(0),
        model_lists: AtomicU64::new(0),
        failing_model_lists: AtomicU64::new(0),
        serial: AtomicU64::new(1),
    });
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
    Ok(FakeCursorHandle { addr, state, task })
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Like a real service: small frames go out at once (Nagle against the
                // client's delayed ACK would add 40 ms to some deltas).
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let service = service_fn(move |request| server::handle(Arc::clone(&state), request));
                    // Both versions are served so that an HTTP/1.1 client gets a clear refusal
                    // (464) rather than a broken connection.
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running fake. Dropping it stops the server and closes every connection.
pub struct FakeCursorHandle {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeCursorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeCursorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCursorHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeCursorHandle {
    /// `http://127.0.0.1:PORT` (HTTP/2 prior knowledge).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A session token valid for `ttl_seconds` (negative: already expired).
    pub fn issue_session_token(&self, ttl_seconds: i64) -> String {
        self.state.issue(ttl_seconds)
    }

    /// A refresh token that the refresh endpoint exchanges for fresh session tokens.
    pub fn issue_refresh_token(&self) -> String {
        self.state.issue_refresh_token()
    }

    /// A cursor.com browser cookie token (`type: web`) valid for `ttl_seconds`: refused for
    /// chat, upgraded by `/api/auth/loginDeepCallbackControl` + `/auth/poll`.
    pub fn issue_web_token(&self, ttl_seconds: i64) -> String {
        self.state.issue_of_type(ttl_seconds, "web")
    }

    /// Revokes every refresh token (a logged-out account).
    pub fn revoke_refresh_tokens(&self) {
        if let Ok(mut tokens) = self.state.refresh_tokens.lock() {
            tokens.clear();
        }
    }

    /// The next `count` `AvailableModels` calls answer 503.
    pub fn fail_model_lists(&self, count: u64) {
        self.state
            .failing_model_lists
            .store(count, Ordering::Relaxed);
    }

    /// The next chat call gets `scenario`.
    pub fn push_scenario(&self, scenario: Scenario) {
        if let Ok(mut scenarios) = self.state.scenarios.lock() {
            scenarios.push(scenario);
        }
    }

    /// Counters.
    pub fn stats(&self) -> FakeCursorStats {
        FakeCursorStats {
            chat_calls: self.state.chat_calls.load(Ordering::Relaxed),
            refused: self.state.refused.load(Ordering::Relaxed),
            refreshes: self.state.refreshes.load(Ordering::Relaxed),
            model_lists: self.state.model_lists.load(Ordering::Relaxed),
        }
    }

    /// The models it serves.
    pub fn models(&self) -> &[String] {
        &self.state.config.models
    }
}

/// How long a slow first byte waits (a scenario).
pub const SLOW_FIRST_BYTE: Duration = Duration::from_millis(300);
