//! PostgreSQL: agents, users, keys and quota (and the query helpers of this backend).

use std::collections::{BTreeMap, BTreeSet};

use kiro_layers::store::*;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::{bump, unique, PgErr, PgStore, R};
use crate::store::{to_u32, validate};

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) fn not_found(what: String) -> PgErr {
    PgErr(StoreError::NotFound(what))
}

/// Every row of `sql`, mapped.
pub(crate) async fn all<T, C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(&Row) -> R<T>,
) -> R<Vec<T>> {
    c.query(sql, params).await?.iter().map(map).collect()
}

/// The first row of `sql`, mapped, or `NotFound(what)`.
pub(crate) async fn one<T, C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(&Row) -> R<T>,
    what: impl FnOnce() -> String,
) -> R<T> {
    match c.query_opt(sql, params).await? {
        Some(row) => map(&row),
        None => Err(not_found(what())),
    }
}

pub(crate) fn u32_param(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

const AGENT_COLS: &str = "id, name, status, balance, created_at";

fn agent_row(r: &Row) -> R<AgentRow> {
    Ok(AgentRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        status: Status::parse(r.try_get(2)?)?,
        balance: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

pub(crate) const USER_COLS: &str =
    "id, agent_id, name, status, quota_limit, quota_used, rpm_limit, created_at";

pub(crate) fn user_row(r: &Row) -> R<UserRow> {
    Ok(UserRow {
        id: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        name: r.try_get(2)?,
        status: Status::parse(r.try_get(3)?)?,
        quota_limit: r.try_get(4)?,
        quota_used: r.try_get(5)?,
        rpm_limit: to_u32(r.try_get(6)?)?,
        created_at: r.try_get(7)?,
    })
}

pub(crate) const KEY_COLS: &str = "k.id, k.public_id, k.kind, k.user_id, k.agent_id, k.name, \
    k.secret_hash, k.suffix, k.status, k.expires_at, k.allowed_models, k.rpm_limit, \
    k.max_concurrency, k.quota_limit, k.quota_used, k.created_at, k.last_used_at";

pub(crate) fn key_row(r: &Row) -> R<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.try_get(0)?,
        public_id: r.try_get(1)?,
        kind: KeyKind::parse(r.try_get(2)?)?,
        user_id: r.try_get(3)?,
        agent_id: r.try_get(4)?,
        name: r.try_get(5)?,
        secret_hash: r.try_get(6)?,
        suffix: r.try_get(7)?,
        status: KeyStatus::parse(r.try_get(8)?)?,
        expires_at: r.try_get(9)?,
        allowed_models: r.try_get(10)?,
        rpm_limit: to_u32(r.try_get(11)?)?,
        max_concurrency: to_u32(r.try_get(12)?)?,
        quota_limit: r.try_get(13)?,
        quota_used: r.try_get(14)?,
        created_at: r.try_get(15)?,
        last_used_at: r.try_get(16)?,
    })
}

async fn get_agent<C: GenericClient>(c: &C, id: i64) -> R<AgentRow> {
    let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1");
    one(c, &sql, &[&id], agent_row, || format!("agent {id}")).await
}

async fn get_user<C: GenericClient>(c: &C, id: i64) -> R<UserRow> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    one(c, &sql, &[&id], user_row, || format!("user {id}")).await
}

async fn get_key<C: GenericClient>(
    c: &C,
    filter: &str,
    param: &(dyn ToSql + Sync),
) -> R<ApiKeyRow> {
    let sql = format!("SELECT {KEY_COLS} FROM api_keys k WHERE {filter}");
    one(c, &sql, &[param], key_row, || "API key".to_owned()).await
}

