//! Canonical [`ChatRequest`] -> the JSON body of Kiro's `generateAssistantResponse`
//! (kiro-protocol.md §2.2–§2.4).
//!
//! Kiro is strict about the shape of a conversation and answers every violation with the same
//! opaque `400 Improperly formed request`, so this module enforces the rules up front: the
//! conversation starts with a user turn and alternates; no turn is empty; tool calls and results
//! only appear when the request offers tools, and each result answers a call of the assistant
//! turn right before it; tool names fit in 64 characters (shortened reversibly, see
//! [`ToolNameMap`]); schemas lose the keys Kiro rejects.
//!
//! ```
//! use kiro_layers::chat::{ChatRequest, Dialect};
//! use kiro_layers::kiro::request::{build_request, BuildOptions};
//!
//! let req = ChatRequest::user_text(Dialect::OpenAi, "claude-sonnet-4.5", "Hello");
//! let built = build_request(&req, "claude-sonnet-4.5", None, &BuildOptions::default()).unwrap();
//! let body: serde_json::Value = serde_json::from_slice(&built.body).unwrap();
//! let current = &body["conversationState"]["currentMessage"]["userInputMessage"];
//! assert_eq!(current["content"], "Hello");
//! assert_eq!(current["modelId"], "claude-sonnet-4.5");
//! ```

mod history;
mod images;
mod tools;
mod wire;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;

use crate::chat::{ChatRequest, Role};
use crate::error::GatewayError;

use history::{Piece, Turn};
use wire::{
    AssistantResponseMessage, Body, ConversationState, CurrentMessage, HistoryEntry,
    ToolResultText, UserInputMessage, UserInputMessageContext, WireToolResult, WireToolUse,
};

pub use tools::{ToolNameMap, MAX_TOOL_NAME_LEN};

/// Separator placed before each addition to the system prompt (§2.3 step 4).
const SYSTEM_SECTION_SEPARATOR: &str = "\n\n---\n";
/// Current-message text when the client's last turn was an assistant prefill (§2.3 step 11).
const CONTINUE_TEXT: &str = "Continue";
/// Fallback when the configured placeholder is blank (a blank placeholder would be rejected).
const DEFAULT_PLACEHOLDER: &str = ".";

/// Knobs of the request builder; the defaults match kiro-gateway's behaviour except for the
/// placeholder text.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Tool descriptions longer than this many characters move to the system prompt under
    /// `# Tool Documentation` (Kiro rejects very long ones). `0` never moves them.
    pub tool_description_max_len: usize,
    /// Appended to the system prompt in order, each after `"\n\n---\n"` (thinking-mode and
    /// truncation-recovery instructions are decided by other layers).
    pub system_prompt_additions: Vec<String>,
    /// Prepended verbatim to the current user text, after the system prompt (§2.3 step 12);
    /// include your own trailing separator. Never applied when the current turn carries
    /// tool results (thinking tags next to tool results break requests, §2.4).
    pub current_message_prefix: Option<String>,
    /// Text of turns that would otherwise be empty (Kiro rejects empty `content`).
    ///
    /// Defaults to `"."`: placeholders are visible to the model, and wordy ones such as
    /// `"(empty)"` or `"(empty placeholder)"` were reported to leak into its answers
    /// (kiro-protocol.md §10 item 15). A single full stop satisfies the non-empty rule while
    /// carrying no meaning the model could react to; a blank string would not satisfy it.
    pub placeholder: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            tool_description_max_len: 10_000,
            system_prompt_additions: Vec::new(),
            current_message_prefix: None,
            placeholder: DEFAULT_PLACEHOLDER.to_owned(),
        }
    }
}

/// A ready-to-send `generateAssistantResponse` body.
#[derive(Debug, Clone)]
pub struct KiroRequest {
    /// Compact JSON.
    pub body: Bytes,
    /// The fresh `conversationId` inside the body (for logs).
    pub conversation_id: String,
    /// Maps shortened tool names in Kiro's answer back to the client's names.
    pub tool_names: ToolNameMap,
}

