//! The operator's pages: overview, accounts, users, keys, agents, models (prices, aliases,
//! combos), usage explorer with CSV, audit log and debug captures. Every change goes through
//! the functions of `crate::tenancy::api::admin`, the same the `/admin` JSON API uses.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use kiro_layers::store::{
    AccountStatus, AgentRow, AuditQuery, BreakerState, KeyKind, KeyOwner, Price, UsageFilter,
    UsageGroup, UserQuery, UserSort,
};

use super::shared::{
    card, charged_chart, every_day, every_hour, key_cells, key_created_page, key_fields, key_head,
    key_options, post_form, requests_chart, totals, usage_table, user_keys_section,
};
use super::{
    api_error_page, done, failed, page_number, posted, query_of, require, show, PageResult,
};
use crate::console::form::{percent_encode, show_credits, Form};
use crate::console::html::{
    button_form, count, esc, page, page_links, paginate, respond, store_page, table, when,
};
use crate::console::i18n::Msg;
use crate::console::session::{Ctx, Role};
use crate::console::Console;
use crate::tenancy::accounts::AccountSource;
use crate::tenancy::api::admin as api;
use crate::tenancy::api::admin::{AccountView, CreateUser, UpdateUser};
use crate::tenancy::api::ApiError;

fn err(ctx: &Ctx) -> impl Fn(ApiError) -> Response + '_ {
    move |e| api_error_page(ctx, e)
}

fn day_ago() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::hours(24)
}

/// How an account is doing, as a badge.
fn health(ctx: &Ctx, view: &AccountView) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    if view.account.status == AccountStatus::Disabled {
        return format!(r#"<span class="badge err">{}</span>"#, t(Msg::Disabled));
    }
    if let Some(secs) = view.resting_for_seconds {
        return format!(
            r#"<span class="badge warn">{} {secs}s</span>"#,
            t(Msg::Resting)
        );
    }
    match view.state.as_ref().map(|s| s.breaker) {
        Some(BreakerState::Open) => {
            format!(r#"<span class="badge err">{}</span>"#, t(Msg::BreakerOpen))
        }
        Some(BreakerState::HalfOpen) => format!(
            r#"<span class="badge warn">{}</span>"#,
            t(Msg::BreakerHalfOpen)
        ),
        _ => format!(r#"<span class="badge ok">{}</span>"#, t(Msg::Healthy)),
    }
}

fn needs_attention(view: &AccountView) -> bool {
    view.account.status == AccountStatus::Disabled
        || view.resting_for_seconds.is_some()
        || view
            .state
            .as_ref()
            .is_some_and(|s| s.breaker != BreakerState::Closed || s.consecutive_failures > 0)
}

/// `GET /console/admin`: pool health, the last 24 hours, accounts that need a look.
pub async fn overview(State(st): State<Console>, ctx: Ctx) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let accounts = api::list_accounts(s).await.map_err(err(&ctx))?;
    let since = UsageFilter {
        from: Some(day_ago()),
        ..UsageFilter::default()
    };
    let (_, hourly) = api::usage(s, Some("hour"), since.clone())
        .await
        .map_err(err(&ctx))?;
    let (_, per_account) = api::usage(s, Some("account"), since)
        .await
        .map_err(err(&ctx))?;
    let sum = totals(&hourly);
    let healthy = accounts.iter().filter(|a| !needs_attention(a)).count();
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&card(
        t(Msg::HealthyAccounts),
        &format!("{healthy} / {}", accounts.len()),
        "card-accounts",
    ));
    body.push_str(&card(
        t(Msg::Requests24h),
        &count(sum.requests),
        "card-requests",
    ));
    body.push_str(&card(
        t(Msg::Errors24h),
        &count(sum.requests.saturating_sub(sum.successes)),
        "card-errors",
    ));
    body.push_str(&card(
        t(Msg::Charged24h),
        &show_credits(sum.charged),
        "card-charged",
    ));
    body.push_str(&card(
        t(Msg::KiroCredits24h),
        &format!("{:.2}", sum.credits),
        "card-kiro-credits",
    ));
    body.push_str("</div>");
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::RequestsPerHour),
        requests_chart(&ctx, "chart-24h", &every_hour(&hourly, 24))
    );
    let attention: Vec<Vec<String>> = accounts
        .iter()
        .filter(|a| needs_attention(a))
        .map(|a| {
            vec![
                a.account.id.to_string(),
                esc(&a.account.name),
                health(&ctx, a),
                esc(a.account.disabled_reason.as_deref().unwrap_or("")),
                a.state
                    .as_ref()
                    .map_or(0, |s| s.consecutive_failures)
                    .to_string(),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::NeedAttention),
        table(
            "attention",
            &[
                "ID",
                t(Msg::Name),
                t(Msg::State),
                t(Msg::Reason),
                t(Msg::Failures)
            ],
            &attention,
            t(Msg::AllAccountsHealthy)
        )
    );
    body.push_str(&super::limits::near_limits_section(&ctx, &st, &accounts).await);
    let load: Vec<Vec<String>> = per_account
        .iter()
        .map(|r| {
            let name = accounts
                .iter()
                .find(|a| a.account.id.to_string() == r.group)
                .map_or(r.group.clone(), |a| a.account.name.clone());
            vec![
                esc(&name),
                count(r.requests),
                count(r.requests.saturating_sub(r.successes)),
                format!("{:.2}", r.credits),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::AccountLoad24h),
        table(
            "account-load",
            &[
                t(Msg::Account),
                t(Msg::Requests),
                t(Msg::Errors),
                t(Msg::KiroCredits)
            ],
            &load,
            t(Msg::NoUsage)
        )
    );
    Ok(show(&ctx, page(&ctx, "admin", t(Msg::Overview), &body)))
}

/// `GET /console/admin/accounts`: every account, with actions per row and for a selection.
pub async fn accounts(State(st): State<Console>, ctx: Ctx) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let accounts = api::list_accounts(s).await.map_err(err(&ctx))?;
    let (_, usage) = api::usage(
        s,
        Some("account"),
        UsageFilter {
            from: Some(day_ago()),
            ..UsageFilter::default()
        },
    )
    .await
    .map_err(err(&ctx))?;
    let limits = super::limits::stored(&st).await;
    let can_fetch = st.config.usage_limits.is_some();
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let id = a.account.id;
            let credits = usage
                .iter()
                .find(|u| u.group == id.to_string())
                .map_or(0.0, |u| u.credits);
            let act = |action: &str, label: Msg, class: &str| {
                format!(
                    r#"<button type="submit" name="act" value="{action}:{id}" class="small {class}" data-testid="{action}-{id}"{}>{}</button>"#,
                    if action == "delete" {
                        format!(r#" data-confirm="{}""#, t(Msg::ConfirmDelete))
                    } else {
                        String::new()
                    },
                    t(label)
                )
            };
            vec![
                format!(r#"<input type="checkbox" name="id" value="{id}" aria-label="{id}">"#),
                id.to_string(),
                format!(
                    r#"{}<span class="sub">{}</span>"#,
                    esc(&a.account.name),
                    esc(a.account.auth_kind.as_str())
                ),
                format!(
                    r#"{}<span class="sub wrap">{}</span>"#,
                    health(&ctx, a),
                    esc(a.account.disabled_reason.as_deref().unwrap_or(""))
                ),
                format!("{} / {}", a.in_flight, count(a.leases)),
                a.state.as_ref().map_or(0, |s| s.consecutive_failures).to_string(),
                format!("{credits:.2}"),
                super::limits::usage_cell(&ctx, id, limits.get(&id), can_fetch),
                format!(
                    r#"{}<span class="sub">{}</span>"#,
                    a.account.updated_at.format("%Y-%m-%d"),
                    a.account.updated_at.format("%H:%M")
                ),
                format!(
                    "{} {} {}",
                    if a.account.status == AccountStatus::Disabled {
                        act("enable", Msg::Enable, "secondary")
                    } else {
                        act("disable", Msg::Disable, "secondary")
                    },
                    act("refresh", Msg::Refresh, "secondary"),
                    act("delete", Msg::Delete, "danger")
                ),
            ]
        })
        .collect();
    let table_html = table(
        "accounts",
        &[
            r#"<input type="checkbox" data-select-all="id" aria-label="all">"#,
            "ID",
            t(Msg::Name),
            t(Msg::State),
            t(Msg::InFlightLeases),
            t(Msg::Failures),
            t(Msg::KiroCredits24h),
            t(Msg::KiroUsage),
            t(Msg::LastChange),
            t(Msg::Actions),
        ],
        &rows,
        t(Msg::NoAccounts),
    );
    let bulk = format!(
        r#"<div class="actions"><span class="muted">{}</span>
<button type="submit" name="act" value="enable" class="secondary small" data-testid="bulk-enable">{}</button>
<button type="submit" name="act" value="disable" class="secondary small" data-testid="bulk-disable">{}</button>
<button type="submit" name="act" value="refresh" class="secondary small" data-testid="bulk-refresh">{}</button>{}
<button type="submit" name="act" value="delete" class="danger small" data-confirm="{}" data-testid="bulk-delete">{}</button></div>"#,
        t(Msg::WithSelected),
        t(Msg::Enable),
        t(Msg::Disable),
        t(Msg::Refresh),
        if can_fetch {
            format!(
                r#"
<button type="submit" name="act" value="usage" class="secondary small" data-testid="bulk-usage">{}</button>"#,
                t(Msg::RefreshUsage)
            )
        } else {
            String::new()
        },
        t(Msg::ConfirmDelete),
        t(Msg::Delete)
    );
    let mut body = post_form(
        &ctx,
        &format!("{}/admin/accounts", ctx.root),
        "",
        "accounts-form",
        &format!("{bulk}{table_html}"),
    );
    let add = format!(
        r#"<label>{name}<input name="name" required maxlength="64" data-testid="account-name"></label>
<label>{token}<textarea name="refresh_token" data-testid="account-token"></textarea></label>
<label>{cursor}<textarea name="session_token" data-testid="account-cursor-session"></textarea></label>
<label>{creds}<textarea name="creds" placeholder='{{"refreshToken": "…", "clientId": "…", …}}'></textarea></label>
<label>{region}<input name="region" placeholder="us-east-1"></label>
<label>{arn}<input name="profile_arn"></label>
<p><button type="submit" data-testid="account-add">{add}</button></p>"#,
        name = t(Msg::Name),
        token = t(Msg::RefreshToken),
        cursor = t(Msg::CursorSessionToken),
        creds = t(Msg::CredentialsJson),
        region = t(Msg::Region),
        arn = t(Msg::ProfileArn),
        add = t(Msg::AddAccount),
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel"><p class="muted">{}</p>{}</div>"#,
        t(Msg::AddAccount),
        t(Msg::AddAccountHelp),
        post_form(
            &ctx,
            &format!("{}/admin/accounts/add", ctx.root),
            "stack",
            "account-add-form",
            &add
        )
    );
    body.push_str(&super::wizard::start_form(&st, &ctx));
    Ok(show(
        &ctx,
        page(&ctx, "admin/accounts", t(Msg::Accounts), &body),
    ))
}

