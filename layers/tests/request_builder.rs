//! Property and size tests for the Kiro request builder: whatever the conversation, the body
//! obeys the shape rules Kiro enforces (kiro-protocol.md §2.4).

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use kiro_layers::chat::{ChatRequest, ContentBlock, Dialect, Image, Message, Role, Tool};
use kiro_layers::kiro::request::{build_request, BuildOptions, KiroRequest};

const MODEL: &str = "claude-sonnet-4.5";

fn long_name(tag: &str) -> String {
    format!("mcp__plugin_{tag}_{}", "x".repeat(70))
}

fn name_pool() -> Vec<String> {
    vec![
        "read_file".to_owned(),
        "write_file".to_owned(),
        long_name("alpha"),
        long_name("beta"),
    ]
}

fn arb_block() -> impl Strategy<Value = ContentBlock> {
    let ids = prop::sample::select(vec!["t0", "t1", "t2", "t3", ""]);
    let names = prop::sample::select(name_pool());
    let texts = prop::sample::select(vec!["", " ", "hello", "line\nbreak", "ünïcödé"]);
    prop_oneof![
        3 => texts.prop_map(|t| ContentBlock::Text(t.to_owned())),
        1 => prop::sample::select(vec!["image/png", "image/jpeg", "image/webp"]).prop_map(|m| {
            ContentBlock::Image(Image { media_type: m.to_owned(), data: "QUJD".to_owned() })
        }),
        2 => (ids.clone(), names).prop_map(|(id, name)| ContentBlock::ToolUse {
            id: id.to_owned(),
            name,
            input: json!({"k": 1}),
        }),
        2 => (ids, any::<bool>(), prop::option::of(Just("result"))).prop_map(|(id, is_error, text)| {
            let mut content = Vec::new();
            if let Some(text) = text {
                content.push(ContentBlock::Text(text.to_owned()));
            }
            ContentBlock::ToolResult { tool_use_id: id.to_owned(), content, is_error }
        }),
        1 => Just(ContentBlock::Thinking { text: "reasoning".to_owned(), signature: None }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (prop::bool::ANY, prop::collection::vec(arb_block(), 0..4)).prop_map(|(is_user, content)| {
        Message {
            role: if is_user { Role::User } else { Role::Assistant },
            content,
        }
    })
}

fn arb_request() -> impl Strategy<Value = ChatRequest> {
    (
        prop::collection::vec(arb_message(), 1..10),
        prop::collection::vec(prop::sample::select(name_pool()), 0..4),
        prop::option::of(prop::sample::select(vec!["", "You are helpful."])),
    )
        .prop_map(|(messages, tool_names, system)| {
            let mut req = ChatRequest::user_text(Dialect::Anthropic, MODEL, "");
            req.messages = messages;
            req.system = system.map(str::to_owned);
            req.tools = tool_names
                .into_iter()
                .map(|name| Tool {
                    name,
                    description: String::new(),
                    input_schema: json!({"type": "object", "additionalProperties": false}),
                })
                .collect();
            req
        })
}

fn content_of(message: &Value) -> &str {
    message["content"].as_str().unwrap_or_default()
}

fn tool_use_ids(assistant: &Value) -> HashSet<String> {
    assistant["toolUses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| u["toolUseId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Checks every invariant; returns a description of the first violation.
fn check_invariants(req: &ChatRequest, built: &KiroRequest) -> Result<(), String> {
    let body: Value = serde_json::from_slice(&built.body).map_err(|e| e.to_string())?;
    let state = &body["conversationState"];
    let with_tools = !req.tools.is_empty();
    let client_names: HashSet<&str> = req
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .chain(
            req.messages
                .iter()
                .flat_map(|m| &m.content)
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { name, .. } => Some(name.as_str()),
                    _ => None,
                }),
        )
        .collect();
    let check_name = |sent: &str| -> Result<(), String> {
        if sent.chars().count() > 64 {
            return Err(format!("tool name over 64 chars: {sent}"));
        }
        let client = built.tool_names.to_client(sent);
        if !client_names.contains(client) || built.tool_names.to_upstream(client) != sent {
            return Err(format!(
                "tool name {sent} does not round-trip (client {client})"
            ));
        }
        Ok(())
    };

    let history = match state.get("history") {
        None => Vec::new(),
        Some(Value::Array(h)) if !h.is_empty() => h.clone(),
        Some(other) => {
            return Err(format!(
                "history present but empty or not an array: {other}"
            ))
        }
    };
    let mut previous_assistant: Option<&Value> = None;
    for (index, entry) in history.iter().enumerate() {
        let expect_user = index % 2 == 0;
        let user = entry.get("userInputMessage");
        let asst = entry.get("assistantResponseMessage");
        match (expect_user, user, asst) {
            (true, Some(user), None) => {
                check_user(user, previous_assistant, with_tools, false)?;
                previous_assistant = None;
            }
            (false, None, Some(asst)) => {
                if content_of(asst).trim().is_empty() {
                    return Err(format!("empty assistant content at history[{index}]"));
                }
                for tool_use in asst["toolUses"].as_array().into_iter().flatten() {
                    if !with_tools {
                        return Err("toolUses without tools".to_owned());
                    }
                    check_name(tool_use["name"].as_str().unwrap_or_default())?;
                    if !tool_use["input"].is_object() {
                        return Err("toolUse input is not an object".to_owned());
                    }
                }
                previous_assistant = Some(asst);
            }
            _ => return Err(format!("alternation broken at history[{index}]: {entry}")),
        }
    }
    if history.len() % 2 != 0 {
        return Err("history does not end with an assistant turn".to_owned());
    }
    let current = &state["currentMessage"]["userInputMessage"];
    check_user(current, previous_assistant, with_tools, true)?;
    for tool in current["userInputMessageContext"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
    {
        check_name(
            tool["toolSpecification"]["name"]
                .as_str()
                .unwrap_or_default(),
        )?;
    }
    Ok(())
}

fn check_user(
    user: &Value,
    previous_assistant: Option<&Value>,
    with_tools: bool,
    is_current: bool,
) -> Result<(), String> {
    if content_of(user).trim().is_empty() {
        return Err(format!("empty user content: {user}"));
    }
    if user["modelId"] != MODEL || user["origin"] != "AI_EDITOR" {
        return Err(format!("modelId/origin missing: {user}"));
    }
    let context = &user["userInputMessageContext"];
    if context.is_object() && context.as_object().is_some_and(|c| c.is_empty()) {
        return Err("empty userInputMessageContext".to_owned());
    }
    if !is_current && context.get("tools").is_some() {
        return Err("tools in history".to_owned());
    }
    let results = context["toolResults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !results.is_empty() && !with_tools {
        return Err("toolResults without tools".to_owned());
    }
    let open = previous_assistant.map(tool_use_ids).unwrap_or_default();
    let mut answered = HashSet::new();
    for result in &results {
        let id = result["toolUseId"].as_str().unwrap_or_default();
        if !open.contains(id) || !answered.insert(id.to_owned()) {
            return Err(format!(
                "toolResult {id} does not answer the previous assistant turn"
            ));
        }
        if result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            return Err("empty tool result text".to_owned());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_conversations_satisfy_kiro_shape_rules(req in arb_request()) {
        let built = build_request(&req, MODEL, None, &BuildOptions::default())
            .map_err(|e| TestCaseError::fail(e.message().to_owned()))?;
        if let Err(violation) = check_invariants(&req, &built) {
            return Err(TestCaseError::fail(format!(
                "{violation}\nbody: {}",
                String::from_utf8_lossy(&built.body)
            )));
        }
    }
}

/// About 200k tokens (~1.2 MB of text) over 400 turns with tool calls must build fast. In a debug
/// build the time is dominated by serde_json escaping the strings (measured: the same as
/// serializing one string of that size, ~0.3 s unoptimised); quadratic work over the turns would
/// add seconds.
#[test]
fn a_200k_token_conversation_builds_quickly() {
    let paragraph = "The quick brown fox jumps over the lazy dog. ".repeat(45); // ~2 KB
    let mut req = ChatRequest::user_text(Dialect::Anthropic, MODEL, "");
    req.messages.clear();
    for turn in 0..200 {
        let id = format!("call_{turn}");
        req.messages.push(Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult {
                    tool_use_id: format!("call_{}", turn.max(1) - 1),
                    content: vec![ContentBlock::Text(paragraph.clone())],
                    is_error: false,
                },
                ContentBlock::Text(paragraph.clone()),
            ],
        });
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text(paragraph.clone()),
                ContentBlock::ToolUse {
                    id,
                    name: long_name("alpha"),
                    input: json!({"path": "src/main.rs"}),
                },
            ],
        });
    }
    req.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::Text("go on".to_owned())],
    });
    req.tools = vec![Tool {
        name: long_name("alpha"),
        description: "reads".to_owned(),
        input_schema: json!({"type": "object"}),
    }];

    // Speed is measured in benches/stack.rs; here only the result is checked.
    let built = build_request(&req, MODEL, None, &BuildOptions::default()).unwrap();
    assert!(built.body.len() > 1_000_000);
    check_invariants(&req, &built).unwrap();
}
