//! [`RefreshingCredential`]: one Kiro login that hands out a valid [`Credential`], refreshing it
//! when it is about to expire, one refresh at a time, and writing rotated tokens back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use super::job::RefreshJob;
use super::{is_region_name, region_from_profile_arn, CredentialStore, Endpoints, TokenSet};
use crate::error::GatewayError;
use crate::traits::Credential;

/// Refresh when the access token expires within this many seconds (kiro-gateway: 600).
const REFRESH_THRESHOLD_SECS: i64 = 600;
/// After a failed refresh with a still-valid access token, wait this long before trying again,
/// so a broken auth service is not hit once per request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Refresh only if the token is (still) expiring once we hold the gate.
    IfExpiring,
    /// Refresh even if the token looks fresh: the upstream just refused it.
    Force,
}

/// One Kiro login, ready to use behind an `Arc` from many tasks.
///
/// Reads of a fresh token take a short synchronous lock and never wait for a refresh in flight.
/// Refreshes are single-flight: callers that arrive while one runs wait for it and share its
/// result instead of starting their own.
pub struct RefreshingCredential {
    /// The refresh itself, shared with detached refresh tasks.
    job: RefreshJob,
    api_region_override: Option<String>,
    profile_arn_override: Option<String>,
    /// The tokens in use; `None` until first loaded. Never held across an await.
    tokens: RwLock<Option<TokenSet>>,
    /// Held for the whole reload + refresh + write-back.
    refresh_gate: Arc<tokio::sync::Mutex<()>>,
    /// Completed network refresh attempts (success or failure); bumped under the gate.
    attempts: AtomicU64,
    /// What the last attempt produced, shared with the callers that waited for it.
    last_attempt: Mutex<Option<Result<Credential, GatewayError>>>,
    /// No new refresh before this instant while the old access token still works.
    quiet_until: Mutex<Option<Instant>>,
}

