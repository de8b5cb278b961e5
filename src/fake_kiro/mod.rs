//! A fake Kiro upstream, as strict as the real service, for end-to-end tests, benches, the
//! `fake_kiro` example and `serve --demo`.
//!
//! One port serves the desktop refresh (`POST /refreshToken`), the OIDC refresh
//! (`POST /token`), `GET /ListAvailableModels`, `GET /getUsageLimits` and
//! `POST /generateAssistantResponse`, which
//! validates the body with [`kiro_layers::kiro::validate`] (a request the real service would
//! refuse gets the same 400) and answers with genuine event-stream frames, split at awkward
//! byte boundaries by default.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kiro_gateway::fake_kiro::{FakeKiro, FakeKiroConfig, Scenario};
//! let fake = FakeKiro::start(FakeKiroConfig::default()).await?;
//! let token = fake.issue_access_token();
//! fake.push_scenario(Scenario::Status(429)); // the next chat call gets a 429
//! println!("{} (Bearer {token})", fake.base_url());
//! # Ok(()) }
//! ```
//!
//! Which answer a chat request gets: the next pushed [`Scenario`], else a `[fake:NAME]` /
//! `[fake:NAME:ARG]` directive in the current user message, else an echo.

mod body;
mod login;
mod models;
mod scenarios;
mod server;
mod tool_args;
mod usage_limits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kiro_layers::kiro::validate::ValidationRules;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use login::{LoginCase, FAKE_IDC_PROFILES};
pub use scenarios::{Scenario, SHELL_AND_PATCH_COMMAND, SHELL_AND_PATCH_PATCH};
pub use usage_limits::{default_answer as default_usage_limits, UsageLimitsAnswer};

use server::State;

/// How the fake splits a stream into the chunks it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// One chunk per frame.
    Whole,
    /// Small varying sizes (1..=23 bytes), cutting inside preludes, headers and multi-byte
    /// UTF-8 characters.
    #[default]
    Awkward,
    /// Chunks of exactly this many bytes (the last may be shorter).
    Fixed(usize),
}

/// The profile ARN the fake hands out with desktop refreshes.
pub const FAKE_PROFILE_ARN: &str =
    "arn:aws:codewhisperer:us-east-1:699475941385:profile/FAKEKIRO01";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeKiroConfig {
    /// `expiresIn` of refreshed tokens, and how long an issued access token is accepted.
    pub access_token_ttl: Duration,
    /// Delay between the response head and the first body byte of every stream.
    pub first_byte_delay: Duration,
    /// How streams are split into chunks.
    pub chunking: Chunking,
    /// What `generateAssistantResponse` accepts (also the model list it serves).
    pub rules: ValidationRules,
    /// Whether `ListAvailableModels` is served (the runtime host does not serve it).
    pub serve_list_models: bool,
    /// The refresh token accepted by both refresh endpoints.
    pub refresh_token: String,
    /// Issue a new refresh token on every refresh (the old one stops working).
    pub rotate_refresh_tokens: bool,
    /// The OIDC client id `/token` accepts.
    pub oidc_client_id: String,
    /// The OIDC client secret `/token` accepts.
    pub oidc_client_secret: String,
    /// The `profileArn` returned by the desktop refresh.
    pub profile_arn: String,
    /// Load-test mode: answer every authorised chat request with one pre-encoded body of this
    /// many text deltas, in one chunk, after only a JSON parse (no validation, no scenarios).
    pub precomputed_deltas: Option<usize>,
    /// Where `capture:<name>` looks for `.bin` bodies.
    pub capture_dir: PathBuf,
    /// How long an OIDC client registered by a sign-in stays valid.
    pub client_secret_ttl: Duration,
    /// Throttling like Kiro under load: every Nth chat request (the Nth, 2Nth, ...) gets the
    /// real 429 (with `Retry-After: 1`) whatever it asked for; `Some(1)` throttles everything.
    pub throttle_every: Option<u64>,
    /// Streams one HTTP/2 (h2c) connection may carry at once (`SETTINGS_MAX_CONCURRENT_STREAMS`;
    /// hyper's server default, 200, unless a test wants a tight one).
    pub http2_max_concurrent_streams: u32,
}

