//! The converter (every item kind, both ways) and the event writer (each case of
//! responses-api.md §3, byte for byte where the document quotes bytes).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use super::*;
use crate::chat::{
    ChatEvent, ChatRequest, ContentBlock, Dialect, EventStream, ResponseMeta, Role, StopReason,
    ThinkingRequest, TokenUsage,
};
use crate::error::GatewayError;

fn parse(body: Value) -> Result<(ChatRequest, ResponseContext), GatewayError> {
    parse_request(parse_body(body.to_string().as_bytes())?, Vec::new())
}

fn meta(id: &str) -> ResponseMeta {
    ResponseMeta {
        id: id.into(),
        model: "claude-sonnet-4.5".into(),
        created: 1_750_705_325,
        input_tokens_estimate: 10,
        context_window: 200_000,
        include_usage: true,
    }
}

fn events(list: Vec<Result<ChatEvent, GatewayError>>) -> EventStream {
    Box::pin(stream::iter(list))
}

fn ok(list: Vec<ChatEvent>) -> EventStream {
    events(list.into_iter().map(Ok).collect())
}

fn text(delta: &str) -> ChatEvent {
    ChatEvent::TextDelta(delta.into())
}

fn tool(id: &str, name: &str, fragments: &[&str]) -> Vec<ChatEvent> {
    let mut list = vec![ChatEvent::ToolUseStart {
        id: id.into(),
        name: name.into(),
    }];
    list.extend(fragments.iter().map(|fragment| ChatEvent::ToolUseInput {
        id: id.into(),
        fragment: (*fragment).into(),
    }));
    list.push(ChatEvent::ToolUseStop { id: id.into() });
    list
}

/// `(event name, data)` pairs of an SSE body, checking the framing on the way.
async fn sse(events: EventStream, id: &str, context: ResponseContext) -> Vec<(String, String)> {
    let chunks: Vec<Bytes> = sse_stream(events, meta(id), context, None).collect().await;
    let body = String::from_utf8(chunks.concat()).unwrap();
    assert!(body.ends_with("\n\n"), "every event ends with a blank line");
    body.trim_end()
        .split("\n\n")
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let event = event.strip_prefix("event: ").unwrap().to_owned();
            let data = data.strip_prefix("data: ").unwrap().to_owned();
            let parsed: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(
                parsed["type"],
                event.as_str(),
                "data repeats the event type"
            );
            (event, data)
        })
        .collect()
}

fn context_of(body: Value) -> ResponseContext {
    parse(body).unwrap().1
}

fn plain_context() -> ResponseContext {
    context_of(json!({"model": "m", "input": "hi"}))
}

/// The event named `kind` (the `nth` of them), as its data string.
fn data<'a>(events: &'a [(String, String)], kind: &str, nth: usize) -> &'a str {
    &events
        .iter()
        .filter(|(event, _)| event == kind)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {kind} #{nth}"))
        .1
}

/// Document bytes with their `sequence_number` replaced by ours: the document trims deltas, so
/// its numbering skips; everything else must match byte for byte.
fn with_sequence(document: &str, ours: &str) -> String {
    let number = |text: &str| {
        let start = text.find("\"sequence_number\":").unwrap() + 18;
        let end = start + text[start..].find(|c: char| !c.is_ascii_digit()).unwrap();
        text[start..end].to_owned()
    };
    document.replacen(
        &format!("\"sequence_number\":{}", number(document)),
        &format!("\"sequence_number\":{}", number(ours)),
        1,
    )
}

fn names(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(event, _)| event.as_str()).collect()
}

fn json_of(data: &str) -> Value {
    serde_json::from_str(data).unwrap()
}

// ---------------------------------------------------------------- request: items -> canonical

#[test]
fn a_string_input_is_one_user_turn_and_instructions_are_the_system_prompt() {
    let (chat, context) = parse(json!({
        "model": "claude-sonnet-4.5", "input": "Hello", "instructions": "Be brief."
    }))
    .unwrap();
    assert_eq!(chat.dialect, Dialect::Responses);
    assert_eq!(chat.system.as_deref(), Some("Be brief."));
    assert_eq!(chat.messages.len(), 1);
    assert_eq!(chat.messages[0].role, Role::User);
    assert_eq!(
        chat.messages[0].content,
        vec![ContentBlock::Text("Hello".into())]
    );
    assert!(!chat.stream);
    assert!(context.echo.store, "store defaults to true");
    assert_eq!(context.echo.tool_choice, json!("auto"));
}

#[test]
fn message_items_of_every_role_and_part_kind() {
    let (chat, _) = parse(json!({
        "model": "m",
        "instructions": "Codex rules.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev note."}]},
            {"role": "system", "content": "Sys note."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "what is in this image?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
            ]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "thanks"}
        ]
    }))
    .unwrap();
    assert_eq!(
        chat.system.as_deref(),
        Some("Codex rules.\n\nDev note.\n\nSys note.")
    );
    assert_eq!(
        chat.messages.len(),
        3,
        "consecutive assistant messages share one turn"
    );
    match &chat.messages[0].content[1] {
        ContentBlock::Image(image) => {
            assert_eq!(image.media_type, "image/png");
            assert_eq!(image.data, "iVBORw0KGgo=");
        }
        other => panic!("expected an image, got {other:?}"),
    }
    assert_eq!(
        chat.messages[1].content,
        vec![
            ContentBlock::Text("A cat.".into()),
            ContentBlock::Text("No.".into())
        ]
    );
    assert_eq!(
        chat.messages[2].content,
        vec![ContentBlock::Text("thanks".into())]
    );
}

