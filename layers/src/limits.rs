//! `OutputLimitLayer`: Kiro has no `max_tokens` and no stop sequences, so the gateway enforces
//! both itself, in both dialects. It cuts the visible text at the first stop sequence (holding
//! back just enough text to see a sequence split across deltas) or once the output estimate
//! reaches `max_tokens`, reports `StopSequence` / `MaxTokens`, and drops the upstream stream so
//! no more is read from Kiro.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytestring::ByteString;
use futures_util::Stream;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::chat::{ChatEvent, ChatRequest, EventStream, StopReason};
use crate::error::GatewayError;
use crate::tokens::estimate_text_tokens;

/// Builds [`OutputLimit`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputLimitLayer;

impl<S> Layer<S> for OutputLimitLayer {
    type Service = OutputLimit<S>;
    fn layer(&self, inner: S) -> OutputLimit<S> {
        OutputLimit { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct OutputLimit<S> {
    inner: S,
}

impl<S> Service<Request<ChatRequest>> for OutputLimit<S>
where
    S: Service<Request<ChatRequest>, Response = Response<EventStream>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<EventStream>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let max_tokens = request.body().max_tokens.map(u64::from);
        let stops: Vec<String> = request
            .body()
            .stop_sequences
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if max_tokens.is_none() && stops.is_empty() {
                return Ok(response);
            }
            Ok(response.map(|events| {
                Box::pin(LimitedEvents::new(events, max_tokens, stops)) as EventStream
            }))
        })
    }
}

/// The answer stream with limits applied.
pub struct LimitedEvents {
    inner: Option<EventStream>,
    max_tokens: Option<u64>,
    used_tokens: u64,
    stops: Vec<String>,
    /// Visible text not yet released because it may be the start of a stop sequence.
    held: String,
    hold_len: usize,
    ready: VecDeque<Result<ChatEvent, GatewayError>>,
}

impl LimitedEvents {
    /// Applies `max_tokens` and `stops` to `inner`.
    pub fn new(inner: EventStream, max_tokens: Option<u64>, stops: Vec<String>) -> Self {
        let hold_len = stops
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        LimitedEvents {
            inner: Some(inner),
            max_tokens,
            used_tokens: 0,
            stops,
            held: String::new(),
            hold_len,
            ready: VecDeque::new(),
        }
    }

    /// Ends the answer here: release what is safe, report why, stop reading upstream.
    fn cut(&mut self, reason: StopReason) {
        self.inner = None;
        self.ready.push_back(Ok(ChatEvent::Stop(reason)));
    }

    fn over_budget(&mut self, text: &str) -> bool {
        self.used_tokens += estimate_text_tokens(text);
        self.max_tokens.is_some_and(|max| self.used_tokens > max)
    }

    fn push_text(&mut self, text: &str) {
        if self.stops.is_empty() {
            self.ready
                .push_back(Ok(ChatEvent::TextDelta(ByteString::from(text.to_owned()))));
            return;
        }
        self.held.push_str(text);
        // The earliest match wins; at equal positions the longer sequence (what the text shows).
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop.clone())))
            .min_by_key(|(at, stop)| (*at, std::cmp::Reverse(stop.len())));
        if let Some((at, stop)) = earliest {
            let before = self.held[..at].to_owned();
            self.held.clear();
            if !before.is_empty() {
                self.ready
                    .push_back(Ok(ChatEvent::TextDelta(before.into())));
            }
            self.ready
                .push_back(Ok(ChatEvent::StopSequenceMatched(stop.into())));
            self.cut(StopReason::StopSequence);
            return;
        }
        // Release all but the tail that could still begin a stop sequence.
        let mut keep_from = self.held.len().saturating_sub(self.hold_len);
        while !self.held.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        if keep_from > 0 {
            let released: String = self.held.drain(..keep_from).collect();
            self.ready
                .push_back(Ok(ChatEvent::TextDelta(released.into())));
        }
    }

    fn flush_held(&mut self) {
        if !self.held.is_empty() {
            let rest = std::mem::take(&mut self.held);
            self.ready.push_back(Ok(ChatEvent::TextDelta(rest.into())));
        }
    }

    fn handle(&mut self, event: ChatEvent) {
        match event {
            ChatEvent::TextDelta(text) => {
                if self.over_budget(&text) {
                    self.flush_held();
                    self.cut(StopReason::MaxTokens);
                } else if self.stops.is_empty() {
                    self.ready.push_back(Ok(ChatEvent::TextDelta(text)));
                } else {
                    self.push_text(&text);
                }
            }
            ChatEvent::ReasoningDelta(ref text)
            | ChatEvent::ToolUseInput {
                fragment: ref text, ..
            } => {
                let over = self.over_budget(text);
                self.flush_held();
                self.ready.push_back(Ok(event));
                if over {
                    self.cut(StopReason::MaxTokens);
                }
            }
            other => {
                self.flush_held();
                self.ready.push_back(Ok(other));
            }
        }
    }
}

