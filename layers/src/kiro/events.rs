//! Kiro event-stream frames to [`ChatEvent`]s.
//!
//! [`EventDecoder`] turns one decoded [`Message`] into zero or more events; [`decode_body`] wires
//! the frame [`Decoder`](crate::kiro::eventstream::Decoder) and the event decoder onto an HTTP
//! body stream. Text, ids and tool argument fragments point into the frame payload whenever the
//! JSON string has no escapes, so the usual delta is never copied after the socket read.
//!
//! ```
//! use bytes::Bytes;
//! use futures_util::{stream, StreamExt};
//! use kiro_layers::chat::ChatEvent;
//! use kiro_layers::kiro::eventstream::Message;
//! use kiro_layers::kiro::events::decode_body;
//!
//! let wire = Message::event("assistantResponseEvent", &br#"{"content":"Hello"}"#[..]).encode();
//! let body = stream::iter([Ok::<_, std::io::Error>(wire)]);
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let events: Vec<_> = runtime.block_on(decode_body(body, true).collect());
//! assert_eq!(events.len(), 1);
//! assert!(matches!(&events[0], Ok(ChatEvent::TextDelta(text)) if text == "Hello"));
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::chat::{ChatEvent, StopReason, TokenUsage};
use crate::error::GatewayError;
use crate::kiro::errors;
use crate::kiro::eventstream::{Message, RawFrame};

mod body;
mod flat;

pub use body::decode_body;
use flat::Scan;

/// What the event decoder reads of a frame; a [`Message`] and a [`RawFrame`] both offer it.
pub trait Frame {
    /// The value of a string header, if present.
    fn header_str(&self, name: &str) -> Option<&str>;
    /// The payload.
    fn payload(&self) -> &Bytes;
}

impl Frame for Message {
    fn header_str(&self, name: &str) -> Option<&str> {
        Message::header_str(self, name)
    }
    fn payload(&self) -> &Bytes {
        &self.payload
    }
}

impl Frame for RawFrame {
    fn header_str(&self, name: &str) -> Option<&str> {
        RawFrame::header_str(self, name)
    }
    fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// Turns Kiro messages into [`ChatEvent`]s, tracking tool calls by `toolUseId` so that starts,
/// fragments and stops are right whatever the JSON key order and however calls interleave.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// Calls started and not yet stopped, in start order.
    open_tool_calls: Vec<ByteString>,
    /// Calls already stopped; later frames for them are ignored rather than restarting them.
    stopped_tool_calls: Vec<ByteString>,
}

#[derive(Deserialize)]
struct AssistantResponse<'a> {
    #[serde(borrow, default)]
    content: Option<JsonStr<'a>>,
}

#[derive(Deserialize)]
struct ReasoningContent<'a> {
    #[serde(borrow, default)]
    text: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    signature: Option<JsonStr<'a>>,
}

#[derive(Deserialize)]
struct ToolUseFrame<'a> {
    #[serde(borrow, rename = "toolUseId")]
    tool_use_id: JsonStr<'a>,
    #[serde(borrow, default)]
    name: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    stop: Option<bool>,
}

#[derive(Deserialize)]
struct MeteringFrame {
    #[serde(default)]
    usage: Option<f64>,
}

#[derive(Deserialize)]
struct ContextUsageFrame {
    #[serde(default, rename = "contextUsagePercentage")]
    percent: Option<f64>,
}

#[derive(Deserialize)]
struct MetadataFrame<'a> {
    #[serde(default, rename = "tokenUsage")]
    token_usage: Option<TokenUsageFrame>,
    #[serde(borrow, default, rename = "stopReason")]
    stop_reason: Option<JsonStr<'a>>,
}

/// Counts are read as numbers of any JSON kind; `as u64` saturates and maps NaN to 0.
#[derive(Deserialize)]
struct TokenUsageFrame {
    #[serde(default, rename = "uncachedInputTokens")]
    uncached_input: Option<f64>,
    #[serde(default, rename = "outputTokens")]
    output: Option<f64>,
    #[serde(default, rename = "cacheReadInputTokens")]
    cache_read: Option<f64>,
    #[serde(default, rename = "cacheWriteInputTokens")]
    cache_write: Option<f64>,
}

/// A JSON string that borrows from the payload when it has no escapes. (serde's own `Cow<str>`
/// only borrows as a direct field, never inside `Option` or at the top level.)
struct JsonStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = JsonStr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

