//! Anthropic SSE frames written straight into a `BytesMut`, and the JSON string escaper they use.
//!
//! Deltas are the hot path of every streamed answer, so frames are assembled from static pieces and
//! escaped strings instead of building a `serde_json::Value` per delta.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use crate::chat::{ResponseMeta, TokenUsage};

/// The keep-alive frame Anthropic sends while a response is quiet.
pub(crate) const PING_FRAME: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Appends `text` as a JSON string literal (quotes included), escaped exactly as `serde_json`
/// does; the one escaper of the crate lives in [`crate::dialect::json`].
pub fn write_json_string(buf: &mut BytesMut, text: &str) {
    buf.reserve(text.len() + 2);
    crate::dialect::json::write_str(buf, text);
}

fn write_u64(buf: &mut BytesMut, n: u64) {
    // Writing into BytesMut cannot fail.
    let _ = write!(buf, "{n}");
}

fn write_usage(buf: &mut BytesMut, usage: &TokenUsage) {
    buf.put_slice(b"{\"input_tokens\":");
    write_u64(buf, usage.input_tokens);
    buf.put_slice(b",\"cache_creation_input_tokens\":");
    write_u64(buf, usage.cache_write_input_tokens);
    buf.put_slice(b",\"cache_read_input_tokens\":");
    write_u64(buf, usage.cache_read_input_tokens);
    buf.put_slice(b",\"output_tokens\":");
    write_u64(buf, usage.output_tokens);
    buf.put_u8(b'}');
}

/// `message_start`: the empty message shell with the prompt estimate as its input usage.
pub(crate) fn message_start(buf: &mut BytesMut, meta: &ResponseMeta) {
    buf.put_slice(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":");
    write_json_string(buf, &meta.id);
    buf.put_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    write_json_string(buf, &meta.model);
    buf.put_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    write_usage(
        buf,
        &TokenUsage {
            input_tokens: meta.input_tokens_estimate,
            ..TokenUsage::default()
        },
    );
    buf.put_slice(b"}}\n\n");
}

fn block_start_head(buf: &mut BytesMut, index: usize) {
    buf.put_slice(
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
    );
    write_u64(buf, index as u64);
    buf.put_slice(b",\"content_block\":");
}

/// `content_block_start` of a thinking block.
pub(crate) fn thinking_start(buf: &mut BytesMut, index: usize) {
    block_start_head(buf, index);
    buf.put_slice(b"{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n");
}

/// `content_block_start` of a text block.
pub(crate) fn text_start(buf: &mut BytesMut, index: usize) {
    block_start_head(buf, index);
    buf.put_slice(b"{\"type\":\"text\",\"text\":\"\"}}\n\n");
}

/// `content_block_start` of a tool_use block; the input arrives as `input_json_delta`s.
pub(crate) fn tool_use_start(buf: &mut BytesMut, index: usize, id: &str, name: &str) {
    block_start_head(buf, index);
    buf.put_slice(b"{\"type\":\"tool_use\",\"id\":");
    write_json_string(buf, id);
    buf.put_slice(b",\"name\":");
    write_json_string(buf, name);
    buf.put_slice(b",\"input\":{}}}\n\n");
}

/// Which `content_block_delta` to write: the delta type and the name of its string field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeltaKind {
    Thinking,
    Signature,
    Text,
    InputJson,
}

/// `content_block_delta` carrying one string.
pub(crate) fn block_delta(buf: &mut BytesMut, index: usize, kind: DeltaKind, value: &str) {
    buf.put_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    write_u64(buf, index as u64);
    buf.put_slice(match kind {
        DeltaKind::Thinking => b",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":".as_slice(),
        DeltaKind::Signature => b",\"delta\":{\"type\":\"signature_delta\",\"signature\":",
        DeltaKind::Text => b",\"delta\":{\"type\":\"text_delta\",\"text\":",
        DeltaKind::InputJson => b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
    });
    write_json_string(buf, value);
    buf.put_slice(b"}}\n\n");
}

/// `content_block_stop`.
pub(crate) fn block_stop(buf: &mut BytesMut, index: usize) {
    buf.put_slice(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":");
    write_u64(buf, index as u64);
    buf.put_slice(b"}\n\n");
}

/// `message_delta` with the stop reason and the final usage, then `message_stop`.
pub(crate) fn message_end(
    buf: &mut BytesMut,
    stop_reason: &str,
    stop_sequence: Option<&str>,
    usage: &TokenUsage,
) {
    buf.put_slice(
        b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"",
    );
    buf.put_slice(stop_reason.as_bytes());
    buf.put_slice(b"\",\"stop_sequence\":");
    match stop_sequence {
        Some(sequence) => write_json_string(buf, sequence),
        None => buf.put_slice(b"null"),
    }
    buf.put_slice(b"},\"usage\":");
    write_usage(buf, usage);
    buf.put_slice(b"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

/// `error` with an already serialised Anthropic error body.
pub(crate) fn error(buf: &mut BytesMut, body_json: &[u8]) {
    buf.put_slice(b"event: error\ndata: ");
    buf.put_slice(body_json);
    buf.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(text: &str) -> String {
        let mut buf = BytesMut::new();
        write_json_string(&mut buf, text);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(escaped("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }

    proptest! {
        #[test]
        fn escaper_matches_serde_json(text in any::<String>()) {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn escaper_matches_serde_json_on_control_heavy_text(
            text in proptest::collection::vec(
                prop_oneof![Just('"'), Just('\\'), (0u8..0x20).prop_map(char::from), any::<char>()],
                0..40,
            ).prop_map(|chars| chars.into_iter().collect::<String>())
        ) {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
