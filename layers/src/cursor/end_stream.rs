//! The end-of-stream frame: `{}` (or `{"metadata":…}`) on success, else
//! `{"error":{"code","message","details":[{"type","value","debug"}]}}`. Cursor answers HTTP 200
//! even for auth and quota failures; the error lives here. `details[].value` is a base64
//! `ErrorDetails` protobuf and wins over the `debug` JSON mirror (which is absent at times).
//! [`CursorError::class`] sorts an error into what the gateway does about it.

use base64::Engine as _;
use prost::Message as _;
use serde::Deserialize;

use super::proto::{error_details::Error as ErrorCode, ErrorDetails};

/// A parsed end-of-stream frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndStream {
    /// The error, when the call failed.
    pub error: Option<CursorError>,
}

/// An error from Cursor, as told by an end-of-stream frame (or a unary error body).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CursorError {
    /// Connect code, e.g. `unauthenticated`, `resource_exhausted`.
    pub connect_code: String,
    /// Cursor's error enum value (0 when none was sent).
    pub error: i32,
    /// Its name, e.g. `ERROR_NOT_LOGGED_IN` (from the protobuf, or the debug JSON).
    pub error_name: String,
    /// Title, e.g. "Update Required".
    pub title: String,
    /// Detail text.
    pub detail: String,
    /// The top-level message ("Error" most of the time).
    pub message: String,
}

/// What the gateway does about a [`CursorError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The session token is invalid or expired: refresh, then rest or disable the account.
    AuthFailed,
    /// The account is blocked (unauthorized, too many computers, suspicious activity).
    Blocked,
    /// The plan's usage is used up: rest the account until it resets.
    UsageExhausted,
    /// A rate limit: rest the account for a while.
    RateLimited,
    /// The configured client version is too old: an operator alert, not the account's fault.
    OutdatedClient,
    /// Cursor does not know the model.
    BadModel,
    /// The request was refused as malformed.
    BadRequest,
    /// The conversation is longer than the model takes.
    ContextTooLong,
    /// The server ended the turn after a tool call without waiting for its result: a normal end.
    AbortedAfterTool,
    /// Anything else.
    Other,
}

#[derive(Deserialize)]
struct Wire {
    error: Option<WireError>,
}

#[derive(Deserialize, Default)]
struct WireError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<WireDetail>,
}

#[derive(Deserialize, Default)]
struct WireDetail {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    debug: Option<WireDebug>,
}

#[derive(Deserialize, Default)]
struct WireDebug {
    #[serde(default)]
    error: String,
    #[serde(default)]
    details: Option<WireDebugDetails>,
}

#[derive(Deserialize, Default)]
struct WireDebugDetails {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// Parses an end-of-stream payload. Malformed JSON is an error (a stream that cannot say how it
/// ended did not end well).
pub fn parse_end_stream(json: &[u8]) -> Result<EndStream, String> {
    let wire: Wire = serde_json::from_slice(json)
        .map_err(|e| format!("the end-of-stream frame is not valid JSON: {e}"))?;
    Ok(EndStream {
        error: wire.error.map(parse_error),
    })
}

/// Parses the body of a failed unary call (`{"code","message","details"}`).
pub fn parse_unary_error(json: &[u8]) -> Option<CursorError> {
    serde_json::from_slice::<WireError>(json)
        .ok()
        .map(parse_error)
}

fn parse_error(wire: WireError) -> CursorError {
    let mut error = CursorError {
        connect_code: wire.code,
        message: wire.message,
        ..CursorError::default()
    };
    let detail = wire
        .details
        .into_iter()
        .find(|d| d.kind.is_empty() || d.kind.ends_with("ErrorDetails"));
    let Some(detail) = detail else {
        return error;
    };
    if let Some(details) = decode_value(&detail.value) {
        error.error = details.error;
        error.error_name = ErrorCode::try_from(details.error)
            .map(|code| code.as_str_name().to_owned())
            .unwrap_or_default();
        if let Some(custom) = details.details {
            error.title = custom.title;
            error.detail = custom.detail;
        }
    }
    if let Some(debug) = detail.debug {
        if error.error_name.is_empty() {
            error.error_name = debug.error;
            error.error = ErrorCode::from_str_name(&error.error_name)
                .map(|code| code as i32)
                .unwrap_or(0);
        }
        if let Some(details) = debug.details {
            if error.title.is_empty() {
                error.title = details.title;
            }
            if error.detail.is_empty() {
                error.detail = details.detail;
            }
        }
    }
    error
}

/// `value` is standard base64, with or without padding (both are seen).
fn decode_value(value: &str) -> Option<ErrorDetails> {
    if value.is_empty() {
        return None;
    }
    let trimmed = value.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()?;
    ErrorDetails::decode(bytes.as_slice()).ok()
}

impl CursorError {
    /// What to do about it (cursor-protocol.md §1.7 and §5.7).
    pub fn class(&self) -> ErrorClass {
        use ErrorCode as E;
        let text = format!("{} {}", self.title, self.detail).to_ascii_lowercase();
        match ErrorCode::try_from(self.error).unwrap_or(E::Unspecified) {
            E::NotLoggedIn | E::AuthTokenNotFound | E::AuthTokenExpired | E::BadApiKey => {
                ErrorClass::AuthFailed
            }
            E::Unauthorized => ErrorClass::Blocked,
            E::OutdatedClient | E::Deprecated => ErrorClass::OutdatedClient,
            // Repurposed by Cursor for "Update Required" (seen 2026); a real vision rate limit
            // would not carry that title.
            E::Gpt4VisionPreviewRateLimit if text.contains("update") => ErrorClass::OutdatedClient,
            E::FreeUserUsageLimit
            | E::ProUserUsageLimit
            | E::ResourceExhausted
            | E::UsagePricingRequired
            | E::UsagePricingRequiredChangeable
            | E::OpenaiAccountLimitExceeded => ErrorClass::UsageExhausted,
            E::FreeUserRateLimitExceeded
            | E::ProUserRateLimitExceeded
            | E::OpenaiRateLimitExceeded
            | E::GenericRateLimitExceeded
            | E::ApiKeyRateLimit
            | E::RateLimited
            | E::RateLimitedChangeable
            | E::Gpt4VisionPreviewRateLimit => ErrorClass::RateLimited,
            E::BadModelName => ErrorClass::BadModel,
            E::BadRequest => ErrorClass::BadRequest,
            E::ConversationTooLong | E::MaxTokens => ErrorClass::ContextTooLong,
            E::UserAbortedRequest => ErrorClass::AbortedAfterTool,
            E::CustomMessage
                if text.contains("too many computers") || text.contains("suspicious") =>
            {
                ErrorClass::Blocked
            }
            _ => match self.connect_code.as_str() {
                "unauthenticated" => ErrorClass::AuthFailed,
                "resource_exhausted" => ErrorClass::RateLimited,
                "invalid_argument" => ErrorClass::BadRequest,
                _ if text.contains("update required") => ErrorClass::OutdatedClient,
                _ => ErrorClass::Other,
            },
        }
    }