fn count(value: Option<f64>) -> u64 {
    value.map_or(0, |v| v as u64)
}

impl EventDecoder {
    /// A decoder with no open tool calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids of tool calls that were started and not stopped (in start order). A stream that
    /// ends with some open was cut; nothing is invented for them here.
    pub fn open_tool_calls(&self) -> &[ByteString] {
        &self.open_tool_calls
    }

    /// Decodes one message, appending its events to `out`. `exception`/`error` frames and
    /// unreadable payloads of known events are errors; unknown events are skipped.
    pub fn decode<O: Extend<ChatEvent>>(
        &mut self,
        message: &impl Frame,
        out: &mut O,
    ) -> Result<(), GatewayError> {
        match message.header_str(":message-type") {
            Some("event") | None => self.decode_event(message, out),
            Some("exception") => Err(errors::from_exception_frame(
                message.header_str(":exception-type").unwrap_or(""),
                message.payload(),
            )),
            Some("error") => {
                // AWS error frames carry the message in a header and may have no payload.
                let code = message.header_str(":error-code").unwrap_or("");
                let payload = match message.header_str(":error-message") {
                    Some(text) if message.payload().is_empty() => text.as_bytes(),
                    _ => &message.payload()[..],
                };
                Err(errors::from_exception_frame(code, payload))
            }
            Some(other) => {
                tracing::debug!(
                    message_type = other,
                    "ignoring frame of unknown message type"
                );
                Ok(())
            }
        }
    }

    /// The text of a frame that is a plain Kiro text delta (see [`flat::plain_content`]): what
    /// [`EventDecoder::decode`] would turn into one [`ChatEvent::TextDelta`] (or nothing, when
    /// empty). `None` for every other frame. Lets a caller that joins deltas skip the event.
    pub(crate) fn plain_text(frame: &RawFrame) -> Option<&str> {
        let is_event = matches!(frame.header_str(":message-type"), Some("event") | None);
        if is_event && frame.header_str(":event-type") == Some("assistantResponseEvent") {
            flat::plain_content(&frame.payload)
        } else {
            None
        }
    }

    fn decode_event<O: Extend<ChatEvent>>(
        &mut self,
        message: &impl Frame,
        out: &mut O,
    ) -> Result<(), GatewayError> {
        let Some(event_type) = message.header_str(":event-type") else {
            tracing::debug!("ignoring event frame without :event-type");
            return Ok(());
        };
        let payload = message.payload();
        let mut emit = |event| out.extend(std::iter::once(event));
        match event_type {
            "assistantResponseEvent" => {
                if let Some(text) = flat::plain_content(payload) {
                    if !text.is_empty() {
                        emit(ChatEvent::TextDelta(share(
                            payload,
                            JsonStr(Cow::Borrowed(text)),
                        )));
                    }
                    return Ok(());
                }
                let json = utf8(event_type, payload)?;
                let content = match quick_field(json, "content") {
                    Some(content) => content,
                    None => parse_str::<AssistantResponse>(event_type, json)?.content,
                };
                // Empty frames carry nothing; identical consecutive deltas are real text.
                if let Some(content) = content.filter(|c| !c.0.is_empty()) {
                    emit(ChatEvent::TextDelta(share(payload, content)));
                }
            }
            "reasoningContentEvent" => {
                let json = utf8(event_type, payload)?;
                let frame = match (quick_field(json, "text"), quick_field(json, "signature")) {
                    (Some(text), Some(signature)) => ReasoningContent { text, signature },
                    _ => parse_str(event_type, json)?,
                };
                if let Some(text) = frame.text.filter(|t| !t.0.is_empty()) {
                    emit(ChatEvent::ReasoningDelta(share(payload, text)));
                }
                if let Some(signature) = frame.signature.filter(|s| !s.0.is_empty()) {
                    emit(ChatEvent::ReasoningSignature(share(payload, signature)));
                }
            }
            "toolUseEvent" => {
                let frame: ToolUseFrame = parse(event_type, payload)?;
                self.decode_tool_use(payload, frame, &mut emit)?;
            }
            "meteringEvent" => {
                let frame: MeteringFrame = parse(event_type, payload)?;
                match frame.usage {
                    Some(credits) => emit(ChatEvent::Metering { credits }),
                    None => tracing::debug!("meteringEvent without usage"),
                }
            }
            "contextUsageEvent" => {
                let frame: ContextUsageFrame = parse(event_type, payload)?;
                match frame.percent {
                    Some(percent) => emit(ChatEvent::ContextUsage { percent }),
                    None => tracing::debug!("contextUsageEvent without a percentage"),
                }
            }
            "metadataEvent" => {
                let frame: MetadataFrame = parse(event_type, payload)?;
                if let Some(usage) = frame.token_usage {
                    emit(ChatEvent::TokenUsage(TokenUsage {
                        input_tokens: count(usage.uncached_input),
                        output_tokens: count(usage.output),
                        cache_read_input_tokens: count(usage.cache_read),
                        cache_write_input_tokens: count(usage.cache_write),
                    }));
                }
                if let Some(JsonStr(reason)) = frame.stop_reason {
                    match stop_reason(&reason) {
                        Some(stop) => emit(ChatEvent::Stop(stop)),
                        None => tracing::debug!(stop_reason = %reason, "unmapped stop reason"),
                    }
                }
            }
            other => tracing::debug!(event_type = other, "ignoring Kiro event"),
        }
        Ok(())
    }

