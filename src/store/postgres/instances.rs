//! PostgreSQL: the gateway processes sharing this database and the round-robin turn they
//! share.

use std::time::Duration;

use kiro_layers::store::*;
use tokio_postgres::SimpleQueryMessage;

use super::{bump, PgErr, PgStore, R};

/// Rows of processes not seen for this many `alive_within` periods are deleted.
const FORGET_AFTER_PERIODS: f64 = 20.0;

impl PgStore {
    pub(crate) async fn heartbeat_(&self, instance: &str, alive_within: Duration) -> R<u32> {
        let within = alive_within.as_secs_f64();
        let mut conn = self.conn().await?;
        // The database's clock decides who is alive, so the processes' clocks need not agree.
        let tx = conn.transaction().await?;
        let refreshed = tx
            .execute(
                "UPDATE gateway_instances SET seen_at = now() WHERE instance = $1 \
                 AND seen_at >= now() - make_interval(secs => $2)",
                &[&instance, &within],
            )
            .await?;
        if refreshed == 0 {
            // New, or back after the others stopped counting it: they must count again.
            tx.execute(
                "INSERT INTO gateway_instances (instance, seen_at) VALUES ($1, now()) \
                 ON CONFLICT (instance) DO UPDATE SET seen_at = now()",
                &[&instance],
            )
            .await?;
            bump(&tx, Topic::Instances).await?;
        }
        tx.execute(
            "DELETE FROM gateway_instances WHERE seen_at < now() - make_interval(secs => $1)",
            &[&(within * FORGET_AFTER_PERIODS)],
        )
        .await?;
        let alive: i64 = tx
            .query_one(
                "SELECT count(*) FROM gateway_instances \
                 WHERE seen_at >= now() - make_interval(secs => $1)",
                &[&within],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(u32::try_from(alive).unwrap_or(u32::MAX))
    }

    pub(crate) async fn leave_(&self, instance: &str) -> R<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let gone = tx
            .execute(
                "DELETE FROM gateway_instances WHERE instance = $1",
                &[&instance],
            )
            .await?;
        if gone > 0 {
            bump(&tx, Topic::Instances).await?;
        }
        Ok(tx.commit().await?)
    }

    pub(crate) async fn next_turn_(&self) -> R<i64> {
        // On the request path of every allocation while processes share the turn: the simple
        // protocol makes it one round trip (no prepare), and nextval takes no row lock and
        // waits for no commit.
        let conn = self.conn().await?;
        let messages = conn.simple_query("SELECT nextval('pool_turn')").await?;
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .ok_or_else(|| {
                PgErr(StoreError::Backend(
                    "nextval('pool_turn') returned no number".into(),
                ))
            })
    }
}