/// Applies charges inside a transaction: agents, users, keys, each by id (the one lock order).
/// `last_used` advances keys' `last_used_at` in the same pass over keys.
pub(crate) async fn apply_charges<C: GenericClient>(
    tx: &C,
    lines: &[ChargeLine],
    last_used: &BTreeMap<i64, Timestamp>,
) -> R<()> {
    let totals = validate::ChargeTotals::of(lines);
    for (id, amount) in &totals.agents {
        tx.execute(
            "UPDATE agents SET balance = balance - $1 WHERE id = $2",
            &[amount, id],
        )
        .await?;
    }
    for (id, amount) in &totals.users {
        tx.execute(
            "UPDATE users SET quota_used = quota_used + $1 WHERE id = $2",
            &[amount, id],
        )
        .await?;
    }
    let keys: BTreeSet<i64> = totals
        .keys
        .keys()
        .chain(last_used.keys())
        .copied()
        .collect();
    for id in keys {
        let amount = totals.keys.get(&id).copied().unwrap_or(0);
        let at = last_used.get(&id);
        tx.execute(
            "UPDATE api_keys SET quota_used = quota_used + $1, \
             last_used_at = GREATEST(last_used_at, $2) WHERE id = $3",
            &[&amount, &at, &id],
        )
        .await?;
    }
    Ok(())
}

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

impl PgStore {
    /// Runs one `UPDATE`/`DELETE` that must touch a row, then bumps `topic`.
    pub(crate) async fn mutate_one(
        &self,
        sql: &str,
        params: Params<'_>,
        topic: Topic,
        what: String,
    ) -> R<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        if tx.execute(sql, params).await? == 0 {
            return Err(not_found(what));
        }
        bump(&tx, topic).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn create_agent_(&self, name: String) -> R<AgentRow> {
        validate::name("agent name", &name)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let sql = format!("INSERT INTO agents (name) VALUES ($1) RETURNING {AGENT_COLS}");
        let row = unique(tx.query_one(&sql, &[&name]).await, || {
            format!("an agent named `{name}` already exists")
        })?;
        let agent = agent_row(&row)?;
        bump(&tx, Topic::Keys).await?;
        tx.commit().await?;
        Ok(agent)
    }

    pub(crate) async fn get_agent_(&self, id: i64) -> R<AgentRow> {
        get_agent(&*self.conn().await?, id).await
    }

    pub(crate) async fn list_agents_(&self) -> R<Vec<AgentRow>> {
        let sql = format!("SELECT {AGENT_COLS} FROM agents ORDER BY id");
        all(&*self.conn().await?, &sql, &[], agent_row).await
    }

    pub(crate) async fn set_agent_status_(&self, id: i64, status: Status) -> R<()> {
        self.mutate_one(
            "UPDATE agents SET status = $1, updated_at = now() WHERE id = $2",
            &[&status.as_str(), &id],
            Topic::Keys,
            format!("agent {id}"),
        )
        .await
    }

