//! The one table that turns Kiro's errors into [`GatewayError`]s.
//!
//! Two entry points: [`from_status`] for a non-200 HTTP answer and [`from_exception_frame`] for an
//! `exception`/`error` frame inside a 200 stream. Both keep Kiro's own words in the message and
//! record a machine-readable cause with [`GatewayError::with_upstream_reason`] so the token pool,
//! the recover layer, logs and metrics can act on it without parsing text. That cause is Kiro's
//! `reason` when it sent one, else the exception type (`__type`, `x-amzn-ErrorType`), else
//! `HTTP_<status>`.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::GatewayError;

/// Longest piece of an upstream body quoted in a message.
const MAX_QUOTED_BODY: usize = 500;

/// What Kiro said, pulled out of a JSON `{message, reason, __type}` body or plain text.
#[derive(Debug, Default)]
struct KiroFault {
    message: String,
    reason: Option<String>,
    error_type: Option<String>,
}

impl KiroFault {
    fn parse(body: &[u8]) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return KiroFault {
                message: quote_text(body),
                ..KiroFault::default()
            };
        };
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "null")
                .map(str::to_owned)
        };
        KiroFault {
            message: text("message")
                .or_else(|| text("Message"))
                .unwrap_or_else(|| quote_text(body)),
            reason: text("reason"),
            error_type: text("__type").map(|t| short_type(&t).to_owned()),
        }
    }

    fn has_reason(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }

    /// Kiro's message with the reason appended, the way it is quoted to clients.
    fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{} (reason: {reason})", self.message),
            None => self.message.clone(),
        }
    }

    fn cause(&self, status: Option<StatusCode>) -> String {
        self.reason
            .clone()
            .or_else(|| self.error_type.clone())
            .unwrap_or_else(|| match status {
                Some(status) => format!("HTTP_{}", status.as_u16()),
                None => "UNKNOWN".to_owned(),
            })
    }
}

/// `com.amazon.kiro.runtimeservice#ValidationException` and
/// `ThrottlingException:http://internal...` both name `ValidationException`/`ThrottlingException`.
fn short_type(error_type: &str) -> &str {
    let after_hash = error_type.rsplit('#').next().unwrap_or(error_type);
    after_hash.split(':').next().unwrap_or(after_hash).trim()
}

fn quote_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn is_context_overflow(fault: &KiroFault) -> bool {
    fault.has_reason("CONTENT_LENGTH_EXCEEDS_THRESHOLD")
        || fault.has_reason("PROMPT_TOO_LONG")
        || fault.message.contains("Input is too long")
}

fn is_quota(fault: &KiroFault) -> bool {
    fault.has_reason("MONTHLY_REQUEST_COUNT") || fault.has_reason("MONTHLY_TOKEN_COUNT")
}

fn context_overflow(fault: &KiroFault) -> GatewayError {
    GatewayError::context_length_exceeded(format!(
        "The prompt is too long for the model's context window (Kiro: {}). Shorten or compact \
         the conversation, or pick a model with a larger context window.",
        fault.describe()
    ))
}

fn quota(fault: &KiroFault) -> GatewayError {
    GatewayError::rate_limited(format!(
        "The Kiro account has reached its monthly limit (Kiro: {}). Try again next month or add \
         another account.",
        fault.describe()
    ))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(u64::try_from(wait).unwrap_or(0)))
}

/// What a Kiro `reason` (or AWS exception type) means for the client; see [`REASON_TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonClass {
    /// The prompt does not fit the model: 400 `context_length_exceeded`.
    ContextLength,
    /// Something in the request is not acceptable: 400 `invalid_request_error`.
    InvalidRequest,
    /// The model is unknown or not in the subscription: 404 `model_not_found`.
    ModelNotFound,
    /// The account's monthly quota is used up: 429 (another account is tried first).
    Quota,
    /// The account is throttled: 429 (another account is tried first).
    Throttled,
    /// The gateway's account is refused (token, grant): 502 (another account is tried first).
    Account,
    /// Kiro lacks capacity: 503 overloaded.
    Overloaded,
    /// Kiro failed: 502.
    UpstreamFailure,
}

