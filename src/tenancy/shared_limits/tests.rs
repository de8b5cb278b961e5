//! The shared limits against an engine in memory that can be made to fail or hang: the
//! switch to local counting and back, the bounded calls, and the admission logic of two
//! books ("two processes") counting in one engine. The real engines are tested in
//! `tests/shared_limits.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kiro_layers::quota::{Admission, QuotaGuard, QuotaPermit};
use kiro_layers::traits::Principal;
use kiro_layers::GatewayError;

use super::*;
use crate::tenancy::limits::{Limits, QuotaBook, Subject};

#[derive(Default)]
struct MemoryEngine {
    windows: Mutex<HashMap<String, u32>>,
    slots: Mutex<HashMap<String, HashSet<String>>>,
    calls: AtomicUsize,
    fail: AtomicBool,
    fail_hits: AtomicBool,
    hang: AtomicBool,
    /// How long each answer takes (a slow but healthy engine).
    delay: Mutex<Duration>,
    /// Calls served at once, as a connection pool bounds them (`None`: any number).
    parallel: Option<usize>,
}

impl MemoryEngine {
    fn answer<T: Send + 'static>(
        &self,
        value: impl FnOnce() -> T + Send + 'static,
    ) -> BoxFuture<'static, Result<T, EngineError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail.load(Ordering::SeqCst);
        let hang = self.hang.load(Ordering::SeqCst);
        if fail {
            return Box::pin(async { Err("memory: connection refused".to_owned()) });
        }
        let value = value();
        let delay = *self.delay.lock().unwrap();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if hang {
                futures_util::future::pending::<()>().await;
            }
            Ok(value)
        })
    }

    fn slots_of(&self, subject: &str) -> usize {
        self.slots
            .lock()
            .unwrap()
            .get(subject)
            .map_or(0, HashSet::len)
    }
}

impl CounterEngine for Arc<MemoryEngine> {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn hit(
        &self,
        subject: &str,
        limit: u32,
        _: Duration,
    ) -> BoxFuture<'_, Result<Hit, EngineError>> {
        if self.fail_hits.load(Ordering::SeqCst) {
            return Box::pin(async { Err("memory: window lost".to_owned()) });
        }
        let me = Arc::clone(self);
        let subject = subject.to_owned();
        self.answer(move || {
            let mut windows = me.windows.lock().unwrap();
            let count = windows.entry(subject).or_default();
            if *count >= limit {
                return Hit::Refused(Duration::from_secs(30));
            }
            *count += 1;
            Hit::Admitted
        })
    }

    fn acquire(
        &self,
        subject: &str,
        cap: u32,
        lease: &str,
        _: Duration,
    ) -> BoxFuture<'_, Result<bool, EngineError>> {
        let me = Arc::clone(self);
        let (subject, lease) = (subject.to_owned(), lease.to_owned());
        self.answer(move || {
            let mut slots = me.slots.lock().unwrap();
            let held = slots.entry(subject).or_default();
            if held.len() >= cap as usize {
                return false;
            }
            held.insert(lease);
            true
        })
    }

    fn release(&self, subject: &str, lease: &str) -> BoxFuture<'_, Result<(), EngineError>> {
        let me = Arc::clone(self);
        let (subject, lease) = (subject.to_owned(), lease.to_owned());
        self.answer(move || {
            if let Some(held) = me.slots.lock().unwrap().get_mut(&subject) {
                held.remove(&lease);
            }
        })
    }

    fn renew(&self, _: &[(String, String)], _: Duration) -> BoxFuture<'_, Result<(), EngineError>> {
        self.answer(|| ())
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        self.answer(|| ())
    }

    fn parallelism(&self) -> Option<usize> {
        self.parallel
    }
}

fn principal() -> Principal {
    Principal {
        key_id: "k1".into(),
        user_id: Some("u1".into()),
        agent_id: None,
        allowed_models: vec![],
    }
}

/// A "process": its own book, counting in `engine`.
fn process(engine: &Arc<MemoryEngine>, key: Limits) -> (QuotaBook, Arc<SharedLimits>) {
    let book = QuotaBook::new();
    book.set(Subject::Key("k1".into()), key);
    book.set(Subject::User("u1".into()), Limits::default());
    let shared = SharedLimits::new(Arc::new(Arc::clone(engine)), None);
    book.share(Arc::clone(&shared));
    (book, shared)
}

async fn admit(book: &QuotaBook) -> Result<QuotaPermit, GatewayError> {
    match book.admit(&principal()) {
        Admission::Now(decision) => decision,
        Admission::Later(decision) => decision.await,
    }
}

fn rpm(limit: u32) -> Limits {
    Limits {
        rpm_limit: Some(limit),
        ..Limits::default()
    }
}

