//! Shared counters in the PostgreSQL database the processes already share (unlogged tables and
//! functions of migration 0009). An admission is one call of `kiro_limit_admit`:
//! every slot (a per-subject count row bumped below the cap, plus the lease's row) and every
//! window hit (an upsert that counts only below the limit) of the request, all or nothing, in
//! the one implicit transaction of that statement. `kiro_limit_hit` and `kiro_limit_take`
//! do one step alone. All read the database's clock. Releases are batched into one call of
//! `kiro_limit_release`.
//!
//! The counters have their own connection pool (`SHARED_LIMITS_PG_POOL` connections), so a
//! busy store pool never delays them and they never starve the store; calls beyond it queue
//! in [`super::SharedLimits`] (see [`CounterEngine::parallelism`]).

use std::time::Duration;

use bb8::Pool;
use bb8_postgres::PostgresConnectionManager;
use futures_util::future::BoxFuture;
use tokio_postgres::{Config, NoTls};

use super::{Ask, CounterEngine, EngineError, Hit, Refusal, Verdict, COMMAND_TIMEOUT, RATE_WINDOW};

type PgPool = Pool<PostgresConnectionManager<NoTls>>;

/// See the module docs.
pub struct PgCounters {
    pool: PgPool,
    size: u32,
}

/// Connections of the counters' pool unless `SHARED_LIMITS_PG_POOL` says otherwise.
pub const DEFAULT_POOL: u32 = 8;

fn failed(error: impl std::fmt::Display) -> EngineError {
    format!("postgres: {error}")
}

impl PgCounters {
    /// A pool of `size` connections to `url`; connects lazily, so a database that is down
    /// makes the counters start degraded (the store itself fails the start in that case anyway).
    pub fn connect(url: &str, size: u32) -> Result<Self, String> {
        if size == 0 {
            return Err("SHARED_LIMITS_PG_POOL must be at least 1".into());
        }
        let config: Config = url.parse().map_err(|e| {
            format!(
                "invalid PostgreSQL URL {}: {e}",
                crate::store::redact_url(url)
            )
        })?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = Pool::builder()
            .max_size(size)
            .connection_timeout(COMMAND_TIMEOUT)
            .build_unchecked(manager);
        Ok(PgCounters { pool, size })
    }

    async fn client(
        &self,
    ) -> Result<bb8::PooledConnection<'_, PostgresConnectionManager<NoTls>>, EngineError> {
        self.pool.get().await.map_err(failed)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

impl CounterEngine for PgCounters {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn hit(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'_, Result<Hit, EngineError>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT admitted, window_left_ms FROM kiro_limit_hit($1, $2, $3)",
                    &[&subject, &to_i32(limit), &millis(window)],
                )
                .await
                .map_err(failed)?;
            let admitted: bool = row.get(0);
            let left: i64 = row.get(1);
            Ok(if admitted {
                Hit::Admitted
            } else {
                Hit::Refused(Duration::from_millis(left.max(0).unsigned_abs()))
            })
        })
    }

    fn acquire(
        &self,
        subject: &str,
        cap: u32,
        lease: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, EngineError>> {
        let subject = subject.to_owned();
        let lease = lease.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT kiro_limit_take($1, $2, $3, $4)",
                    &[&subject, &to_i32(cap), &lease, &millis(ttl)],
                )
                .await
                .map_err(failed)?;
            Ok(row.get(0))
        })
    }

    fn admit<'a>(
        &'a self,
        asks: &'a [Ask],
        window: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Verdict, EngineError>> {
        Box::pin(async move {
            let subjects: Vec<&str> = asks.iter().map(|a| a.subject.as_str()).collect();
            let rpm: Vec<i32> = asks.iter().map(|a| to_i32(a.rpm_limit)).collect();
            let caps: Vec<i32> = asks.iter().map(|a| to_i32(a.max_concurrency)).collect();
            let leases: Vec<&str> = asks.iter().map(|a| a.lease.as_str()).collect();
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT refused_at, refused_kind, window_left_ms \
                     FROM kiro_limit_admit($1, $2, $3, $4, $5, $6)",
                    &[
                        &subjects,
                        &rpm,
                        &caps,
                        &leases,
                        &millis(window),
                        &millis(ttl),
                    ],
                )
                .await
                .map_err(failed)?;
            let refused_at: i32 = row.get(0);
            let Some(at) = usize::try_from(refused_at)
                .ok()
                .and_then(|at| at.checked_sub(1))
            else {
                return Ok(Verdict::Admitted);
            };
            let kind: Option<String> = row.get(1);
            let left: i64 = row.get(2);
            let why = match kind.as_deref() {
                Some("concurrency") => Refusal::Concurrency,
                Some("rate") => Refusal::Rate(Duration::from_millis(left.max(0).unsigned_abs())),
                other => return Err(failed(format!("unexpected refusal {other:?}"))),
            };
            if at >= asks.len() {
                return Err(failed(format!(
                    "refusal of subject {refused_at} of {}",
                    asks.len()
                )));
            }
            Ok(Verdict::Refused { at, why })
        })
    }

    fn release_all<'a>(
        &'a self,
        held: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let leases: Vec<&str> = held.iter().map(|(_, lease)| lease.as_str()).collect();
            let client = self.client().await?;
            client
                .execute("SELECT kiro_limit_release($1)", &[&leases])
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn parallelism(&self) -> Option<usize> {
        usize::try_from(self.size).ok()
    }

    fn release(&self, _subject: &str, lease: &str) -> BoxFuture<'_, Result<(), EngineError>> {
        let lease = lease.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute("SELECT kiro_limit_release(ARRAY[$1::text])", &[&lease])
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn renew(
        &self,
        held: &[(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        let leases: Vec<String> = held.iter().map(|(_, lease)| lease.clone()).collect();
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE limit_slots \
                     SET expires_at = clock_timestamp() + $2::bigint * interval '1 millisecond' \
                     WHERE lease = ANY($1)",
                    &[&leases, &millis(ttl)],
                )
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let client = self.client().await?;
            // Windows before the previous one can no longer be hit.
            client
                .execute(
                    "DELETE FROM limit_windows WHERE window_index < \
                     floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint / $1 - 1",
                    &[&millis(RATE_WINDOW)],
                )
                .await
                .map_err(failed)?;
            Ok(())
        })
    }
}
