//! Each scenario's frames, as a client decoding the stream would see them.

use super::*;

fn tool_frames(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f.event_type() == "toolUseEvent")
        .map(Frame::json)
        .collect()
}

/// The arguments JSON of each tool call, concatenating its fragments.
fn tool_calls(frames: &[Frame]) -> Vec<(String, Value)> {
    let mut calls = Vec::new();
    let mut current: Option<(String, String)> = None;
    for frame in tool_frames(frames) {
        let name = frame["name"].as_str().unwrap().to_owned();
        if frame["stop"] == true {
            let (name, input) = current.take().expect("stop after start");
            calls.push((name, serde_json::from_str(&input).expect("arguments JSON")));
        } else if let Some(fragment) = frame["input"].as_str() {
            current
                .as_mut()
                .expect("input after start")
                .1
                .push_str(fragment);
        } else {
            assert!(current.is_none(), "calls are not interleaved");
            current = Some((name, String::new()));
        }
    }
    assert!(current.is_none(), "every call stops");
    calls
}

#[tokio::test]
async fn echo_quotes_the_user_and_ends_like_the_real_service() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "What's up, 世界?").await;
    let text = text_of(&frames);
    assert!(text.contains("“What's up, 世界?”"), "{text}");
    assert!(text.contains('👋'));
    let deltas = frames
        .iter()
        .filter(|f| f.event_type() == "assistantResponseEvent")
        .count();
    assert!(deltas >= 5, "streamed as several deltas");
    for frame in &frames {
        let names: Vec<&str> = frame.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":event-type", ":content-type", ":message-type"]);
        assert_eq!(frame.header(":message-type"), Some("event"));
        if frame.event_type() == "assistantResponseEvent" {
            assert_eq!(frame.json()["modelId"], "claude-sonnet-4.5");
        }
    }
    assert_ends_like_real_stream(&frames);
    let usage = frames[frames.len() - 2].json()["contextUsagePercentage"]
        .as_f64()
        .unwrap();
    assert!(usage > 0.0 && usage < 1.0, "{usage}");
}

#[tokio::test]
async fn text_scenario_streams_the_literal() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:text:Exactly this, ok?]").await;
    assert_eq!(text_of(&frames), "Exactly this, ok?");
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn tool_call_uses_the_first_tool_with_schema_arguments() {
    let fake = start_default().await;
    let (status, frames, _) = chat(&fake, &with_tools("[fake:tool_call] weather?")).await;
    assert_eq!(status, 200);
    let types = event_types(&frames);
    assert_eq!(types[0], "assistantResponseEvent", "a short text first");
    let calls = tool_calls(&frames);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "get_weather");
    assert_eq!(
        calls[0].1,
        json!({"city": "Paris", "days": 42, "unit": "celsius"})
    );
    let tools = tool_frames(&frames);
    assert!(tools[0].get("input").is_none(), "start frame has no input");
    assert_eq!(tools[1]["input"], "", "then an empty input");
    assert!(tools.len() >= 5, "arguments arrive in several fragments");
    let id = tools[0]["toolUseId"].as_str().unwrap();
    assert!(tools.iter().all(|t| t["toolUseId"] == id));
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn two_tools_are_called_one_after_the_other() {
    let fake = start_default().await;
    let (_, frames, _) = chat(&fake, &with_tools("[fake:two_tools]")).await;
    let calls = tool_calls(&frames);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "get_weather");
    assert_eq!(
        calls[1],
        ("read_file".to_owned(), json!({"path": "/tmp/example.txt"}))
    );
    let ids: std::collections::HashSet<_> = tool_frames(&frames)
        .iter()
        .map(|t| t["toolUseId"].clone())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn a_tool_round_trip_is_accepted_and_echoed() {
    let fake = start_default().await;
    let (_, frames, _) = chat(&fake, &with_tools("[fake:tool_call]")).await;
    let tool_use_id = tool_frames(&frames)[0]["toolUseId"].clone();
    let (_, arguments) = tool_calls(&frames).remove(0);

    let mut follow_up = with_tools("");
    follow_up["conversationState"]["history"] = json!([
        {"userInputMessage": {"content": "[fake:tool_call]", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
        {"assistantResponseMessage": {"content": "Let me check that for you.", "toolUses": [
            {"name": "get_weather", "input": arguments, "toolUseId": tool_use_id}]}}
    ]);
    follow_up["conversationState"]["currentMessage"]["userInputMessage"]
        ["userInputMessageContext"]["toolResults"] = json!([{"content": [{"text": "18C and sunny"}], "status": "success", "toolUseId": tool_use_id}]);
    let (status, frames, _) = chat(&fake, &follow_up).await;
    assert_eq!(status, 200);
    assert!(text_of(&frames).contains("18C and sunny"));
}

#[tokio::test]
async fn thinking_text_starts_with_split_tags() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:thinking]").await;
    let text = text_of(&frames);
    assert!(text.starts_with("<thinking>"));
    assert!(text.contains("</thinking>\n\nThe answer is 42."));
    assert_eq!(
        frames[0].json()["content"],
        "<thin",
        "the tag is split across frames"
    );
}