/// `POST /console/admin/accounts`: one action (`act=disable:3`) or an action on the selected
/// rows (`act=disable&id=3&id=4`).
pub async fn accounts_post(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let t = |m: Msg| ctx.lang.text(m);
    let back = "admin/accounts";
    let act = form.get("act").unwrap_or("");
    let (action, ids): (&str, Vec<i64>) = match act.split_once(':') {
        Some((action, id)) => (action, id.parse().ok().into_iter().collect()),
        None => (
            act,
            form.all("id")
                .iter()
                .filter_map(|i| i.parse().ok())
                .collect(),
        ),
    };
    if ids.is_empty() {
        return Ok(failed(&ctx, back, t(Msg::NothingSelected)));
    }
    let s = &st.tenancy;
    let mut errors = Vec::new();
    for id in &ids {
        let result = match action {
            "enable" => api::set_account_status(s, &caller, *id, AccountStatus::Active)
                .await
                .map(drop),
            "disable" => api::set_account_status(s, &caller, *id, AccountStatus::Disabled)
                .await
                .map(drop),
            "refresh" => api::refresh_account(s, &caller, *id).await,
            "usage" => match &st.config.usage_limits {
                Some(limits) => limits.refresh(*id).await.map(drop).map_err(ApiError),
                None => return Ok(failed(&ctx, back, t(Msg::UnknownAction))),
            },
            "delete" => api::delete_account(s, &caller, *id).await,
            _ => return Ok(failed(&ctx, back, t(Msg::UnknownAction))),
        };
        if let Err(e) = result {
            errors.push(format!("#{id}: {}", e.0.message()));
        }
    }
    if errors.is_empty() {
        Ok(done(
            &ctx,
            back,
            &format!("{} ({})", t(Msg::Saved), ids.len()),
        ))
    } else {
        Ok(failed(&ctx, back, &errors.join(" ")))
    }
}

