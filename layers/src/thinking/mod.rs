//! "Fake reasoning": the prompt text that asks a Kiro model to think inside `<thinking>` tags, and
//! the streaming parser that takes those tags back out of the answer.
//!
//! Kiro has no reasoning switch for most models, but a model told
//! `<thinking_mode>enabled</thinking_mode>` answers with `<thinking>…</thinking>` followed by the
//! answer. [`injection_prefix`] and [`system_prompt_addition`] produce that prompt text;
//! [`resolve_budget`] decides whether a request gets it; [`thinking_stream`] turns the tagged text
//! back into [`ChatEvent::ReasoningDelta`]s (or removes, passes or untags it, per
//! [`ThinkingHandling`]).
//!
//! ```
//! use kiro_layers::chat::ChatEvent;
//! use kiro_layers::thinking::{ThinkingHandling, ThinkingParser};
//!
//! let mut parser = ThinkingParser::new(ThinkingHandling::AsReasoningContent, 20);
//! let mut out = Vec::new();
//! parser.push("<think", &mut out);
//! parser.push("ing>Two plus two.</thin", &mut out);
//! parser.push("king>\n\n4", &mut out);
//! parser.finish(&mut out);
//! assert_eq!(
//!     out,
//!     vec![
//!         ChatEvent::ReasoningDelta("Two plus two.".into()),
//!         ChatEvent::TextDelta("4".into()),
//!     ]
//! );
//! ```

mod layer;
mod parser;
mod stream;

use std::fmt;
use std::str::FromStr;

use crate::chat::ThinkingRequest;

pub use layer::{Thinking, ThinkingConfig, ThinkingLayer};
pub use parser::{ThinkingParser, DEFAULT_INITIAL_BUFFER, OPEN_TAGS};
pub use stream::thinking_stream;

#[cfg(doc)]
use crate::chat::ChatEvent;

/// What to do with the reasoning the parser finds at the start of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThinkingHandling {
    /// Emit it as [`ChatEvent::ReasoningDelta`]s (OpenAI `reasoning_content`, Anthropic
    /// `thinking` blocks).
    #[default]
    AsReasoningContent,
    /// Drop it; the client sees only the answer.
    Remove,
    /// Leave the answer untouched, tags included, as ordinary text.
    Pass,
    /// Emit the reasoning as ordinary text without its tags, separated from the answer by a blank
    /// line.
    StripTags,
}

/// A [`ThinkingHandling`] name that is not one of the four known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownThinkingHandling(pub String);

impl fmt::Display for UnknownThinkingHandling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown thinking handling `{}`; use as_reasoning_content, remove, pass or strip_tags",
            self.0
        )
    }
}

impl std::error::Error for UnknownThinkingHandling {}

impl FromStr for ThinkingHandling {
    type Err = UnknownThinkingHandling;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "as_reasoning_content" => Ok(ThinkingHandling::AsReasoningContent),
            "remove" => Ok(ThinkingHandling::Remove),
            "pass" => Ok(ThinkingHandling::Pass),
            "strip_tags" => Ok(ThinkingHandling::StripTags),
            _ => Err(UnknownThinkingHandling(s.to_owned())),
        }
    }
}

/// The text prepended to the current user message when reasoning is on. It ends with a blank
/// line, so the caller can put the user's content right after it.
pub fn injection_prefix(budget_tokens: u32) -> String {
    format!(
        "<thinking_mode>enabled</thinking_mode>\n\
         <max_thinking_length>{budget_tokens}</max_thinking_length>\n\
         <thinking_instruction>{THINKING_INSTRUCTION}</thinking_instruction>\n\n"
    )
}

/// Reasoning guidance placed inside `<thinking_instruction>`.
const THINKING_INSTRUCTION: &str = "Before answering, reason step by step inside \
<thinking></thinking> tags. Work out what is really being asked, weigh more than one way to \
solve it, look for edge cases and mistakes in your own assumptions, and check your result. \
Reason in English. After the closing </thinking> tag, give the final answer in the language the \
user wrote in. Prefer a correct answer over a fast one.";

/// The `# Extended Thinking Mode` section appended to the system prompt when reasoning is on.
pub fn system_prompt_addition() -> String {
    "# Extended Thinking Mode\n\n\
     Some user messages begin with <thinking_mode>, <max_thinking_length> and \
     <thinking_instruction> tags. The operator of this system adds these tags on purpose; they are \
     genuine configuration, not text injected by a third party, so follow them. When \
     <thinking_mode> is enabled, start your reply with your reasoning wrapped in \
     <thinking>...</thinking> (staying within roughly <max_thinking_length> tokens), then write \
     the answer itself after the closing tag. Never mention these tags in the answer."
        .to_owned()
}

/// Decides the reasoning budget of one request, or `None` when no reasoning prompt is injected.
///
/// An explicit request wins over the gateway default; a budget of zero means off; `cap` bounds
/// every budget (`0` = no cap).
pub fn resolve_budget(
    req: ThinkingRequest,
    default_enabled: bool,
    default_budget: u32,
    cap: u32,
) -> Option<u32> {
    let budget = match req {
        ThinkingRequest::Disabled => return None,
        ThinkingRequest::Budget(budget) => budget,
        ThinkingRequest::Default if default_enabled => default_budget,
        ThinkingRequest::Default => return None,
    };
    let budget = if cap > 0 { budget.min(cap) } else { budget };
    (budget > 0).then_some(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handling_names_parse() {
        assert_eq!(
            "as_reasoning_content".parse(),
            Ok(ThinkingHandling::AsReasoningContent)
        );
        assert_eq!("remove".parse(), Ok(ThinkingHandling::Remove));
        assert_eq!("pass".parse(), Ok(ThinkingHandling::Pass));
        assert_eq!(" STRIP_TAGS ".parse(), Ok(ThinkingHandling::StripTags));
        let err = "include_as_text".parse::<ThinkingHandling>().unwrap_err();
        assert!(err.to_string().contains("include_as_text"));
    }

    #[test]
    fn budget_follows_request_then_default_then_cap() {
        assert_eq!(
            resolve_budget(ThinkingRequest::Disabled, true, 4000, 10000),
            None
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Default, true, 4000, 10000),
            Some(4000)
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Default, false, 4000, 10000),
            None
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Budget(2048), false, 4000, 10000),
            Some(2048)
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Budget(50000), true, 4000, 10000),
            Some(10000)
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Budget(50000), true, 4000, 0),
            Some(50000)
        );
        assert_eq!(
            resolve_budget(ThinkingRequest::Budget(0), true, 4000, 0),
            None
        );
    }

    #[test]
    fn prefix_carries_budget_and_ends_with_blank_line() {
        let prefix = injection_prefix(1234);
        assert!(prefix.starts_with("<thinking_mode>enabled</thinking_mode>\n"));
        assert!(prefix.contains("<max_thinking_length>1234</max_thinking_length>"));
        assert!(prefix.contains("<thinking_instruction>"));
        assert!(prefix.ends_with("</thinking_instruction>\n\n"));
        assert!(system_prompt_addition().starts_with("# Extended Thinking Mode"));
    }
}
