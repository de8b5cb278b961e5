//! The answer stream after its first event: passes events on, judges the end, continues cut
//! text answers and reports cut ones as `Stop(MaxTokens)`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::Stream;

use super::attempt::{until_first_event, Template};
use super::tracker::{Tracker, Verdict};
use super::{RecoverConfig, RetriedService, TruncationMemory};
use crate::chat::{ChatEvent, ChatRequest, ContentBlock, EventStream, Message, Role, StopReason};
use crate::error::GatewayError;

/// Sent after the partial answer to ask for the rest.
pub(super) const CONTINUE_INSTRUCTION: &str = "Your previous answer was cut off by an output limit. Continue exactly where it stopped, without repeating anything and without any preamble.";

pub(super) struct Recovering<S> {
    pub inner: S,
    pub template: Template,
    pub config: Arc<RecoverConfig>,
    pub memory: TruncationMemory,
    pub current: Option<EventStream>,
    pub pending: VecDeque<Result<ChatEvent, GatewayError>>,
    pub tracker: Tracker,
    pub continuations: u32,
    pub finished: bool,
}

impl<S> Recovering<S>
where
    S: RetriedService,
{
    /// The stream of events, starting with `first`.
    pub fn into_stream(mut self, first: ChatEvent) -> EventStream {
        self.accept(first);
        Box::pin(RecoverStream {
            state: Some(self),
            ending: None,
        })
    }

    fn accept(&mut self, event: ChatEvent) {
        if self.tracker.observe(&event) {
            self.pending.push_back(Ok(event));
        }
    }

    /// The next item if it can be had without waiting on anything but the current upstream
    /// stream, or [`Next::UpstreamEnded`] when [`Recovering::end_of_stream`] must run.
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Poll::Ready(Next::Item(Some(item)));
            }
            if self.finished {
                return Poll::Ready(Next::Item(None));
            }
            let Some(current) = self.current.as_mut() else {
                self.finished = true;
                continue;
            };
            match ready!(current.as_mut().poll_next(cx)) {
                Some(Ok(event)) => {
                    // The usual case: pass it straight on, no queueing.
                    if self.tracker.observe(&event) {
                        return Poll::Ready(Next::Item(Some(Ok(event))));
                    }
                }
                Some(Err(error)) => {
                    // After output began, errors travel in-band; a call left open is remembered.
                    self.current = None;
                    self.finished = true;
                    self.remember(self.tracker.broken_calls());
                    return Poll::Ready(Next::Item(Some(Err(error))));
                }
                None => {
                    self.current = None;
                    return Poll::Ready(Next::UpstreamEnded);
                }
            }
        }
    }

    fn remember(&self, ids: Vec<String>) {
        if self.config.truncation_recovery {
            for id in ids {
                self.memory.remember(&id);
            }
        }
    }

    fn cut(&mut self) {
        self.pending
            .push_back(Ok(ChatEvent::Stop(StopReason::MaxTokens)));
        self.finished = true;
    }

    async fn end_of_stream(mut self) -> Self {
        self.judge_end().await;
        self
    }

    async fn judge_end(&mut self) {
        match self.tracker.verdict() {
            Verdict::Complete(stop) => {
                if let Some(stop) = stop {
                    self.pending.push_back(Ok(ChatEvent::Stop(stop)));
                }
                self.finished = true;
            }
            Verdict::CutTool(ids) => {
                tracing::warn!(calls = ?ids, "Kiro cut the answer inside a tool call");
                self.remember(ids);
                self.cut();
            }
            Verdict::CutAfterTools => {
                tracing::warn!("Kiro ended the answer without its end-of-answer signal");
                self.cut();
            }
            Verdict::CutText => {
                if !self.config.truncation_recovery
                    || self.continuations >= self.config.max_continuations
                    || self.tracker.text.is_empty()
                {
                    tracing::warn!("Kiro cut the text answer; reporting it as a length stop");
                    self.cut();
                    return;
                }
                self.continuations += 1;
                tracing::info!(
                    continuation = self.continuations,
                    "Kiro cut the text answer; continuing it with a follow-up request"
                );
                let body = self.continuation_body();
                let attempt = until_first_event(
                    self.inner.clone(),
                    &self.template,
                    &body,
                    Arc::clone(&self.config),
                );
                match attempt.await {
                    Ok(started) => {
                        self.tracker.continue_answer();
                        self.current = Some(started.rest);
                        self.accept(started.first);
                    }
                    Err(error) => {
                        tracing::warn!("continuing the cut answer failed: {}", error.message());
                        self.cut();
                    }
                }
            }
        }
    }

    /// The original conversation, the answer so far, and the request to go on.
    fn continuation_body(&self) -> ChatRequest {
        let mut body = self.template.body.clone();
        body.messages.push(Message {
            role: Role::Assistant,
            content: vec![ContentBlock::Text(self.tracker.text.clone())],
        });
        body.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::Text(CONTINUE_INSTRUCTION.to_owned())],
        });
        body
    }
}

/// What [`Recovering::poll_item`] found.
enum Next {
    /// An item for the client (`None`: the answer is over).
    Item(Option<Result<ChatEvent, GatewayError>>),
    /// The current upstream stream ended: judge it, perhaps continue the answer.
    UpstreamEnded,
}

/// [`Recovering`] as a stream. Events are passed on from `poll_next` directly; only the end of
/// an upstream stream, which may start a continuation request, runs as a future.
struct RecoverStream<S> {
    /// `None` while `ending` owns it.
    state: Option<Recovering<S>>,
    ending: Option<Pin<Box<dyn Future<Output = Recovering<S>> + Send>>>,
}

// Nothing in it is pinned in place: the future is boxed and the state is moved freely.
impl<S> Unpin for RecoverStream<S> {}

impl<S> Stream for RecoverStream<S>
where
    S: RetriedService,
{
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(ending) = this.ending.as_mut() {
                this.state = Some(ready!(ending.as_mut().poll(cx)));
                this.ending = None;
            }
            let Some(state) = this.state.as_mut() else {
                return Poll::Ready(None);
            };
            if let Next::Item(item) = ready!(state.poll_item(cx)) {
                return Poll::Ready(item);
            }
            if let Some(state) = this.state.take() {
                this.ending = Some(Box::pin(state.end_of_stream()));
            }
        }
    }
}
