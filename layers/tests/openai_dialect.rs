//! Parsing OpenAI Chat Completions requests: every message shape the SDKs and agent clients
//! send, and the 400s a client gets for malformed ones.

use kiro_layers::chat::{ContentBlock, Dialect, Image, Message, Role, ThinkingRequest, Tool};
use kiro_layers::dialect::openai::parse_request;
use kiro_layers::GatewayError;
use serde_json::{json, Value};

fn parse(body: Value) -> Result<kiro_layers::ChatRequest, GatewayError> {
    parse_request(body.to_string().as_bytes())
}

fn with_messages(messages: Value) -> Value {
    json!({"model": "claude-sonnet-4.5", "messages": messages})
}

/// The error's OpenAI body: `(message, param)`.
fn rejected(body: Value) -> (String, Value) {
    let err = parse(body).expect_err("request must be rejected");
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    let body = err.body(Dialect::OpenAi);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    (err.message().to_owned(), body["error"]["param"].clone())
}

fn text(text: &str) -> ContentBlock {
    ContentBlock::Text(text.to_owned())
}

#[test]
fn parses_a_minimal_request() {
    let request = parse(with_messages(json!([{"role": "user", "content": "Hi"}]))).unwrap();
    assert_eq!(request.dialect, Dialect::OpenAi);
    assert_eq!(request.model, "claude-sonnet-4.5");
    assert_eq!(request.system, None);
    assert_eq!(
        request.messages,
        vec![Message {
            role: Role::User,
            content: vec![text("Hi")]
        }]
    );
    assert!(!request.stream);
    assert!(!request.include_usage);
    assert_eq!(request.thinking, ThinkingRequest::Default);
}

#[test]
fn system_and_developer_messages_join_into_the_system_prompt() {
    let request = parse(with_messages(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
        {"role": "user", "content": "Hi"},
    ])))
    .unwrap();
    assert_eq!(request.system.as_deref(), Some("Be brief.\nUse English."));
    assert_eq!(request.messages.len(), 1);
}

#[test]
fn user_content_parts_keep_text_and_data_url_images() {
    let request = parse(with_messages(json!([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": "data:image/JPEG;base64,/9j/4AAQ"},
    ]}])))
    .unwrap();
    assert_eq!(
        request.messages[0].content,
        vec![
            text("What is this?"),
            ContentBlock::Image(Image {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }),
            ContentBlock::Image(Image {
                media_type: "image/jpeg".into(),
                data: "/9j/4AAQ".into()
            }),
        ]
    );
}

#[test]
fn http_image_urls_are_refused_with_advice() {
    let (message, param) = rejected(with_messages(json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}])));
    assert!(message.contains("does not fetch"), "{message}");
    assert!(message.contains("data:image/png;base64"), "{message}");
    assert_eq!(param, "messages[0].content[0].image_url.url");
}

#[test]
fn malformed_data_urls_are_refused() {
    for url in [
        "data:image/png,notbase64",
        "data:text/plain;base64,AAAA",
        "data:image/png;base64,",
        "ftp://x",
    ] {
        let (message, param) = rejected(with_messages(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
        ]}])));
        assert!(message.contains("base64 data URL"), "{url}: {message}");
        assert_eq!(param, "messages[0].content[0].image_url.url");
    }
}

#[test]
fn assistant_tool_calls_and_tool_results() {
    let request = parse(with_messages(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": null, "reasoning_content": "dropped", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [
            {"type": "text", "text": "screenshot:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]},
        {"role": "user", "content": "Thanks"},
    ])))
    .unwrap();
    assert_eq!(request.messages.len(), 4, "{:#?}", request.messages);
    assert_eq!(
        request.messages[1],
        Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::ToolUse {
                    id: "call_1".into(),
                    name: "weather".into(),
                    input: json!({"city": "Paris"})
                },
                ContentBlock::ToolUse {
                    id: "call_2".into(),
                    name: "weather".into(),
                    input: json!({})
                },
            ],
        }
    );
    // Both tool messages became one user turn.
    assert_eq!(
        request.messages[2],
        Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult {
                    tool_use_id: "call_1".into(),
                    content: vec![text("18°C")],
                    is_error: false
                },
                ContentBlock::ToolResult {
                    tool_use_id: "call_2".into(),
                    content: vec![
                        text("screenshot:"),
                        ContentBlock::Image(Image {
                            media_type: "image/png".into(),
                            data: "AAAA".into()
                        }),
                    ],
                    is_error: false,
                },
            ],
        }
    );
    assert_eq!(
        request.messages[3],
        Message {
            role: Role::User,
            content: vec![text("Thanks")]
        }
    );
}

