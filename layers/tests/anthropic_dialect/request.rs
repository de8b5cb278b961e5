//! Request validation and `count_tokens`.

use http::StatusCode;
use kiro_layers::chat::{ContentBlock, Role, ThinkingRequest};
use kiro_layers::dialect::anthropic::{count_tokens, parse_request};
use kiro_layers::{Dialect, GatewayError};
use serde_json::{json, Value};

fn parse(body: Value) -> Result<kiro_layers::ChatRequest, GatewayError> {
    parse_request(body.to_string().as_bytes())
}

fn rejected(body: Value) -> (String, String) {
    let err = parse(body).expect_err("request should be rejected");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let wire = err.body(Dialect::Anthropic);
    assert_eq!(wire["type"], "error");
    assert_eq!(wire["error"]["type"], "invalid_request_error");
    let param = err.body(Dialect::OpenAi)["error"]["param"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (err.message().to_owned(), param)
}

fn minimal() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn parses_every_block_type() {
    let request = parse(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Use tools."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true, "content": [
                    {"type": "text", "text": "no such file"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "plain"}
            ]}
        ],
        "tools": [{"name": "read_file", "description": "Reads a file",
                   "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "metadata": {"user_id": "user-42"},
        "stop_sequences": ["END"],
        "stream": true,
        "temperature": 0.2, "top_p": 0.9, "top_k": 40
    }))
    .unwrap();

    assert_eq!(request.dialect, Dialect::Anthropic);
    assert_eq!(request.model, "claude-sonnet-4-5");
    assert_eq!(request.max_tokens, Some(2048));
    assert_eq!(
        request.system.as_deref(),
        Some("You are terse.\nUse tools.")
    );
    assert!(request.stream);
    assert_eq!(request.thinking, ThinkingRequest::Budget(3000));
    assert_eq!(request.end_user.as_deref(), Some("user-42"));
    assert_eq!(request.stop_sequences, vec!["END".to_owned()]);
    assert_eq!(request.tools.len(), 1);
    assert_eq!(request.tools[0].name, "read_file");
    assert_eq!(
        request.tools[0].input_schema["properties"]["path"]["type"],
        "string"
    );

    let [user, assistant, results] = request.messages.as_slice() else {
        panic!("three messages expected");
    };
    assert_eq!(user.role, Role::User);
    assert!(
        matches!(&user.content[1], ContentBlock::Image(img) if img.media_type == "image/png" && img.data == "iVBORw0KGgo=")
    );
    assert_eq!(assistant.role, Role::Assistant);
    assert_eq!(
        assistant.content[0],
        ContentBlock::Thinking {
            text: "I should read it.".into(),
            signature: Some("sig-1".into())
        }
    );
    assert_eq!(
        assistant.content[1],
        ContentBlock::Thinking {
            text: String::new(),
            signature: Some("opaque".into())
        }
    );
    assert_eq!(
        assistant.content[2],
        ContentBlock::ToolUse {
            id: "toolu_1".into(),
            name: "read_file".into(),
            input: json!({"path": "a.txt"})
        }
    );
    let ContentBlock::ToolResult {
        tool_use_id,
        content,
        is_error,
    } = &results.content[0]
    else {
        panic!("tool result expected");
    };
    assert_eq!(tool_use_id, "toolu_1");
    assert!(is_error);
    assert_eq!(content[0], ContentBlock::Text("no such file".into()));
    assert!(matches!(&content[1], ContentBlock::Image(img) if img.media_type == "image/jpeg"));
    assert_eq!(
        results.content[1],
        ContentBlock::ToolResult {
            tool_use_id: "toolu_2".into(),
            content: vec![ContentBlock::Text("plain".into())],
            is_error: false
        }
    );
}

#[test]
fn thinking_field_maps_to_the_request() {
    let with = |thinking: Value| {
        let mut body = minimal();
        body["thinking"] = thinking;
        parse(body).unwrap().thinking
    };
    assert_eq!(with(json!({"type": "disabled"})), ThinkingRequest::Disabled);
    assert_eq!(with(json!({"type": "adaptive"})), ThinkingRequest::Default);
    assert_eq!(parse(minimal()).unwrap().thinking, ThinkingRequest::Default);
}