#[test]
fn tool_call_items_and_their_outputs() {
    let (chat, _) = parse(json!({
        "model": "m",
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files."}],
        "input": [
            {"role": "user", "content": "fix it"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Planning**"}], "encrypted_content": "sig-1"},
            {"type": "function_call", "name": "shell", "arguments": "{\"command\":[\"ls\"]}", "call_id": "call_a"},
            {"type": "custom_tool_call", "call_id": "call_b", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
            {"type": "local_shell_call", "call_id": "call_c", "status": "completed",
             "action": {"type": "exec", "command": ["echo", "hi"], "env": {}}},
            {"type": "function_call", "name": "spawn", "namespace": "collab", "arguments": "", "call_id": "call_d"},
            {"type": "function_call_output", "call_id": "call_a", "output": "file.txt"},
            {"type": "custom_tool_call_output", "call_id": "call_b", "output": "Done!"},
            {"type": "local_shell_call_output", "call_id": "call_c", "output": "hi\n"},
            {"type": "function_call_output", "call_id": "call_d", "output": [
                {"type": "input_text", "text": "spawned"},
                {"type": "input_image", "image_url": "data:image/gif;base64,R0lGOD=="}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(chat.messages.len(), 3);
    let assistant = &chat.messages[1];
    assert_eq!(assistant.role, Role::Assistant);
    assert_eq!(
        assistant.content[0],
        ContentBlock::Thinking {
            text: "**Planning**".into(),
            signature: Some("sig-1".into())
        }
    );
    assert_eq!(
        assistant.content[1],
        ContentBlock::ToolUse {
            id: "call_a".into(),
            name: "shell".into(),
            input: json!({"command": ["ls"]})
        }
    );
    assert_eq!(
        assistant.content[2],
        ContentBlock::ToolUse {
            id: "call_b".into(),
            name: "apply_patch".into(),
            input: json!({"input": "*** Begin Patch\n*** End Patch"})
        }
    );
    assert_eq!(
        assistant.content[3],
        ContentBlock::ToolUse {
            id: "call_c".into(),
            name: "local_shell".into(),
            input: json!({"command": ["echo", "hi"], "env": {}})
        }
    );
    assert_eq!(
        assistant.content[4],
        ContentBlock::ToolUse {
            id: "call_d".into(),
            name: "collab__spawn".into(),
            input: json!({})
        }
    );
    let results = &chat.messages[2];
    assert_eq!(results.role, Role::User);
    let ids: Vec<&str> = results
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::ToolResult { tool_use_id, .. } => tool_use_id.as_str(),
            other => panic!("expected a tool result, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, ["call_a", "call_b", "call_c", "call_d"]);
    match &results.content[3] {
        ContentBlock::ToolResult { content, .. } => {
            assert_eq!(content[0], ContentBlock::Text("spawned".into()));
            assert!(matches!(content[1], ContentBlock::Image(_)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_tool_kind_is_translated_and_none_is_refused() {
    let (chat, context) = parse(json!({
        "model": "m",
        "input": [
            {"role": "user", "content": "go"},
            {"type": "additional_tools", "role": "developer", "tools": [
                {"type": "function", "name": "view_image", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}
            ]},
            {"type": "compaction_trigger"},
            {"type": "item_reference", "id": "msg_1"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"}
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Runs a shell command.", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}},
            {"type": "custom", "name": "apply_patch", "description": "Use the `apply_patch` tool to edit files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}},
            {"type": "local_shell"},
            {"type": "web_search"},
            {"type": "namespace", "name": "collaboration", "description": "Sub-agents.",
             "tools": [{"type": "function", "name": "spawn", "parameters": {}}]}
        ]
    }))
    .unwrap();
    let names: Vec<&str> = chat.tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "shell",
            "apply_patch",
            "local_shell",
            "collaboration__spawn",
            "view_image"
        ]
    );
    let patch = &chat.tools[1];
    assert_eq!(patch.input_schema, tools::custom_tool_schema());
    assert!(patch
        .description
        .contains("start: begin_patch hunk+ end_patch"));
    assert_eq!(
        context.tools.lookup("apply_patch").unwrap().kind,
        ToolKind::Custom
    );
    assert_eq!(
        context.tools.lookup("local_shell").unwrap().kind,
        ToolKind::LocalShell
    );
    let spawn = context.tools.lookup("collaboration__spawn").unwrap();
    assert_eq!(
        (spawn.name.as_str(), spawn.namespace.as_deref()),
        ("spawn", Some("collaboration"))
    );
    assert_eq!(
        context.tools.lookup("view_image").unwrap().kind,
        ToolKind::Function
    );
    assert_eq!(
        context.echo.tools.as_array().unwrap().len(),
        5,
        "tools echo as sent"
    );
}

#[test]
fn tool_choice_parallel_calls_and_sampling_fields() {
    let base = json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        parse(body).unwrap()
    };
    let (chat, _) = with(json!({"tool_choice": "none"}));
    assert!(chat.tools.is_empty(), "none: the tools are not offered");
    let (chat, _) = with(json!({"tool_choice": "required"}));
    assert!(chat.system.unwrap().contains("calling at least one"));
    let (chat, context) = with(
        json!({"tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false,
        "temperature": 0.2, "top_p": 0.9, "metadata": {"ticket": "42"}, "user": "u-1"}),
    );
    assert!(chat.system.unwrap().contains("`f`"));
    assert!(!context.echo.parallel_tool_calls);
    assert_eq!(context.echo.temperature, Some(0.2));
    assert_eq!(context.echo.top_p, Some(0.9));
    assert_eq!(context.echo.metadata, json!({"ticket": "42"}));
    assert_eq!(chat.end_user.as_deref(), Some("u-1"));
    assert!(parse(json!({"model": "m", "input": "x", "tool_choice": "sometimes"})).is_err());
}

#[test]
fn reasoning_effort_sets_the_thinking_budget_and_summary_the_output_form() {
    let (chat, context) = parse(json!({"model": "m", "input": "x", "max_output_tokens": 1000,
        "reasoning": {"effort": "high", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}))
    .unwrap();
    assert_eq!(chat.thinking, ThinkingRequest::Budget(800));
    assert_eq!(chat.max_tokens, Some(1000));
    assert!(context.summary && context.encrypted_reasoning);
    assert_eq!(
        context.echo.reasoning,
        json!({"effort": "high", "summary": "auto"})
    );
    let (chat, context) =
        parse(json!({"model": "m", "input": "x", "reasoning": {"effort": "none"}})).unwrap();
    assert_eq!(chat.thinking, ThinkingRequest::Disabled);
    assert!(!context.summary);
    let (chat, _) = parse(json!({"model": "m", "input": "x"})).unwrap();
    assert_eq!(chat.thinking, ThinkingRequest::Default);
    let error =
        parse(json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}})).unwrap_err();
    assert_eq!(
        error.body(Dialect::Responses)["error"]["param"],
        "reasoning.effort"
    );
}

#[test]
fn json_formats_become_an_instruction() {
    let (chat, context) = parse(json!({"model": "m", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "codex_output_schema", "strict": true,
        "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}))
    .unwrap();
    let system = chat.system.unwrap();
    assert!(system.contains("codex_output_schema") && system.contains("\"ok\""));
    assert!(context.text_format.is_json());
    assert_eq!(context.echo.text["format"]["type"], "json_schema");
    let (chat, _) =
        parse(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}))
            .unwrap();
    assert!(chat.system.unwrap().contains("JSON object"));
    assert!(parse(
        json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}})
    )
    .is_err());
}

#[test]
fn bad_requests_name_the_field() {
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 5}), "input"),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "call_id": "c", "arguments": "[1]"}]}),
            "input[0].arguments",
        ),
        // Found by the `convert` fuzz target: an empty name reached Kiro as a malformed request.
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "", "call_id": "c", "arguments": "{}"}]}),
            "input[0].name",
        ),
        (
            json!({"model": "m", "input": [{"type": "custom_tool_call", "name": "", "call_id": "c", "input": "x"}]}),
            "input[0].name",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}),
            "input[0].content[0].image_url",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
    ];
    for (body, param) in cases {
        let error = parse(body.clone()).unwrap_err();
        assert_eq!(error.status(), 400, "{body}");
        assert_eq!(
            error.body(Dialect::Responses)["error"]["param"],
            param,
            "{body}"
        );
    }
    assert!(parse_body(b"{nope").is_err());
    assert!(parse_body(b"[1]").is_err());
}