/// `POST /console/admin/accounts/add`: a pasted refresh token or credentials JSON, through
/// the same `create_account` the JSON API uses.
pub async fn account_add(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let back = "admin/accounts";
    let creds = match form.raw("creds") {
        Some(text) => match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(e) => return Ok(failed(&ctx, back, &format!("credentials JSON: {e}"))),
        },
        None => None,
    };
    let source = AccountSource {
        name: form.get("name").unwrap_or("").to_owned(),
        refresh_token: form.raw("refresh_token").map(|t| t.trim().to_owned()),
        // A Cursor session token makes it a Cursor account (the same rule as the JSON API).
        session_token: form
            .raw("session_token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        creds,
        profile_arn: form.get("profile_arn").map(str::to_owned),
        region: form.get("region").map(str::to_owned),
        ..AccountSource::default()
    };
    match api::create_account(&st.tenancy, &caller, source).await {
        Ok(row) => Ok(done(
            &ctx,
            back,
            &format!("{} #{}", ctx.lang.text(Msg::Saved), row.id),
        )),
        Err(e) => Ok(failed(&ctx, back, e.0.message())),
    }
}

fn quota_text(ctx: &Ctx, limit: Option<i64>, used: i64) -> String {
    match limit {
        None => format!("{} / ∞", show_credits(used)),
        Some(limit) => format!(
            r#"{} / {} <meter min="0" max="{limit}" value="{}"></meter>"#,
            show_credits(used),
            show_credits(limit),
            used.min(limit)
        ),
    }
    .replace("∞", ctx.lang.text(Msg::Unlimited))
}

/// The users page's filter (agent, name search, order) from its query, and its form.
fn user_filter(ctx: &Ctx, query: &Form, agents: &[AgentRow]) -> (UserQuery, String) {
    let t = |m: Msg| ctx.lang.text(m);
    let filter = UserQuery {
        agent_id: query.get("agent").and_then(|a| a.parse().ok()),
        search: query
            .get("q")
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.chars().take(64).collect()),
        sort: query
            .get("sort")
            .and_then(UserSort::parse)
            .unwrap_or_default(),
    };
    let mut agent_options = format!(r#"<option value="">{}</option>"#, t(Msg::AllAgents));
    for a in agents {
        let _ = write!(
            agent_options,
            r#"<option value="{}"{}>{}</option>"#,
            a.id,
            if filter.agent_id == Some(a.id) {
                " selected"
            } else {
                ""
            },
            esc(&a.name)
        );
    }
    let mut sort_options = String::new();
    for (sort, label) in [
        (UserSort::Id, "ID"),
        (UserSort::Name, t(Msg::Name)),
        (UserSort::QuotaUsed, t(Msg::QuotaUsed)),
    ] {
        let _ = write!(
            sort_options,
            r#"<option value="{}"{}>{}</option>"#,
            sort.as_str(),
            if filter.sort == sort { " selected" } else { "" },
            label
        );
    }
    let form = format!(
        r#"<form method="get" action="{root}/admin/users" class="row filter" data-testid="user-filter">
<label>{}<input name="q" value="{}" maxlength="64" data-testid="user-search"></label>
<label>{}<select name="agent">{agent_options}</select></label>
<label>{}<select name="sort" data-testid="user-sort">{sort_options}</select></label>
<button type="submit" class="secondary" data-testid="user-filter-submit">{}</button></form>"#,
        t(Msg::NameContains),
        esc(filter.search.as_deref().unwrap_or("")),
        t(Msg::Agent),
        t(Msg::SortBy),
        t(Msg::Filter),
        root = ctx.root,
    );
    (filter, form)
}

/// The query string (ending in `&`) that keeps a user filter across page links.
fn user_filter_query(f: &UserQuery) -> String {
    let mut out = String::new();
    if let Some(q) = &f.search {
        let _ = write!(out, "q={}&", percent_encode(q));
    }
    if let Some(a) = f.agent_id {
        let _ = write!(out, "agent={a}&");
    }
    if f.sort != UserSort::Id {
        let _ = write!(out, "sort={}&", f.sort.as_str());
    }
    out
}