#[test]
fn assistant_text_parts_and_text_before_tool_calls() {
    let request = parse(with_messages(json!([
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "text", "text": "Calling."}], "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "run", "arguments": {"x": 1}}},
        ]},
    ])))
    .unwrap();
    assert_eq!(
        request.messages[1].content,
        vec![
            text("Calling."),
            ContentBlock::ToolUse {
                id: "c".into(),
                name: "run".into(),
                input: json!({"x": 1})
            }
        ]
    );
}

#[test]
fn invalid_tool_call_arguments_name_the_field() {
    let (message, param) = rejected(with_messages(json!([
        {"role": "user", "content": "Go"},
        {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "run", "arguments": "{\"x\": "}},
        ]},
    ])));
    assert_eq!(param, "messages[1].tool_calls[0].function.arguments");
    assert!(message.contains("does not parse"), "{message}");

    let (_, param) = rejected(with_messages(json!([
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "run", "arguments": "[1]"}}]},
    ])));
    assert_eq!(param, "messages[0].tool_calls[0].function.arguments");
}

#[test]
fn anthropic_style_tool_results_in_user_content_are_honoured() {
    let request = parse(with_messages(json!([{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done", "is_error": true},
    ]}])))
    .unwrap();
    assert_eq!(
        request.messages[0].content,
        vec![ContentBlock::ToolResult {
            tool_use_id: "toolu_1".into(),
            content: vec![text("done")],
            is_error: true
        }]
    );
}

#[test]
fn legacy_function_role_is_refused_clearly() {
    let (message, param) = rejected(with_messages(json!([
        {"role": "user", "content": "Go"},
        {"role": "function", "name": "run", "content": "ok"},
    ])));
    assert!(message.contains("tool_call_id"), "{message}");
    assert_eq!(param, "messages[1].role");
}

#[test]
fn standard_and_flat_tools() {
    let request = parse(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Get weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "name": "edit_file", "description": "Edit", "input_schema": {"type": "object"}},
            {"type": "function", "function": {"name": "noargs"}},
        ],
        "tool_choice": "auto",
    }))
    .unwrap();
    assert_eq!(
        request.tools,
        vec![
            Tool {
                name: "weather".into(),
                description: "Get weather".into(),
                input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            },
            Tool {
                name: "edit_file".into(),
                description: "Edit".into(),
                input_schema: json!({"type": "object"})
            },
            Tool {
                name: "noargs".into(),
                description: String::new(),
                input_schema: json!({"type": "object", "properties": {}}),
            },
        ]
    );
}

#[test]
fn tool_choice_none_offers_no_tools() {
    let request = parse(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "tool_choice": "none",
    }))
    .unwrap();
    assert!(request.tools.is_empty());
}

#[test]
fn options_map_onto_the_request() {
    let request = parse(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 1000,
        "stop": ["END", ""],
        "reasoning_effort": "medium",
        "user": "alice",
        "temperature": 0.2, "top_p": 1, "n": 1, "seed": 3, "presence_penalty": 0, "frequency_penalty": 0,
        "logit_bias": {"50256": -100}, "response_format": {"type": "text"}, "parallel_tool_calls": true,
        "metadata": {"k": "v"}, "store": false, "some_future_field": [1, 2],
    }))
    .unwrap();
    assert!(request.stream);
    assert!(request.include_usage);
    assert_eq!(request.max_tokens, Some(1000));
    assert_eq!(request.stop_sequences, vec!["END".to_owned()]);
    assert_eq!(request.thinking, ThinkingRequest::Budget(500));
    assert_eq!(request.end_user.as_deref(), Some("alice"));

    let request = parse(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "\n\n"}),
    )
    .unwrap();
    assert_eq!(request.stop_sequences, vec!["\n\n".to_owned()]);
}