/// The one table of Kiro's error reasons (kiro-protocol.md §7.1) and AWS exception types.
/// [`from_status`] and [`from_exception_frame`] consult it first; the statuses and error types
/// each class gets in both dialects are listed on [`ReasonClass`].
pub const REASON_TABLE: &[(&str, ReasonClass)] = &[
    (
        "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
        ReasonClass::ContextLength,
    ),
    ("PROMPT_TOO_LONG", ReasonClass::ContextLength),
    ("DISALLOWED_FILE_TYPE", ReasonClass::InvalidRequest),
    ("DOCUMENT_COUNT_EXCEEDED", ReasonClass::InvalidRequest),
    ("DOCUMENT_DUPLICATE_NAME", ReasonClass::InvalidRequest),
    (
        "DOCUMENT_MAXIMUM_PAGES_EXCEEDED",
        ReasonClass::InvalidRequest,
    ),
    ("DOCUMENT_MODEL_NOT_SUPPORTED", ReasonClass::InvalidRequest),
    ("DOCUMENT_PASSWORD_PROTECTED", ReasonClass::InvalidRequest),
    ("DOCUMENT_SIZE_EXCEEDED", ReasonClass::InvalidRequest),
    ("IMAGE_COUNT_EXCEEDED", ReasonClass::InvalidRequest),
    ("IMAGE_DIMENSION_EXCEEDED", ReasonClass::InvalidRequest),
    ("IMAGE_FORMAT_UNSUPPORTED", ReasonClass::InvalidRequest),
    ("IMAGE_MIME_MISMATCH", ReasonClass::InvalidRequest),
    ("IMAGE_SIZE_EXCEEDED", ReasonClass::InvalidRequest),
    ("INVALID_CONVERSATION_ID", ReasonClass::InvalidRequest),
    ("INVALID_DOCUMENT_NAME", ReasonClass::InvalidRequest),
    ("INVALID_KMS_GRANT", ReasonClass::Account),
    ("INVALID_MODEL_ID", ReasonClass::ModelNotFound),
    ("REQUEST_BODY_INVALID", ReasonClass::InvalidRequest),
    ("REQUEST_BODY_INVALID_JSON", ReasonClass::InvalidRequest),
    ("THINKING_SIGNATURE_INVALID", ReasonClass::InvalidRequest),
    ("TOOL_CONFIG_MISSING", ReasonClass::InvalidRequest),
    ("TOOL_DUPLICATE", ReasonClass::InvalidRequest),
    ("TOOL_SCHEMA_INVALID", ReasonClass::InvalidRequest),
    ("TOOL_USE_RESULT_MISMATCH", ReasonClass::InvalidRequest),
    ("MONTHLY_REQUEST_COUNT", ReasonClass::Quota),
    ("MONTHLY_TOKEN_COUNT", ReasonClass::Quota),
    ("RATE_LIMIT_EXCEEDED", ReasonClass::Throttled),
    ("INVALID_BEARER_TOKEN", ReasonClass::Account),
    ("INSUFFICIENT_MODEL_CAPACITY", ReasonClass::Overloaded),
    ("ThrottlingException", ReasonClass::Throttled),
    ("ServiceQuotaExceededException", ReasonClass::Quota),
    ("AccessDeniedException", ReasonClass::Account),
    ("UnauthorizedException", ReasonClass::Account),
    ("ResourceNotFoundException", ReasonClass::ModelNotFound),
    ("ContentLengthExceededException", ReasonClass::ContextLength),
    ("InternalServerException", ReasonClass::UpstreamFailure),
    ("ServiceUnavailableException", ReasonClass::Overloaded),
];

/// The class of a reason or exception type, if the table knows it.
pub fn reason_class(reason: &str) -> Option<ReasonClass> {
    REASON_TABLE
        .iter()
        .find(|(name, _)| *name == reason)
        .map(|(_, class)| *class)
}

