//! SQLite: agents, users, keys and quota (and the query helpers of this backend).

use kiro_layers::store::*;
use rusqlite::{params, Connection, OptionalExtension, Row, ToSql, TransactionBehavior};

use super::{bump, ms, now_ms, ts, unique, SqlErr, R};
use crate::store::{to_u32, validate};

pub(crate) fn not_found(what: String) -> SqlErr {
    SqlErr(StoreError::NotFound(what))
}

pub(crate) fn immediate(c: &mut Connection) -> R<rusqlite::Transaction<'_>> {
    Ok(c.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Every row of `sql`, mapped.
pub(crate) fn all<T>(
    c: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> R<T>,
) -> R<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row of `sql`, mapped, or `NotFound(what)`.
pub(crate) fn one<T>(
    c: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> R<T>,
    what: impl FnOnce() -> String,
) -> R<T> {
    all(c, sql, params, map)?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(what()))
}

pub(crate) fn exists(c: &Connection, sql: &str, id: i64) -> R<bool> {
    Ok(c.query_row(sql, [id], |_| Ok(())).optional()?.is_some())
}

// ---- agents ----

fn agent_row(r: &Row<'_>) -> R<AgentRow> {
    Ok(AgentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        status: Status::parse(&r.get::<_, String>(2)?)?,
        balance: r.get(3)?,
        created_at: ts(r.get(4)?),
    })
}

const AGENT_COLS: &str = "id, name, status, balance, created_at";

pub(crate) fn create_agent(c: &mut Connection, topics: &mut Vec<Topic>, name: &str) -> R<AgentRow> {
    validate::name("agent name", name)?;
    let tx = immediate(c)?;
    let now = now_ms();
    unique(
        tx.execute(
            "INSERT INTO agents (name, created_at, updated_at) VALUES (?1, ?2, ?2)",
            params![name, now],
        ),
        || format!("an agent named `{name}` already exists"),
    )?;
    let id = tx.last_insert_rowid();
    bump(&tx, topics, Topic::Keys)?;
    let row = get_agent(&tx, id)?;
    tx.commit()?;
    Ok(row)
}

pub(crate) fn get_agent(c: &Connection, id: i64) -> R<AgentRow> {
    let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1");
    one(c, &sql, &[&id], agent_row, || format!("agent {id}"))
}

pub(crate) fn list_agents(c: &Connection) -> R<Vec<AgentRow>> {
    let sql = format!("SELECT {AGENT_COLS} FROM agents ORDER BY id");
    all(c, &sql, &[], agent_row)
}

pub(crate) fn set_agent_status(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    id: i64,
    status: Status,
) -> R<()> {
    let tx = immediate(c)?;
    let n = tx.execute(
        "UPDATE agents SET status = ?1, updated_at = ?2 WHERE id = ?3",
        params![status.as_str(), now_ms(), id],
    )?;
    if n == 0 {
        return Err(not_found(format!("agent {id}")));
    }
    bump(&tx, topics, Topic::Keys)?;
    Ok(tx.commit()?)
}

// ---- users ----

pub(crate) const USER_COLS: &str =
    "id, agent_id, name, status, quota_limit, quota_used, rpm_limit, created_at";

pub(crate) fn user_row(r: &Row<'_>) -> R<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        name: r.get(2)?,
        status: Status::parse(&r.get::<_, String>(3)?)?,
        quota_limit: r.get(4)?,
        quota_used: r.get(5)?,
        rpm_limit: to_u32(r.get(6)?)?,
        created_at: ts(r.get(7)?),
    })
}

pub(crate) fn create_user(c: &mut Connection, topics: &mut Vec<Topic>, u: NewUser) -> R<UserRow> {
    validate::name("user name", &u.name)?;
    if let Some(limit) = u.quota_limit {
        validate::amount("quota_limit", limit)?;
    }
    let tx = immediate(c)?;
    if let Some(agent) = u.agent_id {
        get_agent(&tx, agent)?;
    }
    let now = now_ms();
    unique(
        tx.execute(
            "INSERT INTO users (agent_id, name, quota_limit, rpm_limit, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![u.agent_id, u.name, u.quota_limit, u.rpm_limit, now],
        ),
        || format!("a user named `{}` already exists", u.name),
    )?;
    let id = tx.last_insert_rowid();
    bump(&tx, topics, Topic::Keys)?;
    let row = get_user(&tx, id)?;
    tx.commit()?;
    Ok(row)
}

