//! One error type for the whole pipeline, and the one place that turns it into an HTTP status
//! and a body in the client's dialect.
//!
//! The kind is private: callers build errors through constructors and ask about them through
//! predicates, so the mapping below can change without touching any layer.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::chat::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The client's request is malformed or breaks an API rule.
    InvalidRequest,
    /// Missing or wrong API key.
    Unauthenticated,
    /// A valid key that may not do this.
    PermissionDenied,
    /// Unknown model or route.
    NotFound,
    /// The change clashes with the current state (duplicate name, insufficient balance).
    Conflict,
    /// Body over the size limit.
    PayloadTooLarge,
    /// The conversation does not fit the model's context window.
    ContextLengthExceeded,
    /// Too many requests (client limit, or every account throttled).
    RateLimited,
    /// No Kiro account is configured or usable.
    NoAccount,
    /// The upstream answered with an error status we pass on.
    Upstream,
    /// The upstream stream broke (bad frames, reset, in-band exception).
    UpstreamStream,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream is overloaded.
    Overloaded,
    /// A bug or an unexpected local failure.
    Internal,
}

/// The gateway's error. Cheap to move (one pointer: errors travel inside every answer stream's
/// `Result`, so their size is paid on every event); never carries a secret.
#[derive(Debug, Clone)]
pub struct GatewayError(Box<Details>);

#[derive(Debug, Clone)]
struct Details {
    kind: Kind,
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
    retry_after: Option<Duration>,
    upstream_reason: Option<String>,
}

impl GatewayError {
    fn new(kind: Kind, status: StatusCode, message: impl Into<String>) -> Self {
        GatewayError(Box::new(Details {
            kind,
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            upstream_reason: None,
        }))
    }

