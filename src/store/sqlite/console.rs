//! SQLite: web console sessions (hashed ids only, see `schema/sqlite/0006_console_sessions.sql`).

use kiro_layers::store::ConsoleSessionRow;
use rusqlite::{params, Connection, OptionalExtension};

use super::{ms, now_ms, ts, R};

pub(crate) fn create(c: &Connection, s: &ConsoleSessionRow) -> R<()> {
    c.execute(
        "INSERT INTO console_sessions (id_hash, role, key_id, created_at, expires_at, user_agent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            s.id_hash,
            s.role,
            s.key_id,
            now_ms(),
            ms(s.expires_at),
            s.user_agent
        ],
    )?;
    Ok(())
}

pub(crate) fn get(c: &Connection, id_hash: &[u8]) -> R<Option<ConsoleSessionRow>> {
    let row = c
        .prepare_cached(
            "SELECT role, key_id, expires_at, user_agent FROM console_sessions \
             WHERE id_hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![id_hash, now_ms()], |r| {
            Ok(ConsoleSessionRow {
                id_hash: id_hash.to_vec(),
                role: r.get(0)?,
                key_id: r.get(1)?,
                expires_at: ts(r.get(2)?),
                user_agent: r.get(3)?,
            })
        })
        .optional()?;
    Ok(row)
}

pub(crate) fn delete(c: &Connection, id_hash: &[u8]) -> R<()> {
    c.execute(
        "DELETE FROM console_sessions WHERE id_hash = ?1",
        params![id_hash],
    )?;
    Ok(())
}

pub(crate) fn delete_of_key(c: &Connection, key_id: i64) -> R<u64> {
    let n = c.execute(
        "DELETE FROM console_sessions WHERE key_id = ?1 OR expires_at <= ?2",
        params![key_id, now_ms()],
    )?;
    Ok(n as u64)
}