pub(crate) fn get_user(c: &Connection, id: i64) -> R<UserRow> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE id = ?1 AND deleted_at IS NULL");
    one(c, &sql, &[&id], user_row, || format!("user {id}"))
}

pub(crate) fn list_users(c: &Connection, agent: Option<i64>) -> R<Vec<UserRow>> {
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE deleted_at IS NULL \
         AND (?1 IS NULL OR agent_id = ?1) ORDER BY id"
    );
    all(c, &sql, &[&agent], user_row)
}

pub(crate) fn update_user(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    id: i64,
    up: UserUpdate,
) -> R<UserRow> {
    if let Some(name) = &up.name {
        validate::name("user name", name)?;
    }
    let tx = immediate(c)?;
    let current = get_user(&tx, id)?;
    let name = up.name.unwrap_or(current.name);
    let status = up.status.unwrap_or(current.status);
    let rpm = up.rpm_limit.unwrap_or(current.rpm_limit);
    unique(
        tx.execute(
            "UPDATE users SET name = ?1, status = ?2, rpm_limit = ?3, updated_at = ?4 WHERE id = ?5",
            params![name, status.as_str(), rpm, now_ms(), id],
        ),
        || format!("a user named `{name}` already exists"),
    )?;
    bump(&tx, topics, Topic::Keys)?;
    let row = get_user(&tx, id)?;
    tx.commit()?;
    Ok(row)
}

pub(crate) fn delete_user(c: &mut Connection, topics: &mut Vec<Topic>, id: i64) -> R<()> {
    let tx = immediate(c)?;
    let now = now_ms();
    let n = tx.execute(
        "UPDATE users SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
        params![now, id],
    )?;
    if n == 0 {
        return Err(not_found(format!("user {id}")));
    }
    tx.execute(
        "UPDATE api_keys SET status = 'revoked', revoked_at = ?1, updated_at = ?1 \
         WHERE user_id = ?2 AND status = 'active'",
        params![now, id],
    )?;
    bump(&tx, topics, Topic::Keys)?;
    Ok(tx.commit()?)
}

// ---- API keys ----

pub(crate) const KEY_COLS: &str = "k.id, k.public_id, k.kind, k.user_id, k.agent_id, k.name, \
    k.secret_hash, k.suffix, k.status, k.expires_at, k.allowed_models, k.rpm_limit, \
    k.max_concurrency, k.quota_limit, k.quota_used, k.created_at, k.last_used_at";

pub(crate) fn key_row(r: &Row<'_>) -> R<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        public_id: r.get(1)?,
        kind: KeyKind::parse(&r.get::<_, String>(2)?)?,
        user_id: r.get(3)?,
        agent_id: r.get(4)?,
        name: r.get(5)?,
        secret_hash: r.get(6)?,
        suffix: r.get(7)?,
        status: KeyStatus::parse(&r.get::<_, String>(8)?)?,
        expires_at: r.get::<_, Option<i64>>(9)?.map(ts),
        allowed_models: serde_json::from_str(&r.get::<_, String>(10)?)?,
        rpm_limit: to_u32(r.get(11)?)?,
        max_concurrency: to_u32(r.get(12)?)?,
        quota_limit: r.get(13)?,
        quota_used: r.get(14)?,
        created_at: ts(r.get(15)?),
        last_used_at: r.get::<_, Option<i64>>(16)?.map(ts),
    })
}

