//! The decoders against the one real recorded Cursor stream (legacy `StreamChat`, 42 frames:
//! a gzip prompt frame, an empty frame, 39 one-token text frames, `{}`), fed in every split the
//! network could make, and against hand-encoded frames of the current chat call
//! (cursor-protocol.md §3).

use bytes::Bytes;
use prost::Message as _;

use super::envelope::{end_envelope, EnvelopeDecoder, RawEnvelope, FLAG_COMPRESSED};
use super::events::{ChatDecoder, StreamError};
use super::proto::StreamChatResponse;
use crate::chat::{ChatEvent, StopReason};

/// The real capture's bytes (hex in the file, as published).
pub(crate) fn real_capture() -> Vec<u8> {
    let hex_text = include_str!("../../test_data/cursor/wisdgod-cursor-api.stream_data.txt");
    hex::decode(hex_text.trim()).expect("the capture is hex")
}

/// Splits `bytes` into pieces of `size` (the last one shorter) and decodes them one by one.
fn envelopes_in_pieces(bytes: &[u8], size: usize) -> Vec<RawEnvelope> {
    let mut decoder = EnvelopeDecoder::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(size) {
        decoder.push(piece);
        while let Some(envelope) = decoder.next_envelope().unwrap() {
            out.push(envelope);
        }
    }
    assert!(decoder.ended());
    assert_eq!(decoder.pending(), 0);
    out
}

fn answer_text(envelopes: &[RawEnvelope]) -> String {
    envelopes
        .iter()
        .filter(|e| !e.is_end())
        .map(|e| {
            let payload = e.plain_payload(1 << 20).unwrap();
            StreamChatResponse::decode(payload).unwrap().text
        })
        .collect()
}

#[test]
fn the_real_capture_decodes_the_same_in_every_split() {
    let capture = real_capture();
    assert_eq!(capture.len(), 1598);
    let whole = envelopes_in_pieces(&capture, capture.len());
    assert_eq!(whole.len(), 42);
    assert_eq!(whole[0].flags, FLAG_COMPRESSED);
    let prompt = StreamChatResponse::decode(whole[0].plain_payload(1 << 20).unwrap()).unwrap();
    assert_eq!(whole[0].plain_payload(1 << 20).unwrap().len(), 2408);
    assert!(prompt.filled_prompt.unwrap().contains("<|BEGIN_SYSTEM|>"));
    assert!(whole[1].payload.is_empty(), "a zero-length data frame");
    assert!(whole[2..41]
        .iter()
        .all(|e| e.flags == 0 && !e.payload.is_empty()));
    assert!(whole[41].is_end());
    assert_eq!(whole[41].payload, Bytes::from_static(b"{}"));
    let text = answer_text(&whole);
    assert!(text.starts_with("我是"), "{text}");
    for size in [1, 7] {
        let split = envelopes_in_pieces(&capture, size);
        assert_eq!(split, whole, "pieces of {size} bytes");
    }
    // Re-encoding gives the capture back byte for byte.
    let again: Vec<u8> = whole.iter().flat_map(|e| e.to_bytes()).collect();
    assert_eq!(again, capture);
}

#[test]
fn every_split_point_of_the_real_capture_gives_the_same_envelopes() {
    let capture = real_capture();
    let whole = envelopes_in_pieces(&capture, capture.len());
    for cut in 1..capture.len() {
        let mut decoder = EnvelopeDecoder::default();
        let mut out = Vec::new();
        for part in [&capture[..cut], &capture[cut..]] {
            decoder.push(part);
            while let Some(envelope) = decoder.next_envelope().unwrap() {
                out.push(envelope);
            }
        }
        assert_eq!(out, whole, "cut at {cut}");
    }
}

