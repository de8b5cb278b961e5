use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::json;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::chat::{
    ChatEvent, ChatRequest, ContentBlock, Dialect, EventStream, Message, Role, StopReason,
};
use crate::error::GatewayError;
use crate::kiro::errors::from_status;

type Item = Result<ChatEvent, GatewayError>;

/// What one scripted upstream attempt does.
#[derive(Clone)]
enum Step {
    Fail(GatewayError),
    /// Fails after this long (the time a pool wait and Kiro took).
    SlowFail(Duration, GatewayError),
    Events(Vec<Item>),
    /// Sends these events, then never anything again.
    Stall(Vec<Item>),
}

fn text(t: &str) -> ChatEvent {
    ChatEvent::TextDelta(t.into())
}

fn done() -> ChatEvent {
    ChatEvent::ContextUsage { percent: 1.0 }
}

/// A scripted inner service; records every request it receives.
type Scripted =
    tower::util::BoxCloneService<Request<ChatRequest>, Response<EventStream>, GatewayError>;

fn scripted(steps: Vec<Step>) -> (Scripted, Arc<Mutex<Vec<ChatRequest>>>) {
    let steps = Arc::new(steps);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let service = service_fn(move |request: Request<ChatRequest>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().push(request.body().clone());
        let step = steps
            .get(n)
            .cloned()
            .unwrap_or_else(|| Step::Fail(GatewayError::internal(format!("unexpected call {n}"))));
        async move {
            match step {
                Step::Fail(error) => Err(error),
                Step::SlowFail(after, error) => {
                    tokio::time::sleep(after).await;
                    Err(error)
                }
                Step::Events(items) => Ok(Response::new(
                    Box::pin(futures_util::stream::iter(items)) as EventStream,
                )),
                Step::Stall(items) => Ok(Response::new(Box::pin(
                    futures_util::stream::iter(items).chain(futures_util::stream::pending()),
                ) as EventStream)),
            }
        }
    });
    (Scripted::new(service), seen)
}

fn request() -> Request<ChatRequest> {
    Request::new(ChatRequest::user_text(Dialect::OpenAi, "m", "hi"))
}

async fn run(
    layer: &RecoverLayer,
    steps: Vec<Step>,
    request: Request<ChatRequest>,
) -> (Result<Vec<Item>, GatewayError>, Vec<ChatRequest>) {
    let (inner, seen) = scripted(steps);
    let result = match layer.layer(inner).oneshot(request).await {
        Ok(response) => Ok(response.into_body().collect::<Vec<_>>().await),
        Err(error) => Err(error),
    };
    let seen = seen.lock().unwrap().clone();
    (result, seen)
}

fn default_layer() -> RecoverLayer {
    RecoverLayer::new(RecoverConfig::default())
}

fn events(items: Vec<Item>) -> Vec<ChatEvent> {
    items.into_iter().map(Result::unwrap).collect()
}

#[tokio::test(start_paused = true)]
async fn throttling_and_5xx_before_output_are_retried_on_a_new_attempt() {
    let throttled = from_status(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"{}");
    let broken = from_status(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b"{}");
    let (result, seen) = run(
        &default_layer(),
        vec![
            Step::Fail(throttled),
            Step::Fail(broken),
            Step::Events(vec![Ok(text("hi")), Ok(done())]),
        ],
        request(),
    )
    .await;
    assert_eq!(events(result.unwrap()), vec![text("hi"), done()]);
    assert_eq!(seen.len(), 3);
}

fn throttled() -> GatewayError {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, "1".parse().unwrap());
    from_status(StatusCode::TOO_MANY_REQUESTS, &headers, b"{}")
}

