//! [`EventStream`] -> one OpenAI `chat.completion` JSON body (`"stream": false`).

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{finish_reason, UsageFigures};
use crate::chat::{ChatEvent, EventStream, ResponseMeta, StopReason, UsageTally};
use crate::error::GatewayError;

/// A tool call being put together from its fragments.
struct CollectedCall {
    id: ByteString,
    name: ByteString,
    arguments: String,
}

/// Drains `events` into a `chat.completion` body. The first error ends collection and is
/// returned as is, for the caller to turn into an HTTP error response.
pub async fn collect_response(
    mut events: EventStream,
    meta: ResponseMeta,
) -> Result<Bytes, GatewayError> {
    let mut tally = UsageTally::default();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<CollectedCall> = Vec::new();
    let mut stop: Option<StopReason> = None;

    while let Some(event) = events.next().await {
        let event = event?;
        tally.observe(&event);
        match event {
            ChatEvent::TextDelta(delta) => text.push_str(&delta),
            ChatEvent::ReasoningDelta(delta) => reasoning.push_str(&delta),
            ChatEvent::ToolUseStart { id, name } if !calls.iter().any(|call| call.id == id) => {
                calls.push(CollectedCall {
                    id,
                    name,
                    arguments: String::new(),
                });
            }
            ChatEvent::ToolUseInput { id, fragment } => {
                match calls.iter_mut().find(|call| call.id == id) {
                    Some(call) => call.arguments.push_str(&fragment),
                    None => {
                        tracing::warn!("tool-call arguments for a call that never started; dropped")
                    }
                }
            }
            ChatEvent::Stop(reason) => stop = Some(reason),
            _ => {}
        }
    }
    // Let go of the upstream before the (possibly large) body is rendered.
    drop(events);

    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let reason = finish_reason(stop, !calls.is_empty());
    if !calls.is_empty() {
        let calls: Vec<Value> = calls
            .into_iter()
            .map(|call| {
                let arguments = if call.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    call.arguments
                };
                json!({
                    "id": &*call.id,
                    "type": "function",
                    "function": {"name": &*call.name, "arguments": arguments},
                })
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }

    let usage = UsageFigures::new(&tally, meta.input_tokens_estimate, meta.context_window);
    let mut usage_json = json!({
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": usage.cached},
    });
    if let (Some(credits), Some(object)) = (usage.credits, usage_json.as_object_mut()) {
        object.insert("credits_used".into(), json!(credits));
    }

    let body = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": reason,
        }],
        "usage": usage_json,
    });
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|err| GatewayError::internal(format!("could not encode the response: {err}")))
}
