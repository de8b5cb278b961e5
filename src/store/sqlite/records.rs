//! SQLite: usage, models, audit and change versions.

use std::collections::HashMap;

use kiro_layers::store::*;
use rusqlite::{params, Connection, Row, TransactionBehavior};

use super::tenancy::{all, apply_charges};
use super::{bump, ms, now_ms, ts, SqlErr, R};
use crate::store::validate;

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn insert_usage(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    rows: &[UsageRow],
) -> R<u64> {
    for row in rows {
        validate::usage_row(row)?;
    }
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = 0u64;
    let mut charges = Vec::new();
    let mut last_used: HashMap<i64, i64> = HashMap::new();
    let mut fresh = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage_records (request_id, attempt, user_id, agent_id, key_id, \
             requested_model, resolved_model, account_id, input_tokens, output_tokens, \
             cache_read_tokens, cache_write_tokens, credits, status, ttft_ms, duration_ms, \
             started_at, charged, account_kind, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
             ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) ON CONFLICT (request_id, attempt) DO NOTHING",
        )?;
        for r in rows {
            let n = stmt.execute(params![
                r.request_id,
                r.attempt,
                r.user_id,
                r.agent_id,
                r.key_id,
                r.requested_model,
                r.resolved_model,
                r.account_id,
                tokens(r.input_tokens),
                tokens(r.output_tokens),
                tokens(r.cache_read_tokens),
                tokens(r.cache_write_tokens),
                r.credits,
                r.status.as_str(),
                r.time_to_first_token.map(millis),
                millis(r.duration),
                ms(r.started_at),
                r.charged,
                r.account_kind,
                r.estimated
            ])?;
            if n == 0 {
                continue;
            }
            inserted += 1;
            fresh.push(r);
            charges.push(validate::charge_for(r));
            if let Some(key) = r.key_id {
                let at = last_used.entry(key).or_default();
                *at = (*at).max(ms(r.started_at));
            }
        }
    }
    apply_charges(&tx, &charges)?;
    super::usage_daily::add(&tx, &fresh)?;
    for (key, at) in last_used {
        tx.execute(
            "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?1) WHERE id = ?2",
            params![at, key],
        )?;
    }
    if charges.iter().any(|c| c.amount != 0) {
        bump(&tx, topics, Topic::Quota)?;
    }
    tx.commit()?;
    Ok(inserted)
}

/// Totals per group straight from `usage_records` (see `usage_daily` for the rollup).
pub(crate) fn query_usage_raw(
    c: &Connection,
    f: &UsageFilter,
    group: UsageGroup,
) -> R<Vec<UsageAggregate>> {
    let expr = match group {
        UsageGroup::User => "COALESCE(CAST(user_id AS TEXT), '')",
        UsageGroup::Key => "COALESCE(CAST(key_id AS TEXT), '')",
        UsageGroup::Model => "resolved_model",
        UsageGroup::Account => "COALESCE(account_id, '')",
        UsageGroup::Day => "strftime('%Y-%m-%d', started_at / 1000, 'unixepoch')",
        UsageGroup::Agent => "COALESCE(CAST(agent_id AS TEXT), '')",
        UsageGroup::Hour => "strftime('%Y-%m-%dT%H', started_at / 1000, 'unixepoch')",
        UsageGroup::Kind => "COALESCE(account_kind, '')",
    };
    usage_totals(c, &RAW, expr, f, f.from.map(ms), f.to.map(ms))
}

/// Where usage totals are summed from: a table, the sums of its requests and successes, and
/// the column the time filter compares.
pub(crate) struct UsageSource {
    pub table: &'static str,
    pub requests: &'static str,
    pub time: &'static str,
}

const RAW: UsageSource = UsageSource {
    table: "usage_records",
    requests: "COUNT(*), SUM(status = 'ok')",
    time: "started_at",
};

/// Totals per group of `expr` from `source`, filtered by `f` with `from` / `to` compared to the
/// source's time column. Only the filters that are set go into the SQL: SQLite plans
/// `?1 IS NULL OR …` before it sees the values, so such a clause keeps it off the time index
/// and the last 24 hours of a million-row ledger become a full scan.
pub(crate) fn usage_totals(
    c: &Connection,
    source: &UsageSource,
    expr: &str,
    f: &UsageFilter,
    from: Option<i64>,
    to: Option<i64>,
) -> R<Vec<UsageAggregate>> {
    let time = source.time;
    let filters: [(String, Option<i64>); 5] = [
        ("user_id = ?".into(), f.user_id),
        ("key_id = ?".into(), f.key_id),
        ("agent_id = ?".into(), f.agent_id),
        (format!("{time} >= ?"), from),
        (format!("{time} < ?"), to),
    ];
    let (conditions, values): (Vec<String>, Vec<i64>) = filters
        .into_iter()
        .filter_map(|(condition, value)| value.map(|v| (condition, v)))
        .unzip();
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {expr} AS grp, {requests}, SUM(input_tokens), SUM(output_tokens), \
         SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(credits), SUM(charged), \
         SUM(estimated) FROM {table}{clause} GROUP BY grp ORDER BY grp",
        requests = source.requests,
        table = source.table,
    );
    let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as _).collect();
    let count =
        |r: &Row<'_>, i: usize| -> R<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    all(c, &sql, &params, |r| {
        Ok(UsageAggregate {
            group: r.get(0)?,
            requests: count(r, 1)?,
            successes: count(r, 2)?,
            input_tokens: count(r, 3)?,
            output_tokens: count(r, 4)?,
            cache_read_tokens: count(r, 5)?,
            cache_write_tokens: count(r, 6)?,
            credits: r.get(7)?,
            charged: r.get(8)?,
            estimated_requests: count(r, 9)?,
        })
    })
}

