//! Byte-level checks of the SSE encoder and the non-streaming collector.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use super::{collect_response, sse_stream};
use crate::chat::{ChatEvent, EventStream, ResponseMeta, StopReason, TokenUsage};
use crate::error::GatewayError;

const ENVELOPE: &str = r#"data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"claude-sonnet-4.5""#;

fn meta(include_usage: bool) -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-abc".into(),
        model: "claude-sonnet-4.5".into(),
        created: 1_700_000_000,
        input_tokens_estimate: 12,
        context_window: 200_000,
        include_usage,
    }
}

fn events(items: Vec<Result<ChatEvent, GatewayError>>) -> EventStream {
    Box::pin(stream::iter(items))
}

fn ok(events_list: Vec<ChatEvent>) -> EventStream {
    events(events_list.into_iter().map(Ok).collect())
}

fn text(delta: &str) -> ChatEvent {
    ChatEvent::TextDelta(delta.into())
}

fn reported(input: u64, output: u64, cache_read: u64) -> ChatEvent {
    ChatEvent::TokenUsage(TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: cache_read,
        cache_write_input_tokens: 0,
    })
}

async fn sse_body(events: EventStream, meta: ResponseMeta) -> String {
    let pieces: Vec<Bytes> = sse_stream(events, meta).collect().await;
    String::from_utf8(pieces.concat()).unwrap()
}

/// Splits an SSE body into its `data:` payloads, checking the framing on the way, and parses
/// every payload except `[DONE]` as JSON.
fn payloads(body: &str) -> (Vec<Value>, bool) {
    assert!(
        body.ends_with("\n\n"),
        "body must end with a blank line: {body:?}"
    );
    let mut parsed = Vec::new();
    let mut done = false;
    for event in body.split_terminator("\n\n") {
        assert!(!done, "nothing may follow [DONE]");
        let payload = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("every event is one data line: {event:?}"));
        assert!(
            !payload.contains('\n'),
            "a payload is one line: {payload:?}"
        );
        if payload == "[DONE]" {
            done = true;
        } else {
            parsed.push(serde_json::from_str(payload).expect("each data line is JSON"));
        }
    }
    (parsed, done)
}

fn arguments_of(chunks: &[Value], index: u64) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .filter(|call| call["index"] == index)
        .filter_map(|call| call["function"]["arguments"].as_str())
        .collect()
}

#[tokio::test]
async fn text_answer_is_byte_exact() {
    let body = sse_body(
        ok(vec![
            text("Hel"),
            text("lo \"wörld\"\n"),
            ChatEvent::Stop(StopReason::EndTurn),
            reported(10, 3, 0),
        ]),
        meta(false),
    )
    .await;
    let expected = [
        format!("{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"),
        format!("{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Hel\"}},\"finish_reason\":null}}]}}\n\n"),
        format!("{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"lo \\\"wörld\\\"\\n\"}},\"finish_reason\":null}}]}}\n\n"),
        format!("{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":3,\"total_tokens\":13,\"prompt_tokens_details\":{{\"cached_tokens\":0}}}}}}\n\n"),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    assert_eq!(body, expected);
    let (chunks, done) = payloads(&body);
    assert!(done);
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello \"wörld\"\n");
}

