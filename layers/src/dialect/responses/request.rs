//! OpenAI Responses request JSON -> [`ChatRequest`] plus the [`ResponseContext`] its answer needs.
//!
//! The body is parsed in two steps so a stored conversation can be put in front of the input
//! between them: [`parse_body`] reads the JSON and says which `previous_response_id` (if any) to
//! load; [`parse_request`] then takes it apart. Fields the gateway cannot honour but that change
//! nothing about the answer's shape (`prompt_cache_key`, `service_tier`, `truncation`,
//! `text.verbosity`, ...) are accepted and ignored, as are unknown fields and item types
//! (`compaction_trigger`, `item_reference`, `web_search_call`): Codex sends them, and a 400 would
//! end its turn.

use serde_json::{Map, Value};

use super::tools::{
    parse_tool_choice, parse_tools, tool_choice_instruction, ToolChoice, ToolKinds,
};
use super::{Echo, ResponseContext, TextFormat};
use crate::chat::{ChatRequest, ContentBlock, Dialect, Message, Role, ThinkingRequest, Tool};
use crate::dialect::openai::content::parse_data_url;
use crate::dialect::openai::fields::{
    excerpt, invalid, take_bool, take_string, take_u64, type_name, wrong_type,
};
use crate::error::GatewayError;

/// Output limit assumed for `reasoning.effort` budgets when the client sets none (as for chat).
const DEFAULT_MAX_TOKENS_FOR_EFFORT: u32 = 4096;

/// A request body read as JSON but not yet taken apart.
#[derive(Debug)]
pub struct RequestBody {
    root: Map<String, Value>,
}

impl RequestBody {
    /// `previous_response_id`, when the client continues a stored response.
    pub fn previous_response_id(&self) -> Option<&str> {
        self.root
            .get("previous_response_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
    }

    /// `store` (the API's default is true).
    pub fn store(&self) -> bool {
        self.root
            .get("store")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

/// Reads the body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<RequestBody, GatewayError> {
    let text = std::str::from_utf8(body).map_err(|err| {
        GatewayError::invalid_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}); send JSON encoded as UTF-8.",
            err.valid_up_to()
        ))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|err| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {err}."))
    })?;
    match value {
        Value::Object(root) => Ok(RequestBody { root }),
        other => Err(GatewayError::invalid_request(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&other)
        ))),
    }
}