impl Default for FakeKiroConfig {
    fn default() -> Self {
        FakeKiroConfig {
            access_token_ttl: Duration::from_secs(3600),
            first_byte_delay: Duration::ZERO,
            chunking: Chunking::Awkward,
            rules: ValidationRules::default(),
            serve_list_models: true,
            refresh_token: "aorFAKE-refresh-token-0001".to_owned(),
            rotate_refresh_tokens: false,
            oidc_client_id: "fake-oidc-client-id".to_owned(),
            oidc_client_secret: "fake-oidc-client-secret".to_owned(),
            profile_arn: FAKE_PROFILE_ARN.to_owned(),
            precomputed_deltas: None,
            throttle_every: None,
            http2_max_concurrent_streams: 200,
            capture_dir: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/layers/test_data/kiro-captures"
            )),
            client_secret_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Counters and the last chat request, for assertions.
#[derive(Debug, Clone, Default)]
pub struct FakeStats {
    /// Successful refreshes (desktop and OIDC).
    pub refreshes: u64,
    /// Calls to `generateAssistantResponse`, accepted or not.
    pub chat_requests: u64,
    /// Calls to `ListAvailableModels`.
    pub list_models_requests: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Calls to `generateAssistantResponse` that came over HTTP/2.
    pub http2_chat_requests: u64,
    /// The last chat body that parsed as JSON (not kept in precomputed mode).
    pub last_request_body: Option<serde_json::Value>,
    /// The headers of the last chat request (not kept in precomputed mode).
    pub last_headers: Option<http::HeaderMap>,
}

/// Starts fake Kiro servers.
#[derive(Debug, Clone, Copy)]
pub struct FakeKiro;

impl FakeKiro {
    /// Binds `127.0.0.1:0` and serves until the handle is dropped.
    pub async fn start(config: FakeKiroConfig) -> std::io::Result<FakeKiroHandle> {
        start(config).await
    }
}

/// Binds `127.0.0.1:0` and serves until the handle is dropped.
pub async fn start(config: FakeKiroConfig) -> std::io::Result<FakeKiroHandle> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Binds `addr` and serves until the handle is dropped.
pub async fn start_on(config: FakeKiroConfig, addr: SocketAddr) -> std::io::Result<FakeKiroHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(config));
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
    Ok(FakeKiroHandle { addr, state, task })
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    // Connections live in this set, so aborting this task (handle dropped) drops them all,
    // stalled streams included.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Like a real service: small frames go out at once (Nagle against the
                // client's delayed ACK would add 40 ms to some deltas).
                let _ = stream.set_nodelay(true);
                state.lock().stats.connections += 1;
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let max_streams = state.config.http2_max_concurrent_streams;
                    let service = service_fn(move |request| server::handle(Arc::clone(&state), request));
                    // HTTP/1.1 and h2c (prior knowledge) on the one port.
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http2().max_concurrent_streams(max_streams);
                    // A client hanging up mid-stream is an expected outcome here, not a failure.
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running fake. Dropping it stops the server and closes every connection.
#[derive(Debug)]
pub struct FakeKiroHandle {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl FakeKiroHandle {
    /// `http://127.0.0.1:<port>`, the base of every endpoint.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FakeStats {
        self.state.lock().stats.clone()
    }

    /// Queues `scenario` for the next chat request (FIFO, one request each).
    pub fn push_scenario(&self, scenario: Scenario) {
        self.state.lock().queue.push_back(scenario);
    }

    /// A valid access token, without going through a refresh.
    pub fn issue_access_token(&self) -> String {
        self.state.issue_access_token()
    }

    /// Makes every access token issued so far invalid (the next chat call gets a 403).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for expiry in self.state.lock().access_tokens.values_mut() {
            *expiry = now;
        }
    }

    /// Takes the refresh endpoints down (they answer 503) or brings them back.
    pub fn set_refresh_down(&self, down: bool) {
        self.state.lock().refresh_down = down;
    }

    /// The refresh token currently accepted (changes on refresh with rotation on).
    pub fn current_refresh_token(&self) -> String {
        self.state.lock().refresh_token.clone()
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &FakeKiroConfig {
        &self.state.config
    }

    /// What `getUsageLimits` answers callers sending `profile_arn` (`None`: every caller
    /// without an answer of its own). The default answer is [`default_usage_limits`].
    pub fn set_usage_limits(&self, profile_arn: Option<&str>, answer: UsageLimitsAnswer) {
        let mut limits = self.state.usage_limits();
        match profile_arn {
            Some(arn) => {
                limits.by_profile.insert(arn.to_owned(), answer);
            }
            None => limits.default = Some(answer),
        }
    }

    /// Calls to `getUsageLimits` so far, and the query string of the last.
    pub fn usage_limits_calls(&self) -> (u64, Option<String>) {
        let limits = self.state.usage_limits();
        (limits.calls, limits.last_query.clone())
    }

    /// Plays `case` in the next device authorization (FIFO; see [`LoginCase`]).
    pub fn push_login_case(&self, case: LoginCase) {
        self.state.login().push_case(case);
    }

    /// Approves the device code `user_code`, as the user would on the verification page;
    /// `false` when no waiting code has it.
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.state.login().decide(user_code, true)
    }

    /// Denies the device code `user_code`.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.state.login().decide(user_code, false)
    }

    /// Makes every OIDC client registered so far expire (their refreshes fail `invalid_client`).
    pub fn expire_registrations(&self) {
        self.state.login().expire_registrations();
    }

    /// Device-code polls answered so far.
    pub fn device_polls(&self) -> u64 {
        self.state.login().device_polls
    }

    /// What the portal does when the user signs in with `provider` at `sign_in_url`: the
    /// `http://localhost:3128/oauth/callback?...` address the browser would end on.
    pub fn complete_portal_sign_in(
        &self,
        sign_in_url: &str,
        provider: &str,
    ) -> Result<String, String> {
        let url = reqwest::Url::parse(sign_in_url).map_err(|e| e.to_string())?;
        let mut pairs: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        pairs.insert("provider".into(), provider.into());
        login::issue_code(&self.state, &pairs).map_err(|refusal| format!("refused: {}", refusal.1))
    }

    /// Stops the server now (the same as dropping the handle).
    pub fn shutdown(self) {}
}

impl Drop for FakeKiroHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
