//! Cursor's answer frames -> [`ChatEvent`]s. Each data envelope holds one
//! `StreamUnifiedChatResponseWithTools`: text (2 -> 1), thinking (2 -> 25), or an MCP tool call
//! (1). Unknown fields and unknown oneof arms are skipped (Cursor adds them every release), and
//! zero-length frames are fine. The end-of-stream frame ends the answer: `{}` is a normal stop
//! (`tool_use` after a tool call), an error frame is the error; bytes that stop without it are a
//! cut stream, never a success.

use bytestring::ByteString;
use prost::Message as _;

use super::end_stream::{parse_end_stream, CursorError, ErrorClass};
use super::envelope::{EnvelopeDecoder, EnvelopeError};
use super::proto::{
    stream_unified_chat_response_with_tools::Response, ClientSideToolV2Call,
    StreamUnifiedChatResponseWithTools,
};
use crate::chat::{ChatEvent, StopReason};

/// Prefix Cursor puts before an MCP tool's name in a call (`mcp_custom_<name>`).
const MCP_NAME_PREFIX: &str = "mcp_custom_";

/// Why an answer stream failed.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The framing is broken.
    Envelope(EnvelopeError),
    /// A frame is not the protobuf message it should be.
    Protobuf(String),
    /// Cursor ended the stream with an error.
    Cursor(Box<CursorError>),
    /// The stream stopped before its end-of-stream frame.
    Truncated,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Envelope(e) => write!(f, "{e}"),
            StreamError::Protobuf(e) => write!(f, "a Cursor frame does not decode: {e}"),
            StreamError::Cursor(e) => write!(f, "Cursor answered {}", e.describe()),
            StreamError::Truncated => {
                f.write_str("the Cursor stream ended without its end-of-stream frame")
            }
        }
    }
}

/// Incremental decoder of one answer (see the module docs).
#[derive(Debug, Default)]
pub struct ChatDecoder {
    envelopes: EnvelopeDecoder,
    tool_calls: usize,
    finished: bool,
}

impl ChatDecoder {
    /// A decoder with the default frame cap.
    pub fn new() -> Self {
        ChatDecoder::default()
    }

    /// A decoder refusing frames over `max_frame` bytes.
    pub fn with_max_frame(max_frame: usize) -> Self {
        ChatDecoder {
            envelopes: EnvelopeDecoder::new(max_frame),
            ..ChatDecoder::default()
        }
    }

    /// Takes the next bytes and appends the events they complete to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        self.envelopes.push(bytes);
        let max = self.envelopes.max_frame();
        while let Some(envelope) = self
            .envelopes
            .next_envelope()
            .map_err(StreamError::Envelope)?
        {
            let payload = envelope.plain_payload(max).map_err(StreamError::Envelope)?;
            if envelope.is_end() {
                self.finished = true;
                return self.end(&payload, out);
            }
            if payload.is_empty() {
                continue;
            }
            let frame = StreamUnifiedChatResponseWithTools::decode(payload)
                .map_err(|e| StreamError::Protobuf(e.to_string()))?;
            match frame.response {
                Some(Response::StreamUnifiedChatResponse(chat)) => {
                    if let Some(thinking) = chat.thinking {
                        if !thinking.text.is_empty() {
                            out.push(ChatEvent::ReasoningDelta(thinking.text.into()));
                        }
                        if !thinking.signature.is_empty() {
                            out.push(ChatEvent::ReasoningSignature(thinking.signature.into()));
                        }
                    }
                    if !chat.text.is_empty() {
                        out.push(ChatEvent::TextDelta(chat.text.into()));
                    }
                }
                Some(Response::ClientSideToolV2Call(call)) => self.tool_call(call, out),
                None => {}
            }
        }
        Ok(())
    }

    /// Called when the byte stream ends: an answer without its end frame was cut.
    pub fn finish(&self) -> Result<(), StreamError> {
        if self.finished {
            Ok(())
        } else {
            Err(StreamError::Truncated)
        }
    }

    /// True once the end-of-stream frame was read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn tool_call(&mut self, call: ClientSideToolV2Call, out: &mut Vec<ChatEvent>) {
        let mcp = call.mcp_params.and_then(|p| p.tools.into_iter().next());
        let name = match &mcp {
            Some(tool) if !tool.name.is_empty() => tool.name.clone(),
            _ => call
                .name
                .strip_prefix(MCP_NAME_PREFIX)
                .unwrap_or(&call.name)
                .to_owned(),
        };
        let arguments = if call.raw_args.is_empty() {
            mcp.map(|tool| tool.parameters).unwrap_or_default()
        } else {
            call.raw_args
        };
        // The id goes back to the client verbatim (it may hold a newline); the next turn sends
        // it up again unchanged.
        let id = ByteString::from(call.tool_call_id);
        self.tool_calls += 1;
        out.push(ChatEvent::ToolUseStart {
            id: id.clone(),
            name: name.into(),
        });
        out.push(ChatEvent::ToolUseInput {
            id: id.clone(),
            fragment: if arguments.is_empty() {
                "{}".into()
            } else {
                arguments.into()
            },
        });
        out.push(ChatEvent::ToolUseStop { id });
    }

    fn end(&mut self, json: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        let end = parse_end_stream(json).map_err(StreamError::Protobuf)?;
        match end.error {
            None => {}
            // The server gave up waiting for a tool result we never send: the turn is over.
            Some(error) if error.class() == ErrorClass::AbortedAfterTool && self.tool_calls > 0 => {
            }
            Some(error) => return Err(StreamError::Cursor(Box::new(error))),
        }
        out.push(ChatEvent::Stop(if self.tool_calls > 0 {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        }));
        Ok(())
    }
}
