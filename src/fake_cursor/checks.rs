//! What the fake checks on a chat call, in the order the real service would meet it, and how
//! each violation is answered (cursor-protocol.md §11.2 and §1.5–§1.7): transport faults get a
//! plain HTTP status, everything else HTTP 200 with an error end-of-stream frame.

use base64::Engine as _;
use http::{Method, StatusCode, Version};
use kiro_layers::cursor::envelope::{EnvelopeDecoder, FLAG_COMPRESSED};
use kiro_layers::cursor::headers::{checksum_time, is_hex64, CHAT_PATH};
use kiro_layers::cursor::proto::{
    stream_unified_chat_request_with_tools::Request, StreamUnifiedChatRequestWithTools,
};
use prost::Message as _;

use super::{now_seconds, State, JWT_HEADER};

/// A refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A plain HTTP answer.
    Http(StatusCode, &'static str),
    /// HTTP 200 with this error in the end-of-stream frame.
    Stream {
        /// `ErrorDetails.error`.
        code: i32,
        /// Connect code.
        connect: &'static str,
        /// Title.
        title: String,
        /// Detail.
        detail: String,
    },
}

fn stream(code: i32, connect: &'static str, title: &str, detail: impl Into<String>) -> Refusal {
    Refusal::Stream {
        code,
        connect,
        title: title.to_owned(),
        detail: detail.into(),
    }
}

fn bad_request(detail: impl Into<String>) -> Refusal {
    stream(36, "invalid_argument", "Bad Request", detail)
}

/// What a valid chat call asked for.
#[derive(Debug, Clone, Default)]
pub struct ChatSeen {
    /// Text of the last human message.
    pub last_user_text: String,
    /// Names of the MCP tools it declared.
    pub tools: Vec<String>,
    /// Model name.
    pub model: String,
    /// Thinking level asked for.
    pub thinking_level: i32,
    /// Tool results in the history (call id, result text).
    pub tool_results: Vec<(String, String)>,
}

/// Checks one chat call.
pub(crate) fn check_chat(
    state: &State,
    method: &Method,
    path: &str,
    version: Version,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<ChatSeen, Refusal> {
    if method != Method::POST || path != CHAT_PATH {
        return Err(Refusal::Http(StatusCode::NOT_FOUND, "not found"));
    }
    if version != Version::HTTP_2 {
        return Err(Refusal::Http(
            StatusCode::from_u16(464).unwrap_or(StatusCode::BAD_REQUEST),
            "incompatible protocol: HTTP/2 required",
        ));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("content-type") != "application/connect+proto"
        || header("connect-protocol-version") != "1"
    {
        return Err(Refusal::Http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type",
        ));
    }
    check_token(state, header("authorization"))?;
    check_version(state, header("x-cursor-client-version"))?;
    check_checksum(state, header("x-cursor-checksum"))?;
    if !is_hex64(header("x-client-key")) {
        return Err(bad_request("x-client-key must be 64 hex digits"));
    }
    for name in ["x-session-id", "x-request-id"] {
        if uuid::Uuid::parse_str(header(name)).is_err() {
            return Err(bad_request(format!("{name} must be a UUID")));
        }
    }
    if !matches!(header("x-ghost-mode"), "true" | "false") {
        return Err(bad_request("x-ghost-mode must be true or false"));
    }
    if !is_timezone(header("x-cursor-timezone")) {
        return Err(bad_request("x-cursor-timezone must be an IANA zone"));
    }
    let gzip_declared = header("connect-content-encoding") == "gzip";
    let message = one_envelope(body, gzip_declared)?;
    check_message(state, &message)
}

fn check_token(state: &State, authorization: &str) -> Result<(), Refusal> {
    let not_logged_in = || stream(2, "unauthenticated", "Not logged in.", "Not logged in.");
    let token = authorization
        .strip_prefix("Bearer ")
        .ok_or_else(not_logged_in)?;
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_logged_in());
    };
    if head != JWT_HEADER {
        return Err(not_logged_in());
    }
    let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(not_logged_in)?;
    // A browser cookie token (`type: web`) has not worked for chat since 2025-04.
    if claims["type"] != "session" {
        return Err(not_logged_in());
    }
    let expiry = state
        .tokens
        .lock()
        .ok()
        .and_then(|tokens| tokens.get(token).copied())
        .ok_or_else(not_logged_in)?;
    if expiry <= now_seconds() {
        return Err(stream(
            12,
            "unauthenticated",
            "Login expired",
            "Your session expired; log in again.",
        ));
    }
    Ok(())
}

fn check_version(state: &State, version: &str) -> Result<(), Refusal> {
    let parse = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let ok = match (parse(version), parse(&state.config.min_client_version)) {
        (Some(have), Some(need)) => have >= need,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match state.config.outdated_style {
        super::OutdatedStyle::UpdateRequired => stream(
            28,
            "resource_exhausted",
            "Update Required",
            "Please update Cursor to continue using this model.",
        ),
        super::OutdatedStyle::OutdatedClient => stream(
            30,
            "failed_precondition",
            "Outdated Client Error",
            "Your version of Cursor no longer supports this action.",
        ),
    })
}

