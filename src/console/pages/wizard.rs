//! The add-account wizard of the accounts page: sign in with AWS Builder ID, IAM Identity
//! Center, Google or GitHub (device flow) or the paste-the-redirect-URL fallback. Every step
//! calls the functions the `/admin/accounts/login/...` JSON endpoints call
//! (`crate::login::routes::start_audited` and friends); the flow page refreshes itself with a
//! `<meta http-equiv="refresh">` while it waits, so it works without JavaScript.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::shared::post_form;
use super::{api_error_page, error_page, failed, posted, redirect, require, show, PageResult};
use crate::console::html::{esc, page};
use crate::console::i18n::Msg;
use crate::console::session::{Ctx, Role};
use crate::console::Console;
use crate::login::routes::{cancel_audited, choose_profile_audited, start_audited};
use crate::login::{FlowStatus, FlowView, LoginRequest, Logins};
use crate::tenancy::api::ApiError;

/// Seconds between the flow page's refreshes while it waits.
const REFRESH_SECONDS: u64 = 3;

/// The sign-in flows, or a 404 page when this gateway has none (no database).
fn logins(st: &Console, ctx: &Ctx) -> Result<Arc<Logins>, Response> {
    st.config.logins.clone().ok_or_else(|| {
        error_page(
            ctx,
            StatusCode::NOT_FOUND,
            Msg::NotFound,
            ctx.lang.text(Msg::NotFoundText),
        )
    })
}

/// The wizard's start form, shown on the accounts page (empty when sign-in is unavailable).
pub fn start_form(st: &Console, ctx: &Ctx) -> String {
    if st.config.logins.is_none() {
        return String::new();
    }
    let t = |m: Msg| ctx.lang.text(m);
    let inner = format!(
        r#"<label>{method}<select name="method" data-testid="signin-method">
<option value="builder-id">{builder}</option>
<option value="identity-center">{idc}</option>
<option value="social:google">Google</option>
<option value="social:github">GitHub</option>
<option value="social-redirect">{paste}</option>
</select></label>
<label>{start_url} <span class="muted">({idc})</span><input name="start_url" placeholder="https://d-1234567890.awsapps.com/start" data-testid="signin-start-url"></label>
<label>{region} <span class="muted">({idc})</span><input name="region" placeholder="us-east-1" data-testid="signin-region"></label>
<label>{name} <span class="muted">({optional})</span><input name="name" maxlength="64" data-testid="signin-name"></label>
<p><button type="submit" data-testid="signin-start">{start}</button></p>"#,
        method = t(Msg::SignInMethod),
        builder = t(Msg::SignInBuilderId),
        idc = t(Msg::SignInIdentityCenter),
        paste = t(Msg::SignInPaste),
        start_url = t(Msg::SignInStartUrl),
        region = t(Msg::Region),
        name = t(Msg::Name),
        optional = t(Msg::SignInOptional),
        start = t(Msg::SignInStart),
    );
    format!(
        r#"<h2 id="sign-in">{}</h2><div class="panel"><p class="muted">{}</p>{}</div>"#,
        t(Msg::SignInAdd),
        t(Msg::SignInHelp),
        post_form(
            ctx,
            &format!("{}/admin/accounts/login", ctx.root),
            "stack",
            "signin-form",
            &inner
        )
    )
}

fn flow_path(id: &str) -> String {
    format!("admin/accounts/login/{id}")
}

