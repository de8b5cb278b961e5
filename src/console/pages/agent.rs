//! A reseller's pages: balance, its users with their usage, one user (edit, keys, credit
//! transfer), transfer history. Everything goes through `crate::tenancy::api::agent`, whose
//! `own_user` answers 404 for any user of another agent.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::shared::{
    card, every_day, key_created_page, key_options, post_form, requests_chart, usage_table,
    user_keys_section,
};
use super::{
    api_error_page, done, failed, page_number, posted, query_of, require, show, PageResult,
};
use crate::console::form::show_credits;
use crate::console::html::{count, esc, page, page_links, respond, store_page, table, when};
use crate::console::i18n::Msg;
use crate::console::session::{Ctx, Role};
use crate::console::Console;
use crate::tenancy::api::admin::UpdateUser;
use crate::tenancy::api::agent as api;
use crate::tenancy::api::{parse_id, ApiError};

fn err(ctx: &Ctx) -> impl Fn(ApiError) -> Response + '_ {
    move |e| api_error_page(ctx, e)
}

/// `GET /console/agent`: balance, users with quota and usage, and a form for a new user.
pub async fn overview(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    let caller = require(&ctx, Role::Agent)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let query = query_of(q);
    let me = api::me(s, &caller).await.map_err(err(&ctx))?;
    let page_no = page_number(&query);
    let users = api::page_users(s, &caller, store_page(page_no))
        .await
        .map_err(err(&ctx))?;
    let (_, by_user) = api::usage(s, &caller, Some("user"), None, None, None)
        .await
        .map_err(err(&ctx))?;
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&card(
        t(Msg::Balance),
        &show_credits(me.balance),
        "agent-balance",
    ));
    body.push_str(&card(
        t(Msg::Users),
        &users.total.to_string(),
        "agent-users",
    ));
    body.push_str("</div>");
    let pages = page_links(
        ctx.lang,
        page_no as u64,
        users.total,
        &format!("{}/agent?", ctx.root),
    );
    let rows: Vec<Vec<String>> = users
        .items
        .iter()
        .map(|u| {
            let usage = by_user.iter().find(|r| r.group == u.id.to_string());
            vec![
                u.id.to_string(),
                format!(
                    r#"<a href="{}/agent/users/{}" data-testid="agent-user-{}">{}</a>"#,
                    ctx.root,
                    u.id,
                    u.id,
                    esc(&u.name)
                ),
                esc(u.status.as_str()),
                format!(
                    "{} / {}",
                    show_credits(u.quota_used),
                    u.quota_limit
                        .map_or(t(Msg::Unlimited).to_owned(), show_credits)
                ),
                count(usage.map_or(0, |r| r.requests)),
                show_credits(usage.map_or(0, |r| r.charged)),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}{}",
        t(Msg::Users),
        table(
            "agent-users-table",
            &[
                "ID",
                t(Msg::Name),
                t(Msg::Status),
                t(Msg::QuotaUsedLimit),
                t(Msg::Requests),
                t(Msg::Charged)
            ],
            &rows,
            t(Msg::NoUsers)
        ),
        pages
    );
    let inner = format!(
        r#"<label>{}<input name="name" required maxlength="64" data-testid="agent-new-user"></label><label>{}<input name="rpm_limit" type="number" min="1"></label><button type="submit" data-testid="agent-new-user-submit">{}</button>"#,
        t(Msg::Name),
        t(Msg::RpmLimit),
        t(Msg::CreateUser)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel">{}</div>"#,
        t(Msg::CreateUser),
        post_form(
            &ctx,
            &format!("{}/agent", ctx.root),
            "row",
            "agent-new-user-form",
            &inner
        )
    );
    Ok(show(&ctx, page(&ctx, "agent", t(Msg::Overview), &body)))
}

/// `POST /console/agent`: creates a user of this agent.
pub async fn user_create(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Agent, &headers, &body)?;
    let rpm = match form.int("rpm_limit") {
        Ok(r) => r,
        Err(e) => return Ok(failed(&ctx, "agent", &e.0)),
    };
    match api::create_user(&st.tenancy, &caller, form.get("name").unwrap_or(""), rpm).await {
        Ok(user) => Ok(done(
            &ctx,
            &format!("agent/users/{}", user.id),
            ctx.lang.text(Msg::Saved),
        )),
        Err(e) => Ok(failed(&ctx, "agent", e.0.message())),
    }
}