fn from_class(class: ReasonClass, fault: &KiroFault, headers: &HeaderMap) -> GatewayError {
    match class {
        ReasonClass::ContextLength => context_overflow(fault),
        ReasonClass::Quota => quota(fault),
        ReasonClass::ModelNotFound => model_not_found(fault),
        ReasonClass::InvalidRequest => GatewayError::invalid_request(format!(
            "Kiro rejected the request (Kiro: {}).",
            fault.describe()
        )),
        ReasonClass::Throttled => with_retry_after(
            GatewayError::rate_limited(format!(
                "Kiro is rate limiting this account (Kiro: {}). Retry later.",
                fault.describe()
            )),
            headers,
        ),
        ReasonClass::Account => GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "Kiro refused the gateway's account (Kiro: {}).",
                fault.describe()
            ),
        ),
        ReasonClass::Overloaded => with_retry_after(
            GatewayError::overloaded(format!(
                "Kiro is overloaded (Kiro: {}). Retry later.",
                fault.describe()
            )),
            headers,
        ),
        ReasonClass::UpstreamFailure => GatewayError::upstream_stream(format!(
            "Kiro failed internally (Kiro: {}).",
            fault.describe()
        )),
    }
}

fn model_not_found(fault: &KiroFault) -> GatewayError {
    // 404 `model_not_found` rather than 400: OpenAI answers an unusable model that way and
    // clients (and our recover layer, via is_client_error) know not to retry it.
    GatewayError::not_found(format!(
        "Kiro does not accept this model, or the account's subscription does not include it \
         (Kiro: {}). GET /v1/models lists the models you can use.",
        fault.describe()
    ))
    .with_code("model_not_found")
    .with_param("model")
}

/// Worth another attempt before any output: upstream failures, and Kiro throttling or quota
/// (the pool hands the next attempt to another account). The pool's own refusals (every
/// account resting, none configured) carry no upstream reason and are final.
pub fn is_retryable(error: &GatewayError) -> bool {
    error.is_upstream_failure() || (error.is_rate_limited() && error.upstream_reason().is_some())
}

/// Kiro throttled the attempt (a 429 or a throttling reason, not a used-up quota): the account
/// rests briefly and the request is retried within the throttle budget.
pub fn is_throttle(error: &GatewayError) -> bool {
    if !error.is_rate_limited() {
        return false;
    }
    match error.upstream_reason() {
        Some("HTTP_429") => true,
        Some(reason) => matches!(reason_class(reason), Some(ReasonClass::Throttled) | None),
        None => false,
    }
}

/// The error is about the gateway's Kiro account (refused credential, quota), not about the
/// client's request: the client hears of it only when no account can serve.
pub fn is_account_problem(error: &GatewayError) -> bool {
    match error.upstream_reason() {
        Some("HTTP_401" | "HTTP_402" | "HTTP_403") => true,
        Some(reason) => matches!(
            reason_class(reason),
            Some(ReasonClass::Account | ReasonClass::Quota)
        ),
        None => false,
    }
}

