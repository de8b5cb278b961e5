//! The strict fake Cursor against the gateway's Cursor client (`CursorService`) over loopback
//! HTTP/2: every scenario the client must handle, and for every check of the fake a client that
//! passes it and a request that breaks it and is refused the way Cursor refuses.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kiro_gateway::fake_cursor::{self, FakeCursorConfig, FakeCursorHandle, Scenario};
use kiro_layers::chat::{
    ChatEvent, ChatRequest, ContentBlock, Dialect, Message, Role, StopReason, Tool,
};
use kiro_layers::cursor::end_stream::{parse_end_stream, ErrorClass};
use kiro_layers::cursor::envelope::{data_envelope, EnvelopeDecoder};
use kiro_layers::cursor::headers::{chat_headers, CursorConfig, CHAT_PATH};
use kiro_layers::cursor::request::{build_request, BuildContext};
use kiro_layers::cursor::service::CursorService;
use kiro_layers::traits::{
    AccountHandle, AccountKind, AttemptOutcome, Credential, Lease, ResolvedModel,
};
use kiro_layers::upstream::Upstream;
use kiro_layers::GatewayError;

const MODEL: &str = "claude-4.5-sonnet";

#[derive(Default)]
struct Recorder {
    outcomes: Mutex<Vec<AttemptOutcome>>,
    fresh_token: Mutex<Option<String>>,
    base: Mutex<String>,
}

impl AccountHandle for Recorder {
    fn force_refresh(&self) -> BoxFuture<'_, Result<Credential, GatewayError>> {
        let token = self.fresh_token.lock().unwrap().clone();
        let base = self.base.lock().unwrap().clone();
        Box::pin(async move {
            match token {
                Some(token) => Ok(credential(&token, &base)),
                None => Err(GatewayError::upstream(
                    StatusCode::UNAUTHORIZED,
                    "refresh refused",
                )),
            }
        })
    }
    fn report(&self, outcome: AttemptOutcome) {
        self.outcomes.lock().unwrap().push(outcome);
    }
    fn release(&self) {}
}

fn credential(token: &str, base: &str) -> Credential {
    Credential {
        account_id: "cursor-1".into(),
        kind: AccountKind::CURSOR,
        access_token: token.into(),
        profile_arn: None,
        api_base: base.into(),
        fingerprint: "ab".repeat(32),
        external_idp: false,
        client_key: Some("cd".repeat(32)),
    }
}

fn chat(text: &str) -> ChatRequest {
    ChatRequest::user_text(Dialect::OpenAi, MODEL, text)
}

fn with_model(body: ChatRequest, model: &str) -> Request<ChatRequest> {
    let mut request = Request::new(body);
    request.extensions_mut().insert(ResolvedModel {
        requested: model.into(),
        kiro_id: model.into(),
        context_window: 200_000,
        max_output_tokens: 8192,
        kinds: vec![AccountKind::CURSOR],
        upstream_ids: Vec::new(),
    });
    request
}

struct Run {
    events: Vec<ChatEvent>,
    error: Option<GatewayError>,
    outcomes: Vec<AttemptOutcome>,
}