pub(crate) fn create_api_key(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    k: NewApiKey,
) -> R<ApiKeyRow> {
    validate::api_key(&k)?;
    let tx = immediate(c)?;
    let agent_id = validate::key_owner(
        &k,
        k.user_id.map(|u| get_user(&tx, u)).transpose()?.as_ref(),
    )?;
    if let Some(agent) = agent_id {
        get_agent(&tx, agent)?;
    }
    let now = now_ms();
    unique(
        tx.execute(
            "INSERT INTO api_keys (public_id, kind, user_id, agent_id, name, secret_hash, suffix, \
             expires_at, allowed_models, rpm_limit, max_concurrency, quota_limit, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            params![
                k.public_id,
                k.kind.as_str(),
                k.user_id,
                agent_id,
                k.name,
                k.secret_hash,
                k.suffix,
                k.expires_at.map(ms),
                serde_json::to_string(&k.allowed_models)?,
                k.rpm_limit,
                k.max_concurrency,
                k.quota_limit,
                now
            ],
        ),
        || "a key with this public id already exists".to_owned(),
    )?;
    let id = tx.last_insert_rowid();
    bump(&tx, topics, Topic::Keys)?;
    let row = get_api_key(&tx, "k.id = ?1", id)?;
    tx.commit()?;
    Ok(row)
}

pub(crate) fn list_api_keys(c: &Connection, owner: KeyOwner) -> R<Vec<ApiKeyRow>> {
    let (filter, id) = match owner {
        KeyOwner::All => ("?1 IS NULL", None),
        KeyOwner::User(id) => ("k.user_id = ?1", Some(id)),
        KeyOwner::Agent(id) => ("k.agent_id = ?1", Some(id)),
    };
    let sql = format!("SELECT {KEY_COLS} FROM api_keys k WHERE {filter} ORDER BY k.id");
    all(c, &sql, &[&id], key_row)
}

pub(crate) fn get_api_key(c: &Connection, filter: &str, param: impl ToSql) -> R<ApiKeyRow> {
    let sql = format!("SELECT {KEY_COLS} FROM api_keys k WHERE {filter}");
    one(c, &sql, &[&param], key_row, || "API key".to_owned())
}

pub(crate) fn revoke_api_key(c: &mut Connection, topics: &mut Vec<Topic>, id: i64) -> R<()> {
    let tx = immediate(c)?;
    let now = now_ms();
    let n = tx.execute(
        "UPDATE api_keys SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?1), \
         updated_at = ?1 WHERE id = ?2",
        params![now, id],
    )?;
    if n == 0 {
        return Err(not_found(format!("API key {id}")));
    }
    bump(&tx, topics, Topic::Keys)?;
    Ok(tx.commit()?)
}

pub(crate) fn list_active_keys(c: &Connection) -> R<Vec<ApiKeyRow>> {
    let sql = format!(
        "SELECT {KEY_COLS} FROM api_keys k \
         LEFT JOIN users u ON u.id = k.user_id LEFT JOIN agents a ON a.id = k.agent_id \
         WHERE k.status = 'active' \
         AND (k.user_id IS NULL OR (u.status = 'active' AND u.deleted_at IS NULL)) \
         AND (k.agent_id IS NULL OR a.status = 'active') ORDER BY k.id"
    );
    all(c, &sql, &[], key_row)
}

// ---- quota ----

/// Applies charge lines inside the caller's transaction (agents, users, keys; by id).
pub(crate) fn apply_charges(tx: &Connection, lines: &[ChargeLine]) -> R<()> {
    let totals = validate::ChargeTotals::of(lines);
    for (id, amount) in &totals.agents {
        tx.execute(
            "UPDATE agents SET balance = balance - ?1 WHERE id = ?2",
            params![amount, id],
        )?;
    }
    for (id, amount) in &totals.users {
        tx.execute(
            "UPDATE users SET quota_used = quota_used + ?1 WHERE id = ?2",
            params![amount, id],
        )?;
    }
    for (id, amount) in &totals.keys {
        tx.execute(
            "UPDATE api_keys SET quota_used = quota_used + ?1 WHERE id = ?2",
            params![amount, id],
        )?;
    }
    Ok(())
}

pub(crate) fn charge(c: &mut Connection, topics: &mut Vec<Topic>, lines: &[ChargeLine]) -> R<()> {
    lines
        .iter()
        .try_for_each(|l| validate::amount("charge amount", l.amount))?;
    let tx = immediate(c)?;
    apply_charges(&tx, lines)?;
    bump(&tx, topics, Topic::Quota)?;
    Ok(tx.commit()?)
}

