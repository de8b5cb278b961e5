//! The rules the real Kiro service enforces on a `generateAssistantResponse` body
//! (kiro-protocol.md §2.2, §2.4, §7.1), as a pure function.
//!
//! The fake upstream rejects with it, and unit tests anywhere can check that a converter's
//! output would be accepted:
//!
//! ```
//! use kiro_layers::kiro::validate::{validate_request, ValidationRules};
//! let body = serde_json::json!({
//!     "conversationState": {
//!         "chatTriggerType": "MANUAL",
//!         "conversationId": "c0ffee",
//!         "currentMessage": {"userInputMessage": {
//!             "content": "hello", "modelId": "auto", "origin": "AI_EDITOR"}}
//!     },
//!     "profileArn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC"
//! });
//! assert!(validate_request(&body, &ValidationRules::default()).is_ok());
//! ```
//!
//! Checks run in this order, and the first failure wins: payload size (the real service
//! rejects oversized bodies before reading them, with the generic message), shape, profileArn,
//! model id, tool configuration, thinking tags beside tool results, tool-use/result pairing,
//! input length.

use base64::Engine;
use serde_json::{json, Map, Value};

/// The generic 400 message the real service gives for every shape problem.
pub const IMPROPERLY_FORMED: &str = "Improperly formed request.";

/// Longest tool name the service accepts, in characters.
pub const MAX_TOOL_NAME_CHARS: usize = 64;
/// Longest tool description accepted, in characters (the exact upstream limit is unconfirmed).
pub const MAX_TOOL_DESCRIPTION_CHARS: usize = 10_000;
/// Image formats the service accepts in `images[].format`.
pub const IMAGE_FORMATS: [&str; 4] = ["png", "jpeg", "gif", "webp"];

/// The model ids and input windows `ListAvailableModels` returned in the 2026-05 capture
/// (`maxInputTokens`).
pub const KNOWN_MODELS: [(&str, u64); 13] = [
    ("auto", 1_000_000),
    ("claude-opus-4.7", 1_000_000),
    ("claude-opus-4.6", 1_000_000),
    ("claude-sonnet-4.6", 1_000_000),
    ("claude-opus-4.5", 200_000),
    ("claude-sonnet-4.5", 200_000),
    ("claude-sonnet-4", 200_000),
    ("claude-haiku-4.5", 200_000),
    ("deepseek-3.2", 164_000),
    ("minimax-m2.5", 196_000),
    ("minimax-m2.1", 196_000),
    ("glm-5", 200_000),
    ("qwen3-coder-next", 256_000),
];

/// What the validator enforces beyond the fixed shape rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRules {
    /// Accepted model ids with their context window in tokens.
    pub known_models: Vec<(String, u64)>,
    /// Largest accepted body, measured as compact JSON bytes. The real limit is unconfirmed
    /// (somewhere between 0.6 and 1.3 MB); 600 000 is the conservative end.
    pub max_payload_bytes: usize,
    /// Whether a top-level `profileArn` is required (the runtime host requires it).
    pub require_profile_arn: bool,
}

impl Default for ValidationRules {
    fn default() -> Self {
        ValidationRules {
            known_models: KNOWN_MODELS
                .iter()
                .map(|(id, window)| ((*id).to_owned(), *window))
                .collect(),
            max_payload_bytes: 600_000,
            require_profile_arn: true,
        }
    }
}

impl ValidationRules {
    /// The context window of `model_id`, if the model is known.
    pub fn context_window(&self, model_id: &str) -> Option<u64> {
        self.known_models
            .iter()
            .find(|(id, _)| id == model_id)
            .map(|(_, window)| *window)
    }
}

/// Why the service refused a request: the HTTP status and the body fields it would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (400 for everything the validator finds).
    pub status: u16,
    /// The `message` field of the error body.
    pub message: String,
    /// The `reason` field of the error body (`null` when `None`).
    pub reason: Option<String>,
}

