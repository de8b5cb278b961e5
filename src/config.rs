//! Command line and environment configuration. Every option can be given as a flag or as an
//! environment variable (names compatible with kiro-gateway), and a `.env` file in the working
//! directory is read first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kiro-gateway: use the models behind Amazon's Kiro API from any OpenAI- or
/// Anthropic-compatible client.
#[derive(Debug, Parser)]
#[command(name = "kiro-gateway", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (OpenAI /v1/chat/completions, Anthropic /v1/messages, /v1/models).
    Serve(Box<ServeArgs>),
    /// Admin keys for the `/admin` API.
    #[command(subcommand)]
    AdminKey(crate::tenancy::cli::AdminKeyCommand),
    /// Kiro accounts in the database.
    #[command(subcommand)]
    Account(crate::tenancy::cli::AccountCommand),
    /// Users in the database.
    #[command(subcommand)]
    User(crate::tenancy::cli::UserCommand),
    /// List and show debug captures (see DEBUG_MODE).
    Debug(DebugArgs),
    /// Print the configuration reference (docs/configuration.md) generated from these options.
    ConfigReference,
}

/// Options of `kiro-gateway debug`.
#[derive(Debug, Clone, Args)]
pub struct DebugArgs {
    /// Directory of the captures.
    #[arg(long = "debug-dir", env = "DEBUG_DIR", default_value = "debug_logs")]
    pub debug_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: DebugAction,
}

