//! `TokenPoolLayer`: leases one Kiro credential per upstream attempt from a [`TokenSource`] and
//! hands it to the Kiro service through a [`LeaseSlot`]. The lease travels inside the response
//! stream and goes back to the pool when the last event was read or the client went away.
//!
//! [`RoundRobinPool`] is the in-memory source for a fixed set of accounts: strict round robin over
//! the accounts that are not resting (the turn shared with other processes through a
//! [`SharedTurn`] when there are any), a cooldown after a 429 (honouring `Retry-After`), rest
//! after a 402 or a refused refresh, and an in-flight count per account.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::resolve::resolved_model;
use crate::traits::{AccountHandle, AttemptOutcome, Credential, Lease, LeaseSlot, TokenSource};

/// Message for a gateway that has no account at all.
pub const NO_ACCOUNT_HELP: &str = "No Kiro account is configured. Set REFRESH_TOKEN, KIRO_CREDS_FILE or KIRO_CLI_DB_FILE (see the README), restart the gateway, or run `kiro-gateway serve --demo` to try it against the built-in fake upstream.";

/// Builds [`TokenPool`].
#[derive(Clone)]
pub struct TokenPoolLayer {
    source: Arc<dyn TokenSource>,
}

impl TokenPoolLayer {
    /// Leases from `source`.
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        TokenPoolLayer { source }
    }
}

impl<S> Layer<S> for TokenPoolLayer {
    type Service = TokenPool<S>;
    fn layer(&self, inner: S) -> TokenPool<S> {
        TokenPool {
            inner,
            source: Arc::clone(&self.source),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct TokenPool<S> {
    inner: S,
    source: Arc<dyn TokenSource>,
}

impl<S, T> Service<Request<ChatRequest>> for TokenPool<S>
where
    S: Service<Request<ChatRequest>, Response = Response<T>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    T: Send + 'static,
{
    type Response = Response<T>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<T>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let source = Arc::clone(&self.source);
        // The ready inner service is taken for this call; a fresh clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let model_id = resolved_model(&request)?.kiro_id.clone();
            // A lease may wait on a token refresh: that is time spent waiting on Kiro.
            let waiting = std::time::Instant::now();
            let lease = match source.acquire(&model_id).await {
                Ok(lease) => Ok(lease),
                Err(error) => {
                    // A combo model falls back to its next member with capacity.
                    let fallbacks = request
                        .extensions_mut()
                        .remove::<crate::traits::ModelFallbacks>()
                        .unwrap_or_default();
                    let mut found = None;
                    for member in fallbacks.0 {
                        if let Ok(lease) = source.acquire(&member.kiro_id).await {
                            request.extensions_mut().insert(member);
                            found = Some(lease);
                            break;
                        }
                    }
                    found.ok_or(error)
                }
            };
            if let Some(timings) = request.extensions().get::<crate::metrics::Timings>() {
                timings.add_upstream_wait(waiting.elapsed());
            }
            let lease = lease?;
            request.extensions_mut().insert(LeaseSlot::new(lease));
            inner.call(request).await
        })
    }
}

/// One account of a [`RoundRobinPool`]: where its credential comes from.
pub trait CredentialProvider: Send + Sync + 'static {
    /// Stable account id.
    fn account_id(&self) -> &str;
    /// A usable credential, refreshed first if it is about to expire.
    fn current(&self) -> BoxFuture<'_, Result<Credential, GatewayError>>;
    /// Refreshes now (after an upstream 403).
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>>;
}

impl CredentialProvider for crate::kiro::auth::RefreshingCredential {
    fn account_id(&self) -> &str {
        crate::kiro::auth::RefreshingCredential::account_id(self)
    }
    fn current(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        Box::pin(crate::kiro::auth::RefreshingCredential::current(self))
    }
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        Box::pin(crate::kiro::auth::RefreshingCredential::force_refresh(self))
    }
}

/// Health and load of one account, for logs, metrics and the admin view.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountStatus {
    /// Account id.
    pub account_id: String,
    /// Leases currently out.
    pub in_flight: usize,
    /// Time left resting, if resting.
    pub resting_for: Option<Duration>,
    /// Disabled for good (dead refresh token), with the reason.
    pub disabled: Option<String>,
    /// Leases handed out so far.
    pub leases: u64,
}

struct Account {
    provider: Arc<dyn CredentialProvider>,
    in_flight: AtomicUsize,
    leases: AtomicU64,
    rest_until: Mutex<Option<Instant>>,
    /// The current rest comes from upstream throttling (429), not from a failure.
    throttled: std::sync::atomic::AtomicBool,
    disabled: Mutex<Option<String>>,
}

