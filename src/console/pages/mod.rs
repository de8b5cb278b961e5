//! The console's pages, one module per role plus the login. Handlers answer
//! `Result<Response, Response>`: the error side is already a page (a redirect to the login,
//! a 403 or 404 page, or a redirect back with the error as a flash message).

// The error side is a whole `Response` on purpose (it is the page to show); boxing it would
// only add an allocation to a path that renders HTML anyway.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod agent;
pub mod limits;
pub mod login;
pub mod shared;
pub mod user;
pub mod wizard;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::form::Form;
use super::html::{esc, page, respond};
use super::i18n::Msg;
use super::session::{check_post, flash_cookie, Ctx, Role};
use crate::tenancy::api::ApiError;
use crate::tenancy::keys::Caller;

/// What a page handler answers.
pub type PageResult = Result<Response, Response>;

/// A failure below the pages (the store): a 500 page that names no secret.
#[derive(Debug)]
pub enum PageError {
    /// Store or other internal failure.
    Internal(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let PageError::Internal(message) = self;
        tracing::error!("console: {message}");
        respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<!doctype html><title>Error</title><p>Internal error; see the gateway's log.</p>"
                .to_owned(),
        )
    }
}

/// A 303 redirect to `location`, with extra `Set-Cookie` values.
pub fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error page with `status` and a message.
pub fn error_page(ctx: &Ctx, status: StatusCode, title: Msg, message: &str) -> Response {
    let body = format!(
        r#"<p class="flash error" data-testid="error">{}</p><p><a href="{}/">{}</a></p>"#,
        esc(message),
        ctx.root,
        ctx.lang.text(Msg::BackHome)
    );
    respond(status, page(ctx, "", ctx.lang.text(title), &body))
}

/// `GET|POST /console/*` that matches nothing.
pub async fn not_found(ctx: Ctx) -> Response {
    error_page(
        &ctx,
        StatusCode::NOT_FOUND,
        Msg::NotFound,
        ctx.lang.text(Msg::NotFoundText),
    )
}

/// The signed-in caller when its role is `role`; else the login (no session) or a 403 page
/// (another role: an agent or user never sees an admin page).
pub fn require(ctx: &Ctx, role: Role) -> Result<Caller, Response> {
    match &ctx.session {
        None => Err(redirect(&format!("{}/login", ctx.root), &[])),
        Some(session) if session.role == role => Ok(session.caller.clone()),
        Some(_) => Err(error_page(
            ctx,
            StatusCode::FORBIDDEN,
            Msg::Forbidden,
            ctx.lang.text(Msg::ForbiddenText),
        )),
    }
}

/// A form post by a caller of `role`, with its CSRF token and origin checked.
pub fn posted(
    ctx: &Ctx,
    role: Role,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Caller, Form), Response> {
    let caller = require(ctx, role)?;
    let form = Form::parse(std::str::from_utf8(body).unwrap_or(""));
    let Some(session) = &ctx.session else {
        return Err(redirect(&format!("{}/login", ctx.root), &[]));
    };
    if !check_post(session, headers, form.get("_csrf")) {
        return Err(error_page(
            ctx,
            StatusCode::FORBIDDEN,
            Msg::Forbidden,
            ctx.lang.text(Msg::CsrfText),
        ));
    }
    Ok((caller, form))
}

/// Back to `path` (under the console) with a success message.
pub fn done(ctx: &Ctx, path: &str, message: &str) -> Response {
    redirect(
        &format!("{}/{path}", ctx.root),
        &[flash_cookie(ctx, false, message)],
    )
}

/// Back to `path` with the error as the message (the page's form is shown again).
pub fn failed(ctx: &Ctx, path: &str, message: &str) -> Response {
    redirect(
        &format!("{}/{path}", ctx.root),
        &[flash_cookie(ctx, true, message)],
    )
}

/// An API error on a page that shows data: 404 stays a 404 page (an agent asking for another
/// agent's user learns nothing), the rest are shown with their status.
pub fn api_error_page(ctx: &Ctx, error: ApiError) -> Response {
    let status = error.0.status();
    let title = match status.as_u16() {
        404 => Msg::NotFound,
        403 => Msg::Forbidden,
        _ => Msg::Error,
    };
    error_page(ctx, status, title, error.0.message())
}

/// The page a flash message clears: the flash cookie is removed once shown.
pub fn show(ctx: &Ctx, html: String) -> Response {
    let mut response = respond(StatusCode::OK, html);
    if ctx.flash.is_some() {
        if let Ok(value) = HeaderValue::from_str(&super::session::set_cookie(
            ctx,
            "kg_flash",
            "",
            Some(std::time::Duration::ZERO),
        )) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The `page` query parameter (1-based).
pub fn page_number(query: &Form) -> usize {
    query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
}

/// Parses the query string of a request.
pub fn query_of(raw: Option<String>) -> Form {
    Form::parse(raw.as_deref().unwrap_or(""))
}
