//! Watches an answer stream and judges, at its end, whether it was complete.

use std::collections::HashMap;

use crate::chat::{ChatEvent, StopReason};

/// How an answer stream ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Complete; the stop the upstream gave, if any.
    Complete(Option<StopReason>),
    /// Cut inside tool calls; these ids are broken.
    CutTool(Vec<String>),
    /// Cut after text only (no tool call began).
    CutText,
    /// Cut, with complete tool calls but no end-of-answer accounting.
    CutAfterTools,
}

#[derive(Debug, Default)]
struct Call {
    input: String,
    stopped: bool,
}

/// What the stream said so far.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    calls: HashMap<String, Call>,
    call_order: Vec<String>,
    /// Visible text of the whole answer (across continuations).
    pub text: String,
    stop: Option<StopReason>,
    completion: bool,
}

impl Tracker {
    /// Notes one event. Returns false for events the caller must hold back (the stop, which is
    /// decided at the end).
    pub fn observe(&mut self, event: &ChatEvent) -> bool {
        match event {
            ChatEvent::TextDelta(text) => self.text.push_str(text),
            ChatEvent::ToolUseStart { id, .. } => {
                if !self.calls.contains_key(&**id) {
                    self.call_order.push(id.to_string());
                }
                self.call(id);
            }
            ChatEvent::ToolUseInput { id, fragment } => self.call(id).input.push_str(fragment),
            ChatEvent::ToolUseStop { id } => self.call(id).stopped = true,
            ChatEvent::ContextUsage { .. }
            | ChatEvent::Metering { .. }
            | ChatEvent::TokenUsage(_) => self.completion = true,
            ChatEvent::Stop(reason) => {
                self.stop = Some(*reason);
                return false;
            }
            ChatEvent::ReasoningDelta(_)
            | ChatEvent::ReasoningSignature(_)
            | ChatEvent::StopSequenceMatched(_) => {}
        }
        true
    }

    /// The call `id` (the id is copied the first time only, not for every fragment).
    fn call(&mut self, id: &str) -> &mut Call {
        if !self.calls.contains_key(id) {
            self.calls.insert(id.to_owned(), Call::default());
        }
        self.calls.get_mut(id).expect("inserted above")
    }

    /// Ids of tool calls that are open or whose arguments are not a JSON object.
    pub fn broken_calls(&self) -> Vec<String> {
        self.call_order
            .iter()
            .filter(|id| {
                self.calls.get(*id).is_some_and(|call| {
                    !call.stopped || !(call.input.trim().is_empty() || is_json(&call.input))
                })
            })
            .cloned()
            .collect()
    }

    /// The judgement at the end of the stream.
    pub fn verdict(&self) -> Verdict {
        let broken = self.broken_calls();
        if !broken.is_empty() {
            return Verdict::CutTool(broken);
        }
        if self.stop.is_some() || self.completion {
            return Verdict::Complete(self.stop);
        }
        if self.calls.is_empty() {
            Verdict::CutText
        } else {
            Verdict::CutAfterTools
        }
    }

    /// Forgets the end-of-answer signals before a continuation streams in.
    pub fn continue_answer(&mut self) {
        self.stop = None;
        self.completion = false;
    }
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}
