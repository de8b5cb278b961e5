//! The answers the fake can give, as envelope streams.

use base64::Engine as _;
use bytes::Bytes;
use kiro_layers::cursor::envelope::{data_envelope, end_envelope};
use kiro_layers::cursor::proto::{
    self, stream_unified_chat_response_with_tools::Response, ClientSideToolV2Call,
    CustomErrorDetails, ErrorDetails, McpParams, StreamUnifiedChatResponse,
    StreamUnifiedChatResponseWithTools, Thinking,
};
use prost::Message as _;

use super::checks::ChatSeen;

/// A scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Echo the last user message (`echo: <text>`), or confirm tool results.
    Echo,
    /// This text, in small frames.
    Text(String),
    /// Thinking, then an answer.
    Thinking,
    /// A call of the first declared tool with these arguments.
    ToolCall(String),
    /// An error end frame before any output.
    Error {
        /// `ErrorDetails.error`.
        code: i32,
        /// Connect code.
        connect: &'static str,
        /// Title.
        title: &'static str,
    },
    /// Text, then the stream stops without its end frame.
    Cut,
    /// Zero-length frames between the text frames.
    ZeroLengthFrames,
    /// Frames with fields the decoder does not know.
    UnknownFields,
    /// The first byte comes late.
    SlowFirstByte,
    /// The real recorded stream, byte for byte.
    ReplayCapture,
}

