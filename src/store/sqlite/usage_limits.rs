//! SQLite: the Kiro usage-limits snapshot per account (`account_usage_limits`, migration 0011).

use kiro_layers::store::{AccountUsageLimits, LimitSnapshot, StoreError, Timestamp};
use rusqlite::{params, Connection};

use super::tenancy::all;
use super::{ms, ts, R};

pub(crate) fn put(
    c: &Connection,
    account_id: i64,
    outcome: Result<LimitSnapshot, String>,
    at: Timestamp,
) -> R<()> {
    let at = ms(at);
    let written = match outcome {
        Ok(snapshot) => c.execute(
            "INSERT INTO account_usage_limits (account_id, snapshot, fetched_at) \
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1) \
             ON CONFLICT (account_id) DO UPDATE SET snapshot = excluded.snapshot, \
             fetched_at = excluded.fetched_at, error = NULL, error_at = NULL",
            params![account_id, serde_json::to_string(&snapshot)?, at],
        )?,
        Err(error) => c.execute(
            "INSERT INTO account_usage_limits (account_id, error, error_at) \
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1) \
             ON CONFLICT (account_id) DO UPDATE SET error = excluded.error, \
             error_at = excluded.error_at",
            params![account_id, error, at],
        )?,
    };
    if written == 0 {
        return Err(StoreError::NotFound(format!("account {account_id}")).into());
    }
    Ok(())
}

pub(crate) fn list(c: &Connection) -> R<Vec<AccountUsageLimits>> {
    all(
        c,
        "SELECT account_id, snapshot, fetched_at, error, error_at FROM account_usage_limits \
         ORDER BY account_id",
        &[],
        |r| {
            Ok(AccountUsageLimits {
                account_id: r.get(0)?,
                snapshot: r
                    .get::<_, Option<String>>(1)?
                    .map(|s| serde_json::from_str(&s))
                    .transpose()?,
                fetched_at: r.get::<_, Option<i64>>(2)?.map(ts),
                error: r.get(3)?,
                error_at: r.get::<_, Option<i64>>(4)?.map(ts),
            })
        },
    )
}
