//! PostgreSQL: the Kiro usage-limits snapshot per account (`account_usage_limits`, migration
//! 0011).

use kiro_layers::store::{AccountUsageLimits, LimitSnapshot, StoreError, Timestamp};

use super::tenancy::{all, not_found};
use super::{PgStore, R};

impl PgStore {
    pub(crate) async fn put_usage_limits_(
        &self,
        account_id: i64,
        outcome: Result<LimitSnapshot, String>,
        at: Timestamp,
    ) -> R<()> {
        let conn = self.conn().await?;
        let written = match outcome {
            Ok(snapshot) => {
                let json = serde_json::to_value(&snapshot)
                    .map_err(|e| StoreError::Invalid(format!("usage limits: {e}")))?;
                conn.execute(
                    "INSERT INTO account_usage_limits (account_id, snapshot, fetched_at) \
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
                     ON CONFLICT (account_id) DO UPDATE SET snapshot = excluded.snapshot, \
                     fetched_at = excluded.fetched_at, error = NULL, error_at = NULL",
                    &[&account_id, &json, &at],
                )
                .await?
            }
            Err(error) => {
                conn.execute(
                    "INSERT INTO account_usage_limits (account_id, error, error_at) \
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
                     ON CONFLICT (account_id) DO UPDATE SET error = excluded.error, \
                     error_at = excluded.error_at",
                    &[&account_id, &error, &at],
                )
                .await?
            }
        };
        if written == 0 {
            return Err(not_found(format!("account {account_id}")));
        }
        Ok(())
    }

    pub(crate) async fn list_usage_limits_(&self) -> R<Vec<AccountUsageLimits>> {
        all(
            &*self.conn().await?,
            "SELECT account_id, snapshot, fetched_at, error, error_at FROM account_usage_limits \
             ORDER BY account_id",
            &[],
            |r| {
                let snapshot: Option<serde_json::Value> = r.try_get(1)?;
                Ok(AccountUsageLimits {
                    account_id: r.try_get(0)?,
                    snapshot: snapshot
                        .map(serde_json::from_value)
                        .transpose()
                        .map_err(|e| {
                            StoreError::Backend(format!("stored usage limits are corrupt: {e}"))
                        })?,
                    fetched_at: r.try_get(2)?,
                    error: r.try_get(3)?,
                    error_at: r.try_get(4)?,
                })
            },
        )
        .await
    }
}
