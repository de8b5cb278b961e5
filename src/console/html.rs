//! HTML building: escaping, the page layout with its navigation per role, and small pieces
//! (tables, pagination, the CSRF field). Plain string building: the pages are small, and a
//! template engine would add a build-time dependency for little gain. Everything that came
//! from a user or the store goes through [`esc`].

use std::fmt::Write as _;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use super::i18n::{Lang, Msg};
use super::session::{Ctx, Role};

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The hidden CSRF field of a form.
pub fn csrf_field(ctx: &Ctx) -> String {
    ctx.session.as_ref().map_or_else(String::new, |s| {
        format!(
            r#"<input type="hidden" name="_csrf" value="{}">"#,
            esc(&s.csrf)
        )
    })
}

fn nav(ctx: &Ctx, active: &str) -> String {
    let Some(session) = &ctx.session else {
        return String::new();
    };
    let t = |m: Msg| ctx.lang.text(m);
    let items: &[(&str, Msg)] = match session.role {
        Role::Admin => &[
            ("admin", Msg::Overview),
            ("admin/accounts", Msg::Accounts),
            ("admin/users", Msg::Users),
            ("admin/keys", Msg::Keys),
            ("admin/agents", Msg::Agents),
            ("admin/models", Msg::Models),
            ("admin/usage", Msg::Usage),
            ("admin/audit", Msg::Audit),
            ("admin/debug", Msg::Debug),
        ],
        Role::Agent => &[
            ("agent", Msg::Overview),
            ("agent/transfers", Msg::Transfers),
        ],
        Role::User => &[
            ("user", Msg::Overview),
            ("user/keys", Msg::Keys),
            ("user/models", Msg::Models),
        ],
    };
    let mut out = String::from(r#"<nav class="side"><ul>"#);
    for (path, label) in items {
        let class = if *path == active {
            r#" class="active" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<li><a href="{}/{path}"{class} data-testid="nav-{}">{}</a></li>"#,
            ctx.root,
            path.replace('/', "-"),
            t(*label)
        );
    }
    let _ = write!(
        out,
        r#"</ul><form method="post" action="{}/logout" class="logout">{}<button type="submit" data-testid="logout">{}</button></form></nav>"#,
        ctx.root,
        csrf_field(ctx),
        t(Msg::SignOut)
    );
    out
}

/// A whole page: head, header with the language switch, navigation, flash message, body.
pub fn page(ctx: &Ctx, active: &str, title: &str, body: &str) -> String {
    let t = |m: Msg| ctx.lang.text(m);
    let role = ctx.session.as_ref().map_or(String::new(), |s| {
        format!(r#"<span class="role">{}</span>"#, t(role_name(s.role)))
    });
    let flash = ctx.flash.as_ref().map_or(String::new(), |f| {
        format!(
            r#"<p class="flash {}" role="status" data-testid="flash">{}</p>"#,
            if f.error { "error" } else { "ok" },
            esc(&f.text)
        )
    });
    let other = match ctx.lang {
        Lang::En => (Lang::Zh, "中文"),
        Lang::Zh => (Lang::En, "English"),
    };
    format!(
        r#"<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Kiro Gateway</title>
<link rel="stylesheet" href="{root}/static/{css}">
<script src="{root}/static/{js}" defer></script>
</head><body>
<header class="top"><a class="brand" href="{root}/">Kiro Gateway</a>{role}
<a class="lang" href="{root}/lang/{other_code}" data-testid="lang">{other_name}</a></header>
<div class="frame">{nav}<main><h1>{title}</h1>{flash}{body}</main></div>
</body></html>"#,
        lang = ctx.lang.code(),
        title = esc(title),
        root = ctx.root,
        css = super::assets::CSS_NAME,
        js = super::assets::JS_NAME,
        nav = nav(ctx, active),
        other_code = other.0.code(),
        other_name = other.1,
    )
}

/// The name of a role.
pub fn role_name(role: Role) -> Msg {
    match role {
        Role::Admin => Msg::RoleAdmin,
        Role::Agent => Msg::RoleAgent,
        Role::User => Msg::RoleUser,
    }
}

/// A page as a response: `no-store` (pages hold balances and, once, keys), framing denied.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A table: header cells (already escaped) and rows of cells (already HTML).
pub fn table(testid: &str, head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = format!(r#"<div class="scroll"><table data-testid="{testid}"><thead><tr>"#);
    for h in head {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td colspan="{}" class="empty">{}</td></tr>"#,
            head.len().max(1),
            esc(empty)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Rows per page of the long tables.
pub const PAGE_SIZE: usize = 50;

/// One page of `items` (1-based `page`), and the links to the others. `base` is the page's
/// URL with its other query parameters (ending in `?` or `&`). For short lists only: long
/// ones are paged by the store ([`page_links`]).
pub fn paginate<'a, T>(lang: Lang, items: &'a [T], page: usize, base: &str) -> (&'a [T], String) {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    let slice = &items[start.min(items.len())..(start + PAGE_SIZE).min(items.len())];
    (
        slice,
        page_links(lang, page as u64, items.len() as u64, base),
    )
}

/// The 1-based page to ask the store for: at least 1 (a page past the end shows no rows and
/// links back).
pub fn store_page(page: usize) -> kiro_layers::store::PageRequest {
    kiro_layers::store::PageRequest::nth(page.max(1) as u64, PAGE_SIZE as u32)
}

/// The links around page `page` of `total` rows ([`PAGE_SIZE`] a page); empty for one page.
pub fn page_links(lang: Lang, page: u64, total: u64, base: &str) -> String {
    let pages = total.div_ceil(PAGE_SIZE as u64).max(1);
    let page = page.max(1);
    if pages == 1 && page == 1 {
        return String::new();
    }
    let mut nav = String::from(r#"<nav class="pages" data-testid="pages">"#);
    if page > 1 {
        let _ = write!(
            nav,
            r#"<a href="{}page={}">‹ {}</a> "#,
            esc(base),
            (page - 1).min(pages),
            lang.text(Msg::Previous)
        );
    }
    let _ = write!(nav, "<span>{page} / {pages}</span>");
    if page < pages {
        let _ = write!(
            nav,
            r#" <a href="{}page={}">{} ›</a>"#,
            esc(base),
            page + 1,
            lang.text(Msg::Next)
        );
    }
    nav.push_str("</nav>");
    nav
}

/// A time for tables: `2026-01-31 14:05` UTC.
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// A number with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A small inline form with one submit button (and hidden fields).
pub fn button_form(
    ctx: &Ctx,
    action: &str,
    hidden: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let mut out = format!(
        r#"<form method="post" action="{}" class="inline">{}"#,
        esc(action),
        csrf_field(ctx)
    );
    for (k, v) in hidden {
        let _ = write!(
            out,
            r#"<input type="hidden" name="{}" value="{}">"#,
            esc(k),
            esc(v)
        );
    }
    let _ = write!(
        out,
        r#"<button type="submit" class="{class}">{}</button></form>"#,
        esc(label)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn pagination_clamps_and_links() {
        let items: Vec<u32> = (0..120).collect();
        let (slice, nav) = paginate(Lang::En, &items, 3, "/x?");
        assert_eq!(slice, &items[100..]);
        assert!(nav.contains("page=2") && !nav.contains("page=4"));
        let (slice, nav) = paginate(Lang::En, &items[..10], 9, "/x?");
        assert_eq!(slice.len(), 10);
        assert!(nav.is_empty());
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
