//! SQLite: the daily usage rollup (`usage_daily`, see `crate::store::usage_daily`).

use kiro_layers::store::{UsageAggregate, UsageFilter, UsageGroup, UsageRow};
use rusqlite::{params, Connection};

use super::records::{query_usage_raw, usage_totals, UsageSource};
use super::R;
use crate::store::usage_daily::{fold, merge, plan};

/// Adds newly inserted usage rows to the rollup (inside the caller's transaction).
pub(crate) fn add(tx: &Connection, fresh: &[&UsageRow]) -> R<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO usage_daily (day, user_id, key_id, agent_id, account_id, model, \
         account_kind, requests, errors, input_tokens, output_tokens, cache_read_tokens, \
         cache_write_tokens, credits, charged, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
         ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (day, user_id, key_id, agent_id, account_id, model, account_kind) DO UPDATE SET \
         requests = requests + excluded.requests, errors = errors + excluded.errors, \
         input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, \
         cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
         cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
         credits = credits + excluded.credits, charged = charged + excluded.charged, \
         estimated = estimated + excluded.estimated",
    )?;
    for (k, t) in fold(fresh.iter().copied()) {
        stmt.execute(params![
            k.day,
            k.user_id,
            k.key_id,
            k.agent_id,
            k.account_id,
            k.model,
            k.account_kind,
            t.requests,
            t.errors,
            t.input_tokens,
            t.output_tokens,
            t.cache_read_tokens,
            t.cache_write_tokens,
            t.credits,
            t.charged,
            t.estimated
        ])?;
    }
    Ok(())
}

/// Totals per group: whole days from the rollup, the rest from `usage_records`.
pub(crate) fn query_usage(
    c: &Connection,
    f: &UsageFilter,
    group: UsageGroup,
) -> R<Vec<UsageAggregate>> {
    let plan = plan(f, group);
    let mut parts = Vec::with_capacity(1 + plan.raw.len());
    if let Some((from_day, to_day)) = plan.days {
        parts.push(query_days(c, f, from_day, to_day, group)?);
    }
    for raw in &plan.raw {
        parts.push(query_usage_raw(c, raw, group)?);
    }
    Ok(merge(parts))
}

fn query_days(
    c: &Connection,
    f: &UsageFilter,
    from_day: Option<i64>,
    to_day: Option<i64>,
    group: UsageGroup,
) -> R<Vec<UsageAggregate>> {
    let id = |col: &str| format!("CASE WHEN {col} = 0 THEN '' ELSE CAST({col} AS TEXT) END");
    let expr = match group {
        UsageGroup::User => id("user_id"),
        UsageGroup::Key => id("key_id"),
        UsageGroup::Agent => id("agent_id"),
        UsageGroup::Model => "model".to_owned(),
        UsageGroup::Account => "account_id".to_owned(),
        UsageGroup::Kind => "account_kind".to_owned(),
        UsageGroup::Day | UsageGroup::Hour => {
            "strftime('%Y-%m-%d', day * 86400, 'unixepoch')".to_owned()
        }
    };
    const DAILY: UsageSource = UsageSource {
        table: "usage_daily",
        requests: "SUM(requests), SUM(requests - errors)",
        time: "day",
    };
    usage_totals(c, &DAILY, &expr, f, from_day, to_day)
}