#[tokio::test]
async fn tool_call_arguments_stream_in_fragments_that_concatenate_to_json() {
    let id = "tooluse_abc";
    let body = sse_body(
        ok(vec![
            text("Let me check."),
            ChatEvent::ToolUseStart {
                id: id.into(),
                name: "get_weather".into(),
            },
            ChatEvent::ToolUseInput {
                id: id.into(),
                fragment: "{\"city\": \"Pa".into(),
            },
            ChatEvent::ToolUseInput {
                id: id.into(),
                fragment: "ris\", \"unit\": \"°C\"}".into(),
            },
            ChatEvent::ToolUseStop { id: id.into() },
            ChatEvent::ToolUseStart {
                id: "tooluse_def".into(),
                name: "get_time".into(),
            },
            ChatEvent::ToolUseInput {
                id: "tooluse_def".into(),
                fragment: "{\"tz\":\"CET\"}".into(),
            },
            ChatEvent::ToolUseStop {
                id: "tooluse_def".into(),
            },
        ]),
        meta(false),
    )
    .await;
    assert!(body.contains(&format!(
        "{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"tooluse_abc\",\"type\":\"function\",\"function\":{{\"name\":\"get_weather\",\"arguments\":\"\"}}}}]}},\"finish_reason\":null}}]}}\n\n"
    )));
    let (chunks, done) = payloads(&body);
    assert!(done);
    let first: Value = serde_json::from_str(&arguments_of(&chunks, 0)).unwrap();
    assert_eq!(first, json!({"city": "Paris", "unit": "°C"}));
    let second: Value = serde_json::from_str(&arguments_of(&chunks, 1)).unwrap();
    assert_eq!(second, json!({"tz": "CET"}));
    // The SDK concatenates `id` and `name` across deltas: each must appear once per call.
    let ids: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .filter_map(|call| call.get("id"))
        .collect();
    assert_eq!(ids, [&json!("tooluse_abc"), &json!("tooluse_def")]);
    let finish = &chunks[chunks.len() - 1];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_tool_call_without_arguments_gets_an_empty_object() {
    let body = sse_body(
        ok(vec![
            ChatEvent::ToolUseStart {
                id: "t1".into(),
                name: "list".into(),
            },
            ChatEvent::ToolUseStop { id: "t1".into() },
            // Never stopped: closed at the end of the stream.
            ChatEvent::ToolUseStart {
                id: "t2".into(),
                name: "list".into(),
            },
        ]),
        meta(false),
    )
    .await;
    let (chunks, _) = payloads(&body);
    assert_eq!(arguments_of(&chunks, 0), "{}");
    assert_eq!(arguments_of(&chunks, 1), "{}");
}

#[tokio::test]
async fn reasoning_goes_to_reasoning_content() {
    let body = sse_body(
        ok(vec![
            ChatEvent::ReasoningDelta("Think\tit".into()),
            ChatEvent::ReasoningSignature("sig".into()),
            text("Answer"),
        ]),
        meta(false),
    )
    .await;
    assert!(body.contains(&format!(
        "{ENVELOPE},\"choices\":[{{\"index\":0,\"delta\":{{\"reasoning_content\":\"Think\\tit\"}},\"finish_reason\":null}}]}}\n\n"
    )));
    let (chunks, _) = payloads(&body);
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["reasoning_content"],
        "Think\tit"
    );
    assert!(chunks[1]["choices"][0]["delta"].get("content").is_none());
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "Answer");
}

#[tokio::test]
async fn include_usage_sends_one_usage_chunk_with_no_choices() {
    let body = sse_body(
        ok(vec![
            text("hi"),
            reported(100, 5, 40),
            ChatEvent::Metering { credits: 0.25 },
        ]),
        meta(true),
    )
    .await;
    assert!(body.ends_with(&format!(
        "{ENVELOPE},\"choices\":[],\"usage\":{{\"prompt_tokens\":140,\"completion_tokens\":5,\"total_tokens\":145,\"prompt_tokens_details\":{{\"cached_tokens\":40}},\"credits_used\":0.25}}}}\n\ndata: [DONE]\n\n"
    )));
    let (chunks, done) = payloads(&body);
    assert!(done);
    let with_usage = chunks
        .iter()
        .filter(|chunk| chunk.get("usage").is_some())
        .count();
    assert_eq!(with_usage, 1, "usage must not be counted twice");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish.get("usage").is_none());
}

#[tokio::test]
async fn usage_falls_back_to_context_percentage_then_estimate() {
    let body = sse_body(
        ok(vec![
            text("abcdefgh"),
            ChatEvent::ContextUsage { percent: 1.0 },
        ]),
        meta(false),
    )
    .await;
    let (chunks, _) = payloads(&body);
    let usage = &chunks[chunks.len() - 1]["usage"];
    // 1 % of 200k = 2000 tokens in all, the rest of which is the prompt.
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(completion, crate::tokens::estimate_text_tokens("abcdefgh"));
    assert_eq!(usage["prompt_tokens"].as_u64().unwrap(), 2000 - completion);
    assert_eq!(usage["total_tokens"], 2000);

    let body = sse_body(ok(vec![text("abcd")]), meta(false)).await;
    let (chunks, _) = payloads(&body);
    assert_eq!(chunks[chunks.len() - 1]["usage"]["prompt_tokens"], 12);
}

