//! Real Kiro response bodies (test_data/kiro-captures) through the frame decoder, the event
//! decoder and `decode_body`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use kiro_layers::chat::ChatEvent;
use kiro_layers::kiro::errors;
use kiro_layers::kiro::events::{decode_body, EventDecoder};
use kiro_layers::kiro::eventstream::{Decoder, Message};
use serde_json::Value;

/// Frame counts from the table in test_data/kiro-captures/README.md.
const BINARY_CAPTURES: [(&str, usize, usize); 11] = [
    // (file, frames, tool calls)
    ("kiro-cli-q-20260524-t01-text-auto.bin", 44, 0),
    ("kiro-cli-q-20260524-t02-text-auto.bin", 22, 0),
    ("kiro-cli-q-20260524-t03-tooluse-introspect.bin", 18, 1),
    ("kiro-cli-q-20260524-t04-text-auto.bin", 63, 0),
    ("kiro-cli-q-20260524-t05-text-summary-auto.bin", 76, 0),
    ("kiro-cli-q-20260524-t06-two-tooluses-read.bin", 51, 2),
    ("kiro-cli-q-20260524-t07-tooluse-read.bin", 60, 1),
    ("kiro-cli-q-20260524-t08-tooluse-read.bin", 70, 1),
    ("kiro-cli-q-20260524-t09-tooluse-read.bin", 90, 1),
    ("kiro-cli-q-20260524-t10-text-long-auto.bin", 362, 0),
    ("kiro-cli-q-20260524-t11-text-opus47.bin", 14, 0),
];

fn capture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "test_data",
        "kiro-captures",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn frames(data: &[u8]) -> Vec<Message> {
    let mut decoder = Decoder::new();
    decoder.push(data);
    let mut messages = Vec::new();
    while let Some(message) = decoder.next_message().unwrap() {
        messages.push(message);
    }
    decoder.finish().unwrap();
    messages
}

fn events(messages: &[Message]) -> Vec<ChatEvent> {
    let mut decoder = EventDecoder::new();
    let mut events = Vec::new();
    for message in messages {
        decoder.decode(message, &mut events).unwrap();
    }
    assert!(decoder.open_tool_calls().is_empty());
    events
}

/// The naive reading: walk frames by their length field, take string headers, parse payloads
/// with serde_json::Value, join every `content`. Shares no code with the decoders under test.
fn reference_text(data: &[u8]) -> String {
    let mut text = String::new();
    let mut rest = data;
    while !rest.is_empty() {
        let total = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        let (frame, tail) = rest.split_at(total);
        let mut headers = &frame[12..12 + headers_len];
        let mut event_type = String::new();
        while !headers.is_empty() {
            let name_len = headers[0] as usize;
            let name = std::str::from_utf8(&headers[1..1 + name_len]).unwrap();
            assert_eq!(
                headers[1 + name_len],
                7,
                "captures only carry string headers"
            );
            let at = 2 + name_len;
            let value_len = u16::from_be_bytes([headers[at], headers[at + 1]]) as usize;
            let value = std::str::from_utf8(&headers[at + 2..at + 2 + value_len]).unwrap();
            if name == ":event-type" {
                event_type = value.to_owned();
            }
            headers = &headers[at + 2 + value_len..];
        }
        let payload = &frame[12 + headers_len..total - 4];
        if event_type == "assistantResponseEvent" {
            let json: Value = serde_json::from_slice(payload).unwrap();
            text.push_str(json["content"].as_str().unwrap());
        }
        rest = tail;
    }
    text
}

fn text_of(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::TextDelta(text) => Some(&**text),
            _ => None,
        })
        .collect()
}