/// Maps a non-200 answer of `generateAssistantResponse` to the error the client sees.
///
/// | Kiro says | client gets |
/// |---|---|
/// | `CONTENT_LENGTH_EXCEEDS_THRESHOLD`, `PROMPT_TOO_LONG`, "Input is too long" | 400 `context_length_exceeded` |
/// | `MONTHLY_REQUEST_COUNT` / `MONTHLY_TOKEN_COUNT` (402, or any status) | 429 quota |
/// | 400 `INVALID_MODEL_ID` | 404 `model_not_found` |
/// | 400 "Improperly formed request." without reason | 400 `invalid_request_error`, with the usual causes |
/// | 400 "profileArn is required" | 502 (the gateway's account setup, not the client) |
/// | other 400/422 | 400 with Kiro's message and reason |
/// | 401/403 | 502 (the account's credential, not the client's key; the pool refreshes) |
/// | 429 | 429 with `Retry-After` |
/// | 503, or "high load"/`INSUFFICIENT_MODEL_CAPACITY` | 503 overloaded |
/// | other 5xx | 502 |
pub fn from_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    let mut fault = KiroFault::parse(body);
    if fault.error_type.is_none() {
        fault.error_type = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|t| short_type(t).to_owned())
            .filter(|t| !t.is_empty());
    }
    let cause = fault.cause(Some(status));
    let code = status.as_u16();
    let class = fault
        .reason
        .as_deref()
        .and_then(reason_class)
        .or_else(|| fault.error_type.as_deref().and_then(reason_class))
        // A bare 400 ValidationException or 403 AccessDenied is judged by status below.
        .filter(|_| fault.reason.is_some() || !matches!(code, 400 | 401 | 403));
    let error = if let Some(class) = class {
        from_class(class, &fault, headers)
    } else if is_context_overflow(&fault) {
        context_overflow(&fault)
    } else if is_quota(&fault) || code == 402 {
        quota(&fault)
    } else if code == 400 && fault.reason.is_none() && fault.message.contains("Improperly formed") {
        GatewayError::invalid_request(format!(
            "Kiro rejected the request as improperly formed and gave no reason (Kiro: {}). Usual \
             causes: a tool result without its tool call, empty message content, a tool name over \
             64 characters or an invalid tool schema, or a missing profileArn.",
            fault.message
        ))
    } else if fault.message.contains("profileArn is required") {
        // The gateway's account setup is at fault, not the client's request: a 502 the pool and
        // the operator can act on.
        GatewayError::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "Kiro requires a profileArn for this account and none was sent (Kiro: {}). \
                 Configure the account's profile ARN.",
                fault.describe()
            ),
        )
    } else if code == 429 {
        let error = GatewayError::rate_limited(format!(
            "Kiro is rate limiting this account (Kiro: {}). Retry later.",
            fault.describe()
        ));
        with_retry_after(error, headers)
    } else if code == 401 || code == 403 {
        GatewayError::upstream(
            status,
            format!(
                "Kiro refused the gateway's account credential with HTTP {code} (Kiro: {}).",
                fault.describe()
            ),
        )
    } else if code == 503
        || fault.has_reason("INSUFFICIENT_MODEL_CAPACITY")
        || fault.error_type.as_deref() == Some("ServiceUnavailableException")
        || fault.message.contains("high load")
    {
        let error = GatewayError::overloaded(format!(
            "Kiro is overloaded (HTTP {code}; Kiro: {}). Retry later.",
            fault.describe()
        ));
        with_retry_after(error, headers)
    } else {
        GatewayError::upstream(
            status,
            format!("Kiro answered HTTP {code}: {}", fault.describe()),
        )
    };
    error.with_upstream_reason(cause)
}

fn with_retry_after(error: GatewayError, headers: &HeaderMap) -> GatewayError {
    match retry_after(headers) {
        Some(after) => error.with_retry_after(after),
        None => error,
    }
}

/// Maps an in-stream `exception`/`error` frame (its `:exception-type` or `:error-code`, and its
/// payload) to the error that ends the answer.
pub fn from_exception_frame(exception_type: &str, payload: &[u8]) -> GatewayError {
    let fault = KiroFault::parse(payload);
    let exception_type = short_type(exception_type);
    let cause = fault.reason.clone().unwrap_or_else(|| {
        if exception_type.is_empty() {
            "UNKNOWN".to_owned()
        } else {
            exception_type.to_owned()
        }
    });
    if let Some(class) = fault.reason.as_deref().and_then(reason_class) {
        return from_class(class, &fault, &HeaderMap::new()).with_upstream_reason(cause);
    }
    let error = match exception_type {
        "ContentLengthExceededException" => context_overflow(&fault),
        "ValidationException" if is_context_overflow(&fault) => context_overflow(&fault),
        _ if is_quota(&fault) => quota(&fault),
        "ThrottlingException" => GatewayError::rate_limited(format!(
            "Kiro throttled the answer mid-stream (Kiro: {}). Retry later.",
            fault.describe()
        )),
        "ServiceUnavailableException" => GatewayError::overloaded(format!(
            "Kiro became unavailable mid-stream (Kiro: {}). Retry later.",
            fault.describe()
        )),
        "InternalServerException" => GatewayError::upstream_stream(format!(
            "Kiro failed internally mid-stream (Kiro: {}).",
            fault.describe()
        )),
        other => GatewayError::upstream_stream(format!(
            "Kiro sent `{other}` mid-stream: {}",
            fault.describe()
        )),
    };
    error.with_upstream_reason(cause)
}

