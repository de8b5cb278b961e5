//! The streaming `<thinking>` parser: a three-state machine over the answer's text deltas.
//!
//! Exact semantics (all modes except [`ThinkingHandling::Pass`], which passes text through
//! untouched):
//!
//! * A reasoning block is recognised only at the very start of the answer: optional whitespace,
//!   then one of [`OPEN_TAGS`], with the whitespace and the tag together no longer than the initial
//!   buffer (at least the longest tag). Any other start means there is no reasoning block and the
//!   whole answer is text, byte for byte.
//! * The whitespace before the opening tag, the tags themselves and the newlines right after the
//!   opening tag are dropped. The reasoning ends at the first matching closing tag
//!   (`</` + name + `>`); newlines right after the closing tag are dropped too.
//! * While inside the block the parser holds back only a tail that could be the start of the
//!   closing tag (`</thi`…), so a split closing tag is never emitted as reasoning and everything
//!   else streams without delay.
//! * A closing tag that never comes: what was already streamed stays reasoning, and the held-back
//!   tail (at most the closing tag's length minus one) is emitted once, as text, by
//!   [`ThinkingParser::finish`]. Nothing is lost and nothing is emitted twice.
//! * After the block (or after `finish`) text passes straight through; later tags are ordinary
//!   text.
//!
//! These rules depend only on the concatenated input, so any split of a stream into deltas yields
//! the same concatenated reasoning and the same concatenated text.

use std::mem;

use bytestring::ByteString;

use super::ThinkingHandling;
use crate::chat::ChatEvent;

/// Opening tags that start a reasoning block, tried in this order.
pub const OPEN_TAGS: [&str; 4] = ["<thinking>", "<think>", "<reasoning>", "<thought>"];
const CLOSE_TAGS: [&str; 4] = ["</thinking>", "</think>", "</reasoning>", "</thought>"];
const LONGEST_OPEN_TAG: usize = "<reasoning>".len();

/// How many bytes at the start of an answer may hold the opening tag (kiro-gateway's default).
pub const DEFAULT_INITIAL_BUFFER: usize = 20;

/// Separates untagged reasoning from the answer in [`ThinkingHandling::StripTags`].
const STRIP_TAGS_SEPARATOR: &str = "\n\n";

#[derive(Debug)]
enum State {
    /// Start of the answer: buffering until it is clear whether an opening tag is there.
    PreContent { buffer: String },
    /// Inside the reasoning block; `held` may be the start of the closing tag.
    InThinking {
        close_tag: &'static str,
        held: String,
        trim_newlines: bool,
    },
    /// Past the block (or there was none): text passes through.
    Streaming { trim_newlines: bool },
}

/// Splits `<thinking>…</thinking>` at the start of an answer into reasoning and text.
#[derive(Debug)]
pub struct ThinkingParser {
    handling: ThinkingHandling,
    initial_buffer: usize,
    state: State,
    saw_thinking: bool,
}

impl ThinkingParser {
    /// A parser for one answer. `initial_buffer` bounds the leading whitespace plus opening tag
    /// ([`DEFAULT_INITIAL_BUFFER`] = 20); values below the longest tag are raised to it.
    pub fn new(handling: ThinkingHandling, initial_buffer: usize) -> Self {
        ThinkingParser {
            handling,
            initial_buffer: initial_buffer.max(LONGEST_OPEN_TAG),
            state: State::PreContent {
                buffer: String::new(),
            },
            saw_thinking: false,
        }
    }