/// The model tables keyed by a name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Named {
    Alias,
    Combo,
    Price,
}

pub(crate) fn delete_named(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    kind: Named,
    name: &str,
) -> R<()> {
    let (sql, what) = match kind {
        Named::Alias => ("DELETE FROM model_aliases WHERE alias = ?1", "alias"),
        Named::Combo => ("DELETE FROM combo_models WHERE name = ?1", "combo"),
        Named::Price => (
            "DELETE FROM model_prices WHERE model_id = ?1",
            "price for model",
        ),
    };
    validate::lookup_name(what, name)?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if tx.execute(sql, [name])? == 0 {
        return Err(SqlErr(StoreError::NotFound(format!("{what} `{name}`"))));
    }
    bump(&tx, topics, Topic::Models)?;
    Ok(tx.commit()?)
}

pub(crate) fn set_alias(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    alias: &str,
    model: &str,
) -> R<()> {
    validate::model_name("alias", alias)?;
    validate::model_name("model id", model)?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO model_aliases (alias, model_id, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (alias) DO UPDATE SET model_id = excluded.model_id, updated_at = excluded.updated_at",
        params![alias, model, now_ms()],
    )?;
    bump(&tx, topics, Topic::Models)?;
    Ok(tx.commit()?)
}

pub(crate) fn list_aliases(c: &Connection) -> R<Vec<AliasRow>> {
    all(
        c,
        "SELECT alias, model_id FROM model_aliases ORDER BY alias",
        &[],
        |r| {
            Ok(AliasRow {
                alias: r.get(0)?,
                model_id: r.get(1)?,
            })
        },
    )
}

pub(crate) fn set_combo(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    name: &str,
    members: &[String],
) -> R<()> {
    validate::model_name("combo name", name)?;
    validate::members(members)?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO combo_models (name, members, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET members = excluded.members, updated_at = excluded.updated_at",
        params![name, serde_json::to_string(members)?, now_ms()],
    )?;
    bump(&tx, topics, Topic::Models)?;
    Ok(tx.commit()?)
}

pub(crate) fn list_combos(c: &Connection) -> R<Vec<ComboRow>> {
    all(
        c,
        "SELECT name, members FROM combo_models ORDER BY name",
        &[],
        |r| {
            Ok(ComboRow {
                name: r.get(0)?,
                members: serde_json::from_str(&r.get::<_, String>(1)?)?,
            })
        },
    )
}

pub(crate) fn set_price(
    c: &mut Connection,
    topics: &mut Vec<Topic>,
    model: &str,
    p: Price,
) -> R<()> {
    validate::model_name("model id", model)?;
    validate::price(&p)?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO model_prices (model_id, input_per_m, output_per_m, cache_read_per_m, \
         cache_write_per_m, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (model_id) \
         DO UPDATE SET input_per_m = excluded.input_per_m, output_per_m = excluded.output_per_m, \
         cache_read_per_m = excluded.cache_read_per_m, \
         cache_write_per_m = excluded.cache_write_per_m, updated_at = excluded.updated_at",
        params![
            model,
            p.input_per_m,
            p.output_per_m,
            p.cache_read_per_m,
            p.cache_write_per_m,
            now_ms()
        ],
    )?;
    bump(&tx, topics, Topic::Models)?;
    Ok(tx.commit()?)
}

pub(crate) fn list_prices(c: &Connection) -> R<Vec<PriceRow>> {
    all(
        c,
        "SELECT model_id, input_per_m, output_per_m, cache_read_per_m, cache_write_per_m \
         FROM model_prices ORDER BY model_id",
        &[],
        |r| {
            Ok(PriceRow {
                model_id: r.get(0)?,
                price: Price {
                    input_per_m: r.get(1)?,
                    output_per_m: r.get(2)?,
                    cache_read_per_m: r.get(3)?,
                    cache_write_per_m: r.get(4)?,
                },
            })
        },
    )
}

pub(crate) fn append_audit(c: &Connection, e: &AuditEntry) -> R<()> {
    validate::audit(e)?;
    c.execute(
        "INSERT INTO audit_log (actor, action, object_type, object_id, detail, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            e.actor,
            e.action,
            e.object_type,
            e.object_id,
            e.detail.to_string(),
            now_ms()
        ],
    )?;
    Ok(())
}

pub(crate) fn list_audit(c: &Connection, limit: u32) -> R<Vec<AuditRow>> {
    all(
        c,
        "SELECT id, actor, action, object_type, object_id, detail, created_at FROM audit_log \
         ORDER BY id DESC LIMIT ?1",
        &[&limit.min(validate::MAX_LIST)],
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

pub(crate) fn changes_since(c: &Connection, version: i64) -> R<ChangeSet> {
    let rows = all(c, "SELECT topic, version FROM changes", &[], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut set = ChangeSet::default();
    for (topic, v) in rows {
        set.version = set.version.max(v);
        if v > version {
            set.topics.push(Topic::parse(&topic)?);
        }
    }
    Ok(set)
}