/// Takes a request apart. `prior_items` is the stored conversation `previous_response_id` named
/// (its input and output items, oldest first); it goes in front of `input`.
pub fn parse_request(
    body: RequestBody,
    prior_items: Vec<Value>,
) -> Result<(ChatRequest, ResponseContext), GatewayError> {
    let mut root = body.root;
    let model = match take_string(&mut root, "model", "model")? {
        Some(model) if !model.is_empty() => model,
        Some(_) => return Err(invalid("`model` must not be empty.", "model")),
        None => return Err(invalid("`model` is required.", "model")),
    };
    let instructions = take_string(&mut root, "instructions", "instructions")?;
    let input = match root.remove("input") {
        None | Some(Value::Null) if prior_items.is_empty() => {
            return Err(invalid("`input` is required.", "input"))
        }
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            vec![serde_json::json!({"type": "message", "role": "user", "content": text})]
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type("input", "a string or an array of items", &other)),
    };
    if input.is_empty() && prior_items.is_empty() {
        return Err(invalid("`input` must contain at least one item.", "input"));
    }

    let mut tools = Vec::new();
    let mut kinds = ToolKinds::default();
    let tools_echo = root.remove("tools").unwrap_or(Value::Null);
    match &tools_echo {
        Value::Null => {}
        Value::Array(list) => parse_tools(list.clone(), "tools", &mut tools, &mut kinds)?,
        other => return Err(wrong_type("tools", "an array", other)),
    }

    let mut conversation = Conversation::default();
    let mut items = prior_items.clone();
    for (index, item) in prior_items.into_iter().enumerate() {
        conversation.item(
            item,
            &format!("previous_response_id[{index}]"),
            &mut tools,
            &mut kinds,
        )?;
    }
    for (index, item) in input.iter().enumerate() {
        conversation.item(
            item.clone(),
            &format!("input[{index}]"),
            &mut tools,
            &mut kinds,
        )?;
    }
    items.extend(input);

    let tool_choice_echo = root.remove("tool_choice").unwrap_or(Value::Null);
    let choice = parse_tool_choice(Some(&tool_choice_echo))?;
    if choice == ToolChoice::None {
        // Kiro cannot be told to avoid tools; not offering any is the faithful equivalent.
        tools.clear();
    }
    let parallel_tool_calls =
        take_bool(&mut root, "parallel_tool_calls", "parallel_tool_calls")?.unwrap_or(true);
    let stream = take_bool(&mut root, "stream", "stream")?.unwrap_or(false);
    let max_output_tokens = match take_u64(&mut root, "max_output_tokens", "max_output_tokens")? {
        None => None,
        Some(limit) => match u32::try_from(limit) {
            Ok(limit) if limit > 0 => Some(limit),
            _ => {
                return Err(invalid(
                    format!(
                        "`max_output_tokens` must be a positive integer below 2^32; got {limit}."
                    ),
                    "max_output_tokens",
                ))
            }
        },
    };
    let temperature = take_number(&mut root, "temperature")?;
    let top_p = take_number(&mut root, "top_p")?;
    let (text_echo, text_format) = parse_text(root.remove("text"))?;
    let (reasoning_echo, thinking, summary) =
        parse_reasoning(root.remove("reasoning"), max_output_tokens)?;
    let include = match root.remove("include") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|entry| entry.as_str().map(str::to_owned))
            .collect(),
        Some(other) => return Err(wrong_type("include", "an array of strings", &other)),
    };
    let metadata = match root.remove("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(metadata)) => Value::Object(metadata),
        Some(other) => return Err(wrong_type("metadata", "an object", &other)),
    };
    let store = take_bool(&mut root, "store", "store")?.unwrap_or(true);
    let previous_response_id =
        take_string(&mut root, "previous_response_id", "previous_response_id")?;
    let user = take_string(&mut root, "user", "user")?;
    let end_user = match user.clone() {
        Some(user) => Some(user),
        None => take_string(&mut root, "safety_identifier", "safety_identifier")?,
    };

    let mut system_parts = Vec::new();
    if let Some(instructions) = instructions.as_ref().filter(|text| !text.is_empty()) {
        system_parts.push(instructions.clone());
    }
    system_parts.append(&mut conversation.system);
    if !tools.is_empty() {
        system_parts.extend(tool_choice_instruction(&choice));
    }
    system_parts.extend(text_format.instruction());
    let system = (!system_parts.is_empty()).then(|| system_parts.join("\n\n"));

    if conversation.messages.is_empty() {
        return Err(invalid(
            "`input` must contain at least one user, assistant or tool-output item.",
            "input",
        ));
    }

    let chat = ChatRequest {
        dialect: Dialect::Responses,
        model: model.clone(),
        system,
        messages: conversation.messages,
        tools: dedupe(tools),
        stream,
        include_usage: true,
        max_tokens: max_output_tokens,
        stop_sequences: Vec::new(),
        thinking,
        end_user,
    };
    let context = ResponseContext {
        tools: kinds,
        summary,
        encrypted_reasoning: include
            .iter()
            .any(|entry| entry == "reasoning.encrypted_content"),
        text_format,
        input_items: items,
        echo: Echo {
            instructions,
            max_output_tokens,
            tool_choice: if tool_choice_echo.is_null() {
                Value::String("auto".into())
            } else {
                tool_choice_echo
            },
            tools: if tools_echo.is_null() {
                Value::Array(Vec::new())
            } else {
                tools_echo
            },
            parallel_tool_calls,
            temperature,
            top_p,
            text: text_echo,
            reasoning: reasoning_echo,
            metadata,
            store,
            previous_response_id,
            user,
        },
    };
    Ok((chat, context))
}

fn dedupe(tools: Vec<Tool>) -> Vec<Tool> {
    let mut seen: Vec<Tool> = Vec::with_capacity(tools.len());
    for tool in tools {
        seen.retain(|known| known.name != tool.name);
        seen.push(tool);
    }
    seen
}