/// `GET /console/admin/users`: all users (paginated), and the form for a new one.
pub async fn users(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let s = &st.tenancy;
    let agents = s
        .store
        .list_agents()
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let (filter, filter_form) = user_filter(&ctx, &query, &agents);
    let page_no = page_number(&query);
    let found = s
        .store
        .page_users(filter.clone(), store_page(page_no))
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let pages = page_links(
        ctx.lang,
        page_no as u64,
        found.total,
        &format!("{}/admin/users?{}", ctx.root, user_filter_query(&filter)),
    );
    let rows: Vec<Vec<String>> = found
        .items
        .iter()
        .map(|u| {
            let agent = u.agent_id.map_or("—".to_owned(), |id| {
                agents
                    .iter()
                    .find(|a| a.id == id)
                    .map_or(id.to_string(), |a| esc(&a.name))
            });
            vec![
                u.id.to_string(),
                format!(
                    r#"<a href="{}/admin/users/{}" data-testid="user-{}">{}</a>"#,
                    ctx.root,
                    u.id,
                    u.id,
                    esc(&u.name)
                ),
                agent,
                esc(u.status.as_str()),
                quota_text(&ctx, u.quota_limit, u.quota_used),
                u.rpm_limit.map_or("—".to_owned(), |r| r.to_string()),
                when(&u.created_at),
            ]
        })
        .collect();
    let mut body = filter_form;
    body.push_str(&table(
        "users",
        &[
            "ID",
            t(Msg::Name),
            t(Msg::Agent),
            t(Msg::Status),
            t(Msg::QuotaUsedLimit),
            t(Msg::RpmLimit),
            t(Msg::Created),
        ],
        &rows,
        t(Msg::NoUsers),
    ));
    body.push_str(&pages);
    let mut agent_options = format!(r#"<option value="">{}</option>"#, t(Msg::NoAgent));
    for a in &agents {
        let _ = write!(
            agent_options,
            r#"<option value="{}">{}</option>"#,
            a.id,
            esc(&a.name)
        );
    }
    let inner = format!(
        r#"<label>{}<input name="name" required maxlength="64" data-testid="new-user-name"></label>
<label>{}<select name="agent_id">{agent_options}</select></label>
<label>{}<input name="quota" placeholder="{}" data-testid="new-user-quota"></label>
<label>{}<input name="rpm_limit" type="number" min="1"></label>
<button type="submit" data-testid="new-user-submit">{}</button>"#,
        t(Msg::Name),
        t(Msg::Agent),
        t(Msg::QuotaCredits),
        t(Msg::Unlimited),
        t(Msg::RpmLimit),
        t(Msg::CreateUser)
    );
    let _ = write!(
        body,
        "<h2>{}</h2><div class=\"panel\">{}</div>",
        t(Msg::CreateUser),
        post_form(
            &ctx,
            &format!("{}/admin/users", ctx.root),
            "row",
            "new-user",
            &inner
        )
    );
    Ok(show(&ctx, page(&ctx, "admin/users", t(Msg::Users), &body)))
}

/// `POST /console/admin/users`: creates a user, then shows it.
pub async fn user_create(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let back = "admin/users";
    let input = (|| -> Result<CreateUser, crate::console::form::FieldError> {
        Ok(CreateUser {
            name: form.required("name")?.to_owned(),
            agent_id: form.int("agent_id")?,
            quota_limit: form.credits("quota")?,
            rpm_limit: form.int("rpm_limit")?,
        })
    })();
    let input = match input {
        Ok(input) => input,
        Err(e) => return Ok(failed(&ctx, back, &e.0)),
    };
    match api::create_user(&st.tenancy, &caller, input).await {
        Ok(user) => Ok(done(
            &ctx,
            &format!("admin/users/{}", user.id),
            ctx.lang.text(Msg::Saved),
        )),
        Err(e) => Ok(failed(&ctx, back, e.0.message())),
    }
}

/// `GET /console/admin/users/{id}`: a user's settings, quota, keys and usage.
pub async fn user_detail(
    State(st): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let id = crate::tenancy::api::parse_id(&id).map_err(err(&ctx))?;
    let user = s
        .store
        .get_user(id)
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let keys = s
        .store
        .list_api_keys(KeyOwner::User(id))
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let (_, daily) = api::usage(
        s,
        Some("day"),
        UsageFilter {
            user_id: Some(id),
            from: Some(chrono::Utc::now() - chrono::Duration::days(30)),
            ..UsageFilter::default()
        },
    )
    .await
    .map_err(err(&ctx))?;
    let action = format!("{}/admin/users/{id}", ctx.root);
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&card(t(Msg::Status), user.status.as_str(), "user-status"));
    body.push_str(&card(
        t(Msg::QuotaUsedLimit),
        &format!(
            "{} / {}",
            show_credits(user.quota_used),
            user.quota_limit
                .map_or(t(Msg::Unlimited).to_owned(), show_credits)
        ),
        "user-quota",
    ));
    body.push_str("</div>");
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
    let quota = format!(
        r#"<label>{}<select name="op"><option value="set_quota">{}</option><option value="add_quota">{}</option></select></label>
<label>{}<input name="amount" placeholder="{}" data-testid="quota-amount"></label>
<button type="submit" data-testid="quota-submit">{}</button>"#,
        t(Msg::Change),
        t(Msg::SetLimit),
        t(Msg::AddToLimit),
        t(Msg::Credits),
        t(Msg::BlankIsUnlimited),
        t(Msg::Save)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel">{}</div><h2>{}</h2><div class="panel">{}</div>"#,
        t(Msg::Settings),
        post_form(&ctx, &action, "row", "user-edit", &edit),
        t(Msg::Quota),
        post_form(&ctx, &action, "row", "user-quota-form", &quota)
    );
    body.push_str(&user_keys_section(
        &ctx,
        &action,
        &keys,
        "user-keys",
        "user-new-key",
    ));
    let _ = write!(
        body,
        "<h2>{}</h2>{}{}",
        t(Msg::Usage30d),
        requests_chart(&ctx, "user-chart", &every_day(&daily, 30)),
        usage_table(&ctx, t(Msg::Day), &daily)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2>{}"#,
        t(Msg::DangerZone),
        button_form(
            &ctx,
            &action,
            &[("op", "delete")],
            t(Msg::DeleteUser),
            "danger"
        )
    );
    Ok(show(
        &ctx,
        page(
            &ctx,
            "admin/users",
            &format!("{} · {}", t(Msg::User), user.name),
            &body,
        ),
    ))
}

/// `POST /console/admin/users/{id}`: update, quota, create or revoke a key, delete.
pub async fn user_post(
    State(st): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let s = &st.tenancy;
    let id = crate::tenancy::api::parse_id(&id).map_err(err(&ctx))?;
    let back = format!("admin/users/{id}");
    let saved = ctx.lang.text(Msg::Saved);
    let result: Result<Option<Response>, String> = async {
        match form.get("op").unwrap_or("") {
            "update" => {
                let update = UpdateUser {
                    name: form.get("name").map(str::to_owned),
                    status: form.get("status").map(str::to_owned),
                    rpm_limit: Some(form.int("rpm_limit").map_err(|e| e.0)?),
                };
                api::update_user(s, &caller, id, update)
                    .await
                    .map_err(|e| e.0.message().to_owned())?;
                Ok(None)
            }
            "set_quota" => {
                let limit = form.credits("amount").map_err(|e| e.0)?;
                api::set_quota(s, &caller, "user", id, limit)
                    .await
                    .map_err(|e| e.0.message().to_owned())?;
                Ok(None)
            }
            "add_quota" => {
                let amount = form
                    .credits("amount")
                    .map_err(|e| e.0)?
                    .ok_or("`amount` is required.")?;
                api::add_quota(s, &caller, "user", id, amount)
                    .await
                    .map_err(|e| e.0.message().to_owned())?;
                Ok(None)
            }
            "create_key" => {
                let options = key_options(&form).map_err(|e| e.0)?;
                let created =
                    api::create_admin_key(s, &caller, KeyKind::Inference, Some(id), None, options)
                        .await
                        .map_err(|e| e.0.message().to_owned())?;
                Ok(Some(respond(
                    StatusCode::OK,
                    key_created_page(&ctx, "admin/users", &created, &back),
                )))
            }
            "revoke" => {
                let key_id = form
                    .int::<i64>("key_id")
                    .map_err(|e| e.0)?
                    .ok_or("`key_id` is required.")?;
                let key = s
                    .store
                    .get_api_key(key_id)
                    .await
                    .map_err(|e| e.to_string())?;
                if key.user_id != Some(id) {
                    return Err(format!("API key {key_id} not found."));
                }
                api::revoke_key(s, &caller, key_id)
                    .await
                    .map_err(|e| e.0.message().to_owned())?;
                Ok(None)
            }
            "delete" => {
                api::delete_user(s, &caller, id)
                    .await
                    .map_err(|e| e.0.message().to_owned())?;
                Ok(Some(done(&ctx, "admin/users", saved)))
            }
            _ => Err(ctx.lang.text(Msg::UnknownAction).to_owned()),
        }
    }
    .await;
    match result {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Ok(done(&ctx, &back, saved)),
        Err(message) => Ok(failed(&ctx, &back, &message)),
    }
}