async fn run_with(
    fake: &FakeCursorHandle,
    config: CursorConfig,
    token: &str,
    request: Request<ChatRequest>,
    recorder: Arc<Recorder>,
) -> Run {
    let service = CursorService::new(config);
    let lease = Lease::new(
        credential(token, &fake.base_url()),
        Arc::clone(&recorder) as _,
    );
    let mut events = Vec::new();
    let mut error = None;
    match service.send(request, lease).await {
        Ok(response) => {
            let mut stream = response.into_body();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        Err(e) => error = Some(e),
    }
    let outcomes = recorder.outcomes.lock().unwrap().clone();
    Run {
        events,
        error,
        outcomes,
    }
}

async fn run(fake: &FakeCursorHandle, text: &str) -> Run {
    let token = fake.issue_session_token(3600);
    run_with(
        fake,
        CursorConfig::default(),
        &token,
        with_model(chat(text), MODEL),
        Arc::default(),
    )
    .await
}

fn text_of(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::TextDelta(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

async fn fake() -> FakeCursorHandle {
    fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_client_passes_every_check_and_gets_its_echo() {
    let fake = fake().await;
    let run = run(&fake, "hello there").await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(text_of(&run.events), "echo: hello there");
    assert_eq!(
        run.events.last(),
        Some(&ChatEvent::Stop(StopReason::EndTurn))
    );
    assert_eq!(run.outcomes, [AttemptOutcome::Success]);
    assert_eq!(fake.stats().refused, 0);
}

#[tokio::test]
async fn thinking_text_and_unknown_fields_and_zero_length_frames() {
    let fake = fake().await;
    let run = run(&fake, "[cursor:thinking] 2+2").await;
    let reasoning: String = run
        .events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::ReasoningDelta(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, "Let me think.");
    assert_eq!(text_of(&run.events), "The answer is 4.");
    let run_unknown = self::run(&fake, "[cursor:unknown]").await;
    assert_eq!(text_of(&run_unknown.events), "known text");
    let run_zero = self::run(&fake, "[cursor:zero]").await;
    assert_eq!(
        text_of(&run_zero.events),
        "zero length frames between words"
    );
    let slow = self::run(&fake, "[cursor:slow]").await;
    assert_eq!(text_of(&slow.events), "late but fine");
}

#[tokio::test]
async fn a_tool_call_comes_back_with_its_id_and_the_result_goes_up_under_the_same_id() {
    let fake = fake().await;
    let mut request = chat("[cursor:tool] weather in Paris?");
    request.tools = vec![Tool {
        name: "get_weather".into(),
        description: "Weather".into(),
        input_schema: serde_json::json!({"type":"object","properties":{"city":{"type":"string"}}}),
    }];
    let token = fake.issue_session_token(3600);
    let first = run_with(
        &fake,
        CursorConfig::default(),
        &token,
        with_model(request.clone(), MODEL),
        Arc::default(),
    )
    .await;
    let (id, name) = first
        .events
        .iter()
        .find_map(|e| match e {
            ChatEvent::ToolUseStart { id, name } => Some((id.to_string(), name.to_string())),
            _ => None,
        })
        .expect("a tool call");
    assert_eq!(name, "get_weather");
    assert_eq!(id, "toolu_fake_01\nmc_model-1");
    assert_eq!(
        first.events.last(),
        Some(&ChatEvent::Stop(StopReason::ToolUse))
    );
    request.messages.push(Message {
        role: Role::Assistant,
        content: vec![ContentBlock::ToolUse {
            id: id.clone(),
            name,
            input: serde_json::json!({"city":"Paris"}),
        }],
    });
    request.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: id,
            content: vec![ContentBlock::Text("21C".into())],
            is_error: false,
        }],
    });
    let second = run_with(
        &fake,
        CursorConfig::default(),
        &token,
        with_model(request, MODEL),
        Arc::default(),
    )
    .await;
    assert_eq!(text_of(&second.events), "tool results: toolu_fake_01=21C");
}

type OutcomeCheck = fn(&AttemptOutcome) -> bool;

#[tokio::test]
async fn refusals_become_canonical_errors_and_pool_outcomes() {
    let fake = fake().await;
    let cases: [(Scenario, OutcomeCheck, StatusCode); 3] = [
        (
            Scenario::Error {
                code: 50,
                connect: "resource_exhausted",
                title: "Rate limited",
            },
            |o| matches!(o, AttemptOutcome::Throttled { .. }),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            Scenario::Error {
                code: 10,
                connect: "resource_exhausted",
                title: "Usage limit",
            },
            |o| matches!(o, AttemptOutcome::QuotaExhausted),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            Scenario::Error {
                code: 38,
                connect: "unauthenticated",
                title: "Unauthorized request.",
            },
            |o| matches!(o, AttemptOutcome::InvalidGrant { .. }),
            StatusCode::BAD_GATEWAY,
        ),
    ];
    for (scenario, outcome, status) in cases {
        fake.push_scenario(scenario.clone());
        let run = run(&fake, "hi").await;
        let error = run.error.expect("an error");
        assert_eq!(error.status(), status, "{scenario:?}: {}", error.message());
        assert!(
            outcome(&run.outcomes[0]),
            "{scenario:?}: {:?}",
            run.outcomes
        );
        assert!(run.events.is_empty());
    }
}

