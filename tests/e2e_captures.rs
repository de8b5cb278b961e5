//! Every real Kiro capture, replayed byte for byte by the fake upstream, reaches an OpenAI client
//! losslessly: the same text and the same tool calls with the same arguments, streamed or not.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use kiro_layers::chat::ChatEvent;
use kiro_layers::kiro::events::EventDecoder;
use kiro_layers::kiro::eventstream::Decoder;
use serde_json::json;

fn capture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layers/test_data/kiro-captures")
}

/// What the capture says, decoded directly (no gateway): text and tool calls by id.
fn reference(bytes: &[u8]) -> (String, BTreeMap<String, (String, String)>) {
    let mut decoder = Decoder::new();
    decoder.push(bytes);
    let mut events = EventDecoder::new();
    let mut out: Vec<ChatEvent> = Vec::new();
    while let Some(message) = decoder.next_message().unwrap() {
        events.decode(&message, &mut out).unwrap();
    }
    let mut text = String::new();
    let mut calls: BTreeMap<String, (String, String)> = BTreeMap::new();
    for event in out {
        match event {
            ChatEvent::TextDelta(t) => text.push_str(&t),
            ChatEvent::ToolUseStart { id, name } => {
                calls.insert(id.to_string(), (name.to_string(), String::new()));
            }
            ChatEvent::ToolUseInput { id, fragment } => {
                calls.get_mut(&*id).unwrap().1.push_str(&fragment);
            }
            _ => {}
        }
    }
    (text, calls)
}

fn tool_request(stem: &str, stream: bool) -> serde_json::Value {
    // The captured calls use kiro-cli's tools; offer tools of the same names so the gateway
    // keeps the calls structured.
    let tool = |name: &str| json!({"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object"}}});
    json!({
        "model": "auto",
        "stream": stream,
        "reasoning_effort": "none",
        "messages": [{"role": "user", "content": format!("[fake:capture:{stem}]")}],
        "tools": [tool("introspect"), tool("fs_read"), tool("execute_bash"), tool("fs_write")],
    })
}

#[tokio::test]
async fn every_capture_reaches_openai_clients_losslessly() {
    let h = start().await;
    let mut seen = 0;
    for entry in std::fs::read_dir(capture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        seen += 1;
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let (want_text, want_calls) = reference(&std::fs::read(&path).unwrap());

        // Non-streamed.
        let body: serde_json::Value = h
            .post("/v1/chat/completions", tool_request(&stem, false))
            .await
            .json()
            .await
            .unwrap();
        let message = &body["choices"][0]["message"];
        assert_eq!(
            message["content"].as_str().unwrap_or(""),
            want_text,
            "{stem}: text"
        );
        let got_calls: BTreeMap<String, (String, String)> = message["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap().to_owned(),
                            (
                                c["function"]["name"].as_str().unwrap().to_owned(),
                                c["function"]["arguments"].as_str().unwrap().to_owned(),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got_calls.len(), want_calls.len(), "{stem}: tool calls");
        for (id, (name, args)) in &want_calls {
            let (got_name, got_args) = &got_calls[id];
            assert_eq!(got_name, name, "{stem}");
            let want: serde_json::Value = serde_json::from_str(args).unwrap();
            let got: serde_json::Value = serde_json::from_str(got_args).unwrap();
            assert_eq!(got, want, "{stem}: arguments of {id}");
        }
        let expected_finish = if want_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        assert_eq!(
            body["choices"][0]["finish_reason"], expected_finish,
            "{stem}"
        );

        // Streamed: the same text and the same argument bytes.
        let text = h
            .post("/v1/chat/completions", tool_request(&stem, true))
            .await
            .text()
            .await
            .unwrap();
        let (chunks, done) = openai_sse(&text);
        assert!(done, "{stem}");
        assert_eq!(openai_text(&chunks), want_text, "{stem}: streamed text");
        let mut streamed: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for chunk in &chunks {
            for call in chunk["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let entry = streamed.entry(call["index"].as_u64().unwrap()).or_default();
                if let Some(id) = call["id"].as_str() {
                    entry.0 = id.to_owned();
                }
                entry
                    .1
                    .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        assert_eq!(streamed.len(), want_calls.len(), "{stem}: streamed calls");
        for (id, args) in streamed.values() {
            let want: serde_json::Value = serde_json::from_str(&want_calls[id].1).unwrap();
            let got: serde_json::Value = serde_json::from_str(args).unwrap();
            assert_eq!(got, want, "{stem}: streamed arguments of {id}");
        }
    }
    assert_eq!(seen, 11, "all eleven binary captures are replayed");
    h.shutdown().await;
}