#[test]
fn reasoning_effort_budgets_follow_the_output_limit() {
    let effort = |effort: &str, max_tokens: Option<u32>| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort});
        if let Some(limit) = max_tokens {
            body["max_tokens"] = json!(limit);
        }
        parse(body).unwrap().thinking
    };
    assert_eq!(effort("none", None), ThinkingRequest::Disabled);
    assert_eq!(effort("minimal", None), ThinkingRequest::Budget(409));
    assert_eq!(effort("low", None), ThinkingRequest::Budget(819));
    assert_eq!(effort("medium", None), ThinkingRequest::Budget(2048));
    assert_eq!(effort("high", None), ThinkingRequest::Budget(3276));
    assert_eq!(effort("xhigh", Some(10_000)), ThinkingRequest::Budget(9500));
    let (message, param) = rejected(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
    );
    assert!(message.contains("minimal"), "{message}");
    assert_eq!(param, "reasoning_effort");
}

#[test]
fn bad_json_names_line_and_column() {
    let err = parse_request(b"{\"model\": \"m\",\n  \"messages\": [}").unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    assert!(
        err.message().contains("not valid JSON"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("line 2 column"), "{}", err.message());

    let err = parse_request(b"").unwrap_err();
    assert!(
        err.message().contains("not valid JSON"),
        "{}",
        err.message()
    );
}

#[test]
fn invalid_utf8_is_named() {
    let err = parse_request(b"{\"model\": \"m\xff\"}").unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    assert!(err.message().contains("UTF-8"), "{}", err.message());
}

#[test]
fn required_fields() {
    let (message, param) = rejected(json!({"messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(param, "model");
    assert!(message.contains("required"), "{message}");
    let (_, param) = rejected(json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(param, "model");
    let (message, param) = rejected(json!({"model": "m", "messages": []}));
    assert_eq!(param, "messages");
    assert!(message.contains("at least one"), "{message}");
    let (_, param) = rejected(json!({"model": "m"}));
    assert_eq!(param, "messages");
    let (message, _) = rejected(json!([1, 2]));
    assert!(message.contains("JSON object"), "{message}");
}

#[test]
fn wrong_types_name_the_field_path() {
    let cases = [
        (
            with_messages(
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": 5}]),
            ),
            "messages[2].content",
        ),
        (with_messages(json!(["hello"])), "messages[0]"),
        (with_messages(json!([{"content": "x"}])), "messages[0].role"),
        (
            with_messages(json!([{"role": "robot", "content": "x"}])),
            "messages[0].role",
        ),
        (
            with_messages(json!([{"role": "user", "content": [{"type": "text", "text": 3}]}])),
            "messages[0].content[0].text",
        ),
        (
            with_messages(json!([{"role": "user", "content": [{"type": "input_audio"}]}])),
            "messages[0].content[0].type",
        ),
        (
            with_messages(json!([{"role": "tool", "content": "x"}])),
            "messages[0].tool_call_id",
        ),
        (
            with_messages(json!([{"role": "assistant", "tool_calls": {"id": "x"}}])),
            "messages[0].tool_calls",
        ),
        (
            with_messages(
                json!([{"role": "assistant", "tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]}]),
            ),
            "messages[0].tool_calls[0].function.name",
        ),
        // Found by the convert fuzz target: an empty name reached Kiro as a malformed request.
        (
            with_messages(
                json!([{"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "", "arguments": "{}"}}]}]),
            ),
            "messages[0].tool_calls[0].function.name",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}}),
            "stream_options.include_usage",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}),
            "stop[0]",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"description": "x"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "user": 7}),
            "user",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n",
        ),
    ];
    for (body, expected) in cases {
        let (message, param) = rejected(body.clone());
        assert_eq!(param, expected, "{body}: {message}");
        assert!(
            message.contains(expected),
            "message should name `{expected}`: {message}"
        );
    }
}

#[test]
fn huge_bad_values_are_not_echoed_whole() {
    let role = "x".repeat(100_000);
    let (message, param) = rejected(with_messages(json!([{"role": role, "content": "x"}])));
    assert_eq!(param, "messages[0].role");
    assert!(message.len() < 200, "{message}");
    assert!(message.contains("xxxx..."), "{message}");
}
