//! SQLite: sign-in flows shared by the processes on this file (`login_flows`, migration 0012).

use std::time::Duration;

use kiro_layers::store::{LoginFlowRow, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

use super::tenancy::{all, immediate};
use super::{ms, now_ms, ts, Secret, R};
use crate::store::crypto_error;

/// Associated data of the encrypted column.
const SECRETS_COLUMN: &str = "login_flows.secrets";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(crate) fn create(
    c: &mut Connection,
    s: &Secret,
    row: LoginFlowRow,
    lease: Duration,
    max_live: u32,
) -> R<()> {
    let tx = immediate(c)?;
    let live: i64 = tx.query_row(
        "SELECT COUNT(*) FROM login_flows WHERE finished_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    if live >= i64::from(max_live) {
        return Err(StoreError::Conflict(format!(
            "{live} sign-ins are already in progress: finish or cancel one first."
        ))
        .into());
    }
    let now = now_ms();
    let inserted = tx.execute(
        "INSERT INTO login_flows (id, status, version, view, plan, secrets_enc, expires_at, \
         finished_at, owner, lease_until, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
        params![
            row.id,
            row.status,
            row.version,
            row.view,
            row.plan,
            s.encrypt(SECRETS_COLUMN, &row.secrets),
            ms(row.expires_at),
            row.finished_at.map(ms),
            row.owner,
            row.owner
                .as_ref()
                .map(|_| now.saturating_add(millis(lease))),
            now
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("sign-in `{}` exists already", row.id)).into());
    }
    Ok(tx.commit()?)
}

pub(crate) fn get(c: &Connection, s: &Secret, id: &str) -> R<Option<LoginFlowRow>> {
    let found = c
        .query_row(
            "SELECT status, version, view, plan, secrets_enc, expires_at, finished_at, owner, \
             lease_until FROM login_flows WHERE id = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((status, version, view, plan, sealed, expires, finished, owner, lease)) = found else {
        return Ok(None);
    };
    Ok(Some(LoginFlowRow {
        id: id.to_owned(),
        status,
        version,
        view,
        plan,
        secrets: s.decrypt(SECRETS_COLUMN, &sealed).map_err(crypto_error)?,
        expires_at: ts(expires),
        finished_at: finished.map(ts),
        owner,
        lease_until: lease.map(ts),
    }))
}

pub(crate) fn update(c: &Connection, s: &Secret, row: LoginFlowRow, expected: i64) -> R<bool> {
    let written = c.execute(
        "UPDATE login_flows SET status = ?3, version = ?2 + 1, view = ?4, plan = ?5, \
         secrets_enc = ?6, expires_at = ?7, finished_at = ?8 WHERE id = ?1 AND version = ?2",
        params![
            row.id,
            expected,
            row.status,
            row.view,
            row.plan,
            s.encrypt(SECRETS_COLUMN, &row.secrets),
            ms(row.expires_at),
            row.finished_at.map(ms)
        ],
    )?;
    Ok(written == 1)
}

pub(crate) fn lease(c: &Connection, id: &str, owner: &str, lease: Duration) -> R<bool> {
    let now = now_ms();
    let written = c.execute(
        "UPDATE login_flows SET owner = ?2, lease_until = ?3 WHERE id = ?1 \
         AND finished_at IS NULL AND (owner = ?2 OR owner IS NULL OR lease_until IS NULL \
         OR lease_until < ?4)",
        params![id, owner, now.saturating_add(millis(lease)), now],
    )?;
    Ok(written == 1)
}

pub(crate) fn orphans(c: &Connection) -> R<Vec<String>> {
    all(
        c,
        "SELECT id FROM login_flows WHERE finished_at IS NULL \
         AND (lease_until IS NULL OR lease_until < ?1) ORDER BY created_at",
        &[&now_ms()],
        |r| Ok(r.get(0)?),
    )
}

pub(crate) fn sweep(c: &Connection, keep: Duration) -> R<u64> {
    let before = now_ms().saturating_sub(millis(keep));
    let n = c.execute(
        "DELETE FROM login_flows WHERE finished_at < ?1 \
         OR (finished_at IS NULL AND expires_at < ?1)",
        params![before],
    )?;
    Ok(n as u64)
}
