//! `TokenPoolLayer`: leases one Kiro credential per upstream attempt from a [`TokenSource`] and
//! hands it to the Kiro service through a [`LeaseSlot`]. The lease travels inside the response
//! stream and goes back to the pool when the last event was read or the client went away.
//!
//! [`RoundRobinPool`] is the in-memory source for a fixed set of accounts: strict round robin over
//! the accounts that are not resting (the turn shared with other processes through a
//! [`SharedTurn`] when there are any), a short rest after a 429 that grows with consecutive
//! throttles and honours `Retry-After` ([`throttle`]), rest after a 402 or a refused refresh, a
//! circuit breaker per account that admits exactly one probe when its rest ends ([`breaker`]),
//! an in-flight count per account, and a fair line of requests waiting, up to
//! `POOL_QUEUE_TIMEOUT`, for an account to free up ([`queue`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::resolve::resolved_model;
use crate::store::BreakerState;
use crate::traits::{
    AccountHandle, AccountKind, AttemptOutcome, Credential, Lease, LeaseSlot, ResolvedModel,
    TokenSource,
};

pub mod breaker;
pub mod queue;
pub mod throttle;

use breaker::{Admission, Breaker};
use queue::{Blocked, Miss, WaitLine};
use throttle::ThrottleRest;

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
            let model = resolved_model(&request)?.clone();
            let clock = request.extensions().get::<queue::LeaseClock>().cloned();
            if let Some(clock) = &clock {
                clock.asking();
            }
            // A lease may wait on a token refresh: that is time spent waiting on Kiro.
            let waiting = std::time::Instant::now();
            let lease = match source.acquire_for(&model).await {
                Ok(lease) => Ok(lease),
                Err(error) => {
                    // A combo model falls back to its next member with capacity.
                    let fallbacks = request
                        .extensions_mut()
                        .remove::<crate::traits::ModelFallbacks>()
                        .unwrap_or_default();
                    let mut found = None;
                    for member in fallbacks.0 {
                        if let Ok(lease) = source.acquire_for(&member).await {
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
            if let Some(clock) = &clock {
                clock.done();
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
    /// The upstream this account belongs to.
    fn kind(&self) -> AccountKind {
        AccountKind::KIRO
    }
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
    /// The current rest comes from upstream throttling (429).
    pub throttled: bool,
    /// Disabled for good (dead refresh token), with the reason.
    pub disabled: Option<String>,
    /// Leases handed out so far.
    pub leases: u64,
    /// Circuit breaker position (see [`PoolPolicy::breaker_threshold`]).
    pub breaker: BreakerState,
    /// Consecutive failed attempts.
    pub consecutive_failures: u32,
}

struct Account {
    provider: Arc<dyn CredentialProvider>,
    in_flight: AtomicUsize,
    leases: AtomicU64,
    rest_until: Mutex<Option<Instant>>,
    /// The current rest comes from upstream throttling (429), not from a failure.
    throttled: std::sync::atomic::AtomicBool,
    disabled: Mutex<Option<String>>,
    /// Locked before `rest_until` wherever both are taken, so that a rest and the breaker
    /// position change together for [`Account::admit`].
    breaker: Mutex<Breaker>,
    /// Locked after `breaker`.
    throttle: Mutex<ThrottleRest>,
}

/// Why [`Account::admit`] turned a request away.
enum Refusal {
    Resting(Duration),
    ProbeOut,
}

impl Account {
    fn new(provider: Arc<dyn CredentialProvider>) -> Self {
        Account {
            provider,
            in_flight: AtomicUsize::new(0),
            leases: AtomicU64::new(0),
            rest_until: Mutex::new(None),
            throttled: std::sync::atomic::AtomicBool::new(false),
            disabled: Mutex::new(None),
            breaker: Mutex::new(Breaker::default()),
            throttle: Mutex::new(ThrottleRest::default()),
        }
    }

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

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker holds plain data: a panic elsewhere cannot leave it half-written.
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a request use the account unless it rests or its breaker's probe is out; the rest
    /// is checked again under the breaker lock, so a failure that reopens the breaker and its
    /// new rest are seen together.
    fn admit(&self, now: Instant) -> Result<Admission, Refusal> {
        let mut breaker = self.breaker();
        if let Some(left) = self.resting_for(now) {
            return Err(Refusal::Resting(left));
        }
        match breaker.admit() {
            Admission::ProbeOut => Err(Refusal::ProbeOut),
            admitted => Ok(admitted),
        }
    }
}

/// How long accounts rest after upstream trouble.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    /// Rest after the first 429 of a run (doubled for each consecutive one, see [`throttle`]).
    pub throttle_cooldown: Duration,
    /// Rest after a 402 / monthly quota.
    pub quota_cooldown: Duration,
    /// Rest after a 403 that a refresh did not fix or a refused refresh, and the first open
    /// period of the circuit breaker.
    pub failure_cooldown: Duration,
    /// Consecutive failed attempts (403 after a refresh, 5xx, transport error) that open an
    /// account's circuit breaker (0 = no breaker). A 5xx or transport error alone does not
    /// rest the account: the retry after the recover layer's backoff may use it again (it may
    /// be the only account), and the breaker takes it out once failures persist.
    pub breaker_threshold: u32,
    /// Leases one account may have out at once (0 = unlimited).
    pub max_concurrency_per_account: usize,
    /// Longest wait in line for an account to free up (`POOL_QUEUE_TIMEOUT`, see [`queue`]).
    pub queue_timeout: Duration,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            throttle_cooldown: Duration::from_secs(1),
            quota_cooldown: Duration::from_secs(3600),
            failure_cooldown: Duration::from_secs(30),
            breaker_threshold: 3,
            max_concurrency_per_account: 0,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Told about every reported attempt outcome (after the pool applied it), e.g. to share
/// cooldowns with other processes through a database. Must not block.
pub trait PoolObserver: Send + Sync + 'static {
    /// An attempt on `account.account_id` had `outcome`; `account` is its state after
    /// applying it.
    fn outcome(&self, outcome: &AttemptOutcome, account: &AccountStatus);
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
    line: Arc<WaitLine>,
}

impl RoundRobinPool {
    /// A pool over `providers`, in order.
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>, policy: PoolPolicy) -> Self {
        let accounts = providers
            .into_iter()
            .map(|provider| Arc::new(Account::new(provider)))
            .collect();
        RoundRobinPool {
            accounts: Arc::new(accounts),
            next: Arc::new(AtomicUsize::new(0)),
            policy: Arc::new(policy),
            observer: None,
            shared_turn: None,
            line: Arc::default(),
        }
    }

    /// The same pool over a changed list of accounts: the turn, observer and shared turn stay,
    /// and so does the live state (leases out, rest, breaker, probe) of every account whose
    /// provider is the same object as before.
    pub fn rebuilt(&self, providers: Vec<Arc<dyn CredentialProvider>>, policy: PoolPolicy) -> Self {
        let same = |a: &Arc<dyn CredentialProvider>, b: &Arc<dyn CredentialProvider>| {
            std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
        };
        let accounts = providers
            .into_iter()
            .map(|provider| {
                self.accounts
                    .iter()
                    .find(|a| same(&a.provider, &provider))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Account::new(provider)))
            })
            .collect();
        RoundRobinPool {
            accounts: Arc::new(accounts),
            policy: Arc::new(policy),
            ..self.clone()
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

    fn find(&self, account_id: &str) -> Option<&Arc<Account>> {
        self.accounts
            .iter()
            .find(|a| a.provider.account_id() == account_id)
    }

    /// Rests `account_id` for `period` (a cooldown learnt from another process); `throttled`
    /// marks an upstream 429. Returns false for an unknown account.
    pub fn rest_account(&self, account_id: &str, period: Duration, throttled: bool) -> bool {
        let Some(account) = self.find(account_id) else {
            return false;
        };
        if throttled {
            // The next throttle here continues that process's run of throttles.
            let mut throttle = account.throttle.lock().unwrap_or_else(|p| p.into_inner());
            throttle.learnt(Instant::now(), period, self.policy.throttle_cooldown);
        }
        account.rest(period, throttled);
        true
    }

    /// Opens `account_id`'s breaker for `period` (learnt from another process): it rests, then
    /// one request probes it. Returns false for an unknown account.
    pub fn open_breaker(&self, account_id: &str, period: Duration) -> bool {
        self.find(account_id)
            .map(|a| {
                let mut breaker = a.breaker();
                breaker.opened_elsewhere(self.policy.breaker_threshold);
                a.rest(period, false);
            })
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
        self.accounts.iter().map(|a| status_of(a, now)).collect()
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

    /// Requests waiting in line for an account.
    pub fn waiting(&self) -> usize {
        self.line.len()
    }

    /// Picks the usable account at turn `start` or the first after it, skipping resting,
    /// disabled and full ones and those whose breaker probe is out. `true` marks the probe.
    fn pick(&self, start: usize, kinds: &[AccountKind]) -> Result<(Arc<Account>, bool), Miss> {
        let of_kind =
            |account: &Account| kinds.is_empty() || kinds.contains(&account.provider.kind());
        if !self.accounts.iter().any(|a| of_kind(a)) {
            return Err(Miss::Failed(GatewayError::no_account(NO_ACCOUNT_HELP)));
        }
        let now = Instant::now();
        let count = self.accounts.len();
        let mut rest_ends_in: Option<Duration> = None;
        let mut frees_on_release = false;
        let mut all_throttled = true;
        let mut resting = |left: Duration| {
            rest_ends_in = Some(rest_ends_in.map_or(left, |s| s.min(left)));
        };
        for offset in 0..count {
            let account = &self.accounts[start.wrapping_add(offset) % count];
            if !of_kind(account) {
                continue;
            }
            if account.is_disabled() {
                all_throttled = false;
                continue;
            }
            if let Some(left) = account.resting_for(now) {
                resting(left);
                all_throttled &= account.throttled.load(Ordering::Relaxed);
                continue;
            }
            let cap = self.policy.max_concurrency_per_account;
            if cap > 0 && account.in_flight.load(Ordering::Relaxed) >= cap {
                // Busy is not throttled: the client is not the one to slow down.
                frees_on_release = true;
                all_throttled = false;
                continue;
            }
            match account.admit(now) {
                Ok(admission) => return Ok((Arc::clone(account), admission == Admission::Probe)),
                Err(Refusal::Resting(left)) => {
                    resting(left);
                    all_throttled &= account.throttled.load(Ordering::Relaxed);
                }
                Err(Refusal::ProbeOut) => {
                    frees_on_release = true;
                    all_throttled = false;
                }
            }
        }
        let soonest = match (rest_ends_in, frees_on_release) {
            (Some(rest), true) => Some(rest.min(Duration::from_secs(1))),
            (None, true) => Some(Duration::from_secs(1)),
            (rest, false) => rest,
        };
        // Throttling everywhere is the client's cue to slow down (429); anything else means the
        // gateway has no usable account right now (503).
        let error = if all_throttled && soonest.is_some() {
            GatewayError::rate_limited(
                "Kiro is throttling every account of this gateway; retry after the Retry-After delay.",
            )
        } else {
            GatewayError::no_account(
                "Every Kiro account is resting (throttled, out of quota or failing), busy (at its concurrency limit) or disabled; try again shortly.",
            )
        };
        Err(Miss::Blocked(Blocked {
            error: match soonest {
                Some(after) => error.with_retry_after(after),
                None => error,
            },
            rest_ends_in,
            frees_on_release,
        }))
    }
}

fn status_of(account: &Account, now: Instant) -> AccountStatus {
    let breaker = *account.breaker();
    AccountStatus {
        account_id: account.provider.account_id().to_owned(),
        in_flight: account.in_flight.load(Ordering::Relaxed),
        resting_for: account.resting_for(now),
        throttled: account.throttled.load(Ordering::Relaxed),
        disabled: account.disabled.lock().ok().and_then(|d| d.clone()),
        leases: account.leases.load(Ordering::Relaxed),
        breaker: breaker.position(),
        consecutive_failures: breaker.failures(),
    }
}

impl TokenSource for RoundRobinPool {
    fn acquire<'a>(
        &'a self,
        _kiro_model_id: &'a str,
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        self.acquire_of(&[])
    }

    fn acquire_for<'a>(
        &'a self,
        model: &'a ResolvedModel,
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        self.acquire_of(&model.kinds)
    }
}

impl RoundRobinPool {
    /// Leases an account of one of `kinds` (any kind when empty). Round robin runs over all
    /// accounts, so where two kinds serve a model the turns alternate across both.
    fn acquire_of<'a>(
        &'a self,
        kinds: &'a [AccountKind],
    ) -> BoxFuture<'a, Result<Lease, GatewayError>> {
        Box::pin(async move {
            let deadline = queue::deadline(self.policy.queue_timeout);
            // Nobody waits: look at once, as cheaply as without a line.
            if self.line.len() == 0 {
                match self.try_lease(kinds).await {
                    Ok(lease) => return Ok(lease),
                    Err(Miss::Failed(error)) => return Err(error),
                    Err(Miss::Blocked(blocked)) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if queue::verdict(&blocked, left) == queue::Verdict::Refuse {
                            return Err(blocked.error);
                        }
                    }
                }
            }
            self.line.wait_for(deadline, || self.try_lease(kinds)).await
        })
    }
}

