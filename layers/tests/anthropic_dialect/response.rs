//! SSE event order, non-streaming bodies and keep-alive pings.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::StatusCode;
use kiro_layers::chat::{ChatEvent, EventStream, ResponseMeta, StopReason, TokenUsage};
use kiro_layers::dialect::anthropic::{collect_response, sse_stream, with_keepalive};
use kiro_layers::GatewayError;
use serde_json::{json, Value};

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "msg_01TestTestTestTestTestTe".into(),
        model: "claude-sonnet-4-5".into(),
        created: 1_700_000_000,
        input_tokens_estimate: 42,
        context_window: 200_000,
        include_usage: false,
    }
}

fn events(items: Vec<Result<ChatEvent, GatewayError>>) -> EventStream {
    Box::pin(stream::iter(items))
}

/// Parses SSE bytes into (event name, data JSON), checking the framing on the way.
fn frames(chunks: &[Bytes]) -> Vec<(String, Value)> {
    let all: Vec<u8> = chunks.concat();
    let text = String::from_utf8(all).expect("SSE is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "stream must end on a frame boundary"
    );
    text.trim_end_matches('\n')
        .split("\n\n")
        .map(|frame| {
            let mut lines = frame.lines();
            let event = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert!(lines.next().is_none(), "one data line per frame");
            let data: Value = serde_json::from_str(data).expect("data is JSON");
            assert_eq!(data["type"], event.as_str(), "event name matches data.type");
            (event, data)
        })
        .collect()
}

async fn sse(items: Vec<Result<ChatEvent, GatewayError>>) -> Vec<(String, Value)> {
    let chunks: Vec<Bytes> = sse_stream(events(items), meta()).collect().await;
    frames(&chunks)
}

fn names(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn text_answer_in_anthropic_order() {
    let frames = sse(vec![
        Ok(ChatEvent::TextDelta("Hello".into())),
        Ok(ChatEvent::TextDelta(", \"world\"\n".into())),
        Ok(ChatEvent::Stop(StopReason::EndTurn)),
    ])
    .await;
    assert_eq!(
        names(&frames),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &frames[0].1["message"];
    assert_eq!(start["id"], "msg_01TestTestTestTestTestTe");
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 42);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(
        frames[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        frames[3].1["delta"],
        json!({"type": "text_delta", "text": ", \"world\"\n"})
    );
    assert_eq!(frames[4].1["index"], 0);
    let delta = &frames[5].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() >= 2);
    assert_eq!(delta["usage"]["input_tokens"], 42);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 0);
}

