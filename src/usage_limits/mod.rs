//! Kiro usage limits per account: the gateway asks Kiro's `getUsageLimits` for an account's
//! used credits, limit, reset date, subscription and e-mail, on demand (the console's "refresh
//! usage" button, `POST /admin/accounts/{id}/usage-limits`) and, when
//! `USAGE_LIMITS_EVERY_MINUTES` is set, for every enabled Kiro account periodically. Each
//! answer is reduced to a [`LimitSnapshot`] and stored, so the accounts page and the overview
//! ("accounts near their limits") read the database, never Kiro.
//!
//! The call, as public Kiro clients make it (not documented by Kiro; the URL and parameters are
//! settings so they can follow Kiro without a release): `GET
//! https://q.{region}.amazonaws.com/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&isEmailRequired=true[&profileArn=...]`
//! with the account's bearer token and the usual Kiro headers; `{region}` is the account's API
//! region.

mod parse;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kiro_layers::store::{AccountStatus, AccountUsageLimits, LimitSnapshot};
use kiro_layers::traits::AccountKind;
use kiro_layers::GatewayError;

use crate::tenancy::state::Tenancy;

pub use parse::snapshot;

/// Longest wait for Kiro's answer.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The settings (`serve`).
#[derive(Debug, Clone, Args)]
pub struct UsageLimitsArgs {
    /// Kiro `getUsageLimits` URL; `{region}` is replaced by the account's API region.
    #[arg(
        long = "kiro-usage-limits-url",
        env = "KIRO_USAGE_LIMITS_URL",
        default_value = "https://q.{region}.amazonaws.com/getUsageLimits"
    )]
    pub url: String,

    /// The query parameters sent to `getUsageLimits` (the account's profileArn is added).
    #[arg(
        long = "kiro-usage-limits-params",
        env = "KIRO_USAGE_LIMITS_PARAMS",
        default_value = "origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&isEmailRequired=true"
    )]
    pub params: String,

    /// Fetch every enabled Kiro account's usage limits this often, in minutes; 0 fetches only
    /// when asked (the console's "refresh usage").
    #[arg(
        long = "usage-limits-every-minutes",
        env = "USAGE_LIMITS_EVERY_MINUTES",
        default_value_t = 0
    )]
    pub every_minutes: u64,

    /// An account is "near its limit" on the overview from this share of its limit used.
    #[arg(
        long = "usage-limits-warn-at",
        env = "USAGE_LIMITS_WARN_AT",
        default_value_t = 0.8
    )]
    pub warn_at: f64,
}

impl UsageLimitsArgs {
    /// Every call at one base (the fake Kiro).
    pub fn point_at(&mut self, base: &str) {
        self.url = format!("{}/getUsageLimits", base.trim_end_matches('/'));
    }
}

/// Fetches and stores usage limits. See the module docs.
pub struct UsageLimits {
    tenancy: Arc<Tenancy>,
    http: reqwest::Client,
    url: String,
    params: String,
    /// See [`UsageLimitsArgs::warn_at`].
    pub warn_at: f64,
}

impl UsageLimits {
    /// A fetcher over the tenancy's store and pool.
    pub fn new(tenancy: Arc<Tenancy>, http: reqwest::Client, args: &UsageLimitsArgs) -> Self {
        UsageLimits {
            tenancy,
            http,
            url: args.url.clone(),
            params: args.params.trim_start_matches('?').to_owned(),
            warn_at: if args.warn_at.is_finite() && args.warn_at > 0.0 {
                args.warn_at
            } else {
                0.8
            },
        }
    }

    /// Asks Kiro for one account's limits and stores the outcome (the snapshot, or why not:
    /// the last good snapshot stays).
    pub async fn refresh(&self, account_id: i64) -> Result<LimitSnapshot, GatewayError> {
        let outcome = self.fetch(account_id).await;
        let stored = match &outcome {
            Ok(snapshot) => Ok(snapshot.clone()),
            Err(e) => Err(e.message().chars().take(300).collect::<String>()),
        };
        // An unknown account has nothing to store; the fetch already said so.
        if let Err(e) = self
            .tenancy
            .store
            .put_usage_limits(account_id, stored, chrono::Utc::now())
            .await
        {
            if outcome.is_ok() {
                return Err(e.into());
            }
        }
        outcome
    }