    /// Feeds one text delta; appends the resulting events to `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<ChatEvent>) {
        if self.handling == ThinkingHandling::Pass {
            emit(out, text, false);
            return;
        }
        match &mut self.state {
            State::PreContent { buffer } => {
                buffer.push_str(text);
                self.decide_start(out);
            }
            State::InThinking { .. } => self.push_thinking(text, out),
            State::Streaming { .. } => self.push_text(text, out),
        }
    }

    /// Ends the answer: emits whatever is still held back (as text; see the module docs). Text
    /// pushed afterwards passes through as plain text.
    pub fn finish(&mut self, out: &mut Vec<ChatEvent>) {
        let state = mem::replace(
            &mut self.state,
            State::Streaming {
                trim_newlines: false,
            },
        );
        match state {
            State::PreContent { buffer } => emit(out, &buffer, false),
            State::InThinking { held, .. } => {
                if !held.is_empty() {
                    tracing::debug!("reasoning block never closed; held-back tail emitted as text");
                }
                emit(out, &held, false);
            }
            State::Streaming { .. } => {}
        }
    }

    /// In `PreContent`: start the block, keep waiting, or give up and stream the buffer as text.
    fn decide_start(&mut self, out: &mut Vec<ChatEvent>) {
        let State::PreContent { buffer } = &mut self.state else {
            return;
        };
        let trimmed = buffer.trim_start();
        let whitespace = buffer.len() - trimmed.len();
        for (open, close) in OPEN_TAGS.iter().zip(CLOSE_TAGS) {
            if trimmed.starts_with(open) && whitespace + open.len() <= self.initial_buffer {
                let after = trimmed[open.len()..].to_owned();
                self.state = State::InThinking {
                    close_tag: close,
                    held: String::new(),
                    trim_newlines: true,
                };
                self.push_thinking(&after, out);
                return;
            }
        }
        let may_become_tag = OPEN_TAGS.iter().any(|open| {
            open.starts_with(trimmed) && whitespace + open.len() <= self.initial_buffer
        });
        if may_become_tag {
            return;
        }
        let text = mem::take(buffer);
        self.state = State::Streaming {
            trim_newlines: false,
        };
        emit(out, &text, false);
    }

    fn push_thinking(&mut self, text: &str, out: &mut Vec<ChatEvent>) {
        let State::InThinking {
            close_tag,
            held,
            trim_newlines,
        } = &mut self.state
        else {
            return;
        };
        let close_tag: &'static str = close_tag;
        let text = if *trim_newlines {
            let rest = text.trim_start_matches(['\n', '\r']);
            if rest.is_empty() {
                return;
            }
            *trim_newlines = false;
            rest
        } else {
            text
        };
        held.push_str(text);
        if let Some(at) = held.find(close_tag) {
            let after = held[at + close_tag.len()..].to_owned();
            held.truncate(at);
            let thinking = mem::take(held);
            self.emit_thinking(&thinking, out);
            self.state = State::Streaming {
                trim_newlines: true,
            };
            if self.handling == ThinkingHandling::StripTags && self.saw_thinking {
                emit(out, STRIP_TAGS_SEPARATOR, false);
            }
            self.push_text(&after, out);
            return;
        }
        // Keep back only the longest tail that could grow into the closing tag.
        let keep = (1..close_tag.len())
            .rev()
            .find(|&len| held.ends_with(&close_tag[..len]))
            .unwrap_or(0);
        // The kept tail is ASCII (a prefix of the tag), so the split is on a char boundary.
        let tail = held.split_off(held.len() - keep);
        let thinking = mem::replace(held, tail);
        self.emit_thinking(&thinking, out);
    }

    fn push_text(&mut self, text: &str, out: &mut Vec<ChatEvent>) {
        let State::Streaming { trim_newlines } = &mut self.state else {
            return;
        };
        let text = if *trim_newlines {
            let rest = text.trim_start_matches(['\n', '\r']);
            if rest.is_empty() {
                return;
            }
            *trim_newlines = false;
            rest
        } else {
            text
        };
        emit(out, text, false);
    }

    fn emit_thinking(&mut self, thinking: &str, out: &mut Vec<ChatEvent>) {
        if thinking.is_empty() {
            return;
        }
        self.saw_thinking = true;
        match self.handling {
            ThinkingHandling::AsReasoningContent => emit(out, thinking, true),
            ThinkingHandling::Remove => {}
            ThinkingHandling::Pass | ThinkingHandling::StripTags => emit(out, thinking, false),
        }
    }
}