/// `GET /console/admin/keys`: every key (paginated), with revoke, and a form for admin and
/// agent keys.
pub async fn keys(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let s = &st.tenancy;
    let page_no = page_number(&query);
    let keys = s
        .store
        .page_api_keys(KeyOwner::All, store_page(page_no))
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let agents = s
        .store
        .list_agents()
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let pages = page_links(
        ctx.lang,
        page_no as u64,
        keys.total,
        &format!("{}/admin/keys?", ctx.root),
    );
    let action = format!("{}/admin/keys", ctx.root);
    let rows: Vec<Vec<String>> = keys
        .items
        .iter()
        .map(|k| {
            let mut cells = key_cells(&ctx, k);
            cells.insert(3, esc(k.kind.as_str()));
            cells.insert(
                4,
                match (k.user_id, k.agent_id) {
                    (Some(u), _) => {
                        format!(r#"<a href="{}/admin/users/{u}">user {u}</a>"#, ctx.root)
                    }
                    (None, Some(a)) => format!("agent {a}"),
                    _ => "—".to_owned(),
                },
            );
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
    head.insert(3, t(Msg::Kind));
    head.insert(4, t(Msg::Owner));
    head.push(t(Msg::Actions));
    let mut body = table("keys", &head, &rows, t(Msg::NoKeys));
    body.push_str(&pages);
    let mut agent_options = String::new();
    for a in &agents {
        let _ = write!(
            agent_options,
            r#"<option value="{}">{}</option>"#,
            a.id,
            esc(&a.name)
        );
    }
    let inner = format!(
        r#"<input type="hidden" name="op" value="create">
<label>{}<select name="kind" data-testid="key-kind"><option value="admin">admin</option><option value="agent">agent</option></select></label>
<label>{}<select name="agent_id"><option value=""></option>{agent_options}</select></label>
{}<button type="submit" data-testid="create-admin-key">{}</button>"#,
        t(Msg::Kind),
        t(Msg::Agent),
        key_fields(&ctx),
        t(Msg::CreateKey)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel"><p class="muted">{}</p>{}</div>"#,
        t(Msg::CreateKey),
        t(Msg::UserKeysHint),
        post_form(&ctx, &action, "row", "new-key", &inner)
    );
    Ok(show(&ctx, page(&ctx, "admin/keys", t(Msg::Keys), &body)))
}

/// `POST /console/admin/keys`: create an admin or agent key, or revoke any key.
pub async fn keys_post(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let s = &st.tenancy;
    let back = "admin/keys";
    match form.get("op").unwrap_or("") {
        "revoke" => {
            let Ok(Some(key_id)) = form.int::<i64>("key_id") else {
                return Ok(failed(&ctx, back, "`key_id` is required."));
            };
            match api::revoke_key(s, &caller, key_id).await {
                Ok(()) => Ok(done(&ctx, back, ctx.lang.text(Msg::Saved))),
                Err(e) => Ok(failed(&ctx, back, e.0.message())),
            }
        }
        "create" => {
            let kind = match KeyKind::parse(form.get("kind").unwrap_or("")) {
                Ok(KeyKind::Inference) | Err(_) => {
                    return Ok(failed(&ctx, back, ctx.lang.text(Msg::UserKeysHint)))
                }
                Ok(kind) => kind,
            };
            let agent_id = match form.int::<i64>("agent_id") {
                Ok(a) => a.filter(|_| kind == KeyKind::Agent),
                Err(e) => return Ok(failed(&ctx, back, &e.0)),
            };
            let options = match key_options(&form) {
                Ok(o) => o,
                Err(e) => return Ok(failed(&ctx, back, &e.0)),
            };
            match api::create_admin_key(s, &caller, kind, None, agent_id, options).await {
                Ok(created) => Ok(respond(
                    StatusCode::OK,
                    key_created_page(&ctx, back, &created, back),
                )),
                Err(e) => Ok(failed(&ctx, back, e.0.message())),
            }
        }
        _ => Ok(failed(&ctx, back, ctx.lang.text(Msg::UnknownAction))),
    }
}

/// `GET /console/admin/agents`: agents with balances, top-up, new agent, transfers.
pub async fn agents(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let page_no = page_number(&query_of(q));
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let agents = s
        .store
        .list_agents()
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let transfers = s
        .store
        .page_transfers(None, store_page(page_no))
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let action = format!("{}/admin/agents", ctx.root);
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                esc(&a.name),
                esc(a.status.as_str()),
                format!(r#"<span data-testid="agent-balance-{}">{}</span>"#, a.id, show_credits(a.balance)),
                when(&a.created_at),
                post_form(
                    &ctx,
                    &action,
                    "inline",
                    &format!("topup-{}", a.id),
                    &format!(
                        r#"<input type="hidden" name="op" value="topup"><input type="hidden" name="agent_id" value="{}"><input name="amount" size="8" placeholder="{}" data-testid="topup-amount-{}"> <button type="submit" class="small" data-testid="topup-submit-{}">{}</button>"#,
                        a.id,
                        t(Msg::Credits),
                        a.id,
                        a.id,
                        t(Msg::TopUp)
                    ),
                ),
            ]
        })
        .collect();
    let mut body = table(
        "agents",
        &[
            "ID",
            t(Msg::Name),
            t(Msg::Status),
            t(Msg::Balance),
            t(Msg::Created),
            t(Msg::TopUp),
        ],
        &rows,
        t(Msg::NoAgents),
    );
    let inner = format!(
        r#"<input type="hidden" name="op" value="create"><label>{}<input name="name" required maxlength="64" data-testid="new-agent-name"></label><button type="submit" data-testid="new-agent-submit">{}</button>"#,
        t(Msg::Name),
        t(Msg::CreateAgent)
    );
    let _ = write!(
        body,
        r#"<h2>{}</h2><div class="panel"><p class="muted">{}</p>{}</div>"#,
        t(Msg::CreateAgent),
        t(Msg::AgentKeyHint),
        post_form(&ctx, &action, "row", "new-agent", &inner)
    );
    let transfer_rows: Vec<Vec<String>> = transfers
        .items
        .iter()
        .map(|tr| {
            vec![
                when(&tr.created_at),
                tr.agent_id.to_string(),
                format!(
                    r#"<a href="{}/admin/users/{}">{}</a>"#,
                    ctx.root, tr.user_id, tr.user_id
                ),
                show_credits(tr.amount),
                show_credits(tr.agent_balance_after),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::Transfers),
        table(
            "transfers",
            &[
                t(Msg::When),
                t(Msg::Agent),
                t(Msg::User),
                t(Msg::Amount),
                t(Msg::BalanceAfter)
            ],
            &transfer_rows,
            t(Msg::NoTransfers)
        )
    );
    body.push_str(&page_links(
        ctx.lang,
        page_no as u64,
        transfers.total,
        &format!("{}/admin/agents?", ctx.root),
    ));
    Ok(show(
        &ctx,
        page(&ctx, "admin/agents", t(Msg::Agents), &body),
    ))
}

/// `POST /console/admin/agents`: create an agent or top one up.
pub async fn agents_post(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let s = &st.tenancy;
    let back = "admin/agents";
    let result = match form.get("op").unwrap_or("") {
        "create" => match form.required("name") {
            Ok(name) => api::create_agent(s, &caller, name)
                .await
                .map(drop)
                .map_err(|e| e.0.message().to_owned()),
            Err(e) => Err(e.0),
        },
        "topup" => match (form.int::<i64>("agent_id"), form.credits("amount")) {
            (Ok(Some(id)), Ok(Some(amount))) => api::top_up_agent(s, &caller, id, amount)
                .await
                .map(drop)
                .map_err(|e| e.0.message().to_owned()),
            (_, Err(e)) => Err(e.0),
            _ => Err("`amount` is required.".to_owned()),
        },
        _ => Err(ctx.lang.text(Msg::UnknownAction).to_owned()),
    };
    match result {
        Ok(()) => Ok(done(&ctx, back, ctx.lang.text(Msg::Saved))),
        Err(message) => Ok(failed(&ctx, back, &message)),
    }
}

/// `GET /console/admin/models`: prices, aliases and combos.
pub async fn models(State(st): State<Console>, ctx: Ctx) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let s = &st.tenancy;
    let action = format!("{}/admin/models", ctx.root);
    let prices = api::list_prices(s);
    let aliases = s
        .store
        .list_aliases()
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let combos = s
        .store
        .list_combos()
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let price_rows: Vec<Vec<String>> = prices
        .iter()
        .map(|(model, p)| {
            vec![
                esc(model),
                show_credits(p.input_per_m),
                show_credits(p.output_per_m),
                show_credits(p.cache_read_per_m),
                show_credits(p.cache_write_per_m),
            ]
        })
        .collect();
    let mut body = format!(
        "<h2>{}</h2><p class=\"muted\">{}</p>{}",
        t(Msg::Prices),
        t(Msg::PricesHelp),
        table(
            "prices",
            &[
                t(Msg::Model),
                t(Msg::Input),
                t(Msg::Output),
                t(Msg::CacheRead),
                t(Msg::CacheWrite)
            ],
            &price_rows,
            t(Msg::NoPrices)
        )
    );
    let price_form = format!(
        r#"<input type="hidden" name="op" value="price"><label>{}<input name="model" required></label>
<label>{}<input name="input" size="6" required></label><label>{}<input name="output" size="6" required></label>
<label>{}<input name="cache_read" size="6"></label><label>{}<input name="cache_write" size="6"></label>
<button type="submit">{}</button>"#,
        t(Msg::Model),
        t(Msg::Input),
        t(Msg::Output),
        t(Msg::CacheRead),
        t(Msg::CacheWrite),
        t(Msg::Save)
    );
    let _ = write!(
        body,
        r#"<div class="panel">{}</div>"#,
        post_form(&ctx, &action, "row", "price-form", &price_form)
    );
    let alias_rows: Vec<Vec<String>> = aliases
        .iter()
        .map(|a| {
            vec![
                esc(&a.alias),
                esc(&a.model_id),
                button_form(
                    &ctx,
                    &action,
                    &[("op", "delete_alias"), ("name", &a.alias)],
                    t(Msg::Delete),
                    "small danger",
                ),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::Aliases),
        table(
            "aliases",
            &[t(Msg::Alias), t(Msg::Model), t(Msg::Actions)],
            &alias_rows,
            t(Msg::None)
        )
    );
    let alias_form = format!(
        r#"<input type="hidden" name="op" value="alias"><label>{}<input name="name" required></label><label>{}<input name="model" required></label><button type="submit">{}</button>"#,
        t(Msg::Alias),
        t(Msg::Model),
        t(Msg::Save)
    );
    let _ = write!(
        body,
        r#"<div class="panel">{}</div>"#,
        post_form(&ctx, &action, "row", "alias-form", &alias_form)
    );
    let combo_rows: Vec<Vec<String>> = combos
        .iter()
        .map(|c| {
            vec![
                esc(&c.name),
                esc(&c.members.join(", ")),
                button_form(
                    &ctx,
                    &action,
                    &[("op", "delete_combo"), ("name", &c.name)],
                    t(Msg::Delete),
                    "small danger",
                ),
            ]
        })
        .collect();
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        t(Msg::Combos),
        table(
            "combos",
            &[t(Msg::Name), t(Msg::Members), t(Msg::Actions)],
            &combo_rows,
            t(Msg::None)
        )
    );
    let combo_form = format!(
        r#"<input type="hidden" name="op" value="combo"><label>{}<input name="name" required></label><label>{}<input name="members" required placeholder="model-a, model-b"></label><button type="submit">{}</button>"#,
        t(Msg::Name),
        t(Msg::Members),
        t(Msg::Save)
    );
    let _ = write!(
        body,
        r#"<div class="panel">{}</div>"#,
        post_form(&ctx, &action, "row", "combo-form", &combo_form)
    );
    Ok(show(
        &ctx,
        page(&ctx, "admin/models", t(Msg::Models), &body),
    ))
}

/// `POST /console/admin/models`: set a price, an alias or a combo, or delete one.
pub async fn models_post(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let s = &st.tenancy;
    let name = form.get("name").unwrap_or("");
    let model = form.get("model").unwrap_or("");
    let api_err = |e: ApiError| e.0.message().to_owned();
    let result: Result<(), String> = match form.get("op").unwrap_or("") {
        "price" => {
            let amount = |field: &str| form.credits(field).map(|v| v.unwrap_or(0)).map_err(|e| e.0);
            match (
                amount("input"),
                amount("output"),
                amount("cache_read"),
                amount("cache_write"),
            ) {
                (Ok(i), Ok(o), Ok(r), Ok(w)) => {
                    let price = Price {
                        input_per_m: i,
                        output_per_m: o,
                        cache_read_per_m: r,
                        cache_write_per_m: w,
                    };
                    api::set_price(s, &caller, model, price)
                        .await
                        .map(drop)
                        .map_err(api_err)
                }
                (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => Err(e),
            }
        }
        "alias" => api::set_alias(s, &caller, name, model)
            .await
            .map(drop)
            .map_err(api_err),
        "delete_alias" => api::delete_alias(s, &caller, name).await.map_err(api_err),
        "combo" => {
            let members: Vec<String> = form
                .get("members")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            api::set_combo(s, &caller, name, &members)
                .await
                .map(drop)
                .map_err(api_err)
        }
        "delete_combo" => api::delete_combo(s, &caller, name).await.map_err(api_err),
        _ => Err(ctx.lang.text(Msg::UnknownAction).to_owned()),
    };
    match result {
        Ok(()) => Ok(done(&ctx, "admin/models", ctx.lang.text(Msg::Saved))),
        Err(message) => Ok(failed(&ctx, "admin/models", &message)),
    }
}

/// The usage explorer's query: grouping and filters, from the page's query string.
struct Explorer {
    group: String,
    filter: UsageFilter,
    /// The query string that reproduces it (for pagination and the CSV link).
    query: String,
}

fn explorer(query: &Form) -> Result<Explorer, String> {
    let group = query.get("group_by").unwrap_or("day").to_owned();
    let date = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        query
            .get(name)
            .map(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                    .map_err(|_| format!("`{name}` must be a date such as 2026-01-31."))
            })
            .transpose()
    };
    let id = |name: &str| query.int::<i64>(name).map_err(|e| e.0);
    let from = date("from")?;
    // `to` is inclusive on the page: the whole day.
    let to = date("to")?.map(|d| d + chrono::Duration::days(1));
    let filter = UsageFilter {
        user_id: id("user_id")?,
        agent_id: id("agent_id")?,
        key_id: id("key_id")?,
        from,
        to,
    };
    let mut q = format!("group_by={}", crate::console::form::percent_encode(&group));
    for name in ["from", "to", "user_id", "agent_id", "key_id"] {
        if let Some(v) = query.get(name) {
            let _ = write!(q, "&{name}={}", crate::console::form::percent_encode(v));
        }
    }
    Ok(Explorer {
        group,
        filter,
        query: q,
    })
}