#[tokio::test]
async fn two_books_on_one_engine_share_the_rate_window() {
    let engine = Arc::new(MemoryEngine::default());
    let (a, _sa) = process(&engine, rpm(4));
    let (b, _sb) = process(&engine, rpm(4));
    let mut admitted = 0;
    let mut refusal = None;
    for i in 0..10 {
        match admit(if i % 2 == 0 { &a } else { &b }).await {
            Ok(permit) => {
                admitted += 1;
                drop(permit);
            }
            Err(error) => refusal = Some(error),
        }
    }
    assert_eq!(admitted, 4, "4 of 10 across both processes");
    let refusal = refusal.unwrap();
    assert_eq!(refusal.status(), 429);
    assert!(refusal.message().contains("rate limit of API key `k1`"));
    assert_eq!(refusal.retry_after(), Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn two_books_on_one_engine_share_the_concurrency_cap_and_give_slots_back() {
    let engine = Arc::new(MemoryEngine::default());
    let cap = Limits {
        max_concurrency: Some(2),
        ..Limits::default()
    };
    let (a, sa) = process(&engine, cap);
    let (b, _sb) = process(&engine, cap);
    let _task = sa.spawn();
    let first = admit(&a).await.unwrap();
    let second = admit(&b).await.unwrap();
    let err = admit(&a).await.unwrap_err();
    assert!(err.message().contains("concurrency limit of API key `k1`"));
    assert_eq!(engine.slots_of("key:k1"), 2);
    assert_eq!(
        a.in_flight(&Subject::Key("k1".into())),
        1,
        "mirrored locally"
    );
    // The slot goes back through the release task, not inside drop.
    drop(first);
    assert_eq!(a.in_flight(&Subject::Key("k1".into())), 0);
    for _ in 0..100 {
        if engine.slots_of("key:k1") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.slots_of("key:k1"), 1);
    assert_eq!(sa.held(), 0);
    drop(admit(&a).await.unwrap());
    drop(second);
}

#[tokio::test]
async fn unlimited_subjects_never_reach_the_engine() {
    let engine = Arc::new(MemoryEngine::default());
    let (book, _shared) = process(&engine, Limits::default());
    for _ in 0..50 {
        assert!(matches!(book.admit(&principal()), Admission::Now(Ok(_))));
    }
    assert_eq!(engine.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_engine_in_standby_is_not_asked() {
    let engine = Arc::new(MemoryEngine::default());
    let book = QuotaBook::new();
    book.set(Subject::Key("k1".into()), rpm(1));
    let peers = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&peers);
    let shared = SharedLimits::new(
        Arc::new(Arc::clone(&engine)),
        Some(Arc::new(move || seen.load(Ordering::SeqCst))),
    );
    book.share(Arc::clone(&shared));
    // Alone: counted in memory, no round trip.
    assert!(matches!(book.admit(&principal()), Admission::Now(Ok(_))));
    assert_eq!(shared.status()["state"], "standby");
    assert_eq!(engine.calls.load(Ordering::SeqCst), 0);
    // A peer appears: counted in the engine.
    peers.store(true, Ordering::SeqCst);
    assert_eq!(shared.status()["state"], "shared");
    assert!(admit(&book).await.is_ok());
    assert_eq!(engine.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_engine_degrades_to_local_counting_and_comes_back() {
    let engine = Arc::new(MemoryEngine::default());
    let (book, shared) = process(&engine, rpm(2));
    engine.fail.store(true, Ordering::SeqCst);
    // The request that met the failure is decided locally, and so are the next ones.
    assert!(admit(&book).await.is_ok());
    assert!(shared.is_degraded());
    let status = shared.status();
    assert_eq!(status["state"], "degraded");
    assert!(status["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    let calls = engine.calls.load(Ordering::SeqCst);
    assert!(matches!(book.admit(&principal()), Admission::Now(Ok(_))));
    assert!(
        book.admit(&principal()).is_refused_now(),
        "the local window of 2 holds"
    );
    assert_eq!(
        engine.calls.load(Ordering::SeqCst),
        calls,
        "no round trip while degraded"
    );
    // The probe finds it back.
    assert!(!shared.probe().await);
    engine.fail.store(false, Ordering::SeqCst);
    assert!(shared.probe().await);
    assert!(!shared.is_degraded());
    assert_eq!(shared.status()["state"], "shared");
    assert!(admit(&book).await.is_ok(), "the shared window starts empty");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_engine_delays_a_request_by_the_command_timeout_at_most() {
    let engine = Arc::new(MemoryEngine::default());
    let (book, shared) = process(&engine, rpm(5));
    engine.hang.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    assert!(admit(&book).await.is_ok());
    assert_eq!(started.elapsed(), COMMAND_TIMEOUT);
    assert!(shared.is_degraded());
    let status = shared.status();
    assert!(status["error"].as_str().unwrap().contains("did not answer"));
}

#[tokio::test(start_paused = true)]
async fn a_saturated_engine_queues_admissions_without_degrading() {
    // One connection, 150 ms a call: 10 admissions at once queue for it; those that got no
    // connection within QUEUE_WAIT are counted locally, and the engine stays in use.
    let engine = Arc::new(MemoryEngine {
        delay: Mutex::new(Duration::from_millis(150)),
        parallel: Some(1),
        ..MemoryEngine::default()
    });
    let (book, shared) = process(&engine, rpm(100));
    let started = tokio::time::Instant::now();
    let decisions = futures_util::future::join_all((0..10).map(|_| admit(&book))).await;
    assert!(decisions.iter().all(Result::is_ok));
    assert_eq!(shared.degradations(), 0, "busy is not down");
    assert_eq!(shared.status()["state"], "shared");
    assert_eq!(shared.status()["busy"], 3);
    // 7 calls got the connection within the first second (at 0, 150, ..., 900 ms); the other
    // 3 gave up waiting at 1 s and never reached the engine.
    assert_eq!(engine.calls.load(Ordering::SeqCst), 7);
    assert_eq!(engine.windows.lock().unwrap().get("key:k1"), Some(&7));
    assert_eq!(started.elapsed(), Duration::from_millis(1050));
    // Free again: the next admission is counted in the engine.
    assert!(admit(&book).await.is_ok());
    assert_eq!(engine.windows.lock().unwrap().get("key:k1"), Some(&8));
}

#[tokio::test(start_paused = true)]
async fn admissions_queued_behind_a_dead_engine_do_not_wait_for_it() {
    // The engine hangs: the call holding the only connection times out and marks it
    // degraded; the queued ones then give up at once instead of timing out one by one.
    let engine = Arc::new(MemoryEngine {
        parallel: Some(1),
        ..MemoryEngine::default()
    });
    engine.hang.store(true, Ordering::SeqCst);
    let (book, shared) = process(&engine, rpm(100));
    let started = tokio::time::Instant::now();
    let decisions = futures_util::future::join_all((0..4).map(|_| admit(&book))).await;
    assert!(decisions.iter().all(Result::is_ok));
    assert!(shared.is_degraded());
    assert_eq!(shared.degradations(), 1);
    assert_eq!(started.elapsed(), COMMAND_TIMEOUT);
    assert_eq!(engine.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_slot_taken_before_a_failure_is_given_back() {
    let engine = Arc::new(MemoryEngine::default());
    let (book, shared) = process(
        &engine,
        Limits {
            rpm_limit: Some(10),
            max_concurrency: Some(1),
            ..Limits::default()
        },
    );
    let _task = shared.spawn();
    // The slot is taken, then the rate hit fails: the slot must not stay taken, and the
    // request is decided locally.
    engine.fail_hits.store(true, Ordering::SeqCst);
    let permit = admit(&book).await.unwrap();
    assert!(shared.is_degraded());
    drop(permit);
    engine.fail_hits.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if engine.slots_of("key:k1") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.slots_of("key:k1"), 0);
    assert_eq!(shared.held(), 0);
}

#[tokio::test]
async fn settings_select_the_engine() {
    let pg = "postgres://u@127.0.0.1:1/db";
    let sqlite = "sqlite://x.db";
    let redis = Some("redis://127.0.0.1:1");
    assert!(select(Mode::Off, pg, redis, 8).unwrap().is_none());
    assert!(select(Mode::Auto, sqlite, None, 8).unwrap().is_none());
    let (engine, with_peers) = pick(select(Mode::Auto, pg, None, 8));
    assert_eq!((engine.name(), with_peers), ("postgres", true));
    let (engine, with_peers) = pick(select(Mode::Auto, sqlite, redis, 8));
    assert_eq!((engine.name(), with_peers), ("redis", true));
    let (engine, with_peers) = pick(select(Mode::Postgres, pg, redis, 8));
    assert_eq!((engine.name(), with_peers), ("postgres", false));
    let (engine, with_peers) = pick(select(Mode::Redis, pg, redis, 8));
    assert_eq!((engine.name(), with_peers), ("redis", false));
    assert!(refusal(select(Mode::Redis, pg, None, 8)).contains("REDIS_URL"));
    assert!(refusal(select(Mode::Postgres, sqlite, None, 8)).contains("postgres://"));
    assert!("sometimes"
        .parse::<Mode>()
        .unwrap_err()
        .contains("off, auto"));
    assert_eq!("Valkey".parse::<Mode>().unwrap(), Mode::Redis);
    let bad = refusal(select(Mode::Redis, pg, Some("http://u:secret@h"), 8));
    assert!(!bad.contains("secret"), "{bad}");
    assert!(refusal(select(Mode::Postgres, pg, None, 0)).contains("SHARED_LIMITS_PG_POOL"));
}

fn pick(selected: Result<Option<Selected>, String>) -> (Arc<dyn CounterEngine>, bool) {
    let selected = selected.unwrap_or_else(|e| panic!("{e}")).unwrap();
    (selected.engine, selected.only_with_peers)
}

fn refusal<T>(result: Result<T, String>) -> String {
    match result {
        Ok(_) => panic!("the settings must be refused"),
        Err(error) => error,
    }
}

trait RefusedNow {
    fn is_refused_now(&self) -> bool;
}

impl RefusedNow for Admission {
    fn is_refused_now(&self) -> bool {
        matches!(self, Admission::Now(Err(_)))
    }
}
