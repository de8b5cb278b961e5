//! The `<thinking>` parser against arbitrary splits of arbitrary answers.

use futures_util::{stream, StreamExt};
use kiro_layers::chat::{ChatEvent, EventStream, StopReason};
use kiro_layers::thinking::{thinking_stream, ThinkingHandling, ThinkingParser};
use kiro_layers::GatewayError;
use proptest::prelude::*;

const MODES: [ThinkingHandling; 4] = [
    ThinkingHandling::AsReasoningContent,
    ThinkingHandling::Remove,
    ThinkingHandling::Pass,
    ThinkingHandling::StripTags,
];

/// Runs the parser over `deltas`; returns (reasoning, text) concatenated.
fn run(handling: ThinkingHandling, deltas: &[&str]) -> (String, String) {
    let mut parser = ThinkingParser::new(handling, 20);
    let mut out = Vec::new();
    for delta in deltas {
        parser.push(delta, &mut out);
    }
    parser.finish(&mut out);
    concat(out)
}

fn concat(events: Vec<ChatEvent>) -> (String, String) {
    let mut thinking = String::new();
    let mut text = String::new();
    for event in events {
        match event {
            ChatEvent::ReasoningDelta(t) => {
                assert!(!t.is_empty(), "empty reasoning delta");
                thinking.push_str(&t)
            }
            ChatEvent::TextDelta(t) => {
                assert!(!t.is_empty(), "empty text delta");
                text.push_str(&t)
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    (thinking, text)
}

/// Cuts `text` at the given char positions.
fn split_at_chars<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let mut points: Vec<usize> = cuts
        .iter()
        .filter_map(|&c| boundaries.get(c % boundaries.len().max(1)).copied())
        .collect();
    points.push(0);
    points.push(text.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Answers made of the pieces that matter to the parser.
fn answer() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<thinking>".to_owned()),
        Just("</thinking>".to_owned()),
        Just("<think>".to_owned()),
        Just("</think>".to_owned()),
        Just("<reasoning>".to_owned()),
        Just("</reasoning>".to_owned()),
        Just("<thought>".to_owned()),
        Just("</thought>".to_owned()),
        Just("</thi".to_owned()),
        Just("<".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("é漢".to_owned()),
        "[a-z .]{0,8}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_reasoning_and_text(
        input in answer(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let deltas = split_at_chars(&input, &cuts);
        for mode in MODES {
            prop_assert_eq!(run(mode, &deltas), run(mode, &[input.as_str()]), "mode {:?}", mode);
        }
    }

    #[test]
    fn pass_mode_returns_the_answer_untouched(
        input in answer(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let deltas = split_at_chars(&input, &cuts);
        prop_assert_eq!(run(ThinkingHandling::Pass, &deltas), (String::new(), input));
    }

    #[test]
    fn a_closed_block_splits_into_exactly_its_parts(
        whitespace in "[ \n]{0,5}",
        tag in prop::sample::select(vec!["thinking", "think", "reasoning", "thought"]),
        reasoning in "[a-z <>/.]{1,40}",
        answer in "[a-z <>/.\n]{0,40}",
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let close = format!("</{tag}>");
        prop_assume!(!reasoning.contains(&close) && !reasoning.starts_with('\n'));
        let input = format!("{whitespace}<{tag}>\n{reasoning}{close}\n\n{answer}");
        let deltas = split_at_chars(&input, &cuts);
        let visible_answer = answer.trim_start_matches('\n').to_owned();
        prop_assert_eq!(
            run(ThinkingHandling::AsReasoningContent, &deltas),
            (reasoning.clone(), visible_answer.clone())
        );
        prop_assert_eq!(
            run(ThinkingHandling::Remove, &deltas),
            (String::new(), visible_answer.clone())
        );
        prop_assert_eq!(
            run(ThinkingHandling::StripTags, &deltas),
            (String::new(), format!("{reasoning}\n\n{visible_answer}"))
        );
    }

    #[test]
    fn an_unclosed_block_loses_nothing(
        reasoning in "[a-z <>/.]{0,60}",
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assume!(!reasoning.contains("</thinking>"));
        let input = format!("<thinking>{reasoning}");
        let (thinking, text) = run(ThinkingHandling::AsReasoningContent, &split_at_chars(&input, &cuts));
        prop_assert_eq!(format!("{thinking}{text}"), reasoning);
        // Only a possible start of the closing tag is ever held back, and it ends up as text.
        prop_assert!("</thinking>".starts_with(text.as_str()) && text.len() < "</thinking>".len());
    }
}

#[test]
fn text_before_a_tag_is_all_content() {
    for mode in MODES {
        let input = "Hello <thinking>x</thinking>";
        assert_eq!(
            run(mode, &["Hel", "lo <thi", "nking>x</thinking>"]),
            (String::new(), input.into())
        );
    }
}

#[tokio::test]
async fn stream_keeps_event_order_and_flushes_before_stop() {
    let events: Vec<Result<ChatEvent, GatewayError>> = vec![
        Ok(ChatEvent::TextDelta("<thinking>a".into())),
        Ok(ChatEvent::ContextUsage { percent: 1.0 }),
        Ok(ChatEvent::TextDelta("b</think".into())),
        Ok(ChatEvent::TextDelta("ing>\nanswer".into())),
        Ok(ChatEvent::Stop(StopReason::EndTurn)),
    ];
    let stream: EventStream = Box::pin(stream::iter(events));
    let out: Vec<ChatEvent> = thinking_stream(stream, ThinkingHandling::AsReasoningContent)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(
        out,
        vec![
            ChatEvent::ReasoningDelta("a".into()),
            ChatEvent::ContextUsage { percent: 1.0 },
            ChatEvent::ReasoningDelta("b".into()),
            ChatEvent::TextDelta("answer".into()),
            ChatEvent::Stop(StopReason::EndTurn),
        ]
    );
}

#[tokio::test]
async fn stream_flushes_held_text_before_an_error() {
    let events: Vec<Result<ChatEvent, GatewayError>> = vec![
        Ok(ChatEvent::TextDelta("<thinking>plan</thi".into())),
        Err(GatewayError::upstream_stream("connection reset")),
    ];
    let stream: EventStream = Box::pin(stream::iter(events));
    let out: Vec<_> = thinking_stream(stream, ThinkingHandling::AsReasoningContent)
        .collect()
        .await;
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].as_ref().unwrap(),
        &ChatEvent::ReasoningDelta("plan".into())
    );
    assert_eq!(
        out[1].as_ref().unwrap(),
        &ChatEvent::TextDelta("</thi".into())
    );
    assert!(out[2].is_err());
}