#[test]
fn previous_items_go_in_front_of_the_input() {
    let prior = vec![
        json!({"type": "message", "role": "user", "content": "first"}),
        json!({"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "annotations": [], "text": "one"}]}),
    ];
    let body =
        parse_body(br#"{"model":"m","input":"second","previous_response_id":"resp_1"}"#).unwrap();
    assert_eq!(body.previous_response_id(), Some("resp_1"));
    let (chat, context) = parse_request(body, prior).unwrap();
    let texts: Vec<_> = chat
        .messages
        .iter()
        .map(|m| (m.role, m.content.clone()))
        .collect();
    assert_eq!(
        texts,
        [
            (Role::User, vec![ContentBlock::Text("first".into())]),
            (Role::Assistant, vec![ContentBlock::Text("one".into())]),
            (Role::User, vec![ContentBlock::Text("second".into())]),
        ]
    );
    assert_eq!(
        context.input_items.len(),
        3,
        "the stored conversation grows by this input"
    );
    assert_eq!(context.echo.previous_response_id.as_deref(), Some("resp_1"));
}

// ---------------------------------------------------------------- output: canonical -> items

/// Output items of a collected answer fed back as input give the same canonical blocks: the
/// converter's two directions agree for every item kind.
#[tokio::test]
async fn every_output_item_kind_round_trips_as_input() {
    let request = json!({
        "model": "m", "input": "go", "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch"},
            {"type": "local_shell"},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn"}]}
        ]
    });
    let context = context_of(request.clone());
    let mut list = vec![
        ChatEvent::ReasoningDelta("Think.".into()),
        ChatEvent::ReasoningSignature("sig".into()),
        text("Doing it."),
    ];
    list.extend(tool("call_1", "shell", &["{\"command\":", "[\"ls\"]}"]));
    list.extend(tool(
        "call_2",
        "apply_patch",
        &["{\"input\":\"*** Begin Patch\\n*** End Patch\"}"],
    ));
    list.extend(tool(
        "call_3",
        "local_shell",
        &["{\"command\":[\"echo\",\"hi\"]}"],
    ));
    list.extend(tool("call_4", "ns__spawn", &[]));
    list.push(ChatEvent::Stop(StopReason::ToolUse));
    let body = collect_response(ok(list), meta("resp_rt"), context, None)
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(response["status"], "completed");
    let output = response["output"].as_array().unwrap();
    let kinds: Vec<&str> = output
        .iter()
        .map(|item| item["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "reasoning",
            "message",
            "function_call",
            "custom_tool_call",
            "local_shell_call",
            "function_call"
        ]
    );
    assert_eq!(output[0]["summary"][0]["text"], "Think.");
    assert_eq!(output[0]["encrypted_content"], "sig");
    assert_eq!(output[2]["arguments"], "{\"command\":[\"ls\"]}");
    assert_eq!(output[3]["input"], "*** Begin Patch\n*** End Patch");
    assert_eq!(
        output[4]["action"],
        json!({"type": "exec", "command": ["echo", "hi"], "timeout_ms": null, "working_directory": null, "env": {}, "user": null})
    );
    assert_eq!(
        (
            &output[5]["name"],
            &output[5]["namespace"],
            &output[5]["arguments"]
        ),
        (&json!("spawn"), &json!("ns"), &json!("{}"))
    );

    let mut again = request;
    let mut input = vec![json!({"role": "user", "content": "go"})];
    input.extend(output.iter().cloned());
    again["input"] = Value::Array(input);
    let (chat, _) = parse(again).unwrap();
    assert_eq!(
        chat.messages[1].content,
        vec![
            ContentBlock::Thinking {
                text: "Think.".into(),
                signature: Some("sig".into())
            },
            ContentBlock::Text("Doing it.".into()),
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "shell".into(),
                input: json!({"command": ["ls"]})
            },
            ContentBlock::ToolUse {
                id: "call_2".into(),
                name: "apply_patch".into(),
                input: json!({"input": "*** Begin Patch\n*** End Patch"})
            },
            ContentBlock::ToolUse {
                id: "call_3".into(),
                name: "local_shell".into(),
                input: json!({"command": ["echo", "hi"], "timeout_ms": null, "working_directory": null, "env": {}, "user": null})
            },
            ContentBlock::ToolUse {
                id: "call_4".into(),
                name: "ns__spawn".into(),
                input: json!({})
            },
        ]
    );
}