/// Builds the Kiro body for `req`, addressed to `model_id`, with `profileArn` when given.
///
/// Fails with an `invalid_request` error the client can act on when the request has no
/// messages, a tool has no name, or an image is not PNG/JPEG/GIF/WebP base64.
pub fn build_request(
    req: &ChatRequest,
    model_id: &str,
    profile_arn: Option<&str>,
    opts: &BuildOptions,
) -> Result<KiroRequest, GatewayError> {
    if req.messages.is_empty() {
        return Err(
            GatewayError::invalid_request("messages must contain at least one message")
                .with_param("messages"),
        );
    }
    let with_tools = !req.tools.is_empty();
    let mut turns = history::build_turns(&req.messages, with_tools)?;

    let tool_names = if with_tools {
        let history_names = turns
            .iter()
            .flat_map(|turn| turn.pieces.iter())
            .filter_map(|piece| match piece {
                Piece::ToolUse { name, .. } => Some(*name),
                _ => None,
            });
        ToolNameMap::for_names(
            req.tools
                .iter()
                .map(|t| t.name.as_str())
                .chain(history_names),
        )
    } else {
        ToolNameMap::default()
    };
    let (tool_entries, tool_documentation) =
        tools::tool_entries(&req.tools, &tool_names, opts.tool_description_max_len)?;
    let system = system_prompt(
        req.system.as_deref(),
        tool_documentation.as_deref(),
        &opts.system_prompt_additions,
    );
    let placeholder = if opts.placeholder.trim().is_empty() {
        DEFAULT_PLACEHOLDER
    } else {
        opts.placeholder.as_str()
    };

    // A trailing assistant turn is a prefill: it goes to history and Kiro is asked to continue.
    let prefill = turns.last().is_some_and(|t| t.role == Role::Assistant);
    let current = if prefill {
        Turn::empty(Role::User)
    } else {
        turns.pop().unwrap_or_else(|| Turn::empty(Role::User))
    };
    let history_is_empty = turns.is_empty();

    let history = history_entries(turns, system.as_deref(), model_id, &tool_names, placeholder);

    let mut text = if prefill {
        CONTINUE_TEXT.to_owned()
    } else {
        current.joined_text()
    };
    // Thinking tags beside tool results are refused (§2.4), even when the turn also has text.
    let carries_tool_results = current.has_tool_results();
    if history_is_empty {
        if let Some(system) = &system {
            text = prepend_system(system, text);
        }
    }
    if text.trim().is_empty() {
        text = placeholder.to_owned();
    }
    if let Some(prefix) = opts.current_message_prefix.as_deref() {
        if !carries_tool_results && !prefix.is_empty() {
            text.insert_str(0, prefix);
        }
    }
    let current = user_message(current, text, model_id, placeholder, tool_entries);

    let conversation_id = uuid::Uuid::new_v4().to_string();
    let body = Body {
        conversation_state: ConversationState {
            chat_trigger_type: "MANUAL",
            conversation_id: &conversation_id,
            current_message: CurrentMessage {
                user_input_message: current,
            },
            history,
        },
        profile_arn: profile_arn.filter(|arn| !arn.is_empty()),
    };
    let body = serde_json::to_vec(&body).map_err(|err| {
        GatewayError::internal(format!("encoding the Kiro request failed: {err}"))
    })?;
    Ok(KiroRequest {
        body: Bytes::from(body),
        conversation_id,
        tool_names,
    })
}