#[tokio::test]
async fn reasoning_event_comes_before_the_text() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:reasoning_event]").await;
    assert_eq!(frames[0].event_type(), "reasoningContentEvent");
    assert!(frames[0].json()["text"].as_str().unwrap().contains("42"));
    assert_eq!(text_of(&frames), "The answer is 42.");
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn image_count_counts_every_image() {
    let fake = start_default().await;
    let image = json!({"format": "png", "source": {"bytes": "iVBORw0KGgo="}});
    let mut body = body_with("[fake:image_count]");
    body["conversationState"]["currentMessage"]["userInputMessage"]["images"] =
        json!([image, image]);
    let (_, frames, _) = chat(&fake, &body).await;
    assert_eq!(text_of(&frames), "I received 2 images.");
}

#[tokio::test]
async fn exception_mid_stream_ends_with_an_exception_frame() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:exception_mid_stream]").await;
    assert!(!text_of(&frames).is_empty());
    let last = frames.last().unwrap();
    assert_eq!(last.header(":message-type"), Some("exception"));
    assert_eq!(last.header(":exception-type"), Some("ThrottlingException"));
    assert!(!event_types(&frames).contains(&"contextUsageEvent".to_owned()));

    let frames = chat_text(&fake, "[fake:exception_mid_stream:InternalServerException]").await;
    assert_eq!(
        frames.last().unwrap().header(":exception-type"),
        Some("InternalServerException")
    );
}