fn check_checksum(state: &State, checksum: &str) -> Result<(), Refusal> {
    let unauthorized = || {
        stream(
            38,
            "unauthenticated",
            "Unauthorized request.",
            "User is unauthorized",
        )
    };
    let shape_ok = checksum.len() >= 72
        && checksum[..8]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && is_hex64(&checksum[8..72])
        && match &checksum[72..] {
            "" => true,
            rest => rest.strip_prefix('/').is_some_and(is_hex64),
        };
    if !shape_ok {
        return Err(unauthorized());
    }
    let now_k = now_seconds() / 1000;
    match checksum_time(&checksum[..8]) {
        // Only the low 32 bits of k travel; compare those.
        Some(k) if (now_k & 0xffff_ffff).abs_diff(k) <= state.config.checksum_window => Ok(()),
        _ => Err(unauthorized()),
    }
}

fn is_timezone(zone: &str) -> bool {
    zone == "UTC"
        || zone.split_once('/').is_some_and(|(area, city)| {
            matches!(
                area,
                "Africa"
                    | "America"
                    | "Antarctica"
                    | "Asia"
                    | "Atlantic"
                    | "Australia"
                    | "Europe"
                    | "Indian"
                    | "Pacific"
                    | "Etc"
            ) && !city.is_empty()
                && city
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/'))
        })
}

fn one_envelope(body: &[u8], gzip_declared: bool) -> Result<Vec<u8>, Refusal> {
    let mut decoder = EnvelopeDecoder::new(4 * 1024 * 1024);
    decoder.push(body);
    let envelope = match decoder.next_envelope() {
        Ok(Some(envelope)) if !envelope.is_end() => envelope,
        _ => return Err(bad_request("the body must be exactly one data envelope")),
    };
    if decoder.pending() != 0 {
        return Err(bad_request("the body must be exactly one data envelope"));
    }
    let compressed = envelope.flags & FLAG_COMPRESSED != 0;
    if compressed && !gzip_declared {
        return Err(bad_request(
            "a gzip envelope needs connect-content-encoding: gzip",
        ));
    }
    envelope
        .plain_payload(4 * 1024 * 1024)
        .map(|b| b.to_vec())
        .map_err(|e| bad_request(e.to_string()))
}

fn check_message(state: &State, bytes: &[u8]) -> Result<ChatSeen, Refusal> {
    let request = StreamUnifiedChatRequestWithTools::decode(bytes)
        .map_err(|e| bad_request(format!("the request does not decode: {e}")))?;
    let Some(Request::StreamUnifiedChatRequest(chat)) = request.request else {
        return Err(bad_request(
            "field 1 (stream_unified_chat_request) is missing",
        ));
    };
    if chat.conversation.is_empty() {
        return Err(bad_request("the conversation is empty"));
    }
    for message in &chat.conversation {
        if uuid::Uuid::parse_str(&message.bubble_id).is_err() {
            return Err(bad_request("every message needs a UUID bubble_id"));
        }
        if !matches!(message.r#type, 1 | 2) {
            return Err(bad_request("a message type must be HUMAN (1) or AI (2)"));
        }
    }
    let headers_match = chat.full_conversation_headers_only.len() == chat.conversation.len()
        && chat
            .full_conversation_headers_only
            .iter()
            .zip(&chat.conversation)
            .all(|(h, m)| h.bubble_id == m.bubble_id && h.r#type == m.r#type);
    if !headers_match {
        return Err(bad_request(
            "full_conversation_headers_only must match the conversation",
        ));
    }
    let model = chat
        .model_details
        .as_ref()
        .and_then(|m| m.model_name.clone())
        .unwrap_or_default();
    if !state.config.models.iter().any(|m| m == &model) {
        return Err(stream(
            5,
            "not_found",
            "AI Model Not Found",
            format!("Model name is not valid: {model:?}"),
        ));
    }
    // Only the last human turn picks the answer: a turn that carries tool results has no
    // directive of its own.
    let last_user_text = chat
        .conversation
        .iter()
        .rev()
        .find(|m| m.r#type == 1)
        .map(|m| m.text.clone())
        .unwrap_or_default();
    let tool_results = chat
        .conversation
        .iter()
        .flat_map(|m| &m.tool_results)
        .map(|r| {
            let text = r
                .result
                .as_ref()
                .and_then(|x| x.mcp_result.as_ref())
                .map(|x| x.result.clone())
                .unwrap_or_default();
            (r.tool_call_id.clone(), text)
        })
        .collect();
    Ok(ChatSeen {
        last_user_text,
        tools: chat.mcp_tools.iter().map(|t| t.name.clone()).collect(),
        model,
        thinking_level: chat.thinking_level.unwrap_or(0),
        tool_results,
    })
}