impl Stream for LimitedEvents {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            let Some(inner) = self.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.inner = None;
                    self.flush_held();
                }
                Poll::Ready(Some(Err(error))) => {
                    self.inner = None;
                    self.flush_held();
                    self.ready.push_back(Err(error));
                }
                Poll::Ready(Some(Ok(event))) => self.handle(event),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};

    async fn run(
        deltas: &[&str],
        max: Option<u64>,
        stops: &[&str],
    ) -> (String, Option<StopReason>) {
        let (text, stop, _) = run_matched(deltas, max, stops).await;
        (text, stop)
    }

    async fn run_matched(
        deltas: &[&str],
        max: Option<u64>,
        stops: &[&str],
    ) -> (String, Option<StopReason>, Option<String>) {
        let events: EventStream = Box::pin(stream::iter(
            deltas
                .iter()
                .map(|d| Ok(ChatEvent::TextDelta((*d).into())))
                .collect::<Vec<_>>(),
        ));
        let limited =
            LimitedEvents::new(events, max, stops.iter().map(|s| s.to_string()).collect());
        let all: Vec<ChatEvent> = limited.map(Result::unwrap).collect().await;
        let mut text = String::new();
        let mut stop = None;
        let mut matched = None;
        for event in all {
            match event {
                ChatEvent::TextDelta(t) => text.push_str(&t),
                ChatEvent::StopSequenceMatched(s) => {
                    assert!(stop.is_none(), "the match is named before the stop");
                    matched = Some(s.to_string());
                }
                ChatEvent::Stop(reason) => stop = Some(reason),
                _ => {}
            }
        }
        (text, stop, matched)
    }

    #[tokio::test]
    async fn names_the_sequence_that_matched_first() {
        let (text, stop, matched) =
            run_matched(&["one two", " three"], None, &["three", "two"]).await;
        assert_eq!(text, "one ");
        assert_eq!(stop, Some(StopReason::StopSequence));
        assert_eq!(matched.as_deref(), Some("two"));
        let (_, _, none) = run_matched(&["one"], Some(100), &["zzz"]).await;
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn stop_sequence_split_across_deltas() {
        let (text, stop) = run(&["Hello wo", "rld EN", "D and more"], None, &["END"]).await;
        assert_eq!(text, "Hello world ");
        assert_eq!(stop, Some(StopReason::StopSequence));
    }

    #[tokio::test]
    async fn no_stop_sequence_keeps_everything() {
        let (text, stop) = run(&["héllo ", "wörld", "!"], None, &["XYZ"]).await;
        assert_eq!(text, "héllo wörld!");
        assert_eq!(stop, None);
    }

    #[tokio::test]
    async fn max_tokens_cuts_and_reports() {
        let deltas = vec!["word "; 100];
        let (text, stop) = run(&deltas, Some(10), &[]).await;
        assert_eq!(stop, Some(StopReason::MaxTokens));
        assert!(text.len() < 100, "{text}");
    }

    #[tokio::test]
    async fn every_split_finds_the_sequence() {
        let full = "alpha beta STOP gamma";
        for cut in 1..full.len() {
            let (a, b) = full.split_at(cut);
            let (text, stop) = run(&[a, b], None, &["STOP"]).await;
            assert_eq!(text, "alpha beta ", "split at {cut}");
            assert_eq!(stop, Some(StopReason::StopSequence));
        }
    }
}