fn take_number(root: &mut Map<String, Value>, key: &str) -> Result<Option<f64>, GatewayError> {
    match root.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        Some(other) => Err(wrong_type(key, "a number", &other)),
    }
}

/// `text`: `{format: {type: text | json_object | json_schema}, verbosity}`.
fn parse_text(text: Option<Value>) -> Result<(Value, TextFormat), GatewayError> {
    let plain = serde_json::json!({"format": {"type": "text"}});
    let mut text = match text {
        None | Some(Value::Null) => return Ok((plain, TextFormat::Text)),
        Some(Value::Object(text)) => text,
        Some(other) => return Err(wrong_type("text", "an object", &other)),
    };
    let format = match text.remove("format") {
        None | Some(Value::Null) => {
            text.insert("format".into(), serde_json::json!({"type": "text"}));
            return Ok((Value::Object(text), TextFormat::Text));
        }
        Some(Value::Object(format)) => format,
        Some(other) => return Err(wrong_type("text.format", "an object", &other)),
    };
    let parsed = match format.get("type").and_then(Value::as_str) {
        Some("text") | None => TextFormat::Text,
        Some("json_object") => TextFormat::JsonObject,
        Some("json_schema") => {
            let schema =
                match format.get("schema") {
                    Some(Value::Object(schema)) => Value::Object(schema.clone()),
                    _ => return Err(invalid(
                        "`text.format.schema` is required for `json_schema` and must be an object.",
                        "text.format.schema",
                    )),
                };
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_owned();
            TextFormat::JsonSchema { name, schema }
        }
        Some(other) => {
            return Err(invalid(
                format!(
                    "`text.format.type` must be text, json_object or json_schema; got `{}`.",
                    excerpt(other)
                ),
                "text.format.type",
            ))
        }
    };
    text.insert("format".into(), Value::Object(format));
    Ok((Value::Object(text), parsed))
}

/// `reasoning`: `effort` -> the thinking budget (as a share of the output limit, like chat's
/// `reasoning_effort`); `summary` asks for the reasoning as summary text.
fn parse_reasoning(
    reasoning: Option<Value>,
    max_output_tokens: Option<u32>,
) -> Result<(Value, ThinkingRequest, bool), GatewayError> {
    let mut reasoning = match reasoning {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(reasoning)) => reasoning,
        Some(other) => return Err(wrong_type("reasoning", "an object", &other)),
    };
    let effort = take_string(&mut reasoning, "effort", "reasoning.effort")?;
    let summary = match reasoning.remove("summary") {
        None | Some(Value::Null) => match reasoning.remove("generate_summary") {
            Some(Value::String(summary)) => Some(summary),
            _ => None,
        },
        Some(Value::String(summary)) => Some(summary),
        Some(other) => return Err(wrong_type("reasoning.summary", "a string", &other)),
    };
    let thinking = match effort.as_deref() {
        None => ThinkingRequest::Default,
        Some("none") => ThinkingRequest::Disabled,
        Some(effort) => {
            let share = match effort {
                "minimal" => 0.10,
                "low" => 0.20,
                "medium" => 0.50,
                "high" => 0.80,
                "xhigh" => 0.95,
                "max" => 1.0,
                other => {
                    return Err(invalid(
                        format!(
                            "`reasoning.effort` must be one of none, minimal, low, medium, high, xhigh, max; got `{}`.",
                            excerpt(other)
                        ),
                        "reasoning.effort",
                    ))
                }
            };
            let limit = max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS_FOR_EFFORT);
            ThinkingRequest::Budget(((f64::from(limit) * share) as u32).max(1))
        }
    };
    let echo = serde_json::json!({"effort": effort, "summary": summary});
    Ok((echo, thinking, summary.is_some()))
}

/// Input items folded into canonical turns: consecutive items of one side (the model's output
/// items, or the user's messages and tool outputs) share one [`Message`].
#[derive(Default)]
struct Conversation {
    system: Vec<String>,
    messages: Vec<Message>,
}

