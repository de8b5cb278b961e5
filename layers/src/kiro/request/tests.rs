//! One test per rule of kiro-protocol.md §2.2–§2.4, each asserting on the emitted JSON.

use serde_json::{json, Value};

use super::*;
use crate::chat::{ContentBlock, Dialect, Image, Message, Tool};

const MODEL: &str = "claude-sonnet-4.5";

fn text(t: &str) -> ContentBlock {
    ContentBlock::Text(t.to_owned())
}

fn user(blocks: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::User,
        content: blocks,
    }
}

fn assistant(blocks: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::Assistant,
        content: blocks,
    }
}

fn tool_use(id: &str, name: &str) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.to_owned(),
        name: name.to_owned(),
        input: json!({"path": "a.txt"}),
    }
}

fn tool_result(id: &str, result: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.to_owned(),
        content: vec![text(result)],
        is_error: false,
    }
}

fn tool(name: &str, description: &str) -> Tool {
    Tool {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    }
}

fn request(messages: Vec<Message>) -> ChatRequest {
    let mut req = ChatRequest::user_text(Dialect::Anthropic, MODEL, "");
    req.messages = messages;
    req
}

fn build(req: &ChatRequest) -> Value {
    build_with(req, &BuildOptions::default())
}

fn build_with(req: &ChatRequest, opts: &BuildOptions) -> Value {
    let built = build_request(req, MODEL, None, opts).unwrap();
    serde_json::from_slice(&built.body).unwrap()
}

fn current(body: &Value) -> &Value {
    &body["conversationState"]["currentMessage"]["userInputMessage"]
}

fn history(body: &Value) -> &Vec<Value> {
    body["conversationState"]["history"].as_array().unwrap()
}