/// `GET /console/agent/users/{id}`: one of this agent's users; any other id is a 404.
pub async fn user_detail(
    State(st): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    let caller = require(&ctx, Role::Agent)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let id = parse_id(&id).map_err(err(&ctx))?;
    let user = api::own_user(s, &caller, id).await.map_err(err(&ctx))?;
    let keys = api::list_user_keys(s, &caller, id)
        .await
        .map_err(err(&ctx))?;
    let (_, daily) = api::usage(
        s,
        &caller,
        Some("day"),
        Some(id),
        Some(chrono::Utc::now() - chrono::Duration::days(30)),
        None,
    )
    .await
    .map_err(err(&ctx))?;
    let me = api::me(s, &caller).await.map_err(err(&ctx))?;
    let action = format!("{}/agent/users/{id}", ctx.root);
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&card(
        t(Msg::QuotaUsedLimit),
        &format!(
            "{} / {}",
            show_credits(user.quota_used),
            user.quota_limit
                .map_or(t(Msg::Unlimited).to_owned(), show_credits)
        ),
        "agent-user-quota",
    ));
    body.push_str(&card(
        t(Msg::Balance),
        &show_credits(me.balance),
        "agent-balance",
    ));
    body.push_str("</div>");
    let transfer = format!(
        r#"<input type="hidden" name="op" value="transfer"><label>{}<input name="amount" required data-testid="transfer-amount"></label><button type="submit" data-testid="transfer-submit">{}</button>"#,
        t(Msg::Credits),
        t(Msg::Transfer)
    );
    let edit = format!(
        r#"<input type="hidden" name="op" value="update">
<label>{}<input name="name" value="{}" maxlength="64"></label>
<label>{}<select name="status"><option value="active"{}>active</option><option value="disabled"{}>disabled</option></select></label>
<label>{}<input name="rpm_limit" type="number" min="1" value="{}"></label>
<button type="submit">{}</button>"#,
        t(Msg::Name),
        esc(&user.name),
        t(Msg::Status),
        if user.status.as_str() == "active" {
            " selected"
        } else {
            ""
        },
        if user.status.as_str() == "disabled" {
            " selected"
        } else {
            ""
        },
        t(Msg::RpmLimit),
        user.rpm_limit.map_or(String::new(), |r| r.to_string()),
        t(Msg::Save)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel"><p class="muted">{}</p>{}</div><h2>{}</h2><div class="panel">{}</div>"#,
        t(Msg::TransferCredit),
        t(Msg::TransferHelp),
        post_form(&ctx, &action, "row", "transfer-form", &transfer),
        t(Msg::Settings),
        post_form(&ctx, &action, "row", "agent-user-edit", &edit)
    );
    body.push_str(&user_keys_section(
        &ctx,
        &action,
        &keys,
        "agent-user-keys",
        "agent-new-key",
    ));
    let _ = write!(
        body,
        "<h2>{}</h2>{}{}",
        t(Msg::Usage30d),
        requests_chart(&ctx, "agent-user-chart", &every_day(&daily, 30)),
        usage_table(&ctx, t(Msg::Day), &daily)
    );
    Ok(show(
        &ctx,
        page(
            &ctx,
            "agent",
            &format!("{} · {}", t(Msg::User), user.name),
            &body,
        ),
    ))
}

/// `POST /console/agent/users/{id}`: transfer, update, create or revoke a key.
pub async fn user_post(
    State(st): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Agent, &headers, &body)?;
    let s = &st.tenancy;
    let id = parse_id(&id).map_err(err(&ctx))?;
    // Another agent's user is a 404 page here too, before any field is read.
    api::own_user(s, &caller, id).await.map_err(err(&ctx))?;
    let back = format!("agent/users/{id}");
    let message = |e: ApiError| e.0.message().to_owned();
    let result: Result<Option<Response>, String> = match form.get("op").unwrap_or("") {
        "transfer" => match form.credits("amount") {
            Ok(Some(amount)) => api::transfer(s, &caller, id, amount)
                .await
                .map(|_| None)
                .map_err(message),
            Ok(None) => Err("`amount` is required.".to_owned()),
            Err(e) => Err(e.0),
        },
        "update" => match form.int("rpm_limit") {
            Ok(rpm) => {
                let update = UpdateUser {
                    name: form.get("name").map(str::to_owned),
                    status: form.get("status").map(str::to_owned),
                    rpm_limit: Some(rpm),
                };
                api::update_user(s, &caller, id, update)
                    .await
                    .map(|_| None)
                    .map_err(message)
            }
            Err(e) => Err(e.0),
        },
        "create_key" => match key_options(&form) {
            Ok(options) => api::create_user_key(s, &caller, id, options)
                .await
                .map(|created| {
                    Some(respond(
                        StatusCode::OK,
                        key_created_page(&ctx, "agent", &created, &back),
                    ))
                })
                .map_err(message),
            Err(e) => Err(e.0),
        },
        "revoke" => match form.int::<i64>("key_id") {
            Ok(Some(key_id)) => api::revoke_user_key(s, &caller, id, key_id)
                .await
                .map(|()| None)
                .map_err(message),
            _ => Err("`key_id` is required.".to_owned()),
        },
        _ => Err(ctx.lang.text(Msg::UnknownAction).to_owned()),
    };
    match result {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Ok(done(&ctx, &back, ctx.lang.text(Msg::Saved))),
        Err(m) => Ok(failed(&ctx, &back, &m)),
    }
}

/// `GET /console/agent/transfers`: this agent's transfers, newest first.
pub async fn transfers(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    let caller = require(&ctx, Role::Agent)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let page_no = page_number(&query);
    let list = api::page_transfers(&st.tenancy, &caller, store_page(page_no))
        .await
        .map_err(err(&ctx))?;
    let pages = page_links(
        ctx.lang,
        page_no as u64,
        list.total,
        &format!("{}/agent/transfers?", ctx.root),
    );
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|tr| {
            vec![
                when(&tr.created_at),
                format!(
                    r#"<a href="{}/agent/users/{}">{}</a>"#,
                    ctx.root, tr.user_id, tr.user_id
                ),
                show_credits(tr.amount),
                show_credits(tr.agent_balance_after),
            ]
        })
        .collect();
    let mut body = table(
        "agent-transfers",
        &[
            t(Msg::When),
            t(Msg::User),
            t(Msg::Amount),
            t(Msg::BalanceAfter),
        ],
        &rows,
        t(Msg::NoTransfers),
    );
    body.push_str(&pages);
    Ok(show(
        &ctx,
        page(&ctx, "agent/transfers", t(Msg::Transfers), &body),
    ))
}
