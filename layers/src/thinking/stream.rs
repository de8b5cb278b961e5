//! [`thinking_stream`]: the parser applied to a whole answer stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use super::{ThinkingHandling, ThinkingParser, DEFAULT_INITIAL_BUFFER};
use crate::chat::{ChatEvent, EventStream};
use crate::error::GatewayError;

/// Runs the `<thinking>` parser over the [`ChatEvent::TextDelta`]s of `events`; every other event
/// passes through in order. Held-back text is flushed before anything that ends the text part of
/// the answer (a tool call, a stop, reasoning from the upstream, an error, the end of the stream),
/// so no text is reordered behind it.
pub fn thinking_stream(events: EventStream, handling: ThinkingHandling) -> EventStream {
    Box::pin(ThinkingStream {
        inner: events,
        parser: ThinkingParser::new(handling, DEFAULT_INITIAL_BUFFER),
        ready: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
    })
}

struct ThinkingStream {
    inner: EventStream,
    parser: ThinkingParser,
    ready: VecDeque<Result<ChatEvent, GatewayError>>,
    scratch: Vec<ChatEvent>,
    done: bool,
}

impl ThinkingStream {
    fn queue_parsed(&mut self) {
        self.ready.extend(self.scratch.drain(..).map(Ok));
    }
}

impl Stream for ThinkingStream {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(ChatEvent::TextDelta(text)))) => {
                    this.parser.push(&text, &mut this.scratch);
                    this.queue_parsed();
                }
                // Accounting events say nothing about where the text ends; keep parsing.
                Poll::Ready(Some(Ok(
                    event @ (ChatEvent::ContextUsage { .. }
                    | ChatEvent::Metering { .. }
                    | ChatEvent::TokenUsage(_)),
                ))) => this.ready.push_back(Ok(event)),
                Poll::Ready(Some(other)) => {
                    this.parser.finish(&mut this.scratch);
                    this.queue_parsed();
                    this.ready.push_back(other);
                }
                Poll::Ready(None) => {
                    this.parser.finish(&mut this.scratch);
                    this.queue_parsed();
                    this.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::StopReason;
    use futures_util::{stream, StreamExt};

    #[tokio::test]
    async fn held_text_is_flushed_before_a_tool_call() {
        let events: Vec<Result<ChatEvent, GatewayError>> = vec![
            Ok(ChatEvent::TextDelta("<thi".into())),
            Ok(ChatEvent::ToolUseStart {
                id: "t1".into(),
                name: "read".into(),
            }),
            Ok(ChatEvent::Stop(StopReason::ToolUse)),
        ];
        let out: Vec<_> = thinking_stream(
            Box::pin(stream::iter(events)),
            ThinkingHandling::AsReasoningContent,
        )
        .map(|e| e.unwrap())
        .collect()
        .await;
        assert_eq!(
            out,
            vec![
                ChatEvent::TextDelta("<thi".into()),
                ChatEvent::ToolUseStart {
                    id: "t1".into(),
                    name: "read".into()
                },
                ChatEvent::Stop(StopReason::ToolUse),
            ]
        );
    }
}
