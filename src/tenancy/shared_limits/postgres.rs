//! Shared counters in the PostgreSQL database the processes already share (tables and
//! functions of migration 0009). A window hit is one call of `kiro_limit_hit` (an upsert that
//! counts only below the limit); a slot take is one call of `kiro_limit_acquire` (count and
//! insert under a transaction-scoped advisory lock per subject). Both read the database's
//! clock. The counters have their own small connection pool, so a busy store pool never
//! delays them and they never starve the store.

use std::time::Duration;

use bb8::Pool;
use bb8_postgres::PostgresConnectionManager;
use futures_util::future::BoxFuture;
use tokio_postgres::{Config, NoTls};

use super::{CounterEngine, EngineError, Hit, COMMAND_TIMEOUT, RATE_WINDOW};

type PgPool = Pool<PostgresConnectionManager<NoTls>>;

/// See the module docs.
pub struct PgCounters {
    pool: PgPool,
}

fn failed(error: impl std::fmt::Display) -> EngineError {
    format!("postgres: {error}")
}

impl PgCounters {
    /// A pool for `url`; connects lazily, so a database that is down makes the counters start
    /// degraded (the store itself fails the start in that case anyway).
    pub fn connect(url: &str) -> Result<Self, String> {
        let config: Config = url.parse().map_err(|e| {
            format!(
                "invalid PostgreSQL URL {}: {e}",
                crate::store::redact_url(url)
            )
        })?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(COMMAND_TIMEOUT)
            .build_unchecked(manager);
        Ok(PgCounters { pool })
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
                    "SELECT kiro_limit_acquire($1, $2, $3, $4)",
                    &[&subject, &to_i32(cap), &lease, &millis(ttl)],
                )
                .await
                .map_err(failed)?;
            Ok(row.get(0))
        })
    }

    fn release(&self, _subject: &str, lease: &str) -> BoxFuture<'_, Result<(), EngineError>> {
        let lease = lease.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute("DELETE FROM limit_slots WHERE lease = $1", &[&lease])
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