    /// 400: the request is malformed; `message` says what and how to fix it.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidRequest, StatusCode::BAD_REQUEST, message)
    }

    /// 401: missing or wrong API key.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Kind::Unauthenticated, StatusCode::UNAUTHORIZED, message)
            .with_code("invalid_api_key")
    }

    /// 403: the key may not do this.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Kind::PermissionDenied, StatusCode::FORBIDDEN, message)
    }

    /// 404: unknown model or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, StatusCode::NOT_FOUND, message)
    }

    /// 404 for a model name that resolves to nothing.
    pub fn model_not_found(model: &str) -> Self {
        Self::not_found(format!(
            "The model `{model}` does not exist or is not available; GET /v1/models lists the models you can use."
        ))
        .with_code("model_not_found")
        .with_param("model")
    }

    /// 409: the change clashes with the current state; `message` says how.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, StatusCode::CONFLICT, message)
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            Kind::PayloadTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {limit} bytes."),
        )
    }

    /// 400 `context_length_exceeded`: the prompt is too long for the model.
    pub fn context_length_exceeded(message: impl Into<String>) -> Self {
        Self::new(
            Kind::ContextLengthExceeded,
            StatusCode::BAD_REQUEST,
            message,
        )
        .with_code("context_length_exceeded")
        .with_param("messages")
    }

    /// 429: too many requests.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(Kind::RateLimited, StatusCode::TOO_MANY_REQUESTS, message)
            .with_code("rate_limit_exceeded")
    }

    /// 503: no Kiro account can serve the request.
    pub fn no_account(message: impl Into<String>) -> Self {
        Self::new(Kind::NoAccount, StatusCode::SERVICE_UNAVAILABLE, message)
            .with_code("no_upstream_account")
    }

    /// The upstream answered `status` with this message; passed on with a fitting status.
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            429 => Kind::RateLimited,
            503 | 529 => Kind::Overloaded,
            400 | 422 => Kind::InvalidRequest,
            _ => Kind::Upstream,
        };
        // A Kiro 401/403 is about the gateway's account, not the client's key: report 502.
        let client_status = match status.as_u16() {
            401..=403 => StatusCode::BAD_GATEWAY,
            s if s >= 500 && s != 503 => StatusCode::BAD_GATEWAY,
            _ => status,
        };
        Self::new(kind, client_status, message)
    }

    /// 502: the upstream stream broke or could not be read.
    pub fn upstream_stream(message: impl Into<String>) -> Self {
        Self::new(Kind::UpstreamStream, StatusCode::BAD_GATEWAY, message)
    }

    /// 504: the upstream did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(Kind::Timeout, StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// 503: the upstream is overloaded.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(Kind::Overloaded, StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: an unexpected local failure. The message must not contain secrets.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Names the offending request field (OpenAI `param`).
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.0.param = Some(param.into());
        self
    }

    /// Sets the machine-readable OpenAI `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.0.code = Some(code);
        self
    }

    /// Tells the client when to retry (`Retry-After`).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.0.retry_after = Some(after);
        self
    }

    /// Keeps Kiro's `reason` (e.g. `INVALID_MODEL_ID`) for logs, metrics and the pool.
    pub fn with_upstream_reason(mut self, reason: impl Into<String>) -> Self {
        self.0.upstream_reason = Some(reason.into());
        self
    }

    /// HTTP status for the client.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// Human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Kiro's `reason`, when the error came from Kiro.
    pub fn upstream_reason(&self) -> Option<&str> {
        self.0.upstream_reason.as_deref()
    }

    /// Suggested retry delay.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// True for 401s about the client's own key.
    pub fn is_unauthenticated(&self) -> bool {
        self.0.kind == Kind::Unauthenticated
    }

    /// True when the request itself is at fault (4xx other than rate limiting).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self.0.kind,
            Kind::InvalidRequest
                | Kind::Unauthenticated
                | Kind::PermissionDenied
                | Kind::NotFound
                | Kind::Conflict
                | Kind::PayloadTooLarge
                | Kind::ContextLengthExceeded
        )
    }

    /// True when the request was refused for rate or quota reasons.
    pub fn is_rate_limited(&self) -> bool {
        self.0.kind == Kind::RateLimited
    }

    /// True when the prompt does not fit the model.
    pub fn is_context_length_exceeded(&self) -> bool {
        self.0.kind == Kind::ContextLengthExceeded
    }

    /// True for failures of the upstream or the link to it (worth another attempt before output).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self.0.kind,
            Kind::Upstream | Kind::UpstreamStream | Kind::Timeout | Kind::Overloaded
        )
    }

    /// OpenAI error `type`.
    fn openai_type(&self) -> &'static str {
        match self.0.kind {
            Kind::InvalidRequest | Kind::ContextLengthExceeded | Kind::PayloadTooLarge => {
                "invalid_request_error"
            }
            Kind::NotFound | Kind::Conflict => "invalid_request_error",
            Kind::Unauthenticated => "authentication_error",
            Kind::PermissionDenied => "permission_error",
            Kind::RateLimited => "rate_limit_error",
            Kind::NoAccount | Kind::Overloaded => "service_unavailable",
            Kind::Upstream | Kind::UpstreamStream | Kind::Timeout => "upstream_error",
            Kind::Internal => "server_error",
        }
    }

    /// Anthropic error `type`.
    fn anthropic_type(&self) -> &'static str {
        match self.0.kind {
            Kind::InvalidRequest | Kind::ContextLengthExceeded | Kind::Conflict => {
                "invalid_request_error"
            }
            Kind::Unauthenticated => "authentication_error",
            Kind::PermissionDenied => "permission_error",
            Kind::NotFound => "not_found_error",
            Kind::PayloadTooLarge => "request_too_large",
            Kind::RateLimited => "rate_limit_error",
            Kind::NoAccount | Kind::Overloaded => "overloaded_error",
            Kind::Upstream | Kind::UpstreamStream | Kind::Timeout | Kind::Internal => "api_error",
        }
    }

    /// The error body in the client's dialect.
    pub fn body(&self, dialect: Dialect) -> Value {
        match dialect {
            Dialect::OpenAi | Dialect::Responses => {
                // The conversation is `messages` in Chat Completions, `input` in Responses.
                let param = match (dialect, self.0.param.as_deref()) {
                    (Dialect::Responses, Some("messages")) => Some("input"),
                    (_, param) => param,
                };
                json!({
                    "error": {
                        "message": self.0.message,
                        "type": self.openai_type(),
                        "param": param,
                        "code": self.0.code,
                    }
                })
            }
            Dialect::Anthropic => json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": self.0.message }
            }),
        }
    }

    /// A complete HTTP response in the client's dialect.
    pub fn to_response(&self, dialect: Dialect) -> Response<Bytes> {
        let body = serde_json::to_vec(&self.body(dialect)).unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.0.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.0.retry_after {
            if let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.message, self.0.status)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_body_names_the_field() {
        let err =
            GatewayError::invalid_request("`messages` must be an array").with_param("messages");
        let body = err.body(Dialect::OpenAi);
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn anthropic_types_follow_the_status() {
        assert_eq!(
            GatewayError::payload_too_large(10).body(Dialect::Anthropic)["error"]["type"],
            "request_too_large"
        );
        assert_eq!(
            GatewayError::unauthenticated("no").body(Dialect::Anthropic)["error"]["type"],
            "authentication_error"
        );
        assert_eq!(
            GatewayError::model_not_found("x").body(Dialect::Anthropic)["error"]["type"],
            "not_found_error"
        );
    }

    #[test]
    fn upstream_account_errors_are_not_client_auth_errors() {
        let err = GatewayError::upstream(StatusCode::FORBIDDEN, "bearer token invalid");
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(!err.is_unauthenticated());
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let resp = GatewayError::rate_limited("slow down")
            .with_retry_after(Duration::from_secs(7))
            .to_response(Dialect::OpenAi);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "7");
    }
}
