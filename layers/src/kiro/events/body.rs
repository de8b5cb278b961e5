//! [`decode_body`]: an HTTP body stream in, the typed [`EventStream`] out.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Stream;

use super::EventDecoder;
use crate::chat::{ChatEvent, EventStream};
use crate::error::GatewayError;
use crate::kiro::eventstream::Decoder;

/// Decodes a Kiro response body (a stream of byte chunks) into the typed event stream.
///
/// Every frame already received is decoded before an event is handed out, and nothing waits
/// for bytes that have not arrived: an event is yielded as soon as the read that completed its
/// frame is in. With `merge_ready_deltas`, consecutive text (or reasoning) deltas decoded from
/// the same reads become one delta: when Kiro sends a burst, the client gets one chunk instead
/// of one per frame, with the same text at the same moment.
///
/// The first failure is yielded as one error after the events decoded before it, and then the
/// stream ends: a transport error, a framing error or a body that ends inside a frame as
/// [`GatewayError::upstream_stream`] naming what broke; an `exception`/`error` frame as mapped by
/// [`crate::kiro::errors::from_exception_frame`]. A tool call that was started but never stopped
/// is left as it is (the recover layer judges cut streams).
pub fn decode_body<S, E>(body: S, merge_ready_deltas: bool) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    Box::pin(BodyDecoder {
        body: Box::pin(body),
        frames: Decoder::new(),
        events: EventDecoder::new(),
        ready: VecDeque::new(),
        run: TextRun::Empty,
        failure: None,
        merge_ready_deltas,
        done: false,
    })
}

struct BodyDecoder<S> {
    body: Pin<Box<S>>,
    frames: Decoder,
    events: EventDecoder,
    ready: VecDeque<ChatEvent>,
    /// Plain text deltas being joined (with `merge_ready_deltas`), queued before any other event.
    run: TextRun,
    /// The error that ends the stream, yielded once `ready` is empty.
    failure: Option<GatewayError>,
    merge_ready_deltas: bool,
    done: bool,
}

impl<S, E> Stream for BodyDecoder<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(error) = this.failure.take() {
                this.done = true;
                return Poll::Ready(Some(Err(error)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            this.decode_received();
            if !this.ready.is_empty() || this.failure.is_some() {
                continue;
            }
            match ready!(this.body.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => this.frames.push_bytes(chunk),
                Some(Err(error)) => {
                    this.failure = Some(GatewayError::upstream_stream(format!(
                        "Reading the Kiro response body failed: {error}"
                    )));
                }
                None => {
                    this.done = true;
                    if let Err(error) = this.frames.finish() {
                        return Poll::Ready(Some(Err(GatewayError::upstream_stream(format!(
                            "The Kiro response was cut off: {error}"
                        )))));
                    }
                    if !this.events.open_tool_calls().is_empty() {
                        tracing::debug!(
                            open = this.events.open_tool_calls().len(),
                            "Kiro response ended with tool calls still open"
                        );
                    }
                }
            }
        }
    }
}

impl<S> BodyDecoder<S> {
    /// Decodes every complete frame received so far into `ready` (stopping at the first
    /// failure, kept in `failure`), joining adjacent deltas if asked to. Plain text deltas, nearly
    /// every frame of an answer, are appended to the run straight from the frame.
    fn decode_received(&mut self) {
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => {
                    if self.merge_ready_deltas {
                        if let Some(text) = EventDecoder::plain_text(&frame) {
                            let room = self.frames.buffered_len();
                            self.run.push(&frame.payload, text, room);
                            continue;
                        }
                        self.run.queue(&mut self.ready);
                    }
                    if let Err(error) = self.events.decode(&frame, &mut self.ready) {
                        self.failure = Some(error);
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    self.failure = Some(GatewayError::upstream_stream(format!(
                        "The Kiro response stream is corrupt: {error}"
                    )));
                    break;
                }
            }
        }
        if self.merge_ready_deltas {
            self.run.queue(&mut self.ready);
            merge_adjacent_deltas(&mut self.ready);
        }
    }
}

/// Plain text deltas joined so far. The first stays a slice of its frame (a lone delta is never
/// copied); the second starts an owned copy that the rest are appended to.
enum TextRun {
    Empty,
    One(ByteString),
    Joined(String),
}

impl TextRun {
    /// Appends `text`, which points into `payload`. `room` is how many received bytes are still
    /// undecoded: the most text this run can still gain, used to size the copy once.
    fn push(&mut self, payload: &Bytes, text: &str, room: usize) {
        if text.is_empty() {
            return;
        }
        *self = match std::mem::replace(self, TextRun::Empty) {
            TextRun::Empty => TextRun::One(super::share(payload, super::JsonStr(text.into()))),
            TextRun::One(first) => {
                let mut joined =
                    String::with_capacity(first.len() + text.len() + room.min(MAX_RUN_RESERVE));
                joined.push_str(&first);
                joined.push_str(text);
                TextRun::Joined(joined)
            }
            TextRun::Joined(mut joined) => {
                joined.push_str(text);
                TextRun::Joined(joined)
            }
        };
    }