#[tokio::test]
async fn cut_stream_breaks_the_connection_inside_a_frame() {
    let fake = start_default().await;
    let response = post_chat(
        &fake,
        &fake.issue_access_token(),
        &body_with("[fake:cut_stream]"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let mut stream = response.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the client sees a broken body, not a clean end");
    let (frames, tail) = decode(&received);
    assert!(!text_of(&frames).is_empty());
    assert!(tail > 0, "the connection died mid-frame");
}

#[tokio::test]
async fn truncated_tool_has_no_stop_and_no_end_events() {
    let fake = start_default().await;
    let (status, frames, _) = chat(&fake, &with_tools("[fake:truncated_tool]")).await;
    assert_eq!(status, 200);
    let tools = tool_frames(&frames);
    assert!(tools.len() >= 3);
    assert!(tools.iter().all(|t| t.get("stop").is_none()));
    let types = event_types(&frames);
    assert!(!types.contains(&"contextUsageEvent".to_owned()));
    assert!(!types.contains(&"meteringEvent".to_owned()));
}

#[tokio::test]
async fn stall_sends_some_text_then_nothing() {
    let fake = start(FakeKiroConfig {
        chunking: Chunking::Whole,
        ..Default::default()
    })
    .await;
    let response = post_chat(
        &fake,
        &fake.issue_access_token(),
        &body_with("[fake:stall]"),
    )
    .await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(decode(&first).0.len() == 1);
    let mut more = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(400), async {
        while let Some(chunk) = stream.next().await {
            more.extend_from_slice(&chunk.unwrap());
        }
    })
    .await;
    assert!(waited.is_err(), "the stream never ends on its own");
    assert!(!event_types(&decode(&more).0).contains(&"contextUsageEvent".to_owned()));
}

#[tokio::test]
async fn status_scenarios_return_the_real_bodies() {
    let fake = start_default().await;
    let cases = [
        (
            400,
            json!({"message": "Improperly formed request.", "reason": null}),
        ),
        (
            402,
            json!({"message": "You have reached the limit.", "reason": "MONTHLY_REQUEST_COUNT"}),
        ),
        (
            403,
            json!({"message": "The bearer token included in the request is invalid.", "reason": null}),
        ),
        (
            429,
            json!({"message": "Too many requests, please wait before trying again.", "reason": null}),
        ),
        (
            500,
            json!({"message": "Encountered unexpectedly high load when processing the request, please try again.", "reason": null}),
        ),
        (
            503,
            json!({"message": "Service Unavailable", "reason": null}),
        ),
    ];
    for (code, expected) in cases {
        let response = post_chat(
            &fake,
            &fake.issue_access_token(),
            &body_with(&format!("[fake:status:{code}]")),
        )
        .await;
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(response.headers().get("retry-after").is_some(), code == 429);
        assert_eq!(response.json::<Value>().await.unwrap(), expected);
    }
}

#[tokio::test]
async fn slow_first_byte_delays_the_body_not_the_head() {
    let fake = start_default().await;
    let started = Instant::now();
    let response = post_chat(
        &fake,
        &fake.issue_access_token(),
        &body_with("[fake:slow_first_byte:300]"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "head arrives at once"
    );
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn configured_first_byte_delay_applies_to_every_stream() {
    let fake = start(FakeKiroConfig {
        first_byte_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let frames = chat_text(&fake, "hi").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn long_streams_n_deltas() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:long:300]").await;
    let deltas = frames
        .iter()
        .filter(|f| f.event_type() == "assistantResponseEvent")
        .count();
    assert_eq!(deltas, 300);
    assert!(text_of(&frames).ends_with("w299 "));
}

#[tokio::test]
async fn capture_replays_the_real_body_byte_for_byte() {
    let fake = start_default().await;
    let (status, frames, chunks) =
        chat(&fake, &body_with("[fake:capture:t06-two-tooluses-read]")).await;
    assert_eq!(status, 200);
    let expected = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/layers/test_data/kiro-captures/kiro-cli-q-20260524-t06-two-tooluses-read.bin"
    ))
    .unwrap();
    assert_eq!(chunks.concat(), expected);
    assert_eq!(frames.len(), 51);
    assert_eq!(frames[0].event_type(), "initial-response");
    assert_eq!(tool_calls(&frames).len(), 2);

    let response = post_chat(
        &fake,
        &fake.issue_access_token(),
        &body_with("[fake:capture:nope]"),
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn metadata_reports_token_usage() {
    let fake = start_default().await;
    let frames = chat_text(&fake, "[fake:metadata]").await;
    let metadata = frames
        .iter()
        .find(|f| f.event_type() == "metadataEvent")
        .unwrap()
        .json();
    let usage = &metadata["tokenUsage"];
    assert!(usage["outputTokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["totalTokens"].as_u64(),
        Some(
            usage["uncachedInputTokens"].as_u64().unwrap()
                + usage["outputTokens"].as_u64().unwrap()
        )
    );
    assert_ends_like_real_stream(&frames);
}

#[tokio::test]
async fn pushed_scenarios_come_first_in_order() {
    let fake = start_default().await;
    fake.push_scenario(Scenario::Text("first".into()));
    fake.push_scenario(Scenario::Status(402));
    assert_eq!(
        text_of(&chat_text(&fake, "[fake:text:directive]").await),
        "first"
    );
    let (status, _, _) = chat(&fake, &body_with("[fake:text:directive]")).await;
    assert_eq!(status, 402);
    assert_eq!(
        text_of(&chat_text(&fake, "[fake:text:directive]").await),
        "directive"
    );
}

#[test]
fn directives_parse() {
    assert_eq!(
        Scenario::from_directive("x [fake:long:5] y"),
        Some(Scenario::Long(5))
    );
    assert_eq!(
        Scenario::from_directive("[fake:text:a:b]"),
        Some(Scenario::Text("a:b".into()))
    );
    assert_eq!(
        Scenario::from_directive("[fake:exception_mid_stream]"),
        Some(Scenario::ExceptionMidStream("ThrottlingException".into()))
    );
    assert_eq!(
        Scenario::from_directive("[fake:drip:3:250]"),
        Some(Scenario::Drip(3, std::time::Duration::from_millis(250)))
    );
    assert_eq!(Scenario::from_directive("[fake:drip:3]"), None);
    assert_eq!(Scenario::from_directive("[fake:nonsense]"), None);
    assert_eq!(Scenario::from_directive("[fake:status:abc]"), None);
    assert_eq!(Scenario::from_directive("no directive"), None);
}