    fn decode_tool_use(
        &mut self,
        payload: &Bytes,
        frame: ToolUseFrame<'_>,
        emit: &mut impl FnMut(ChatEvent),
    ) -> Result<(), GatewayError> {
        let id = share(payload, frame.tool_use_id);
        if self.stopped_tool_calls.contains(&id) {
            tracing::debug!(tool_use_id = %id, "ignoring toolUseEvent for a stopped call");
            return Ok(());
        }
        if !self.open_tool_calls.contains(&id) {
            let Some(name) = frame.name.filter(|n| !n.0.is_empty()) else {
                return Err(GatewayError::upstream_stream(format!(
                    "Kiro started tool call `{id}` without a tool name"
                )));
            };
            emit(ChatEvent::ToolUseStart {
                id: id.clone(),
                name: share(payload, name),
            });
            self.open_tool_calls.push(id.clone());
        }
        if let Some(fragment) = input_fragment(payload, frame.input)? {
            emit(ChatEvent::ToolUseInput {
                id: id.clone(),
                fragment,
            });
        }
        if frame.stop == Some(true) {
            self.open_tool_calls.retain(|open| *open != id);
            emit(ChatEvent::ToolUseStop { id: id.clone() });
            self.stopped_tool_calls.push(id);
        }
        Ok(())
    }
}

/// The arguments fragment of a tool frame: a JSON string fragment (the real service), or a
/// whole object some variants send, serialized; `{}`, `null` and `""` carry nothing.
fn input_fragment(
    payload: &Bytes,
    input: Option<&RawValue>,
) -> Result<Option<ByteString>, GatewayError> {
    let Some(raw) = input else { return Ok(None) };
    let text = raw.get();
    let fragment = match text.as_bytes().first() {
        Some(b'"') => {
            let fragment: JsonStr = parse_str("toolUseEvent input", text)?;
            share(payload, fragment)
        }
        Some(b'{') => {
            let object: serde_json::Map<String, serde_json::Value> =
                parse_str("toolUseEvent input", text)?;
            if object.is_empty() {
                return Ok(None);
            }
            ByteString::from(serde_json::Value::Object(object).to_string())
        }
        Some(b'n') => return Ok(None),
        _ => ByteString::from(text.to_owned()),
    };
    Ok(Some(fragment).filter(|f| !f.is_empty()))
}

fn stop_reason(reason: &str) -> Option<StopReason> {
    match reason {
        "END_TURN" => Some(StopReason::EndTurn),
        "TOOL_USE" => Some(StopReason::ToolUse),
        "MAX_TOKENS" | "MODEL_CONTEXT_WINDOW_EXCEEDED" => Some(StopReason::MaxTokens),
        "CONTENT_FILTERED" => Some(StopReason::ContentFiltered),
        _ => None,
    }
}

/// Parses a known event's payload, naming the event when it is not UTF-8 or not the JSON we
/// expect.
fn parse<'a, T: Deserialize<'a>>(event_type: &str, payload: &'a Bytes) -> Result<T, GatewayError> {
    parse_str(event_type, utf8(event_type, payload)?)
}

fn utf8<'a>(event_type: &str, payload: &'a Bytes) -> Result<&'a str, GatewayError> {
    std::str::from_utf8(payload).map_err(|error| {
        GatewayError::upstream_stream(format!(
            "Kiro sent a `{event_type}` frame whose payload is not valid UTF-8 ({error})"
        ))
    })
}