impl Account {
    fn resting_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.rest_until.lock().ok()?)?;
        (until > now).then(|| until - now)
    }

    fn rest(&self, period: Duration, throttled: bool) {
        if let Ok(mut until) = self.rest_until.lock() {
            let candidate = Instant::now() + period;
            if until.is_none_or(|u| u < candidate) {
                *until = Some(candidate);
                self.throttled.store(throttled, Ordering::Relaxed);
            }
        }
    }

    fn is_disabled(&self) -> bool {
        self.disabled.lock().map(|d| d.is_some()).unwrap_or(false)
    }
}

/// How long accounts rest after upstream trouble.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    /// Rest after a 429 without `Retry-After`.
    pub throttle_cooldown: Duration,
    /// Rest after a 402 / monthly quota.
    pub quota_cooldown: Duration,
    /// Rest after a 403 that a refresh did not fix, or a transport failure.
    pub failure_cooldown: Duration,
    /// Leases one account may have out at once (0 = unlimited).
    pub max_concurrency_per_account: usize,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            throttle_cooldown: Duration::from_secs(10),
            quota_cooldown: Duration::from_secs(3600),
            failure_cooldown: Duration::from_secs(30),
            max_concurrency_per_account: 0,
        }
    }
}

/// Told about every reported attempt outcome (after the pool applied it), e.g. to share
/// cooldowns with other processes through a database. Must not block.
pub trait PoolObserver: Send + Sync + 'static {
    /// `account_id` had `outcome`; `resting_for` is its rest after applying it.
    fn outcome(&self, account_id: &str, outcome: &AttemptOutcome, resting_for: Option<Duration>);
}

/// A round-robin turn counter shared with other gateway processes over the same accounts (the
/// application keeps it in its database). The pool asks it only while [`is_shared`] says other
/// processes are present, so a process on its own never waits for it, and falls back to its
/// own counter when it fails.
///
/// [`is_shared`]: SharedTurn::is_shared
pub trait SharedTurn: Send + Sync + 'static {
    /// True while other processes take turns from the same counter. Must not block.
    fn is_shared(&self) -> bool;
    /// The next turn (strictly increasing across all processes).
    fn next_turn(&self) -> BoxFuture<'_, Result<u64, GatewayError>>;
}

/// In-memory round-robin [`TokenSource`] over a fixed list of accounts.
#[derive(Clone)]
pub struct RoundRobinPool {
    accounts: Arc<Vec<Arc<Account>>>,
    next: Arc<AtomicUsize>,
    policy: Arc<PoolPolicy>,
    observer: Option<Arc<dyn PoolObserver>>,
    shared_turn: Option<Arc<dyn SharedTurn>>,
}

