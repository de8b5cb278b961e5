//! OpenAI Chat Completions request JSON -> [`ChatRequest`].
//!
//! The body is parsed once into a `serde_json::Value` (so syntax errors carry serde's line and
//! column), then taken apart by value: strings such as base64 images move into the canonical
//! request instead of being copied. Every type error names the field path the client got wrong
//! (`messages[2].content[0].image_url`), in the message and in the OpenAI `param`.

use serde_json::{Map, Value};

use super::content::{parse_parts, parse_text_only, PartsOf};
use super::fields::{excerpt, invalid, take_bool, take_string, take_u64, type_name, wrong_type};
use crate::chat::{ChatRequest, ContentBlock, Dialect, Message, Role, ThinkingRequest, Tool};
use crate::error::GatewayError;

/// Output limit assumed for `reasoning_effort` budgets when the client sets none (§5.1).
const DEFAULT_MAX_TOKENS_FOR_EFFORT: u32 = 4096;

/// Parses an OpenAI `POST /v1/chat/completions` body.
///
/// Fields the gateway cannot honour but that change nothing about the answer's shape
/// (`temperature`, `top_p`, `seed`, penalties, `logit_bias`, `response_format`,
/// `parallel_tool_calls`, `metadata`, `store`, ...) are accepted and ignored, as are unknown
/// fields. `tool_choice: "none"` drops the tools, which is what it asks for.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let text = std::str::from_utf8(body).map_err(|err| {
        GatewayError::invalid_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}); send JSON encoded as UTF-8.",
            err.valid_up_to()
        ))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|err| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {err}."))
    })?;
    let Value::Object(mut root) = value else {
        return Err(GatewayError::invalid_request(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&value)
        )));
    };

    let model = match take_string(&mut root, "model", "model")? {
        Some(model) if !model.is_empty() => model,
        Some(_) => return Err(invalid("`model` must not be empty.", "model")),
        None => return Err(invalid("`model` is required.", "model")),
    };
    if let Some(n) = take_u64(&mut root, "n", "n")? {
        if n > 1 {
            return Err(invalid(
                "`n` greater than 1 is not supported; send one request per completion.",
                "n",
            ));
        }
    }

    let messages = match root.remove("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => {
            return Err(invalid(
                "`messages` must contain at least one message.",
                "messages",
            ))
        }
        None | Some(Value::Null) => return Err(invalid("`messages` is required.", "messages")),
        Some(other) => return Err(wrong_type("messages", "an array", &other)),
    };
    let (system, messages) = parse_messages(messages)?;

    let mut tools = match root.remove("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => parse_tools(tools, "tools")?,
        Some(other) => return Err(wrong_type("tools", "an array", &other)),
    };
    // The legacy `functions` list is the same definitions without the `type` wrapper.
    match root.remove("functions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(functions)) => tools.extend(parse_tools(functions, "functions")?),
        Some(other) => return Err(wrong_type("functions", "an array", &other)),
    }
    match root.remove("tool_choice") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(Value::String(choice)) => {
            // Kiro cannot be told to avoid tools; not offering any is the faithful equivalent.
            if choice == "none" {
                tools.clear();
            }
        }
        Some(other) => return Err(wrong_type("tool_choice", "a string or an object", &other)),
    }

    let stream = take_bool(&mut root, "stream", "stream")?.unwrap_or(false);
    let include_usage = match root.remove("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(mut options)) => take_bool(
            &mut options,
            "include_usage",
            "stream_options.include_usage",
        )?
        .unwrap_or(false),
        Some(other) => return Err(wrong_type("stream_options", "an object", &other)),
    };
    let max_tokens = match take_max_tokens(&mut root, "max_tokens")? {
        Some(limit) => Some(limit),
        None => take_max_tokens(&mut root, "max_completion_tokens")?,
    };
    let stop_sequences = parse_stop(root.remove("stop"))?;
    let thinking = match take_string(&mut root, "reasoning_effort", "reasoning_effort")? {
        None => ThinkingRequest::Default,
        Some(effort) => effort_to_thinking(&effort, max_tokens)?,
    };
    let end_user = take_string(&mut root, "user", "user")?;

    Ok(ChatRequest {
        dialect: Dialect::OpenAi,
        model,
        system,
        messages,
        tools,
        stream,
        include_usage,
        max_tokens,
        stop_sequences,
        thinking,
        end_user,
    })
}

/// Maps `reasoning_effort` to a thinking budget as a share of the output limit (§5.1).
fn effort_to_thinking(
    effort: &str,
    max_tokens: Option<u32>,
) -> Result<ThinkingRequest, GatewayError> {
    let share = match effort {
        "none" => return Ok(ThinkingRequest::Disabled),
        "minimal" => 0.10,
        "low" => 0.20,
        "medium" => 0.50,
        "high" => 0.80,
        "xhigh" => 0.95,
        other => {
            return Err(invalid(
                format!(
                    "`reasoning_effort` must be one of none, minimal, low, medium, high, xhigh; got `{}`.",
                    excerpt(other)
                ),
                "reasoning_effort",
            ))
        }
    };
    let limit = max_tokens.unwrap_or(DEFAULT_MAX_TOKENS_FOR_EFFORT);
    let budget = (f64::from(limit) * share) as u32;
    Ok(ThinkingRequest::Budget(budget.max(1)))
}