impl Rejection {
    /// 400 "Improperly formed request." with a null reason.
    pub fn improperly_formed() -> Self {
        Rejection {
            status: 400,
            message: IMPROPERLY_FORMED.to_owned(),
            reason: None,
        }
    }

    fn with_reason(message: &str, reason: &str) -> Self {
        Rejection {
            status: 400,
            message: message.to_owned(),
            reason: Some(reason.to_owned()),
        }
    }

    /// The JSON body the real service sends: `{"message": ..., "reason": ...|null}`.
    pub fn body(&self) -> Value {
        json!({"message": self.message, "reason": self.reason})
    }
}

/// Checks `body` against every rule the real service is known to enforce.
pub fn validate_request(body: &Value, rules: &ValidationRules) -> Result<(), Rejection> {
    let payload_bytes = serde_json::to_vec(body)
        .map(|bytes| bytes.len())
        .map_err(|_| Rejection::improperly_formed())?;
    if payload_bytes > rules.max_payload_bytes {
        return Err(Rejection::improperly_formed());
    }
    let conversation = Conversation::parse(body)?;

    if rules.require_profile_arn && !is_non_empty_str(body.get("profileArn")) {
        return Err(Rejection {
            status: 400,
            message: "profileArn is required for this request.".to_owned(),
            reason: None,
        });
    }
    let model_id = conversation.model_id;
    let Some(window) = rules.context_window(model_id) else {
        return Err(Rejection::with_reason(
            "Invalid model. Please select a different model to continue.",
            "INVALID_MODEL_ID",
        ));
    };

    check_tools(&conversation)?;
    check_thinking_with_tool_results(&conversation)?;
    check_tool_pairing(&conversation.turns)?;

    // bytes/4 is the usual rough token estimate; good enough to trip on an oversized request.
    let estimated_tokens = (payload_bytes / 4) as u64;
    if estimated_tokens > window {
        return Err(Rejection::with_reason(
            "Input is too long.",
            "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
        ));
    }
    Ok(())
}

/// One turn of the conversation (history entries, then the current message last).
struct Turn<'a> {
    from_user: bool,
    message: &'a Map<String, Value>,
}

impl<'a> Turn<'a> {
    fn context(&self) -> Option<&'a Map<String, Value>> {
        self.message
            .get("userInputMessageContext")
            .and_then(Value::as_object)
    }

    fn tool_results(&self) -> &'a [Value] {
        array_or_empty(self.context().and_then(|c| c.get("toolResults")))
    }

    fn tool_uses(&self) -> &'a [Value] {
        array_or_empty(self.message.get("toolUses"))
    }
}

struct Conversation<'a> {
    model_id: &'a str,
    turns: Vec<Turn<'a>>,
    tools: &'a [Value],
}

