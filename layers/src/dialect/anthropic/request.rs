//! Anthropic Messages request JSON -> [`ChatRequest`].
//!
//! The body is parsed once into a `serde_json::Value` and walked by hand, taking strings out of it
//! instead of copying, so every error can name the exact field (`messages.3.content.0.source`).

use serde_json::{Map, Value};

use crate::chat::{
    ChatRequest, ContentBlock, Dialect, Image, Message, Role, ThinkingRequest, Tool,
};
use crate::error::GatewayError;

/// Whether `max_tokens` must be present (`/v1/messages`) or not (`/v1/messages/count_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxTokens {
    Required,
    Optional,
}

fn invalid(path: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid_request(format!("{path}: {message}")).with_param(path)
}

/// Parses the body of `POST /v1/messages` (or of `count_tokens` with [`MaxTokens::Optional`]).
pub(crate) fn parse(body: &[u8], max_tokens_rule: MaxTokens) -> Result<ChatRequest, GatewayError> {
    parse_with(body, max_tokens_rule, false)
}

/// [`parse`], optionally accepting `system` messages inside `messages` (the per-turn-control
/// beta Claude Code uses). Kiro has one system prompt, so their text joins the top-level one.
pub(crate) fn parse_with(
    body: &[u8],
    max_tokens_rule: MaxTokens,
    system_messages: bool,
) -> Result<ChatRequest, GatewayError> {
    if let Err(err) = std::str::from_utf8(body) {
        return Err(GatewayError::invalid_request(format!(
            "The request body is not valid UTF-8 (first bad byte at offset {}); send UTF-8 JSON.",
            err.valid_up_to()
        )));
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {err}."))
    })?;
    let Value::Object(mut root) = value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };

    let model = match root.remove("model") {
        Some(Value::String(model)) if !model.trim().is_empty() => model,
        Some(Value::String(_)) => return Err(invalid("model", "must not be empty")),
        Some(_) => return Err(invalid("model", "must be a string")),
        None => return Err(invalid("model", "field required")),
    };

    let max_tokens = match root.remove("max_tokens") {
        None | Some(Value::Null) if max_tokens_rule == MaxTokens::Optional => None,
        None | Some(Value::Null) => {
            return Err(invalid(
                "max_tokens",
                "field required; set the maximum number of tokens to generate",
            ))
        }
        Some(value) => match value.as_u64() {
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => return Err(invalid("max_tokens", "must be an integer of at least 1")),
        },
    };

    let mut turn_system = Vec::new();
    let messages = match root.remove("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            let mut parsed = Vec::with_capacity(messages.len());
            for (i, m) in messages.into_iter().enumerate() {
                if system_messages && m.get("role").and_then(Value::as_str) == Some("system") {
                    turn_system.push(parse_system_message(m, i)?);
                } else {
                    parsed.push(parse_message(m, i)?);
                }
            }
            if parsed.is_empty() {
                return Err(invalid("messages", "must contain a user message"));
            }
            parsed
        }
        Some(Value::Array(_)) => {
            return Err(invalid("messages", "must contain at least one message"))
        }
        Some(_) => return Err(invalid("messages", "must be an array of messages")),
        None => return Err(invalid("messages", "field required")),
    };

    let mut system = parse_system(root.remove("system"))?;
    if !turn_system.is_empty() {
        let joined = system.into_iter().chain(turn_system).collect::<Vec<_>>();
        system = Some(joined.join("\n\n"));
    }
    let mut tools = parse_tools(root.remove("tools"))?;
    if tool_choice_is_none(root.remove("tool_choice"))? {
        // `none` forbids tool calls; offering no tools is the only way to honour it upstream.
        tools.clear();
    }

    let stream = match root.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => stream,
        Some(_) => return Err(invalid("stream", "must be a boolean")),
    };

    let stop_sequences = match root.remove("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                _ => Err(invalid(&format!("stop_sequences.{i}"), "must be a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("stop_sequences", "must be an array of strings")),
    };

    for field in ["temperature", "top_p", "top_k"] {
        match root.get(field) {
            None | Some(Value::Null) | Some(Value::Number(_)) => {}
            Some(_) => return Err(invalid(field, "must be a number")),
        }
    }

    let thinking = parse_thinking(root.remove("thinking"))?;

    let end_user = match root.remove("metadata") {
        Some(Value::Object(mut metadata)) => match metadata.remove("user_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(user)) => Some(user),
            Some(_) => return Err(invalid("metadata.user_id", "must be a string")),
        },
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid("metadata", "must be an object")),
    };

    Ok(ChatRequest {
        dialect: Dialect::Anthropic,
        model,
        system,
        messages,
        tools,
        stream,
        include_usage: false,
        max_tokens,
        stop_sequences,
        thinking,
        end_user,
    })
}