/// Splits the OpenAI message list into the system prompt and canonical turns.
fn parse_messages(messages: Vec<Value>) -> Result<(Option<String>, Vec<Message>), GatewayError> {
    let mut system_parts: Vec<String> = Vec::new();
    let mut turns: Vec<Message> = Vec::with_capacity(messages.len());
    // Consecutive `tool` messages answer one assistant turn; they become one user turn.
    let mut last_turn_is_tool_results = false;

    for (index, message) in messages.into_iter().enumerate() {
        let path = format!("messages[{index}]");
        let Value::Object(mut message) = message else {
            return Err(wrong_type(&path, "an object", &message));
        };
        let role = match take_string(&mut message, "role", &format!("{path}.role"))? {
            Some(role) => role,
            None => {
                return Err(invalid(
                    format!("`{path}.role` is required."),
                    format!("{path}.role"),
                ))
            }
        };
        let content = message.remove("content").unwrap_or(Value::Null);
        let content_path = format!("{path}.content");
        let mut is_tool_results = false;
        match role.as_str() {
            "system" | "developer" => {
                let text = parse_text_only(content, &content_path)?;
                if !text.is_empty() {
                    system_parts.push(text);
                }
                continue;
            }
            "user" => {
                let blocks = parse_parts(content, &content_path, PartsOf::User)?;
                turns.push(Message { role: Role::User, content: blocks });
            }
            "assistant" => {
                let blocks = parse_assistant(message, content, &path)?;
                turns.push(Message { role: Role::Assistant, content: blocks });
            }
            "tool" => {
                let tool_use_id =
                    match take_string(&mut message, "tool_call_id", &format!("{path}.tool_call_id"))? {
                        Some(id) => id,
                        None => {
                            return Err(invalid(
                                format!("`{path}.tool_call_id` is required on `tool` messages."),
                                format!("{path}.tool_call_id"),
                            ))
                        }
                    };
                let result = ContentBlock::ToolResult {
                    tool_use_id,
                    content: parse_parts(content, &content_path, PartsOf::ToolResult)?,
                    is_error: false,
                };
                match turns.last_mut() {
                    Some(previous) if last_turn_is_tool_results => previous.content.push(result),
                    _ => turns.push(Message { role: Role::User, content: vec![result] }),
                }
                is_tool_results = true;
            }
            "function" => {
                return Err(invalid(
                    format!(
                        "`{path}.role` `function` (the legacy function-calling API) is not supported; send the result as a `tool` message with `tool_call_id`."
                    ),
                    format!("{path}.role"),
                ))
            }
            other => {
                return Err(invalid(
                    format!(
                        "`{path}.role` must be one of system, developer, user, assistant, tool; got `{}`.",
                        excerpt(other)
                    ),
                    format!("{path}.role"),
                ))
            }
        }
        last_turn_is_tool_results = is_tool_results;
    }

    let system = if system_parts.is_empty() {
        None
    } else {
        Some(system_parts.join("\n"))
    };
    Ok((system, turns))
}

/// An assistant turn from history: its text, then its tool calls. Reasoning the client echoes
/// back (`reasoning_content`) is dropped: Kiro has no place for it (§5.3).
fn parse_assistant(
    mut message: Map<String, Value>,
    content: Value,
    path: &str,
) -> Result<Vec<ContentBlock>, GatewayError> {
    let mut blocks = parse_parts(content, &format!("{path}.content"), PartsOf::Assistant)?;
    if !matches!(message.get("function_call"), None | Some(Value::Null)) {
        return Err(invalid(
            format!(
                "`{path}.function_call` (the legacy function-calling API) is not supported; use `tool_calls`."
            ),
            format!("{path}.function_call"),
        ));
    }
    let calls = match message.remove("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(other) => {
            return Err(wrong_type(
                &format!("{path}.tool_calls"),
                "an array",
                &other,
            ))
        }
    };
    for (index, call) in calls.into_iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{index}]");
        let Value::Object(mut call) = call else {
            return Err(wrong_type(&call_path, "an object", &call));
        };
        let id = take_string(&mut call, "id", &format!("{call_path}.id"))?.ok_or_else(|| {
            invalid(
                format!("`{call_path}.id` is required."),
                format!("{call_path}.id"),
            )
        })?;
        if let Some(kind) = take_string(&mut call, "type", &format!("{call_path}.type"))? {
            if kind != "function" {
                return Err(invalid(
                    format!(
                        "`{call_path}.type` must be `function`; got `{}`.",
                        excerpt(&kind)
                    ),
                    format!("{call_path}.type"),
                ));
            }
        }
        let function_path = format!("{call_path}.function");
        let mut function = match call.remove("function") {
            Some(Value::Object(function)) => function,
            None | Some(Value::Null) => {
                return Err(invalid(
                    format!("`{function_path}` is required."),
                    function_path,
                ))
            }
            Some(other) => return Err(wrong_type(&function_path, "an object", &other)),
        };
        let name = match take_string(&mut function, "name", &format!("{function_path}.name"))? {
            Some(name) if !name.is_empty() => name,
            // An empty name reached Kiro as a malformed request (found by the convert fuzz target).
            Some(_) => {
                return Err(invalid(
                    format!("`{function_path}.name` must not be empty."),
                    format!("{function_path}.name"),
                ))
            }
            None => {
                return Err(invalid(
                    format!("`{function_path}.name` is required."),
                    format!("{function_path}.name"),
                ))
            }
        };
        let input = parse_arguments(
            function.remove("arguments"),
            &format!("{function_path}.arguments"),
        )?;
        blocks.push(ContentBlock::ToolUse { id, name, input });
    }
    Ok(blocks)
}