impl<'a> Conversation<'a> {
    /// Checks the shape rules and returns the parts later rules need.
    fn parse(body: &'a Value) -> Result<Self, Rejection> {
        let malformed = Rejection::improperly_formed;
        let state = body
            .get("conversationState")
            .and_then(Value::as_object)
            .ok_or_else(malformed)?;
        if state.get("chatTriggerType").and_then(Value::as_str) != Some("MANUAL") {
            return Err(malformed());
        }
        if !state.get("conversationId").is_some_and(Value::is_string) {
            return Err(malformed());
        }
        let current = state
            .get("currentMessage")
            .and_then(|m| m.get("userInputMessage"))
            .and_then(Value::as_object)
            .ok_or_else(malformed)?;
        let model_id = current
            .get("modelId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(malformed)?;
        if !is_non_empty_str(current.get("origin")) {
            return Err(malformed());
        }

        let mut turns = Vec::new();
        let history = match state.get("history") {
            None => &[][..],
            Some(Value::Array(entries)) => entries.as_slice(),
            Some(_) => return Err(malformed()),
        };
        for (index, entry) in history.iter().enumerate() {
            let entry = entry
                .as_object()
                .filter(|e| e.len() == 1)
                .ok_or_else(malformed)?;
            let (key, message) = entry.iter().next().ok_or_else(malformed)?;
            let from_user = match key.as_str() {
                "userInputMessage" => true,
                "assistantResponseMessage" => false,
                _ => return Err(malformed()),
            };
            // Starts with the user and alternates: even positions are user turns.
            if from_user != (index % 2 == 0) {
                return Err(malformed());
            }
            let message = message.as_object().ok_or_else(malformed)?;
            turns.push(Turn { from_user, message });
        }
        // History must end with the assistant so the current user message continues it.
        if turns.last().is_some_and(|turn| turn.from_user) {
            return Err(malformed());
        }
        turns.push(Turn {
            from_user: true,
            message: current,
        });

        let last = turns.len() - 1;
        for (index, turn) in turns.iter().enumerate() {
            check_turn(turn, index == last)?;
        }
        let tools = array_or_empty(turns[last].context().and_then(|c| c.get("tools")));
        Ok(Conversation {
            model_id,
            turns,
            tools,
        })
    }
}

fn check_turn(turn: &Turn<'_>, is_current: bool) -> Result<(), Rejection> {
    let malformed = Rejection::improperly_formed;
    let content = turn
        .message
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?;
    if turn.from_user {
        if let Some(context) = turn.message.get("userInputMessageContext") {
            let context = context.as_object().ok_or_else(malformed)?;
            // Tools ride on the current message only.
            if !is_current && context.contains_key("tools") {
                return Err(malformed());
            }
            if let Some(tools) = context.get("tools") {
                tools.as_array().ok_or_else(malformed)?;
            }
            if let Some(results) = context.get("toolResults") {
                results.as_array().ok_or_else(malformed)?;
            }
        }
        // kiro.rs sends "" on a user turn that carries tool results and works; a turn without
        // them must say something.
        if content.trim().is_empty() && turn.tool_results().is_empty() {
            return Err(malformed());
        }
        turn.tool_results().iter().try_for_each(check_tool_result)?;
        if let Some(images) = turn.message.get("images") {
            images
                .as_array()
                .ok_or_else(malformed)?
                .iter()
                .try_for_each(check_image)?;
        }
        if turn.message.contains_key("toolUses") {
            return Err(malformed());
        }
    } else {
        if let Some(uses) = turn.message.get("toolUses") {
            uses.as_array()
                .ok_or_else(malformed)?
                .iter()
                .try_for_each(check_tool_use)?;
        }
        // An assistant turn with only tool uses is accepted with " " (kiro.rs) but rejected
        // with "" (kiro.rs PR #32); any other assistant turn needs visible text.
        let has_tool_uses = !turn.tool_uses().is_empty();
        if content.is_empty() || (content.trim().is_empty() && !has_tool_uses) {
            return Err(malformed());
        }
    }
    Ok(())
}

fn check_tool_result(result: &Value) -> Result<(), Rejection> {
    let malformed = Rejection::improperly_formed;
    if !is_non_empty_str(result.get("toolUseId")) {
        return Err(malformed());
    }
    if !matches!(
        result.get("status").and_then(Value::as_str),
        Some("success" | "error")
    ) {
        return Err(malformed());
    }
    // kiro-cli sends `content: []` and is accepted, so an empty list is fine; every element
    // must be a text block.
    let content = result
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(malformed)?;
    if content
        .iter()
        .all(|block| block.get("text").is_some_and(Value::is_string))
    {
        Ok(())
    } else {
        Err(malformed())
    }
}

fn check_tool_use(tool_use: &Value) -> Result<(), Rejection> {
    let well_formed = is_non_empty_str(tool_use.get("toolUseId"))
        && is_non_empty_str(tool_use.get("name"))
        && tool_use.get("input").is_some_and(Value::is_object);
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::improperly_formed())
    }
}

