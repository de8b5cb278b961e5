//! A user's pages: quota and usage chart with a quick start, keys, models and prices.
//! Everything goes through `crate::tenancy::api::user`.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::shared::{
    card, every_day, key_cells, key_created_page, key_fields, key_head, key_options, post_form,
    requests_chart, usage_table,
};
use super::{api_error_page, done, failed, posted, require, show, PageResult};
use crate::console::form::show_credits;
use crate::console::html::{button_form, esc, page, respond, table};
use crate::console::i18n::Msg;
use crate::console::session::{Ctx, Role};
use crate::console::Console;
use crate::tenancy::api::user as api;
use crate::tenancy::api::ApiError;

fn err(ctx: &Ctx) -> impl Fn(ApiError) -> Response + '_ {
    move |e| api_error_page(ctx, e)
}

/// `GET /console/user`: quota, usage of the last 30 days, and the quick start.
pub async fn overview(State(st): State<Console>, ctx: Ctx) -> PageResult {
    let caller = require(&ctx, Role::User)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let quota = api::quota(s, &caller).await.map_err(err(&ctx))?;
    let (_, daily) = api::usage(
        s,
        &caller,
        Some("day"),
        Some(chrono::Utc::now() - chrono::Duration::days(30)),
        None,
    )
    .await
    .map_err(err(&ctx))?;
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&card(
        t(Msg::QuotaLeft),
        &quota
            .quota_left
            .map_or(t(Msg::Unlimited).to_owned(), show_credits),
        "quota-left",
    ));
    body.push_str(&card(
        t(Msg::QuotaUsed),
        &show_credits(quota.quota_used),
        "quota-used",
    ));
    body.push_str(&card(
        t(Msg::RpmLimit),
        &quota.rpm_limit.map_or("—".to_owned(), |r| r.to_string()),
        "rpm",
    ));
    body.push_str("</div>");
    let _ = write!(
        body,
        "<h2>{}</h2>{}{}",
        t(Msg::Usage30d),
        requests_chart(&ctx, "user-usage-chart", &every_day(&daily, 30)),
        usage_table(&ctx, t(Msg::Day), &daily)
    );
    let base = format!("{}{}", ctx.origin, st.config.base_path);
    let _ = write!(
        body,
        r#"<h2>{qs}</h2><div class="panel" data-testid="quick-start"><p>{intro}</p>
<p>{base_label}: <code data-testid="base-url">{base}/v1</code></p>
<h3>OpenAI SDK (Python)</h3><pre id="snippet-openai">from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="sk-…")
print(client.chat.completions.create(model="claude-sonnet-4.5",
      messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)</pre>
<h3>Claude Code</h3><pre id="snippet-claude">export ANTHROPIC_BASE_URL="{base}"
export ANTHROPIC_AUTH_TOKEN="sk-…"
claude</pre>
<h3>Cursor</h3><pre id="snippet-cursor">Settings → Models → OpenAI API Key: sk-…
Override OpenAI Base URL: {base}/v1</pre></div>"#,
        qs = t(Msg::QuickStart),
        intro = t(Msg::QuickStartIntro),
        base_label = t(Msg::BaseUrl),
        base = esc(&base),
    );
    Ok(show(&ctx, page(&ctx, "user", t(Msg::Overview), &body)))
}

/// `GET /console/user/keys`: the user's keys, create and revoke.
pub async fn keys(State(st): State<Console>, ctx: Ctx) -> PageResult {
    let caller = require(&ctx, Role::User)?;
    let t = |m: Msg| ctx.lang.text(m);
    let keys = api::list_keys(&st.tenancy, &caller)
        .await
        .map_err(err(&ctx))?;
    let action = format!("{}/user/keys", ctx.root);
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let mut cells = key_cells(&ctx, k);
            cells.push(if k.status == kiro_layers::store::KeyStatus::Active {
                button_form(
                    &ctx,
                    &action,
                    &[("op", "revoke"), ("key_id", &k.id.to_string())],
                    t(Msg::Revoke),
                    "small danger",
                )
            } else {
                String::new()
            });
            cells
        })
        .collect();
    let mut head = key_head(&ctx);
    head.push(t(Msg::Actions));
    let mut body = format!(r#"<p class="muted">{}</p>"#, t(Msg::RevokeOwnKeyWarning));
    body.push_str(&table("user-keys", &head, &rows, t(Msg::NoKeys)));
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel">{}</div>"#,
        t(Msg::CreateKey),
        post_form(
            &ctx,
            &action,
            "row",
            "user-new-key",
            &format!(
                r#"<input type="hidden" name="op" value="create">{}<button type="submit" data-testid="create-key">{}</button>"#,
                key_fields(&ctx),
                t(Msg::CreateKey)
            )
        )
    );
    Ok(show(&ctx, page(&ctx, "user/keys", t(Msg::Keys), &body)))
}

/// `POST /console/user/keys`: create or revoke one of the user's keys.
pub async fn keys_post(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::User, &headers, &body)?;
    let s = &st.tenancy;
    let back = "user/keys";
    match form.get("op").unwrap_or("") {
        "create" => match key_options(&form) {
            Ok(options) => match api::create(s, &caller, options).await {
                Ok(created) => Ok(respond(
                    StatusCode::OK,
                    key_created_page(&ctx, back, &created, back),
                )),
                Err(e) => Ok(failed(&ctx, back, e.0.message())),
            },
            Err(e) => Ok(failed(&ctx, back, &e.0)),
        },
        "revoke" => match form.int::<i64>("key_id") {
            Ok(Some(key_id)) => match api::revoke(s, &caller, key_id).await {
                Ok(()) => Ok(done(&ctx, back, ctx.lang.text(Msg::Saved))),
                Err(e) => Ok(failed(&ctx, back, e.0.message())),
            },
            _ => Ok(failed(&ctx, back, "`key_id` is required.")),
        },
        _ => Ok(failed(&ctx, back, ctx.lang.text(Msg::UnknownAction))),
    }
}

/// `GET /console/user/models`: the models this gateway serves, with their prices.
pub async fn models(State(st): State<Console>, ctx: Ctx) -> PageResult {
    require(&ctx, Role::User)?;
    let t = |m: Msg| ctx.lang.text(m);
    let prices = crate::tenancy::api::admin::list_prices(&st.tenancy);
    let rows: Vec<Vec<String>> = st
        .config
        .models
        .list()
        .iter()
        .map(|m| {
            let price = prices.iter().find(|(id, _)| *id == m.id).map(|(_, p)| *p);
            vec![
                format!("<code>{}</code>", esc(&m.id)),
                m.context_window.to_string(),
                price.map_or("—".to_owned(), |p| show_credits(p.input_per_m)),
                price.map_or("—".to_owned(), |p| show_credits(p.output_per_m)),
            ]
        })
        .collect();
    let body = format!(
        r#"<p class="muted">{}</p>{}"#,
        t(Msg::PricesHelp),
        table(
            "models",
            &[
                t(Msg::Model),
                t(Msg::ContextWindow),
                t(Msg::Input),
                t(Msg::Output)
            ],
            &rows,
            t(Msg::None)
        )
    );
    Ok(show(&ctx, page(&ctx, "user/models", t(Msg::Models), &body)))
}