pub(crate) fn transfer_quota(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    agent_id: i64,
    user_id: i64,
    amount: i64,
) -> R<TransferRow> {
    validate::transfer_amount(amount)?;
    let tx = immediate(c)?;
    let agent = get_agent(&tx, agent_id)?;
    let owner: Option<Option<i64>> = tx
        .query_row(
            "SELECT agent_id FROM users WHERE id = ?1 AND deleted_at IS NULL",
            [user_id],
            |r| r.get(0),
        )
        .optional()?;
    if owner != Some(Some(agent_id)) {
        return Err(not_found(format!("user {user_id} (of agent {agent_id})")));
    }
    let n = tx.execute(
        "UPDATE agents SET balance = balance - ?1, updated_at = ?2 WHERE id = ?3 AND balance >= ?1",
        params![amount, now_ms(), agent_id],
    )?;
    if n == 0 {
        return Err(SqlErr(validate::insufficient(
            agent_id,
            agent.balance,
            amount,
        )));
    }
    tx.execute(
        "UPDATE users SET quota_limit = COALESCE(quota_limit, 0) + ?1, updated_at = ?2 WHERE id = ?3",
        params![amount, now_ms(), user_id],
    )?;
    let after: i64 = tx.query_row(
        "SELECT balance FROM agents WHERE id = ?1",
        [agent_id],
        |r| r.get(0),
    )?;
    let now = now_ms();
    tx.execute(
        "INSERT INTO quota_transfers (agent_id, user_id, amount, agent_balance_after, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![agent_id, user_id, amount, after, now],
    )?;
    let id = tx.last_insert_rowid();
    bump(&tx, topics, Topic::Quota)?;
    tx.commit()?;
    Ok(TransferRow {
        id,
        agent_id,
        user_id,
        amount,
        agent_balance_after: after,
        created_at: ts(now),
    })
}

pub(crate) fn list_transfers(c: &Connection, agent: Option<i64>) -> R<Vec<TransferRow>> {
    all(
        c,
        "SELECT id, agent_id, user_id, amount, agent_balance_after, created_at \
         FROM quota_transfers WHERE ?1 IS NULL OR agent_id = ?1 ORDER BY id DESC",
        &[&agent],
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

/// The column holding a subject's quota, its table and row filter.
fn quota_target(subject: QuotaSubject) -> (&'static str, &'static str, i64, String) {
    match subject {
        QuotaSubject::User(id) => ("users", "quota_limit", id, format!("user {id}")),
        QuotaSubject::Key(id) => ("api_keys", "quota_limit", id, format!("API key {id}")),
        QuotaSubject::Agent(id) => ("agents", "balance", id, format!("agent {id}")),
    }
}

fn live_filter(table: &str) -> &'static str {
    if table == "users" {
        "AND deleted_at IS NULL"
    } else {
        ""
    }
}

pub(crate) fn set_quota(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    subject: QuotaSubject,
    limit: Option<i64>,
) -> R<()> {
    if let Some(limit) = limit {
        validate::amount("quota", limit)?;
    }
    let (table, column, id, what) = quota_target(subject);
    let value = if table == "agents" {
        Some(limit.unwrap_or(0))
    } else {
        limit
    };
    let tx = immediate(c)?;
    let sql = format!(
        "UPDATE {table} SET {column} = ?1, updated_at = ?2 WHERE id = ?3 {}",
        live_filter(table)
    );
    if tx.execute(&sql, params![value, now_ms(), id])? == 0 {
        return Err(not_found(what));
    }
    bump(&tx, topics, Topic::Quota)?;
    Ok(tx.commit()?)
}

pub(crate) fn add_quota(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    subject: QuotaSubject,
    amount: i64,
) -> R<()> {
    validate::signed_amount("amount", amount)?;
    let (table, column, id, what) = quota_target(subject);
    let tx = immediate(c)?;
    let sql = format!(
        "SELECT COALESCE({column}, 0) FROM {table} WHERE id = ?1 {}",
        live_filter(table)
    );
    let current: i64 = tx
        .query_row(&sql, [id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found(what.clone()))?;
    let next = validate::added(&what, current, amount)?;
    let sql = format!("UPDATE {table} SET {column} = ?1, updated_at = ?2 WHERE id = ?3");
    tx.execute(&sql, params![next, now_ms(), id])?;
    bump(&tx, topics, Topic::Quota)?;
    Ok(tx.commit()?)
}