#[test]
fn the_chat_decoder_skips_the_legacy_frames_unknown_fields_and_ends_cleanly() {
    // Legacy frames put text in field 1, which the current schema reads as a tool call; the
    // chat decoder must not choke on the capture's framing (gzip, empty frame, end `{}`).
    let capture = real_capture();
    let mut events = Vec::new();
    let mut decoder = ChatDecoder::new();
    // The first frame is a legacy prompt frame: fields 4 and 5 are unknown to the current
    // schema and skipped; the empty frame is skipped; the end frame ends the answer.
    let whole = envelopes_in_pieces(&capture, capture.len());
    decoder.decode(&whole[0].to_bytes(), &mut events).unwrap();
    decoder.decode(&whole[1].to_bytes(), &mut events).unwrap();
    assert!(events.is_empty());
    decoder.decode(&whole[41].to_bytes(), &mut events).unwrap();
    assert_eq!(events, [ChatEvent::Stop(StopReason::EndTurn)]);
    decoder.finish().unwrap();
}

/// The frame examples of cursor-protocol.md §3, byte for byte.
const TEXT_HI: &str = "000000000612040a024869";
const THINKING_HMM: &str = "000000000a1208ca01050a03686d6d";
const END_OK: &str = "02000000027b7d";

fn tool_call_frame() -> Vec<u8> {
    let mut hex_text = String::from("000000005c0a5a0813");
    hex_text.push_str("1a06");
    hex_text.push_str(&hex::encode("call_1"));
    hex_text.push_str("4a16");
    hex_text.push_str(&hex::encode("mcp_custom_get_weather"));
    hex_text.push_str("520d");
    hex_text.push_str(&hex::encode(r#"{"city":"SF"}"#));
    hex_text.push_str("da01260a240a0b");
    hex_text.push_str(&hex::encode("get_weather"));
    hex_text.push_str("1a0d");
    hex_text.push_str(&hex::encode(r#"{"city":"SF"}"#));
    hex_text.push_str("2206");
    hex_text.push_str(&hex::encode("custom"));
    hex::decode(hex_text).unwrap()
}

fn decode_in_pieces(bytes: &[u8], size: usize) -> Result<Vec<ChatEvent>, StreamError> {
    let mut decoder = ChatDecoder::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(size) {
        decoder.decode(piece, &mut events)?;
    }
    decoder.finish()?;
    Ok(events)
}

#[test]
fn text_thinking_and_tool_call_frames_become_events_in_any_split() {
    let mut wire = hex::decode(THINKING_HMM).unwrap();
    wire.extend(hex::decode(TEXT_HI).unwrap());
    wire.extend(tool_call_frame());
    wire.extend(hex::decode(END_OK).unwrap());
    let expected = vec![
        ChatEvent::ReasoningDelta("hmm".into()),
        ChatEvent::TextDelta("Hi".into()),
        ChatEvent::ToolUseStart {
            id: "call_1".into(),
            name: "get_weather".into(),
        },
        ChatEvent::ToolUseInput {
            id: "call_1".into(),
            fragment: r#"{"city":"SF"}"#.into(),
        },
        ChatEvent::ToolUseStop {
            id: "call_1".into(),
        },
        ChatEvent::Stop(StopReason::ToolUse),
    ];
    for size in [1, 7, wire.len()] {
        assert_eq!(
            decode_in_pieces(&wire, size).unwrap(),
            expected,
            "pieces of {size}"
        );
    }
}

#[test]
fn a_stream_without_its_end_frame_is_cut_and_an_error_frame_is_an_error() {
    let cut = hex::decode(TEXT_HI).unwrap();
    assert_eq!(decode_in_pieces(&cut, 3), Err(StreamError::Truncated));
    let mut failed = hex::decode(TEXT_HI).unwrap();
    failed.extend_from_slice(&end_envelope(
        br#"{"error":{"code":"resource_exhausted","message":"Error","details":[{"type":"aiserver.v1.ErrorDetails","debug":{"error":"ERROR_PRO_USER_USAGE_LIMIT","details":{"title":"Usage limit"}}}]}}"#,
    ));
    match decode_in_pieces(&failed, 5) {
        Err(StreamError::Cursor(error)) => assert_eq!(error.error, 10),
        other => panic!("expected a Cursor error, got {other:?}"),
    }
}