impl RoundRobinPool {
    /// One scan of the accounts of `kinds` (any when empty) for a lease, without waiting.
    async fn try_lease(&self, kinds: &[AccountKind]) -> Result<Lease, Miss> {
        {
            let mut last_error = None;
            // Each account gets one chance per request: a refresh failure moves on to the next.
            for _ in 0..self.accounts.len().max(1) {
                let turn = self.next_turn().await;
                let (account, probe) = self.pick(turn, kinds)?;
                account.in_flight.fetch_add(1, Ordering::Relaxed);
                let handle = Arc::new(PoolHandle {
                    account: Arc::clone(&account),
                    policy: Arc::clone(&self.policy),
                    released: std::sync::atomic::AtomicBool::new(false),
                    probe: std::sync::atomic::AtomicBool::new(probe),
                    observer: self.observer.clone(),
                    line: Arc::clone(&self.line),
                });
                if probe {
                    tracing::info!(
                        account = account.provider.account_id(),
                        "circuit breaker half open: this request is the probe"
                    );
                }
                match account.provider.current().await {
                    Ok(credential) => {
                        account.leases.fetch_add(1, Ordering::Relaxed);
                        return Ok(Lease::new(credential, handle));
                    }
                    Err(error) => {
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
                            // Rest first: a probe given back must not let the next request in.
                            account.rest(self.policy.failure_cooldown, false);
                        }
                        handle.release();
                        last_error = Some(error);
                    }
                }
            }
            Err(Miss::Failed(last_error.unwrap_or_else(|| {
                GatewayError::no_account(NO_ACCOUNT_HELP)
            })))
        }
    }
}