    /// [`UsageLimits::refresh`] for every enabled Kiro account; how many worked and failed.
    pub async fn refresh_all(&self) -> Result<(usize, usize), GatewayError> {
        let mut counts = (0, 0);
        for account in self.tenancy.store.list_accounts().await? {
            if account.kind != AccountKind::KIRO || account.status != AccountStatus::Active {
                continue;
            }
            match self.refresh(account.id).await {
                Ok(_) => counts.0 += 1,
                Err(e) => {
                    tracing::warn!(account = account.id, "usage limits: {}", e.message());
                    counts.1 += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Every account's stored limits.
    pub async fn stored(&self) -> Result<Vec<AccountUsageLimits>, GatewayError> {
        Ok(self.tenancy.store.list_usage_limits().await?)
    }

    /// Whether a snapshot counts as near its limit.
    pub fn is_near(&self, snapshot: &LimitSnapshot) -> bool {
        snapshot.limit > 0.0 && snapshot.fraction() >= self.warn_at
    }

    async fn fetch(&self, account_id: i64) -> Result<LimitSnapshot, GatewayError> {
        let account = self.tenancy.store.get_account(account_id).await?;
        if account.kind != AccountKind::KIRO {
            return Err(GatewayError::invalid_request(format!(
                "Account {account_id} is not a Kiro account; only Kiro reports usage limits."
            )));
        }
        let credential = self.tenancy.account_credential(account_id).await?;
        let mut url = reqwest::Url::parse(&format!(
            "{}?{}",
            self.url.replace("{region}", &account.api_region),
            self.params
        ))
        .map_err(|e| GatewayError::internal(format!("KIRO_USAGE_LIMITS_URL is not a URL: {e}")))?;
        if let Some(arn) = credential
            .profile_arn
            .as_ref()
            .or(account.profile_arn.as_ref())
        {
            url.query_pairs_mut().append_pair("profileArn", arn);
        }
        let headers = kiro_layers::kiro::headers::kiro_headers(&credential, false, true);
        let response = self
            .http
            .get(url)
            .headers(headers)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                GatewayError::upstream(
                    http::StatusCode::BAD_GATEWAY,
                    format!("getUsageLimits could not be reached: {}", without_url(&e)),
                )
            })?;
        let status = response.status();
        let body = read_capped(response).await?;
        if !status.is_success() {
            let said: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(GatewayError::upstream(
                http::StatusCode::BAD_GATEWAY,
                format!("getUsageLimits answered {}: {said}", status.as_u16()),
            ));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::upstream(
                http::StatusCode::BAD_GATEWAY,
                format!("getUsageLimits answered with something not JSON: {e}"),
            )
        })?;
        snapshot(&answer, chrono::Utc::now()).map_err(|why| {
            GatewayError::upstream(
                http::StatusCode::BAD_GATEWAY,
                format!("getUsageLimits answered unexpectedly: {why}"),
            )
        })
    }

    /// Fetches every enabled Kiro account's limits every `every`, until the returned handle is
    /// aborted (or the runtime ends). The first round runs after one period, not at start-up.
    pub fn spawn_periodic(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.refresh_all().await {
                    Ok((ok, failed)) => tracing::info!(ok, failed, "usage limits refreshed"),
                    Err(e) => tracing::warn!("usage limits: {}", e.message()),
                }
            }
        })
    }
}

/// The error without the URL (it may carry the profile ARN; nothing secret, but noisy).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "getUsageLimits");
    }
    text
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, GatewayError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        GatewayError::upstream(
            http::StatusCode::BAD_GATEWAY,
            format!("getUsageLimits answer broke off: {}", without_url(&e)),
        )
    })? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(GatewayError::upstream(
                http::StatusCode::BAD_GATEWAY,
                "getUsageLimits answered with more than 256 KiB",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
