//! The daily usage rollup (migration 0010) answers exactly what the raw usage rows would:
//! every grouping, with filters, over aligned, partial and open ranges; a re-sent row is not
//! counted twice; the migration backfills a ledger written before it.

use std::collections::BTreeMap;

use chrono::TimeZone;
use kiro_layers::store::*;
use kiro_layers::traits::UsageStatus;

use std::sync::Arc;

use crate::store_support::*;

const GROUPS: [UsageGroup; 8] = [
    UsageGroup::Day,
    UsageGroup::Hour,
    UsageGroup::User,
    UsageGroup::Key,
    UsageGroup::Agent,
    UsageGroup::Model,
    UsageGroup::Account,
    UsageGroup::Kind,
];

fn at(day: u32, hour: u32, minute: u32) -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 5, day, hour, minute, 7)
        .unwrap()
}

/// A ledger over six days with every key column varying (and sometimes absent).
async fn ledger(s: &Arc<dyn Store>, b: &Backend) -> Vec<UsageRow> {
    let agent = s.create_agent("rollup-agent").await.unwrap();
    let mut keys = Vec::new();
    for n in 0..3 {
        let user = s
            .create_user(NewUser {
                agent_id: (n != 2).then_some(agent.id),
                name: format!("rollup-{n}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let (key, _) = new_key(&b.secret, KeyKind::Inference, Some(user.id), None);
        keys.push(s.create_api_key(key).await.unwrap());
    }
    let models = ["claude-sonnet-4.5", "claude-haiku-4.5", "auto"];
    (0..240u32)
        .map(|i| {
            let key = (i % 4 != 3).then(|| &keys[(i % 3) as usize]);
            let mut row = usage(&format!("r{i}"), 1 + i % 2, key, i64::from(i % 7) * 10);
            row.started_at = at(1 + i % 6, (i * 7) % 24, (i * 13) % 60);
            row.resolved_model = models[(i % 3) as usize].into();
            row.account_id = (i % 5 != 0).then(|| format!("{}", i % 2 + 1));
            row.account_kind = (i % 5 != 0).then(|| ["kiro", "cursor"][(i % 2) as usize].into());
            row.estimated = i % 2 == 1 && i % 5 != 0;
            row.input_tokens = u64::from(i) * 3;
            row.output_tokens = u64::from(i % 11);
            row.cache_read_tokens = u64::from(i % 4);
            row.cache_write_tokens = u64::from(i % 2);
            row.credits = f64::from(i % 9) * 0.125;
            if i % 6 == 0 {
                row.status = UsageStatus::UpstreamError;
            }
            row
        })
        .collect()
}

/// What `query_usage` must answer, computed from the rows themselves.
fn expected(rows: &[UsageRow], f: &UsageFilter, group: UsageGroup) -> Vec<UsageAggregate> {
    let id = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out: BTreeMap<String, UsageAggregate> = BTreeMap::new();
    for r in rows {
        let keep = f.user_id.is_none_or(|u| r.user_id == Some(u))
            && f.key_id.is_none_or(|k| r.key_id == Some(k))
            && f.agent_id.is_none_or(|a| r.agent_id == Some(a))
            && f.from.is_none_or(|t| r.started_at >= t)
            && f.to.is_none_or(|t| r.started_at < t);
        if !keep {
            continue;
        }
        let g = match group {
            UsageGroup::Day => r.started_at.format("%Y-%m-%d").to_string(),
            UsageGroup::Hour => r.started_at.format("%Y-%m-%dT%H").to_string(),
            UsageGroup::User => id(r.user_id),
            UsageGroup::Key => id(r.key_id),
            UsageGroup::Agent => id(r.agent_id),
            UsageGroup::Model => r.resolved_model.clone(),
            UsageGroup::Account => r.account_id.clone().unwrap_or_default(),
            UsageGroup::Kind => r.account_kind.clone().unwrap_or_default(),
        };
        let a = out.entry(g.clone()).or_insert_with(|| UsageAggregate {
            group: g,
            ..UsageAggregate::default()
        });
        a.requests += 1;
        a.successes += u64::from(r.status == UsageStatus::Ok);
        a.input_tokens += r.input_tokens;
        a.output_tokens += r.output_tokens;
        a.cache_read_tokens += r.cache_read_tokens;
        a.cache_write_tokens += r.cache_write_tokens;
        a.credits += r.credits;
        a.charged += r.charged;
        a.estimated_requests += u64::from(r.estimated);
    }
    out.into_values().collect()
}

fn filters(rows: &[UsageRow]) -> Vec<UsageFilter> {
    let some = |r: &UsageRow| (r.user_id, r.key_id, r.agent_id);
    let (user, key, agent) = rows
        .iter()
        .map(some)
        .find(|(u, k, a)| u.is_some() && k.is_some() && a.is_some())
        .unwrap();
    let range = |from: Option<Timestamp>, to: Option<Timestamp>| UsageFilter {
        from,
        to,
        ..UsageFilter::default()
    };
    vec![
        UsageFilter::default(),
        range(
            Some(at(2, 0, 0) - chrono::Duration::seconds(7)),
            Some(at(5, 0, 0)),
        ),
        range(Some(at(2, 9, 30)), Some(at(5, 17, 45))),
        range(Some(at(3, 9, 30)), Some(at(3, 20, 0))),
        range(Some(at(3, 22, 0)), Some(at(4, 3, 0))),
        range(Some(at(4, 6, 0)), None),
        range(None, Some(at(3, 11, 11))),
        UsageFilter {
            user_id: user,
            from: Some(at(2, 12, 0)),
            ..UsageFilter::default()
        },
        UsageFilter {
            key_id: key,
            to: Some(at(6, 1, 0)),
            ..UsageFilter::default()
        },
        UsageFilter {
            agent_id: agent,
            ..UsageFilter::default()
        },
    ]
}

fn assert_same(got: &[UsageAggregate], want: &[UsageAggregate], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.credits - w.credits).abs() < 1e-9,
            "{what}: credits {} vs {}",
            g.credits,
            w.credits
        );
        let strip = |a: &UsageAggregate| UsageAggregate {
            credits: 0.0,
            ..a.clone()
        };
        assert_eq!(strip(g), strip(w), "{what}");
    }
}