#[tokio::test]
async fn the_collected_object_has_every_field_and_full_usage() {
    let context = context_of(
        json!({"model": "m", "input": "x", "metadata": {"a": "b"}, "max_output_tokens": 50}),
    );
    let list = vec![
        text("Hi"),
        ChatEvent::TokenUsage(TokenUsage {
            input_tokens: 7,
            output_tokens: 3,
            cache_read_input_tokens: 5,
            cache_write_input_tokens: 0,
        }),
        ChatEvent::Stop(StopReason::EndTurn),
    ];
    let body = collect_response(ok(list), meta("resp_1"), context, None)
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&body).unwrap();
    for key in [
        "id",
        "object",
        "created_at",
        "status",
        "model",
        "output",
        "parallel_tool_calls",
        "tool_choice",
        "tools",
        "error",
        "incomplete_details",
        "metadata",
        "usage",
    ] {
        assert!(response.get(key).is_some(), "{key}");
    }
    assert_eq!(response["object"], "response");
    assert_eq!(response["metadata"], json!({"a": "b"}));
    assert_eq!(response["max_output_tokens"], 50);
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 5}, "output_tokens": 3,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15})
    );
    assert_eq!(
        response["output"][0]["content"],
        json!([{"type": "output_text", "annotations": [], "text": "Hi"}])
    );
}

#[tokio::test]
async fn a_json_answer_in_a_code_fence_is_unwrapped_when_collected() {
    let context = context_of(
        json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}),
    );
    let body = collect_response(
        ok(vec![text("```json\n{\"ok\": true}\n```")]),
        meta("resp_j"),
        context,
        None,
    )
    .await
    .unwrap();
    let response: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        response["output"][0]["content"][0]["text"],
        "{\"ok\": true}"
    );
}

#[tokio::test]
async fn an_error_while_collecting_is_returned_for_an_http_error() {
    let list = vec![Ok(text("a")), Err(GatewayError::rate_limited("slow down"))];
    let error = collect_response(events(list), meta("resp_e"), plain_context(), None)
        .await
        .unwrap_err();
    assert!(error.is_rate_limited());
}

