//! Kiro usage limits on the operator's pages: the accounts table's usage cell (used / limit,
//! reset, plan, when fetched; a button to fetch now) and the overview's "accounts near their
//! limits". Everything shown comes from the stored snapshots (`crate::usage_limits`).

use std::collections::HashMap;
use std::fmt::Write as _;

use kiro_layers::store::{AccountUsageLimits, LimitSnapshot};

use crate::console::html::{esc, table, when};
use crate::console::i18n::Msg;
use crate::console::session::Ctx;
use crate::console::Console;
use crate::tenancy::api::admin::AccountView;

/// The stored limits by account id (empty without the fetcher or when the store fails: the
/// page still shows the accounts).
pub async fn stored(st: &Console) -> HashMap<i64, AccountUsageLimits> {
    let Some(limits) = &st.config.usage_limits else {
        return HashMap::new();
    };
    match limits.stored().await {
        Ok(rows) => rows.into_iter().map(|r| (r.account_id, r)).collect(),
        Err(e) => {
            tracing::warn!("usage limits: {}", e.message());
            HashMap::new()
        }
    }
}

fn amount(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

/// `12.5 / 550 (2 %)` with a meter.
fn used_of(s: &LimitSnapshot) -> String {
    format!(
        r#"{} / {} ({:.0} %)<meter class="block" min="0" max="1" low="0.6" high="0.8" optimum="0" value="{:.3}"></meter>"#,
        amount(s.used),
        amount(s.limit),
        s.fraction() * 100.0,
        s.fraction().min(1.0)
    )
}

/// The accounts table's cell for one account.
pub fn usage_cell(ctx: &Ctx, id: i64, row: Option<&AccountUsageLimits>, can_fetch: bool) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let mut out = format!(r#"<span data-testid="usage-limits-{id}">"#);
    match row.and_then(|r| r.snapshot.as_ref().map(|s| (r, s))) {
        Some((r, s)) => {
            out.push_str(&used_of(s));
            let mut sub = Vec::new();
            if let Some(reset) = &s.resets_at {
                sub.push(format!("{} {}", t(Msg::Resets), reset.format("%Y-%m-%d")));
            }
            if let Some(plan) = &s.subscription {
                sub.push(esc(plan));
            }
            let _ = write!(
                out,
                r#"<span class="sub" title="{}">{}</span>"#,
                r.fetched_at.as_ref().map(when).unwrap_or_default(),
                sub.join(" · ")
            );
        }
        None => {
            let _ = write!(out, r#"<span class="muted">{}</span>"#, t(Msg::NotFetched));
        }
    }
    if let Some(error) = row.and_then(|r| r.error.as_deref()) {
        let _ = write!(
            out,
            r#"<span class="sub"><span class="badge err" title="{}">{}</span></span>"#,
            esc(error),
            t(Msg::FetchFailed)
        );
    }
    out.push_str("</span>");
    if can_fetch {
        let _ = write!(
            out,
            r#" <button type="submit" name="act" value="usage:{id}" class="small secondary" title="{}" aria-label="{}" data-testid="usage-{id}">↻</button>"#,
            t(Msg::RefreshUsage),
            t(Msg::RefreshUsage)
        );
    }
    out
}

/// The overview's section: accounts at or above the warning share of their limit.
pub async fn near_limits_section(ctx: &Ctx, st: &Console, accounts: &[AccountView]) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let Some(limits) = &st.config.usage_limits else {
        return String::new();
    };
    let stored = stored(st).await;
    let mut near: Vec<(&AccountView, &LimitSnapshot)> = accounts
        .iter()
        .filter_map(|a| {
            let s = stored.get(&a.account.id)?.snapshot.as_ref()?;
            limits.is_near(s).then_some((a, s))
        })
        .collect();
    near.sort_by(|a, b| b.1.fraction().total_cmp(&a.1.fraction()));
    let rows: Vec<Vec<String>> = near
        .iter()
        .map(|(a, s)| {
            vec![
                a.account.id.to_string(),
                esc(&a.account.name),
                used_of(s),
                s.resets_at
                    .map(|r| r.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                esc(s.subscription.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    format!(
        "<h2>{}</h2>{}",
        t(Msg::NearLimits),
        table(
            "near-limits",
            &[
                "ID",
                t(Msg::Name),
                t(Msg::Used),
                t(Msg::ResetDate),
                t(Msg::Plan)
            ],
            &rows,
            t(Msg::NoneNearLimits)
        )
    )
}
