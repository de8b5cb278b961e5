//! The daily usage rollup (`usage_daily`, migration 0010), shared by both backends.
//!
//! Every usage row, when it is first inserted, is also added to one rollup row keyed by its
//! UTC day, user, key, agent, account, account kind and resolved model, in the same transaction. A usage
//! question over whole days is then answered from the rollup (tens of thousands of rows
//! instead of millions); the partial days at either end of a range, and anything grouped by
//! hour, still come from `usage_records`. Both parts use the same filters and group labels, and
//! [`merge`] adds them up, so the answer is the one the raw table alone would give.
//!
//! The rollup's key columns are NOT NULL (a NULL would make every row its own group in a
//! primary key): "no user/key/agent" is stored as 0 (ids start at 1), "no account" and "no kind" as `''`.

use std::collections::BTreeMap;

use kiro_layers::store::{Timestamp, UsageAggregate, UsageFilter, UsageGroup, UsageRow};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The day number (days since 1970-01-01 UTC) of a timestamp.
pub fn day_of(t: Timestamp) -> i64 {
    t.timestamp_millis().div_euclid(DAY_MS)
}

/// The first instant of day `day`.
pub fn day_start(day: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(day.saturating_mul(DAY_MS)).unwrap_or_default()
}

/// One rollup row's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DailyKey {
    /// Days since 1970-01-01 UTC.
    pub day: i64,
    /// The user, 0 for none.
    pub user_id: i64,
    /// The key, 0 for none.
    pub key_id: i64,
    /// The agent, 0 for none.
    pub agent_id: i64,
    /// The account, empty for none.
    pub account_id: String,
    /// The resolved model.
    pub model: String,
    /// The kind of account that served (`kiro`, `cursor`), empty for none.
    pub account_kind: String,
}

/// What one rollup row adds up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DailyTotals {
    /// Attempts.
    pub requests: i64,
    /// Attempts whose status was not `ok`.
    pub errors: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Cache-read tokens.
    pub cache_read_tokens: i64,
    /// Cache-write tokens.
    pub cache_write_tokens: i64,
    /// Kiro credits.
    pub credits: f64,
    /// Micro-credits charged.
    pub charged: i64,
    /// Attempts whose token counts are the gateway's estimate.
    pub estimated: i64,
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The newly inserted rows of a batch folded into rollup increments, in key order (so two
/// writers upserting overlapping keys lock them in the same order).
pub fn fold<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> Vec<(DailyKey, DailyTotals)> {
    let mut out: BTreeMap<DailyKey, DailyTotals> = BTreeMap::new();
    for r in rows {
        let key = DailyKey {
            day: day_of(r.started_at),
            user_id: r.user_id.unwrap_or(0),
            key_id: r.key_id.unwrap_or(0),
            agent_id: r.agent_id.unwrap_or(0),
            account_id: r.account_id.clone().unwrap_or_default(),
            model: r.resolved_model.clone(),
            account_kind: r.account_kind.clone().unwrap_or_default(),
        };
        let t = out.entry(key).or_default();
        t.requests += 1;
        // The raw query counts `status = 'ok'` as a success; so does the rollup.
        t.errors += i64::from(r.status.as_str() != "ok");
        t.input_tokens = t.input_tokens.saturating_add(tokens(r.input_tokens));
        t.output_tokens = t.output_tokens.saturating_add(tokens(r.output_tokens));
        t.cache_read_tokens = t
            .cache_read_tokens
            .saturating_add(tokens(r.cache_read_tokens));
        t.cache_write_tokens = t
            .cache_write_tokens
            .saturating_add(tokens(r.cache_write_tokens));
        t.credits += r.credits;
        t.charged = t.charged.saturating_add(r.charged);
        t.estimated += i64::from(r.estimated);
    }
    out.into_iter().collect()
}

/// How a usage question is split between the rollup and the raw table.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Whole days `[from, to)` (None = unbounded) to read from the rollup, if any.
    pub days: Option<(Option<i64>, Option<i64>)>,
    /// Time ranges to read from `usage_records` (the partial days at the ends, or everything).
    pub raw: Vec<UsageFilter>,
}