// ---------------------------------------------------------------- event writer, §3 cases

/// §3.2: plain text, recorded from OpenAI.
#[tokio::test]
async fn plain_text_streams_as_recorded() {
    let events = sse(
        ok(vec![
            text("I"),
            text(" am"),
            ChatEvent::Stop(StopReason::EndTurn),
        ]),
        "resp_6859a4af",
        plain_context(),
    )
    .await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (index, (_, data)) in events.iter().enumerate() {
        assert_eq!(
            json_of(data)["sequence_number"],
            index,
            "sequence numbers count from 0"
        );
    }
    assert_eq!(
        events[2].1,
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_6859a4af","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#
    );
    assert_eq!(
        events[3].1,
        r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_6859a4af","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":""}}"#
    );
    // The recording predates `logprobs`, which the SDK's models now require (§3.2 note).
    assert_eq!(
        events[4].1,
        r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_6859a4af","output_index":0,"content_index":0,"delta":"I","logprobs":[]}"#
    );
    assert_eq!(
        events[5].1,
        r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_6859a4af","output_index":0,"content_index":0,"delta":" am","logprobs":[]}"#
    );
    assert_eq!(
        events[7].1,
        r#"{"type":"response.content_part.done","sequence_number":7,"item_id":"msg_6859a4af","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":"I am"}}"#
    );
    assert_eq!(
        events[8].1,
        r#"{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"id":"msg_6859a4af","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"text":"I am"}],"role":"assistant"}}"#
    );
    let created = json_of(&events[0].1);
    assert_eq!(created["response"]["status"], "in_progress");
    assert_eq!(created["response"]["output"], json!([]));
    assert_eq!(created["response"]["usage"], Value::Null);
    let completed = json_of(&events[9].1);
    assert_eq!(completed["response"]["id"], "resp_6859a4af");
    assert_eq!(completed["response"]["status"], "completed");
    assert_eq!(
        completed["response"]["output"][0],
        json_of(&events[8].1)["item"],
        "completed carries the whole output"
    );
    assert!(
        completed["response"]["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        completed.get("error").is_none(),
        "no top-level error key: the SDK would raise"
    );
}

/// §3.3: function calls, recorded from OpenAI (the `.done` event also names the function, as the
/// SDK's model has it).
#[tokio::test]
async fn function_calls_stream_as_recorded() {
    let context = context_of(json!({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "search"}, {"type": "function", "name": "weather"}]}));
    let mut list = tool(
        "call_GXd80NWdsX8ng3xdeNLeA42o",
        "search",
        &[
            "{",
            "\"query\":\"Detroit Tigers game time October 6, 2023\"}",
        ],
    );
    list.extend(tool("call_qfdHN9tTntv02109c9RNnGGe", "weather", &["{}"]));
    list.push(ChatEvent::Stop(StopReason::ToolUse));
    let events = sse(ok(list), "resp_6859a4b3", context).await;
    let doc_added = r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"fc_6859a4b3","type":"function_call","status":"in_progress","arguments":"","call_id":"call_GXd80NWdsX8ng3xdeNLeA42o","name":"search"}}"#;
    assert_eq!(data(&events, "response.output_item.added", 0), doc_added);
    let doc_delta = r#"{"type":"response.function_call_arguments.delta","sequence_number":3,"item_id":"fc_6859a4b3","output_index":0,"delta":"{"}"#;
    assert_eq!(
        data(&events, "response.function_call_arguments.delta", 0),
        doc_delta
    );
    let doc_done = r#"{"type":"response.function_call_arguments.done","sequence_number":18,"item_id":"fc_6859a4b3","output_index":0,"arguments":"{\"query\":\"Detroit Tigers game time October 6, 2023\"}"}"#;
    let ours = data(&events, "response.function_call_arguments.done", 0);
    assert_eq!(
        ours,
        with_sequence(doc_done, ours).replace("\"}\"}", "\"}\",\"name\":\"search\"}")
    );
    let doc_item_done = r#"{"type":"response.output_item.done","sequence_number":19,"output_index":0,"item":{"id":"fc_6859a4b3","type":"function_call","status":"completed","arguments":"{\"query\":\"Detroit Tigers game time October 6, 2023\"}","call_id":"call_GXd80NWdsX8ng3xdeNLeA42o","name":"search"}}"#;
    let ours = data(&events, "response.output_item.done", 0);
    assert_eq!(ours, with_sequence(doc_item_done, ours));
    let second = json_of(data(&events, "response.output_item.added", 1));
    assert_eq!(second["output_index"], 1);
    assert_eq!(second["item"]["name"], "weather");
    let completed = json_of(data(&events, "response.completed", 0));
    assert_eq!(completed["response"]["output"].as_array().unwrap().len(), 2);
}

/// §3.3, text then a tool call: two items in order, never interleaved; a call with no
/// arguments gets `{}` as its one delta so deltas add up to the final arguments.
#[tokio::test]
async fn text_then_a_tool_call_are_sequential_items() {
    let context = context_of(
        json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "ls"}]}),
    );
    let mut list = vec![text("Let me look.")];
    list.extend(tool("call_1", "ls", &[]));
    let events = sse(ok(list), "resp_t", context).await;
    assert_eq!(
        names(&events)[2..],
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(
        json_of(data(&events, "response.function_call_arguments.delta", 0))["delta"],
        "{}"
    );
    assert_eq!(
        json_of(data(&events, "response.output_item.done", 1))["output_index"],
        1
    );
}