/// `kiro-gateway debug` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum DebugAction {
    /// One line per capture, newest first.
    List,
    /// Print one capture (JSON lines).
    Show {
        /// The capture id from `debug list`, or the request id (`x-request-id`).
        id: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `kiro-gateway serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long = "host", env = "SERVER_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long = "port", env = "SERVER_PORT", default_value_t = 8000)]
    pub port: u16,

    /// The API key clients must send (`Authorization: Bearer` or `x-api-key`).
    #[arg(
        long = "proxy-api-key",
        env = "PROXY_API_KEY",
        default_value = "my-super-secret-password-123",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub proxy_api_key: String,

    /// Kiro desktop refresh token (social login) for a single account.
    #[arg(long = "refresh-token", env = "REFRESH_TOKEN", hide_env_values = true)]
    pub refresh_token: Option<String>,

    /// Kiro profile ARN sent with every request (arn:aws:codewhisperer:<region>:<account>:profile/<id>).
    #[arg(long = "profile-arn", env = "PROFILE_ARN")]
    pub profile_arn: Option<String>,

    /// Region of the login (refresh endpoints).
    #[arg(long = "region", env = "KIRO_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Region of the Kiro API when it differs from the login region (us-east-1 or eu-central-1).
    #[arg(long = "api-region", env = "KIRO_API_REGION")]
    pub api_region: Option<String>,

    /// Kiro IDE / AWS SSO JSON credentials file (e.g. ~/.aws/sso/cache/kiro-auth-token.json).
    #[arg(long = "creds-file", env = "KIRO_CREDS_FILE")]
    pub creds_file: Option<PathBuf>,

    /// kiro-cli SQLite database (e.g. ~/.local/share/kiro-cli/data.sqlite3).
    #[arg(long = "cli-db-file", env = "KIRO_CLI_DB_FILE")]
    pub cli_db_file: Option<PathBuf>,

    /// Never write refreshed tokens back into the kiro-cli database.
    #[arg(
        long = "sqlite-readonly",
        env = "SQLITE_READONLY",
        default_value_t = false
    )]
    pub sqlite_readonly: bool,

    /// Kiro API base URL; `{region}` is replaced by the API region.
    #[arg(
        long = "kiro-api-url",
        env = "KIRO_API_URL",
        default_value = "https://runtime.{region}.kiro.dev"
    )]
    pub kiro_api_url: String,

    /// Kiro desktop refresh base URL; `{region}` is replaced by the login region.
    #[arg(
        long = "kiro-desktop-auth-url",
        env = "KIRO_DESKTOP_AUTH_URL",
        default_value = "https://prod.{region}.auth.desktop.kiro.dev"
    )]
    pub kiro_desktop_auth_url: String,

    /// AWS SSO OIDC base URL; `{region}` is replaced by the login region.
    #[arg(
        long = "kiro-oidc-url",
        env = "KIRO_OIDC_URL",
        default_value = "https://oidc.{region}.amazonaws.com"
    )]
    pub kiro_oidc_url: String,

    /// Where the account sign-in flows send their calls (`account login`, `/admin/accounts/login`).
    #[command(flatten)]
    pub login_urls: crate::login::LoginUrlArgs,

    /// Kiro usage limits per account (`getUsageLimits`): where, and how often.
    #[command(flatten)]
    pub usage_limits: crate::usage_limits::UsageLimitsArgs,

    /// Log level: error, warn, info, debug, trace (or a tracing filter such as `kiro_layers=debug`).
    #[arg(long = "log-level", env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Key for the `/admin` API, including `/admin/debug` (database admin keys work too).
    #[arg(long = "admin-api-key", env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,

    /// The path prefix a reverse proxy serves the gateway under (e.g. `/kiro`), so the web
    /// console at `<prefix>/console` builds its links and cookies for it. Empty when the
    /// gateway is served at the root.
    #[arg(
        long = "public-base-path",
        env = "PUBLIC_BASE_PATH",
        default_value = ""
    )]
    pub public_base_path: String,

    /// Run against the built-in fake Kiro upstream: no account needed, answers are canned.
    #[arg(long = "demo", env = "KIRO_DEMO", default_value_t = false)]
    pub demo: bool,

    /// A Cursor Pro account's IDE session token (`cursorAuth/accessToken` in Cursor's
    /// state.vscdb, or a `<userId>::<jwt>` value). Using a Cursor subscription through a gateway
    /// goes against Cursor's terms and can get the account banned (docs/cursor.md).
    #[arg(
        long = "cursor-session-token",
        env = "CURSOR_SESSION_TOKEN",
        hide_env_values = true
    )]
    pub cursor_session_token: Option<String>,

    /// The Cursor account's refresh token (`cursorAuth/refreshToken`), to renew the session.
    #[arg(
        long = "cursor-refresh-token",
        env = "CURSOR_REFRESH_TOKEN",
        hide_env_values = true
    )]
    pub cursor_refresh_token: Option<String>,

    /// Cursor API base URL (an `http://` URL means HTTP/2 without TLS, for test fakes).
    #[arg(long = "cursor-api-url", env = "CURSOR_API_URL", default_value = kiro_layers::cursor::headers::DEFAULT_API_BASE)]
    pub cursor_api_url: String,

    /// `x-cursor-client-version` sent to Cursor; raise it to the current Cursor IDE version when
    /// Cursor answers "Update Required" (docs/cursor.md).
    #[arg(long = "cursor-client-version", env = "CURSOR_CLIENT_VERSION", default_value = kiro_layers::cursor::headers::DEFAULT_CLIENT_VERSION)]
    pub cursor_client_version: String,

    /// cursor.com, where a browser cookie (`<userId>::<jwt>`) is upgraded to a session token when
    /// a Cursor account is added (docs/cursor.md).
    #[arg(long = "cursor-website-url", env = "CURSOR_WEBSITE_URL", default_value = kiro_layers::cursor::headers::DEFAULT_WEBSITE_URL)]
    pub cursor_website_url: String,

    /// Database of accounts, users, keys, quotas and usage: `sqlite://<file>` (created if
    /// missing), `postgres://user:password@host:port/db`, or `none` for a single-key gateway.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = crate::store::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        overrides_with = "database_url"
    )]
    pub database_url: String,

    /// Key file for encrypting secrets at rest and hashing API keys, used when
    /// `KIRO_GATEWAY_SECRET` is not set (created with 0600 permissions on first start).
    #[arg(
        long = "secret-key-file",
        env = "KIRO_GATEWAY_KEY_FILE",
        default_value = crate::store::DEFAULT_KEY_FILE
    )]
    pub secret_key_file: PathBuf,

    /// Where `rpm_limit` and `max_concurrency` are counted when several processes serve:
    /// `auto` (Redis when REDIS_URL is set, else PostgreSQL when the database is; consulted
    /// only while other processes share the database), `postgres`, `redis` (always), or `off`
    /// (each process counts alone). See docs/deploy.md.
    #[arg(long = "shared-limits", env = "SHARED_LIMITS", default_value = "auto")]
    pub shared_limits: crate::tenancy::shared_limits::Mode,

    /// Connections of each process's pool for the shared rate and concurrency counters on
    /// PostgreSQL (besides the store's; at least 1). Each limited request holds one for one
    /// round trip; requests beyond it wait up to a second for one, then are counted in their
    /// process alone without marking the engine degraded. See docs/deploy.md.
    #[arg(long = "shared-limits-pg-pool", env = "SHARED_LIMITS_PG_POOL", default_value_t = crate::tenancy::shared_limits::DEFAULT_PG_POOL)]
    pub shared_limits_pg_pool: u32,

    /// Redis or Valkey for shared rate and concurrency counters
    /// (`redis://[:password@]host:6379[/db]`); optional.
    #[arg(long = "redis-url", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Largest accepted request body in bytes.
    #[arg(long = "max-body-bytes", env = "MAX_BODY_BYTES", default_value_t = kiro_layers::convert::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds of upstream silence after which a stream ends with an error.
    #[arg(
        long = "streaming-read-timeout",
        env = "STREAMING_READ_TIMEOUT",
        default_value_t = 300
    )]
    pub streaming_read_timeout: u64,

    /// Tool descriptions longer than this move into the system prompt (0 = never).
    #[arg(
        long = "tool-description-max-length",
        env = "TOOL_DESCRIPTION_MAX_LENGTH",
        default_value_t = 10_000
    )]
    pub tool_description_max_length: usize,

    /// Model aliases, `alias=model` separated by commas.
    #[arg(
        long = "model-aliases",
        env = "MODEL_ALIASES",
        default_value = "auto-kiro=auto"
    )]
    pub model_aliases: String,

    /// Send unknown model names to Kiro as they are instead of answering 404.
    #[arg(
        long = "pass-through-unknown-models",
        env = "PASS_THROUGH_UNKNOWN_MODELS",
        default_value_t = false
    )]
    pub pass_through_unknown_models: bool,

    /// Seconds between refreshes of the model catalogs (Kiro's `ListAvailableModels`, Cursor's
    /// `AvailableModels`; a failed Cursor fetch is retried sooner).
    #[arg(
        long = "model-cache-ttl",
        env = "MODEL_CACHE_TTL",
        default_value_t = 3600
    )]
    pub model_cache_ttl: u64,

    /// Reuse upstream connections (set false to close each streaming connection, as kiro-gateway does).
    #[arg(long = "upstream-keep-alive", env = "UPSTREAM_KEEP_ALIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub upstream_keep_alive: bool,

    /// HTTP/2 to Kiro: auto (by TLS ALPN; plain http:// URLs use HTTP/1.1), always (also h2c
    /// with prior knowledge for http:// URLs), never (HTTP/1.1, one connection per answer).
    #[arg(long = "kiro-http2", env = "KIRO_HTTP2", default_value = "auto")]
    pub kiro_http2: kiro_layers::kiro::lanes::Http2Mode,

    /// Answers one HTTP/2 connection to Kiro carries at once before another one opens (at most
    /// what Kiro allows per connection).
    #[arg(
        long = "kiro-http2-streams-per-connection",
        env = "KIRO_HTTP2_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub kiro_http2_streams_per_connection: usize,

    /// Send text deltas that arrive from Kiro in the same network read as one chunk (never waits for more).
    #[arg(long = "merge-ready-deltas", env = "MERGE_READY_DELTAS", default_value_t = true, action = clap::ArgAction::Set)]
    pub merge_ready_deltas: bool,

    /// Ask models for reasoning when the client does not say (off: false, 0, no, disabled, off).
    #[arg(
        long = "fake-reasoning",
        env = "FAKE_REASONING",
        default_value = "true"
    )]
    pub fake_reasoning: String,

    /// Default reasoning budget in tokens.
    #[arg(
        long = "fake-reasoning-max-tokens",
        env = "FAKE_REASONING_MAX_TOKENS",
        default_value_t = 4000
    )]
    pub fake_reasoning_max_tokens: u32,

    /// Upper bound for any reasoning budget a client asks for (0 = none).
    #[arg(
        long = "fake-reasoning-budget-cap",
        env = "FAKE_REASONING_BUDGET_CAP",
        default_value_t = 10_000
    )]
    pub fake_reasoning_budget_cap: u32,

    /// What to do with reasoning: as_reasoning_content, remove, pass, strip_tags.
    #[arg(
        long = "fake-reasoning-handling",
        env = "FAKE_REASONING_HANDLING",
        default_value = "as_reasoning_content"
    )]
    pub fake_reasoning_handling: String,

    /// Capture requests for debugging: off, errors (failed requests only), all, or
    /// trace:<user id or key id>. Secrets are redacted before anything is written.
    #[arg(long = "debug-mode", env = "DEBUG_MODE", default_value = "off")]
    pub debug_mode: String,

    /// Directory of the debug captures.
    #[arg(long = "debug-dir", env = "DEBUG_DIR", default_value = "debug_logs")]
    pub debug_dir: PathBuf,

    /// Largest total size of the debug captures in bytes; the oldest are deleted first.
    #[arg(long = "debug-max-bytes", env = "DEBUG_MAX_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub debug_max_bytes: u64,

    /// Age after which debug captures are deleted (seconds, or with s, m, h, d).
    #[arg(long = "debug-max-age", env = "DEBUG_MAX_AGE", default_value = "7d")]
    pub debug_max_age: String,

    /// Seconds open streams get to finish after SIGTERM / Ctrl-C (then, if the database is
    /// down, as long again for queued usage records to be written).
    #[arg(
        long = "shutdown-timeout",
        env = "SHUTDOWN_TIMEOUT",
        default_value_t = 30
    )]
    pub shutdown_timeout: u64,

    /// File that keeps usage rows when shutdown cannot reach the database; the next start stores them (empty: lose them).
    #[arg(
        long = "usage-spill-file",
        env = "USAGE_SPILL_FILE",
        default_value = "usage-spill.jsonl"
    )]
    pub usage_spill_file: String,

    /// Days a stored Responses answer (`/v1/responses` with `store: true`) is kept for `GET` and `previous_response_id` (needs a database).
    #[arg(
        long = "responses-retention-days",
        env = "RESPONSES_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub responses_retention_days: u32,

    /// Shrink conversations that do not fit the model's context window or the upstream payload
    /// limit (old tool output first, then reasoning and images, then the oldest turns).
    #[arg(long = "context-compression", env = "CONTEXT_COMPRESSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub context_compression: bool,

    /// Tokens of the context window kept free for the answer.
    #[arg(
        long = "context-answer-reserve",
        env = "CONTEXT_ANSWER_RESERVE",
        default_value_t = 8192
    )]
    pub context_answer_reserve: u64,

    /// Most recent messages compression never touches.
    #[arg(
        long = "context-keep-recent-messages",
        env = "CONTEXT_KEEP_RECENT_MESSAGES",
        default_value_t = 6
    )]
    pub context_keep_recent_messages: usize,

    /// Characters kept at each end of an old tool result or tool input that is shortened.
    #[arg(
        long = "context-tool-keep-chars",
        env = "CONTEXT_TOOL_KEEP_CHARS",
        default_value_t = 1000
    )]
    pub context_tool_keep_chars: usize,

    /// Largest Kiro request body in bytes of compact JSON (bigger ones are compressed or refused).
    #[arg(
        long = "kiro-max-payload-bytes",
        env = "KIRO_MAX_PAYLOAD_BYTES",
        default_value_t = 600_000
    )]
    pub kiro_max_payload_bytes: usize,

    /// Seconds to wait for the first event of an upstream attempt before trying again.
    #[arg(
        long = "first-token-timeout",
        env = "FIRST_TOKEN_TIMEOUT",
        default_value_t = 15.0
    )]
    pub first_token_timeout: f64,

    /// Upstream attempts per answer before any output (429, 5xx, transport errors, timeouts).
    #[arg(
        long = "upstream-max-attempts",
        env = "UPSTREAM_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub upstream_max_attempts: u32,

    /// Milliseconds of backoff before the second attempt (doubled each time, with jitter).
    #[arg(
        long = "retry-base-delay-ms",
        env = "RETRY_BASE_DELAY_MS",
        default_value_t = 250
    )]
    pub retry_base_delay_ms: u64,

    /// Continue answers Kiro cut and tell the model about tool calls it cut.
    #[arg(long = "truncation-recovery", env = "TRUNCATION_RECOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub truncation_recovery: bool,

    /// Follow-up requests that continue one cut text answer.
    #[arg(
        long = "max-continuations",
        env = "MAX_CONTINUATIONS",
        default_value_t = 2
    )]
    pub max_continuations: u32,

    /// Seconds a request may wait for an account to free up (resting after a throttle, busy)
    /// before it fails with 429/503 and `Retry-After`; also the budget for retrying throttled
    /// attempts.
    #[arg(
        long = "pool-queue-timeout",
        env = "POOL_QUEUE_TIMEOUT",
        default_value_t = 10.0
    )]
    pub pool_queue_timeout: f64,

    /// Chat answers open at once before new ones get a 503 (0 = what the open-file limit
    /// allows after a reserve of 256: two descriptors per answer, one with KIRO_HTTP2=always).
    #[arg(
        long = "max-open-streams",
        env = "MAX_OPEN_STREAMS",
        default_value_t = 0
    )]
    pub max_open_streams: usize,

    /// Bytes a client connection may buffer while reading over HTTP/1.1, which bounds a request's
    /// head (request line and headers; at least 8192). Every open stream keeps this buffer: 8192
    /// keeps it at 8 KiB instead of 16 (0 = hyper's default, about 400 KiB).
    #[arg(
        long = "max-request-head-bytes",
        env = "MAX_REQUEST_HEAD_BYTES",
        default_value_t = 0
    )]
    pub max_request_head_bytes: usize,
}

