//! Rate and concurrency limits shared by every gateway process: `rpm_limit` and
//! `max_concurrency` of keys, users and agents counted in one engine all processes reach
//! (PostgreSQL, already the shared store, or Redis/Valkey through `REDIS_URL`) instead of in
//! each process's memory.
//!
//! The contract:
//!
//! - Exact while the engine answers. A window hit and a slot take are each one atomic step in
//!   the engine (PostgreSQL: one upsert of a count row that counts only below the limit; Redis:
//!   one Lua script), so N processes together admit at most `rpm_limit` requests per window and at
//!   most `max_concurrency` at once: no process can go over, whatever the interleaving. The window is fixed (one minute numbered by the engine's clock, so skewed
//!   process clocks agree), as the in-process window is.
//! - Only limited subjects pay. A request whose key, user and agent have no rpm or
//!   concurrency limit never reaches the engine. One with limits is admitted by
//!   [`CounterEngine::admit`]: on PostgreSQL one function call for all its subjects and kinds
//!   (all or nothing), on Redis one script call per limited subject and kind.
//! - A process alone keeps today's cost: in `auto` mode the engine is consulted only while
//!   other processes share the database (the heartbeat of [`super::turn`] counts them).
//! - A slot is a lease that expires after [`LEASE_TTL`] unless its process renews it (every
//!   [`RENEW_EVERY`]), so a crashed process's slots come back within a minute. Slots are given
//!   back through a channel (a permit's drop never waits on I/O).
//! - A burst waits for a connection, it is not an outage: an engine with a connection pool
//!   (PostgreSQL, `SHARED_LIMITS_PG_POOL`) serves that many calls at once and the others queue
//!   here for up to [`QUEUE_WAIT`]. A request that got no connection by then is counted in this
//!   process alone (counted in `kiro_gateway_shared_limits_busy_total` and in `/ready`'s
//!   `busy`), and the engine stays in use for the next ones.
//! - Never hangs a request: each engine call is bounded by [`COMMAND_TIMEOUT`]. A failure marks
//!   the engine degraded (logged once per transition, the gauge
//!   `kiro_gateway_shared_limits_degraded` set, `/ready` says so): the process then counts in
//!   its own memory, as before, and probes the engine every [`PROBE_EVERY`]; the first answer
//!   switches it back. While degraded (and for requests admitted locally that are still
//!   running after the switch back) the limits hold per process only.

mod postgres;
mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use self::postgres::{PgCounters, DEFAULT_POOL as DEFAULT_PG_POOL};
pub use self::redis::RedisCounters;

/// Longest one engine call may take before the process counts on its own.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

/// Longest a call may wait for one of the engine's connections (see
/// [`CounterEngine::parallelism`]) before its own [`COMMAND_TIMEOUT`] starts. A request that
/// waited this long is counted in this process alone, without marking the engine degraded:
/// the engine answers, it is only saturated.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// Most slot releases sent to the engine in one call.
const RELEASE_BATCH: usize = 256;

/// A slot not renewed for this long is free again (its process died).
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// How often a process renews the slots it holds (a third of the lease).
pub const RENEW_EVERY: Duration = Duration::from_secs(20);

/// How often a degraded process asks whether the engine is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The rate window (requests per minute).
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// An engine error (unreachable, timed out, refused the command); never holds secrets.
pub type EngineError = String;

/// The answer to a window hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Counted; the request may go.
    Admitted,
    /// The window is full; it ends after this long.
    Refused(Duration),
}

