//! What sharing rate and concurrency limits across processes costs per request: the quota
//! guard's admission of one request (and the release of its permit) with the counters in the
//! process (`local`), in PostgreSQL and in Redis, on loopback servers.
//!
//! - `rpm_key`: a key with an `rpm_limit` (one window hit per request);
//! - `rpm_and_concurrency_key`: a key with both (a slot take, a window hit, a slot release);
//! - `unlimited_key`: a key with neither while an engine is configured (must cost what `local`
//!   costs: no round trip);
//! - `parallel_64`: `rpm_and_concurrency_key` from 64 tasks at once on one key (every
//!   admission waits for the same counters: the worst case); the time per admission is the
//!   inverse of the admissions per second one process can make;
//! - `parallel_64_keys`: the same with each task on a key of its own (the pool is the bound).
//!
//! A run is valid only if every admission was counted in the engine: the bench fails when the
//! engine was marked degraded at any time or a call found no free connection (its request was then counted
//! locally, which would measure `local` under the engine's name).
//!
//! PostgreSQL and Redis are measured when `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set
//! (`source scripts/pg.sh; source scripts/redis.sh; cargo bench --bench shared_limits`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kiro_gateway::store::Secret;
use kiro_gateway::tenancy::limits::{Limits, QuotaBook, Subject};
use kiro_gateway::tenancy::shared_limits::{
    CounterEngine, PgCounters, RedisCounters, SharedLimits, DEFAULT_PG_POOL,
};
use kiro_layers::quota::{Admission, QuotaGuard};
use kiro_layers::traits::Principal;

fn principal(key: &str) -> Principal {
    Principal {
        key_id: key.into(),
        user_id: None,
        agent_id: None,
        allowed_models: vec![],
    }
}

async fn admit(book: &QuotaBook, principal: &Principal) {
    let permit = match book.admit(principal) {
        Admission::Now(decision) => decision,
        Admission::Later(decision) => decision.await,
    };
    drop(permit.expect("the bench limits are never reached"));
}

fn book(shared: Option<Arc<SharedLimits>>) -> QuotaBook {
    let book = QuotaBook::new();
    let high = 1_000_000_000;
    book.set(
        Subject::Key("rpm".into()),
        Limits {
            rpm_limit: Some(high),
            ..Limits::default()
        },
    );
    book.set(
        Subject::Key("both".into()),
        Limits {
            rpm_limit: Some(high),
            max_concurrency: Some(high),
            ..Limits::default()
        },
    );
    book.set(Subject::Key("free".into()), Limits::default());
    for task in 0..64 {
        book.set(
            Subject::Key(format!("both-{task}")),
            Limits {
                rpm_limit: Some(high),
                max_concurrency: Some(high),
                ..Limits::default()
            },
        );
    }
    if let Some(shared) = shared {
        book.share(shared);
    }
    book
}

/// `SHARED_LIMITS_PG_POOL` as the gateway reads it, to measure other pool sizes.
fn pg_pool() -> u32 {
    std::env::var("SHARED_LIMITS_PG_POOL")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(DEFAULT_PG_POOL)
}

async fn engines() -> Vec<(&'static str, Option<Arc<dyn CounterEngine>>)> {
    let mut out: Vec<(&'static str, Option<Arc<dyn CounterEngine>>)> = vec![("local", None)];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("TEST_DATABASE_URL answers");
        tokio::spawn(connection);
        let name = format!("kg_bench_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        kiro_gateway::store::open(&url, &Secret::from_bytes([9; 32]))
            .await
            .unwrap();
        out.push((
            "postgres",
            Some(Arc::new(PgCounters::connect(&url, pg_pool()).unwrap())),
        ));
    }
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        out.push((
            "redis",
            Some(Arc::new(RedisCounters::connect(&url).unwrap())),
        ));
    }
    out
}

fn shared_limits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engines = runtime.block_on(engines());
    let mut group = c.benchmark_group("shared_limits");
    group.measurement_time(Duration::from_secs(5));
    for (name, engine) in engines {
        let shared: Option<Arc<SharedLimits>> = engine.map(|engine| {
            let _guard = runtime.enter();
            let shared = SharedLimits::new(engine, None);
            shared.spawn();
            shared
        });
        let book = book(shared.clone());
        for (case, key) in [
            ("rpm_key", "rpm"),
            ("rpm_and_concurrency_key", "both"),
            ("unlimited_key", "free"),
        ] {
            let principal = principal(key);
            group.bench_function(format!("{name}/{case}"), |b| {
                b.to_async(&runtime).iter(|| admit(&book, &principal));
            });
        }
        let book = Arc::new(book);
        for (case, own_keys) in [("parallel_64", false), ("parallel_64_keys", true)] {
            group.bench_function(format!("{name}/{case}"), |b| {
                b.to_async(&runtime)
                    .iter_custom(|iters| parallel_64(Arc::clone(&book), iters, own_keys));
            });
        }
        if let Some(shared) = &shared {
            assert!(
                shared.degradations() == 0 && shared.busy() == 0,
                "{name}: not valid, some admissions were counted locally: {}",
                shared.status()
            );
        }
    }
    group.finish();
}

/// `iters` admissions from 64 tasks at once, on key `both` or, with `own_keys`, on one key
/// per task; the wall time of all of them.
async fn parallel_64(book: Arc<QuotaBook>, iters: u64, own_keys: bool) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..64u64)
        .map(|task| {
            let book = Arc::clone(&book);
            let share = iters / 64 + u64::from(task < iters % 64);
            tokio::spawn(async move {
                let principal = if own_keys {
                    principal(&format!("both-{task}"))
                } else {
                    principal("both")
                };
                for _ in 0..share {
                    admit(&book, &principal).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

criterion_group!(benches, shared_limits);
criterion_main!(benches);