/// §3.4: reasoning summary, recorded from OpenAI -> Codex.
#[tokio::test]
async fn reasoning_summary_streams_as_recorded() {
    let context = context_of(
        json!({"model": "m", "input": "x", "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"]}),
    );
    let list = vec![
        ChatEvent::ReasoningDelta("**Appending".into()),
        ChatEvent::ReasoningDelta(" random line with newline**".into()),
        ChatEvent::ReasoningSignature("gAAAAB...".into()),
    ];
    let events = sse(ok(list), "resp_015d24a4", context).await;
    let docs = [
        (
            "response.reasoning_summary_part.added",
            r#"{"type":"response.reasoning_summary_part.added","sequence_number":3,"item_id":"rs_015d24a4","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}"#,
        ),
        (
            "response.reasoning_summary_text.delta",
            r#"{"type":"response.reasoning_summary_text.delta","sequence_number":4,"item_id":"rs_015d24a4","output_index":0,"summary_index":0,"delta":"**Appending"}"#,
        ),
        (
            "response.reasoning_summary_text.done",
            r#"{"type":"response.reasoning_summary_text.done","sequence_number":10,"item_id":"rs_015d24a4","output_index":0,"summary_index":0,"text":"**Appending random line with newline**"}"#,
        ),
        (
            "response.reasoning_summary_part.done",
            r#"{"type":"response.reasoning_summary_part.done","sequence_number":11,"item_id":"rs_015d24a4","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"**Appending random line with newline**"}}"#,
        ),
        (
            "response.output_item.done",
            r#"{"type":"response.output_item.done","sequence_number":12,"output_index":0,"item":{"id":"rs_015d24a4","type":"reasoning","summary":[{"type":"summary_text","text":"**Appending random line with newline**"}],"encrypted_content":"gAAAAB..."}}"#,
        ),
    ];
    for (kind, doc) in docs {
        let ours = data(&events, kind, 0);
        assert_eq!(ours, with_sequence(doc, ours), "{kind}");
    }
    // The added item has no signature yet (Kiro sends it at the end of the block).
    assert_eq!(
        data(&events, "response.output_item.added", 0),
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_015d24a4","type":"reasoning","summary":[]}}"#
    );
}

/// Without `reasoning.summary` the reasoning goes out as raw `reasoning_text`, and without
/// `include: ["reasoning.encrypted_content"]` no signature leaves.
#[tokio::test]
async fn raw_reasoning_without_a_summary_request() {
    let list = vec![
        ChatEvent::ReasoningDelta("The".into()),
        ChatEvent::ReasoningSignature("sig".into()),
        text("Answer"),
    ];
    let events = sse(ok(list), "resp_123", plain_context()).await;
    assert_eq!(
        data(&events, "response.reasoning_text.delta", 0),
        r#"{"type":"response.reasoning_text.delta","sequence_number":3,"item_id":"rs_123","output_index":0,"content_index":0,"delta":"The"}"#
    );
    let item = json_of(data(&events, "response.output_item.done", 0));
    assert_eq!(
        item["item"],
        json!({"id": "rs_123", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "The"}]})
    );
    assert_eq!(
        json_of(data(&events, "response.output_item.added", 1))["output_index"],
        1
    );
}

/// §3.5: a freeform (`custom`) tool call comes back as `custom_tool_call` with the raw input,
/// as Codex's `apply_patch` needs; a function call for it would abort Codex's turn.
#[tokio::test]
async fn a_custom_tool_call_streams_as_recorded() {
    let context = context_of(
        json!({"model": "m", "input": "x", "reasoning": {"summary": "auto"},
        "tools": [{"type": "custom", "name": "apply_patch"}]}),
    );
    let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n ...\n*** End Patch";
    let mut list = vec![ChatEvent::ReasoningDelta("plan".into())];
    let arguments = json!({ "input": patch }).to_string();
    let (head, tail) = arguments.split_at(9);
    list.extend(tool(
        "call_cprfE7SLN4qo57HclVvuM1H8",
        "apply_patch",
        &[head, tail],
    ));
    let events = sse(ok(list), "resp_015d24a4", context).await;
    let doc_added = r#"{"type":"response.output_item.added","sequence_number":13,"output_index":1,"item":{"id":"ctc_015d24a4","type":"custom_tool_call","status":"in_progress","call_id":"call_cprfE7SLN4qo57HclVvuM1H8","name":"apply_patch","input":""}}"#;
    let ours = data(&events, "response.output_item.added", 1);
    assert_eq!(ours, with_sequence(doc_added, ours));
    let doc_done = r#"{"type":"response.custom_tool_call_input.done","sequence_number":88,"item_id":"ctc_015d24a4","output_index":1,"input":"*** Begin Patch\n*** Update File: README.md\n@@\n ...\n*** End Patch"}"#;
    let ours = data(&events, "response.custom_tool_call_input.done", 0);
    assert_eq!(ours, with_sequence(doc_done, ours));
    let delta = json_of(data(&events, "response.custom_tool_call_input.delta", 0));
    assert_eq!(delta["delta"], patch);
    let doc_item = r#"{"type":"response.output_item.done","sequence_number":89,"output_index":1,"item":{"id":"ctc_015d24a4","type":"custom_tool_call","status":"completed","call_id":"call_cprfE7SLN4qo57HclVvuM1H8","name":"apply_patch","input":"*** Begin Patch\n*** Update File: README.md\n@@\n ...\n*** End Patch"}}"#;
    let ours = data(&events, "response.output_item.done", 1);
    assert_eq!(ours, with_sequence(doc_item, ours));
}