impl Conversation {
    fn push(&mut self, role: Role, blocks: Vec<ContentBlock>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => self.messages.push(Message {
                role,
                content: blocks,
            }),
        }
    }

    fn item(
        &mut self,
        item: Value,
        path: &str,
        tools: &mut Vec<Tool>,
        kinds: &mut ToolKinds,
    ) -> Result<(), GatewayError> {
        let Value::Object(mut item) = item else {
            return Err(wrong_type(path, "an object", &item));
        };
        let kind = match take_string(&mut item, "type", &format!("{path}.type"))? {
            Some(kind) => kind,
            // `type` may be left out of a message (the SDK's EasyInputMessage).
            None if item.contains_key("role") => "message".to_owned(),
            None => {
                return Err(invalid(
                    format!("`{path}.type` is required."),
                    format!("{path}.type"),
                ))
            }
        };
        match kind.as_str() {
            "message" => self.message(item, path),
            "function_call" | "custom_tool_call" | "local_shell_call" => {
                let call = parse_call(&kind, item, path)?;
                self.push(Role::Assistant, vec![call]);
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => {
                let result = parse_call_output(item, path)?;
                self.push(Role::User, vec![result]);
                Ok(())
            }
            "reasoning" => {
                self.push(Role::Assistant, parse_reasoning_item(item));
                Ok(())
            }
            "additional_tools" => match item.remove("tools") {
                None | Some(Value::Null) => Ok(()),
                Some(Value::Array(list)) => {
                    parse_tools(list, &format!("{path}.tools"), tools, kinds)
                }
                Some(other) => Err(wrong_type(&format!("{path}.tools"), "an array", &other)),
            },
            // compaction_trigger, compaction, item_reference, web_search_call, ...: nothing Kiro
            // can use (see the module docs).
            _ => Ok(()),
        }
    }

    fn message(&mut self, mut item: Map<String, Value>, path: &str) -> Result<(), GatewayError> {
        let role_path = format!("{path}.role");
        let role = take_string(&mut item, "role", &role_path)?
            .ok_or_else(|| invalid(format!("`{role_path}` is required."), role_path.clone()))?;
        let content = item.remove("content").unwrap_or(Value::Null);
        let blocks = parse_content(content, &format!("{path}.content"))?;
        match role.as_str() {
            "user" => self.push(Role::User, blocks),
            "assistant" => self.push(Role::Assistant, blocks),
            "system" | "developer" => {
                let text: Vec<String> = blocks
                    .into_iter()
                    .filter_map(|block| match block {
                        ContentBlock::Text(text) => Some(text),
                        _ => None,
                    })
                    .collect();
                if !text.is_empty() {
                    self.system.push(text.join("\n"));
                }
            }
            other => {
                return Err(invalid(
                    format!(
                    "`{role_path}` must be one of user, assistant, system, developer; got `{}`.",
                    excerpt(other)
                ),
                    role_path,
                ))
            }
        }
        Ok(())
    }
}

/// A message's or a tool output's `content`: a string, or parts (`input_text`, `output_text`,
/// `refusal`, `input_image` with a data URL).
fn parse_content(content: Value, path: &str) -> Result<Vec<ContentBlock>, GatewayError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(text) if text.is_empty() => return Ok(Vec::new()),
        Value::String(text) => return Ok(vec![ContentBlock::Text(text)]),
        Value::Array(parts) => parts,
        other => {
            return Err(wrong_type(
                path,
                "a string or an array of content parts",
                &other,
            ))
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (index, part) in parts.into_iter().enumerate() {
        let part_path = format!("{path}[{index}]");
        let Value::Object(mut part) = part else {
            return Err(wrong_type(&part_path, "an object", &part));
        };
        let kind =
            take_string(&mut part, "type", &format!("{part_path}.type"))?.unwrap_or_default();
        match kind.as_str() {
            "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
                let text = take_string(&mut part, "text", &format!("{part_path}.text"))?.unwrap_or_default();
                if !text.is_empty() {
                    blocks.push(ContentBlock::Text(text));
                }
            }
            "refusal" => {
                if let Some(text) = take_string(&mut part, "refusal", &format!("{part_path}.refusal"))? {
                    blocks.push(ContentBlock::Text(text));
                }
            }
            "input_image" => {
                let url_path = format!("{part_path}.image_url");
                match take_string(&mut part, "image_url", &url_path)? {
                    Some(url) => blocks.push(ContentBlock::Image(parse_data_url(url, &url_path)?)),
                    None => {
                        return Err(invalid(
                            format!("`{url_path}` is required: send the image inline as a base64 data URL (`file_id` images are not supported)."),
                            url_path,
                        ))
                    }
                }
            }
            other => {
                return Err(invalid(
                    format!(
                        "`{part_path}.type` `{}` is not supported; the gateway accepts input_text, output_text, refusal and input_image parts.",
                        excerpt(other)
                    ),
                    format!("{part_path}.type"),
                ))
            }
        }
    }
    Ok(blocks)
}

