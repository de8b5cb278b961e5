use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::chat::{ContentBlock, Dialect, Image, Message, Role, Tool};
use crate::kiro::request::{build_request, BuildOptions};
use crate::kiro::validate::{validate_request, ValidationRules};
use crate::tokens::estimate_request_tokens;

const MODEL: &str = "claude-sonnet-4.5";
const ARN: &str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/TEST";
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// Varied text of about `tokens` tokens (deterministic in `seed`).
fn prose(seed: usize, tokens: usize) -> String {
    const WORDS: [&str; 8] = [
        "gateway", "stream", "tool", "result", "context", "window", "answer", "frame",
    ];
    (0..tokens)
        .map(|i| WORDS[(i * 7 + seed) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn text(role: Role, body: String) -> Message {
    Message {
        role,
        content: vec![ContentBlock::Text(body)],
    }
}

fn tool() -> Tool {
    Tool {
        name: "write_file".into(),
        description: "Writes a file".into(),
        input_schema: json!({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}}}),
    }
}

/// An agent conversation: a first user message, then `exchanges` rounds of assistant text plus
/// a tool call, the tool result, and a user follow-up, each part about `size` tokens.
fn agent_conversation(exchanges: usize, size: usize) -> ChatRequest {
    let mut request = ChatRequest::user_text(Dialect::Anthropic, MODEL, "Build the project.");
    request.system = Some("You are a careful coding agent.".into());
    request.tools = vec![tool()];
    for round in 0..exchanges {
        let id = format!("toolu_{round:04}");
        request.messages.push(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Thinking {
                    text: prose(round + 1, size / 4),
                    signature: None,
                },
                ContentBlock::Text(prose(round, size / 4)),
                ContentBlock::ToolUse {
                    id: id.clone(),
                    name: "write_file".into(),
                    input: json!({"path": format!("src/f{round}.rs"), "content": prose(round + 2, size)}),
                },
            ],
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id,
                content: vec![ContentBlock::Text(prose(round + 3, size))],
                is_error: false,
            }],
        });
        request
            .messages
            .push(text(Role::Assistant, format!("Step {round} done.")));
        request.messages.push(text(
            Role::User,
            format!("Continue with step {}.", round + 1),
        ));
    }
    request
}

fn assert_valid_upstream(request: &ChatRequest) {
    let built = build_request(request, MODEL, Some(ARN), &BuildOptions::default()).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&built.body).unwrap();
    validate_request(&body, &ValidationRules::default()).unwrap();
}

fn budget(tokens: u64) -> Budget {
    Budget {
        max_tokens: tokens,
        max_bytes: 580_000,
    }
}