impl RefreshingCredential {
    /// Wraps the login kept in `store`.
    ///
    /// `default_region` is used when the store names no SSO region; `api_region_override`
    /// (e.g. `KIRO_API_REGION`) beats every detected API region; `profile_arn_override`
    /// (e.g. `PROFILE_ARN`) beats the stored ARN; `fingerprint` goes into the user agent.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account_id: String,
        store: Arc<dyn CredentialStore>,
        endpoints: Endpoints,
        default_region: String,
        api_region_override: Option<String>,
        profile_arn_override: Option<String>,
        http: reqwest::Client,
        fingerprint: String,
    ) -> Self {
        RefreshingCredential {
            job: RefreshJob {
                account_id,
                store,
                endpoints,
                default_region,
                http,
                fingerprint,
                refreshes: Arc::new(AtomicU64::new(0)),
            },
            api_region_override: api_region_override.filter(|r| !r.trim().is_empty()),
            profile_arn_override: profile_arn_override.filter(|a| !a.trim().is_empty()),
            tokens: RwLock::new(None),
            refresh_gate: Arc::new(tokio::sync::Mutex::new(())),
            attempts: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            quiet_until: Mutex::new(None),
        }
    }

    /// The account id given at construction.
    pub fn account_id(&self) -> &str {
        &self.job.account_id
    }

    /// How many refreshes succeeded so far.
    pub fn refresh_count(&self) -> u64 {
        self.job.refreshes.load(Ordering::Acquire)
    }

    /// Where the credential lives (no secrets).
    pub fn describe_store(&self) -> String {
        self.job.store.describe()
    }

    /// A credential to call Kiro with; refreshes first when the access token expires within
    /// 10 minutes or its expiry is unknown.
    pub async fn current(&self) -> Result<Credential, GatewayError> {
        if let Some(ready) = self.usable_credential() {
            return Ok(ready);
        }
        self.refresh(Mode::IfExpiring).await
    }

    /// Refreshes now (after an upstream 403). Callers that arrive while a refresh is in flight
    /// share its result, so a burst of 403s costs one refresh.
    pub async fn force_refresh(&self) -> Result<Credential, GatewayError> {
        self.refresh(Mode::Force).await
    }

    fn snapshot(&self) -> Option<TokenSet> {
        match self.tokens.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, tokens: TokenSet) {
        match self.tokens.write() {
            Ok(mut guard) => *guard = Some(tokens),
            Err(poisoned) => *poisoned.into_inner() = Some(tokens),
        }
    }

    fn in_quiet_period(&self) -> bool {
        let guard = match self.quiet_until.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.is_some_and(|until| Instant::now() < until)
    }

    fn set_quiet_period(&self, until: Option<Instant>) {
        match self.quiet_until.lock() {
            Ok(mut guard) => *guard = until,
            Err(poisoned) => *poisoned.into_inner() = until,
        }
    }

    /// The fast path: the cached token if it needs no refresh now.
    fn usable_credential(&self) -> Option<Credential> {
        let tokens = self.snapshot()?;
        if is_fresh(&tokens) || (is_unexpired(&tokens) && self.in_quiet_period()) {
            self.credential_from(&tokens)
        } else {
            None
        }
    }

    async fn refresh(&self, mode: Mode) -> Result<Credential, GatewayError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let gate = Arc::clone(&self.refresh_gate).lock_owned().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            // A refresh finished while we waited: its result is ours too.
            let shared = match self.last_attempt.lock() {
                Ok(guard) => guard.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if let Some(result) = shared {
                return result;
            }
        }
        if mode == Mode::IfExpiring {
            if let Some(ready) = self.usable_credential() {
                return Ok(ready);
            }
        }

        let previous = self.snapshot();
        let tokens = self.reload(previous.clone()).await?;
        let store_had_news = previous.as_ref().is_some_and(|old| {
            old.access_token != tokens.access_token && tokens.access_token.is_some()
        });
        // kiro-cli or the IDE may already hold a fresh token: use it rather than refresh.
        if is_fresh(&tokens) && (mode == Mode::IfExpiring || store_had_news) {
            if let Some(ready) = self.credential_from(&tokens) {
                self.install(tokens);
                return Ok(ready);
            }
        }

        let (outcome, _gate) = self.job.run_detached(tokens, gate).await;
        let result = match outcome {
            Ok(refreshed) => {
                self.set_quiet_period(None);
                Ok(refreshed)
            }
            Err(failed) => self.fall_back(failed.tokens, failed.error),
        }
        .and_then(|tokens| {
            let credential = self.credential_from(&tokens).ok_or_else(|| {
                GatewayError::internal(format!(
                    "Kiro account `{}` has no access token after refresh",
                    self.job.account_id
                ))
            });
            self.install(tokens);
            credential
        });

        match self.last_attempt.lock() {
            Ok(mut guard) => *guard = Some(result.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(result.clone()),
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// Re-reads the store; keeps what we hold when the store is unreadable or older.
    async fn reload(&self, previous: Option<TokenSet>) -> Result<TokenSet, GatewayError> {
        match (self.job.store.load().await, previous) {
            (Ok(loaded), Some(held)) => {
                // A read-only store still holds the token we rotated away from: ours is newer.
                let held_is_newer = match (held.expires_at, loaded.expires_at) {
                    (Some(ours), Some(theirs)) => ours > theirs,
                    (Some(_), None) => true,
                    _ => false,
                };
                Ok(if held_is_newer { held } else { loaded })
            }
            (Ok(loaded), None) => Ok(loaded),
            (Err(err), Some(held)) => {
                tracing::warn!(
                    account = %self.job.account_id,
                    store = %self.job.store.describe(),
                    error = %err.message(),
                    "could not reload credentials; using the ones in memory"
                );
                Ok(held)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// A failed refresh is survivable while the old access token has not expired yet.
    fn fall_back(&self, tokens: TokenSet, error: GatewayError) -> Result<TokenSet, GatewayError> {
        if is_unexpired(&tokens) && tokens.access_token.is_some() {
            tracing::warn!(
                account = %self.job.account_id,
                error = %error.message(),
                "token refresh failed; the current access token is still valid and stays in use"
            );
            self.set_quiet_period(Some(Instant::now() + RETRY_AFTER_FAILURE));
            Ok(tokens)
        } else {
            tracing::warn!(account = %self.job.account_id, error = %error.message(), "token refresh failed");
            Err(error)
        }
    }

    fn credential_from(&self, tokens: &TokenSet) -> Option<Credential> {
        let access_token = tokens.access_token.clone()?;
        let profile_arn = self
            .profile_arn_override
            .clone()
            .or_else(|| tokens.profile_arn.clone());
        Some(Credential {
            account_id: self.job.account_id.clone(),
            access_token,
            api_base: self
                .job
                .endpoints
                .api_base(&self.api_region(tokens, profile_arn.as_deref())),
            profile_arn,
            fingerprint: self.job.fingerprint.clone(),
            external_idp: false,
            kind: crate::traits::AccountKind::KIRO,
            client_key: None,
        })
    }

    /// API region: override > the store's own > profile ARN region > SSO region > default.
    /// The SSO region only picks the refresh URL otherwise: an eu-west-1 Identity Center login
    /// still talks to the API in the ARN's region.
    fn api_region(&self, tokens: &TokenSet, profile_arn: Option<&str>) -> String {
        valid(self.api_region_override.as_deref())
            .or_else(|| valid(tokens.api_region.as_deref()))
            .or_else(|| profile_arn.and_then(region_from_profile_arn))
            .or_else(|| valid(tokens.sso_region.as_deref()))
            .unwrap_or(&self.job.default_region)
            .to_string()
    }
}

fn valid(region: Option<&str>) -> Option<&str> {
    region.filter(|r| is_region_name(r))
}

impl std::fmt::Debug for RefreshingCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingCredential")
            .field("account_id", &self.job.account_id)
            .field("store", &self.job.store.describe())
            .field("refreshes", &self.refresh_count())
            .finish_non_exhaustive()
    }
}

/// Needs no refresh: expires more than the threshold from now.
fn is_fresh(tokens: &TokenSet) -> bool {
    tokens.access_token.is_some()
        && tokens
            .expires_at
            .is_some_and(|at| at > Utc::now() + TimeDelta::seconds(REFRESH_THRESHOLD_SECS))
}

/// Still accepted by Kiro (not expired yet).
fn is_unexpired(tokens: &TokenSet) -> bool {
    tokens.access_token.is_some() && tokens.expires_at.is_some_and(|at| at > Utc::now())
}