fn required_string(
    item: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, GatewayError> {
    let field = format!("{path}.{key}");
    match take_string(item, key, &field)? {
        // An empty tool name or call id would reach Kiro as a malformed request.
        Some(value) if value.is_empty() => {
            Err(invalid(format!("`{field}` must not be empty."), field))
        }
        Some(value) => Ok(value),
        None => Err(invalid(format!("`{field}` is required."), field)),
    }
}

/// A tool call from history. Its id is the `call_id`, kept identical to Kiro's `toolUseId` both
/// ways so the outputs that follow match it.
fn parse_call(
    kind: &str,
    mut item: Map<String, Value>,
    path: &str,
) -> Result<ContentBlock, GatewayError> {
    let id = required_string(&mut item, "call_id", path)?;
    let (name, input) = match kind {
        "function_call" => {
            let name = required_string(&mut item, "name", path)?;
            let namespace = take_string(&mut item, "namespace", &format!("{path}.namespace"))?;
            let input = parse_arguments(item.remove("arguments"), &format!("{path}.arguments"))?;
            (ToolKinds::upstream_name(namespace.as_deref(), &name), input)
        }
        "custom_tool_call" => {
            let name = required_string(&mut item, "name", path)?;
            let namespace = take_string(&mut item, "namespace", &format!("{path}.namespace"))?;
            let input =
                take_string(&mut item, "input", &format!("{path}.input"))?.unwrap_or_default();
            (
                ToolKinds::upstream_name(namespace.as_deref(), &name),
                serde_json::json!({ "input": input }),
            )
        }
        _ => {
            // local_shell_call: `action` is `{"type":"exec","command":[...],...}`.
            let action = match item.remove("action") {
                Some(Value::Object(mut action)) => {
                    action.remove("type");
                    Value::Object(action)
                }
                _ => Value::Object(Map::new()),
            };
            ("local_shell".to_owned(), action)
        }
    };
    Ok(ContentBlock::ToolUse { id, name, input })
}

fn parse_call_output(
    mut item: Map<String, Value>,
    path: &str,
) -> Result<ContentBlock, GatewayError> {
    let tool_use_id = required_string(&mut item, "call_id", path)?;
    let content = parse_content(
        item.remove("output").unwrap_or(Value::Null),
        &format!("{path}.output"),
    )?;
    Ok(ContentBlock::ToolResult {
        tool_use_id,
        content,
        is_error: false,
    })
}

/// A reasoning item echoed back: its summary (or raw) text as thinking, its `encrypted_content`
/// (the signature the gateway put there) as the signature.
fn parse_reasoning_item(mut item: Map<String, Value>) -> Vec<ContentBlock> {
    let mut text = Vec::new();
    for key in ["summary", "content"] {
        if let Some(Value::Array(parts)) = item.remove(key) {
            text.extend(
                parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str).map(str::to_owned)),
            );
        }
    }
    if text.is_empty() {
        return Vec::new();
    }
    let signature = match item.remove("encrypted_content") {
        Some(Value::String(signature)) if !signature.is_empty() => Some(signature),
        _ => None,
    };
    vec![ContentBlock::Thinking {
        text: text.join("\n\n"),
        signature,
    }]
}

/// `arguments`: a JSON object encoded as a string (empty means no arguments).
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