#[tokio::test]
async fn finish_reasons_follow_the_stop_event() {
    for (stop, expected) in [
        (StopReason::MaxTokens, "length"),
        (StopReason::ContentFiltered, "content_filter"),
        (StopReason::StopSequence, "stop"),
        (StopReason::ToolUse, "tool_calls"),
    ] {
        let body = sse_body(ok(vec![text("x"), ChatEvent::Stop(stop)]), meta(false)).await;
        let (chunks, _) = payloads(&body);
        assert_eq!(
            chunks[chunks.len() - 1]["choices"][0]["finish_reason"],
            expected
        );
    }
}

#[tokio::test]
async fn an_error_mid_stream_becomes_an_error_event_and_ends_the_stream() {
    // After the error the upstream would never end: the encoder must not poll it again.
    let upstream: EventStream = Box::pin(
        stream::iter(vec![
            Ok(text("partial")),
            Err(GatewayError::upstream_stream("Kiro stream broke")),
        ])
        .chain(stream::pending()),
    );
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sse_body(upstream, meta(true)),
    )
    .await
    .expect("the stream must end after an error");
    let (chunks, done) = payloads(&body);
    assert!(!done, "no [DONE] after an error");
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["error"]["message"], "Kiro stream broke");
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(chunks
        .iter()
        .all(|chunk| chunk["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn each_delta_is_sent_before_the_upstream_finishes() {
    let (sender, receiver) =
        tokio::sync::mpsc::unbounded_channel::<Result<ChatEvent, GatewayError>>();
    let upstream: EventStream = Box::pin(stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    }));
    let mut sse = Box::pin(sse_stream(upstream, meta(false)));
    let role = sse.next().await.unwrap();
    assert!(std::str::from_utf8(&role)
        .unwrap()
        .contains("\"role\":\"assistant\""));
    sender
        .send(Ok(ChatEvent::ContextUsage { percent: 3.0 }))
        .unwrap();
    sender.send(Ok(text("first"))).unwrap();
    let first = sse.next().await.unwrap();
    assert!(std::str::from_utf8(&first)
        .unwrap()
        .contains("\"content\":\"first\""));
    sender.send(Ok(text("second"))).unwrap();
    let second = sse.next().await.unwrap();
    assert!(std::str::from_utf8(&second)
        .unwrap()
        .contains("\"content\":\"second\""));
    drop(sender);
    let finish = sse.next().await.unwrap();
    assert!(std::str::from_utf8(&finish)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
    assert!(sse.next().await.is_none());
}

#[tokio::test]
async fn id_and_model_are_escaped() {
    let mut odd = meta(false);
    odd.model = "we\"ird\\model".into();
    let body = sse_body(ok(vec![text("x")]), odd).await;
    let (chunks, _) = payloads(&body);
    assert!(chunks
        .iter()
        .all(|chunk| chunk["model"] == "we\"ird\\model"));
    assert!(chunks.iter().all(|chunk| chunk["id"] == "chatcmpl-abc"));
    assert!(chunks
        .iter()
        .all(|chunk| chunk["object"] == "chat.completion.chunk"));
}

async fn collected(events: EventStream) -> Value {
    let body = collect_response(events, meta(false)).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn collects_a_text_answer() {
    let body = collected(ok(vec![
        ChatEvent::ReasoningDelta("hmm".into()),
        text("Hello "),
        text("there"),
        ChatEvent::Stop(StopReason::EndTurn),
        reported(20, 2, 0),
    ]))
    .await;
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "claude-sonnet-4.5",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there", "reasoning_content": "hmm"},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 2,
                "total_tokens": 22,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        })
    );
}