struct PoolHandle {
    account: Arc<Account>,
    policy: Arc<PoolPolicy>,
    released: std::sync::atomic::AtomicBool,
    /// This lease is the breaker's probe and has not given its verdict yet.
    probe: std::sync::atomic::AtomicBool,
    observer: Option<Arc<dyn PoolObserver>>,
    /// Told when this lease comes back or reports, which may free the account.
    line: Arc<WaitLine>,
}

/// Counts a failed attempt; rests the account when that opens its breaker.
fn count_failure(account: &Account, breaker: &mut Breaker, policy: &PoolPolicy) {
    if let Some(open) = breaker.failure(policy.breaker_threshold, policy.failure_cooldown) {
        tracing::warn!(
            account = account.provider.account_id(),
            seconds = open.as_secs(),
            failures = breaker.failures(),
            "circuit breaker open; resting"
        );
        account.rest(open, false);
    }
}

impl AccountHandle for PoolHandle {
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        self.account.provider.force_refresh()
    }

    fn report(&self, outcome: AttemptOutcome) {
        let account = &self.account;
        let id = account.provider.account_id();
        let policy = &self.policy;
        {
            let mut breaker = account.breaker();
            let mut throttle = account.throttle.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                AttemptOutcome::Success => {
                    breaker.success();
                    throttle.success();
                }
                AttemptOutcome::Throttled { retry_after } => {
                    let now = Instant::now();
                    if let Some(period) =
                        throttle.throttled(now, *retry_after, policy.throttle_cooldown)
                    {
                        tracing::info!(
                            account = id,
                            millis = period.as_millis() as u64,
                            consecutive = throttle.consecutive(),
                            "account throttled; resting"
                        );
                        account.rest(period, true);
                    }
                }
                AttemptOutcome::QuotaExhausted => {
                    tracing::warn!(account = id, "account out of quota; resting");
                    account.rest(policy.quota_cooldown, false);
                }
                AttemptOutcome::Forbidden => {
                    account.rest(policy.failure_cooldown, false);
                    count_failure(account, &mut breaker, policy);
                }
                // Transient: counted toward the breaker only (see PoolPolicy::breaker_threshold).
                AttemptOutcome::TransportError => count_failure(account, &mut breaker, policy),
                AttemptOutcome::InvalidGrant { reason } => {
                    tracing::error!(account = id, "account disabled: {reason}");
                    if let Ok(mut disabled) = account.disabled.lock() {
                        *disabled = Some(reason.clone());
                    }
                }
            }
            if self.probe.swap(false, Ordering::AcqRel) {
                breaker.probe_abandoned();
            }
        }
        if let Some(observer) = &self.observer {
            observer.outcome(&outcome, &status_of(account, Instant::now()));
        }
        self.line.changed();
    }

    fn release(&self) {
        // Exactly once, however often the lease machinery calls it.
        if !self.released.swap(true, Ordering::AcqRel) {
            if self.probe.swap(false, Ordering::AcqRel) {
                self.account.breaker().probe_abandoned();
            }
            self.account.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.line.changed();
        }
    }
}