fn check_image(image: &Value) -> Result<(), Rejection> {
    let format_ok = image
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| IMAGE_FORMATS.contains(&format));
    let bytes_ok = image
        .get("source")
        .and_then(|source| source.get("bytes"))
        .and_then(Value::as_str)
        .is_some_and(|data| {
            !data.is_empty()
                && base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .is_ok()
        });
    if format_ok && bytes_ok {
        Ok(())
    } else {
        Err(Rejection::improperly_formed())
    }
}

fn check_tools(conversation: &Conversation<'_>) -> Result<(), Rejection> {
    let uses_tools = conversation
        .turns
        .iter()
        .any(|turn| !turn.tool_uses().is_empty() || !turn.tool_results().is_empty());
    if uses_tools && conversation.tools.is_empty() {
        return Err(Rejection::with_reason(
            IMPROPERLY_FORMED,
            "TOOL_CONFIG_MISSING",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for tool in conversation.tools {
        let spec = tool
            .get("toolSpecification")
            .and_then(Value::as_object)
            .ok_or_else(Rejection::improperly_formed)?;
        let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
        let name_chars = name.chars().count();
        let description = spec.get("description").and_then(Value::as_str);
        let schema = spec.get("inputSchema").and_then(|s| s.get("json"));
        let well_formed = (1..=MAX_TOOL_NAME_CHARS).contains(&name_chars)
            && description.is_some_and(|d| {
                !d.trim().is_empty() && d.chars().count() <= MAX_TOOL_DESCRIPTION_CHARS
            })
            && schema.is_some_and(|s| s.is_object() && schema_is_clean(s));
        if !well_formed {
            return Err(Rejection::improperly_formed());
        }
        if !names.insert(name) {
            return Err(Rejection::with_reason(IMPROPERLY_FORMED, "TOOL_DUPLICATE"));
        }
    }
    Ok(())
}

/// No `additionalProperties` key and no empty `required` list anywhere in the schema.
fn schema_is_clean(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            !map.contains_key("additionalProperties")
                && !map
                    .get("required")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
                && map.values().all(schema_is_clean)
        }
        Value::Array(items) => items.iter().all(schema_is_clean),
        _ => true,
    }
}

/// Thinking-mode tags and tool results in the same current message are refused
/// (jwadow/kiro-gateway#20, OpenCode compaction): a gateway must skip the injection there.
fn check_thinking_with_tool_results(conversation: &Conversation<'_>) -> Result<(), Rejection> {
    let Some(current) = conversation.turns.last() else {
        return Ok(());
    };
    let content = current
        .message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("");
    if content.contains("<thinking_mode>") && !current.tool_results().is_empty() {
        return Err(Rejection::improperly_formed());
    }
    Ok(())
}

/// Every user turn with tool results follows an assistant turn whose `toolUses` contain each
/// result's id. The real reason for a mismatch is unconfirmed; `TOOL_USE_RESULT_MISMATCH`
/// (listed in the service's validation reasons) with the generic message is our pick, since it
/// tells a developer exactly which rule broke.
fn check_tool_pairing(turns: &[Turn<'_>]) -> Result<(), Rejection> {
    for (index, turn) in turns.iter().enumerate() {
        let results = turn.tool_results();
        if results.is_empty() {
            continue;
        }
        let offered: Vec<&str> = index
            .checked_sub(1)
            .and_then(|previous| turns.get(previous))
            .map(|previous| {
                previous
                    .tool_uses()
                    .iter()
                    .filter_map(|u| u.get("toolUseId").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let all_match = results.iter().all(|result| {
            result
                .get("toolUseId")
                .and_then(Value::as_str)
                .is_some_and(|id| offered.contains(&id))
        });
        if !all_match {
            return Err(Rejection::with_reason(
                IMPROPERLY_FORMED,
                "TOOL_USE_RESULT_MISMATCH",
            ));
        }
    }
    Ok(())
}

fn array_or_empty(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn is_non_empty_str(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