#[tokio::test]
async fn collects_tool_calls_with_null_content() {
    let body = collected(ok(vec![
        ChatEvent::ToolUseStart {
            id: "t1".into(),
            name: "search".into(),
        },
        ChatEvent::ToolUseInput {
            id: "t1".into(),
            fragment: "{\"q\":".into(),
        },
        ChatEvent::ToolUseInput {
            id: "t1".into(),
            fragment: "\"rust\"}".into(),
        },
        ChatEvent::ToolUseStop { id: "t1".into() },
        ChatEvent::ToolUseStart {
            id: "t2".into(),
            name: "now".into(),
        },
        ChatEvent::ToolUseStop { id: "t2".into() },
    ]))
    .await;
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert!(message.get("reasoning_content").is_none());
    assert_eq!(
        message["tool_calls"],
        json!([
            {"id": "t1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}},
            {"id": "t2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ])
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn an_empty_answer_has_empty_content() {
    let body = collected(ok(vec![])).await;
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn collect_returns_the_stream_error() {
    let result = collect_response(
        events(vec![
            Ok(text("part")),
            Err(GatewayError::timeout("upstream too slow")),
        ]),
        meta(false),
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.message(), "upstream too slow");
    assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
}

mod random_answers {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Piece {
        Text(String),
        Reasoning(String),
        /// A tool call whose arguments JSON is cut at these char positions.
        Tool(String, Value, Vec<usize>),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            any::<String>().prop_map(Piece::Text),
            "[\\x00-\\x7f]{0,20}".prop_map(Piece::Reasoning),
            (
                "[a-z_]{1,12}",
                prop::collection::hash_map("[a-z\"\\\\\n ]{1,8}", any::<String>(), 0..4),
                prop::collection::vec(0usize..64, 0..4),
            )
                .prop_map(|(name, args, cuts)| Piece::Tool(name, json!(args), cuts)),
        ]
    }

    fn run(pieces: &[Piece], include_usage: bool) -> String {
        let mut answer = Vec::new();
        for (number, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(text) => answer.push(ChatEvent::TextDelta(text.as_str().into())),
                Piece::Reasoning(text) => {
                    answer.push(ChatEvent::ReasoningDelta(text.as_str().into()))
                }
                Piece::Tool(name, args, cuts) => {
                    let id: bytestring::ByteString = format!("tooluse_{number}").into();
                    answer.push(ChatEvent::ToolUseStart {
                        id: id.clone(),
                        name: name.as_str().into(),
                    });
                    let encoded = args.to_string();
                    let chars: Vec<char> = encoded.chars().collect();
                    let mut bounds: Vec<usize> =
                        cuts.iter().map(|cut| cut % (chars.len() + 1)).collect();
                    bounds.push(0);
                    bounds.push(chars.len());
                    bounds.sort_unstable();
                    for window in bounds.windows(2) {
                        let fragment: String = chars[window[0]..window[1]].iter().collect();
                        answer.push(ChatEvent::ToolUseInput {
                            id: id.clone(),
                            fragment: fragment.into(),
                        });
                    }
                    answer.push(ChatEvent::ToolUseStop { id });
                }
            }
        }
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sse_body(ok(answer), meta(include_usage)))
    }

    proptest! {
        #[test]
        fn every_line_parses_and_the_answer_reassembles(
            pieces in prop::collection::vec(piece(), 0..8),
            include_usage in any::<bool>(),
        ) {
            let body = run(&pieces, include_usage);
            let (chunks, done) = payloads(&body);
            prop_assert!(done);
            let delta_text = |key: &str| -> String {
                chunks.iter().filter_map(|chunk| chunk["choices"][0]["delta"][key].as_str()).collect()
            };
            let texts: String = pieces.iter().filter_map(|piece| match piece { Piece::Text(text) => Some(text.as_str()), _ => None }).collect();
            let reasoning: String = pieces.iter().filter_map(|piece| match piece { Piece::Reasoning(text) => Some(text.as_str()), _ => None }).collect();
            prop_assert_eq!(delta_text("content"), texts);
            prop_assert_eq!(delta_text("reasoning_content"), reasoning);
            let tools: Vec<&Value> = pieces.iter().filter_map(|piece| match piece { Piece::Tool(_, args, _) => Some(args), _ => None }).collect();
            for (index, args) in tools.iter().enumerate() {
                let assembled: Value = serde_json::from_str(&arguments_of(&chunks, index as u64)).unwrap();
                prop_assert_eq!(&assembled, *args);
            }
            let finish = if include_usage { &chunks[chunks.len() - 2] } else { &chunks[chunks.len() - 1] };
            let expected = if tools.is_empty() { "stop" } else { "tool_calls" };
            prop_assert_eq!(&finish["choices"][0]["finish_reason"], expected);
        }
    }
}
