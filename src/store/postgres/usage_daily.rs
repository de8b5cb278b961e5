//! PostgreSQL: the daily usage rollup (`usage_daily`, see `crate::store::usage_daily`).

use kiro_layers::store::{UsageAggregate, UsageFilter, UsageGroup, UsageRow};
use tokio_postgres::{Row, Transaction};

use super::tenancy::all;
use super::{PgStore, R};
use crate::store::usage_daily::{fold, merge, plan};

/// Adds newly inserted usage rows to the rollup, in one statement, inside the caller's
/// transaction. The increments come in key order, so concurrent writers lock rollup rows in
/// the same order (after agents, users and keys; before `changes`).
pub(crate) async fn add(tx: &Transaction<'_>, fresh: &[&UsageRow]) -> R<()> {
    let folded = fold(fresh.iter().copied());
    if folded.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&crate::store::usage_daily::DailyTotals) -> i64| {
        folded.iter().map(|(_, t)| f(t)).collect::<Vec<i64>>()
    };
    let days: Vec<i64> = folded.iter().map(|(k, _)| k.day).collect();
    let users: Vec<i64> = folded.iter().map(|(k, _)| k.user_id).collect();
    let keys: Vec<i64> = folded.iter().map(|(k, _)| k.key_id).collect();
    let agents: Vec<i64> = folded.iter().map(|(k, _)| k.agent_id).collect();
    let accounts: Vec<String> = folded.iter().map(|(k, _)| k.account_id.clone()).collect();
    let models: Vec<String> = folded.iter().map(|(k, _)| k.model.clone()).collect();
    let kinds: Vec<String> = folded.iter().map(|(k, _)| k.account_kind.clone()).collect();
    let credits: Vec<f64> = folded.iter().map(|(_, t)| t.credits).collect();
    tx.execute(
        "INSERT INTO usage_daily (day, user_id, key_id, agent_id, account_id, model, \
         account_kind, requests, errors, input_tokens, output_tokens, cache_read_tokens, \
         cache_write_tokens, credits, charged, estimated) SELECT * FROM unnest($1::bigint[], \
         $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
         $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
         $14::float8[], $15::bigint[], $16::bigint[]) \
         ON CONFLICT (day, user_id, key_id, agent_id, account_id, model, account_kind) \
         DO UPDATE SET \
         requests = usage_daily.requests + excluded.requests, \
         errors = usage_daily.errors + excluded.errors, \
         input_tokens = usage_daily.input_tokens + excluded.input_tokens, \
         output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
         cache_read_tokens = usage_daily.cache_read_tokens + excluded.cache_read_tokens, \
         cache_write_tokens = usage_daily.cache_write_tokens + excluded.cache_write_tokens, \
         credits = usage_daily.credits + excluded.credits, \
         charged = usage_daily.charged + excluded.charged, \
         estimated = usage_daily.estimated + excluded.estimated",
        &[
            &days,
            &users,
            &keys,
            &agents,
            &accounts,
            &models,
            &kinds,
            &col(&|t| t.requests),
            &col(&|t| t.errors),
            &col(&|t| t.input_tokens),
            &col(&|t| t.output_tokens),
            &col(&|t| t.cache_read_tokens),
            &col(&|t| t.cache_write_tokens),
            &credits,
            &col(&|t| t.charged),
            &col(&|t| t.estimated),
        ],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// Totals per group: whole days from the rollup, the rest from `usage_records`.
    pub(crate) async fn query_usage_(
        &self,
        f: UsageFilter,
        group: UsageGroup,
    ) -> R<Vec<UsageAggregate>> {
        let plan = plan(&f, group);
        let mut parts = Vec::with_capacity(1 + plan.raw.len());
        if let Some((from_day, to_day)) = plan.days {
            parts.push(self.query_days(&f, from_day, to_day, group).await?);
        }
        for raw in plan.raw {
            parts.push(self.query_usage_raw(raw, group).await?);
        }
        Ok(merge(parts))
    }

    async fn query_days(
        &self,
        f: &UsageFilter,
        from_day: Option<i64>,
        to_day: Option<i64>,
        group: UsageGroup,
    ) -> R<Vec<UsageAggregate>> {
        let id = |col: &str| format!("CASE WHEN {col} = 0 THEN '' ELSE {col}::text END");
        let expr = match group {
            UsageGroup::User => id("user_id"),
            UsageGroup::Key => id("key_id"),
            UsageGroup::Agent => id("agent_id"),
            UsageGroup::Model => "model".to_owned(),
            UsageGroup::Account => "account_id".to_owned(),
            UsageGroup::Kind => "account_kind".to_owned(),
            UsageGroup::Day | UsageGroup::Hour => {
                "to_char(DATE '1970-01-01' + day::int, 'YYYY-MM-DD')".to_owned()
            }
        };
        let sql = format!(
            "SELECT ({expr}) COLLATE \"C\" AS grp, SUM(requests)::bigint, \
             SUM(requests - errors)::bigint, SUM(input_tokens)::bigint, \
             SUM(output_tokens)::bigint, SUM(cache_read_tokens)::bigint, \
             SUM(cache_write_tokens)::bigint, SUM(credits)::float8, SUM(charged)::bigint, \
             SUM(estimated)::bigint FROM usage_daily WHERE ($1::bigint IS NULL OR user_id = $1) \
             AND ($2::bigint IS NULL OR key_id = $2) AND ($3::bigint IS NULL OR agent_id = $3) \
             AND ($4::bigint IS NULL OR day >= $4) AND ($5::bigint IS NULL OR day < $5) \
             GROUP BY grp ORDER BY grp"
        );
        let count = |r: &Row, i: usize| -> R<u64> {
            Ok(u64::try_from(r.try_get::<_, i64>(i)?).unwrap_or(0))
        };
        all(
            &*self.conn().await?,
            &sql,
            &[&f.user_id, &f.key_id, &f.agent_id, &from_day, &to_day],
            |r| {
                Ok(UsageAggregate {
                    group: r.try_get(0)?,
                    requests: count(r, 1)?,
                    successes: count(r, 2)?,
                    input_tokens: count(r, 3)?,
                    output_tokens: count(r, 4)?,
                    cache_read_tokens: count(r, 5)?,
                    cache_write_tokens: count(r, 6)?,
                    credits: r.try_get(7)?,
                    charged: r.try_get(8)?,
                    estimated_requests: count(r, 9)?,
                })
            },
        )
        .await
    }
}
