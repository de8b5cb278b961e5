//! The fake Kiro upstream, driven over real sockets with reqwest: refresh flows, the token
//! check, the model list, every scenario's frames, strictness, chunking and concurrency.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kiro_gateway::fake_kiro::{Chunking, FakeKiro, FakeKiroConfig, FakeKiroHandle, Scenario};
use kiro_layers::kiro::validate::ValidationRules;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/TESTPROFILE";

#[path = "fake_kiro/frames.rs"]
mod frames;
use frames::*;

// ---------- requests ----------

fn body_with(text: &str) -> Value {
    json!({
        "conversationState": {
            "chatTriggerType": "MANUAL",
            "conversationId": "8d7b1d3e-0000-4000-8000-000000000001",
            "currentMessage": {"userInputMessage": {
                "content": text, "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}}
        },
        "profileArn": ARN
    })
}

fn with_tools(text: &str) -> Value {
    let mut body = body_with(text);
    body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"] = json!({
        "tools": [
            {"toolSpecification": {"name": "get_weather", "description": "Weather for a city",
                "inputSchema": {"json": {"type": "object", "properties": {
                    "city": {"type": "string"}, "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                    "required": ["city"]}}}},
            {"toolSpecification": {"name": "read_file", "description": "Reads a file",
                "inputSchema": {"json": {"type": "object", "properties": {"path": {"type": "string"}}}}}}
        ]
    });
    body
}

async fn start(config: FakeKiroConfig) -> FakeKiroHandle {
    FakeKiro::start(config).await.expect("fake starts")
}

async fn start_default() -> FakeKiroHandle {
    start(FakeKiroConfig::default()).await
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post_chat(fake: &FakeKiroHandle, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/generateAssistantResponse", fake.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// Sends `body` with a fresh token and returns the status, the frames and the raw chunks.
async fn chat(fake: &FakeKiroHandle, body: &Value) -> (u16, Vec<Frame>, Vec<Vec<u8>>) {
    let response = post_chat(fake, &fake.issue_access_token(), body).await;
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
    }
    let mut chunks = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("body chunk").to_vec());
    }
    let all: Vec<u8> = chunks.concat();
    let (frames, tail) = if status == 200 {
        decode(&all)
    } else {
        (Vec::new(), 0)
    };
    assert_eq!(tail, 0, "body ends on a frame boundary");
    (status, frames, chunks)
}

async fn chat_text(fake: &FakeKiroHandle, text: &str) -> Vec<Frame> {
    let (status, frames, _) = chat(fake, &body_with(text)).await;
    assert_eq!(status, 200);
    frames
}

// ---------- auth ----------

#[tokio::test]
async fn desktop_refresh_issues_a_working_token_and_rejects_unknown_ones() {
    let fake = start_default().await;
    let url = format!("{}/refreshToken", fake.base_url());
    let refresh = fake.current_refresh_token();
    let response = client()
        .post(&url)
        .json(&json!({"refreshToken": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["expiresIn"], 3600);
    assert_eq!(answer["refreshToken"], refresh.as_str());
    assert!(answer["profileArn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:codewhisperer:"));
    let access = answer["accessToken"].as_str().unwrap();
    assert_eq!(
        post_chat(&fake, access, &body_with("hi")).await.status(),
        200
    );

    let bad = client()
        .post(&url)
        .json(&json!({"refreshToken": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"message": "Invalid refresh token provided"})
    );
    assert_eq!(fake.stats().refreshes, 1);
}

#[tokio::test]
async fn rotating_refresh_tokens_retire_the_old_one() {
    let fake = start(FakeKiroConfig {
        rotate_refresh_tokens: true,
        ..Default::default()
    })
    .await;
    let url = format!("{}/refreshToken", fake.base_url());
    let first = fake.current_refresh_token();
    let answer: Value = client()
        .post(&url)
        .json(&json!({"refreshToken": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = answer["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(second, fake.current_refresh_token());
    let reuse = client()
        .post(&url)
        .json(&json!({"refreshToken": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 401);
    let next = client()
        .post(&url)
        .json(&json!({"refreshToken": second}))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
}

#[tokio::test]
async fn oidc_refresh_checks_client_and_token() {
    let fake = start_default().await;
    let config = fake.config().clone();
    let url = format!("{}/token", fake.base_url());
    let good = json!({"grantType": "refresh_token", "clientId": config.oidc_client_id,
        "clientSecret": config.oidc_client_secret, "refreshToken": config.refresh_token});
    let answer: Value = client()
        .post(&url)
        .json(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expiresIn"], 3600);
    assert!(answer.get("profileArn").is_none());
    let access = answer["accessToken"].as_str().unwrap();
    assert_eq!(
        post_chat(&fake, access, &body_with("hi")).await.status(),
        200
    );

    for (field, value) in [
        ("refreshToken", "stale"),
        ("clientSecret", "wrong"),
        ("grantType", "password"),
    ] {
        let mut bad = good.clone();
        bad[field] = json!(value);
        let response = client().post(&url).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token provided"})
        );
    }
}

#[tokio::test]
async fn chat_needs_a_valid_unexpired_bearer_token() {
    let fake = start_default().await;
    let forbidden =
        json!({"message": "The bearer token included in the request is invalid.", "reason": null});
    let response = post_chat(&fake, "made-up", &body_with("hi")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<Value>().await.unwrap(), forbidden);

    let token = fake.issue_access_token();
    assert_eq!(
        post_chat(&fake, &token, &body_with("hi")).await.status(),
        200
    );
    fake.expire_all_tokens();
    let response = post_chat(&fake, &token, &body_with("hi")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<Value>().await.unwrap(), forbidden);

    let no_header = client()
        .post(format!("{}/generateAssistantResponse", fake.base_url()))
        .json(&body_with("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), 403);
}

#[tokio::test]
async fn tokens_expire_after_the_configured_ttl() {
    let fake = start(FakeKiroConfig {
        access_token_ttl: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let token = fake.issue_access_token();
    assert_eq!(
        post_chat(&fake, &token, &body_with("hi")).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        post_chat(&fake, &token, &body_with("hi")).await.status(),
        403
    );
}

// ---------- models ----------

#[tokio::test]
async fn list_available_models_has_the_real_shape() {
    let fake = start_default().await;
    let url = format!(
        "{}/ListAvailableModels?origin=AI_EDITOR&profileArn={ARN}",
        fake.base_url()
    );
    let response = client()
        .get(&url)
        .bearer_auth(fake.issue_access_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    let keys: Vec<&String> = list.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["defaultModel", "models"]);
    assert_eq!(list["defaultModel"]["modelId"], "auto");
    let models = list["models"].as_array().unwrap();
    assert_eq!(models.len(), 13);
    let haiku = models
        .iter()
        .find(|m| m["modelId"] == "claude-haiku-4.5")
        .unwrap();
    assert_eq!(
        haiku["tokenLimits"],
        json!({"maxInputTokens": 200000, "maxOutputTokens": 64000})
    );
    assert_eq!(haiku["rateUnit"], "Credit");
    assert_eq!(haiku["supportedInputTypes"], json!(["TEXT", "IMAGE"]));
    for key in ["modelName", "description", "rateMultiplier"] {
        assert!(haiku.get(key).is_some(), "{key}");
    }

    let unauthorised = client().get(&url).send().await.unwrap();
    assert_eq!(unauthorised.status(), 403);
}

#[tokio::test]
async fn list_available_models_can_be_switched_off_like_the_runtime_host() {
    let fake = start(FakeKiroConfig {
        serve_list_models: false,
        ..Default::default()
    })
    .await;
    let url = format!("{}/ListAvailableModels?origin=AI_EDITOR", fake.base_url());
    let response = client()
        .get(&url)
        .bearer_auth(fake.issue_access_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

// ---------- strictness ----------

#[tokio::test]
async fn a_lax_body_gets_the_real_400() {
    let fake = start_default().await;
    let improperly_formed = json!({"message": "Improperly formed request.", "reason": null});

    let mut starts_with_assistant = body_with("hi");
    starts_with_assistant["conversationState"]["history"] = json!([
        {"assistantResponseMessage": {"content": "I start"}},
        {"userInputMessage": {"content": "no", "modelId": "auto", "origin": "AI_EDITOR"}}
    ]);
    let mut additional_properties = with_tools("hi");
    additional_properties["conversationState"]["currentMessage"]["userInputMessage"]
        ["userInputMessageContext"]["tools"][0]["toolSpecification"]["inputSchema"]["json"]
        ["additionalProperties"] = json!(false);
    let mut empty_content = body_with("");
    empty_content["conversationState"]["currentMessage"]["userInputMessage"]["content"] = json!("");
    let mut unknown_model = body_with("hi");
    unknown_model["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] =
        json!("gpt-4o");
    let mut no_arn = body_with("hi");
    no_arn.as_object_mut().unwrap().remove("profileArn");

    let cases = [
        (starts_with_assistant, improperly_formed.clone()),
        (additional_properties, improperly_formed.clone()),
        (empty_content, improperly_formed.clone()),
        (
            unknown_model,
            json!({"message": "Invalid model. Please select a different model to continue.", "reason": "INVALID_MODEL_ID"}),
        ),
        (
            no_arn,
            json!({"message": "profileArn is required for this request.", "reason": null}),
        ),
    ];
    for (body, expected) in cases {
        let response = post_chat(&fake, &fake.issue_access_token(), &body).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap(), expected);
    }

    let not_json = client()
        .post(format!("{}/generateAssistantResponse", fake.base_url()))
        .bearer_auth(fake.issue_access_token())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(fake.stats().chat_requests, 6);
}

#[tokio::test]
async fn oversized_input_for_the_model_window_is_too_long() {
    let rules = ValidationRules {
        known_models: vec![("tiny".into(), 500)],
        ..Default::default()
    };
    let fake = start(FakeKiroConfig {
        rules,
        ..Default::default()
    })
    .await;
    let mut body = body_with(&"lots of words ".repeat(300));
    body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] = json!("tiny");
    let response = post_chat(&fake, &fake.issue_access_token(), &body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"})
    );
}

#[tokio::test]
async fn stats_keep_the_last_request() {
    let fake = start_default().await;
    let body = body_with("remember me");
    post_chat(&fake, &fake.issue_access_token(), &body)
        .await
        .bytes()
        .await
        .unwrap();
    let stats = fake.stats();
    assert_eq!(stats.chat_requests, 1);
    assert_eq!(stats.last_request_body, Some(body));
    let headers = stats.last_headers.unwrap();
    assert!(headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));
}

// ---------- chunking and load ----------

fn frame_boundaries(chunks: &[Vec<u8>]) -> (Vec<usize>, Vec<usize>) {
    let all = chunks.concat();
    let mut frame_ends = Vec::new();
    let mut at = 0;
    while at < all.len() {
        at += u32::from_be_bytes(all[at..at + 4].try_into().unwrap()) as usize;
        frame_ends.push(at);
    }
    let mut chunk_ends = Vec::new();
    let mut end = 0;
    for chunk in chunks {
        end += chunk.len();
        chunk_ends.push(end);
    }
    (frame_ends, chunk_ends)
}

#[tokio::test]
async fn awkward_chunking_splits_inside_preludes_and_characters() {
    let fake = start_default().await;
    let (_, frames, chunks) = chat(&fake, &body_with("[fake:multibyte]")).await;
    assert_eq!(text_of(&frames), "你好，世界！👋🏽 café 日本語テキスト🎉 ✓");
    let (frame_ends, chunk_ends) = frame_boundaries(&chunks);
    assert!(chunks.len() > frames.len(), "more chunks than frames");
    assert!(
        chunks[0].len() < 12,
        "the first chunk ends inside the prelude"
    );
    let off_boundary = chunk_ends
        .iter()
        .filter(|end| !frame_ends.contains(end))
        .count();
    assert!(
        off_boundary > frames.len() / 2,
        "most chunk ends fall inside frames"
    );
    // At least one chunk ends on a UTF-8 lead byte, i.e. inside a character.
    assert!(chunks.iter().any(|c| c.last().is_some_and(|&b| b >= 0xC0)));
}

#[tokio::test]
async fn whole_and_fixed_chunking_behave_as_named() {
    let fake = start(FakeKiroConfig {
        chunking: Chunking::Whole,
        ..Default::default()
    })
    .await;
    let (_, frames, chunks) = chat(&fake, &body_with("hello")).await;
    let (frame_ends, chunk_ends) = frame_boundaries(&chunks);
    assert_eq!(frame_ends, chunk_ends);
    assert_eq!(chunks.len(), frames.len());

    let fake = start(FakeKiroConfig {
        chunking: Chunking::Fixed(7),
        ..Default::default()
    })
    .await;
    let (_, frames, chunks) = chat(&fake, &body_with("hello")).await;
    assert!(text_of(&frames).contains("hello"));
    assert!(chunks.iter().all(|c| c.len() <= 7));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == 7));
}

#[tokio::test]
async fn fifty_parallel_requests_all_get_their_own_answer() {
    let fake = std::sync::Arc::new(start_default().await);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..50 {
        let fake = std::sync::Arc::clone(&fake);
        tasks.spawn(async move {
            let frames = chat_text(&fake, &format!("request number {index}")).await;
            assert!(text_of(&frames).contains(&format!("request number {index}")));
            assert_ends_like_real_stream(&frames);
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("request task");
    }
    assert_eq!(fake.stats().chat_requests, 50);
}

#[tokio::test]
async fn precomputed_mode_answers_in_one_chunk_without_validation() {
    let fake = start(FakeKiroConfig {
        precomputed_deltas: Some(25),
        ..Default::default()
    })
    .await;
    // Not a valid Kiro body, but the fast mode only parses JSON.
    let (status, frames, chunks) = chat(&fake, &json!({"anything": true})).await;
    assert_eq!(status, 200);
    assert_eq!(chunks.len(), 1);
    assert_eq!(frames.len(), 27);
    assert!(text_of(&frames).starts_with("token0 token1 "));
    assert_ends_like_real_stream(&frames);
    let response = post_chat(&fake, "bad token", &json!({})).await;
    assert_eq!(response.status(), 403);
}

#[path = "fake_kiro/scenarios.rs"]
mod scenarios;

#[tokio::test]
async fn dropping_the_handle_closes_open_streams_and_the_port() {
    let fake = start(FakeKiroConfig {
        chunking: Chunking::Whole,
        ..Default::default()
    })
    .await;
    let base = fake.base_url();
    let response = post_chat(
        &fake,
        &fake.issue_access_token(),
        &body_with("[fake:stall]"),
    )
    .await;
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(fake);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stalled stream ends when the fake stops");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = client()
        .post(format!("{base}/refreshToken"))
        .json(&json!({"refreshToken": "x"}))
        .send()
        .await;
    assert!(refused.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn get_usage_limits_checks_the_token_and_the_parameters() {
    let fake = start_default().await;
    let base = format!("{}/getUsageLimits", fake.base_url());
    let token = fake.issue_access_token();
    let get = |query: &'static str, bearer: Option<String>| {
        let mut request = client().get(format!("{base}?{query}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let good = "origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&isEmailRequired=true";
    let (status, answer) = get(good, Some(token.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["usageBreakdownList"][0]["usageLimitWithPrecision"],
        50.0
    );
    assert_eq!(get(good, None).await.0, 403);
    assert_eq!(get(good, Some("aoaNOTISSUED".into())).await.0, 403);
    for bad in [
        "resourceType=AGENTIC_REQUEST",
        "origin=AI_EDITOR",
        "origin=CLI&resourceType=AGENTIC_REQUEST",
        "origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&surprise=1",
    ] {
        let (status, body) = get(bad, Some(token.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Answers per profile ARN, and statuses.
    fake.set_usage_limits(
        Some("arn:x"),
        kiro_gateway::fake_kiro::UsageLimitsAnswer::Status(429),
    );
    let (status, _) = get(
        "origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&profileArn=arn%3Ax",
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(get(good, Some(token)).await.0, 200);
    assert_eq!(fake.usage_limits_calls().0, 9);
}