/// `GET /console/admin/usage`: totals by day, hour, model, user, agent, key or account, with
/// a chart, a table (paginated) and a CSV link. Aggregated by the database.
pub async fn usage(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let mut body = String::new();
    let form_value = |name: &str| esc(query.get(name).unwrap_or(""));
    let group_now = query.get("group_by").unwrap_or("day");
    let mut options = String::new();
    for group in api::USAGE_GROUPS {
        let g = group.as_str();
        let _ = write!(
            options,
            r#"<option value="{g}"{}>{}</option>"#,
            if g == group_now { " selected" } else { "" },
            t(group_label(*group))
        );
    }
    let _ = write!(
        body,
        r#"<form method="get" action="{}/admin/usage" class="row panel" data-testid="usage-filter">
<label>{}<select name="group_by" data-testid="group-by">{options}</select></label>
<label>{}<input type="date" name="from" value="{}"></label><label>{}<input type="date" name="to" value="{}"></label>
<label>{}<input name="user_id" size="6" value="{}"></label><label>{}<input name="agent_id" size="6" value="{}"></label>
<label>{}<input name="key_id" size="6" value="{}"></label><button type="submit">{}</button></form>"#,
        ctx.root,
        t(Msg::GroupBy),
        t(Msg::From),
        form_value("from"),
        t(Msg::To),
        form_value("to"),
        t(Msg::User),
        form_value("user_id"),
        t(Msg::Agent),
        form_value("agent_id"),
        t(Msg::Key),
        form_value("key_id"),
        t(Msg::Show)
    );
    let ex = match explorer(&query) {
        Ok(ex) => ex,
        Err(message) => {
            let _ = write!(
                body,
                r#"<p class="flash error" data-testid="error">{}</p>"#,
                esc(&message)
            );
            return Err(respond(
                StatusCode::BAD_REQUEST,
                page(&ctx, "admin/usage", t(Msg::Usage), &body),
            ));
        }
    };
    let (group, rows) = match api::usage(&st.tenancy, Some(&ex.group), ex.filter).await {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(
                body,
                r#"<p class="flash error" data-testid="error">{}</p>"#,
                esc(e.0.message())
            );
            return Err(respond(
                e.0.status(),
                page(&ctx, "admin/usage", t(Msg::Usage), &body),
            ));
        }
    };
    let sum = totals(&rows);
    body.push_str(r#"<div class="cards">"#);
    body.push_str(&card(
        t(Msg::Requests),
        &count(sum.requests),
        "usage-requests",
    ));
    body.push_str(&card(
        t(Msg::Errors),
        &count(sum.requests.saturating_sub(sum.successes)),
        "usage-errors",
    ));
    body.push_str(&card(
        t(Msg::Charged),
        &show_credits(sum.charged),
        "usage-charged",
    ));
    body.push_str(&card(
        t(Msg::KiroCredits),
        &format!("{:.2}", sum.credits),
        "usage-credits",
    ));
    body.push_str("</div>");
    let by_time = matches!(group, UsageGroup::Day | UsageGroup::Hour);
    if by_time {
        body.push_str(&requests_chart(&ctx, "usage-chart", &rows));
    } else {
        let mut top = rows.clone();
        top.sort_by(|a, b| b.charged.cmp(&a.charged).then(b.requests.cmp(&a.requests)));
        top.truncate(30);
        body.push_str(&charged_chart(&ctx, "usage-chart", &top));
    }
    let _ = write!(
        body,
        r#"<p><a href="{}/admin/usage.csv?{}" data-testid="csv">{}</a></p>"#,
        ctx.root,
        esc(&ex.query),
        t(Msg::DownloadCsv)
    );
    let (slice, pages) = paginate(
        ctx.lang,
        &rows,
        page_number(&query),
        &format!("{}/admin/usage?{}&", ctx.root, ex.query),
    );
    body.push_str(&usage_table(&ctx, t(group_label(group)), slice));
    body.push_str(&pages);
    Ok(show(&ctx, page(&ctx, "admin/usage", t(Msg::Usage), &body)))
}