/// One shared counter engine. Subjects are short strings (`key:12`, `user:3`); leases are
/// random ids unique per request.
pub trait CounterEngine: Send + Sync + 'static {
    /// `postgres` or `redis`, for logs, `/ready` and the metric.
    fn name(&self) -> &'static str;

    /// Counts one request of `subject` in the current window unless `limit` are counted.
    fn hit(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'_, Result<Hit, EngineError>>;

    /// Takes one of `cap` slots of `subject` for `lease`, held for `ttl` unless renewed;
    /// `false` when all are taken.
    fn acquire(
        &self,
        subject: &str,
        cap: u32,
        lease: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, EngineError>>;

    /// Gives a slot back.
    fn release(&self, subject: &str, lease: &str) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Admits one request: every slot and window hit of `asks`, all or nothing. The default
    /// takes them one call at a time (slots, then hits) and gives the slots back on a
    /// refusal; an engine that can do it in one atomic round trip overrides it.
    fn admit<'a>(
        &'a self,
        asks: &'a [Ask],
        window: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Verdict, EngineError>> {
        Box::pin(admit_in_steps(self, asks, window, ttl))
    }

    /// Gives many slots `(subject, lease)` back; the default sends every release at once (a
    /// multiplexed connection pipelines them: one by one, a batch of hundreds would outlast
    /// [`COMMAND_TIMEOUT`] under load and mark a healthy engine degraded).
    fn release_all<'a>(
        &'a self,
        held: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let releases = held
            .iter()
            .map(|(subject, lease)| self.release(subject, lease));
        Box::pin(async move {
            futures_util::future::try_join_all(releases).await?;
            Ok(())
        })
    }

    /// How many calls the engine serves at once (its connection pool), or `None` when it
    /// multiplexes any number. Calls beyond it queue in [`SharedLimits`] for up to
    /// [`QUEUE_WAIT`] before their [`COMMAND_TIMEOUT`] starts, so a burst waits for a
    /// connection instead of being taken for an engine that is down.
    fn parallelism(&self) -> Option<usize> {
        None
    }

    /// Extends the slots `(subject, lease)` to `ttl` from now.
    fn renew(
        &self,
        held: &[(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Answers when reachable; also deletes counters of past windows where the engine does
    /// not expire them itself.
    fn probe(&self) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// One subject's limits in a request: a window hit when `rpm_limit > 0`, a slot (held as
/// `lease`) when `max_concurrency > 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `key:12`, `user:3`, `agent:5`.
    pub subject: String,
    /// Requests per window; 0 for none.
    pub rpm_limit: u32,
    /// Requests at once; 0 for none.
    pub max_concurrency: u32,
    /// The slot's lease id (unused without `max_concurrency`).
    pub lease: String,
}

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All slots of the subject are taken.
    Concurrency,
    /// The subject's window is full; it ends after this long.
    Rate(Duration),
}

/// The answer to an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every slot and hit was taken.
    Admitted,
    /// `asks[at]` refused; nothing was taken.
    Refused {
        /// Index of the refused ask.
        at: usize,
        /// Which limit.
        why: Refusal,
    },
}

/// [`CounterEngine::admit`] one call at a time: every slot first, then every hit. Slots taken
/// are given back on a refusal or failure; hits already counted stay counted (a refused
/// request may so use up a window hit of another subject).
async fn admit_in_steps<E: CounterEngine + ?Sized>(
    engine: &E,
    asks: &[Ask],
    window: Duration,
    ttl: Duration,
) -> Result<Verdict, EngineError> {
    let mut taken: Vec<&Ask> = Vec::new();
    let mut outcome = Ok(Verdict::Admitted);
    for (at, ask) in asks.iter().enumerate() {
        if ask.max_concurrency == 0 {
            continue;
        }
        match engine
            .acquire(&ask.subject, ask.max_concurrency, &ask.lease, ttl)
            .await
        {
            Ok(true) => taken.push(ask),
            Ok(false) => {
                outcome = Ok(Verdict::Refused {
                    at,
                    why: Refusal::Concurrency,
                });
                break;
            }
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    if outcome == Ok(Verdict::Admitted) {
        for (at, ask) in asks.iter().enumerate() {
            if ask.rpm_limit == 0 {
                continue;
            }
            match engine.hit(&ask.subject, ask.rpm_limit, window).await {
                Ok(Hit::Admitted) => {}
                Ok(Hit::Refused(after)) => {
                    outcome = Ok(Verdict::Refused {
                        at,
                        why: Refusal::Rate(after),
                    });
                    break;
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
    }
    // On a failure the caller gives every lease back (the call may also have timed out).
    if let Ok(Verdict::Refused { .. }) = outcome {
        for ask in taken {
            // Best effort: a slot not given back expires with its lease.
            let _ = engine.release(&ask.subject, &ask.lease).await;
        }
    }
    outcome
}

/// Which engine `SHARED_LIMITS` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Counters in each process only.
    Off,
    /// Redis when `REDIS_URL` is set, else PostgreSQL when the database is; consulted only
    /// while other processes share the database.
    Auto,
    /// Always PostgreSQL (the database must be PostgreSQL).
    Postgres,
    /// Always Redis (`REDIS_URL` must be set).
    Redis,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "off" => Ok(Mode::Off),
            "auto" => Ok(Mode::Auto),
            "postgres" | "postgresql" => Ok(Mode::Postgres),
            "redis" | "valkey" => Ok(Mode::Redis),
            _ => Err(format!(
                "SHARED_LIMITS must be off, auto, postgres or redis, not `{}`",
                value.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// The engine the settings selected.
pub struct Selected {
    /// The engine.
    pub engine: Arc<dyn CounterEngine>,
    /// Consulted only while other processes share the database (`auto`).
    pub only_with_peers: bool,
}

/// The engine the settings select, if any; PostgreSQL with a pool of `pg_pool` connections.
pub fn select(
    mode: Mode,
    database_url: &str,
    redis_url: Option<&str>,
    pg_pool: u32,
) -> Result<Option<Selected>, String> {
    let postgres =
        database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
    let redis_url = redis_url.filter(|url| !url.is_empty());
    let engine: Arc<dyn CounterEngine> = match (mode, redis_url) {
        (Mode::Off, _) => return Ok(None),
        (Mode::Redis | Mode::Auto, Some(url)) => Arc::new(RedisCounters::connect(url)?),
        (Mode::Redis, None) => {
            return Err("SHARED_LIMITS=redis needs REDIS_URL (redis://host:6379)".into())
        }
        (Mode::Postgres | Mode::Auto, _) if postgres => {
            Arc::new(PgCounters::connect(database_url, pg_pool)?)
        }
        (Mode::Postgres, _) => {
            return Err("SHARED_LIMITS=postgres needs a postgres:// DATABASE_URL".into())
        }
        (Mode::Auto, None) => return Ok(None),
    };
    Ok(Some(Selected {
        engine,
        only_with_peers: mode == Mode::Auto,
    }))
}

/// Whether the engine is consulted right now (other processes share the database).
pub type PeersPresent = Arc<dyn Fn() -> bool + Send + Sync>;

/// Health of the engine as this process sees it.
struct Health {
    degraded: AtomicBool,
    /// Switches to degraded since the start.
    degradations: AtomicU64,
    since: Mutex<(Instant, Option<String>)>,
}

/// The engine, its health and the slots this process holds. See the module docs.
pub struct SharedLimits {
    engine: Arc<dyn CounterEngine>,
    peers: Option<PeersPresent>,
    health: Health,
    /// Slots held by requests of this process: lease to subject (renewed together).
    held: Mutex<HashMap<String, String>>,
    /// One permit per call the engine serves at once, when it has such a bound.
    gate: Option<tokio::sync::Semaphore>,
    /// Calls that found no free connection within [`QUEUE_WAIT`].
    busy: AtomicU64,
    releases: mpsc::UnboundedSender<(String, String)>,
    releases_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Limits over `engine`; with `peers`, consulted only while it says other processes run.
    pub fn new(engine: Arc<dyn CounterEngine>, peers: Option<PeersPresent>) -> Arc<Self> {
        let (releases, releases_rx) = mpsc::unbounded_channel();
        metrics::gauge!("kiro_gateway_shared_limits_degraded", "engine" => engine.name()).set(0.0);
        Arc::new(SharedLimits {
            engine: Arc::clone(&engine),
            peers,
            health: Health {
                degraded: AtomicBool::new(false),
                degradations: AtomicU64::new(0),
                since: Mutex::new((Instant::now(), None)),
            },
            held: Mutex::new(HashMap::new()),
            gate: engine
                .parallelism()
                .map(|n| tokio::sync::Semaphore::new(n.max(1))),
            busy: AtomicU64::new(0),
            releases,
            releases_rx: Mutex::new(Some(releases_rx)),
        })
    }

    /// The engine's name.
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// True while requests are counted in the engine (not degraded, and peers present where
    /// that matters).
    pub fn in_use(&self) -> bool {
        !self.is_degraded() && self.peers.as_ref().is_none_or(|peers| peers())
    }

    /// True while the engine is unreachable and the process counts on its own.
    pub fn is_degraded(&self) -> bool {
        self.health.degraded.load(Ordering::Acquire)
    }

    /// How many calls found every connection busy for [`QUEUE_WAIT`] (their requests were
    /// counted in this process alone; the engine was not marked degraded).
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// How many times the engine was marked degraded since the start (a probe may have found
    /// it back since).
    pub fn degradations(&self) -> u64 {
        self.health.degradations.load(Ordering::Relaxed)
    }

    fn mark_degraded(&self, error: &str) {
        if let Ok(mut since) = self.health.since.lock() {
            if !self.health.degraded.swap(true, Ordering::AcqRel) {
                self.health.degradations.fetch_add(1, Ordering::Relaxed);
                *since = (Instant::now(), Some(error.to_owned()));
                tracing::warn!(
                    engine = self.engine.name(),
                    "shared limits degraded: {error}; counting in this process until the engine answers again"
                );
                metrics::gauge!("kiro_gateway_shared_limits_degraded", "engine" => self.engine.name())
                    .set(1.0);
            }
        }
    }

    fn mark_healthy(&self) {
        if let Ok(mut since) = self.health.since.lock() {
            if self.health.degraded.swap(false, Ordering::AcqRel) {
                *since = (Instant::now(), None);
                tracing::info!(
                    engine = self.engine.name(),
                    "shared limits restored: counting in the shared engine again"
                );
                metrics::gauge!("kiro_gateway_shared_limits_degraded", "engine" => self.engine.name())
                    .set(0.0);
            }
        }
    }

    /// What `/ready` shows.
    pub fn status(&self) -> Value {
        let (since, error) = self
            .health
            .since
            .lock()
            .map(|s| (s.0, s.1.clone()))
            .unwrap_or((Instant::now(), None));
        let state = if self.is_degraded() {
            "degraded"
        } else if self.in_use() {
            "shared"
        } else {
            "standby"
        };
        let mut status = json!({
            "engine": self.engine.name(),
            "state": state,
            "for_seconds": since.elapsed().as_secs(),
            "busy": self.busy(),
        });
        if let Some(error) = error {
            status["error"] = json!(error);
        }
        status
    }

    /// Runs `call` within [`COMMAND_TIMEOUT`] once the engine has room for it: the wait for
    /// room (at most [`QUEUE_WAIT`]) is not the engine's fault, so running out of it fails
    /// this call only; a call that fails or times out marks the engine degraded.
    async fn bounded<'a, T>(
        &'a self,
        what: &str,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let _permit = match &self.gate {
            Some(gate) => match tokio::time::timeout(QUEUE_WAIT, gate.acquire()).await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kiro_gateway_shared_limits_busy_total", "engine" => self.engine.name())
                        .increment(1);
                    return Err(format!(
                        "{} had no free connection for {what} within {} ms",
                        self.engine.name(),
                        QUEUE_WAIT.as_millis()
                    ));
                }
            },
            None => None,
        };
        let outcome = match tokio::time::timeout(COMMAND_TIMEOUT, call()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "{} did not answer {what} within {} ms",
                self.engine.name(),
                COMMAND_TIMEOUT.as_millis()
            )),
        };
        if let Err(error) = &outcome {
            self.mark_degraded(error);
        }
        outcome
    }

    /// Admits one request in the engine: `asks` are `(subject, rpm_limit, max_concurrency)`
    /// (0 for none). Admitted: the leases of the slots taken, remembered for renewal.
    /// Refused: the index of the refusing subject and why; nothing is held.
    pub async fn admit(
        &self,
        asks: &[(String, u32, u32)],
    ) -> Result<Result<Vec<Lease>, (usize, Refusal)>, EngineError> {
        let asks: Vec<Ask> = asks
            .iter()
            .map(|(subject, rpm_limit, max_concurrency)| Ask {
                subject: subject.clone(),
                rpm_limit: *rpm_limit,
                max_concurrency: *max_concurrency,
                lease: uuid::Uuid::new_v4().simple().to_string(),
            })
            .collect();
        let leases: Vec<Lease> = asks
            .iter()
            .filter(|ask| ask.max_concurrency > 0)
            .map(|ask| Lease {
                subject: ask.subject.clone(),
                lease: ask.lease.clone(),
            })
            .collect();
        // Remembered first: a renewal running meanwhile must not miss them.
        if let Ok(mut held) = self.held.lock() {
            for lease in &leases {
                held.insert(lease.lease.clone(), lease.subject.clone());
            }
        }
        let mut asked = false;
        let outcome = self
            .bounded("an admission", || {
                if self.is_degraded() {
                    // Marked while this call waited for room: no use asking.
                    let error = format!("{} is degraded", self.engine.name());
                    return Box::pin(async move { Err(error) });
                }
                asked = true;
                self.engine.admit(&asks, RATE_WINDOW, LEASE_TTL)
            })
            .await;
        match outcome {
            Ok(Verdict::Admitted) => Ok(Ok(leases)),
            Ok(Verdict::Refused { at, why }) => {
                leases.iter().for_each(|l| self.forget(&l.lease));
                Ok(Err((at, why)))
            }
            // Some may have been taken before the failure: given back to be sure. A call that
            // never reached the engine (pool busy, engine degraded) took nothing, and a
            // release would only add load to a saturated pool.
            Err(error) if asked => {
                leases.into_iter().for_each(|l| self.release(l));
                Err(error)
            }
            Err(error) => {
                leases.iter().for_each(|l| self.forget(&l.lease));
                Err(error)
            }
        }
    }

    /// Counts a request of `subject` in the shared window.
    pub async fn hit(&self, subject: &str, limit: u32) -> Result<Hit, EngineError> {
        self.bounded("a window hit", || {
            self.engine.hit(subject, limit, RATE_WINDOW)
        })
        .await
    }

    /// Takes a shared slot of `subject`; the lease is remembered for renewal.
    pub async fn acquire(&self, subject: &str, cap: u32) -> Result<Option<Lease>, EngineError> {
        let lease = uuid::Uuid::new_v4().simple().to_string();
        // Remembered first: a renewal running meanwhile must not miss it.
        if let Ok(mut held) = self.held.lock() {
            held.insert(lease.clone(), subject.to_owned());
        }
        let lease = Lease {
            subject: subject.to_owned(),
            lease,
        };
        let outcome = self
            .bounded("a slot request", || {
                self.engine.acquire(subject, cap, &lease.lease, LEASE_TTL)
            })
            .await;
        match outcome {
            Ok(true) => Ok(Some(lease)),
            Ok(false) => {
                self.forget(&lease.lease);
                Ok(None)
            }
            Err(error) => {
                // It may have been taken before the timeout: give it back to be sure.
                self.release(lease);
                Err(error)
            }
        }
    }

    fn forget(&self, lease: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(lease);
        }
    }

    /// Gives a slot back without waiting (the background task does the I/O).
    pub fn release(&self, lease: Lease) {
        self.forget(&lease.lease);
        let _ = self.releases.send((lease.subject, lease.lease));
    }

    /// Slots held by this process now.
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len())
    }

    /// Probes the engine now: healthy again on an answer.
    pub async fn probe(&self) -> bool {
        let ok = self
            .bounded("a probe", || self.engine.probe())
            .await
            .is_ok();
        if ok {
            self.mark_healthy();
        }
        ok
    }

    /// Gives slots back, renews held slots and probes a degraded engine, until aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let limits = Arc::clone(self);
        let mut releases = self
            .releases_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
            .expect("SharedLimits::spawn is called once");
        tokio::spawn(async move {
            let mut probe = tokio::time::interval(PROBE_EVERY);
            probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renew = tokio::time::interval(RENEW_EVERY);
            renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(first) = releases.recv() => {
                        // Everything waiting goes in one call. A failed release is not
                        // retried: the lease expires by itself.
                        let mut batch = vec![first];
                        while batch.len() < RELEASE_BATCH {
                            match releases.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        let _ = limits
                            .bounded("a slot release", || limits.engine.release_all(&batch))
                            .await;
                    }
                    _ = probe.tick() => {
                        if limits.is_degraded() {
                            limits.probe().await;
                        }
                    }
                    _ = renew.tick() => limits.renew_and_tidy().await,
                }
            }
        })
    }

    async fn renew_and_tidy(&self) {
        if self.is_degraded() {
            return;
        }
        let held: Vec<(String, String)> = self
            .held
            .lock()
            .map(|h| h.iter().map(|(l, s)| (s.clone(), l.clone())).collect())
            .unwrap_or_default();
        if !held.is_empty() {
            let _ = self
                .bounded("a lease renewal", || self.engine.renew(&held, LEASE_TTL))
                .await;
        }
        let _ = self.probe().await;
    }
}

/// A shared slot held by one request.
#[derive(Debug)]
pub struct Lease {
    subject: String,
    lease: String,
}

#[cfg(test)]
mod tests;
