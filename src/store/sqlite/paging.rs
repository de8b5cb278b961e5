//! SQLite: the paged listings (users, keys, audit log, transfers), filtered, ordered, counted
//! and sliced by the database.

use kiro_layers::store::*;
use rusqlite::types::ToSql;
use rusqlite::Connection;

use super::tenancy::{all, key_row, user_row, KEY_COLS, USER_COLS};
use super::{ts, R};

/// `COUNT(*)` of `from_where` and one page of `select ... from_where order`.
fn paged<T>(
    c: &Connection,
    select: &str,
    from_where: &str,
    order: &str,
    params: &[&dyn ToSql],
    page: PageRequest,
    map: impl Fn(&rusqlite::Row<'_>) -> R<T>,
) -> R<Paged<T>> {
    let total: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) {from_where}"))?
        .query_row(params, |r| r.get(0))?;
    let n = params.len();
    let sql = format!(
        "SELECT {select} {from_where} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    let limit = i64::from(page.capped_limit());
    let offset = page.sql_offset();
    let mut all_params: Vec<&dyn ToSql> = params.to_vec();
    all_params.push(&limit);
    all_params.push(&offset);
    Ok(Paged {
        items: all(c, &sql, &all_params, map)?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

pub(crate) fn page_users(c: &Connection, q: &UserQuery, page: PageRequest) -> R<UserPage> {
    let order = match q.sort {
        UserSort::Id => "id",
        UserSort::Name => "name, id",
        UserSort::QuotaUsed => "quota_used DESC, id",
    };
    let search = q
        .search
        .as_deref()
        .map(|s| format!("%{}%", like_literal(s)));
    paged(
        c,
        USER_COLS,
        "FROM users WHERE deleted_at IS NULL AND (?1 IS NULL OR agent_id = ?1) \
         AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\')",
        order,
        &[&q.agent_id, &search],
        page,
        user_row,
    )
}

pub(crate) fn page_api_keys(c: &Connection, owner: KeyOwner, page: PageRequest) -> R<KeyPage> {
    let (filter, id) = match owner {
        KeyOwner::All => ("?1 IS NULL", None),
        KeyOwner::User(id) => ("k.user_id = ?1", Some(id)),
        KeyOwner::Agent(id) => ("k.agent_id = ?1", Some(id)),
    };
    paged(
        c,
        KEY_COLS,
        &format!("FROM api_keys k WHERE {filter}"),
        "k.id",
        &[&id],
        page,
        key_row,
    )
}

pub(crate) fn page_audit(c: &Connection, q: &AuditQuery, page: PageRequest) -> R<AuditPage> {
    let prefix = q.action.as_deref().map(|a| format!("{}%", like_literal(a)));
    paged(
        c,
        "id, actor, action, object_type, object_id, detail, created_at",
        "FROM audit_log WHERE (?1 IS NULL OR action LIKE ?1 ESCAPE '\\')",
        "id DESC",
        &[&prefix],
        page,
        |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                object_type: r.get(3)?,
                object_id: r.get(4)?,
                detail: serde_json::from_str(&r.get::<_, String>(5)?)?,
                created_at: ts(r.get(6)?),
            })
        },
    )
}

pub(crate) fn page_transfers(
    c: &Connection,
    agent: Option<i64>,
    page: PageRequest,
) -> R<TransferPage> {
    paged(
        c,
        "id, agent_id, user_id, amount, agent_balance_after, created_at",
        "FROM quota_transfers WHERE ?1 IS NULL OR agent_id = ?1",
        "id DESC",
        &[&agent],
        page,
        |r| {
            Ok(TransferRow {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                user_id: r.get(2)?,
                amount: r.get(3)?,
                agent_balance_after: r.get(4)?,
                created_at: ts(r.get(5)?),
            })
        },
    )
}