/// Splits `filter` into whole days (rollup) and the rest (raw rows). Grouping by hour needs
/// the raw rows throughout.
pub fn plan(filter: &UsageFilter, group: UsageGroup) -> Plan {
    if group == UsageGroup::Hour {
        return Plan {
            days: None,
            raw: vec![filter.clone()],
        };
    }
    let from_day = filter.from.map(|t| {
        t.timestamp_millis().div_euclid(DAY_MS)
            + i64::from(t.timestamp_millis().rem_euclid(DAY_MS) != 0)
    });
    let to_day = filter.to.map(|t| t.timestamp_millis().div_euclid(DAY_MS));
    if let (Some(a), Some(b)) = (from_day, to_day) {
        if a >= b {
            return Plan {
                days: None,
                raw: vec![filter.clone()],
            };
        }
    }
    let mut raw = Vec::new();
    if let (Some(from), Some(day)) = (filter.from, from_day) {
        if from < day_start(day) {
            raw.push(UsageFilter {
                from: Some(from),
                to: Some(day_start(day)),
                ..filter.clone()
            });
        }
    }
    if let (Some(to), Some(day)) = (filter.to, to_day) {
        if day_start(day) < to {
            raw.push(UsageFilter {
                from: Some(day_start(day)),
                to: Some(to),
                ..filter.clone()
            });
        }
    }
    Plan {
        days: Some((from_day, to_day)),
        raw,
    }
}

/// Adds up the parts of a split answer by group, ordered by group (byte order, as the
/// backends' `ORDER BY` gives).
pub fn merge(parts: Vec<Vec<UsageAggregate>>) -> Vec<UsageAggregate> {
    let mut single = parts.iter().filter(|p| !p.is_empty());
    if let (Some(_), None) = (single.next(), single.next()) {
        return parts
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or_default();
    }
    let mut out: BTreeMap<String, UsageAggregate> = BTreeMap::new();
    for a in parts.into_iter().flatten() {
        let t = out
            .entry(a.group.clone())
            .or_insert_with(|| UsageAggregate {
                group: a.group.clone(),
                ..UsageAggregate::default()
            });
        t.requests += a.requests;
        t.successes += a.successes;
        t.input_tokens += a.input_tokens;
        t.output_tokens += a.output_tokens;
        t.cache_read_tokens += a.cache_read_tokens;
        t.cache_write_tokens += a.cache_write_tokens;
        t.credits += a.credits;
        t.charged += a.charged;
        t.estimated_requests += a.estimated_requests;
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    #[test]
    fn whole_days_from_the_rollup_and_the_ends_from_raw_rows() {
        let f = UsageFilter {
            from: Some(at(3, 10)),
            to: Some(at(6, 12)),
            ..UsageFilter::default()
        };
        let p = plan(&f, UsageGroup::Model);
        assert_eq!(
            p.days,
            Some((Some(day_of(at(4, 0))), Some(day_of(at(6, 0)))))
        );
        assert_eq!(p.raw.len(), 2);
        assert_eq!(
            (p.raw[0].from, p.raw[0].to),
            (Some(at(3, 10)), Some(at(4, 0)))
        );
        assert_eq!(
            (p.raw[1].from, p.raw[1].to),
            (Some(at(6, 0)), Some(at(6, 12)))
        );
    }

    #[test]
    fn aligned_and_open_ranges_need_no_raw_rows() {
        let p = plan(&UsageFilter::default(), UsageGroup::Day);
        assert_eq!(p.days, Some((None, None)));
        assert!(p.raw.is_empty());
        let f = UsageFilter {
            from: Some(at(3, 0)),
            to: Some(at(5, 0)),
            user_id: Some(7),
            ..UsageFilter::default()
        };
        let p = plan(&f, UsageGroup::User);
        assert_eq!(
            p.days,
            Some((Some(day_of(at(3, 0))), Some(day_of(at(5, 0)))))
        );
        assert!(p.raw.is_empty());
    }

    #[test]
    fn within_one_day_or_by_hour_is_all_raw() {
        let f = UsageFilter {
            from: Some(at(3, 10)),
            to: Some(at(4, 9)),
            ..UsageFilter::default()
        };
        assert_eq!(plan(&f, UsageGroup::Model).days, None);
        assert_eq!(plan(&f, UsageGroup::Model).raw, vec![f.clone()]);
        assert_eq!(plan(&UsageFilter::default(), UsageGroup::Hour).days, None);
    }

    #[test]
    fn merge_adds_by_group_in_byte_order() {
        let a = |g: &str, n: u64| UsageAggregate {
            group: g.into(),
            requests: n,
            successes: n,
            credits: n as f64,
            ..UsageAggregate::default()
        };
        let merged = merge(vec![vec![a("b", 1), a("a", 2)], vec![a("b", 3), a("B", 1)]]);
        let groups: Vec<_> = merged
            .iter()
            .map(|m| (m.group.as_str(), m.requests))
            .collect();
        assert_eq!(groups, [("B", 1), ("a", 2), ("b", 4)]);
        assert_eq!(merge(vec![vec![], vec![a("x", 1)]]), vec![a("x", 1)]);
    }
}