/// The history entries; the system prompt goes to the first (user) turn (§2.3 step 10).
fn history_entries<'a>(
    turns: Vec<Turn<'a>>,
    system: Option<&str>,
    model_id: &'a str,
    tool_names: &'a ToolNameMap,
    placeholder: &str,
) -> Vec<HistoryEntry<'a>> {
    let mut history = Vec::with_capacity(turns.len());
    for (index, turn) in turns.into_iter().enumerate() {
        history.push(match turn.role {
            Role::User => {
                let mut text = turn.joined_text();
                if index == 0 {
                    if let Some(system) = system {
                        text = prepend_system(system, text);
                    }
                }
                HistoryEntry::UserInputMessage(user_message(
                    turn,
                    text,
                    model_id,
                    placeholder,
                    Vec::new(),
                ))
            }
            Role::Assistant => HistoryEntry::AssistantResponseMessage(assistant_message(
                turn,
                tool_names,
                placeholder,
            )),
        });
    }

    history
}

/// The client's system prompt, then the moved tool documentation, then the additions, each
/// after the separator. `None` when all are empty.
fn system_prompt(
    base: Option<&str>,
    tool_docs: Option<&str>,
    additions: &[String],
) -> Option<String> {
    let mut prompt = String::new();
    let parts = base
        .into_iter()
        .chain(tool_docs)
        .chain(additions.iter().map(String::as_str));
    for part in parts {
        if part.trim().is_empty() {
            continue;
        }
        if !prompt.is_empty() {
            prompt.push_str(SYSTEM_SECTION_SEPARATOR);
        }
        prompt.push_str(part);
    }
    (!prompt.is_empty()).then_some(prompt)
}

/// `"{system}\n\n{text}"` (§2.3 step 10); just the system prompt when the turn has no text, so
/// it needs no placeholder.
fn prepend_system(system: &str, text: String) -> String {
    if text.trim().is_empty() {
        return system.to_owned();
    }
    let mut out = String::with_capacity(system.len() + 2 + text.len());
    out.push_str(system);
    out.push_str("\n\n");
    out.push_str(&text);
    out
}

fn user_message<'a>(
    turn: Turn<'a>,
    text: String,
    model_id: &'a str,
    placeholder: &str,
    tools: Vec<wire::ToolEntry<'a>>,
) -> UserInputMessage<'a> {
    let tool_results = turn
        .pieces
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::ToolResult { id, text, is_error } => Some(WireToolResult {
                content: [ToolResultText { text }],
                // The Smithy `ToolResultStatus` enum is `success | error`, so Kiro accepts
                // "error"; sending it (kiro-gateway always says "success") lets the model tell a
                // failed tool from one that returned an error-looking text.
                status: if is_error { "error" } else { "success" },
                tool_use_id: id,
            }),
            _ => None,
        })
        .collect();
    UserInputMessage {
        content: if text.trim().is_empty() {
            placeholder.to_owned()
        } else {
            text
        },
        model_id,
        origin: "AI_EDITOR",
        images: turn.images,
        user_input_message_context: UserInputMessageContext {
            tools,
            tool_results,
        },
    }
}

fn assistant_message<'a>(
    turn: Turn<'a>,
    tool_names: &'a ToolNameMap,
    placeholder: &str,
) -> AssistantResponseMessage<'a> {
    let text = turn.joined_text();
    let tool_uses = turn
        .pieces
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::ToolUse { id, name, input } => Some(WireToolUse {
                name: tool_names.to_upstream(name),
                input: tool_input(input),
                tool_use_id: id,
            }),
            _ => None,
        })
        .collect();
    AssistantResponseMessage {
        // Kiro rejects an assistant turn with only tool uses and no text (kiro.rs PR #32).
        content: if text.trim().is_empty() {
            placeholder.to_owned()
        } else {
            text
        },
        tool_uses,
    }
}

/// Kiro wants the arguments as a JSON object. Canonical requests carry objects; anything else
/// (an unparsed arguments string, a scalar) is converted instead of failing the whole request.
fn tool_input(input: &Value) -> Cow<'_, Value> {
    match input {
        Value::Object(_) => Cow::Borrowed(input),
        Value::Null => Cow::Owned(Value::Object(Default::default())),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(parsed @ Value::Object(_)) => Cow::Owned(parsed),
            _ => Cow::Owned(serde_json::json!({ "arguments": raw })),
        },
        other => Cow::Owned(serde_json::json!({ "value": other })),
    }
}