#[test]
fn a_154k_conversation_fits_a_68k_target_with_the_latest_turns_untouched() {
    let original = agent_conversation(40, 1_500);
    let before = estimate_request_tokens(&original);
    assert!(
        (140_000..170_000).contains(&before),
        "fixture has {before} tokens"
    );
    let mut request = original.clone();
    let report = compress(
        &mut request,
        &budget(68_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap()
    .unwrap();
    let after = estimate_request_tokens(&request);
    assert!(after <= 68_000, "{after} tokens left");
    assert_eq!(report.tokens_after, after);
    assert!(report.level >= 1);
    assert!(report.removed_tokens() > 80_000);
    assert_eq!(request.system, original.system);
    assert_eq!(request.messages[0], original.messages[0]);
    let keep = CompressConfig::default().keep_recent_messages;
    assert_eq!(
        request.messages[request.messages.len() - keep..],
        original.messages[original.messages.len() - keep..]
    );
    assert_valid_upstream(&request);
    assert!(report
        .header_value()
        .starts_with(&format!("level={} removed_tokens=", report.level)));
}

#[test]
fn shortening_tool_payloads_is_tried_first() {
    let original = agent_conversation(6, 3_000);
    let before = estimate_request_tokens(&original);
    let mut request = original.clone();
    let report = compress(
        &mut request,
        &budget(before - 5_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap()
    .unwrap();
    assert_eq!(report.level, 1);
    assert_eq!(report.dropped_messages, 0);
    assert_eq!(request.messages.len(), original.messages.len());
    let ContentBlock::ToolResult { content, .. } = &request.messages[2].content[0] else {
        panic!("tool result expected");
    };
    let ContentBlock::Text(short) = &content[0] else {
        panic!("text expected")
    };
    assert!(short.contains("characters cut by the gateway"));
    assert_valid_upstream(&request);
}

#[test]
fn reasoning_and_images_go_before_turns() {
    let mut original = agent_conversation(4, 100);
    // Thinking dominates the old turns; tool payloads are too short to shorten.
    for message in original.messages.iter_mut().skip(1).take(8) {
        if message.role == Role::Assistant {
            message.content.insert(
                0,
                ContentBlock::Thinking {
                    text: prose(9, 6_000),
                    signature: Some("sig".into()),
                },
            );
        } else {
            message.content.push(ContentBlock::Image(Image {
                media_type: "image/png".into(),
                data: PNG_1X1.into(),
            }));
        }
    }
    let before = estimate_request_tokens(&original);
    let mut request = original.clone();
    let report = compress(
        &mut request,
        &budget(before - 8_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap()
    .unwrap();
    assert_eq!(report.level, 2);
    assert_eq!(report.dropped_messages, 0);
    assert!(report.dropped_blocks >= 2);
    assert_valid_upstream(&request);
}

#[test]
fn a_request_that_fits_is_left_alone() {
    let original = agent_conversation(3, 200);
    let mut request = original.clone();
    let report = compress(
        &mut request,
        &budget(150_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap();
    assert!(report.is_none());
    assert_eq!(request, original);
}

#[test]
fn an_oversized_latest_message_is_a_context_length_error() {
    let mut request = agent_conversation(2, 100);
    request.messages.push(text(Role::Assistant, "ok".into()));
    request.messages.push(text(Role::User, prose(1, 50_000)));
    let error = compress(
        &mut request,
        &budget(20_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap_err();
    assert!(error.is_context_length_exceeded());
    assert_eq!(
        error.body(Dialect::OpenAi)["error"]["code"],
        "context_length_exceeded"
    );
    assert_eq!(
        error.body(Dialect::Anthropic)["error"]["type"],
        "invalid_request_error"
    );
    assert!(error.message().contains("20000 tokens"));
}

#[test]
fn without_compression_an_oversized_request_is_refused_up_front() {
    let request = agent_conversation(40, 1_500);
    let error = check_fits(&request, &budget(68_000), MODEL).unwrap_err();
    assert!(error.is_context_length_exceeded());
    let roomy = Budget {
        max_tokens: 190_000,
        max_bytes: 2_000_000,
    };
    check_fits(&request, &roomy, MODEL).unwrap();
}

#[test]
fn the_payload_limit_is_measured_in_upstream_bytes() {
    let original = agent_conversation(30, 2_000);
    let mut request = original.clone();
    let limit = Budget {
        max_tokens: 10_000_000,
        max_bytes: 200_000,
    };
    compress(&mut request, &limit, &CompressConfig::default(), MODEL)
        .unwrap()
        .unwrap();
    let built = build_request(&request, MODEL, None, &BuildOptions::default()).unwrap();
    assert!(built.body.len() <= 200_000, "{} bytes", built.body.len());
    assert_valid_upstream(&request);
}

#[test]
fn compression_is_deterministic() {
    let original = agent_conversation(20, 900);
    let (mut a, mut b) = (original.clone(), original);
    let ra = compress(&mut a, &budget(30_000), &CompressConfig::default(), MODEL).unwrap();
    let rb = compress(&mut b, &budget(30_000), &CompressConfig::default(), MODEL).unwrap();
    assert_eq!(a, b);
    assert_eq!(ra, rb);
}

fn arb_conversation() -> impl Strategy<Value = ChatRequest> {
    // Each round: (assistant text size, calls a tool?, tool payload size, image?, thinking size)
    let round = (
        0usize..400,
        any::<bool>(),
        0usize..6_000,
        any::<bool>(),
        0usize..800,
    );
    prop::collection::vec(round, 1..30).prop_map(|rounds| {
        let mut request = ChatRequest::user_text(Dialect::OpenAi, MODEL, "start");
        request.tools = vec![tool()];
        for (i, (text_size, calls, payload, image, thinking)) in rounds.into_iter().enumerate() {
            let mut assistant = vec![ContentBlock::Text(prose(i, text_size + 1))];
            if thinking > 0 {
                assistant.insert(
                    0,
                    ContentBlock::Thinking {
                        text: prose(i, thinking),
                        signature: None,
                    },
                );
            }
            let id = format!("call_{i}");
            if calls {
                assistant.push(ContentBlock::ToolUse {
                    id: id.clone(),
                    name: "write_file".into(),
                    input: json!({"content": prose(i + 1, payload)}),
                });
            }
            request.messages.push(Message {
                role: Role::Assistant,
                content: assistant,
            });
            let mut user = Vec::new();
            if calls {
                user.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: vec![ContentBlock::Text(prose(i + 2, payload))],
                    is_error: false,
                });
            } else {
                user.push(ContentBlock::Text(prose(i + 3, 20)));
            }
            if image {
                user.push(ContentBlock::Image(Image {
                    media_type: "image/png".into(),
                    data: PNG_1X1.into(),
                }));
            }
            request.messages.push(Message {
                role: Role::User,
                content: user,
            });
        }
        request
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn output_is_valid_within_budget_and_keeps_recent_turns(
        original in arb_conversation(),
        target in 2_000u64..60_000,
    ) {
        let config = CompressConfig::default();
        let mut request = original.clone();
        match compress(&mut request, &budget(target), &config, MODEL) {
            Ok(report) => {
                prop_assert!(estimate_request_tokens(&request) <= target);
                prop_assert_eq!(report.is_none(), request == original);
                let keep = config.keep_recent_messages.min(original.messages.len() - 1);
                prop_assert_eq!(
                    &request.messages[request.messages.len() - keep..],
                    &original.messages[original.messages.len() - keep..]
                );
                prop_assert_eq!(&request.messages[0], &original.messages[0]);
                assert_valid_upstream(&request);
            }
            Err(error) => {
                prop_assert!(error.is_context_length_exceeded());
                // Only when the untouchable parts alone are over the budget.
                let keep = config.keep_recent_messages.min(original.messages.len() - 1);
                let mut core = original.clone();
                core.messages.drain(1..original.messages.len() - keep);
                prop_assert!(estimate_request_tokens(&core) > target * 9 / 10);
            }
        }
    }
}

#[test]
fn dropping_turns_keeps_tool_calls_with_their_results_and_says_so() {
    let original = agent_conversation(30, 300);
    let mut request = original.clone();
    let report = compress(
        &mut request,
        &budget(8_000),
        &CompressConfig::default(),
        MODEL,
    )
    .unwrap()
    .unwrap();
    assert_eq!(report.level, 3);
    assert!(report.dropped_messages > 0);
    let ContentBlock::Text(note) = &request.messages[1].content[0] else {
        panic!("note expected");
    };
    assert!(note.contains(&format!(
        "removed {} earlier messages",
        report.dropped_messages
    )));
    // Every remaining result has its call, earlier in the conversation.
    let mut calls = std::collections::HashSet::new();
    for message in &request.messages {
        for block in &message.content {
            match block {
                ContentBlock::ToolUse { id, .. } => {
                    calls.insert(id.clone());
                }
                ContentBlock::ToolResult { tool_use_id, .. } => {
                    assert!(calls.contains(tool_use_id), "orphan {tool_use_id}");
                }
                _ => {}
            }
        }
    }
    assert_valid_upstream(&request);
}

#[test]
fn an_openai_agent_conversation_over_the_payload_limit_stays_valid() {
    let mut messages = vec![json!({"role": "user", "content": "start"})];
    for i in 0..40 {
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("call_{i}"), "type": "function",
             "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"),
            "content": format!("line {i} ").repeat(4_000)}));
    }
    messages.push(json!({"role": "user", "content": "summarise"}));
    let body = json!({
        "model": "auto", "messages": messages,
        "tools": [{"type": "function", "function": {"name": "read",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
    });
    let mut request = crate::dialect::openai::parse_request(body.to_string().as_bytes()).unwrap();
    let config = CompressConfig::default();
    let limit = Budget {
        max_tokens: 200_000 - config.answer_reserve_tokens,
        max_bytes: config.max_payload_bytes - config.payload_margin_bytes,
    };
    let report = compress(&mut request, &limit, &config, MODEL)
        .unwrap()
        .unwrap();
    let built = build_request(&request, MODEL, Some(ARN), &BuildOptions::default()).unwrap();
    assert!(
        built.body.len() <= limit.max_bytes,
        "{report:?} {}",
        built.body.len()
    );
    assert_valid_upstream(&request);
}