/// §3.6: the output limit reached ends in `response.incomplete`, the message marked incomplete.
#[tokio::test]
async fn the_output_limit_ends_in_response_incomplete() {
    let context = context_of(json!({"model": "m", "input": "x", "max_output_tokens": 16}));
    let list = vec![
        text("Truncated ..."),
        ChatEvent::Stop(StopReason::MaxTokens),
    ];
    let events = sse(ok(list), "resp_1", context).await;
    assert_eq!(names(&events).last(), Some(&"response.incomplete"));
    assert!(!names(&events).contains(&"response.completed"));
    let doc_text_done = r#"{"type":"response.output_text.done","sequence_number":40,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Truncated ...","logprobs":[]}"#;
    let ours = data(&events, "response.output_text.done", 0);
    assert_eq!(ours, with_sequence(doc_text_done, ours));
    let doc_part_done = r#"{"type":"response.content_part.done","sequence_number":41,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":"Truncated ..."}}"#;
    let ours = data(&events, "response.content_part.done", 0);
    assert_eq!(ours, with_sequence(doc_part_done, ours));
    let item = json_of(data(&events, "response.output_item.done", 0));
    assert_eq!(item["item"]["status"], "incomplete");
    let incomplete = json_of(data(&events, "response.incomplete", 0));
    assert_eq!(incomplete["response"]["status"], "incomplete");
    assert_eq!(
        incomplete["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(incomplete["response"]["output"][0]["status"], "incomplete");
    assert!(incomplete["response"]["usage"].is_object());
}

/// A Kiro cut that recovery could not mend also arrives as `Stop(MaxTokens)`: never
/// `completed`. A content filter stop is incomplete with its own reason.
#[tokio::test]
async fn a_cut_or_filtered_answer_is_never_completed() {
    let events = sse(
        ok(vec![text("half"), ChatEvent::Stop(StopReason::MaxTokens)]),
        "resp_c",
        plain_context(),
    )
    .await;
    assert_eq!(names(&events).last(), Some(&"response.incomplete"));
    let events = sse(
        ok(vec![
            text("x"),
            ChatEvent::Stop(StopReason::ContentFiltered),
        ]),
        "resp_f",
        plain_context(),
    )
    .await;
    let last = json_of(&events.last().unwrap().1);
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "content_filter"
    );
}

/// §3.7: a failure after the stream began ends in `response.failed` with the code Codex acts on,
/// inside `response.error`.
#[tokio::test]
async fn failures_after_the_start_end_in_response_failed() {
    let cases = [
        (
            GatewayError::context_length_exceeded("Input is too long for the model."),
            "context_length_exceeded",
            "Input is too long",
        ),
        (
            GatewayError::rate_limited("Rate limit reached.")
                .with_retry_after(Duration::from_secs(11)),
            "rate_limit_exceeded",
            "try again in 11s",
        ),
        (
            GatewayError::upstream_stream("The upstream stream broke."),
            "server_error",
            "stream broke",
        ),
    ];
    for (error, code, message) in cases {
        let list = vec![Ok(text("partial")), Err(error)];
        let events = sse(events(list), "resp_x", plain_context()).await;
        let names = names(&events);
        assert_eq!(names.last(), Some(&"response.failed"), "{code}");
        assert!(!names.contains(&"response.completed") && !names.contains(&"error"));
        let failed = json_of(&events.last().unwrap().1);
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(failed["response"]["error"]["code"], code);
        assert!(
            failed["response"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{failed}"
        );
        assert!(failed.get("error").is_none());
        assert_eq!(
            failed["response"]["output"][0]["status"], "incomplete",
            "the cut message is kept, marked"
        );
    }
    // A failure before any output still opens with response.created (the SDK requires it first).
    let events = sse(
        events(vec![Err(GatewayError::upstream_stream("gone"))]),
        "resp_y",
        plain_context(),
    )
    .await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
}

/// The stream hands a completed response to `on_finished` (to store it), with the input and the
/// output as the conversation.
#[tokio::test]
async fn a_finished_stream_is_handed_on_for_storage() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let on_finished: OnFinished = Box::new(move |finished| sender.send(finished).unwrap());
    let stream = sse_stream(
        ok(vec![text("Hi")]),
        meta("resp_s"),
        plain_context(),
        Some(on_finished),
    );
    let _: Vec<Bytes> = stream.collect().await;
    let finished = receiver.recv().unwrap();
    assert_eq!(finished.id, "resp_s");
    assert_eq!(finished.response["status"], "completed");
    assert_eq!(finished.items.len(), 2);
    assert_eq!(finished.items[0]["content"], "hi");
    assert_eq!(finished.items[1]["type"], "message");
}

/// `text.format` is validated: an answer that breaks it is never reported as completed.
#[tokio::test]
async fn an_answer_that_breaks_its_json_format_is_not_completed() {
    let schema = json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "city",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
                   "required": ["city"], "additionalProperties": false}}}});
    let good = [
        r#"{"city": "Paris"}"#,
        "```json\n{\"city\": \"Paris\", \"tags\": [\"a\"]}\n```",
    ];
    let bad = [
        ("Sure! Here it is: {\"city\": 1}", "not valid JSON"),
        (r#"{"town": "Paris"}"#, "$.city is missing"),
        (r#"{"city": 5}"#, "$.city should be string"),
        (
            r#"{"city": "P", "tags": [1]}"#,
            "$.tags[0] should be string",
        ),
        (r#"{"city": "P", "extra": true}"#, "$.extra is not allowed"),
    ];
    for answer in good {
        let body = collect_response(
            ok(vec![text(answer)]),
            meta("resp_g"),
            context_of(schema.clone()),
            None,
        )
        .await
        .unwrap();
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(response["status"], "completed", "{answer}");
        let parsed: Value = serde_json::from_str(
            response["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(parsed["city"], "Paris");
    }
    for (answer, reason) in bad {
        let error = collect_response(
            ok(vec![text(answer)]),
            meta("resp_b"),
            context_of(schema.clone()),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            error.message().contains(reason),
            "{answer}: {}",
            error.message()
        );
        let events = sse(ok(vec![text(answer)]), "resp_b", context_of(schema.clone())).await;
        assert_eq!(names(&events).last(), Some(&"response.failed"), "{answer}");
        assert!(!names(&events).contains(&"response.completed"));
    }
    let object = json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}});
    let error = collect_response(
        ok(vec![text("[1, 2]")]),
        meta("resp_o"),
        context_of(object),
        None,
    )
    .await
    .unwrap_err();
    assert!(error.message().contains("not an object"));
}

mod never_panics {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::{parse, parse_body};

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "",
                "message",
                "function_call",
                "function_call_output",
                "custom_tool_call",
                "custom_tool_call_output",
                "local_shell_call",
                "reasoning",
                "additional_tools",
                "user",
                "assistant",
                "developer",
                "input_text",
                "input_image",
                "output_text",
                "function",
                "custom",
                "namespace",
                "local_shell",
                "web_search",
                "{",
                "{}",
                "data:image/png;base64,iVBORw0KGgo=",
                "call_1",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "type",
                        "role",
                        "content",
                        "text",
                        "name",
                        "call_id",
                        "arguments",
                        "input",
                        "output",
                        "tools",
                        "summary",
                        "image_url",
                        "parameters",
                        "format",
                        "action",
                        "command",
                        "namespace",
                        "encrypted_content",
                    ]),
                    inner,
                    0..6,
                )
                .prop_map(|map| Value::Object(
                    map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        /// Any input, tools or tool_choice either parses or is a 400: never a panic.
        #[test]
        fn any_request_parses_or_is_a_400(input in any_json(), tools in any_json(), choice in any_json()) {
            let body = json!({"model": "m", "input": input, "tools": tools, "tool_choice": choice,
                              "reasoning": {"effort": "high", "summary": "auto"}});
            if let Err(error) = parse(body) {
                prop_assert_eq!(error.status(), 400);
            }
        }

        #[test]
        fn any_bytes_parse_or_are_a_400(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Err(error) = parse_body(&bytes) {
                prop_assert_eq!(error.status(), 400);
            }
        }
    }
}

