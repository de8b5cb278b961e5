//! `QuotaBook`: the in-memory counters behind the gateway's [`QuotaGuard`]. Limits and spent
//! amounts come from the store (loaded at start and on every change notification); usage
//! charges update them immediately, so the request path never waits on the database.
//!
//! Over-spend is bounded by design: a request is admitted while the spent amount is below the
//! limit, and its cost is charged when it ends, so a quota can be overrun only by the requests
//! already in flight when it was crossed.
//!
//! Rate and concurrency limits are counted here too, unless [`QuotaBook::share`] connected
//! [`SharedLimits`]: then, while the shared engine is in use, a request of a subject with such
//! a limit is counted there (one round trip for all its limited subjects) and only mirrored
//! here; unlimited subjects never leave memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use kiro_layers::quota::{Admission, QuotaGuard, QuotaPermit};
use kiro_layers::traits::Principal;
use kiro_layers::GatewayError;

use super::shared_limits::{Lease, Refusal, SharedLimits};

/// Whose limits: a key, a user or an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An API key, by public id.
    Key(String),
    /// A user, by id.
    User(String),
    /// An agent (reseller), by id.
    Agent(String),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::Key(id) => format!("API key `{id}`"),
            Subject::User(id) => format!("user `{id}`"),
            Subject::Agent(id) => format!("agent `{id}`"),
        }
    }

    /// The subject's name in a shared counter engine.
    pub fn shared_name(&self) -> String {
        match self {
            Subject::Key(id) => format!("key:{id}"),
            Subject::User(id) => format!("user:{id}"),
            Subject::Agent(id) => format!("agent:{id}"),
        }
    }
}

fn concurrency_refused(subject: &Subject, cap: u32) -> GatewayError {
    GatewayError::rate_limited(format!(
        "The concurrency limit of {} is reached ({cap} requests at once); wait for one to finish.",
        subject.describe()
    ))
}

fn rate_refused(subject: &Subject, limit: u32, after: Duration) -> GatewayError {
    GatewayError::rate_limited(format!(
        "The rate limit of {} is reached ({limit} requests per minute); retry later.",
        subject.describe()
    ))
    .with_retry_after(after.max(Duration::from_secs(1)))
}

/// The limits of one subject as the store has them; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Quota in micro-credits.
    pub quota_limit: Option<i64>,
    /// Micro-credits spent so far.
    pub quota_used: i64,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
    /// Requests at once.
    pub max_concurrency: Option<u32>,
}

const UNLIMITED: i64 = -1;

struct Entry {
    quota_limit: AtomicI64,
    quota_used: AtomicI64,
    rpm_limit: AtomicU32,
    max_concurrency: AtomicU32,
    in_flight: AtomicU32,
    /// Start of the current one-minute window and the requests admitted in it.
    window: Mutex<(Instant, u32)>,
}

impl Entry {
    fn new(limits: Limits) -> Self {
        let entry = Entry {
            quota_limit: AtomicI64::new(UNLIMITED),
            quota_used: AtomicI64::new(0),
            rpm_limit: AtomicU32::new(0),
            max_concurrency: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            window: Mutex::new((Instant::now(), 0)),
        };
        entry.set(limits);
        entry
    }

    fn set(&self, limits: Limits) {
        self.quota_limit
            .store(limits.quota_limit.unwrap_or(UNLIMITED), Ordering::Release);
        self.quota_used.store(limits.quota_used, Ordering::Release);
        self.rpm_limit
            .store(limits.rpm_limit.unwrap_or(0), Ordering::Release);
        self.max_concurrency
            .store(limits.max_concurrency.unwrap_or(0), Ordering::Release);
    }

    /// Like `set`, but never lowers the spent amount: charges made here may not have reached
    /// the database yet when it is read back.
    fn merge(&self, limits: Limits) {
        let used = limits.quota_used;
        self.set(Limits {
            quota_used: self.quota_used.load(Ordering::Acquire).max(used),
            ..limits
        });
    }

    fn over_quota(&self) -> Option<(i64, i64)> {
        let limit = self.quota_limit.load(Ordering::Acquire);
        let used = self.quota_used.load(Ordering::Acquire);
        (limit != UNLIMITED && used >= limit).then_some((used, limit))
    }

    /// Takes a concurrency slot, or says the cap.
    fn enter(&self) -> Result<(), u32> {
        let cap = self.max_concurrency.load(Ordering::Acquire);
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if cap > 0 && before >= cap {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(cap);
        }
        Ok(())
    }