/// One string field read by the flat-object scanner; `None` when serde has to decide.
fn quick_field<'a>(json: &'a str, key: &str) -> Option<Option<JsonStr<'a>>> {
    match flat::string_field(json, key) {
        Scan::Found(value) => Some(Some(JsonStr(value))),
        Scan::Absent => Some(None),
        Scan::Unsure => None,
    }
}

fn parse_str<'a, T: Deserialize<'a>>(what: &str, text: &'a str) -> Result<T, GatewayError> {
    serde_json::from_str(text).map_err(|error| {
        GatewayError::upstream_stream(format!(
            "Kiro sent a `{what}` frame that is not the expected JSON ({error})"
        ))
    })
}

/// A [`ByteString`] for a parsed JSON string: a slice of the payload when serde could borrow it
/// (no escapes), else the unescaped copy.
fn share(payload: &Bytes, text: JsonStr<'_>) -> ByteString {
    match text.0 {
        Cow::Borrowed(text) => {
            let start = payload.as_ptr() as usize;
            let at = text.as_ptr() as usize;
            let inside = at >= start && at + text.len() <= start + payload.len();
            if !inside {
                return ByteString::from(text);
            }
            ByteString::try_from(payload.slice_ref(text.as_bytes()))
                .unwrap_or_else(|_| ByteString::from(text))
        }
        Cow::Owned(text) => ByteString::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(messages: &[Message]) -> Result<Vec<ChatEvent>, GatewayError> {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        for message in messages {
            decoder.decode(message, &mut events)?;
        }
        Ok(events)
    }

    fn tool(payload: &str) -> Message {
        Message::event("toolUseEvent", payload.to_owned())
    }

    fn text(content: &str) -> Message {
        let payload = serde_json::json!({ "content": content, "modelId": "auto" });
        Message::event("assistantResponseEvent", payload.to_string())
    }

    #[test]
    fn identical_deltas_are_kept_and_empty_ones_dropped() {
        let events = decode_all(&[text(""), text("格"), text("格"), text("")]).unwrap();
        assert_eq!(
            events,
            vec![
                ChatEvent::TextDelta("格".into()),
                ChatEvent::TextDelta("格".into())
            ]
        );
    }

    #[test]
    fn unescaped_text_points_into_the_payload() {
        let message = text("plain words");
        let events = decode_all(std::slice::from_ref(&message)).unwrap();
        let ChatEvent::TextDelta(delta) = &events[0] else {
            panic!("{events:?}")
        };
        let start = message.payload.as_ptr() as usize;
        let at = delta.as_bytes().as_ptr() as usize;
        assert!(at >= start && at < start + message.payload.len());
    }

    #[test]
    fn escaped_text_is_unescaped() {
        let events = decode_all(&[text("line\nquote\"")]).unwrap();
        assert_eq!(events, vec![ChatEvent::TextDelta("line\nquote\"".into())]);
    }

    #[test]
    fn tool_call_in_key_order_independent_frames() {
        let events = decode_all(&[
            tool(r#"{"toolUseId":"t1","name":"bash"}"#),
            tool(r#"{"input":"","name":"bash","toolUseId":"t1"}"#),
            tool(r#"{"toolUseId":"t1","input":"{\"cmd\":","name":"bash"}"#),
            tool(r#"{"name":"bash","input":"\"ls\"}","toolUseId":"t1"}"#),
            tool(r#"{"stop":true,"name":"bash","toolUseId":"t1"}"#),
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ChatEvent::ToolUseStart {
                    id: "t1".into(),
                    name: "bash".into()
                },
                ChatEvent::ToolUseInput {
                    id: "t1".into(),
                    fragment: "{\"cmd\":".into()
                },
                ChatEvent::ToolUseInput {
                    id: "t1".into(),
                    fragment: "\"ls\"}".into()
                },
                ChatEvent::ToolUseStop { id: "t1".into() },
            ]
        );
    }

    #[test]
    fn first_frame_may_carry_input_and_stop() {
        let events = decode_all(&[tool(
            r#"{"input":"{}","name":"x","stop":true,"toolUseId":"a"}"#,
        )])
        .unwrap();
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], ChatEvent::ToolUseStart { name, .. } if name == "x"));
        assert!(matches!(&events[1], ChatEvent::ToolUseInput { fragment, .. } if fragment == "{}"));
        assert!(matches!(&events[2], ChatEvent::ToolUseStop { id } if id == "a"));
    }

    #[test]
    fn object_input_is_serialized_and_empty_object_is_nothing() {
        let events = decode_all(&[
            tool(r#"{"input":{},"name":"w","toolUseId":"a"}"#),
            tool(r#"{"input":{"path":"/x"},"name":"w","toolUseId":"a"}"#),
            tool(r#"{"name":"w","stop":true,"toolUseId":"a"}"#),
        ])
        .unwrap();
        let inputs: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ChatEvent::ToolUseInput { fragment, .. } => Some(fragment.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(inputs, vec![r#"{"path":"/x"}"#.to_owned()]);
    }

    #[test]
    fn interleaved_calls_are_tracked_by_id() {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        for frame in [
            r#"{"name":"a","toolUseId":"1"}"#,
            r#"{"name":"b","toolUseId":"2"}"#,
            r#"{"input":"{\"x\":1}","name":"a","toolUseId":"1"}"#,
            r#"{"input":"{}","name":"b","toolUseId":"2"}"#,
            r#"{"name":"a","stop":true,"toolUseId":"1"}"#,
        ] {
            decoder.decode(&tool(frame), &mut events).unwrap();
        }
        let starts = events
            .iter()
            .filter(|e| matches!(e, ChatEvent::ToolUseStart { .. }))
            .count();
        assert_eq!(starts, 2);
        assert_eq!(
            events[2],
            ChatEvent::ToolUseInput {
                id: "1".into(),
                fragment: "{\"x\":1}".into()
            }
        );
        // The unstopped call is reported as open, and nothing was invented for it.
        assert_eq!(decoder.open_tool_calls(), &[ByteString::from("2")]);
        assert!(!events.contains(&ChatEvent::ToolUseStop { id: "2".into() }));
    }

    #[test]
    fn frames_after_stop_do_not_restart_the_call() {
        let events = decode_all(&[
            tool(r#"{"name":"a","stop":true,"toolUseId":"1"}"#),
            tool(r#"{"name":"a","toolUseId":"1"}"#),
        ])
        .unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn accounting_events() {
        let events = decode_all(&[
            Message::event("initial-response", &br#"{"conversationId":""}"#[..]),
            Message::event("contextUsageEvent", &br#"{"contextUsagePercentage":1.5}"#[..]),
            Message::event(
                "meteringEvent",
                &br#"{"unit":"credit","unitPlural":"credits","usage":0.34}"#[..],
            ),
            Message::event(
                "metadataEvent",
                &br#"{"tokenUsage":{"uncachedInputTokens":10,"outputTokens":20,"totalTokens":30,"cacheReadInputTokens":3,"cacheWriteInputTokens":4},"stopReason":"TOOL_USE"}"#[..],
            ),
            Message::event("followupPromptEvent", &b"{}"[..]),
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ChatEvent::ContextUsage { percent: 1.5 },
                ChatEvent::Metering { credits: 0.34 },
                ChatEvent::TokenUsage(TokenUsage {
                    input_tokens: 10,
                    output_tokens: 20,
                    cache_read_input_tokens: 3,
                    cache_write_input_tokens: 4
                }),
                ChatEvent::Stop(StopReason::ToolUse),
            ]
        );
    }

    #[test]
    fn reasoning_text_and_signature() {
        let events = decode_all(&[
            Message::event("reasoningContentEvent", &br#"{"text":"hmm"}"#[..]),
            Message::event("reasoningContentEvent", &br#"{"signature":"sig"}"#[..]),
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ChatEvent::ReasoningDelta("hmm".into()),
                ChatEvent::ReasoningSignature("sig".into())
            ]
        );
    }

    #[test]
    fn exception_frame_is_an_error() {
        let err = decode_all(&[Message::exception(
            "ThrottlingException",
            &br#"{"message":"slow down"}"#[..],
        )])
        .unwrap_err();
        assert!(err.is_rate_limited());
    }

    #[test]
    fn bad_payloads_name_the_event() {
        let not_utf8 = Message::event("assistantResponseEvent", vec![b'{', 0xff, b'}']);
        let err = decode_all(&[not_utf8]).unwrap_err();
        assert!(err.message().contains("assistantResponseEvent"));
        assert!(err.message().contains("UTF-8"));
        let not_json = Message::event("toolUseEvent", &b"{\"name\":"[..]);
        let err = decode_all(&[not_json]).unwrap_err();
        assert!(err.is_upstream_failure());
        assert!(err.message().contains("toolUseEvent"));
    }
}
