//! One test per row of [`super::REASON_TABLE`]: the status and the error type in both dialects,
//! written out here independently of the table, for a non-200 answer carrying the reason and
//! for an in-stream exception frame carrying it.

use http::{HeaderMap, StatusCode};

use super::*;
use crate::chat::Dialect;

fn check(reason: &str, status: u16, openai: &str, anthropic: &str, retryable: bool) {
    let body = format!(r#"{{"message":"Kiro says no.","reason":"{reason}"}}"#);
    // Status 400 for reasons, and the status an exception type usually comes with otherwise.
    let upstream = if reason.ends_with("Exception") {
        500
    } else {
        400
    };
    let from_http = from_status(
        StatusCode::from_u16(upstream).unwrap(),
        &HeaderMap::new(),
        body.as_bytes(),
    );
    let from_frame = from_exception_frame("ValidationException", body.as_bytes());
    for error in [from_http, from_frame] {
        assert_eq!(error.status().as_u16(), status, "{reason}: status");
        assert_eq!(
            error.body(Dialect::OpenAi)["error"]["type"],
            openai,
            "{reason}"
        );
        assert_eq!(
            error.body(Dialect::Anthropic)["error"]["type"],
            anthropic,
            "{reason}"
        );
        assert_eq!(error.upstream_reason(), Some(reason));
        assert_eq!(is_retryable(&error), retryable, "{reason}: retryable");
        assert!(
            error.message().contains("Kiro says no."),
            "{reason}: keeps Kiro's words"
        );
    }
}

#[test]
fn every_row_has_a_test() {
    assert_eq!(REASON_TABLE.len(), ROWS_TESTED);
}

#[test]
fn row_content_length_exceeds_threshold() {
    check(
        "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_prompt_too_long() {
    check(
        "PROMPT_TOO_LONG",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_disallowed_file_type() {
    check(
        "DISALLOWED_FILE_TYPE",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_count_exceeded() {
    check(
        "DOCUMENT_COUNT_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_duplicate_name() {
    check(
        "DOCUMENT_DUPLICATE_NAME",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_maximum_pages_exceeded() {
    check(
        "DOCUMENT_MAXIMUM_PAGES_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_model_not_supported() {
    check(
        "DOCUMENT_MODEL_NOT_SUPPORTED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_password_protected() {
    check(
        "DOCUMENT_PASSWORD_PROTECTED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_document_size_exceeded() {
    check(
        "DOCUMENT_SIZE_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_image_count_exceeded() {
    check(
        "IMAGE_COUNT_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_image_dimension_exceeded() {
    check(
        "IMAGE_DIMENSION_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_image_format_unsupported() {
    check(
        "IMAGE_FORMAT_UNSUPPORTED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_image_mime_mismatch() {
    check(
        "IMAGE_MIME_MISMATCH",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_image_size_exceeded() {
    check(
        "IMAGE_SIZE_EXCEEDED",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_invalid_conversation_id() {
    check(
        "INVALID_CONVERSATION_ID",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_invalid_document_name() {
    check(
        "INVALID_DOCUMENT_NAME",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_invalid_kms_grant() {
    check(
        "INVALID_KMS_GRANT",
        502,
        "upstream_error",
        "api_error",
        true,
    );
}

#[test]
fn row_invalid_model_id() {
    check(
        "INVALID_MODEL_ID",
        404,
        "invalid_request_error",
        "not_found_error",
        false,
    );
}

#[test]
fn row_request_body_invalid() {
    check(
        "REQUEST_BODY_INVALID",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_request_body_invalid_json() {
    check(
        "REQUEST_BODY_INVALID_JSON",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_thinking_signature_invalid() {
    check(
        "THINKING_SIGNATURE_INVALID",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_tool_config_missing() {
    check(
        "TOOL_CONFIG_MISSING",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_tool_duplicate() {
    check(
        "TOOL_DUPLICATE",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_tool_schema_invalid() {
    check(
        "TOOL_SCHEMA_INVALID",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_tool_use_result_mismatch() {
    check(
        "TOOL_USE_RESULT_MISMATCH",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_monthly_request_count() {
    check(
        "MONTHLY_REQUEST_COUNT",
        429,
        "rate_limit_error",
        "rate_limit_error",
        true,
    );
}

#[test]
fn row_monthly_token_count() {
    check(
        "MONTHLY_TOKEN_COUNT",
        429,
        "rate_limit_error",
        "rate_limit_error",
        true,
    );
}

#[test]
fn row_rate_limit_exceeded() {
    check(
        "RATE_LIMIT_EXCEEDED",
        429,
        "rate_limit_error",
        "rate_limit_error",
        true,
    );
}

#[test]
fn row_invalid_bearer_token() {
    check(
        "INVALID_BEARER_TOKEN",
        502,
        "upstream_error",
        "api_error",
        true,
    );
}

#[test]
fn row_insufficient_model_capacity() {
    check(
        "INSUFFICIENT_MODEL_CAPACITY",
        503,
        "service_unavailable",
        "overloaded_error",
        true,
    );
}

#[test]
fn row_throttling_exception() {
    check(
        "ThrottlingException",
        429,
        "rate_limit_error",
        "rate_limit_error",
        true,
    );
}

#[test]
fn row_service_quota_exceeded_exception() {
    check(
        "ServiceQuotaExceededException",
        429,
        "rate_limit_error",
        "rate_limit_error",
        true,
    );
}

#[test]
fn row_access_denied_exception() {
    check(
        "AccessDeniedException",
        502,
        "upstream_error",
        "api_error",
        true,
    );
}

#[test]
fn row_unauthorized_exception() {
    check(
        "UnauthorizedException",
        502,
        "upstream_error",
        "api_error",
        true,
    );
}

#[test]
fn row_resource_not_found_exception() {
    check(
        "ResourceNotFoundException",
        404,
        "invalid_request_error",
        "not_found_error",
        false,
    );
}

#[test]
fn row_content_length_exceeded_exception() {
    check(
        "ContentLengthExceededException",
        400,
        "invalid_request_error",
        "invalid_request_error",
        false,
    );
}

#[test]
fn row_internal_server_exception() {
    check(
        "InternalServerException",
        502,
        "upstream_error",
        "api_error",
        true,
    );
}

#[test]
fn row_service_unavailable_exception() {
    check(
        "ServiceUnavailableException",
        503,
        "service_unavailable",
        "overloaded_error",
        true,
    );
}

const ROWS_TESTED: usize = 38;