#[tokio::test]
async fn thinking_then_text_gets_two_blocks_and_a_signature() {
    let frames = sse(vec![
        Ok(ChatEvent::ReasoningDelta("Let me ".into())),
        Ok(ChatEvent::ReasoningDelta("think.".into())),
        Ok(ChatEvent::TextDelta("Answer.".into())),
    ])
    .await;
    assert_eq!(
        names(&frames),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        frames[1].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(
        frames[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "Let me "})
    );
    assert_eq!(frames[4].1["delta"]["type"], "signature_delta");
    assert!(!frames[4].1["delta"]["signature"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(frames[5].1["index"], 0);
    assert_eq!(frames[6].1["index"], 1);
    assert_eq!(frames[6].1["content_block"]["type"], "text");
    assert_eq!(frames[9].1["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn upstream_signature_is_passed_on() {
    let frames = sse(vec![
        Ok(ChatEvent::ReasoningDelta("hm".into())),
        Ok(ChatEvent::ReasoningSignature("EqQBCkYIAxgC".into())),
        Ok(ChatEvent::TextDelta("ok".into())),
    ])
    .await;
    assert_eq!(
        frames[3].1["delta"],
        json!({"type": "signature_delta", "signature": "EqQBCkYIAxgC"})
    );
}

#[tokio::test]
async fn tool_call_streams_its_input_fragments() {
    let frames = sse(vec![
        Ok(ChatEvent::TextDelta("Reading.".into())),
        Ok(ChatEvent::ToolUseStart {
            id: "toolu_9".into(),
            name: "read_file".into(),
        }),
        Ok(ChatEvent::ToolUseInput {
            id: "toolu_9".into(),
            fragment: "{\"path\":".into(),
        }),
        Ok(ChatEvent::ToolUseInput {
            id: "toolu_9".into(),
            fragment: " \"a.txt\"}".into(),
        }),
        Ok(ChatEvent::ToolUseStop {
            id: "toolu_9".into(),
        }),
        Ok(ChatEvent::TokenUsage(TokenUsage {
            input_tokens: 1000,
            output_tokens: 30,
            cache_read_input_tokens: 500,
            cache_write_input_tokens: 7,
        })),
    ])
    .await;
    assert_eq!(
        names(&frames),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        frames[4].1,
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "tool_use", "id": "toolu_9", "name": "read_file", "input": {}}})
    );
    let json_text: String = frames[5..7]
        .iter()
        .map(|(_, f)| {
            assert_eq!(f["delta"]["type"], "input_json_delta");
            f["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"path": "a.txt"})
    );
    let end = &frames[8].1;
    assert_eq!(end["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        end["usage"],
        json!({"input_tokens": 1000, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 500, "output_tokens": 30})
    );
}

#[tokio::test]
async fn max_tokens_stop_is_reported() {
    let frames = sse(vec![
        Ok(ChatEvent::TextDelta("cut".into())),
        Ok(ChatEvent::Stop(StopReason::MaxTokens)),
    ])
    .await;
    assert_eq!(frames[4].1["delta"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn error_mid_stream_ends_with_an_error_event() {
    let frames = sse(vec![
        Ok(ChatEvent::TextDelta("partial".into())),
        Err(GatewayError::overloaded("Kiro is overloaded")),
        Ok(ChatEvent::TextDelta("never sent".into())),
    ])
    .await;
    assert_eq!(
        names(&frames),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        frames[3].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Kiro is overloaded"}})
    );
}

#[tokio::test]
async fn empty_answer_is_still_a_complete_message() {
    let frames = sse(vec![]).await;
    assert_eq!(
        names(&frames),
        ["message_start", "message_delta", "message_stop"]
    );
}

// ---------------------------------------------------------------- non-streaming

#[tokio::test]
async fn collected_message_has_every_block_and_usage() {
    let body = collect_response(
        events(vec![
            Ok(ChatEvent::ReasoningDelta("plan".into())),
            Ok(ChatEvent::TextDelta("Reading ".into())),
            Ok(ChatEvent::TextDelta("now.".into())),
            Ok(ChatEvent::ToolUseStart {
                id: "toolu_1".into(),
                name: "read_file".into(),
            }),
            Ok(ChatEvent::ToolUseInput {
                id: "toolu_1".into(),
                fragment: "{\"path\":\"a\"}".into(),
            }),
            Ok(ChatEvent::ToolUseStop {
                id: "toolu_1".into(),
            }),
            Ok(ChatEvent::ContextUsage { percent: 1.0 }),
        ]),
        meta(),
    )
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["id"], "msg_01TestTestTestTestTestTe");
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["stop_sequence"], Value::Null);
    let content = body["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(content[0]["type"], "thinking");
    assert_eq!(content[0]["thinking"], "plan");
    assert!(!content[0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(content[1], json!({"type": "text", "text": "Reading now."}));
    assert_eq!(
        content[2],
        json!({"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}})
    );
    let usage = &body["usage"];
    // 1 % of 200k is 2000 tokens in all; the input is what the output did not use.
    let output = usage["output_tokens"].as_u64().unwrap();
    assert!(output > 0);
    assert_eq!(usage["input_tokens"].as_u64().unwrap(), 2000 - output);
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(usage["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn collected_message_fails_on_an_upstream_error() {
    let err = collect_response(
        events(vec![
            Ok(ChatEvent::TextDelta("partial".into())),
            Err(GatewayError::upstream_stream("reset")),
        ]),
        meta(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn stream_and_collect_agree() {
    let script = || {
        vec![
            Ok(ChatEvent::ReasoningDelta("a".into())),
            Ok(ChatEvent::ReasoningSignature("sig".into())),
            Ok(ChatEvent::TextDelta("b".into())),
            Ok(ChatEvent::ToolUseStart {
                id: "t".into(),
                name: "n".into(),
            }),
            Ok(ChatEvent::ToolUseInput {
                id: "t".into(),
                fragment: "{\"x\":1}".into(),
            }),
            Ok(ChatEvent::ToolUseStop { id: "t".into() }),
            Ok(ChatEvent::ToolUseStart {
                id: "u".into(),
                name: "m".into(),
            }),
            Ok(ChatEvent::ToolUseStop { id: "u".into() }),
        ]
    };
    // Accumulate the stream the way the SDK does.
    let mut content: Vec<Value> = Vec::new();
    let mut json_bufs: Vec<String> = Vec::new();
    let mut stop_reason = Value::Null;
    for (name, data) in sse(script()).await {
        match name.as_str() {
            "content_block_start" => {
                content.push(data["content_block"].clone());
                json_bufs.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = content[i]["text"].as_str().unwrap().to_owned();
                        content[i]["text"] = json!(t + delta["text"].as_str().unwrap());
                    }
                    "thinking_delta" => {
                        let t = content[i]["thinking"].as_str().unwrap().to_owned();
                        content[i]["thinking"] = json!(t + delta["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => content[i]["signature"] = delta["signature"].clone(),
                    "input_json_delta" => {
                        json_bufs[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if content[i]["type"] == "tool_use" && !json_bufs[i].is_empty() {
                    content[i]["input"] = serde_json::from_str(&json_bufs[i]).unwrap();
                }
            }
            "message_delta" => stop_reason = data["delta"]["stop_reason"].clone(),
            _ => {}
        }
    }
    let collected = collect_response(events(script()), meta()).await.unwrap();
    let collected: Value = serde_json::from_slice(&collected).unwrap();
    assert_eq!(Value::Array(content), collected["content"]);
    assert_eq!(stop_reason, collected["stop_reason"]);
}

// ---------------------------------------------------------------- keep-alive

#[tokio::test(start_paused = true)]
async fn pings_fill_upstream_silence() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let inner =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut stream = Box::pin(with_keepalive(inner, Duration::from_secs(15)));
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(stream.next().await.unwrap(), "first");

    let started = tokio::time::Instant::now();
    let ping = stream.next().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    let ping_frames = frames(&[ping]);
    assert_eq!(ping_frames[0].0, "ping");

    tokio::time::sleep(Duration::from_secs(10)).await;
    tx.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(stream.next().await.unwrap(), "second");
    // The timer restarts after real data: the next ping is 15 s after "second", not 5 s.
    let before = tokio::time::Instant::now();
    assert_eq!(frames(&[stream.next().await.unwrap()])[0].0, "ping");
    assert_eq!(before.elapsed(), Duration::from_secs(15));

    drop(tx);
    assert!(stream.next().await.is_none());
}