impl ServeArgs {
    /// How the direct client connects to Kiro (`KIRO_HTTP2*`).
    pub fn direct_options(&self) -> kiro_layers::kiro::lanes::DirectOptions {
        kiro_layers::kiro::lanes::DirectOptions {
            http2: self.kiro_http2,
            streams_per_connection: self.kiro_http2_streams_per_connection,
        }
    }

    /// How many answers share one connection to Kiro, when that is known before connecting
    /// (`KIRO_HTTP2=always`); `None` when each answer may hold its own.
    pub fn shared_upstream_connections(&self) -> Option<usize> {
        (self.kiro_http2 == kiro_layers::kiro::lanes::Http2Mode::Always)
            .then_some(self.kiro_http2_streams_per_connection.max(1))
    }

    /// The socket address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_matches(['[', ']']);
        let ip: std::net::IpAddr = host
            .parse()
            .map_err(|_| format!("SERVER_HOST `{}` is not an IP address", self.host))?;
        Ok(SocketAddr::new(ip, self.port))
    }

    /// `MODEL_ALIASES` as pairs.
    pub fn aliases(&self) -> Result<Vec<(String, String)>, String> {
        self.model_aliases
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| {
                pair.split_once('=')
                    .map(|(a, m)| (a.trim().to_owned(), m.trim().to_owned()))
                    .filter(|(a, m)| !a.is_empty() && !m.is_empty())
                    .ok_or_else(|| format!("MODEL_ALIASES entry `{pair}` is not `alias=model`"))
            })
            .collect()
    }

    /// The reasoning settings.
    pub fn thinking_config(&self) -> Result<kiro_layers::thinking::ThinkingConfig, String> {
        let enabled = !matches!(
            self.fake_reasoning.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "disabled" | "off"
        );
        let handling = self
            .fake_reasoning_handling
            .parse()
            .map_err(|e: kiro_layers::thinking::UnknownThinkingHandling| {
                format!("FAKE_REASONING_HANDLING `{}` is not one of as_reasoning_content, remove, pass, strip_tags", e.0)
            })?;
        Ok(kiro_layers::thinking::ThinkingConfig {
            enabled_by_default: enabled,
            default_budget: self.fake_reasoning_max_tokens,
            budget_cap: self.fake_reasoning_budget_cap,
            handling,
        })
    }

    /// The debug capture settings.
    pub fn debug_settings(&self) -> Result<crate::debug::DebugSettings, String> {
        let mut secrets = vec![self.proxy_api_key.clone()];
        secrets.extend(self.refresh_token.clone());
        secrets.extend(self.admin_api_key.clone());
        Ok(crate::debug::DebugSettings {
            mode: self.debug_mode.parse()?,
            dir: self.debug_dir.clone(),
            max_bytes: self.debug_max_bytes,
            max_age: crate::debug::mode::parse_age(&self.debug_max_age)?,
            secrets,
        })
    }

    /// Context compression settings.
    pub fn compress_config(&self) -> kiro_layers::compress::CompressConfig {
        kiro_layers::compress::CompressConfig {
            enabled: self.context_compression,
            answer_reserve_tokens: self.context_answer_reserve,
            max_payload_bytes: self.kiro_max_payload_bytes,
            keep_recent_messages: self.context_keep_recent_messages,
            keep_chars: self.context_tool_keep_chars.max(1),
            ..kiro_layers::compress::CompressConfig::default()
        }
    }

    /// Retry and truncation recovery settings.
    pub fn recover_config(&self) -> kiro_layers::recover::RecoverConfig {
        let first_token = if self.first_token_timeout.is_finite() && self.first_token_timeout > 0.0
        {
            Duration::from_secs_f64(self.first_token_timeout.min(86_400.0))
        } else {
            Duration::from_secs(15)
        };
        kiro_layers::recover::RecoverConfig {
            max_attempts: self.upstream_max_attempts.max(1),
            first_token_timeout: first_token,
            base_backoff: Duration::from_millis(self.retry_base_delay_ms),
            max_continuations: self.max_continuations,
            truncation_recovery: self.truncation_recovery,
            throttle_budget: self.queue_timeout(),
            ..kiro_layers::recover::RecoverConfig::default()
        }
    }

    /// `POOL_QUEUE_TIMEOUT` as a duration (0 = never wait).
    pub fn queue_timeout(&self) -> Duration {
        if self.pool_queue_timeout.is_finite() && self.pool_queue_timeout > 0.0 {
            Duration::from_secs_f64(self.pool_queue_timeout.min(3_600.0))
        } else {
            Duration::ZERO
        }
    }

    /// How the account pool rests and queues.
    pub fn pool_policy(&self) -> kiro_layers::pool::PoolPolicy {
        kiro_layers::pool::PoolPolicy {
            queue_timeout: self.queue_timeout(),
            ..kiro_layers::pool::PoolPolicy::default()
        }
    }

    /// Upstream silence limit.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.streaming_read_timeout.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_aliases() {
        let cli = Cli::try_parse_from(["kiro-gateway", "serve", "--model-aliases", "a=b, c = d"])
            .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(
            args.aliases().unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        let bad =
            Cli::try_parse_from(["kiro-gateway", "serve", "--model-aliases", "oops"]).unwrap();
        let Command::Serve(args) = bad.command else {
            panic!("serve expected")
        };
        assert!(args.aliases().is_err());
    }
}