    /// Counts a request in flight without a cap (the shared engine holds the cap).
    fn enter_uncapped(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn rpm_limit(&self) -> u32 {
        self.rpm_limit.load(Ordering::Acquire)
    }

    fn max_concurrency(&self) -> u32 {
        self.max_concurrency.load(Ordering::Acquire)
    }

    fn leave(&self) {
        // Saturating: a reload never makes the count wrap.
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Counts one request in the current minute, or says the limit and when the window ends.
    fn tick(&self, now: Instant) -> Result<(), (u32, Duration)> {
        let limit = self.rpm_limit.load(Ordering::Acquire);
        let Ok(mut window) = self.window.lock() else {
            return Ok(());
        };
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if limit > 0 && window.1 >= limit {
            let left = Duration::from_secs(60).saturating_sub(now.duration_since(window.0));
            return Err((limit, left.max(Duration::from_secs(1))));
        }
        window.1 += 1;
        Ok(())
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone, Default)]
pub struct QuotaBook {
    entries: Arc<RwLock<HashMap<Subject, Arc<Entry>>>>,
    shared: Arc<OnceLock<Arc<SharedLimits>>>,
}

impl std::fmt::Debug for QuotaBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuotaBook")
    }
}

fn subjects(principal: &Principal) -> Vec<Subject> {
    let mut out = vec![Subject::Key(principal.key_id.clone())];
    if let Some(user) = &principal.user_id {
        out.push(Subject::User(user.clone()));
    }
    // A user's quota was bought from its agent already; only the agent's own keys spend the
    // agent's balance.
    if let (None, Some(agent)) = (&principal.user_id, &principal.agent_id) {
        out.push(Subject::Agent(agent.clone()));
    }
    out
}

impl QuotaBook {
    /// An empty book: everyone is unlimited until limits are set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts rate and concurrency limits in `shared` while it is in use (once per book).
    pub fn share(&self, shared: Arc<SharedLimits>) {
        let _ = self.shared.set(shared);
    }

    /// The shared limits connected with [`QuotaBook::share`].
    pub fn shared(&self) -> Option<&Arc<SharedLimits>> {
        self.shared.get()
    }

    /// Sets (or replaces) the limits and spent amount of `subject`, keeping its in-flight count.
    pub fn set(&self, subject: Subject, limits: Limits) {
        if let Some(entry) = self.get(&subject) {
            entry.set(limits);
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            match entries.get(&subject) {
                Some(entry) => entry.set(limits),
                None => {
                    entries.insert(subject, Arc::new(Entry::new(limits)));
                }
            }
        }
    }

    /// Like [`QuotaBook::set`] but keeps the larger spent amount (reloads from the store).
    pub fn merge(&self, subject: Subject, limits: Limits) {
        match self.get(&subject) {
            Some(entry) => entry.merge(limits),
            None => self.set(subject, limits),
        }
    }

    /// Forgets subjects not in `keep` (deleted keys and users).
    pub fn retain(&self, keep: &std::collections::HashSet<Subject>) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|subject, _| keep.contains(subject));
        }
    }

    fn get(&self, subject: &Subject) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(subject).cloned()
    }

    /// Micro-credits spent by `subject` (0 when unknown).
    pub fn used(&self, subject: &Subject) -> i64 {
        self.get(subject)
            .map_or(0, |e| e.quota_used.load(Ordering::Acquire))
    }

    /// Requests of `subject` in flight now.
    pub fn in_flight(&self, subject: &Subject) -> u32 {
        self.get(subject)
            .map_or(0, |e| e.in_flight.load(Ordering::Acquire))
    }

    /// Adds `micro_credits` to the spent amount of the principal's key, user and agent.
    pub fn charge(&self, principal: &Principal, micro_credits: i64) {
        if micro_credits <= 0 {
            return;
        }
        for subject in subjects(principal) {
            if let Some(entry) = self.get(&subject) {
                entry.quota_used.fetch_add(micro_credits, Ordering::AcqRel);
            }
        }
    }
}

type Entries = Vec<(Subject, Arc<Entry>)>;

impl QuotaBook {
    fn entries_of(&self, principal: &Principal) -> Entries {
        subjects(principal)
            .into_iter()
            .filter_map(|s| self.get(&s).map(|e| (s, e)))
            .collect()
    }
}

fn check_quota(entries: &Entries) -> Result<(), GatewayError> {
    for (subject, entry) in entries {
        if let Some((used, limit)) = entry.over_quota() {
            return Err(GatewayError::rate_limited(format!(
                "The quota of {} is exhausted ({used} of {limit} micro-credits used); ask the administrator for more quota.",
                subject.describe()
            ))
            .with_code("insufficient_quota"));
        }
    }
    Ok(())
}

