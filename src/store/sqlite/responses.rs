//! Stored Responses answers (`stored_responses`), always scoped to their owner.

use kiro_layers::store::ResponseRow;
use rusqlite::{params, Connection, OptionalExtension};

use super::R;

pub(crate) fn put(c: &Connection, row: &ResponseRow) -> R<()> {
    c.execute(
        "DELETE FROM stored_responses WHERE expires_at <= ?1",
        params![row.created_at_ms],
    )?;
    c.execute(
        "INSERT INTO stored_responses (owner, id, response, items, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (owner, id) DO UPDATE SET response = excluded.response, \
         items = excluded.items, created_at = excluded.created_at, expires_at = excluded.expires_at",
        params![
            row.owner,
            row.id,
            row.response,
            row.items,
            row.created_at_ms,
            row.expires_at_ms
        ],
    )?;
    Ok(())
}

pub(crate) fn get(c: &Connection, owner: &str, id: &str, now_ms: i64) -> R<Option<ResponseRow>> {
    Ok(c.query_row(
        "SELECT owner, id, response, items, created_at, expires_at FROM stored_responses \
         WHERE owner = ?1 AND id = ?2 AND expires_at > ?3",
        params![owner, id, now_ms],
        |r| {
            Ok(ResponseRow {
                owner: r.get(0)?,
                id: r.get(1)?,
                response: r.get(2)?,
                items: r.get(3)?,
                created_at_ms: r.get(4)?,
                expires_at_ms: r.get(5)?,
            })
        },
    )
    .optional()?)
}

pub(crate) fn delete(c: &Connection, owner: &str, id: &str) -> R<bool> {
    let removed = c.execute(
        "DELETE FROM stored_responses WHERE owner = ?1 AND id = ?2",
        params![owner, id],
    )?;
    Ok(removed > 0)
}