#[test]
fn single_turn_has_the_documented_shape() {
    let req = request(vec![user(vec![text("Hi")])]);
    let built = build_request(
        &req,
        MODEL,
        Some("arn:aws:codewhisperer:us-east-1:1:profile/X"),
        &BuildOptions::default(),
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(
        body,
        json!({
            "conversationState": {
                "chatTriggerType": "MANUAL",
                "conversationId": built.conversation_id,
                "currentMessage": {"userInputMessage": {
                    "content": "Hi", "modelId": MODEL, "origin": "AI_EDITOR"
                }}
            },
            "profileArn": "arn:aws:codewhisperer:us-east-1:1:profile/X"
        })
    );
    let id = uuid::Uuid::parse_str(&built.conversation_id).unwrap();
    assert_eq!(id.get_version_num(), 4);
    // Compact JSON: no pretty-printing whitespace.
    assert!(!built.body.windows(2).any(|w| w == b": " || w == b", "));
}

#[test]
fn empty_profile_arn_and_empty_history_are_omitted() {
    let req = request(vec![user(vec![text("Hi")])]);
    let built = build_request(&req, MODEL, Some(""), &BuildOptions::default()).unwrap();
    let body: Value = serde_json::from_slice(&built.body).unwrap();
    assert!(body.get("profileArn").is_none());
    assert!(body["conversationState"].get("history").is_none());
    assert!(current(&body).get("userInputMessageContext").is_none());
    assert!(current(&body).get("images").is_none());
}

#[test]
fn no_messages_is_a_client_error() {
    let req = request(vec![]);
    let err = build_request(&req, MODEL, None, &BuildOptions::default()).unwrap_err();
    assert!(err.is_client_error());
    assert!(err.message().contains("messages"));
}

#[test]
fn system_prompt_goes_to_first_history_user_message() {
    let mut req = request(vec![
        user(vec![text("first")]),
        assistant(vec![text("answer")]),
        user(vec![text("second")]),
    ]);
    req.system = Some("Be brief.".to_owned());
    let body = build(&req);
    let history = history(&body);
    assert_eq!(
        history[0]["userInputMessage"]["content"],
        "Be brief.\n\nfirst"
    );
    assert_eq!(history[0]["userInputMessage"]["modelId"], MODEL);
    assert_eq!(history[0]["userInputMessage"]["origin"], "AI_EDITOR");
    assert_eq!(history[1]["assistantResponseMessage"]["content"], "answer");
    assert_eq!(current(&body)["content"], "second");
}

#[test]
fn system_prompt_goes_to_current_message_without_history_then_prefix() {
    let mut req = request(vec![user(vec![text("question")])]);
    req.system = Some("SYS".to_owned());
    let opts = BuildOptions {
        system_prompt_additions: vec!["# Extended Thinking Mode\nthink".to_owned()],
        current_message_prefix: Some("<thinking_mode>enabled</thinking_mode>\n\n".to_owned()),
        ..BuildOptions::default()
    };
    let body = build_with(&req, &opts);
    assert_eq!(
        current(&body)["content"],
        "<thinking_mode>enabled</thinking_mode>\n\nSYS\n\n---\n# Extended Thinking Mode\nthink\n\nquestion"
    );
}

#[test]
fn long_tool_description_moves_to_system_prompt() {
    let mut req = request(vec![user(vec![text("go")])]);
    req.system = Some("SYS".to_owned());
    req.tools = vec![tool("big", &"d".repeat(30)), tool("small", "short one")];
    let opts = BuildOptions {
        tool_description_max_len: 20,
        system_prompt_additions: vec!["ADD".to_owned()],
        ..BuildOptions::default()
    };
    let body = build_with(&req, &opts);
    let tools = &current(&body)["userInputMessageContext"]["tools"];
    assert_eq!(
        tools[0]["toolSpecification"]["description"],
        "[Full documentation in system prompt under '## Tool: big']"
    );
    assert_eq!(tools[1]["toolSpecification"]["description"], "short one");
    let content = current(&body)["content"].as_str().unwrap();
    let expected_docs = format!("## Tool: big\n\n{}", "d".repeat(30));
    assert!(
        content.starts_with("SYS\n\n---\n# Tool Documentation"),
        "{content}"
    );
    assert!(content.contains(&expected_docs), "{content}");
    // Order: client system, tool docs, additions, then the user text.
    assert!(
        content.ends_with(&format!("{expected_docs}\n\n---\nADD\n\ngo")),
        "{content}"
    );

    let opts = BuildOptions {
        tool_description_max_len: 0,
        ..BuildOptions::default()
    };
    let body = build_with(&req, &opts);
    let tools = &current(&body)["userInputMessageContext"]["tools"];
    assert_eq!(tools[0]["toolSpecification"]["description"], "d".repeat(30));
}

#[test]
fn empty_description_becomes_tool_name() {
    let mut req = request(vec![user(vec![text("go")])]);
    req.tools = vec![tool("read_file", "  ")];
    let body = build(&req);
    assert_eq!(
        current(&body)["userInputMessageContext"]["tools"][0]["toolSpecification"],
        json!({
            "name": "read_file",
            "description": "Tool: read_file",
            "inputSchema": {"json": {"type": "object", "properties": {"path": {"type": "string"}}}}
        })
    );
}

#[test]
fn long_tool_names_are_shortened_everywhere_and_map_back() {
    let long = format!(
        "mcp__plugin_playwright_{}",
        "browser_take_screenshot_".repeat(3)
    );
    assert!(long.len() > 64);
    let mut req = request(vec![
        user(vec![text("shoot")]),
        assistant(vec![tool_use("t1", &long)]),
        user(vec![tool_result("t1", "done")]),
    ]);
    req.tools = vec![tool(&long, "takes a screenshot")];
    let built = build_request(&req, MODEL, None, &BuildOptions::default()).unwrap();
    let body: Value = serde_json::from_slice(&built.body).unwrap();
    let sent = current(&body)["userInputMessageContext"]["tools"][0]["toolSpecification"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sent.chars().count() <= 64, "{sent}");
    assert!(sent.starts_with("mcp__plugin_playwright_"));
    let history_name = &history(&body)[1]["assistantResponseMessage"]["toolUses"][0]["name"];
    assert_eq!(history_name, sent.as_str());
    assert_eq!(built.tool_names.to_client(&sent), long);
    assert_eq!(built.tool_names.to_upstream(&long), sent);
    // Same name, next request: same short name (the client replays calls in history).
    let again = build_request(&req, MODEL, None, &BuildOptions::default()).unwrap();
    assert_eq!(again.tool_names.to_upstream(&long), sent);
}

#[test]
fn schema_drops_additional_properties_and_empty_required() {
    let mut req = request(vec![user(vec![text("go")])]);
    req.tools = vec![Tool {
        name: "t".to_owned(),
        description: "d".to_owned(),
        input_schema: json!({
            "type": "object", "additionalProperties": false, "required": [],
            "properties": {"o": {"type": "object", "additionalProperties": false, "required": ["x"],
                                 "properties": {"x": {"type": "string"}}}}
        }),
    }];
    let body = build(&req);
    assert_eq!(
        current(&body)["userInputMessageContext"]["tools"][0]["toolSpecification"]["inputSchema"]
            ["json"],
        json!({"type": "object", "properties": {"o": {"type": "object", "required": ["x"],
               "properties": {"x": {"type": "string"}}}}})
    );
}

#[test]
fn tools_only_on_current_message_and_paired_results_are_structured() {
    let mut req = request(vec![
        user(vec![text("read it")]),
        assistant(vec![text("Reading."), tool_use("t1", "read_file")]),
        user(vec![tool_result("t1", "contents")]),
        assistant(vec![text("Done.")]),
        user(vec![text("thanks")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    let history = history(&body);
    assert_eq!(history.len(), 4);
    for entry in history {
        if let Some(user) = entry.get("userInputMessage") {
            assert!(user["userInputMessageContext"].get("tools").is_none());
        }
    }
    assert_eq!(
        history[1]["assistantResponseMessage"],
        json!({"content": "Reading.", "toolUses": [{"name": "read_file", "input": {"path": "a.txt"}, "toolUseId": "t1"}]})
    );
    assert_eq!(
        history[2]["userInputMessage"]["userInputMessageContext"],
        json!({"toolResults": [{"content": [{"text": "contents"}], "status": "success", "toolUseId": "t1"}]})
    );
    assert_eq!(history[2]["userInputMessage"]["content"], ".");
    assert_eq!(
        current(&body)["userInputMessageContext"]["tools"][0]["toolSpecification"]["name"],
        "read_file"
    );
}

#[test]
fn without_tools_tool_calls_and_results_become_text() {
    let req = request(vec![
        user(vec![text("read it")]),
        assistant(vec![tool_use("t1", "read_file")]),
        user(vec![tool_result("t1", "contents"), text("and?")]),
    ]);
    let body = build(&req);
    let history = history(&body);
    assert_eq!(
        history[1]["assistantResponseMessage"],
        json!({"content": "[Tool: read_file (t1)]\n{\"path\":\"a.txt\"}"})
    );
    assert_eq!(
        current(&body),
        &json!({"content": "[Tool Result (t1)]\ncontents\nand?", "modelId": MODEL, "origin": "AI_EDITOR"})
    );
}

#[test]
fn orphan_tool_results_become_text() {
    let mut req = request(vec![
        user(vec![text("hi")]),
        assistant(vec![text("no tools called")]),
        user(vec![
            tool_result("ghost", "lost"),
            tool_result("ghost2", ""),
        ]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    let cur = current(&body);
    assert_eq!(
        cur["content"],
        "[Tool Result (ghost)]\nlost\n[Tool Result (ghost2)]\n(empty result)"
    );
    assert!(cur["userInputMessageContext"].get("toolResults").is_none());
}

#[test]
fn results_must_answer_the_immediately_preceding_assistant_turn() {
    let mut req = request(vec![
        user(vec![text("a")]),
        assistant(vec![tool_use("t1", "read_file")]),
        user(vec![text("interrupt")]),
        assistant(vec![text("ok")]),
        user(vec![tool_result("t1", "late")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    assert_eq!(current(&body)["content"], "[Tool Result (t1)]\nlate");
    // The unanswered call stays a structured toolUse in history.
    assert_eq!(
        history(&body)[1]["assistantResponseMessage"]["toolUses"][0]["toolUseId"],
        "t1"
    );
}

#[test]
fn error_results_have_error_status_and_empty_text_a_marker() {
    let mut req = request(vec![
        user(vec![text("a")]),
        assistant(vec![
            tool_use("t1", "read_file"),
            tool_use("t2", "read_file"),
        ]),
        user(vec![
            ContentBlock::ToolResult {
                tool_use_id: "t1".to_owned(),
                content: vec![text("boom")],
                is_error: true,
            },
            tool_result("t2", ""),
        ]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    assert_eq!(
        current(&body)["userInputMessageContext"]["toolResults"],
        json!([
            {"content": [{"text": "boom"}], "status": "error", "toolUseId": "t1"},
            {"content": [{"text": "(empty result)"}], "status": "success", "toolUseId": "t2"}
        ])
    );
}

#[test]
fn adjacent_same_role_messages_merge() {
    let mut req = request(vec![
        user(vec![text("one")]),
        user(vec![text("two"), image("image/png")]),
        assistant(vec![text("x"), tool_use("t1", "read_file")]),
        assistant(vec![text("y"), tool_use("t2", "read_file")]),
        user(vec![tool_result("t1", "r1")]),
        user(vec![tool_result("t2", "r2"), image("image/jpeg")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    let history = history(&body);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["userInputMessage"]["content"], "one\ntwo");
    assert_eq!(
        history[0]["userInputMessage"]["images"],
        json!([{"format": "png", "source": {"bytes": "iVBORw0KGgo="}}])
    );
    let asst = &history[1]["assistantResponseMessage"];
    assert_eq!(asst["content"], "x\ny");
    assert_eq!(asst["toolUses"].as_array().unwrap().len(), 2);
    let results = current(&body)["userInputMessageContext"]["toolResults"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        results
            .iter()
            .map(|r| r["toolUseId"].clone())
            .collect::<Vec<_>>(),
        vec![json!("t1"), json!("t2")]
    );
    assert_eq!(current(&body)["images"][0]["format"], "jpeg");
}

fn image(media_type: &str) -> ContentBlock {
    ContentBlock::Image(Image {
        media_type: media_type.to_owned(),
        data: "iVBORw0KGgo=".to_owned(),
    })
}

#[test]
fn first_message_assistant_gets_a_placeholder_user_turn() {
    let mut req = request(vec![
        assistant(vec![text("I greet first")]),
        user(vec![text("hi")]),
    ]);
    req.system = Some("SYS".to_owned());
    let body = build(&req);
    let history = history(&body);
    // The system prompt fills the synthetic turn, so no placeholder is needed there.
    assert_eq!(history[0]["userInputMessage"]["content"], "SYS");
    assert_eq!(
        history[1]["assistantResponseMessage"]["content"],
        "I greet first"
    );

    req.system = None;
    let body = build(&req);
    assert_eq!(
        crate::kiro::request::tests::history(&body)[0]["userInputMessage"]["content"],
        "."
    );
}

#[test]
fn trailing_assistant_is_prefill_and_current_says_continue() {
    let req = request(vec![
        user(vec![text("write")]),
        assistant(vec![text("Once upon")]),
    ]);
    let body = build(&req);
    let history = history(&body);
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1]["assistantResponseMessage"]["content"],
        "Once upon"
    );
    assert_eq!(current(&body)["content"], "Continue");
}

#[test]
fn empty_turns_get_the_placeholder() {
    let req = request(vec![
        user(vec![text("")]),
        assistant(vec![ContentBlock::Thinking {
            text: "hmm".to_owned(),
            signature: None,
        }]),
        user(vec![text("   ")]),
    ]);
    let body = build(&req);
    let history = history(&body);
    assert_eq!(history[0]["userInputMessage"]["content"], ".");
    assert_eq!(history[1]["assistantResponseMessage"]["content"], ".");
    assert_eq!(current(&body)["content"], ".");

    let opts = BuildOptions {
        placeholder: "(empty)".to_owned(),
        ..BuildOptions::default()
    };
    assert_eq!(current(&build_with(&req, &opts))["content"], "(empty)");
    let blank = BuildOptions {
        placeholder: " ".to_owned(),
        ..BuildOptions::default()
    };
    assert_eq!(current(&build_with(&req, &blank))["content"], ".");
}

#[test]
fn thinking_blocks_are_dropped_from_history() {
    let req = request(vec![
        user(vec![text("q")]),
        assistant(vec![
            ContentBlock::Thinking {
                text: "secret reasoning".to_owned(),
                signature: Some("sig".to_owned()),
            },
            text("answer"),
        ]),
        user(vec![text("more")]),
    ]);
    let body = build(&req);
    assert_eq!(
        history(&body)[1],
        json!({"assistantResponseMessage": {"content": "answer"}})
    );
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&body).unwrap()).contains("secret"));
}

#[test]
fn assistant_with_only_tool_uses_gets_placeholder_content() {
    let mut req = request(vec![
        user(vec![text("q")]),
        assistant(vec![tool_use("t1", "read_file")]),
        user(vec![tool_result("t1", "r")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    assert_eq!(
        history(&body)[1]["assistantResponseMessage"]["content"],
        "."
    );
}

#[test]
fn prefix_is_not_applied_to_a_turn_with_tool_results() {
    let mut req = request(vec![
        user(vec![text("q")]),
        assistant(vec![tool_use("t1", "read_file")]),
        user(vec![tool_result("t1", "r")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let opts = BuildOptions {
        current_message_prefix: Some("<thinking_mode>enabled</thinking_mode>\n\n".to_owned()),
        ..BuildOptions::default()
    };
    let body = build_with(&req, &opts);
    assert_eq!(current(&body)["content"], ".");

    // Text beside the results does not make thinking tags acceptable (§2.4; the strict
    // validator refuses them).
    req.messages.push(user(vec![text("and now?")]));
    let body = build_with(&req, &opts);
    assert_eq!(current(&body)["content"], "and now?");

    // A plain text turn gets the prefix.
    req.messages.push(assistant(vec![text("done")]));
    req.messages.push(user(vec![text("next")]));
    let body = build_with(&req, &opts);
    assert_eq!(
        current(&body)["content"],
        "<thinking_mode>enabled</thinking_mode>\n\nnext"
    );
}

#[test]
fn images_in_tool_results_go_to_the_user_message() {
    let mut req = request(vec![
        user(vec![text("screenshot")]),
        assistant(vec![tool_use("t1", "shot")]),
        user(vec![ContentBlock::ToolResult {
            tool_use_id: "t1".to_owned(),
            content: vec![text("here"), image("image/png")],
            is_error: false,
        }]),
    ]);
    req.tools = vec![tool("shot", "screenshots")];
    let body = build(&req);
    let cur = current(&body);
    assert_eq!(
        cur["images"],
        json!([{"format": "png", "source": {"bytes": "iVBORw0KGgo="}}])
    );
    assert_eq!(
        cur["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
        "here"
    );
}

#[test]
fn unsupported_image_type_names_the_field() {
    let req = request(vec![user(vec![text("look"), image("image/bmp")])]);
    let err = build_request(&req, MODEL, None, &BuildOptions::default()).unwrap_err();
    assert!(err.is_client_error());
    assert!(
        err.message().contains("messages[0].content[1]"),
        "{}",
        err.message()
    );
}

#[test]
fn model_id_on_every_user_message() {
    let req = request(vec![
        user(vec![text("a")]),
        assistant(vec![text("b")]),
        user(vec![text("c")]),
        assistant(vec![text("d")]),
        user(vec![text("e")]),
    ]);
    let body = build(&req);
    for entry in history(&body) {
        if let Some(user) = entry.get("userInputMessage") {
            assert_eq!(user["modelId"], MODEL);
            assert_eq!(user["origin"], "AI_EDITOR");
        }
    }
    assert_eq!(current(&body)["modelId"], MODEL);
}

#[test]
fn string_arguments_are_parsed_into_an_object() {
    let mut req = request(vec![
        user(vec![text("q")]),
        assistant(vec![ContentBlock::ToolUse {
            id: "t1".to_owned(),
            name: "read_file".to_owned(),
            input: json!("{\"path\":\"x\"}"),
        }]),
        user(vec![tool_result("t1", "r")]),
    ]);
    req.tools = vec![tool("read_file", "reads")];
    let body = build(&req);
    assert_eq!(
        history(&body)[1]["assistantResponseMessage"]["toolUses"][0]["input"],
        json!({"path": "x"})
    );
}