/// (name, joined fragments) per tool call id, in start order.
fn tool_calls(events: &[ChatEvent]) -> Vec<(String, String, String)> {
    let mut order = Vec::new();
    let mut calls: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
    for event in events {
        match event {
            ChatEvent::ToolUseStart { id, name } => {
                assert!(!calls.contains_key(&**id), "started twice: {id}");
                order.push(id.to_string());
                calls.insert(id.to_string(), (name.to_string(), String::new(), false));
            }
            ChatEvent::ToolUseInput { id, fragment } => {
                let call = calls.get_mut(&**id).expect("input before start");
                assert!(!call.2, "input after stop");
                call.1.push_str(fragment);
            }
            ChatEvent::ToolUseStop { id } => {
                calls.get_mut(&**id).expect("stop before start").2 = true
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .map(|id| {
            let (name, input, stopped) = calls.remove(&id).unwrap();
            assert!(stopped, "call {id} never stopped");
            (id, name, input)
        })
        .collect()
}

#[test]
fn every_capture_decodes_with_the_documented_frame_count() {
    for (name, frame_count, _) in BINARY_CAPTURES {
        let messages = frames(&capture(name));
        assert_eq!(messages.len(), frame_count, "{name}");
        for message in &messages {
            assert_eq!(message.headers.len(), 3, "{name}");
            assert_eq!(message.header_str(":message-type"), Some("event"), "{name}");
        }
        assert_eq!(
            messages[0].header_str(":event-type"),
            Some("initial-response")
        );
    }
}

#[test]
fn text_matches_an_independent_reference_decode() {
    for (name, _, tools) in BINARY_CAPTURES {
        let data = capture(name);
        let text = text_of(&events(&frames(&data)));
        assert_eq!(text, reference_text(&data), "{name}");
        if tools == 0 {
            assert!(!text.trim().is_empty(), "{name} has no text");
        }
    }
}

#[test]
fn tool_calls_have_ids_names_and_json_arguments() {
    for (name, _, expected_calls) in BINARY_CAPTURES {
        let calls = tool_calls(&events(&frames(&capture(name))));
        assert_eq!(calls.len(), expected_calls, "{name}");
        for (id, tool, input) in &calls {
            assert!(id.starts_with("tooluse_"), "{name}: {id}");
            assert!(!tool.is_empty(), "{name}");
            let arguments: Value = serde_json::from_str(input)
                .unwrap_or_else(|e| panic!("{name}: arguments of {id} are not JSON: {e}"));
            assert!(arguments.is_object(), "{name}");
        }
    }
    let two = tool_calls(&events(&frames(&capture(
        "kiro-cli-q-20260524-t06-two-tooluses-read.bin",
    ))));
    assert_ne!(two[0].0, two[1].0);
}

#[test]
fn every_stream_ends_with_context_usage_then_metering() {
    for (name, _, _) in BINARY_CAPTURES {
        let events = events(&frames(&capture(name)));
        let n = events.len();
        assert!(
            matches!(events[n - 2], ChatEvent::ContextUsage { percent } if percent > 0.0 && percent < 100.0),
            "{name}: {:?}",
            events[n - 2]
        );
        assert!(
            matches!(events[n - 1], ChatEvent::Metering { credits } if credits > 0.0),
            "{name}: {:?}",
            events[n - 1]
        );
    }
}

async fn through_decode_body(data: &[u8], chunk: usize, merge: bool) -> Vec<ChatEvent> {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    decode_body(stream::iter(chunks), merge)
        .map(|item| item.unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn decode_body_gives_the_same_events_for_any_chunking() {
    for (name, _, _) in BINARY_CAPTURES {
        let data = capture(name);
        let expected = events(&frames(&data));
        for chunk in [1, 7, data.len()] {
            assert_eq!(
                through_decode_body(&data, chunk, false).await,
                expected,
                "{name}, {chunk}-byte chunks"
            );
        }
    }
}

/// Merged deltas carry the same text and every other event in the same order, whatever the
/// chunking; a body received in one read has no two text deltas in a row.
#[tokio::test]
async fn merged_deltas_keep_the_text_and_the_other_events() {
    fn squash(events: &[ChatEvent]) -> (String, Vec<ChatEvent>) {
        let mut text = String::new();
        let mut others = Vec::new();
        for event in events {
            match event {
                ChatEvent::TextDelta(delta) => text.push_str(delta),
                other => others.push(other.clone()),
            }
        }
        (text, others)
    }
    for (name, _, _) in BINARY_CAPTURES {
        let data = capture(name);
        let expected = squash(&events(&frames(&data)));
        for chunk in [1, 7, 100, data.len()] {
            let merged = through_decode_body(&data, chunk, true).await;
            assert_eq!(squash(&merged), expected, "{name}, {chunk}-byte chunks");
            if chunk == data.len() {
                assert!(
                    !merged.windows(2).any(|pair| matches!(
                        pair,
                        [ChatEvent::TextDelta(_), ChatEvent::TextDelta(_)]
                    )),
                    "{name}: unmerged deltas in one read"
                );
            }
        }
    }
}

#[tokio::test]
async fn decode_body_reports_a_cut_body() {
    let data = capture("kiro-cli-q-20260524-t03-tooluse-introspect.bin");
    let chunks = vec![Ok::<_, std::io::Error>(Bytes::copy_from_slice(
        &data[..data.len() / 2],
    ))];
    let items: Vec<_> = decode_body(stream::iter(chunks), true).collect().await;
    let error = items.last().unwrap().as_ref().unwrap_err();
    assert!(error.is_upstream_failure());
    assert!(error.message().contains("cut off"), "{}", error.message());
    // The call was started, never stopped, and nothing was invented to close it.
    assert!(items
        .iter()
        .any(|i| matches!(i, Ok(ChatEvent::ToolUseStart { .. }))));
    assert!(!items
        .iter()
        .any(|i| matches!(i, Ok(ChatEvent::ToolUseStop { .. }))));
}

#[tokio::test]
async fn decode_body_ends_after_a_transport_error() {
    let data = capture("kiro-cli-q-20260524-t02-text-auto.bin");
    let chunks = vec![
        Ok(Bytes::copy_from_slice(&data[..500])),
        Err("connection reset by peer"),
        Ok(Bytes::copy_from_slice(&data[500..])),
    ];
    let items: Vec<_> = decode_body(stream::iter(chunks), true).collect().await;
    let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message().contains("connection reset by peer"));
    assert!(items.last().unwrap().is_err(), "nothing after the error");
}

#[tokio::test]
async fn decode_body_ends_after_a_corrupt_frame() {
    let mut data = capture("kiro-cli-q-20260524-t02-text-auto.bin");
    data[300] ^= 0x20;
    let items: Vec<_> = decode_body(
        stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]),
        true,
    )
    .collect()
    .await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(last.message().contains("CRC"), "{}", last.message());
    assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
}

#[tokio::test]
async fn decode_body_surfaces_an_exception_frame() {
    let mut wire = bytes::BytesMut::new();
    Message::event("assistantResponseEvent", &br#"{"content":"Hi"}"#[..]).encode_into(&mut wire);
    Message::exception(
        "ThrottlingException",
        &br#"{"message":"Too many requests, please wait before trying again."}"#[..],
    )
    .encode_into(&mut wire);
    Message::event("assistantResponseEvent", &br#"{"content":"lost"}"#[..]).encode_into(&mut wire);
    let items: Vec<_> = decode_body(stream::iter([Ok::<_, std::io::Error>(wire.freeze())]), true)
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert!(matches!(&items[0], Ok(ChatEvent::TextDelta(t)) if t == "Hi"));
    assert!(items[1].as_ref().unwrap_err().is_rate_limited());
}

/// The decoded JSONL captures (no binary framing in the source) re-framed with our encoder.
fn jsonl_events(name: &str) -> Vec<ChatEvent> {
    let text = String::from_utf8(capture(name)).unwrap();
    let messages: Vec<Message> = text
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            Message::event(
                record["event_type"].as_str().unwrap(),
                record["payload"].to_string(),
            )
        })
        .collect();
    events(&messages)
}

#[test]
fn minimax_reasoning_and_empty_text_frames() {
    let events = jsonl_events("kiro-cli-q-20260602-imgflow01-minimax-reasoning-text-tooluse.jsonl");
    assert!(matches!(&events[0], ChatEvent::ReasoningDelta(t) if t.contains("用户说")));
    assert!(!events
        .iter()
        .any(|e| matches!(e, ChatEvent::TextDelta(t) if t.is_empty())));
    assert_eq!(tool_calls(&events).len(), 1);
}

#[test]
fn identical_consecutive_deltas_survive() {
    let events = jsonl_events("kiro-cli-q-20260602-imgflow08-haiku-text-image-input.jsonl");
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::TextDelta(t) => Some(&**t),
            _ => None,
        })
        .collect();
    assert!(deltas.windows(2).any(|w| w[0] == "格" && w[1] == "格"));
}

#[test]
fn real_chat_400_maps_with_its_reason() {
    let text = String::from_utf8(capture("kiro-cli-http-responses.jsonl")).unwrap();
    let record: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["status"], 400);
    let body = record["body"].to_string();
    let error = errors::from_status(
        http::StatusCode::BAD_REQUEST,
        &http::HeaderMap::new(),
        body.as_bytes(),
    );
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(error.upstream_reason(), Some("IMAGE_FORMAT_UNSUPPORTED"));
    assert!(error.message().contains("image content block"));
}
