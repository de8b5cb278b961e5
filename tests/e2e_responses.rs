//! End to end: OpenAI Responses clients (`POST /v1/responses`) through the real server and every
//! layer, against the strict fake Kiro upstream over loopback.

mod common;

use common::*;
use kiro_layers::traits::UsageStatus;
use serde_json::{json, Value};

/// `(event name, data)` of a Responses SSE body; checks framing and sequence numbers.
fn responses_sse(body: &str) -> Vec<(String, Value)> {
    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event line: {event:?}"))
                .to_owned();
            let data = event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data line: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    for (index, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], index, "{data}");
    }
    events
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().unwrap().iter())
        .filter_map(|part| part["text"].as_str())
        .collect()
}

#[tokio::test]
async fn non_streamed_text_is_a_response_object_with_usage() {
    let h = start().await;
    let response = h
        .post(
            "/v1/responses",
            json!({"model": "claude-sonnet-4.5", "input": "Hello there, gateway", "instructions": "Be kind.",
                   "metadata": {"run": "e2e"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["model"], "claude-sonnet-4.5");
    assert_eq!(body["instructions"], "Be kind.");
    assert_eq!(body["metadata"], json!({"run": "e2e"}));
    assert!(
        output_text(&body).contains("Hello there, gateway"),
        "{body}"
    );
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        body["usage"]["total_tokens"].as_u64().unwrap(),
        body["usage"]["input_tokens"].as_u64().unwrap()
            + body["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert!(body["usage"]["input_tokens_details"]["cached_tokens"].is_u64());
    h.settle(1).await;
    let records = h.usage.records();
    assert_eq!(records.len(), 1, "usage is counted like the other dialects");
    assert_eq!(records[0].status, UsageStatus::Ok);
    h.shutdown().await;
}

#[tokio::test]
async fn streamed_text_is_the_full_event_sequence() {
    let h = start().await;
    let response = h
        .post(
            "/v1/responses",
            json!({"model": "claude-sonnet-4.5", "stream": true, "input": "[fake:text:Hello from Kiro]"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = responses_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    let deltas: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello from Kiro");
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(output_text(completed), "Hello from Kiro");
    assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0);
    h.settle(1).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_function_call_and_its_output_round_trip() {
    let h = start().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather of a city.", "strict": false,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let first: Value = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "tools": tools, "input": "[fake:tool_call] Weather in Paris?"}))
        .await
        .json()
        .await
        .unwrap();
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap_or_else(|| panic!("{first}"));
    assert_eq!(call["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].is_string());
    let response = h
        .post(
            "/v1/responses",
            json!({"model": "claude-sonnet-4.5", "tools": tools, "input": [
                {"role": "user", "content": "[fake:tool_call] Weather in Paris?"},
                {"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]},
                {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny and 21 degrees"}
            ]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert!(
        output_text(&second).contains("sunny and 21 degrees"),
        "{second}"
    );
    h.settle(2).await;
    h.shutdown().await;
}

/// A freeform tool (Codex's `apply_patch`) comes back as `custom_tool_call` with a raw string
/// input, streamed and not; a namespaced tool comes back with its own name and namespace.
#[tokio::test]
async fn calls_come_back_as_the_item_type_their_tool_was_declared_with() {
    let h = start().await;
    let custom = json!([{"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}]);
    let body: Value = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "tools": custom, "input": "[fake:tool_call] patch it"}))
        .await
        .json()
        .await
        .unwrap();
    let call = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "custom_tool_call")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(call["name"], "apply_patch");
    assert!(call["input"].is_string());
    assert!(call.get("arguments").is_none());

    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "stream": true, "tools": custom, "input": "[fake:tool_call] patch it"}))
        .await;
    let events = responses_sse(&response.text().await.unwrap());
    let done: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "response.output_item.done")
        .map(|(_, data)| &data["item"])
        .collect();
    assert!(
        done.iter().any(|item| item["type"] == "custom_tool_call"),
        "{done:?}"
    );
    assert!(events
        .iter()
        .any(|(name, _)| name == "response.custom_tool_call_input.done"));

    let namespaced = json!([{"type": "namespace", "name": "collab", "description": "Sub-agents.",
        "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]}]);
    let body: Value = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "tools": namespaced, "input": "[fake:tool_call] spawn"}))
        .await
        .json()
        .await
        .unwrap();
    let call = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        (&call["name"], &call["namespace"]),
        (&json!("spawn"), &json!("collab"))
    );
    h.settle(3).await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_output_limit_ends_in_response_incomplete() {
    let h = start().await;
    let body: Value = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "max_output_tokens": 5, "input": "[fake:long:300]"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "incomplete", "{body}");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(body["max_output_tokens"], 5);

    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "stream": true, "max_output_tokens": 5, "input": "[fake:long:300]"}))
        .await;
    let events = responses_sse(&response.text().await.unwrap());
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert!(!events.iter().any(|(name, _)| name == "response.completed"));
    h.settle(2).await;
    h.shutdown().await;
}

/// Errors before the stream began: the Responses (OpenAI) error shape with the right status; a
/// rate limit carries its retry delay; Kiro's input-too-long is `context_length_exceeded`.
#[tokio::test]
async fn errors_before_the_stream_are_http_errors_in_the_responses_shape() {
    let h = start().await;
    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "input": "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "input");

    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");

    let response = h
        .post(
            "/v1/responses",
            json!({"model": "no-such-model", "input": "hi"}),
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");

    let response = h
        .http
        .post(h.url("/v1/responses"))
        .json(&json!({"model": "claude-sonnet-4.5", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");

    // Last: the 429 rests the only account.
    let response = h
        .post(
            "/v1/responses",
            json!({"model": "claude-sonnet-4.5", "stream": true, "input": "[fake:status:429]"}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].is_string());

    h.shutdown().await;
}

/// An upstream failure after the stream began ends in `response.failed` with a code (Codex
/// ignores a bare `error` event), then the body ends.
#[tokio::test]
async fn a_failure_after_the_start_is_response_failed() {
    let h = start().await;
    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "stream": true, "input": "[fake:exception_mid_stream:InternalServerException]"}))
        .await;
    assert_eq!(response.status(), 200);
    let events = responses_sse(&response.text().await.unwrap());
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.failed", "{events:?}");
    assert_eq!(data["response"]["status"], "failed");
    assert!(data["response"]["error"]["code"].is_string());
    assert!(data["response"]["error"]["message"].is_string());
    h.settle(1).await;
    h.shutdown().await;
}

/// Without a database nothing is stored: `previous_response_id` is a clear 400, a stored id is
/// a 404, and the WebSocket upgrade path `GET /v1/responses` is a plain 404.
#[tokio::test]
async fn without_a_database_previous_response_id_is_a_clear_400() {
    let h = start().await;
    let response = h
        .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "input": "again", "previous_response_id": "resp_123"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "previous_response_id");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("database"));

    let response = h
        .http
        .get(h.url("/v1/responses/resp_123"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = h
        .http
        .get(h.url("/v1/responses"))
        .bearer_auth(KEY)
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    h.shutdown().await;
}

/// A Codex-shaped turn (developer messages, `exec_command` function, freeform `apply_patch`,
/// reasoning summary, `store: false`): the shell call comes back as `function_call`, the patch as
/// `custom_tool_call` with the raw patch text; the outputs Codex sends next reach Kiro.
#[tokio::test]
async fn a_codex_edit_turn_round_trips() {
    let h = start().await;
    let tools = json!([
        {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": false,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "custom", "name": "apply_patch", "description": "Edit files. This is a FREEFORM tool.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}},
        {"type": "tool_search"},
        {"type": "web_search"}
    ]);
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>/tmp</environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix hello.txt [fake:shell_and_patch]"}]}),
    ];
    let request = |input: &Vec<Value>| {
        json!({"model": "claude-sonnet-4.5", "stream": true, "store": false, "tool_choice": "auto",
               "parallel_tool_calls": true, "reasoning": {"effort": "medium", "summary": "auto"},
               "include": ["reasoning.encrypted_content"], "prompt_cache_key": "conv-1",
               "text": {"verbosity": "low"}, "tools": tools, "input": input})
    };
    let response = h.post("/v1/responses", request(&input)).await;
    assert_eq!(response.status(), 200);
    let events = responses_sse(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().0, "response.completed");
    let items: Vec<Value> = events
        .iter()
        .filter(|(name, _)| name == "response.output_item.done")
        .map(|(_, data)| data["item"].clone())
        .collect();
    let shell = items
        .iter()
        .find(|item| item["type"] == "function_call")
        .expect("a shell call");
    assert_eq!(shell["name"], "exec_command");
    let arguments: Value = serde_json::from_str(shell["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments["cmd"],
        kiro_gateway::fake_kiro::SHELL_AND_PATCH_COMMAND
    );
    let patch = items
        .iter()
        .find(|item| item["type"] == "custom_tool_call")
        .expect("a patch call");
    assert_eq!(patch["name"], "apply_patch");
    assert_eq!(
        patch["input"],
        kiro_gateway::fake_kiro::SHELL_AND_PATCH_PATCH
    );

    input.extend(
        items
            .iter()
            .filter(|item| item["type"] != "message")
            .cloned(),
    );
    input.push(json!({"type": "function_call_output", "call_id": shell["call_id"], "output": "shell-ran-ok\n"}));
    input.push(json!({"type": "custom_tool_call_output", "call_id": patch["call_id"], "output": "Success. Updated the following files:\nM hello.txt"}));
    let response = h.post("/v1/responses", request(&input)).await;
    let events = responses_sse(&response.text().await.unwrap());
    let completed = &events.last().unwrap().1["response"];
    let text = output_text(completed);
    assert!(
        text.contains("shell-ran-ok") && text.contains("M hello.txt"),
        "{text}"
    );
    h.settle(2).await;
    h.shutdown().await;
}

/// A Kiro stream that breaks is never reported as `completed`: a tool call Kiro cut off (which
/// recovery reports rather than mends) ends `incomplete`, a broken connection or a corrupt frame
/// after the first event ends `failed` with a code.
#[tokio::test]
async fn a_broken_upstream_stream_is_never_completed() {
    let h = start().await;
    let tools = json!([{"type": "function", "name": "write_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    for (directive, ending) in [
        ("[fake:truncated_tool]", "response.incomplete"),
        ("[fake:cut_stream]", "response.failed"),
        ("[fake:bad_crc]", "response.failed"),
    ] {
        let response = h
            .post("/v1/responses", json!({"model": "claude-sonnet-4.5", "stream": true, "tools": tools, "input": directive}))
            .await;
        assert_eq!(response.status(), 200, "{directive}");
        let events = responses_sse(&response.text().await.unwrap());
        let (last, data) = events.last().unwrap();
        assert_eq!(last, ending, "{directive}");
        assert!(
            !events.iter().any(|(name, _)| name == "response.completed"),
            "{directive}"
        );
        match ending {
            "response.incomplete" => {
                assert_eq!(
                    data["response"]["incomplete_details"]["reason"],
                    "max_output_tokens"
                )
            }
            _ => assert!(
                data["response"]["error"]["code"].is_string(),
                "{directive}: {data}"
            ),
        }
    }
    h.settle(3).await;
    h.shutdown().await;
}
