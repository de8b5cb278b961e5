//! The web console at `/console`: server-rendered HTML pages for the three roles of the
//! gateway (admin, agent, user), signed in with a gateway key.
//!
//! - Pages are built in Rust ([`html`]), charts are SVG drawn on the server ([`chart`]), the
//!   stylesheet and the few lines of JavaScript are embedded with `include_str!` ([`assets`]):
//!   nothing is fetched at run time and no build step exists. Every form is a plain `POST`
//!   followed by a redirect, so the console works without JavaScript.
//! - Every URL is built from one configured prefix (`PUBLIC_BASE_PATH`), so the console works
//!   behind a reverse proxy on a sub-path.
//! - Sessions, CSRF and the login rate limit live in [`session`]. The handlers call the same
//!   functions as the `/admin`, `/agent` and `/user` JSON handlers (`crate::tenancy::api`);
//!   the console holds no business rule of its own.
//! - Strings come from one table per language ([`i18n`]): English and Simplified Chinese.

pub mod assets;
pub mod chart;
pub mod form;
pub mod html;
pub mod i18n;
pub mod pages;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use kiro_layers::traits::ModelCatalog;

use crate::tenancy::state::Tenancy;

/// What the console needs besides the tenancy state.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// The path prefix a reverse proxy serves the gateway under (`""` or `/kiro`), without a
    /// trailing slash.
    pub base_path: String,
    /// The model catalog, for the user's model list.
    pub models: Arc<dyn ModelCatalog>,
    /// Where debug captures are written (admin page).
    pub debug_dir: PathBuf,
    /// The sign-in flows (the add-account wizard); `None` hides the wizard.
    pub logins: Option<Arc<crate::login::Logins>>,
    /// Kiro usage limits per account (the accounts page and the overview).
    pub usage_limits: Option<Arc<crate::usage_limits::UsageLimits>>,
}

/// Shared state of the console's handlers.
pub struct ConsoleState {
    /// Store, caches, the business functions' state.
    pub tenancy: Arc<Tenancy>,
    /// See [`ConsoleConfig`].
    pub config: ConsoleConfig,
    /// Failed logins per client.
    pub limiter: session::LoginLimiter,
}

impl ConsoleState {
    /// The console's URL prefix, e.g. `/kiro/console`.
    pub fn root(&self) -> String {
        format!("{}/console", self.config.base_path)
    }
}

/// Shared state handle.
pub type Console = Arc<ConsoleState>;

/// Normalises `PUBLIC_BASE_PATH`: `""`, `/`, `kiro/`, `/kiro/` become `""`, `""`, `/kiro`,
/// `/kiro`.
pub fn normalise_base_path(text: &str) -> String {
    let trimmed = text.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The console's routes, ready to merge into the gateway's router.
pub fn router(tenancy: Arc<Tenancy>, config: ConsoleConfig) -> Router {
    let state = Arc::new(ConsoleState {
        tenancy,
        config,
        limiter: session::LoginLimiter::default(),
    });
    use pages::{admin, agent, login, user, wizard};
    Router::new()
        .route("/console", get(login::home))
        .route("/console/", get(login::home))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/lang/{lang}", get(login::set_language))
        .route("/console/static/{name}", get(assets::serve))
        // admin
        .route("/console/admin", get(admin::overview))
        .route(
            "/console/admin/accounts",
            get(admin::accounts).post(admin::accounts_post),
        )
        .route("/console/admin/accounts/add", post(admin::account_add))
        .route("/console/admin/accounts/login", post(wizard::start))
        .route(
            "/console/admin/accounts/login/{id}",
            get(wizard::flow).post(wizard::flow_post),
        )
        .route(
            "/console/admin/users",
            get(admin::users).post(admin::user_create),
        )
        .route(
            "/console/admin/users/{id}",
            get(admin::user_detail).post(admin::user_post),
        )
        .route(
            "/console/admin/keys",
            get(admin::keys).post(admin::keys_post),
        )
        .route(
            "/console/admin/agents",
            get(admin::agents).post(admin::agents_post),
        )
        .route(
            "/console/admin/models",
            get(admin::models).post(admin::models_post),
        )
        .route("/console/admin/usage", get(admin::usage))
        .route("/console/admin/usage.csv", get(admin::usage_csv))
        .route("/console/admin/audit", get(admin::audit))
        .route("/console/admin/debug", get(admin::debug))
        .route("/console/admin/debug/{id}", get(admin::debug_one))
        // agent
        .route(
            "/console/agent",
            get(agent::overview).post(agent::user_create),
        )
        .route(
            "/console/agent/users/{id}",
            get(agent::user_detail).post(agent::user_post),
        )
        .route("/console/agent/transfers", get(agent::transfers))
        // user
        .route("/console/user", get(user::overview))
        .route("/console/user/keys", get(user::keys).post(user::keys_post))
        .route("/console/user/models", get(user::models))
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .with_state(state)
}