/// While Kiro is silent, `response.in_progress` events keep Codex's idle timer from firing; they
/// take their place in the sequence numbers and stop once output flows again.
#[tokio::test(start_paused = true)]
async fn a_silent_upstream_gets_in_progress_keepalives() {
    let (sender, receiver) =
        tokio::sync::mpsc::unbounded_channel::<Result<ChatEvent, GatewayError>>();
    let upstream = stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    });
    let stream = sse_stream(Box::pin(upstream), meta("resp_k"), plain_context(), None);
    let collector = tokio::spawn(async move { stream.collect::<Vec<Bytes>>().await });
    tokio::time::sleep(super::stream::KEEPALIVE * 2 + Duration::from_secs(1)).await;
    sender.send(Ok(text("late"))).unwrap();
    drop(sender);
    let body = String::from_utf8(collector.await.unwrap().concat()).unwrap();
    let kinds: Vec<&str> = body
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("event: "))
        .map(|frame| frame.lines().next().unwrap())
        .collect();
    assert_eq!(
        kinds[..5],
        [
            "response.created",
            "response.in_progress",
            "response.in_progress",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for (index, frame) in body.split("\n\n").filter(|f| !f.is_empty()).enumerate() {
        let data: Value = serde_json::from_str(frame.split_once("data: ").unwrap().1).unwrap();
        assert_eq!(data["sequence_number"], index);
    }
}