#[cfg(test)]
#[path = "errors_table_tests.rs"]
mod table_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Dialect;

    fn status(code: u16, body: &str) -> GatewayError {
        from_status(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn throttles_are_told_apart_from_quota_and_failures() {
        assert!(is_throttle(&status(429, "{}")));
        assert!(is_throttle(&status(
            400,
            r#"{"message":"slow down","reason":"RATE_LIMIT_EXCEEDED"}"#
        )));
        assert!(!is_throttle(&status(
            402,
            r#"{"message":"limit","reason":"MONTHLY_REQUEST_COUNT"}"#
        )));
        assert!(!is_throttle(&status(503, "{}")));
        assert!(!is_throttle(&GatewayError::rate_limited(
            "the gateway's own"
        )));
    }

    #[test]
    fn input_too_long_is_context_length_exceeded() {
        let err = status(
            400,
            r#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
        );
        assert!(err.is_context_length_exceeded());
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err
            .message()
            .contains("too long for the model's context window"));
        assert_eq!(
            err.upstream_reason(),
            Some("CONTENT_LENGTH_EXCEEDS_THRESHOLD")
        );
        assert_eq!(
            err.body(Dialect::OpenAi)["error"]["code"],
            "context_length_exceeded"
        );
    }

    #[test]
    fn input_too_long_without_reason_is_still_recognised() {
        let err = status(400, r#"{"message":"Input is too long.","reason":null}"#);
        assert!(err.is_context_length_exceeded());
    }

    #[test]
    fn invalid_model_is_model_not_found() {
        let err = status(
            400,
            r#"{"message":"Invalid model. Please select a different model to continue.","reason":"INVALID_MODEL_ID"}"#,
        );
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert!(err.is_client_error());
        assert_eq!(
            err.body(Dialect::OpenAi)["error"]["code"],
            "model_not_found"
        );
        assert!(err.message().contains("Invalid model"));
        assert_eq!(err.upstream_reason(), Some("INVALID_MODEL_ID"));
    }

    #[test]
    fn improperly_formed_request_explains_the_usual_causes() {
        let err = status(
            400,
            r#"{"message":"Improperly formed request.","reason":null}"#,
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.is_client_error());
        assert!(err.message().contains("tool result"));
        assert_eq!(err.upstream_reason(), Some("HTTP_400"));
    }

    #[test]
    fn missing_profile_arn_is_not_blamed_on_the_client() {
        let err = status(
            400,
            r#"{"message":"profileArn is required for this request.","reason":null}"#,
        );
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(!err.is_client_error());
        assert!(err.message().contains("profile ARN"));
    }

    #[test]
    fn real_validation_400_keeps_message_and_reason() {
        let err = status(
            400,
            r#"{"__type":"com.amazon.kiro.runtimeservice#ValidationException","message":"Bedrock error message: This model doesn't support the image content block that you provided.","reason":"IMAGE_FORMAT_UNSUPPORTED"}"#,
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("image content block"));
        assert!(err.message().contains("IMAGE_FORMAT_UNSUPPORTED"));
        assert_eq!(err.upstream_reason(), Some("IMAGE_FORMAT_UNSUPPORTED"));
    }

    #[test]
    fn validation_400_without_reason_records_the_type() {
        let err = status(
            400,
            r#"{"__type":"com.amazon.kiro.runtimeservice#ValidationException","message":"bad"}"#,
        );
        assert_eq!(err.upstream_reason(), Some("ValidationException"));
    }

    #[test]
    fn monthly_quota_402_is_a_quota_error() {
        let err = status(
            402,
            r#"{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}"#,
        );
        assert!(err.is_rate_limited());
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(err.message().contains("monthly limit"));
        assert_eq!(err.upstream_reason(), Some("MONTHLY_REQUEST_COUNT"));
    }

    #[test]
    fn quota_reason_under_another_status_is_a_quota_error() {
        let err = status(
            400,
            r#"{"__type":"ThrottlingException","message":"Maximum Request reached for this month.","reason":"MONTHLY_REQUEST_COUNT"}"#,
        );
        assert!(err.is_rate_limited());
        assert_eq!(err.upstream_reason(), Some("MONTHLY_REQUEST_COUNT"));
    }

    #[test]
    fn bare_402_keeps_the_status_as_reason() {
        let err = status(402, "");
        assert!(err.is_rate_limited());
        assert_eq!(err.upstream_reason(), Some("HTTP_402"));
    }

    #[test]
    fn forbidden_is_an_upstream_failure_not_a_client_auth_error() {
        let err = status(
            403,
            r#"{"message":"The bearer token included in the request is invalid.","reason":null}"#,
        );
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.is_upstream_failure());
        assert!(!err.is_unauthenticated());
        assert!(err.message().contains("bearer token"));
        assert_eq!(err.upstream_reason(), Some("HTTP_403"));
    }

    #[test]
    fn rate_limit_429_carries_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "12".parse().unwrap());
        let err = from_status(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            br#"{"message":"Too many requests, please wait before trying again.","reason":null}"#,
        );
        assert!(err.is_rate_limited());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
        assert!(err.message().contains("Too many requests"));
    }

    #[test]
    fn retry_after_may_be_an_http_date() {
        let mut headers = HeaderMap::new();
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        headers.insert(http::header::RETRY_AFTER, date.parse().unwrap());
        let err = from_status(StatusCode::TOO_MANY_REQUESTS, &headers, b"");
        let after = err.retry_after().unwrap().as_secs();
        assert!((100..=120).contains(&after), "{after}");
    }

    #[test]
    fn service_unavailable_is_overloaded() {
        let err = status(503, "Service Unavailable");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.is_upstream_failure());
        assert!(err.message().contains("Service Unavailable"));
    }

    #[test]
    fn high_load_500_is_overloaded() {
        let err = status(
            500,
            r#"{"message":"Encountered unexpectedly high load when processing the request, please try again."}"#,
        );
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn other_5xx_is_bad_gateway() {
        let err = status(500, r#"{"message":"boom"}"#);
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.is_upstream_failure());
        assert_eq!(err.upstream_reason(), Some("HTTP_500"));
    }

    #[test]
    fn non_json_body_is_quoted_as_text() {
        let err = status(502, "<html>bad gateway</html>");
        assert!(err.message().contains("<html>bad gateway</html>"));
        let long = "x".repeat(2000);
        let err = status(500, &long);
        assert!(err.message().len() < 700);
    }

    #[test]
    fn error_type_header_is_used_when_the_body_has_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            "ServiceUnavailableException:http://internal.amazon.com/"
                .parse()
                .unwrap(),
        );
        let err = from_status(StatusCode::INTERNAL_SERVER_ERROR, &headers, b"{}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.upstream_reason(), Some("ServiceUnavailableException"));
    }

    #[test]
    fn throttling_frame_is_rate_limited() {
        let err =
            from_exception_frame("ThrottlingException", br#"{"message":"Too many requests"}"#);
        assert!(err.is_rate_limited());
        assert_eq!(err.upstream_reason(), Some("ThrottlingException"));
    }

    #[test]
    fn content_length_frames_are_context_length_exceeded() {
        let validation = from_exception_frame(
            "ValidationException",
            br#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
        );
        assert!(validation.is_context_length_exceeded());
        let exceeded = from_exception_frame("ContentLengthExceededException", b"{}");
        assert!(exceeded.is_context_length_exceeded());
        assert_eq!(
            exceeded.upstream_reason(),
            Some("ContentLengthExceededException")
        );
    }

    #[test]
    fn validation_frame_with_a_known_reason_follows_the_table() {
        let err = from_exception_frame(
            "ValidationException",
            br#"{"message":"bad","reason":"TOOL_USE_RESULT_MISMATCH"}"#,
        );
        assert!(err.is_client_error());
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("bad"));
        assert_eq!(err.upstream_reason(), Some("TOOL_USE_RESULT_MISMATCH"));
    }

    #[test]
    fn unavailable_and_internal_frames() {
        let unavailable = from_exception_frame(
            "com.amazon.kiro#ServiceUnavailableException",
            br#"{"message":"try later"}"#,
        );
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let internal = from_exception_frame("InternalServerException", b"oops");
        assert_eq!(internal.status(), StatusCode::BAD_GATEWAY);
        assert!(internal.message().contains("oops"));
        assert!(internal.is_upstream_failure());
    }

    #[test]
    fn unknown_frame_names_its_type() {
        let err = from_exception_frame("WeirdException", b"");
        assert!(err.message().contains("WeirdException"));
        assert!(err.is_upstream_failure());
    }
}
