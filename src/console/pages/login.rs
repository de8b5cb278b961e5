//! `/console/login`, `/console/logout`, the language switch and `/console` itself.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::{error_page, redirect, PageResult};
use crate::console::form::Form;
use crate::console::html::{esc, page, respond};
use crate::console::i18n::{Lang, Msg};
use crate::console::session::{self, set_cookie, Ctx, Role};
use crate::console::Console;
use crate::tenancy::keys::Caller;

fn home_of(ctx: &Ctx, role: Role) -> String {
    format!("{}/{}", ctx.root, role.as_str())
}

/// `GET /console`: the signed-in role's overview, or the login.
pub async fn home(ctx: Ctx) -> Response {
    match &ctx.session {
        Some(s) => redirect(&home_of(&ctx, s.role), &[]),
        None => redirect(&format!("{}/login", ctx.root), &[]),
    }
}

fn login_page(ctx: &Ctx, status: StatusCode, error: Option<&str>) -> Response {
    let t = |m: Msg| ctx.lang.text(m);
    let error = error.map_or(String::new(), |e| {
        format!(
            r#"<p class="flash error" data-testid="login-error">{}</p>"#,
            esc(e)
        )
    });
    let body = format!(
        r#"<div class="login panel">{error}<p class="muted">{intro}</p>
<form method="post" action="{root}/login" class="stack" data-testid="login-form">
<label for="key">{label}</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus data-testid="login-key">
<p><button type="submit" data-testid="login-submit">{submit}</button></p></form></div>"#,
        intro = t(Msg::LoginIntro),
        root = ctx.root,
        label = t(Msg::GatewayKey),
        submit = t(Msg::SignIn),
    );
    respond(status, page(ctx, "", t(Msg::SignIn), &body))
}

/// `GET /console/login`.
pub async fn form(ctx: Ctx) -> Response {
    match &ctx.session {
        Some(s) => redirect(&home_of(&ctx, s.role), &[]),
        None => login_page(&ctx, StatusCode::OK, None),
    }
}

/// Which caller a presented key is, trying admin, agent and user in turn.
fn authenticate(state: &Console, key: &str) -> Option<Caller> {
    let keys = &state.tenancy.keys;
    keys.admin(key)
        .or_else(|_| keys.agent(key))
        .or_else(|_| keys.user(key))
        .ok()
}

/// `POST /console/login`: checks the key, opens a session, goes to the role's overview.
pub async fn submit(
    State(state): State<Console>,
    ctx: Ctx,
    request: http::Request<axum::body::Body>,
) -> PageResult {
    let (parts, body) = request.into_parts();
    let client = session::client_of(&parts.extensions);
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let form = Form::parse(std::str::from_utf8(&body).unwrap_or(""));
    if !same_origin(&parts.headers) {
        return Err(error_page(
            &ctx,
            StatusCode::FORBIDDEN,
            Msg::Forbidden,
            ctx.lang.text(Msg::CsrfText),
        ));
    }
    if !state.limiter.allowed(&client) {
        return Err(login_page(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            Some(ctx.lang.text(Msg::TooManyLogins)),
        ));
    }
    let key = form.get("key").unwrap_or("");
    let Some(caller) = authenticate(&state, key) else {
        state.limiter.failed(&client);
        return Err(login_page(
            &ctx,
            StatusCode::UNAUTHORIZED,
            Some(ctx.lang.text(Msg::BadKey)),
        ));
    };
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A session cookie the browser already had is replaced (no fixation).
    if let Some(old) = &ctx.session {
        let _ = state
            .tenancy
            .store
            .delete_console_session(old.id_hash().to_vec())
            .await;
    }
    let cookie = session::open(&state, &ctx, &caller, user_agent)
        .await
        .map_err(axum::response::IntoResponse::into_response)?;
    Ok(redirect(&home_of(&ctx, Role::of(&caller)), &[cookie]))
}

/// A present `Origin` (or `Referer`) names the host the request came to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers
        .get(http::header::ORIGIN)
        .or_else(|| headers.get(http::header::REFERER))
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    origin
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or("").to_ascii_lowercase())
        .is_some_and(|o| o == host)
}

/// `POST /console/logout`: ends the session (CSRF-checked, so no page can log a user out).
pub async fn logout(
    State(state): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let Some(session) = &ctx.session else {
        return Ok(redirect(&format!("{}/login", ctx.root), &[]));
    };
    let form = Form::parse(std::str::from_utf8(&body).unwrap_or(""));
    if !session::check_post(session, &headers, form.get("_csrf")) {
        return Err(error_page(
            &ctx,
            StatusCode::FORBIDDEN,
            Msg::Forbidden,
            ctx.lang.text(Msg::CsrfText),
        ));
    }
    let _ = state
        .tenancy
        .store
        .delete_console_session(session.id_hash().to_vec())
        .await;
    let clear = set_cookie(&ctx, session::COOKIE, "", Some(std::time::Duration::ZERO));
    Ok(redirect(&format!("{}/login", ctx.root), &[clear]))
}

/// `GET /console/lang/{en|zh}`: remembers the language in a cookie, back to the console.
pub async fn set_language(ctx: Ctx, Path(code): Path<String>) -> Response {
    let lang = Lang::parse(&code).unwrap_or(ctx.lang);
    let cookie = format!(
        "{}; Max-Age=31536000",
        set_cookie(&ctx, "kg_lang", lang.code(), None)
    );
    redirect(&format!("{}/", ctx.root), &[cookie])
}
