//! Every rule of the validator, both ways: the valid body passes, each violation fails with
//! the reason the real service gives.

use super::*;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABCDEF";

/// A realistic multi-turn body with tools, a tool round trip and an image.
fn valid() -> Value {
    json!({
        "conversationState": {
            "chatTriggerType": "MANUAL",
            "conversationId": "0b7c9e1a-1111-4c3e-9d5e-222233334444",
            "history": [
                {"userInputMessage": {"content": "What is the weather?", "modelId": "auto",
                    "origin": "AI_EDITOR",
                    "images": [{"format": "png", "source": {"bytes": "iVBORw0KGgo="}}]}},
                {"assistantResponseMessage": {"content": " ", "toolUses": [
                    {"name": "get_weather", "input": {"city": "Paris"}, "toolUseId": "tooluse_1"}]}}
            ],
            "currentMessage": {"userInputMessage": {
                "content": "", "modelId": "auto", "origin": "AI_EDITOR",
                "userInputMessageContext": {
                    "tools": [{"toolSpecification": {
                        "name": "get_weather", "description": "Current weather for a city",
                        "inputSchema": {"json": {"type": "object",
                            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
                    "toolResults": [{"content": [{"text": "18C, sunny"}], "status": "success",
                        "toolUseId": "tooluse_1"}]
                }}}
        },
        "profileArn": ARN
    })
}

fn rules() -> ValidationRules {
    ValidationRules::default()
}

fn check(body: &Value) -> Result<(), Rejection> {
    validate_request(body, &rules())
}

/// Asserts the body is refused with 400 and `reason`, and the generic message when reason is None.
fn assert_rejected(body: &Value, reason: Option<&str>) {
    let rejection = check(body).expect_err("body should be rejected");
    assert_eq!(rejection.status, 400);
    assert_eq!(rejection.reason.as_deref(), reason, "{rejection:?}");
    if reason.is_none() {
        assert_eq!(rejection.message, IMPROPERLY_FORMED);
    }
}

fn current(body: &mut Value) -> &mut Value {
    &mut body["conversationState"]["currentMessage"]["userInputMessage"]
}

fn history(body: &mut Value) -> &mut Vec<Value> {
    body["conversationState"]["history"]
        .as_array_mut()
        .expect("history")
}

fn tool_spec(body: &mut Value) -> &mut Value {
    &mut current(body)["userInputMessageContext"]["tools"][0]["toolSpecification"]
}

fn simple(text: &str) -> Value {
    json!({"conversationState": {"chatTriggerType": "MANUAL", "conversationId": "x",
        "currentMessage": {"userInputMessage": {"content": text, "modelId": "auto", "origin": "AI_EDITOR"}}},
        "profileArn": ARN})
}

#[test]
fn valid_bodies_pass() {
    assert_eq!(check(&valid()), Ok(()));
    assert_eq!(check(&simple("hi")), Ok(()));
    let mut no_history = simple("hi");
    no_history["conversationState"]["history"] = json!([]);
    assert_eq!(check(&no_history), Ok(()));
}

#[test]
fn missing_conversation_state_or_wrong_trigger_is_malformed() {
    assert_rejected(&json!({"profileArn": ARN}), None);
    for trigger in [json!("AUTO"), json!(null), json!(1)] {
        let mut body = valid();
        body["conversationState"]["chatTriggerType"] = trigger;
        assert_rejected(&body, None);
    }
    let mut body = valid();
    body["conversationState"]
        .as_object_mut()
        .unwrap()
        .remove("chatTriggerType");
    assert_rejected(&body, None);
}

#[test]
fn conversation_id_must_be_a_string() {
    let mut body = valid();
    body["conversationState"]["conversationId"] = json!(42);
    assert_rejected(&body, None);
}

#[test]
fn current_message_needs_content_model_and_origin() {
    for field in ["content", "modelId", "origin"] {
        let mut body = simple("hi");
        current(&mut body).as_object_mut().unwrap().remove(field);
        assert_rejected(&body, None);
    }
    let mut body = simple("hi");
    body["conversationState"]["currentMessage"] =
        json!({"assistantResponseMessage": {"content": "x"}});
    assert_rejected(&body, None);
}

#[test]
fn empty_user_text_is_allowed_only_with_tool_results() {
    assert_rejected(&simple(""), None);
    assert_rejected(&simple("  \n"), None);
    // The valid body's current message is "" with tool results.
    assert_eq!(check(&valid()), Ok(()));
}

#[test]
fn assistant_text_may_be_blank_only_with_tool_uses() {
    let mut body = valid();
    history(&mut body)[1]["assistantResponseMessage"]["content"] = json!("");
    assert_rejected(&body, None);

    let mut body = simple("next");
    body["conversationState"]["history"] = json!([
        {"userInputMessage": {"content": "q", "modelId": "auto", "origin": "AI_EDITOR"}},
        {"assistantResponseMessage": {"content": " "}}
    ]);
    assert_rejected(&body, None);
    history(&mut body)[1]["assistantResponseMessage"]["content"] = json!("answer");
    assert_eq!(check(&body), Ok(()));
}

#[test]
fn history_entries_hold_exactly_one_known_message() {
    let mut body = valid();
    history(&mut body)[0]["assistantResponseMessage"] = json!({"content": "x"});
    assert_rejected(&body, None);
    let mut body = valid();
    history(&mut body)[0] = json!({"systemMessage": {"content": "x"}});
    assert_rejected(&body, None);
    let mut body = valid();
    history(&mut body)[0] = json!({});
    assert_rejected(&body, None);
    let mut body = valid();
    body["conversationState"]["history"] = json!({"not": "an array"});
    assert_rejected(&body, None);
}

#[test]
fn history_starts_with_user_alternates_and_ends_with_assistant() {
    let user =
        json!({"userInputMessage": {"content": "u", "modelId": "auto", "origin": "AI_EDITOR"}});
    let assistant = json!({"assistantResponseMessage": {"content": "a"}});
    for (entries, ok) in [
        (vec![user.clone(), assistant.clone()], true),
        (vec![assistant.clone(), user.clone()], false),
        (vec![user.clone(), user.clone(), assistant.clone()], false),
        (
            vec![user.clone(), assistant.clone(), assistant.clone()],
            false,
        ),
        (vec![user.clone()], false),
        (vec![user.clone(), assistant.clone(), user.clone()], false),
    ] {
        let mut body = simple("now");
        body["conversationState"]["history"] = Value::Array(entries.clone());
        assert_eq!(check(&body).is_ok(), ok, "{entries:?}");
    }
}

#[test]
fn history_user_content_must_not_be_empty() {
    let mut body = valid();
    history(&mut body)[0]["userInputMessage"]["content"] = json!("");
    assert_rejected(&body, None);
}

#[test]
fn tools_are_allowed_only_on_the_current_message() {
    let mut body = valid();
    let tools = current(&mut body)["userInputMessageContext"]["tools"].clone();
    history(&mut body)[0]["userInputMessage"]["userInputMessageContext"] = json!({"tools": tools});
    assert_rejected(&body, None);
}

#[test]
fn tool_content_without_tools_is_tool_config_missing() {
    let mut body = valid();
    current(&mut body)["userInputMessageContext"]
        .as_object_mut()
        .unwrap()
        .remove("tools");
    assert_rejected(&body, Some("TOOL_CONFIG_MISSING"));

    // Only a tool use in history, no results, no tools.
    let mut body = simple("thanks");
    body["conversationState"]["history"] = json!([
        {"userInputMessage": {"content": "q", "modelId": "auto", "origin": "AI_EDITOR"}},
        {"assistantResponseMessage": {"content": "x", "toolUses": [
            {"name": "t", "input": {}, "toolUseId": "id1"}]}}
    ]);
    assert_rejected(&body, Some("TOOL_CONFIG_MISSING"));
}

#[test]
fn tool_results_must_answer_the_preceding_tool_uses() {
    let mut body = valid();
    current(&mut body)["userInputMessageContext"]["toolResults"][0]["toolUseId"] = json!("other");
    assert_rejected(&body, Some("TOOL_USE_RESULT_MISMATCH"));

    // Results in a turn whose previous assistant turn made no tool call.
    let mut body = valid();
    history(&mut body)[1]["assistantResponseMessage"] = json!({"content": "plain answer"});
    assert_rejected(&body, Some("TOOL_USE_RESULT_MISMATCH"));
}

#[test]
fn tool_names_are_one_to_sixty_four_chars() {
    for (name, ok) in [
        ("a".repeat(64), true),
        ("a".repeat(65), false),
        (String::new(), false),
    ] {
        let mut body = valid();
        tool_spec(&mut body)["name"] = json!(name);
        assert_eq!(check(&body).is_ok(), ok, "len {}", name.len());
    }
}

#[test]
fn duplicate_tool_names_are_refused() {
    let mut body = valid();
    let tool = current(&mut body)["userInputMessageContext"]["tools"][0].clone();
    current(&mut body)["userInputMessageContext"]["tools"] = json!([tool.clone(), tool]);
    assert_rejected(&body, Some("TOOL_DUPLICATE"));
}

#[test]
fn tool_description_is_present_and_at_most_ten_thousand_chars() {
    for (description, ok) in [
        (json!("é".repeat(10_000)), true),
        (json!("x".repeat(10_001)), false),
        (json!(""), false),
        (json!(null), false),
    ] {
        let mut body = valid();
        tool_spec(&mut body)["description"] = description;
        assert_eq!(check(&body).is_ok(), ok);
    }
}

#[test]
fn tool_schema_must_exist_and_be_free_of_rejected_keys() {
    let mut body = valid();
    tool_spec(&mut body)["inputSchema"] = json!({});
    assert_rejected(&body, None);

    let mut body = valid();
    tool_spec(&mut body)["inputSchema"]["json"]["additionalProperties"] = json!(false);
    assert_rejected(&body, None);

    let mut body = valid();
    tool_spec(&mut body)["inputSchema"]["json"]["properties"]["nested"] =
        json!({"type": "object", "properties": {}, "required": []});
    assert_rejected(&body, None);

    let mut body = valid();
    tool_spec(&mut body)["inputSchema"]["json"]["properties"]["list"] =
        json!({"type": "array", "items": [{"type": "object", "additionalProperties": true}]});
    assert_rejected(&body, None);

    // A non-empty required list deep inside is fine.
    let mut body = valid();
    tool_spec(&mut body)["inputSchema"]["json"]["properties"]["nested"] = json!({"type": "object",
        "properties": {"a": {"type": "string"}}, "required": ["a"]});
    assert_eq!(check(&body), Ok(()));
}

#[test]
fn tool_use_input_must_be_an_object() {
    for input in [json!("{\"city\":\"Paris\"}"), json!(null), json!([1])] {
        let mut body = valid();
        history(&mut body)[1]["assistantResponseMessage"]["toolUses"][0]["input"] = input;
        assert_rejected(&body, None);
    }
}

#[test]
fn tool_results_need_text_content_and_a_known_status() {
    for (field, value, ok) in [
        ("status", json!("error"), true),
        ("status", json!("failed"), false),
        ("content", json!([]), true),
        ("content", json!("18C"), false),
        ("content", json!([{"json": {"t": 18}}]), false),
        ("content", json!([{"text": 18}]), false),
        ("toolUseId", json!(""), false),
    ] {
        let mut body = valid();
        current(&mut body)["userInputMessageContext"]["toolResults"][0][field] = value.clone();
        assert_eq!(check(&body).is_ok(), ok, "{field} = {value}");
    }
}

#[test]
fn images_need_a_known_format_and_base64_bytes() {
    for (image, ok) in [
        (
            json!({"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}),
            true,
        ),
        (
            json!({"format": "webp", "source": {"bytes": "UklGRg=="}}),
            true,
        ),
        (json!({"format": "bmp", "source": {"bytes": "Qk0="}}), false),
        (
            json!({"format": "image/png", "source": {"bytes": "iVBORw0KGgo="}}),
            false,
        ),
        (
            json!({"format": "png", "source": {"bytes": "data:image/png;base64,iVBO"}}),
            false,
        ),
        (json!({"format": "png", "source": {"bytes": ""}}), false),
        (json!({"format": "png"}), false),
    ] {
        let mut body = valid();
        history(&mut body)[0]["userInputMessage"]["images"] = json!([image.clone()]);
        assert_eq!(check(&body).is_ok(), ok, "{image}");
    }
}

#[test]
fn unknown_model_is_invalid_model_id() {
    let mut body = simple("hi");
    current(&mut body)["modelId"] = json!("auto-kiro");
    let rejection = check(&body).unwrap_err();
    assert_eq!(rejection.reason.as_deref(), Some("INVALID_MODEL_ID"));
    assert_eq!(
        rejection.body(),
        json!({"message": "Invalid model. Please select a different model to continue.",
            "reason": "INVALID_MODEL_ID"})
    );
}

#[test]
fn missing_profile_arn_is_refused_when_required() {
    let mut body = simple("hi");
    body.as_object_mut().unwrap().remove("profileArn");
    let rejection = check(&body).unwrap_err();
    assert_eq!(
        rejection.body(),
        json!({"message": "profileArn is required for this request.", "reason": null})
    );
    let lax = ValidationRules {
        require_profile_arn: false,
        ..rules()
    };
    assert_eq!(validate_request(&body, &lax), Ok(()));
}

#[test]
fn input_over_the_model_window_is_too_long() {
    let small = ValidationRules {
        known_models: vec![("tiny".to_owned(), 1_000)],
        ..rules()
    };
    let mut body = simple(&"word ".repeat(1_000)); // ~5 000 bytes, ~1 250 tokens
    current(&mut body)["modelId"] = json!("tiny");
    let rejection = validate_request(&body, &small).unwrap_err();
    assert_eq!(
        rejection.body(),
        json!({"message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"})
    );
    let mut body = simple("short");
    current(&mut body)["modelId"] = json!("tiny");
    assert_eq!(validate_request(&body, &small), Ok(()));
}

#[test]
fn body_over_the_payload_limit_is_malformed() {
    let limit = ValidationRules {
        max_payload_bytes: 2_000,
        ..rules()
    };
    assert_eq!(
        validate_request(&simple(&"x".repeat(1_000)), &limit),
        Ok(())
    );
    let rejection = validate_request(&simple(&"x".repeat(2_000)), &limit).unwrap_err();
    assert_eq!(rejection, Rejection::improperly_formed());
    assert_eq!(
        rejection.body(),
        json!({"message": "Improperly formed request.", "reason": null})
    );
}

#[test]
fn default_rules_know_the_captured_models() {
    let rules = rules();
    assert_eq!(rules.context_window("claude-sonnet-4.5"), Some(200_000));
    assert_eq!(rules.context_window("auto"), Some(1_000_000));
    assert_eq!(rules.context_window("gpt-4"), None);
    assert_eq!(rules.max_payload_bytes, 600_000);
    assert!(rules.require_profile_arn);
}

#[test]
fn thinking_tags_beside_tool_results_are_refused() {
    let mut body = valid();
    current(&mut body)["content"] =
        json!("<thinking_mode>enabled</thinking_mode>\n<max_thinking_length>4000</max_thinking_length>\n\n");
    assert_rejected(&body, None);
    // The same prefix without tool results is how fake reasoning works.
    let body = simple("<thinking_mode>enabled</thinking_mode>\n\nhello");
    assert_eq!(check(&body), Ok(()));
}