fn release_local(entered: &[Arc<Entry>]) {
    entered.iter().for_each(|e| e.leave());
}

/// Today's in-process decision: quota, then concurrency, then the rate window.
fn admit_locally(entries: Entries) -> Result<QuotaPermit, GatewayError> {
    check_quota(&entries)?;
    let mut entered: Vec<Arc<Entry>> = Vec::with_capacity(entries.len());
    for (subject, entry) in &entries {
        if let Err(cap) = entry.enter() {
            release_local(&entered);
            return Err(concurrency_refused(subject, cap));
        }
        entered.push(Arc::clone(entry));
    }
    let now = Instant::now();
    for (subject, entry) in &entries {
        if let Err((limit, after)) = entry.tick(now) {
            release_local(&entered);
            return Err(rate_refused(subject, limit, after));
        }
    }
    Ok(QuotaPermit::new(move || release_local(&entered)))
}

/// The same decision with concurrency and rate counted in `shared`, in one engine call for
/// all subjects; `Err(None)` when the engine failed (the caller decides locally instead).
async fn admit_shared(
    shared: &Arc<SharedLimits>,
    entries: &Entries,
) -> Result<QuotaPermit, Option<GatewayError>> {
    let limited: Vec<(&Subject, u32, u32)> = entries
        .iter()
        .map(|(subject, entry)| (subject, entry.rpm_limit(), entry.max_concurrency()))
        .filter(|(_, rpm, cap)| *rpm > 0 || *cap > 0)
        .collect();
    let asks: Vec<(String, u32, u32)> = limited
        .iter()
        .map(|(subject, rpm, cap)| (subject.shared_name(), *rpm, *cap))
        .collect();
    let leases: Vec<Lease> = match shared.admit(&asks).await {
        Ok(Ok(leases)) => leases,
        Ok(Err((at, why))) => {
            let (subject, rpm, cap) = limited[at];
            return Err(Some(match why {
                Refusal::Concurrency => concurrency_refused(subject, cap),
                Refusal::Rate(after) => rate_refused(subject, rpm, after),
            }));
        }
        Err(_) => return Err(None),
    };
    // Mirrored here so the in-flight counts the APIs show stay right.
    let entered: Vec<Arc<Entry>> = entries.iter().map(|(_, e)| Arc::clone(e)).collect();
    entered.iter().for_each(|e| e.enter_uncapped());
    let shared = Arc::clone(shared);
    Ok(QuotaPermit::new(move || {
        release_local(&entered);
        leases.into_iter().for_each(|l| shared.release(l));
    }))
}

impl QuotaGuard for QuotaBook {
    fn check(&self, principal: &Principal) -> Result<QuotaPermit, GatewayError> {
        admit_locally(self.entries_of(principal))
    }