/// Tool-call arguments: normally a JSON-encoded object in a string; a bare object is accepted
/// too, and empty means no arguments.
fn parse_arguments(arguments: Option<Value>, path: &str) -> Result<Value, GatewayError> {
    let parsed = match arguments {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::Object(object)) => return Ok(Value::Object(object)),
        Some(Value::String(text)) if text.trim().is_empty() => {
            return Ok(Value::Object(Map::new()))
        }
        Some(Value::String(text)) => serde_json::from_str::<Value>(&text).map_err(|err| {
            invalid(
                format!(
                    "`{path}` must be a JSON object encoded as a string; it does not parse: {err}."
                ),
                path,
            )
        })?,
        Some(other) => return Err(wrong_type(path, "a string", &other)),
    };
    match parsed {
        Value::Object(_) => Ok(parsed),
        other => Err(invalid(
            format!(
                "`{path}` must encode a JSON object, got {}.",
                type_name(&other)
            ),
            path,
        )),
    }
}

/// `tools` (standard `{"type":"function","function":{...}}` or Cursor's flat form) and legacy
/// `functions` (bare function objects).
fn parse_tools(tools: Vec<Value>, list: &str) -> Result<Vec<Tool>, GatewayError> {
    let mut parsed = Vec::with_capacity(tools.len());
    for (index, tool) in tools.into_iter().enumerate() {
        let path = format!("{list}[{index}]");
        let Value::Object(mut tool) = tool else {
            return Err(wrong_type(&path, "an object", &tool));
        };
        if let Some(kind) = take_string(&mut tool, "type", &format!("{path}.type"))? {
            if kind != "function" {
                return Err(invalid(
                    format!(
                        "`{path}.type` `{}` is not supported; only `function` tools are.",
                        excerpt(&kind)
                    ),
                    format!("{path}.type"),
                ));
            }
        }
        let (mut definition, definition_path) = match tool.remove("function") {
            Some(Value::Object(function)) => (function, format!("{path}.function")),
            None | Some(Value::Null) => (tool, path),
            Some(other) => {
                return Err(wrong_type(&format!("{path}.function"), "an object", &other))
            }
        };
        let name_path = format!("{definition_path}.name");
        let name = match take_string(&mut definition, "name", &name_path)? {
            Some(name) if !name.is_empty() => name,
            _ => return Err(invalid(format!("`{name_path}` is required."), name_path)),
        };
        let description = take_string(
            &mut definition,
            "description",
            &format!("{definition_path}.description"),
        )?
        .unwrap_or_default();
        let schema = match definition.remove("parameters") {
            None | Some(Value::Null) => definition.remove("input_schema"),
            schema => schema,
        };
        let input_schema = match schema {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(Value::Object(schema)) => Value::Object(schema),
            Some(other) => {
                return Err(wrong_type(
                    &format!("{definition_path}.parameters"),
                    "an object",
                    &other,
                ))
            }
        };
        parsed.push(Tool {
            name,
            description,
            input_schema,
        });
    }
    Ok(parsed)
}

/// `stop`: a string or an array of strings; empty strings are dropped.
fn parse_stop(stop: Option<Value>) -> Result<Vec<String>, GatewayError> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(stop)) if stop.is_empty() => Ok(Vec::new()),
        Some(Value::String(stop)) => Ok(vec![stop]),
        Some(Value::Array(stops)) => {
            let mut sequences = Vec::with_capacity(stops.len());
            for (index, stop) in stops.into_iter().enumerate() {
                match stop {
                    Value::String(stop) if stop.is_empty() => {}
                    Value::String(stop) => sequences.push(stop),
                    other => return Err(wrong_type(&format!("stop[{index}]"), "a string", &other)),
                }
            }
            Ok(sequences)
        }
        Some(other) => Err(wrong_type(
            "stop",
            "a string or an array of strings",
            &other,
        )),
    }
}

/// `max_tokens` / `max_completion_tokens`: a positive integer that fits in 32 bits.
fn take_max_tokens(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<u32>, GatewayError> {
    match take_u64(object, key, key)? {
        None => Ok(None),
        Some(limit) => match u32::try_from(limit) {
            Ok(limit) if limit > 0 => Ok(Some(limit)),
            _ => Err(invalid(
                format!("`{key}` must be a positive integer below 2^32; got {limit}."),
                key,
            )),
        },
    }
}