async fn check_all(s: &Arc<dyn Store>, rows: &[UsageRow]) {
    for f in filters(rows) {
        for group in GROUPS {
            let got = s.query_usage(f.clone(), group).await.unwrap();
            assert_same(
                &got,
                &expected(rows, &f, group),
                &format!("{group:?} {f:?}"),
            );
        }
    }
}

pub async fn rollup_answers_what_the_rows_say(b: &Backend) {
    let s = &b.store;
    let rows = ledger(s, b).await;
    // In several batches; the second half is sent twice (a retried batch).
    for chunk in rows.chunks(50) {
        s.insert_usage(chunk).await.unwrap();
    }
    assert_eq!(s.insert_usage(&rows[120..]).await.unwrap(), 0);
    check_all(s, &rows).await;
}

/// Runs `sql` (several statements) straight on the database.
async fn execute(b: &Backend, sql: &str) {
    if b.name == "sqlite" {
        let path = b.url.trim_start_matches("sqlite://").to_owned();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&sql)
                .unwrap()
        })
        .await
        .unwrap();
    } else {
        let (client, connection) = tokio_postgres::connect(&b.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    }
}

pub async fn migration_backfills_the_rollup(b: &Backend) {
    let rows = ledger(&b.store, b).await;
    b.store.insert_usage(&rows).await.unwrap();
    // Back to a database from before 0010: no rollup table, the migration not recorded.
    execute(
        b,
        "DROP TABLE usage_daily; DELETE FROM schema_migrations WHERE name = '0010_usage_daily';",
    )
    .await;
    let reopened = kiro_gateway::store::open(&b.url, &b.secret).await.unwrap();
    check_all(&reopened, &rows).await;
    // And the rollup keeps up with rows written after the upgrade.
    let mut later = usage("after-upgrade", 1, None, 5);
    later.started_at = at(4, 12, 0);
    reopened.insert_usage(&[later.clone()]).await.unwrap();
    let mut all = rows;
    all.push(later);
    check_all(&reopened, &all).await;
}