#[tokio::test(start_paused = true)]
async fn throttles_do_not_spend_the_attempts_and_are_retried_without_a_backoff_of_ours() {
    let mut steps = vec![Step::Fail(throttled()); 5];
    steps.push(Step::Events(vec![Ok(text("hi")), Ok(done())]));
    let start = tokio::time::Instant::now();
    let (result, seen) = run(&default_layer(), steps, request()).await;
    assert_eq!(events(result.unwrap()), vec![text("hi"), done()]);
    assert_eq!(seen.len(), 6);
    assert_eq!(tokio::time::Instant::now(), start);
    // Other failures still spend them: three 5xx in between throttles end the answer.
    let broken = || from_status(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b"{}");
    let steps = vec![
        Step::Fail(throttled()),
        Step::Fail(broken()),
        Step::Fail(throttled()),
        Step::Fail(broken()),
        Step::Fail(broken()),
    ];
    let (result, seen) = run(&default_layer(), steps, request()).await;
    assert_eq!(result.unwrap_err().status(), StatusCode::BAD_GATEWAY);
    assert_eq!(seen.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_that_lasts_past_the_budget_reaches_the_client_as_a_429_with_retry_after() {
    let layer = RecoverLayer::new(RecoverConfig {
        throttle_budget: Duration::from_secs(4),
        ..RecoverConfig::default()
    });
    let steps = vec![Step::SlowFail(Duration::from_secs(1), throttled()); 20];
    let start = tokio::time::Instant::now();
    let (result, seen) = run(&layer, steps, request()).await;
    let error = result.unwrap_err();
    assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(seen.len(), 4);
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(4));
    // Throttles that cost no time at all are capped too.
    let (result, seen) = run(
        &default_layer(),
        vec![Step::Fail(throttled()); 40],
        request(),
    )
    .await;
    assert_eq!(result.unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(seen.len(), 16);
}

#[tokio::test(start_paused = true)]
async fn no_first_event_within_the_timeout_is_dropped_and_retried() {
    let (result, seen) = run(
        &default_layer(),
        vec![
            Step::Stall(vec![]),
            Step::Events(vec![Ok(text("late but fine")), Ok(done())]),
        ],
        request(),
    )
    .await;
    assert_eq!(events(result.unwrap())[0], text("late but fine"));
    assert_eq!(seen.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_the_last_error_is_returned() {
    let stalls = vec![
        Step::Stall(vec![]),
        Step::Stall(vec![]),
        Step::Stall(vec![]),
    ];
    let (result, seen) = run(&default_layer(), stalls, request()).await;
    let error = result.unwrap_err();
    assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(error.message().contains("FIRST_TOKEN_TIMEOUT"));
    assert_eq!(seen.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let (result, seen) = run(
        &default_layer(),
        vec![Step::Fail(GatewayError::invalid_request("bad"))],
        request(),
    )
    .await;
    assert_eq!(result.unwrap_err().status(), StatusCode::BAD_REQUEST);
    assert_eq!(seen.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn refused_accounts_become_a_503_that_says_so() {
    let forbidden = || {
        Step::Fail(from_status(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"message":"bad token"}"#,
        ))
    };
    let (result, seen) = run(
        &default_layer(),
        vec![forbidden(), forbidden(), forbidden()],
        request(),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error.message().contains("No Kiro account"));
    assert_eq!(seen.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_pool_having_no_account_is_final() {
    let (result, seen) = run(
        &default_layer(),
        vec![Step::Fail(GatewayError::no_account("none"))],
        request(),
    )
    .await;
    assert_eq!(
        result.unwrap_err().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(seen.len(), 1);
}

fn tool_start(id: &str) -> ChatEvent {
    ChatEvent::ToolUseStart {
        id: id.into(),
        name: "write".into(),
    }
}

fn tool_input(id: &str, fragment: &str) -> ChatEvent {
    ChatEvent::ToolUseInput {
        id: id.into(),
        fragment: fragment.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_tool_call_is_a_length_stop_and_the_next_turn_is_told() {
    let layer = default_layer();
    let (result, _) = run(
        &layer,
        vec![Step::Events(vec![
            Ok(tool_start("t1")),
            Ok(tool_input("t1", r#"{"content":"very lo"#)),
        ])],
        request(),
    )
    .await;
    let got = events(result.unwrap());
    assert_eq!(got.last(), Some(&ChatEvent::Stop(StopReason::MaxTokens)));
    assert!(layer.memory().contains("t1"));

    // The client runs the tool anyway and sends its result back.
    let mut next = ChatRequest::user_text(Dialect::OpenAi, "m", "write it");
    next.messages.push(Message {
        role: Role::Assistant,
        content: vec![ContentBlock::ToolUse {
            id: "t1".into(),
            name: "write".into(),
            input: json!({}),
        }],
    });
    next.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "t1".into(),
            content: vec![ContentBlock::Text("error: no content".into())],
            is_error: true,
        }],
    });
    let (_, seen) = run(
        &layer,
        vec![Step::Events(vec![Ok(text("ok")), Ok(done())])],
        Request::new(next),
    )
    .await;
    let ContentBlock::ToolResult { content, .. } = &seen[0].messages[2].content[0] else {
        panic!("tool result expected");
    };
    let ContentBlock::Text(notice) = &content[0] else {
        panic!("notice expected");
    };
    assert!(notice.starts_with("[API Limitation]"));
    assert_eq!(content[1], ContentBlock::Text("error: no content".into()));
    assert!(!layer.memory().contains("t1"), "the notice is given once");
}

#[tokio::test(start_paused = true)]
async fn tool_arguments_that_are_not_json_are_a_length_stop_even_with_a_stop_frame() {
    let (result, _) = run(
        &default_layer(),
        vec![Step::Events(vec![
            Ok(tool_start("t2")),
            Ok(tool_input("t2", r#"{"a":"#)),
            Ok(ChatEvent::ToolUseStop { id: "t2".into() }),
            Ok(done()),
            Ok(ChatEvent::Stop(StopReason::ToolUse)),
        ])],
        request(),
    )
    .await;
    let got = events(result.unwrap());
    assert_eq!(got.last(), Some(&ChatEvent::Stop(StopReason::MaxTokens)));
    assert!(!got.contains(&ChatEvent::Stop(StopReason::ToolUse)));
}

#[tokio::test(start_paused = true)]
async fn complete_answers_keep_their_stop() {
    let (result, _) = run(
        &default_layer(),
        vec![Step::Events(vec![
            Ok(tool_start("t3")),
            Ok(tool_input("t3", r#"{"a":1}"#)),
            Ok(ChatEvent::ToolUseStop { id: "t3".into() }),
            Ok(ChatEvent::Stop(StopReason::ToolUse)),
            Ok(done()),
        ])],
        request(),
    )
    .await;
    let got = events(result.unwrap());
    assert_eq!(got.last(), Some(&ChatEvent::Stop(StopReason::ToolUse)));
    assert!(!got.contains(&ChatEvent::Stop(StopReason::MaxTokens)));
}

#[tokio::test(start_paused = true)]
async fn a_cut_text_answer_is_continued_in_the_same_stream() {
    let (result, seen) = run(
        &default_layer(),
        vec![
            Step::Events(vec![Ok(text("Hello, "))]),
            Step::Events(vec![Ok(text("world.")), Ok(done())]),
        ],
        request(),
    )
    .await;
    assert_eq!(
        events(result.unwrap()),
        vec![text("Hello, "), text("world."), done()]
    );
    let follow_up = &seen[1].messages;
    assert_eq!(follow_up.len(), 3);
    assert_eq!(
        follow_up[1],
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::Text("Hello, ".into())]
        }
    );
    assert_eq!(follow_up[2].role, Role::User);
}

#[tokio::test(start_paused = true)]
async fn continuations_are_bounded_then_the_cut_is_reported() {
    let layer = RecoverLayer::new(RecoverConfig {
        max_continuations: 1,
        ..RecoverConfig::default()
    });
    let (result, seen) = run(
        &layer,
        vec![
            Step::Events(vec![Ok(text("a"))]),
            Step::Events(vec![Ok(text("b"))]),
        ],
        request(),
    )
    .await;
    assert_eq!(
        events(result.unwrap()),
        vec![text("a"), text("b"), ChatEvent::Stop(StopReason::MaxTokens)]
    );
    assert_eq!(seen.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn errors_after_output_travel_in_band() {
    let (result, seen) = run(
        &default_layer(),
        vec![Step::Events(vec![
            Ok(text("partial")),
            Err(GatewayError::timeout(
                "Kiro sent nothing for 300 s (STREAMING_READ_TIMEOUT)",
            )),
        ])],
        request(),
    )
    .await;
    let items = result.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap(), &text("partial"));
    assert!(items[1]
        .as_ref()
        .unwrap_err()
        .message()
        .contains("STREAMING_READ_TIMEOUT"));
    assert_eq!(seen.len(), 1);
}

#[test]
fn backoff_grows_and_is_capped() {
    let config = RecoverConfig::default();
    for _ in 0..50 {
        let second = config.backoff(2);
        assert!(second >= Duration::from_millis(125) && second <= Duration::from_millis(375));
        assert!(config.backoff(30) <= config.max_backoff.mul_f64(1.5));
    }
}