fn parse_message(value: Value, index: usize) -> Result<Message, GatewayError> {
    let path = format!("messages.{index}");
    let Value::Object(mut message) = value else {
        return Err(invalid(
            &path,
            "must be an object with `role` and `content`",
        ));
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(invalid(
                &format!("{path}.role"),
                format_args!(
                    "unexpected role `{other}`; only `user` and `assistant` are allowed (put system text in the top-level `system` field)"
                ),
            ))
        }
        None => return Err(invalid(&format!("{path}.role"), "field required")),
    };
    let content = parse_content(message.remove("content"), &format!("{path}.content"))?;
    Ok(Message { role, content })
}

/// The text of a `system` message inside `messages` (string or text blocks).
fn parse_system_message(value: Value, index: usize) -> Result<String, GatewayError> {
    let path = format!("messages.{index}");
    let Value::Object(mut message) = value else {
        return Err(invalid(
            &path,
            "must be an object with `role` and `content`",
        ));
    };
    let content = parse_content(message.remove("content"), &format!("{path}.content"))?;
    let mut texts = Vec::with_capacity(content.len());
    for (i, block) in content.into_iter().enumerate() {
        match block {
            ContentBlock::Text(text) => texts.push(text),
            _ => {
                return Err(invalid(
                    &format!("{path}.content.{i}"),
                    "system messages may only carry text",
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

fn parse_content(value: Option<Value>, path: &str) -> Result<Vec<ContentBlock>, GatewayError> {
    match value {
        Some(Value::String(text)) => Ok(vec![ContentBlock::Text(text)]),
        Some(Value::Array(blocks)) => blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| parse_block(block, &format!("{path}.{i}")))
            .collect(),
        Some(_) => Err(invalid(
            path,
            "must be a string or an array of content blocks",
        )),
        None => Err(invalid(path, "field required")),
    }
}

fn take_string(
    block: &mut Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<String, GatewayError> {
    match block.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(&format!("{path}.{field}"), "must be a string")),
        None => Err(invalid(&format!("{path}.{field}"), "field required")),
    }
}

fn parse_block(value: Value, path: &str) -> Result<ContentBlock, GatewayError> {
    let Value::Object(mut block) = value else {
        return Err(invalid(path, "must be a content block object"));
    };
    let kind = match block.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err(invalid(&format!("{path}.type"), "field required")),
    };
    match kind.as_str() {
        "text" => Ok(ContentBlock::Text(take_string(&mut block, "text", path)?)),
        "image" => parse_image(block, path).map(ContentBlock::Image),
        "tool_use" => {
            let id = take_string(&mut block, "id", path)?;
            let name = take_string(&mut block, "name", path)?;
            // An empty id or name reaches Kiro as a malformed request, as it did for the other
            // dialects (found by the convert fuzz target there).
            for (field, value) in [("id", &id), ("name", &name)] {
                if value.is_empty() {
                    return Err(invalid(&format!("{path}.{field}"), "must not be empty"));
                }
            }
            let input = match block.remove("input") {
                Some(input @ Value::Object(_)) => input,
                _ => return Err(invalid(&format!("{path}.input"), "must be an object")),
            };
            Ok(ContentBlock::ToolUse { id, name, input })
        }
        "tool_result" => {
            let tool_use_id = take_string(&mut block, "tool_use_id", path)?;
            let content = match block.remove("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(text)) => vec![ContentBlock::Text(text)],
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| parse_tool_result_item(item, &format!("{path}.content.{i}")))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err(invalid(
                        &format!("{path}.content"),
                        "must be a string or an array of text and image blocks",
                    ))
                }
            };
            let is_error = match block.remove("is_error") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(flag)) => flag,
                Some(_) => return Err(invalid(&format!("{path}.is_error"), "must be a boolean")),
            };
            Ok(ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            })
        }
        "thinking" => {
            let text = take_string(&mut block, "thinking", path)?;
            let signature = match block.remove("signature") {
                Some(Value::String(signature)) => Some(signature),
                _ => None,
            };
            Ok(ContentBlock::Thinking { text, signature })
        }
        // The encrypted reasoning is opaque; it is kept as a signature with no readable text.
        "redacted_thinking" => Ok(ContentBlock::Thinking {
            text: String::new(),
            signature: Some(take_string(&mut block, "data", path)?),
        }),
        "document" | "search_result" | "container_upload" => Err(invalid(
            &format!("{path}.type"),
            format_args!("`{kind}` content blocks are not supported by this gateway; send the text as a `text` block"),
        )),
        "server_tool_use" | "web_search_tool_result" | "web_fetch_tool_result"
        | "code_execution_tool_result" | "mcp_tool_use" | "mcp_tool_result" => Err(invalid(
            &format!("{path}.type"),
            format_args!("`{kind}` blocks belong to server-side tools, which this gateway does not run"),
        )),
        other => Err(invalid(
            &format!("{path}.type"),
            format_args!("unknown content block type `{other}`; expected text, image, tool_use, tool_result or thinking"),
        )),
    }
}

