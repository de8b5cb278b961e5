//! Pieces more than one role's pages show: usage tables and charts, key tables, the
//! "key created" page and the key form.

use std::fmt::Write as _;

use kiro_layers::store::{ApiKeyRow, KeyStatus, UsageAggregate};

use crate::console::chart::{bar_chart, Bar};
use crate::console::form::{show_credits, FieldError, Form};
use crate::console::html::{button_form, count, csrf_field, esc, page, table, when};
use crate::console::i18n::Msg;
use crate::console::session::Ctx;
use crate::tenancy::api::{CreatedKey, KeyOptions};

/// `rows` grouped by hour (`YYYY-MM-DDTHH`), with an empty row for every hour of the last
/// `hours` that had no usage, oldest first: a quiet hour is a gap in the chart, not missing.
pub fn every_hour(rows: &[UsageAggregate], hours: i64) -> Vec<UsageAggregate> {
    let now = chrono::Utc::now();
    (0..hours)
        .rev()
        .map(|ago| {
            let label = (now - chrono::Duration::hours(ago))
                .format("%Y-%m-%dT%H")
                .to_string();
            filled(rows, label)
        })
        .collect()
}

/// Like [`every_hour`], per day (`YYYY-MM-DD`) over the last `days`.
pub fn every_day(rows: &[UsageAggregate], days: i64) -> Vec<UsageAggregate> {
    let today = chrono::Utc::now();
    (0..days)
        .rev()
        .map(|ago| {
            let label = (today - chrono::Duration::days(ago))
                .format("%Y-%m-%d")
                .to_string();
            filled(rows, label)
        })
        .collect()
}

fn filled(rows: &[UsageAggregate], label: String) -> UsageAggregate {
    rows.iter()
        .find(|r| r.group == label)
        .cloned()
        .unwrap_or(UsageAggregate {
            group: label,
            ..UsageAggregate::default()
        })
}

/// A chart of requests (errors stacked on top) per group.
pub fn requests_chart(ctx: &Ctx, testid: &str, rows: &[UsageAggregate]) -> String {
    let bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            label: r.group.clone(),
            value: r.successes as f64,
            extra: r.requests.saturating_sub(r.successes) as f64,
        })
        .collect();
    bar_chart(testid, ctx.lang.text(Msg::RequestsChart), &bars)
}

/// A chart of credits charged per group.
pub fn charged_chart(ctx: &Ctx, testid: &str, rows: &[UsageAggregate]) -> String {
    let bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            label: r.group.clone(),
            value: r.charged as f64 / 1_000_000.0,
            extra: 0.0,
        })
        .collect();
    bar_chart(testid, ctx.lang.text(Msg::ChargedChart), &bars)
}

/// The usage table: one row per group.
pub fn usage_table(ctx: &Ctx, group_label: &str, rows: &[UsageAggregate]) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                esc(if r.group.is_empty() { "—" } else { &r.group }),
                count(r.requests),
                count(r.requests.saturating_sub(r.successes)),
                count(r.input_tokens),
                count(r.output_tokens),
                format!("{:.2}", r.credits),
                show_credits(r.charged),
            ]
        })
        .collect();
    table(
        "usage-table",
        &[
            &esc(group_label),
            t(Msg::Requests),
            t(Msg::Errors),
            t(Msg::InputTokens),
            t(Msg::OutputTokens),
            t(Msg::KiroCredits),
            t(Msg::Charged),
        ],
        &body,
        t(Msg::NoUsage),
    )
}

/// Totals over all groups.
pub fn totals(rows: &[UsageAggregate]) -> UsageAggregate {
    rows.iter().fold(UsageAggregate::default(), |mut sum, r| {
        sum.requests += r.requests;
        sum.successes += r.successes;
        sum.input_tokens += r.input_tokens;
        sum.output_tokens += r.output_tokens;
        sum.credits += r.credits;
        sum.charged += r.charged;
        sum
    })
}

/// A summary card.
pub fn card(label: &str, value: &str, testid: &str) -> String {
    format!(
        r#"<div class="card"><div class="label">{}</div><div class="value" data-testid="{testid}">{}</div></div>"#,
        esc(label),
        esc(value)
    )
}

/// A key's status badge.
pub fn key_status(ctx: &Ctx, key: &ApiKeyRow) -> String {
    let expired = key.expires_at.is_some_and(|at| at <= chrono::Utc::now());
    match (key.status, expired) {
        (KeyStatus::Revoked, _) => format!(
            r#"<span class="badge err">{}</span>"#,
            ctx.lang.text(Msg::Revoked)
        ),
        (_, true) => format!(
            r#"<span class="badge warn">{}</span>"#,
            ctx.lang.text(Msg::Expired)
        ),
        _ => format!(
            r#"<span class="badge ok">{}</span>"#,
            ctx.lang.text(Msg::Active)
        ),
    }
}