    fn admit(&self, principal: &Principal) -> Admission {
        let entries = self.entries_of(principal);
        let shared = match self.shared.get() {
            Some(shared) if shared.in_use() => Arc::clone(shared),
            _ => return Admission::Now(admit_locally(entries)),
        };
        let limited = entries
            .iter()
            .any(|(_, e)| e.rpm_limit() > 0 || e.max_concurrency() > 0);
        if !limited {
            return Admission::Now(admit_locally(entries));
        }
        if let Err(error) = check_quota(&entries) {
            return Admission::Now(Err(error));
        }
        Admission::Later(Box::pin(async move {
            match admit_shared(&shared, &entries).await {
                Ok(permit) => Ok(permit),
                Err(Some(refused)) => Err(refused),
                // The engine failed (now marked degraded): this request is counted here.
                Err(None) => admit_locally(entries),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            key_id: "k1".into(),
            user_id: Some("u1".into()),
            agent_id: Some("a1".into()),
            allowed_models: vec![],
        }
    }

    #[test]
    fn unknown_subjects_are_unlimited() {
        let book = QuotaBook::new();
        for _ in 0..100 {
            drop(book.check(&principal()).unwrap());
        }
    }

    #[test]
    fn each_limit_is_named_in_the_refusal() {
        let book = QuotaBook::new();
        book.set(
            Subject::User("u1".into()),
            Limits {
                quota_limit: Some(10),
                quota_used: 10,
                ..Limits::default()
            },
        );
        let err = book.check(&principal()).unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(
            err.message().contains("quota of user `u1`"),
            "{}",
            err.message()
        );

        let book = QuotaBook::new();
        book.set(
            Subject::Key("k1".into()),
            Limits {
                max_concurrency: Some(1),
                ..Limits::default()
            },
        );
        let held = book.check(&principal()).unwrap();
        let err = book.check(&principal()).unwrap_err();
        assert!(err.message().contains("concurrency limit of API key `k1`"));
        drop(held);
        assert_eq!(book.in_flight(&Subject::Key("k1".into())), 0);
        drop(book.check(&principal()).unwrap());

        let book = QuotaBook::new();
        book.set(
            Subject::Agent("a1".into()),
            Limits {
                rpm_limit: Some(2),
                ..Limits::default()
            },
        );
        let agent_key = Principal {
            user_id: None,
            ..principal()
        };
        drop(book.check(&agent_key).unwrap());
        drop(book.check(&agent_key).unwrap());
        // The agent's limit does not apply to its users' keys.
        drop(book.check(&principal()).unwrap());
        let err = book.check(&agent_key).unwrap_err();
        assert!(err.message().contains("rate limit of agent `a1`"));
        assert!(err.retry_after().is_some());
    }

    #[test]
    fn charges_reach_key_user_and_agent_and_close_the_quota() {
        let book = QuotaBook::new();
        for s in [
            Subject::Key("k1".into()),
            Subject::User("u1".into()),
            Subject::Agent("a1".into()),
        ] {
            book.set(
                s,
                Limits {
                    quota_limit: Some(100),
                    ..Limits::default()
                },
            );
        }
        drop(book.check(&principal()).unwrap());
        book.charge(&principal(), 60);
        assert_eq!(book.used(&Subject::User("u1".into())), 60);
        assert_eq!(book.used(&Subject::Agent("a1".into())), 0);
        drop(book.check(&principal()).unwrap());
        book.charge(&principal(), 60);
        assert!(book.check(&principal()).is_err());
    }

    #[test]
    fn reload_never_lowers_what_was_charged_here() {
        let book = QuotaBook::new();
        let key = Subject::Key("k1".into());
        book.set(key.clone(), Limits::default());
        book.charge(&principal(), 50);
        book.merge(
            key.clone(),
            Limits {
                quota_used: 20,
                ..Limits::default()
            },
        );
        assert_eq!(book.used(&key), 50);
        book.merge(
            key.clone(),
            Limits {
                quota_used: 80,
                ..Limits::default()
            },
        );
        assert_eq!(book.used(&key), 80);
    }

    #[test]
    fn refused_concurrency_releases_the_slots_already_taken() {
        let book = QuotaBook::new();
        book.set(Subject::Key("k1".into()), Limits::default());
        book.set(
            Subject::User("u1".into()),
            Limits {
                max_concurrency: Some(1),
                ..Limits::default()
            },
        );
        let held = book.check(&principal()).unwrap();
        assert!(book.check(&principal()).is_err());
        // The key's slot taken before the user's refusal was given back: only `held` counts.
        assert_eq!(book.in_flight(&Subject::Key("k1".into())), 1);
        drop(held);
        assert_eq!(book.in_flight(&Subject::Key("k1".into())), 0);
    }

    /// 200 requests on a key with a quota, at most `IN_FLIGHT` at once (a client with that many
    /// connections): whatever the interleaving, the overspend is at most the requests that were
    /// in flight when the quota was crossed, and the rest are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_overspend_at_most_what_is_in_flight() {
        const COST: i64 = 7;
        const LIMIT: i64 = 10 * COST;
        const IN_FLIGHT: usize = 16;
        let book = QuotaBook::new();
        book.set(
            Subject::Key("k1".into()),
            Limits {
                quota_limit: Some(LIMIT),
                ..Limits::default()
            },
        );
        let connections = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let book = book.clone();
            let connections = Arc::clone(&connections);
            tasks.push(tokio::spawn(async move {
                let _connection = connections.acquire().await.unwrap();
                let Ok(permit) = book.check(&principal()) else {
                    return false;
                };
                tokio::task::yield_now().await;
                book.charge(&principal(), COST);
                drop(permit);
                true
            }));
        }
        let mut admitted = 0;
        for task in tasks {
            admitted += i64::from(task.await.unwrap());
        }
        let used = book.used(&Subject::Key("k1".into()));
        assert_eq!(used, admitted * COST);
        assert!(used >= LIMIT);
        assert!(
            used <= LIMIT - 1 + COST * IN_FLIGHT as i64,
            "used {used} with {admitted} admitted"
        );
        assert!(admitted < 200);
        assert!(book.check(&principal()).is_err());
    }
}