    /// Queues the run as one text delta (if there is one) and empties it.
    fn queue(&mut self, ready: &mut VecDeque<ChatEvent>) {
        match std::mem::replace(self, TextRun::Empty) {
            TextRun::Empty => {}
            TextRun::One(text) => ready.push_back(ChatEvent::TextDelta(text)),
            TextRun::Joined(text) => ready.push_back(ChatEvent::TextDelta(ByteString::from(text))),
        }
    }
}

/// Cap on the up-front reservation for a joined run; a longer one grows as strings do.
const MAX_RUN_RESERVE: usize = 16 * 1024;

/// Joins each run of consecutive text deltas (and each run of reasoning deltas) into one delta,
/// keeping every other event and the order. One allocation per run of two or more.
pub(crate) fn merge_adjacent_deltas(events: &mut VecDeque<ChatEvent>) {
    if !events
        .iter()
        .zip(events.iter().skip(1))
        .any(|(a, b)| mergeable(a, b))
    {
        return;
    }
    let mut merged = VecDeque::with_capacity(events.len());
    let mut pending = events.drain(..).peekable();
    while let Some(event) = pending.next() {
        if !pending.peek().is_some_and(|next| mergeable(&event, next)) {
            merged.push_back(event);
            continue;
        }
        let mut run = vec![event];
        while let Some(next) = pending.next_if(|next| mergeable(&run[0], next)) {
            run.push(next);
        }
        let mut text = String::with_capacity(run.iter().map(|e| delta_text(e).len()).sum());
        for event in &run {
            text.push_str(delta_text(event));
        }
        let text = ByteString::from(text);
        merged.push_back(match run[0] {
            ChatEvent::ReasoningDelta(_) => ChatEvent::ReasoningDelta(text),
            _ => ChatEvent::TextDelta(text),
        });
    }
    drop(pending);
    *events = merged;
}

fn mergeable(a: &ChatEvent, b: &ChatEvent) -> bool {
    matches!(
        (a, b),
        (ChatEvent::TextDelta(_), ChatEvent::TextDelta(_))
            | (ChatEvent::ReasoningDelta(_), ChatEvent::ReasoningDelta(_))
    )
}

fn delta_text(event: &ChatEvent) -> &str {
    match event {
        ChatEvent::TextDelta(text) | ChatEvent::ReasoningDelta(text) => text,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> ChatEvent {
        ChatEvent::TextDelta(ByteString::from(s))
    }

    fn reasoning(s: &str) -> ChatEvent {
        ChatEvent::ReasoningDelta(ByteString::from(s))
    }

    #[test]
    fn runs_of_the_same_kind_merge_and_everything_else_keeps_its_place() {
        let stop = ChatEvent::ToolUseStop {
            id: ByteString::from("t1"),
        };
        let mut events = VecDeque::from(vec![
            reasoning("th"),
            reasoning("ink"),
            text("a"),
            text("a"),
            text("é"),
            stop.clone(),
            text("b"),
        ]);
        merge_adjacent_deltas(&mut events);
        assert_eq!(
            Vec::from(events),
            vec![reasoning("think"), text("aaé"), stop, text("b")]
        );
    }

    fn delta_frame(text: &str) -> Bytes {
        let payload = format!(r#"{{"content":"{text}","modelId":"auto"}}"#);
        crate::kiro::eventstream::Message::event("assistantResponseEvent", payload.into_bytes())
            .encode()
    }

    fn decode_reads(reads: Vec<Bytes>, merge: bool) -> Vec<ChatEvent> {
        let body = futures_util::stream::iter(reads.into_iter().map(Ok::<_, std::io::Error>));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(futures_util::StreamExt::collect::<Vec<_>>(decode_body(
                body, merge,
            )))
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    /// Deltas received in one read become one; a delta alone in its read stays a slice of the
    /// read (never copied); nothing waits for a later read.
    #[test]
    fn deltas_of_one_read_are_joined_and_a_lone_delta_is_not_copied() {
        let mut burst = bytes::BytesMut::new();
        for text in ["a", "b", "", "c"] {
            burst.extend_from_slice(&delta_frame(text));
        }
        let lone = delta_frame("d");
        let lone_range = lone.as_ptr() as usize..lone.as_ptr() as usize + lone.len();
        let events = decode_reads(vec![burst.freeze(), lone], true);
        assert_eq!(events, vec![text("abc"), text("d")]);
        let ChatEvent::TextDelta(d) = &events[1] else {
            unreachable!()
        };
        assert!(lone_range.contains(&(d.as_ptr() as usize)), "copied");
        let mut two = bytes::BytesMut::new();
        two.extend_from_slice(&delta_frame("x"));
        two.extend_from_slice(&delta_frame("y"));
        assert_eq!(
            decode_reads(vec![two.freeze()], false),
            vec![text("x"), text("y")],
            "joining is optional"
        );
    }

    #[test]
    fn nothing_to_merge_leaves_the_events_alone() {
        let mut events = VecDeque::from(vec![text("a"), reasoning("b"), text("c")]);
        let before = events.clone();
        merge_adjacent_deltas(&mut events);
        assert_eq!(events, before);
    }
}