impl RoundRobinPool {
    /// A pool over `providers`, in order.
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>, policy: PoolPolicy) -> Self {
        let accounts = providers
            .into_iter()
            .map(|provider| {
                Arc::new(Account {
                    provider,
                    in_flight: AtomicUsize::new(0),
                    leases: AtomicU64::new(0),
                    rest_until: Mutex::new(None),
                    throttled: std::sync::atomic::AtomicBool::new(false),
                    disabled: Mutex::new(None),
                })
            })
            .collect();
        RoundRobinPool {
            accounts: Arc::new(accounts),
            next: Arc::new(AtomicUsize::new(0)),
            policy: Arc::new(policy),
            observer: None,
            shared_turn: None,
        }
    }

    /// Reports every outcome to `observer` too.
    pub fn with_observer(mut self, observer: Arc<dyn PoolObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Takes turns from `turn` while other processes share it.
    pub fn with_shared_turn(mut self, turn: Arc<dyn SharedTurn>) -> Self {
        self.shared_turn = Some(turn);
        self
    }

    /// Continues the round robin from `next` (a pool rebuilt after a change keeps its turn).
    pub fn with_turn(self, next: Arc<AtomicUsize>) -> Self {
        RoundRobinPool { next, ..self }
    }

    /// The round-robin turn counter.
    pub fn turn(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.next)
    }

    fn find(&self, account_id: &str) -> Option<&Arc<Account>> {
        self.accounts
            .iter()
            .find(|a| a.provider.account_id() == account_id)
    }

    /// Rests `account_id` for `period` (a cooldown learnt from another process); `throttled`
    /// marks an upstream 429. Returns false for an unknown account.
    pub fn rest_account(&self, account_id: &str, period: Duration, throttled: bool) -> bool {
        self.find(account_id)
            .map(|a| a.rest(period, throttled))
            .is_some()
    }

    /// Disables `account_id` with `reason`. Returns false for an unknown account.
    pub fn disable_account(&self, account_id: &str, reason: &str) -> bool {
        self.find(account_id)
            .and_then(|a| {
                a.disabled
                    .lock()
                    .ok()
                    .map(|mut d| *d = Some(reason.to_owned()))
            })
            .is_some()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when no account is configured.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Per-account health and load.
    pub fn status(&self) -> Vec<AccountStatus> {
        let now = Instant::now();
        self.accounts
            .iter()
            .map(|a| AccountStatus {
                account_id: a.provider.account_id().to_owned(),
                in_flight: a.in_flight.load(Ordering::Relaxed),
                resting_for: a.resting_for(now),
                disabled: a.disabled.lock().ok().and_then(|d| d.clone()),
                leases: a.leases.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Total leases currently out (0 when idle: a leaked lease shows here).
    pub fn in_flight(&self) -> usize {
        self.accounts
            .iter()
            .map(|a| a.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// The next turn: the shared one while other processes take turns too, else this
    /// process's own.
    async fn next_turn(&self) -> usize {
        if let Some(shared) = self.shared_turn.as_ref().filter(|s| s.is_shared()) {
            match shared.next_turn().await {
                Ok(turn) => return turn as usize,
                Err(error) => tracing::warn!(
                    "the shared round-robin turn is unavailable ({}); using this process's own",
                    error.message()
                ),
            }
        }
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Picks the usable account at turn `start` or the first after it, skipping resting,
    /// disabled and full ones.
    fn pick(&self, start: usize) -> Result<Arc<Account>, GatewayError> {
        if self.accounts.is_empty() {
            return Err(GatewayError::no_account(NO_ACCOUNT_HELP));
        }
        let now = Instant::now();
        let count = self.accounts.len();
        let mut soonest: Option<Duration> = None;
        let mut all_throttled = true;
        for offset in 0..count {
            let account = &self.accounts[start.wrapping_add(offset) % count];
            if account.is_disabled() {
                all_throttled = false;
                continue;
            }
            if let Some(left) = account.resting_for(now) {
                soonest = Some(soonest.map_or(left, |s| s.min(left)));
                all_throttled &= account.throttled.load(Ordering::Relaxed);
                continue;
            }
            let cap = self.policy.max_concurrency_per_account;
            if cap > 0 && account.in_flight.load(Ordering::Relaxed) >= cap {
                soonest =
                    Some(soonest.map_or(Duration::from_secs(1), |s| s.min(Duration::from_secs(1))));
                continue;
            }
            return Ok(Arc::clone(account));
        }
        // Throttling everywhere is the client's cue to slow down (429); anything else means the
        // gateway has no usable account right now (503).
        let error = if all_throttled && soonest.is_some() {
            GatewayError::rate_limited(
                "Kiro is throttling every account of this gateway; retry after the Retry-After delay.",
            )
        } else {
            GatewayError::no_account(
                "Every Kiro account is resting (throttled, out of quota or failing) or disabled; try again shortly.",
            )
        };
        Err(match soonest {
            Some(after) => error.with_retry_after(after),
            None => error,
        })
    }
}

impl TokenSource for RoundRobinPool {
    fn acquire<'a>(
        &'a self,
        _kiro_model_id: &'a str,
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        Box::pin(async move {
            let mut last_error = None;
            // Each account gets one chance per request: a refresh failure moves on to the next.
            for _ in 0..self.accounts.len().max(1) {
                let turn = self.next_turn().await;
                let account = self.pick(turn)?;
                account.in_flight.fetch_add(1, Ordering::Relaxed);
                let handle = Arc::new(PoolHandle {
                    account: Arc::clone(&account),
                    policy: Arc::clone(&self.policy),
                    released: std::sync::atomic::AtomicBool::new(false),
                    observer: self.observer.clone(),
                });
                match account.provider.current().await {
                    Ok(credential) => {
                        account.leases.fetch_add(1, Ordering::Relaxed);
                        return Ok(Lease::new(credential, handle));
                    }
                    Err(error) => {
                        handle.release();
                        tracing::warn!(
                            account = account.provider.account_id(),
                            "credential unavailable: {}",
                            error.message()
                        );
                        if error.upstream_reason() == Some("invalid_grant") {
                            handle.report(AttemptOutcome::InvalidGrant {
                                reason: error.message().to_owned(),
                            });
                        } else {
                            account.rest(self.policy.failure_cooldown, false);
                        }
                        last_error = Some(error);
                    }
                }
            }
            Err(last_error.unwrap_or_else(|| GatewayError::no_account(NO_ACCOUNT_HELP)))
        })
    }
}

struct PoolHandle {
    account: Arc<Account>,
    policy: Arc<PoolPolicy>,
    released: std::sync::atomic::AtomicBool,
    observer: Option<Arc<dyn PoolObserver>>,
}

impl AccountHandle for PoolHandle {
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        self.account.provider.force_refresh()
    }

    fn report(&self, outcome: AttemptOutcome) {
        let id = self.account.provider.account_id();
        let observed = self.observer.as_ref().map(|o| (o, outcome.clone()));
        match outcome {
            AttemptOutcome::Success => {}
            AttemptOutcome::Throttled { retry_after } => {
                let period = retry_after.unwrap_or(self.policy.throttle_cooldown);
                tracing::info!(
                    account = id,
                    seconds = period.as_secs(),
                    "account throttled; resting"
                );
                self.account.rest(period, true);
            }
            AttemptOutcome::QuotaExhausted => {
                tracing::warn!(account = id, "account out of quota; resting");
                self.account.rest(self.policy.quota_cooldown, false);
            }
            AttemptOutcome::Forbidden | AttemptOutcome::TransportError => {
                self.account.rest(self.policy.failure_cooldown, false);
            }
            AttemptOutcome::InvalidGrant { reason } => {
                tracing::error!(account = id, "account disabled: {reason}");
                if let Ok(mut disabled) = self.account.disabled.lock() {
                    *disabled = Some(reason);
                }
            }
        }
        if let Some((observer, outcome)) = observed {
            observer.outcome(id, &outcome, self.account.resting_for(Instant::now()));
        }
    }

    fn release(&self) {
        // Exactly once, however often the lease machinery calls it.
        if !self.released.swap(true, Ordering::AcqRel) {
            self.account.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(String);

    impl CredentialProvider for Fixed {
        fn account_id(&self) -> &str {
            &self.0
        }
        fn current(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            let credential = Credential {
                account_id: self.0.clone(),
                access_token: format!("token-{}", self.0),
                profile_arn: None,
                api_base: "http://127.0.0.1:1".into(),
                fingerprint: "f".into(),
                external_idp: false,
            };
            Box::pin(async move { Ok(credential) })
        }
        fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            self.current()
        }
    }

    fn pool(n: usize) -> RoundRobinPool {
        let providers = (0..n)
            .map(|i| Arc::new(Fixed(format!("a{i}"))) as Arc<dyn CredentialProvider>)
            .collect();
        RoundRobinPool::new(providers, PoolPolicy::default())
    }

    #[tokio::test]
    async fn strict_round_robin_and_release_on_drop() {
        let pool = pool(3);
        let mut seen = Vec::new();
        for _ in 0..6 {
            let lease = pool.acquire("auto").await.unwrap();
            seen.push(lease.credential.account_id.clone());
        }
        assert_eq!(seen, ["a0", "a1", "a2", "a0", "a1", "a2"]);
        let held = pool.acquire("auto").await.unwrap();
        assert_eq!(pool.in_flight(), 1);
        drop(held);
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test]
    async fn throttled_accounts_rest_and_are_skipped() {
        let pool = pool(2);
        let lease = pool.acquire("auto").await.unwrap();
        assert_eq!(lease.credential.account_id, "a0");
        lease.report(AttemptOutcome::Throttled {
            retry_after: Some(Duration::from_secs(60)),
        });
        drop(lease);
        for _ in 0..3 {
            assert_eq!(
                pool.acquire("auto").await.unwrap().credential.account_id,
                "a1"
            );
        }
        let resting = &pool.status()[0];
        assert!(resting.resting_for.unwrap() > Duration::from_secs(50));
    }

    #[tokio::test]
    async fn all_throttled_is_a_429_with_retry_after() {
        let pool = pool(1);
        let lease = pool.acquire("auto").await.unwrap();
        lease.report(AttemptOutcome::Throttled {
            retry_after: Some(Duration::from_secs(5)),
        });
        drop(lease);
        let err = pool.acquire("auto").await.unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(err.retry_after().is_some());
    }

    #[tokio::test]
    async fn all_out_of_quota_is_a_503() {
        let pool = pool(1);
        let lease = pool.acquire("auto").await.unwrap();
        lease.report(AttemptOutcome::QuotaExhausted);
        drop(lease);
        let err = pool.acquire("auto").await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.retry_after().is_some());
    }

    #[tokio::test]
    async fn no_accounts_explains_how_to_add_one() {
        let err = pool(0).acquire("auto").await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.message().contains("REFRESH_TOKEN"));
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, AttemptOutcome, Option<Duration>)>>);
    impl PoolObserver for Seen {
        fn outcome(&self, id: &str, outcome: &AttemptOutcome, resting: Option<Duration>) {
            self.0
                .lock()
                .unwrap()
                .push((id.to_owned(), outcome.clone(), resting));
        }
    }

    #[tokio::test]
    async fn observer_sees_outcomes_and_shared_rests_apply() {
        let seen = Arc::new(Seen::default());
        let pool = pool(2).with_observer(seen.clone());
        let lease = pool.acquire("auto").await.unwrap();
        lease.report(AttemptOutcome::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        });
        drop(lease);
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "a0");
        assert!(seen[0].2.unwrap() > Duration::from_secs(20));
        // A rest learnt from elsewhere: a1 rests too, so everything is throttled.
        assert!(pool.rest_account("a1", Duration::from_secs(30), true));
        assert!(!pool.rest_account("nope", Duration::from_secs(30), true));
        assert_eq!(pool.acquire("auto").await.unwrap_err().status(), 429);
        let other = self::pool(2);
        assert!(other.disable_account("a0", "revoked"));
        assert_eq!(
            other.acquire("auto").await.unwrap().credential.account_id,
            "a1"
        );
        assert_eq!(
            other.acquire("auto").await.unwrap().credential.account_id,
            "a1"
        );
    }

    /// Grants leases only for `claude-haiku-4.5`.
    struct HaikuOnly(RoundRobinPool);
    impl TokenSource for HaikuOnly {
        fn acquire<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<Lease, GatewayError>> {
            if model == "claude-haiku-4.5" {
                self.0.acquire(model)
            } else {
                Box::pin(async { Err(GatewayError::no_account("busy")) })
            }
        }
    }

    #[tokio::test]
    async fn combo_models_fall_back_to_the_next_member_with_capacity() {
        use crate::chat::Dialect;
        use crate::traits::{ModelFallbacks, ResolvedModel};
        use tower::{service_fn, ServiceExt};
        let model = |id: &str| ResolvedModel {
            requested: "team".into(),
            kiro_id: id.into(),
            context_window: 1,
            max_output_tokens: 1,
        };
        let inner = service_fn(|req: Request<ChatRequest>| async move {
            let served = resolved_model(&req)?.kiro_id.clone();
            Ok::<_, GatewayError>(Response::new(served))
        });
        let layer = TokenPoolLayer::new(Arc::new(HaikuOnly(pool(1))));
        let mut request = Request::new(ChatRequest::user_text(Dialect::OpenAi, "team", "hi"));
        request.extensions_mut().insert(model("claude-sonnet-4.5"));
        request
            .extensions_mut()
            .insert(ModelFallbacks(vec![model("claude-haiku-4.5")]));
        let served = layer.layer(inner).oneshot(request).await.unwrap();
        assert_eq!(served.into_body(), "claude-haiku-4.5");
        // Without fallbacks the first refusal stands.
        let mut request = Request::new(ChatRequest::user_text(Dialect::OpenAi, "x", "hi"));
        request.extensions_mut().insert(model("claude-sonnet-4.5"));
        let layer = TokenPoolLayer::new(Arc::new(HaikuOnly(pool(1))));
        let inner = service_fn(|_req: Request<ChatRequest>| async move {
            Ok::<_, GatewayError>(Response::new(String::new()))
        });
        assert_eq!(
            layer
                .layer(inner)
                .oneshot(request)
                .await
                .unwrap_err()
                .status(),
            503
        );
    }

    #[tokio::test]
    async fn invalid_grant_disables_the_account() {
        let pool = pool(2);
        let lease = pool.acquire("auto").await.unwrap();
        lease.report(AttemptOutcome::InvalidGrant {
            reason: "refresh token revoked".into(),
        });
        drop(lease);
        for _ in 0..4 {
            assert_eq!(
                pool.acquire("auto").await.unwrap().credential.account_id,
                "a1"
            );
        }
        assert_eq!(
            pool.status()[0].disabled.as_deref(),
            Some("refresh token revoked")
        );
    }
}