#[test]
fn tool_choice_none_offers_no_tools() {
    let mut body = minimal();
    body["tools"] = json!([{"name": "t", "input_schema": {"type": "object"}}]);
    assert_eq!(parse(body.clone()).unwrap().tools.len(), 1);
    body["tool_choice"] = json!({"type": "none"});
    assert!(parse(body).unwrap().tools.is_empty());
}

#[test]
fn rejects_what_the_messages_api_rejects() {
    let mut body = minimal();
    body.as_object_mut().unwrap().remove("max_tokens");
    let (message, param) = rejected(body);
    assert_eq!(param, "max_tokens");
    assert!(message.contains("max_tokens"));

    let mut body = minimal();
    body["messages"] =
        json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]);
    let (message, param) = rejected(body);
    assert_eq!(param, "messages.1.role");
    assert!(message.contains("system"), "{message}");

    let mut body = minimal();
    body["messages"] = json!([]);
    assert_eq!(rejected(body).1, "messages");

    let mut body = minimal();
    body.as_object_mut().unwrap().remove("model");
    assert_eq!(rejected(body).1, "model");

    let mut body = minimal();
    body["messages"][0]["content"] =
        json!([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]);
    let (message, param) = rejected(body);
    assert_eq!(param, "messages.0.content.0.source.type");
    assert!(message.contains("never fetches URLs"), "{message}");

    let mut body = minimal();
    body["messages"][0]["content"] =
        json!([{"type": "document", "source": {"type": "text", "data": "x"}}]);
    assert_eq!(rejected(body).1, "messages.0.content.0.type");

    let mut body = minimal();
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]);
    let (message, param) = rejected(body);
    assert_eq!(param, "tools.0.type");
    assert!(message.contains("web_search_20250305"));

    let mut body = minimal();
    body["tools"] = json!([{"name": "t", "description": "no schema"}]);
    assert_eq!(rejected(body).1, "tools.0.input_schema");

    let mut body = minimal();
    body["messages"] = json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "t", "input": "x"}]}]);
    assert_eq!(rejected(body).1, "messages.0.content.0.input");

    for (field, param) in [
        ("name", "messages.0.content.0.name"),
        ("id", "messages.0.content.0.id"),
    ] {
        let mut body = minimal();
        body["messages"] = json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "t", "input": {}}]}]);
        body["messages"][0]["content"][0][field] = json!("");
        let (message, got) = rejected(body);
        assert_eq!(got, param);
        assert!(message.contains("must not be empty"), "{message}");
    }

    let mut body = minimal();
    body["thinking"] = json!({"type": "enabled"});
    assert_eq!(rejected(body).1, "thinking.budget_tokens");

    let mut body = minimal();
    body["messages"][0]["content"] =
        json!([{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "document"}]}]);
    assert_eq!(rejected(body).1, "messages.0.content.0.content.0.type");
}

#[test]
fn broken_bodies_get_a_clear_400() {
    let err = parse_request(b"{\"model\": ").unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(
        err.message().contains("not valid JSON"),
        "{}",
        err.message()
    );

    let err = parse_request(b"{\"model\": \"\xff\"}").unwrap_err();
    assert!(err.message().contains("UTF-8"), "{}", err.message());

    let err = parse_request(b"[1,2]").unwrap_err();
    assert!(err.message().contains("JSON object"));
}

#[test]
fn count_tokens_takes_the_messages_body_without_max_tokens() {
    let short = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let long = json!({"model": "m", "system": "Be precise.", "messages": [
        {"role": "user", "content": "hello ".repeat(1000)}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}]});
    let short_count = count_tokens(short.to_string().as_bytes()).unwrap();
    let long_count = count_tokens(long.to_string().as_bytes()).unwrap();
    assert!(short_count >= 1);
    // 1000 repetitions of a one-token word: about a thousand tokens, not inflated.
    assert!((1000..1300).contains(&long_count), "{long_count}");
    assert!(count_tokens(b"{\"model\":\"m\"}").is_err());
}
