//! The console's stylesheet and script, embedded in the binary (nothing is fetched at run
//! time). Their URLs carry the gateway's version, so a new release is fetched at once.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// The stylesheet's versioned file name.
pub const CSS_NAME: &str = concat!("console-", env!("CARGO_PKG_VERSION"), ".css");
/// The script's versioned file name.
pub const JS_NAME: &str = concat!("console-", env!("CARGO_PKG_VERSION"), ".js");

/// `GET /console/static/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        CSS_NAME => (CSS, "text/css; charset=utf-8"),
        JS_NAME => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Safe to cache for good only because the name changes with every release: during
    // development (same version) a day is the most a stale file can live.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}