/// `POST /console/admin/accounts/login`: starts a flow, then shows its page.
pub async fn start(
    State(st): State<Console>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let logins = logins(&st, &ctx)?;
    let field = |key: &str| form.get(key).map(str::trim).filter(|v| !v.is_empty());
    let chosen = field("method").unwrap_or("");
    let (method, provider) = match chosen.split_once(':') {
        Some((method, provider)) => (method, Some(provider.to_owned())),
        None => (chosen, None),
    };
    let identity_center = method == "identity-center";
    let request = LoginRequest {
        method: method.to_owned(),
        start_url: field("start_url")
            .filter(|_| identity_center)
            .map(str::to_owned),
        region: field("region")
            .filter(|_| identity_center)
            .map(str::to_owned),
        provider,
        name: field("name").map(str::to_owned),
        ..LoginRequest::default()
    };
    match start_audited(&logins, &caller, request).await {
        Ok(flow) => Ok(redirect(
            &format!("{}/{}", ctx.root, flow_path(&flow.id)),
            &[],
        )),
        Err(e) => Ok(failed(&ctx, "admin/accounts", e.message())),
    }
}

/// `GET /console/admin/accounts/login/{id}`: where the flow is.
pub async fn flow(State(st): State<Console>, ctx: Ctx, Path(id): Path<String>) -> PageResult {
    require(&ctx, Role::Admin)?;
    let logins = logins(&st, &ctx)?;
    let view = logins
        .status(&id)
        .await
        .map_err(|e| api_error_page(&ctx, ApiError(e)))?;
    let body = flow_body(&ctx, &view);
    Ok(show(
        &ctx,
        page(
            &ctx,
            "admin/accounts",
            ctx.lang.text(Msg::SignInFlow),
            &body,
        ),
    ))
}

