//! PostgreSQL: usage, models, audit and change versions.

use std::collections::{BTreeMap, HashSet};

use kiro_layers::store::*;
use tokio_postgres::Row;

use super::tenancy::{all, apply_charges};
use super::{bump, PgErr, PgStore, R};
use crate::store::validate;

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The model tables keyed by a name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Named {
    Alias,
    Combo,
    Price,
}

impl PgStore {
    pub(crate) async fn insert_usage_(&self, rows: &[UsageRow]) -> R<u64> {
        for row in rows {
            validate::usage_row(row)?;
        }
        // One statement per batch: the rows travel as column arrays and `RETURNING` names
        // the ones that were new (a duplicate, even within the batch, is skipped).
        let col = |f: &dyn Fn(&UsageRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let opt = |f: &dyn Fn(&UsageRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
        let text = |f: &dyn Fn(&UsageRow) -> &str| {
            rows.iter()
                .map(|r| f(r).to_owned())
                .collect::<Vec<String>>()
        };
        let request_ids = text(&|r| r.request_id.as_str());
        let attempts = col(&|r| i64::from(r.attempt));
        let user_ids = opt(&|r| r.user_id);
        let agent_ids = opt(&|r| r.agent_id);
        let key_ids = opt(&|r| r.key_id);
        let requested = text(&|r| r.requested_model.as_str());
        let resolved = text(&|r| r.resolved_model.as_str());
        let accounts: Vec<Option<String>> = rows.iter().map(|r| r.account_id.clone()).collect();
        let input = col(&|r| tokens(r.input_tokens));
        let output = col(&|r| tokens(r.output_tokens));
        let cache_read = col(&|r| tokens(r.cache_read_tokens));
        let cache_write = col(&|r| tokens(r.cache_write_tokens));
        let credits: Vec<f64> = rows.iter().map(|r| r.credits).collect();
        let statuses = text(&|r| r.status.as_str());
        let ttft = opt(&|r| r.time_to_first_token.map(millis));
        let durations = col(&|r| millis(r.duration));
        let started: Vec<Timestamp> = rows.iter().map(|r| r.started_at).collect();
        let charged_col = col(&|r| r.charged);
        let kinds: Vec<Option<String>> = rows.iter().map(|r| r.account_kind.clone()).collect();
        let estimated: Vec<bool> = rows.iter().map(|r| r.estimated).collect();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let new_rows = tx
            .query(
                "INSERT INTO usage_records (request_id, attempt, user_id, agent_id, key_id, \
                 requested_model, resolved_model, account_id, input_tokens, output_tokens, \
                 cache_read_tokens, cache_write_tokens, credits, status, ttft_ms, duration_ms, \
                 started_at, charged, account_kind, estimated) SELECT * FROM unnest($1::text[], \
                 $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], \
                 $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], \
                 $13::float8[], $14::text[], $15::bigint[], $16::bigint[], $17::timestamptz[], \
                 $18::bigint[], $19::text[], $20::bool[]) \
                 ON CONFLICT (request_id, attempt) DO NOTHING RETURNING request_id, attempt",
                &[
                    &request_ids,
                    &attempts,
                    &user_ids,
                    &agent_ids,
                    &key_ids,
                    &requested,
                    &resolved,
                    &accounts,
                    &input,
                    &output,
                    &cache_read,
                    &cache_write,
                    &credits,
                    &statuses,
                    &ttft,
                    &durations,
                    &started,
                    &charged_col,
                    &kinds,
                    &estimated,
                ],
            )
            .await?;
        let mut fresh = HashSet::new();
        for row in &new_rows {
            fresh.insert((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?));
        }
        let inserted = fresh.len() as u64;
        let mut charges = Vec::new();
        let mut last_used: BTreeMap<i64, Timestamp> = BTreeMap::new();
        let mut new_usage = Vec::new();
        for r in rows {
            // `remove`, so a row repeated within the batch is charged once.
            if !fresh.remove(&(r.request_id.clone(), i64::from(r.attempt))) {
                continue;
            }
            new_usage.push(r);
            charges.push(validate::charge_for(r));
            if let Some(key) = r.key_id {
                let at = last_used.entry(key).or_insert(r.started_at);
                *at = (*at).max(r.started_at);
            }
        }
        let charged = charges.iter().any(|c| c.amount != 0);
        apply_charges(&tx, &charges, &last_used).await?;
        super::usage_daily::add(&tx, &new_usage).await?;
        if charged {
            bump(&tx, Topic::Quota).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Totals per group straight from `usage_records` (see `usage_daily` for the rollup).
    pub(crate) async fn query_usage_raw(
        &self,
        f: UsageFilter,
        group: UsageGroup,
    ) -> R<Vec<UsageAggregate>> {
        let expr = match group {
            UsageGroup::User => "COALESCE(user_id::text, '')",
            UsageGroup::Key => "COALESCE(key_id::text, '')",
            UsageGroup::Model => "resolved_model",
            UsageGroup::Account => "COALESCE(account_id, '')",
            UsageGroup::Day => "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            UsageGroup::Agent => "COALESCE(agent_id::text, '')",
            UsageGroup::Hour => "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')",
            UsageGroup::Kind => "COALESCE(account_kind, '')",
        };
        let sql = format!(
            "SELECT ({expr}) COLLATE \"C\" AS grp, COUNT(*)::bigint, COUNT(*) FILTER (WHERE status = 'ok')::bigint, \
             SUM(input_tokens)::bigint, SUM(output_tokens)::bigint, SUM(cache_read_tokens)::bigint, \
             SUM(cache_write_tokens)::bigint, SUM(credits)::float8, SUM(charged)::bigint, \
             COUNT(*) FILTER (WHERE estimated)::bigint FROM usage_records WHERE ($1::bigint IS NULL OR user_id = $1) \
             AND ($2::bigint IS NULL OR key_id = $2) AND ($3::bigint IS NULL OR agent_id = $3) \
             AND ($4::timestamptz IS NULL OR started_at >= $4) \
             AND ($5::timestamptz IS NULL OR started_at < $5) \
             GROUP BY grp ORDER BY grp"
        );
        let count = |r: &Row, i: usize| -> R<u64> {
            Ok(u64::try_from(r.try_get::<_, i64>(i)?).unwrap_or(0))
        };
        all(
            &*self.conn().await?,
            &sql,
            &[&f.user_id, &f.key_id, &f.agent_id, &f.from, &f.to],
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

    /// Runs one model-table statement and bumps `models`.
    async fn models_write(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> R<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx.execute(sql, params).await?;
        if n > 0 {
            bump(&tx, Topic::Models).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn delete_named_(&self, kind: Named, name: String) -> R<()> {
        let (sql, what) = match kind {
            Named::Alias => ("DELETE FROM model_aliases WHERE alias = $1", "alias"),
            Named::Combo => ("DELETE FROM combo_models WHERE name = $1", "combo"),
            Named::Price => (
                "DELETE FROM model_prices WHERE model_id = $1",
                "price for model",
            ),
        };
        validate::lookup_name(what, &name)?;
        if self.models_write(sql, &[&name]).await? == 0 {
            return Err(PgErr(StoreError::NotFound(format!("{what} `{name}`"))));
        }
        Ok(())
    }

    pub(crate) async fn set_alias_(&self, alias: String, model: String) -> R<()> {
        validate::model_name("alias", &alias)?;
        validate::model_name("model id", &model)?;
        self.models_write(
            "INSERT INTO model_aliases (alias, model_id) VALUES ($1, $2) ON CONFLICT (alias) \
             DO UPDATE SET model_id = excluded.model_id, updated_at = now()",
            &[&alias, &model],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn list_aliases_(&self) -> R<Vec<AliasRow>> {
        all(
            &*self.conn().await?,
            "SELECT alias, model_id FROM model_aliases ORDER BY alias COLLATE \"C\"",
            &[],
            |r| {
                Ok(AliasRow {
                    alias: r.try_get(0)?,
                    model_id: r.try_get(1)?,
                })
            },
        )
        .await
    }

    pub(crate) async fn set_combo_(&self, name: String, members: Vec<String>) -> R<()> {
        validate::model_name("combo name", &name)?;
        validate::members(&members)?;
        self.models_write(
            "INSERT INTO combo_models (name, members) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET members = excluded.members, updated_at = now()",
            &[&name, &members],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn list_combos_(&self) -> R<Vec<ComboRow>> {
        all(
            &*self.conn().await?,
            "SELECT name, members FROM combo_models ORDER BY name COLLATE \"C\"",
            &[],
            |r| {
                Ok(ComboRow {
                    name: r.try_get(0)?,
                    members: r.try_get(1)?,
                })
            },
        )
        .await
    }

    pub(crate) async fn set_price_(&self, model: String, p: Price) -> R<()> {
        validate::model_name("model id", &model)?;
        validate::price(&p)?;
        self.models_write(
            "INSERT INTO model_prices (model_id, input_per_m, output_per_m, cache_read_per_m, \
             cache_write_per_m) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_id) DO UPDATE SET \
             input_per_m = excluded.input_per_m, output_per_m = excluded.output_per_m, \
             cache_read_per_m = excluded.cache_read_per_m, \
             cache_write_per_m = excluded.cache_write_per_m, updated_at = now()",
            &[
                &model,
                &p.input_per_m,
                &p.output_per_m,
                &p.cache_read_per_m,
                &p.cache_write_per_m,
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn list_prices_(&self) -> R<Vec<PriceRow>> {
        all(
            &*self.conn().await?,
            "SELECT model_id, input_per_m, output_per_m, cache_read_per_m, cache_write_per_m \
             FROM model_prices ORDER BY model_id COLLATE \"C\"",
            &[],
            |r| {
                Ok(PriceRow {
                    model_id: r.try_get(0)?,
                    price: Price {
                        input_per_m: r.try_get(1)?,
                        output_per_m: r.try_get(2)?,
                        cache_read_per_m: r.try_get(3)?,
                        cache_write_per_m: r.try_get(4)?,
                    },
                })
            },
        )
        .await
    }

    pub(crate) async fn append_audit_(&self, e: AuditEntry) -> R<()> {
        validate::audit(&e)?;
        self.conn()
            .await?
            .execute(
                "INSERT INTO audit_log (actor, action, object_type, object_id, detail) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&e.actor, &e.action, &e.object_type, &e.object_id, &e.detail],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn list_audit_(&self, limit: u32) -> R<Vec<AuditRow>> {
        all(
            &*self.conn().await?,
            "SELECT id, actor, action, object_type, object_id, detail, created_at FROM audit_log \
             ORDER BY id DESC LIMIT $1",
            &[&i64::from(limit.min(validate::MAX_LIST))],
            |r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    object_type: r.try_get(3)?,
                    object_id: r.try_get(4)?,
                    detail: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            },
        )
        .await
    }

    pub(crate) async fn changes_since_(&self, version: i64) -> R<ChangeSet> {
        let rows = all(
            &*self.conn().await?,
            "SELECT topic, version FROM changes",
            &[],
            |r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?)),
        )
        .await?;
        let mut set = ChangeSet::default();
        for (topic, v) in rows {
            set.version = set.version.max(v);
            if v > version {
                set.topics.push(Topic::parse(&topic)?);
            }
        }
        Ok(set)
    }
}