#[cfg(test)]
mod waiting_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    pub(super) struct Fixed(pub(super) String);

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
                kind: crate::traits::AccountKind::KIRO,
                client_key: None,
            };
            Box::pin(async move { Ok(credential) })
        }
        fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
            self.current()
        }
    }

    /// The policy of the tests that look at refusals: fail at once instead of waiting in line.
    fn no_wait() -> PoolPolicy {
        PoolPolicy {
            queue_timeout: Duration::ZERO,
            ..PoolPolicy::default()
        }
    }

    fn pool(n: usize) -> RoundRobinPool {
        let providers = (0..n)
            .map(|i| Arc::new(Fixed(format!("a{i}"))) as Arc<dyn CredentialProvider>)
            .collect();
        RoundRobinPool::new(providers, no_wait())
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
    async fn every_account_at_its_concurrency_cap_is_a_503_not_a_429() {
        let providers = vec![Arc::new(Fixed("a0".into())) as Arc<dyn CredentialProvider>];
        let policy = PoolPolicy {
            max_concurrency_per_account: 1,
            ..no_wait()
        };
        let pool = RoundRobinPool::new(providers, policy);
        let held = pool.acquire("auto").await.unwrap();
        let error = pool.acquire("auto").await.unwrap_err();
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE, "{error}");
        assert!(error.message().contains("busy"), "{error}");
        assert!(error.retry_after().is_some());
        drop(held);
        assert!(pool.acquire("auto").await.is_ok());
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
    struct Seen(Mutex<Vec<(AttemptOutcome, AccountStatus)>>);
    impl PoolObserver for Seen {
        fn outcome(&self, outcome: &AttemptOutcome, account: &AccountStatus) {
            self.0
                .lock()
                .unwrap()
                .push((outcome.clone(), account.clone()));
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
        assert_eq!(seen[0].1.account_id, "a0");
        assert!(seen[0].1.throttled);
        assert!(seen[0].1.resting_for.unwrap() > Duration::from_secs(20));
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
            kinds: Vec::new(),
            upstream_ids: Vec::new(),
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

    fn quick_breaker(n: usize, cooldown: Duration) -> RoundRobinPool {
        let providers = (0..n)
            .map(|i| Arc::new(Fixed(format!("a{i}"))) as Arc<dyn CredentialProvider>)
            .collect();
        let policy = PoolPolicy {
            failure_cooldown: cooldown,
            throttle_cooldown: cooldown,
            ..no_wait()
        };
        RoundRobinPool::new(providers, policy)
    }

    /// Fails attempts on `a0` until its breaker opens.
    async fn open_a0(pool: &RoundRobinPool) {
        while pool.status()[0].breaker != BreakerState::Open {
            match pool.acquire("auto").await {
                Ok(lease) if lease.credential.account_id == "a0" => {
                    lease.report(AttemptOutcome::TransportError)
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    #[tokio::test]
    async fn a_5xx_alone_does_not_rest_the_only_account() {
        let pool = pool(1);
        for _ in 0..2 {
            let lease = pool.acquire("auto").await.unwrap();
            lease.report(AttemptOutcome::TransportError);
        }
        // The retry finds the account; the third failure in a row opens the breaker.
        let lease = pool.acquire("auto").await.unwrap();
        assert_eq!(pool.status()[0].consecutive_failures, 2);
        lease.report(AttemptOutcome::TransportError);
        drop(lease);
        let status = &pool.status()[0];
        assert_eq!(status.breaker, BreakerState::Open);
        assert!(status.resting_for.unwrap() > Duration::from_secs(25));
        assert_eq!(pool.acquire("auto").await.unwrap_err().status(), 503);
    }

    /// Leases taken by `n` tasks at once, on real threads; the leases are held, not dropped.
    async fn concurrent_leases(pool: &RoundRobinPool, n: usize) -> Vec<Lease> {
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let pool = pool.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    pool.acquire("auto").await
                })
            })
            .collect();
        let mut leases = Vec::new();
        for task in tasks {
            if let Ok(lease) = task.await.unwrap() {
                leases.push(lease);
            }
        }
        leases
    }

    fn on_a0(leases: &[Lease]) -> usize {
        leases
            .iter()
            .filter(|l| l.credential.account_id == "a0")
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_breaker_whose_rest_ended_admits_exactly_one_probe() {
        // Wide enough that a busy machine does not see a rest end early.
        let cooldown = Duration::from_millis(100);
        let pool = quick_breaker(2, cooldown);
        open_a0(&pool).await;
        tokio::time::sleep(cooldown * 2).await;
        let mut leases = concurrent_leases(&pool, 16).await;
        assert_eq!(leases.len(), 16, "a1 serves everyone else");
        assert_eq!(on_a0(&leases), 1, "exactly one probe");
        assert_eq!(pool.status()[0].breaker, BreakerState::HalfOpen);
        // While the probe is out, a0 stays out of turn.
        let more = concurrent_leases(&pool, 8).await;
        assert_eq!(on_a0(&more), 0);
        // The probe fails: open again, for twice as long, and again one probe after the rest.
        let probe = leases.iter().position(|l| l.credential.account_id == "a0");
        let probe = leases.swap_remove(probe.unwrap());
        probe.report(AttemptOutcome::TransportError);
        drop(probe);
        let status = &pool.status()[0];
        assert_eq!(status.breaker, BreakerState::Open);
        assert!(status.resting_for.unwrap() > cooldown * 3 / 2);
        assert_eq!(on_a0(&concurrent_leases(&pool, 8).await), 0);
        tokio::time::sleep(cooldown * 3).await;
        let leases = concurrent_leases(&pool, 16).await;
        assert_eq!(on_a0(&leases), 1);
        // The probe succeeds: closed, and a0 takes its turns again.
        leases
            .iter()
            .find(|l| l.credential.account_id == "a0")
            .unwrap()
            .report(AttemptOutcome::Success);
        assert_eq!(pool.status()[0].breaker, BreakerState::Closed);
        assert_eq!(on_a0(&concurrent_leases(&pool, 8).await), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_probe_dropped_without_a_verdict_hands_the_probe_on() {
        let cooldown = Duration::from_millis(20);
        let pool = quick_breaker(1, cooldown);
        open_a0(&pool).await;
        tokio::time::sleep(cooldown * 2).await;
        let leases = concurrent_leases(&pool, 8).await;
        assert_eq!(leases.len(), 1, "only the probe gets the only account");
        let refused = pool.acquire("auto").await.unwrap_err();
        assert_eq!(refused.status(), 503);
        assert!(refused.retry_after().is_some());
        // The client went away before Kiro answered: the next request is the probe.
        drop(leases);
        let leases = concurrent_leases(&pool, 8).await;
        assert_eq!(leases.len(), 1);
        // A throttled probe gives no verdict either: after the throttle rest, one probe again.
        leases[0].report(AttemptOutcome::Throttled {
            retry_after: Some(cooldown),
        });
        drop(leases);
        assert_eq!(pool.status()[0].breaker, BreakerState::Open);
        tokio::time::sleep(cooldown * 2).await;
        assert_eq!(concurrent_leases(&pool, 8).await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_breaker_opened_by_another_process_rests_then_admits_one_probe() {
        let pool = quick_breaker(1, Duration::from_secs(30));
        let rest = Duration::from_millis(200);
        assert!(pool.open_breaker("a0", rest));
        assert!(!pool.open_breaker("nope", rest));
        assert_eq!(pool.acquire("auto").await.unwrap_err().status(), 503);
        tokio::time::sleep(rest * 2).await;
        let leases = concurrent_leases(&pool, 8).await;
        assert_eq!(leases.len(), 1);
        // Hearing of it again while the probe is out lets no second probe out.
        pool.open_breaker("a0", Duration::ZERO);
        assert!(concurrent_leases(&pool, 4).await.is_empty());
    }

    #[tokio::test]
    async fn a_rebuilt_pool_keeps_the_state_of_unchanged_accounts() {
        let providers: Vec<Arc<dyn CredentialProvider>> = (0..2)
            .map(|i| Arc::new(Fixed(format!("a{i}"))) as Arc<dyn CredentialProvider>)
            .collect();
        let pool = RoundRobinPool::new(providers.clone(), no_wait());
        let held = pool.acquire("auto").await.unwrap();
        held.report(AttemptOutcome::QuotaExhausted);
        let added: Arc<dyn CredentialProvider> = Arc::new(Fixed("a2".into()));
        let rebuilt = pool.rebuilt(vec![Arc::clone(&providers[0]), added], no_wait());
        let status = rebuilt.status();
        assert_eq!(status[0].in_flight, 1);
        assert!(status[0].resting_for.is_some());
        assert_eq!(status[1].account_id, "a2");
        drop(held);
        assert_eq!(rebuilt.in_flight(), 0);
        // The turn carries on: the last lease was turn 0, so turn 1 (a2, a0 resting) comes next.
        assert_eq!(
            rebuilt.acquire("auto").await.unwrap().credential.account_id,
            "a2"
        );
    }
}