fn flow_body(ctx: &Ctx, view: &FlowView) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let action = format!("{}/{}", ctx.root, flow_path(&view.id));
    let again = format!(
        r#"<p><a href="{}/admin/accounts#sign-in" data-testid="signin-again">{}</a></p>"#,
        ctx.root,
        t(Msg::SignInAgain)
    );
    let cancel = post_form(
        ctx,
        &action,
        "",
        "signin-cancel-form",
        &format!(
            r#"<button type="submit" name="act" value="cancel" class="secondary small" data-testid="signin-cancel">{}</button>"#,
            t(Msg::SignInCancel)
        ),
    );
    let status = |text: &str| {
        format!(
            r#"<p class="flash {}" role="status" data-testid="signin-status" data-status="{}">{}</p>"#,
            if view.status.is_final() && view.status != FlowStatus::Succeeded {
                "error"
            } else {
                "ok"
            },
            serde_json::to_value(view.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            esc(text)
        )
    };
    let refresh = format!(r#"<meta http-equiv="refresh" content="{REFRESH_SECONDS}">"#);
    let mut body = String::new();
    match view.status {
        FlowStatus::Pending | FlowStatus::SlowDown => {
            body.push_str(&refresh);
            body.push_str(&status(t(Msg::SignInPending)));
            let _ = write!(
                body,
                r#"<div class="panel"><p>{}</p><p class="code" data-testid="signin-user-code">{}</p>"#,
                t(Msg::SignInEnterCode),
                esc(view.user_code.as_deref().unwrap_or(""))
            );
            if let Some(link) = view
                .verification_uri_complete
                .as_deref()
                .or(view.verification_uri.as_deref())
            {
                let _ = write!(
                    body,
                    r#"<p><a href="{link}" target="_blank" rel="noopener noreferrer" data-testid="signin-verify">{text}</a></p>"#,
                    link = esc(link),
                    text = t(Msg::SignInOpenPage)
                );
            }
            if let Some(plain) = view.verification_uri.as_deref() {
                let _ = write!(body, r#"<p class="muted">{}</p>"#, esc(plain));
            }
            let _ = write!(
                body,
                r#"<p class="muted">{} {}</p></div>{cancel}"#,
                t(Msg::SignInExpires),
                esc(&view.expires_at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            );
        }
        FlowStatus::NeedsProfileChoice => {
            body.push_str(&status(t(Msg::SignInChooseProfile)));
            let options: String = view
                .profiles
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    format!(
                        r#"<label><input type="radio" name="profile_arn" value="{arn}"{checked} data-testid="signin-profile-{i}"> {name} <span class="muted">{arn}</span></label>"#,
                        arn = esc(&p.arn),
                        name = esc(&p.name),
                        checked = if i == 0 { " checked" } else { "" },
                    )
                })
                .collect();
            body.push_str(&post_form(
                ctx,
                &action,
                "stack",
                "signin-profile-form",
                &format!(
                    r#"{options}<p><button type="submit" name="act" value="profile" data-testid="signin-profile-submit">{}</button></p>"#,
                    t(Msg::SignInUseProfile)
                ),
            ));
            body.push_str(&cancel);
        }
        FlowStatus::WaitingForRedirect => {
            body.push_str(&status(t(Msg::SignInPasteHelp)));
            if let Some(link) = view.sign_in_url.as_deref() {
                let _ = write!(
                    body,
                    r#"<p><a href="{}" target="_blank" rel="noopener noreferrer" data-testid="signin-link">{}</a></p>"#,
                    esc(link),
                    t(Msg::SignInOpenPage)
                );
            }
            body.push_str(&post_form(
                ctx,
                &action,
                "stack",
                "signin-redirect-form",
                &format!(
                    r#"<label>{}<input name="url" required placeholder="http://localhost:3128/oauth/callback?code=…" data-testid="signin-redirect-url"></label><p><button type="submit" name="act" value="redirect" data-testid="signin-redirect-submit">{}</button></p>"#,
                    t(Msg::SignInPastedAddress),
                    t(Msg::SignInSend)
                ),
            ));
            body.push_str(&cancel);
        }
        FlowStatus::Finishing => {
            body.push_str(&refresh);
            body.push_str(&status(t(Msg::SignInFinishing)));
        }
        FlowStatus::Succeeded => {
            body.push_str(&status(t(Msg::SignInSucceeded)));
            if let Some(account) = &view.account {
                let _ = write!(
                    body,
                    r#"<p><a href="{}/admin/accounts" data-testid="signin-account">#{} {}</a></p>"#,
                    ctx.root,
                    account.id,
                    esc(&account.name)
                );
            }
        }
        FlowStatus::Expired | FlowStatus::Denied | FlowStatus::Failed | FlowStatus::Cancelled => {
            let message = match view.status {
                FlowStatus::Expired => t(Msg::SignInExpired),
                FlowStatus::Denied => t(Msg::SignInDenied),
                FlowStatus::Cancelled => t(Msg::SignInCancelled),
                _ => t(Msg::SignInFailed),
            };
            body.push_str(&status(message));
            if let Some(error) = view.error.as_deref() {
                let _ = write!(
                    body,
                    r#"<p class="muted" data-testid="signin-error">{}</p>"#,
                    esc(error)
                );
            }
            body.push_str(&again);
        }
    }
    body
}

/// `POST /console/admin/accounts/login/{id}`: `act=profile` (with `profile_arn`),
/// `act=redirect` (with `url`) or `act=cancel`; then back to the flow page.
pub async fn flow_post(
    State(st): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (caller, form) = posted(&ctx, Role::Admin, &headers, &body)?;
    let logins = logins(&st, &ctx)?;
    let back = flow_path(&id);
    let result = match form.get("act").unwrap_or("") {
        "profile" => {
            let arn = form.get("profile_arn").unwrap_or("");
            choose_profile_audited(&logins, &caller, &id, arn).await
        }
        // The success itself is audited where the account is stored.
        "redirect" => {
            let url = form.raw("url").unwrap_or("").trim().to_owned();
            logins.complete_redirect(&id, &url).await
        }
        "cancel" => cancel_audited(&logins, &caller, &id).await,
        _ => return Ok(failed(&ctx, &back, ctx.lang.text(Msg::UnknownAction))),
    };
    match result {
        Ok(_) => Ok(redirect(&format!("{}/{back}", ctx.root), &[])),
        Err(e) => Ok(failed(&ctx, &back, e.message())),
    }
}