fn group_label(group: UsageGroup) -> Msg {
    match group {
        UsageGroup::Day => Msg::Day,
        UsageGroup::Hour => Msg::Hour,
        UsageGroup::Model => Msg::Model,
        UsageGroup::User => Msg::User,
        UsageGroup::Agent => Msg::Agent,
        UsageGroup::Key => Msg::Key,
        UsageGroup::Account => Msg::Account,
        UsageGroup::Kind => Msg::Kind,
    }
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with `'` so
/// a spreadsheet does not run a name as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `GET /console/admin/usage.csv`: the explorer's rows as CSV.
pub async fn usage_csv(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let ex = explorer(&query_of(q)).map_err(|m| (StatusCode::BAD_REQUEST, m).into_response())?;
    let (group, rows) = api::usage(&st.tenancy, Some(&ex.group), ex.filter)
        .await
        .map_err(|e| (e.0.status(), e.0.message().to_owned()).into_response())?;
    let mut csv = format!(
        "{},requests,errors,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,kiro_credits,charged_credits\n",
        group.as_str()
    );
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(&r.group),
            r.requests,
            r.requests.saturating_sub(r.successes),
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.credits,
            show_credits(r.charged)
        );
    }
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"usage-by-{}.csv\"",
        group.as_str()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `GET /console/admin/audit`: the newest entries of the audit log.