fn emit(out: &mut Vec<ChatEvent>, text: &str, reasoning: bool) {
    if text.is_empty() {
        return;
    }
    let text = ByteString::from(text);
    out.push(if reasoning {
        ChatEvent::ReasoningDelta(text)
    } else {
        ChatEvent::TextDelta(text)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(handling: ThinkingHandling, deltas: &[&str]) -> (String, String) {
        let mut parser = ThinkingParser::new(handling, DEFAULT_INITIAL_BUFFER);
        let mut out = Vec::new();
        for delta in deltas {
            parser.push(delta, &mut out);
        }
        parser.finish(&mut out);
        let mut thinking = String::new();
        let mut text = String::new();
        for event in out {
            match event {
                ChatEvent::ReasoningDelta(t) => thinking.push_str(&t),
                ChatEvent::TextDelta(t) => text.push_str(&t),
                other => panic!("unexpected {other:?}"),
            }
        }
        (thinking, text)
    }

    const REASONING: ThinkingHandling = ThinkingHandling::AsReasoningContent;

    #[test]
    fn every_tag_opens_a_block() {
        for name in ["thinking", "think", "reasoning", "thought"] {
            let input = format!("<{name}>plan</{name}>\n\nanswer");
            assert_eq!(
                run(REASONING, &[&input]),
                ("plan".into(), "answer".into()),
                "{name}"
            );
        }
    }

    #[test]
    fn tags_split_across_deltas_are_found() {
        let deltas = [
            "  <",
            "thin",
            "king>\nstep 1",
            " and 2</",
            "thinki",
            "ng>\n",
            "\nDone.",
        ];
        assert_eq!(
            run(REASONING, &deltas),
            ("step 1 and 2".into(), "Done.".into())
        );
    }

    #[test]
    fn text_before_the_tag_means_no_block() {
        let input = "Sure. <thinking>not reasoning</thinking>";
        assert_eq!(run(REASONING, &[input]), (String::new(), input.into()));
    }

    #[test]
    fn a_closing_tag_of_another_name_is_reasoning() {
        assert_eq!(
            run(REASONING, &["<think>a</thinking>b</think>c"]),
            ("a</thinking>b".into(), "c".into())
        );
    }

    #[test]
    fn unclosed_block_keeps_streamed_reasoning_and_ends_held_tail_as_text() {
        assert_eq!(
            run(REASONING, &["<thinking>long thought</thi"]),
            ("long thought".into(), "</thi".into())
        );
    }

    #[test]
    fn a_lone_tag_prefix_is_text() {
        assert_eq!(run(REASONING, &["<thin"]), (String::new(), "<thin".into()));
        assert_eq!(run(REASONING, &["   "]), (String::new(), "   ".into()));
    }

    #[test]
    fn whitespace_beyond_the_buffer_disables_detection() {
        let input = format!("{}<thinking>x</thinking>", " ".repeat(15));
        assert_eq!(run(REASONING, &[&input]), (String::new(), input.clone()));
    }

    #[test]
    fn modes_shape_the_output() {
        let input = ["<thinking>\nplan\n</thinking>\n\nanswer"];
        assert_eq!(
            run(ThinkingHandling::Remove, &input),
            (String::new(), "answer".into())
        );
        assert_eq!(
            run(ThinkingHandling::Pass, &input),
            (String::new(), input[0].into())
        );
        assert_eq!(
            run(ThinkingHandling::StripTags, &input),
            (String::new(), "plan\n\n\nanswer".into())
        );
    }

    #[test]
    fn reasoning_streams_without_waiting_for_the_close() {
        let mut parser = ThinkingParser::new(REASONING, DEFAULT_INITIAL_BUFFER);
        let mut out = Vec::new();
        parser.push("<thinking>first idea, ", &mut out);
        assert_eq!(out, vec![ChatEvent::ReasoningDelta("first idea, ".into())]);
        out.clear();
        parser.push("then <", &mut out);
        assert_eq!(out, vec![ChatEvent::ReasoningDelta("then ".into())]);
    }
}