fn parse_tool_result_item(value: Value, path: &str) -> Result<ContentBlock, GatewayError> {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "text" | "image" => parse_block(value, path),
        other => Err(invalid(
            &format!("{path}.type"),
            format_args!("tool results may contain only text and image blocks, not `{other}`"),
        )),
    }
}

fn parse_image(mut block: Map<String, Value>, path: &str) -> Result<Image, GatewayError> {
    let source_path = format!("{path}.source");
    let Some(Value::Object(mut source)) = block.remove("source") else {
        return Err(invalid(&source_path, "must be an object"));
    };
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media_type = take_string(&mut source, "media_type", &source_path)?;
            let data = take_string(&mut source, "data", &source_path)?;
            Ok(Image { media_type, data })
        }
        Some("url") => Err(invalid(
            &format!("{source_path}.type"),
            "image URLs are not supported: the gateway never fetches URLs; send the image as base64",
        )),
        Some(other) => Err(invalid(
            &format!("{source_path}.type"),
            format_args!("image source `{other}` is not supported; send the image as base64"),
        )),
        None => Err(invalid(&format!("{source_path}.type"), "field required")),
    }
}

fn parse_system(value: Option<Value>) -> Result<Option<String>, GatewayError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.into_iter().enumerate() {
                let path = format!("system.{i}");
                let Value::Object(mut block) = block else {
                    return Err(invalid(&path, "must be a text block"));
                };
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(
                        &format!("{path}.type"),
                        "system blocks must be `text`",
                    ));
                }
                parts.push(take_string(&mut block, "text", &path)?);
            }
            parts.join("\n")
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "must be a string or an array of text blocks",
            ))
        }
    };
    Ok((!text.trim().is_empty()).then_some(text))
}

fn parse_tools(value: Option<Value>) -> Result<Vec<Tool>, GatewayError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("tools", "must be an array of tools")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("tools.{i}");
            let Value::Object(mut tool) = item else {
                return Err(invalid(&path, "must be a tool object"));
            };
            match tool.get("type").and_then(Value::as_str) {
                None | Some("custom") => {}
                Some(kind) => {
                    return Err(invalid(
                        &format!("{path}.type"),
                        format_args!(
                            "`{kind}` is an Anthropic-hosted tool, which this gateway cannot run; define a custom tool with `name`, `description` and `input_schema` instead"
                        ),
                    ))
                }
            }
            let name = take_string(&mut tool, "name", &path)?;
            if name.is_empty() {
                return Err(invalid(&format!("{path}.name"), "must not be empty"));
            }
            let description = match tool.remove("description") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text,
                Some(_) => return Err(invalid(&format!("{path}.description"), "must be a string")),
            };
            let input_schema = match tool.remove("input_schema") {
                Some(schema @ Value::Object(_)) => schema,
                Some(_) => {
                    return Err(invalid(&format!("{path}.input_schema"), "must be a JSON schema object"))
                }
                None => return Err(invalid(&format!("{path}.input_schema"), "field required")),
            };
            Ok(Tool {
                name,
                description,
                input_schema,
            })
        })
        .collect()
}

/// Validates `tool_choice`; true when it is `{"type":"none"}`. `any` and `tool` cannot be enforced
/// upstream and are accepted as hints.
fn tool_choice_is_none(value: Option<Value>) -> Result<bool, GatewayError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(false);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("auto") | Some("any") => Ok(false),
        Some("tool") => match value.get("name") {
            Some(Value::String(_)) => Ok(false),
            _ => Err(invalid(
                "tool_choice.name",
                "field required for type `tool`",
            )),
        },
        Some("none") => Ok(true),
        _ => Err(invalid(
            "tool_choice.type",
            "must be one of `auto`, `any`, `tool` or `none`",
        )),
    }
}

fn parse_thinking(value: Option<Value>) -> Result<ThinkingRequest, GatewayError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ThinkingRequest::Default);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("enabled") => match value.get("budget_tokens").and_then(Value::as_u64) {
            Some(budget) => Ok(ThinkingRequest::Budget(
                u32::try_from(budget).unwrap_or(u32::MAX),
            )),
            None => Err(invalid(
                "thinking.budget_tokens",
                "field required as a non-negative integer when thinking is enabled",
            )),
        },
        Some("disabled") => Ok(ThinkingRequest::Disabled),
        Some("adaptive") => Ok(ThinkingRequest::Default),
        _ => Err(invalid(
            "thinking.type",
            "must be `enabled` (with `budget_tokens`), `disabled` or `adaptive`",
        )),
    }
}