pub async fn audit(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let filter = AuditQuery {
        action: query
            .get("action")
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.chars().take(64).collect()),
    };
    let page_no = page_number(&query);
    let entries = st
        .tenancy
        .store
        .page_audit(filter.clone(), store_page(page_no))
        .await
        .map_err(|e| err(&ctx)(e.into()))?;
    let action = filter.action.as_deref().unwrap_or("");
    let pages = page_links(
        ctx.lang,
        page_no as u64,
        entries.total,
        &format!(
            "{}/admin/audit?{}",
            ctx.root,
            if action.is_empty() {
                String::new()
            } else {
                format!("action={}&", percent_encode(action))
            }
        ),
    );
    let filter_form = format!(
        r#"<form method="get" action="{}/admin/audit" class="row filter" data-testid="audit-filter">
<label>{}<input name="action" value="{}" maxlength="64" placeholder="create" data-testid="audit-action"></label>
<button type="submit" class="secondary">{}</button></form>"#,
        ctx.root,
        t(Msg::ActionStartsWith),
        esc(action),
        t(Msg::Filter)
    );
    let rows: Vec<Vec<String>> = entries
        .items
        .iter()
        .map(|e| {
            vec![
                when(&e.created_at),
                esc(&e.actor),
                esc(&e.action),
                format!("{} {}", esc(&e.object_type), esc(&e.object_id)),
                format!(
                    r#"<code class="wrap">{}</code>"#,
                    esc(&e.detail.to_string())
                ),
            ]
        })
        .collect();
    let mut body = filter_form;
    body.push_str(&table(
        "audit",
        &[
            t(Msg::When),
            t(Msg::Actor),
            t(Msg::Action),
            t(Msg::Object),
            t(Msg::Detail),
        ],
        &rows,
        t(Msg::None),
    ));
    body.push_str(&pages);
    Ok(show(&ctx, page(&ctx, "admin/audit", t(Msg::Audit), &body)))
}

/// `GET /console/admin/debug`: the debug captures (newest first), from the same store the
/// `/admin/debug` API reads.
pub async fn debug(State(st): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let query = query_of(q);
    let dir = &st.config.debug_dir;
    let captures = if dir.exists() {
        crate::debug::store::list(dir).map_err(|m| super::PageError::Internal(m).into_response())?
    } else {
        Vec::new()
    };
    let (slice, pages) = paginate(
        ctx.lang,
        &captures,
        page_number(&query),
        &format!("{}/admin/debug?", ctx.root),
    );
    let rows: Vec<Vec<String>> = slice
        .iter()
        .map(|c| {
            vec![
                format!(
                    r#"<a href="{}/admin/debug/{}">{}</a>"#,
                    ctx.root,
                    crate::console::form::percent_encode(&c.id),
                    esc(&c.id)
                ),
                count(c.bytes),
                format!(
                    r#"<code class="wrap">{}</code>"#,
                    esc(&c.request.to_string().chars().take(200).collect::<String>())
                ),
            ]
        })
        .collect();
    let mut body = format!(
        r#"<p class="muted">{}</p>{}"#,
        t(Msg::DebugHelp),
        table(
            "captures",
            &["ID", t(Msg::Bytes), t(Msg::Request)],
            &rows,
            t(Msg::NoCaptures)
        )
    );
    body.push_str(&pages);
    Ok(show(&ctx, page(&ctx, "admin/debug", t(Msg::Debug), &body)))
}

/// `GET /console/admin/debug/{id}`: one capture (already redacted when written).
pub async fn debug_one(State(st): State<Console>, ctx: Ctx, Path(id): Path<String>) -> PageResult {
    require(&ctx, Role::Admin)?;
    let t = |m: Msg| ctx.lang.text(m);
    let text = crate::debug::store::find(&st.config.debug_dir, &id)
        .and_then(|path| std::fs::read_to_string(path).map_err(|e| e.to_string()))
        .map_err(|_| {
            super::error_page(
                &ctx,
                StatusCode::NOT_FOUND,
                Msg::NotFound,
                t(Msg::NotFoundText),
            )
        })?;
    let body = format!(r#"<pre data-testid="capture">{}</pre>"#, esc(&text));
    Ok(show(&ctx, page(&ctx, "admin/debug", &id, &body)))
}