/// The usual columns of a key: name, the recognisable part, status, created, last used.
pub fn key_cells(ctx: &Ctx, key: &ApiKeyRow) -> Vec<String> {
    vec![
        key.id.to_string(),
        esc(&key.name),
        format!(
            "<code>sk-{}…{}</code>",
            esc(&key.public_id),
            esc(&key.suffix)
        ),
        key_status(ctx, key),
        when(&key.created_at),
        key.last_used_at.as_ref().map_or("—".to_owned(), when),
    ]
}

/// Header of [`key_cells`].
pub fn key_head(ctx: &Ctx) -> Vec<&'static str> {
    let t = |m: Msg| ctx.lang.text(m);
    vec![
        "ID",
        t(Msg::Name),
        t(Msg::Key),
        t(Msg::Status),
        t(Msg::Created),
        t(Msg::LastUsed),
    ]
}

/// The fields of a new key (name, expiry in days, RPM, models) inside a form.
pub fn key_fields(ctx: &Ctx) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    format!(
        r#"<label>{}<input name="name" maxlength="64" data-testid="key-name"></label>
<label>{}<input name="expires_days" type="number" min="1" max="3650"></label>
<label>{}<input name="rpm_limit" type="number" min="1"></label>
<label>{}<input name="allowed_models" placeholder="claude-sonnet-4.5, …"></label>"#,
        t(Msg::Name),
        t(Msg::ExpiresInDays),
        t(Msg::RpmLimit),
        t(Msg::AllowedModels)
    )
}

/// The key options a form described (see [`key_fields`]).
pub fn key_options(form: &Form) -> Result<KeyOptions, FieldError> {
    let expires_at = form
        .int::<i64>("expires_days")?
        .map(|days| {
            if (1..=3650).contains(&days) {
                Ok(chrono::Utc::now() + chrono::Duration::days(days))
            } else {
                Err(FieldError("`expires_days` must be 1 to 3650.".into()))
            }
        })
        .transpose()?;
    Ok(KeyOptions {
        name: form.get("name").map(str::to_owned),
        expires_at,
        allowed_models: form
            .get("allowed_models")
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        rpm_limit: form.int("rpm_limit")?,
        max_concurrency: None,
        quota_limit: None,
    })
}

/// The page that shows a new key's secret, this once.
pub fn key_created_page(ctx: &Ctx, active: &str, created: &CreatedKey, back: &str) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let mut body = format!(
        r#"<div class="panel"><p>{}</p><p class="secret" id="new-key" data-testid="new-key">{}</p>
<button type="button" class="secondary" data-copy="new-key" hidden>{}</button>"#,
        t(Msg::KeyShownOnce),
        esc(&created.secret),
        t(Msg::Copy)
    );
    let _ = write!(
        body,
        r#"<p><a href="{}/{back}" data-testid="key-done">{}</a></p></div>"#,
        ctx.root,
        t(Msg::Done)
    );
    page(ctx, active, t(Msg::KeyCreated), &body)
}

/// A form with the CSRF field, posting to `action`, holding `inner`.
pub fn post_form(ctx: &Ctx, action: &str, class: &str, testid: &str, inner: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="{class}" data-testid="{testid}">{}{inner}</form>"#,
        esc(action),
        csrf_field(ctx)
    )
}

/// A user's keys with a revoke button each, and the form that creates one: the same section on
/// the operator's and the reseller's user pages, posting to `action`.
pub fn user_keys_section(
    ctx: &Ctx,
    action: &str,
    keys: &[ApiKeyRow],
    table_id: &str,
    form_id: &str,
) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let mut cells = key_cells(ctx, k);
            cells.push(button_form(
                ctx,
                action,
                &[("op", "revoke"), ("key_id", &k.id.to_string())],
                t(Msg::Revoke),
                "small danger",
            ));
            cells
        })
        .collect();
    let mut head = key_head(ctx);
    head.push(t(Msg::Actions));
    format!(
        r#"<h2>{}</h2>{}<div class="panel">{}</div>"#,
        t(Msg::Keys),
        table(table_id, &head, &rows, t(Msg::NoKeys)),
        post_form(
            ctx,
            action,
            "row",
            form_id,
            &format!(
                r#"<input type="hidden" name="op" value="create_key">{}<button type="submit" data-testid="create-key">{}</button>"#,
                key_fields(ctx),
                t(Msg::CreateKey)
            )
        )
    )
}