impl Scenario {
    /// The scenario a `[cursor:NAME]` directive names.
    pub fn from_directive(text: &str) -> Option<Scenario> {
        let start = text.find("[cursor:")?;
        let rest = &text[start + 8..];
        let name = &rest[..rest.find(']')?];
        Some(match name {
            "thinking" => Scenario::Thinking,
            "tool" => Scenario::ToolCall(r#"{"city":"Paris"}"#.to_owned()),
            "cut" => Scenario::Cut,
            "zero" => Scenario::ZeroLengthFrames,
            "unknown" => Scenario::UnknownFields,
            "slow" => Scenario::SlowFirstByte,
            "replay" => Scenario::ReplayCapture,
            "rate_limit" => Scenario::Error {
                code: 50,
                connect: "resource_exhausted",
                title: "Rate limited",
            },
            "usage_limit" => Scenario::Error {
                code: 10,
                connect: "resource_exhausted",
                title: "You've reached the usage limit",
            },
            _ => return None,
        })
    }
}

/// The real recorded stream (legacy StreamChat, 1 598 bytes).
pub const REAL_CAPTURE_HEX: &str =
    include_str!("../../layers/test_data/cursor/wisdgod-cursor-api.stream_data.txt");

fn text_frame(text: &str) -> Bytes {
    frame(Response::StreamUnifiedChatResponse(
        StreamUnifiedChatResponse {
            text: text.to_owned(),
            ..Default::default()
        },
    ))
}

fn frame(response: Response) -> Bytes {
    let message = StreamUnifiedChatResponseWithTools {
        response: Some(response),
        event_id: String::new(),
    }
    .encode_to_vec();
    // Large frames go gzip, as the real server does.
    data_envelope(&message, message.len() > 1024)
}

/// The end frame of a success.
pub fn success_end() -> Bytes {
    end_envelope(b"{}")
}

/// An error end frame, with the protobuf `value` and its `debug` mirror.
pub fn error_end(code: i32, connect: &str, title: &str, detail: &str) -> Bytes {
    let details = ErrorDetails {
        error: code,
        details: Some(CustomErrorDetails {
            title: title.to_owned(),
            detail: detail.to_owned(),
            is_retryable: Some(false),
        }),
        is_expected: Some(true),
    };
    let name = proto::error_details::Error::try_from(code)
        .map(|e| e.as_str_name())
        .unwrap_or("ERROR_UNSPECIFIED");
    let json = serde_json::json!({
        "error": {
            "code": connect,
            "message": "Error",
            "details": [{
                "type": "aiserver.v1.ErrorDetails",
                "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(details.encode_to_vec()),
                "debug": {
                    "error": name,
                    "details": {"title": title, "detail": detail, "isRetryable": false},
                    "isExpected": true
                }
            }]
        }
    });
    end_envelope(json.to_string().as_bytes())
}

/// The envelopes of `scenario` for `seen`, and whether to end the stream with a success frame.
pub fn frames(scenario: &Scenario, seen: &ChatSeen) -> Vec<Bytes> {
    let words = |text: &str| -> Vec<Bytes> { text.split_inclusive(' ').map(text_frame).collect() };
    let mut out = Vec::new();
    match scenario {
        Scenario::Echo => {
            let text = if seen.tool_results.is_empty() {
                format!("echo: {}", seen.last_user_text)
            } else {
                let results: Vec<String> = seen
                    .tool_results
                    .iter()
                    .map(|(id, text)| format!("{id}={text}"))
                    .collect();
                format!("tool results: {}", results.join(", "))
            };
            out.extend(words(&text));
            out.push(success_end());
        }
        Scenario::Text(text) => {
            out.extend(words(text));
            out.push(success_end());
        }
        Scenario::Thinking => {
            for part in ["Let me ", "think."] {
                out.push(frame(Response::StreamUnifiedChatResponse(
                    StreamUnifiedChatResponse {
                        thinking: Some(Thinking {
                            text: part.to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )));
            }
            out.extend(words("The answer is 4."));
            out.push(success_end());
        }
        Scenario::ToolCall(arguments) => {
            let name = seen.tools.first().cloned().unwrap_or_default();
            out.extend(words("Calling a tool."));
            out.push(frame(Response::ClientSideToolV2Call(
                ClientSideToolV2Call {
                    tool: proto::ClientSideToolV2::Mcp as i32,
                    tool_call_id: "toolu_fake_01\nmc_model-1".to_owned(),
                    name: format!("mcp_custom_{name}"),
                    raw_args: arguments.clone(),
                    mcp_params: Some(McpParams {
                        tools: vec![proto::mcp_params::Tool {
                            name,
                            description: String::new(),
                            parameters: arguments.clone(),
                            server_name: "custom".to_owned(),
                        }],
                    }),
                    is_last_message: true,
                    ..Default::default()
                },
            )));
            out.push(success_end());
        }
        Scenario::Error {
            code,
            connect,
            title,
        } => out.push(error_end(*code, connect, title, title)),
        Scenario::Cut => out.extend(words("This answer stops in the")),
        Scenario::ZeroLengthFrames => {
            for word in words("zero length frames between words") {
                out.push(data_envelope(b"", false));
                out.push(word);
            }
            out.push(data_envelope(b"", false));
            out.push(success_end());
        }
        Scenario::UnknownFields => {
            // Field 22 (server_bubble_id) and 27 (usage_uuid) inside, 7 (event_id) outside, and
            // field 99 nobody knows: all skipped.
            let mut message = StreamUnifiedChatResponseWithTools {
                response: Some(Response::StreamUnifiedChatResponse(
                    StreamUnifiedChatResponse {
                        text: "known text".to_owned(),
                        server_bubble_id: Some(uuid::Uuid::new_v4().to_string()),
                        usage_uuid: Some(uuid::Uuid::new_v4().to_string()),
                        ..Default::default()
                    },
                )),
                event_id: "evt-1".to_owned(),
            }
            .encode_to_vec();
            message.extend_from_slice(&[0x9a, 0x06, 0x03, b'n', b'e', b'w']);
            out.push(data_envelope(&message, false));
            out.push(success_end());
        }
        Scenario::SlowFirstByte => {
            out.extend(words("late but fine"));
            out.push(success_end());
        }
        Scenario::ReplayCapture => {
            out.push(Bytes::from(
                hex::decode(REAL_CAPTURE_HEX.trim()).unwrap_or_default(),
            ));
        }
    }
    out
}