#[tokio::test]
async fn an_outdated_client_is_an_operator_alert_not_the_accounts_fault() {
    let fake = fake().await;
    let token = fake.issue_session_token(3600);
    let old = CursorConfig {
        client_version: "2.0.77".into(),
        ..CursorConfig::default()
    };
    let service = CursorService::new(old.clone());
    let alerts = service.alerts();
    let recorder = Arc::new(Recorder::default());
    let lease = Lease::new(
        credential(&token, &fake.base_url()),
        Arc::clone(&recorder) as _,
    );
    let error = service
        .send(with_model(chat("hi"), MODEL), lease)
        .await
        .err()
        .unwrap();
    assert!(
        error.message().contains("CURSOR_CLIENT_VERSION"),
        "{}",
        error.message()
    );
    assert_eq!(
        error.upstream_reason(),
        Some("ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT")
    );
    assert_eq!(
        *recorder.outcomes.lock().unwrap(),
        [AttemptOutcome::Success]
    );
    assert!(alerts
        .outdated_client()
        .unwrap()
        .contains("Update Required"));
    assert_eq!(alerts.refusals(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried() {
    let fake = fake().await;
    let expired = fake.issue_session_token(-10);
    let recorder = Arc::new(Recorder::default());
    *recorder.fresh_token.lock().unwrap() = Some(fake.issue_session_token(3600));
    *recorder.base.lock().unwrap() = fake.base_url();
    let run = run_with(
        &fake,
        CursorConfig::default(),
        &expired,
        with_model(chat("after refresh"), MODEL),
        Arc::clone(&recorder),
    )
    .await;
    assert_eq!(text_of(&run.events), "echo: after refresh");
    // Without a working refresh the refusal stands.
    let run = run_with(
        &fake,
        CursorConfig::default(),
        &expired,
        with_model(chat("x"), MODEL),
        Arc::default(),
    )
    .await;
    assert!(run.error.is_some());
}

#[tokio::test]
async fn a_cut_stream_is_an_error_after_its_text() {
    let fake = fake().await;
    let run = run(&fake, "[cursor:cut]").await;
    assert_eq!(text_of(&run.events), "This answer stops in the");
    let error = run.error.expect("cut");
    assert!(
        error.message().contains("end-of-stream"),
        "{}",
        error.message()
    );
}

// ---- the fake's checks, one by one, with a raw HTTP/2 client --------------------------------

fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// The headers and body the gateway's client would send.
fn good_call(fake: &FakeCursorHandle, model: &str) -> (HeaderMap, Vec<u8>) {
    let token = fake.issue_session_token(3600);
    let headers = chat_headers(&CursorConfig::default(), &credential(&token, ""));
    let body = build_request(
        &chat("hi"),
        &BuildContext {
            model,
            conversation_id: uuid::Uuid::new_v4().to_string(),
        },
    )
    .unwrap();
    (headers, data_envelope(&body, false).to_vec())
}

enum Answer {
    Status(StatusCode),
    Stream(Option<(i32, ErrorClass)>),
}

async fn send_raw(
    fake: &FakeCursorHandle,
    path: &str,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = format!("{}{path}", fake.base_url()).parse().unwrap();
    *request.headers_mut() = headers;
    let response = h2_client().request(request).await.unwrap();
    if response.status() != StatusCode::OK {
        return Answer::Status(response.status());
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let mut decoder = EnvelopeDecoder::default();
    decoder.push(&bytes);
    let mut last = None;
    while let Some(envelope) = decoder.next_envelope().unwrap() {
        last = Some(envelope);
    }
    let last = last.unwrap();
    assert!(last.is_end());
    let end = parse_end_stream(&last.payload).unwrap();
    Answer::Stream(end.error.map(|e| (e.error, e.class())))
}

fn refused_with(answer: Answer, code: i32) {
    match answer {
        Answer::Stream(Some((got, _))) => assert_eq!(got, code),
        Answer::Stream(None) => panic!("accepted; expected error {code}"),
        Answer::Status(status) => panic!("HTTP {status}; expected error {code}"),
    }
}

#[tokio::test]
async fn each_check_passes_the_gateways_call_and_refuses_a_broken_one() {
    let fake = fake().await;
    let (headers, body) = good_call(&fake, MODEL);
    assert!(matches!(
        send_raw(&fake, CHAT_PATH, headers.clone(), body.clone()).await,
        Answer::Stream(None)
    ));
    // Path.
    assert!(matches!(
        send_raw(
            &fake,
            "/aiserver.v1.ChatService/StreamUnifiedChat",
            headers.clone(),
            body.clone()
        )
        .await,
        Answer::Status(StatusCode::NOT_FOUND)
    ));
    // Content type.
    let mut h = headers.clone();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/grpc-web+proto"),
    );
    assert!(matches!(
        send_raw(&fake, CHAT_PATH, h, body.clone()).await,
        Answer::Status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    ));
    // Token shape, unknown token, web token, expiry.
    for bad in [
        "Bearer nope",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.x",
        "Basic x",
    ] {
        let mut h = headers.clone();
        h.insert("authorization", HeaderValue::from_static(bad));
        refused_with(send_raw(&fake, CHAT_PATH, h, body.clone()).await, 2);
    }
    let mut h = headers.clone();
    let expired = fake.issue_session_token(-5);
    h.insert(
        "authorization",
        format!("Bearer {expired}").parse().unwrap(),
    );
    refused_with(send_raw(&fake, CHAT_PATH, h, body.clone()).await, 12);
    // Client version.
    let mut h = headers.clone();
    h.insert(
        "x-cursor-client-version",
        HeaderValue::from_static("2.0.77"),
    );
    refused_with(send_raw(&fake, CHAT_PATH, h, body.clone()).await, 28);
    // Checksum shape and time.
    for bad in [
        "short",
        "paaotUs2abababababababababababababababababababababababababababababababab",
    ] {
        let mut h = headers.clone();
        h.insert("x-cursor-checksum", HeaderValue::from_static(bad));
        refused_with(send_raw(&fake, CHAT_PATH, h, body.clone()).await, 38);
    }
    // Client key, ids, ghost mode, timezone.
    for (name, bad) in [
        ("x-client-key", "not-hex"),
        ("x-session-id", "123"),
        ("x-request-id", "abc"),
        ("x-ghost-mode", "maybe"),
        ("x-cursor-timezone", "Mars/Olympus"),
    ] {
        let mut h = headers.clone();
        h.insert(name, HeaderValue::from_static(bad));
        refused_with(send_raw(&fake, CHAT_PATH, h, body.clone()).await, 36);
    }
    // Envelope: two frames; a length that lies; gzip flag without the header.
    let mut two = body.clone();
    two.extend_from_slice(&body);
    refused_with(send_raw(&fake, CHAT_PATH, headers.clone(), two).await, 36);
    let mut short = body.clone();
    short.pop();
    refused_with(send_raw(&fake, CHAT_PATH, headers.clone(), short).await, 36);
    let payload = &body[5..];
    let gz = data_envelope(payload, true).to_vec();
    refused_with(
        send_raw(&fake, CHAT_PATH, headers.clone(), gz.clone()).await,
        36,
    );
    let mut h = headers.clone();
    h.insert("connect-content-encoding", HeaderValue::from_static("gzip"));
    assert!(matches!(
        send_raw(&fake, CHAT_PATH, h, gz).await,
        Answer::Stream(None)
    ));
    // Required fields and a known model.
    refused_with(
        send_raw(
            &fake,
            CHAT_PATH,
            headers.clone(),
            data_envelope(b"", false).to_vec(),
        )
        .await,
        36,
    );
    let (headers, unknown_model) = good_call(&fake, "gpt-2");
    refused_with(send_raw(&fake, CHAT_PATH, headers, unknown_model).await, 5);
}

#[tokio::test]
async fn http_1_1_is_refused_with_464() {
    let fake = fake().await;
    let (headers, body) = good_call(&fake, MODEL);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = format!("{}{CHAT_PATH}", fake.base_url()).parse().unwrap();
    *request.headers_mut() = headers;
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 464);
}

#[tokio::test]
async fn the_real_capture_is_replayed_byte_for_byte() {
    let fake = fake().await;
    fake.push_scenario(Scenario::ReplayCapture);
    let (headers, body) = good_call(&fake, MODEL);
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = format!("{}{CHAT_PATH}", fake.base_url()).parse().unwrap();
    *request.headers_mut() = headers;
    let response = h2_client().request(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let capture = hex::decode(
        include_str!("../layers/test_data/cursor/wisdgod-cursor-api.stream_data.txt").trim(),
    )
    .unwrap();
    assert_eq!(bytes.as_ref(), capture.as_slice());
}