    /// A short description for logs and client messages (never holds a secret).
    pub fn describe(&self) -> String {
        let name = if self.error_name.is_empty() {
            self.connect_code.as_str()
        } else {
            self.error_name.as_str()
        };
        match (self.title.is_empty(), self.detail.is_empty()) {
            (true, true) => format!("{name}: {}", self.message),
            (false, true) => format!("{name}: {}", self.title),
            (true, false) => format!("{name}: {}", self.detail),
            (false, false) => format!("{name}: {} ({})", self.title, self.detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real `ErrorDetails` of an ERROR_UNAUTHORIZED answer (cursor-protocol.md §1.6),
    /// re-encoded here from its decoded bytes.
    const UNAUTHORIZED: &[u8] = b"\x08\x26\x12\x2f\x0a\x15Unauthorized request.\x12\x14User is unauthorized\x20\x00\x18\x01";

    fn frame(value: &str, debug: &str) -> Vec<u8> {
        format!(
            r#"{{"error":{{"code":"unauthenticated","message":"Error","details":[{{"type":"aiserver.v1.ErrorDetails","value":"{value}"{debug}}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn success_is_an_empty_object_or_metadata() {
        assert_eq!(parse_end_stream(b"{}").unwrap(), EndStream::default());
        assert_eq!(
            parse_end_stream(br#"{"metadata":{"x":["y"]}}"#).unwrap(),
            EndStream::default()
        );
        assert!(parse_end_stream(b"{").is_err());
    }

    #[test]
    fn the_protobuf_value_is_read_with_or_without_padding() {
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            let value = engine.encode(UNAUTHORIZED);
            let end = parse_end_stream(&frame(&value, "")).unwrap();
            let error = end.error.unwrap();
            assert_eq!(error.error, 38);
            assert_eq!(error.error_name, "ERROR_UNAUTHORIZED");
            assert_eq!(error.title, "Unauthorized request.");
            assert_eq!(error.detail, "User is unauthorized");
            assert_eq!(error.class(), ErrorClass::Blocked);
        }
    }

    #[test]
    fn the_debug_mirror_is_the_fallback_as_in_the_real_outdated_client_answer() {
        // The `debug` object of the real 2.0.77 answer (tests/data/cursor).
        let debug =
            include_str!("../../test_data/cursor/nixos-cursor.error-outdated-client-2.0.77.json");
        let json = frame("", &format!(",\"debug\":{debug}"));
        let error = parse_end_stream(&json).unwrap().error.unwrap();
        assert_eq!(error.error, 30);
        assert_eq!(error.title, "Outdated Client Error");
        assert_eq!(error.class(), ErrorClass::OutdatedClient);
        assert!(error.describe().contains("no longer supports"));
    }

    #[test]
    fn update_required_is_an_operator_problem_and_limits_rest_the_account() {
        let error = |code: i32, title: &str, connect: &str| CursorError {
            connect_code: connect.into(),
            error: code,
            title: title.into(),
            ..CursorError::default()
        };
        assert_eq!(
            error(28, "Update Required", "resource_exhausted").class(),
            ErrorClass::OutdatedClient
        );
        assert_eq!(
            error(28, "", "resource_exhausted").class(),
            ErrorClass::RateLimited
        );
        assert_eq!(
            error(10, "", "resource_exhausted").class(),
            ErrorClass::UsageExhausted
        );
        assert_eq!(
            error(50, "", "resource_exhausted").class(),
            ErrorClass::RateLimited
        );
        assert_eq!(
            error(2, "", "unauthenticated").class(),
            ErrorClass::AuthFailed
        );
        assert_eq!(
            error(12, "", "unauthenticated").class(),
            ErrorClass::AuthFailed
        );
        assert_eq!(error(5, "", "not_found").class(), ErrorClass::BadModel);
        assert_eq!(
            error(29, "Too many computers used within the last 24 hours", "").class(),
            ErrorClass::Blocked
        );
        assert_eq!(
            error(21, "", "aborted").class(),
            ErrorClass::AbortedAfterTool
        );
        assert_eq!(
            error(0, "", "resource_exhausted").class(),
            ErrorClass::RateLimited
        );
        assert_eq!(error(0, "", "internal").class(), ErrorClass::Other);
    }
}
