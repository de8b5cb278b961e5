//! SQLite: the gateway processes sharing this file and the round-robin turn they share.

use std::time::Duration;

use kiro_layers::store::*;
use rusqlite::{params, Connection};

use super::tenancy::immediate;
use super::{bump, now_ms, R};

/// Rows of processes not seen for this many `alive_within` periods are deleted.
const FORGET_AFTER_PERIODS: i64 = 20;

pub(crate) fn heartbeat(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    instance: &str,
    alive_within: Duration,
) -> R<u32> {
    let now = now_ms();
    let within = i64::try_from(alive_within.as_millis()).unwrap_or(i64::MAX / 2);
    let alive_since = now.saturating_sub(within);
    let tx = immediate(c)?;
    let refreshed = tx.execute(
        "UPDATE gateway_instances SET seen_at = ?2 WHERE instance = ?1 AND seen_at >= ?3",
        params![instance, now, alive_since],
    )?;
    if refreshed == 0 {
        // New, or back after the others stopped counting it: they must count again.
        tx.execute(
            "INSERT INTO gateway_instances (instance, seen_at) VALUES (?1, ?2) \
             ON CONFLICT (instance) DO UPDATE SET seen_at = excluded.seen_at",
            params![instance, now],
        )?;
        bump(&tx, topics, Topic::Instances)?;
    }
    tx.execute(
        "DELETE FROM gateway_instances WHERE seen_at < ?1",
        [now.saturating_sub(within.saturating_mul(FORGET_AFTER_PERIODS))],
    )?;
    let alive: i64 = tx.query_row(
        "SELECT COUNT(*) FROM gateway_instances WHERE seen_at >= ?1",
        [alive_since],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok(u32::try_from(alive).unwrap_or(u32::MAX))
}

pub(crate) fn leave(c: &mut Connection, topics: &mut Vec<Topic>, instance: &str) -> R<()> {
    let tx = immediate(c)?;
    if tx.execute(
        "DELETE FROM gateway_instances WHERE instance = ?1",
        [instance],
    )? > 0
    {
        bump(&tx, topics, Topic::Instances)?;
    }
    Ok(tx.commit()?)
}

pub(crate) fn next_turn(c: &mut Connection) -> R<i64> {
    // One short write transaction: SQLite serialises the writers of every process.
    let tx = immediate(c)?;
    tx.execute("UPDATE pool_turn SET turn = turn + 1 WHERE id = 1", [])?;
    let turn = tx.query_row("SELECT turn FROM pool_turn WHERE id = 1", [], |r| r.get(0))?;
    tx.commit()?;
    Ok(turn)
}