    pub(crate) async fn create_user_(&self, u: NewUser) -> R<UserRow> {
        validate::name("user name", &u.name)?;
        if let Some(limit) = u.quota_limit {
            validate::amount("quota_limit", limit)?;
        }
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        if let Some(agent) = u.agent_id {
            get_agent(&tx, agent).await?;
        }
        let sql = format!(
            "INSERT INTO users (agent_id, name, quota_limit, rpm_limit) VALUES ($1, $2, $3, $4) \
             RETURNING {USER_COLS}"
        );
        let row = unique(
            tx.query_one(
                &sql,
                &[
                    &u.agent_id,
                    &u.name,
                    &u.quota_limit,
                    &u32_param(u.rpm_limit),
                ],
            )
            .await,
            || format!("a user named `{}` already exists", u.name),
        )?;
        let user = user_row(&row)?;
        bump(&tx, Topic::Keys).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub(crate) async fn get_user_(&self, id: i64) -> R<UserRow> {
        get_user(&*self.conn().await?, id).await
    }

    pub(crate) async fn list_users_(&self, agent: Option<i64>) -> R<Vec<UserRow>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM users WHERE deleted_at IS NULL \
             AND ($1::bigint IS NULL OR agent_id = $1) ORDER BY id"
        );
        all(&*self.conn().await?, &sql, &[&agent], user_row).await
    }

    pub(crate) async fn update_user_(&self, id: i64, up: UserUpdate) -> R<UserRow> {
        if let Some(name) = &up.name {
            validate::name("user name", name)?;
        }
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let current = get_user(&tx, id).await?;
        let name = up.name.unwrap_or(current.name);
        let status = up.status.unwrap_or(current.status);
        let rpm = u32_param(up.rpm_limit.unwrap_or(current.rpm_limit));
        let sql = format!(
            "UPDATE users SET name = $1, status = $2, rpm_limit = $3, updated_at = now() \
             WHERE id = $4 RETURNING {USER_COLS}"
        );
        let row = unique(
            tx.query_one(&sql, &[&name, &status.as_str(), &rpm, &id])
                .await,
            || format!("a user named `{name}` already exists"),
        )?;
        let user = user_row(&row)?;
        bump(&tx, Topic::Keys).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub(crate) async fn delete_user_(&self, id: i64) -> R<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "UPDATE users SET deleted_at = now(), updated_at = now() \
                 WHERE id = $1 AND deleted_at IS NULL",
                &[&id],
            )
            .await?;
        if n == 0 {
            return Err(not_found(format!("user {id}")));
        }
        tx.execute(
            "UPDATE api_keys SET status = 'revoked', revoked_at = now(), updated_at = now() \
             WHERE user_id = $1 AND status = 'active'",
            &[&id],
        )
        .await?;
        bump(&tx, Topic::Keys).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn create_api_key_(&self, k: NewApiKey) -> R<ApiKeyRow> {
        validate::api_key(&k)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let user = match k.user_id {
            Some(id) => Some(get_user(&tx, id).await?),
            None => None,
        };
        let agent_id = validate::key_owner(&k, user.as_ref())?;
        if let Some(agent) = agent_id {
            get_agent(&tx, agent).await?;
        }
        let row = unique(
            tx.query_one(
                "INSERT INTO api_keys (public_id, kind, user_id, agent_id, name, secret_hash, \
                 suffix, expires_at, allowed_models, rpm_limit, max_concurrency, quota_limit) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &k.public_id,
                    &k.kind.as_str(),
                    &k.user_id,
                    &agent_id,
                    &k.name,
                    &k.secret_hash,
                    &k.suffix,
                    &k.expires_at,
                    &k.allowed_models,
                    &u32_param(k.rpm_limit),
                    &u32_param(k.max_concurrency),
                    &k.quota_limit,
                ],
            )
            .await,
            || "a key with this public id already exists".to_owned(),
        )?;
        let id: i64 = row.try_get(0)?;
        let key = get_key(&tx, "k.id = $1", &id).await?;
        bump(&tx, Topic::Keys).await?;
        tx.commit().await?;
        Ok(key)
    }

    pub(crate) async fn list_api_keys_(&self, owner: KeyOwner) -> R<Vec<ApiKeyRow>> {
        let (filter, id) = match owner {
            KeyOwner::All => ("$1::bigint IS NULL", None),
            KeyOwner::User(id) => ("k.user_id = $1", Some(id)),
            KeyOwner::Agent(id) => ("k.agent_id = $1", Some(id)),
        };
        let sql = format!("SELECT {KEY_COLS} FROM api_keys k WHERE {filter} ORDER BY k.id");
        all(&*self.conn().await?, &sql, &[&id], key_row).await
    }

    pub(crate) async fn get_api_key_(&self, id: i64) -> R<ApiKeyRow> {
        get_key(&*self.conn().await?, "k.id = $1", &id).await
    }

    pub(crate) async fn get_api_key_by_public_id_(&self, public_id: String) -> R<ApiKeyRow> {
        get_key(&*self.conn().await?, "k.public_id = $1", &public_id).await
    }

    pub(crate) async fn revoke_api_key_(&self, id: i64) -> R<()> {
        self.mutate_one(
            "UPDATE api_keys SET status = 'revoked', revoked_at = COALESCE(revoked_at, now()), \
             updated_at = now() WHERE id = $1",
            &[&id],
            Topic::Keys,
            format!("API key {id}"),
        )
        .await
    }

    pub(crate) async fn list_active_keys_(&self) -> R<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys k \
             LEFT JOIN users u ON u.id = k.user_id LEFT JOIN agents a ON a.id = k.agent_id \
             WHERE k.status = 'active' \
             AND (k.user_id IS NULL OR (u.status = 'active' AND u.deleted_at IS NULL)) \
             AND (k.agent_id IS NULL OR a.status = 'active') ORDER BY k.id"
        );
        all(&*self.conn().await?, &sql, &[], key_row).await
    }

    pub(crate) async fn charge_(&self, lines: &[ChargeLine]) -> R<()> {
        lines
            .iter()
            .try_for_each(|l| validate::amount("charge amount", l.amount))?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        apply_charges(&tx, lines, &BTreeMap::new()).await?;
        bump(&tx, Topic::Quota).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn transfer_quota_(
        &self,
        agent_id: i64,
        user_id: i64,
        amount: i64,
    ) -> R<TransferRow> {
        validate::transfer_amount(amount)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let agent = get_agent(&tx, agent_id).await?;
        let owner = tx
            .query_opt(
                "SELECT agent_id FROM users WHERE id = $1 AND deleted_at IS NULL",
                &[&user_id],
            )
            .await?
            .map(|r| r.try_get::<_, Option<i64>>(0))
            .transpose()?;
        if owner != Some(Some(agent_id)) {
            return Err(not_found(format!("user {user_id} (of agent {agent_id})")));
        }
        // A conditional update: the row lock makes concurrent transfers queue, and each
        // re-checks the balance it sees after the previous one committed.
        let after = tx
            .query_opt(
                "UPDATE agents SET balance = balance - $1, updated_at = now() \
                 WHERE id = $2 AND balance >= $1 RETURNING balance",
                &[&amount, &agent_id],
            )
            .await?;
        let Some(after) = after else {
            return Err(PgErr(validate::insufficient(
                agent_id,
                agent.balance,
                amount,
            )));
        };
        let after: i64 = after.try_get(0)?;
        tx.execute(
            "UPDATE users SET quota_limit = COALESCE(quota_limit, 0) + $1, updated_at = now() \
             WHERE id = $2",
            &[&amount, &user_id],
        )
        .await?;
        let row = tx
            .query_one(
                "INSERT INTO quota_transfers (agent_id, user_id, amount, agent_balance_after) \
                 VALUES ($1, $2, $3, $4) RETURNING id, created_at",
                &[&agent_id, &user_id, &amount, &after],
            )
            .await?;
        bump(&tx, Topic::Quota).await?;
        tx.commit().await?;
        Ok(TransferRow {
            id: row.try_get(0)?,
            agent_id,
            user_id,
            amount,
            agent_balance_after: after,
            created_at: row.try_get(1)?,
        })
    }

    pub(crate) async fn list_transfers_(&self, agent: Option<i64>) -> R<Vec<TransferRow>> {
        all(
            &*self.conn().await?,
            "SELECT id, agent_id, user_id, amount, agent_balance_after, created_at \
             FROM quota_transfers WHERE $1::bigint IS NULL OR agent_id = $1 ORDER BY id DESC",
            &[&agent],
            |r| {
                Ok(TransferRow {
                    id: r.try_get(0)?,
                    agent_id: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    amount: r.try_get(3)?,
                    agent_balance_after: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            },
        )
        .await
    }

    pub(crate) async fn set_quota_(&self, subject: QuotaSubject, limit: Option<i64>) -> R<()> {
        if let Some(limit) = limit {
            validate::amount("quota", limit)?;
        }
        let (table, column, id, what) = quota_target(subject);
        let value = if table == "agents" {
            Some(limit.unwrap_or(0))
        } else {
            limit
        };
        let sql = format!(
            "UPDATE {table} SET {column} = $1, updated_at = now() WHERE id = $2 {}",
            live_filter(table)
        );
        self.mutate_one(&sql, &[&value, &id], Topic::Quota, what)
            .await
    }

    pub(crate) async fn add_quota_(&self, subject: QuotaSubject, amount: i64) -> R<()> {
        validate::signed_amount("amount", amount)?;
        let (table, column, id, what) = quota_target(subject);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let sql = format!(
            "SELECT COALESCE({column}, 0) FROM {table} WHERE id = $1 {} FOR UPDATE",
            live_filter(table)
        );
        let current: i64 = match tx.query_opt(&sql, &[&id]).await? {
            Some(row) => row.try_get(0)?,
            None => return Err(not_found(what)),
        };
        let next = validate::added(&what, current, amount)?;
        let sql = format!("UPDATE {table} SET {column} = $1, updated_at = now() WHERE id = $2");
        tx.execute(&sql, &[&next, &id]).await?;
        bump(&tx, Topic::Quota).await?;
        Ok(tx.commit().await?)
    }
}
