//! Incremental event-stream decoder.
//!
//! Bytes go in with [`Decoder::push`] in chunks of any size; whole frames come out of
//! [`Decoder::next_message`]. The prelude CRC is checked as soon as its 12 bytes are in and the
//! announced length is capped before anything else is buffered, so a corrupt or hostile length
//! can neither make the decoder wait for gigabytes nor allocate them. Payloads and header
//! strings are slices of the receive buffer, not copies.
//!
//! ```
//! use kiro_layers::kiro::eventstream::{Decoder, Message};
//!
//! let wire = Message::event("assistantResponseEvent", &b"{\"content\":\"hi\"}"[..]).encode();
//! let mut decoder = Decoder::new();
//! for byte in wire.chunks(1) {
//!     decoder.push(byte);
//! }
//! let message = decoder.next_message().unwrap().unwrap();
//! assert_eq!(message.header_str(":event-type"), Some("assistantResponseEvent"));
//! assert_eq!(decoder.next_message().unwrap(), None);
//! decoder.finish().unwrap();
//! ```

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::{FrameError, Header, HeaderValue, Message, MIN_MESSAGE_LEN, PRELUDE_LEN};

/// Default cap on one frame: 16 MiB, the same limit other Kiro clients use.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Incremental, zero-copy event-stream decoder. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    /// The unread rest of the last chunk pushed with [`Decoder::push_bytes`] while nothing else
    /// was buffered: whole frames are sliced out of it without copying. Only ever non-empty
    /// while `buffer` is empty.
    chunk: Bytes,
    /// Bytes of a frame that spans chunks, gathered until the frame is whole.
    buffer: BytesMut,
    max_frame_len: usize,
    /// Total length of the frame being received, once its prelude has been validated.
    current_frame_len: Option<usize>,
    /// The first error; returned again on every later call.
    poisoned: Option<FrameError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the default 16 MiB frame cap.
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder that rejects frames longer than `max_frame_len` bytes.
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Decoder {
            chunk: Bytes::new(),
            buffer: BytesMut::new(),
            max_frame_len,
            current_frame_len: None,
            poisoned: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        // A poisoned decoder never reads again; don't let it grow either.
        if self.poisoned.is_none() {
            self.gather_chunk();
            self.buffer.extend_from_slice(data);
        }
    }

    /// Appends a received chunk. When nothing else is buffered the chunk is kept as it is and
    /// the frames inside it are slices of it: the usual case (whole frames per socket read)
    /// copies nothing.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.poisoned.is_none() && self.buffer.is_empty() && self.chunk.is_empty() {
            self.chunk = data;
        } else {
            self.push(&data);
        }
    }

    /// Moves the unread rest of the kept chunk into the gathering buffer.
    fn gather_chunk(&mut self) {
        if !self.chunk.is_empty() {
            self.buffer.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// Bytes received but not yet returned as part of a message.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len() + self.chunk.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        match self.decode_next() {
            Ok(message) => Ok(message),
            Err(error) => {
                self.poisoned = Some(error.clone());
                self.buffer = BytesMut::new();
                self.chunk = Bytes::new();
                Err(error)
            }
        }
    }

    /// Call at the end of input: fails if a partial frame is left (or the decoder is poisoned).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        if self.buffered_len() == 0 {
            Ok(())
        } else {
            Err(FrameError::TruncatedAtEnd {
                buffered: self.buffered_len(),
                frame_len: self.current_frame_len,
            })
        }
    }

    fn decode_next(&mut self) -> Result<Option<Message>, FrameError> {
        if !self.chunk.is_empty() {
            // Only reached with an empty `buffer` (see `push_bytes`).
            if self.chunk.len() >= PRELUDE_LEN {
                let len = check_prelude(&self.chunk, self.max_frame_len)?;
                if self.chunk.len() >= len {
                    return decode_frame(self.chunk.split_to(len)).map(Some);
                }
                self.current_frame_len = Some(len);
                self.buffer.reserve(len);
            }
            // A frame that continues in a later chunk: gather it.
            self.gather_chunk();
        }
        let frame_len = match self.current_frame_len {
            Some(len) => len,
            None => {
                if self.buffer.len() < PRELUDE_LEN {
                    return Ok(None);
                }
                let len = check_prelude(&self.buffer, self.max_frame_len)?;
                self.current_frame_len = Some(len);
                // The length passed the cap: reserve once instead of growing chunk by chunk.
                self.buffer.reserve(len.saturating_sub(self.buffer.len()));
                len
            }
        };
        if self.buffer.len() < frame_len {
            return Ok(None);
        }
        self.current_frame_len = None;
        let frame = self.buffer.split_to(frame_len).freeze();
        decode_frame(frame).map(Some)
    }
}

/// Validates the 12-byte prelude at the head of `bytes` (at least that long) and returns the
/// frame length.
fn check_prelude(bytes: &[u8], max_frame_len: usize) -> Result<usize, FrameError> {
    let mut prelude = &bytes[..PRELUDE_LEN];
    let total_len = prelude.get_u32();
    let headers_len = prelude.get_u32();
    let found = prelude.get_u32();
    let expected = crc32fast::hash(&bytes[..8]);
    if expected != found {
        return Err(FrameError::PreludeCrcMismatch { expected, found });
    }
    let total = usize::try_from(total_len).map_err(|_| FrameError::FrameTooLarge {
        len: total_len,
        max: max_frame_len,
    })?;
    if total < MIN_MESSAGE_LEN {
        return Err(FrameError::FrameTooSmall { len: total_len });
    }
    if total > max_frame_len {
        return Err(FrameError::FrameTooLarge {
            len: total_len,
            max: max_frame_len,
        });
    }
    let fits = usize::try_from(headers_len)
        .ok()
        .and_then(|h| h.checked_add(MIN_MESSAGE_LEN))
        .is_some_and(|needed| needed <= total);
    if !fits {
        return Err(FrameError::HeadersLengthDoesNotFit {
            headers_len,
            total_len,
        });
    }
    Ok(total)
}

/// Decodes one whole frame whose prelude was already validated.
fn decode_frame(frame: Bytes) -> Result<Message, FrameError> {
    let body_end = frame.len() - 4;
    let found = (&frame[body_end..]).get_u32();
    let expected = crc32fast::hash(&frame[..body_end]);
    if expected != found {
        return Err(FrameError::MessageCrcMismatch { expected, found });
    }
    let headers_len = (&frame[4..8]).get_u32() as usize;
    let headers_end = PRELUDE_LEN + headers_len;
    let headers = decode_headers(&frame, PRELUDE_LEN, headers_end)?;
    Ok(Message {
        headers,
        payload: frame.slice(headers_end..body_end),
    })
}

/// A cursor over the headers section (`frame[pos..end]`) that never reads past it. Fixed-size
/// values are read from the slice; only string and byte-array values become `Bytes` slices of
/// the frame (and the well-known Kiro strings not even that: see [`well_known`]).
struct HeaderReader<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
}

impl HeaderReader<'_> {
    fn take_range(&mut self, len: usize, part: &'static str) -> Result<(usize, usize), FrameError> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.end)
            .ok_or(FrameError::HeaderCutOff { part })?;
        self.pos = end;
        Ok((start, end))
    }

    fn take(&mut self, len: usize, part: &'static str) -> Result<Bytes, FrameError> {
        let (start, end) = self.take_range(len, part)?;
        Ok(self.frame.slice(start..end))
    }

    fn take_str(
        &mut self,
        len: usize,
        part: &'static str,
        not_utf8: FrameError,
    ) -> Result<ByteString, FrameError> {
        let (start, end) = self.take_range(len, part)?;
        if let Some(known) = well_known(&self.frame[start..end]) {
            return Ok(ByteString::from_static(known));
        }
        ByteString::try_from(self.frame.slice(start..end)).map_err(|_| not_utf8)
    }

    fn take_array<const N: usize>(&mut self, part: &'static str) -> Result<[u8; N], FrameError> {
        let (start, end) = self.take_range(N, part)?;
        let mut array = [0u8; N];
        array.copy_from_slice(&self.frame[start..end]);
        Ok(array)
    }

    fn take_u8(&mut self, part: &'static str) -> Result<u8, FrameError> {
        Ok(self.take_array::<1>(part)?[0])
    }

    fn take_u16(&mut self, part: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take_array(part)?))
    }

    fn is_done(&self) -> bool {
        self.pos >= self.end
    }
}

/// The header names and values every Kiro frame repeats, as static strings: taking one costs a
/// comparison instead of a reference-counted slice of the frame. The length and one byte pick
/// the only candidate, so each lookup is a single comparison.
fn well_known(bytes: &[u8]) -> Option<&'static str> {
    let second = *bytes.get(1)?;
    let candidate = match (bytes.len(), second) {
        (5, b'v') => "event",
        (5, b'r') => "error",
        (9, _) => "exception",
        (11, b'e') => ":event-type",
        (11, b'r') => ":error-code",
        (12, _) => "toolUseEvent",
        (13, b'c') => ":content-type",
        (13, b'm') => ":message-type",
        (13, b'e') => match bytes.get(5) {
            Some(b'r') => "meteringEvent",
            _ => "metadataEvent",
        },
        (14, _) => ":error-message",
        (15, _) => ":exception-type",
        (16, _) => "application/json",
        (17, _) => "contextUsageEvent",
        (21, _) => "reasoningContentEvent",
        (22, _) => "assistantResponseEvent",
        _ => return None,
    };
    (candidate.as_bytes() == bytes).then_some(candidate)
}

fn decode_headers(frame: &Bytes, start: usize, end: usize) -> Result<Vec<Header>, FrameError> {
    // Kiro frames carry three headers; avoid regrowing for the common case.
    let mut headers = Vec::with_capacity(3);
    let mut reader = HeaderReader {
        frame,
        pos: start,
        end,
    };
    while !reader.is_done() {
        let name_len = usize::from(reader.take_u8("name length")?);
        let name = reader.take_str(name_len, "name", FrameError::HeaderNameNotUtf8)?;
        let value = decode_value(&mut reader)?;
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn decode_value(reader: &mut HeaderReader<'_>) -> Result<HeaderValue, FrameError> {
    const VALUE: &str = "value";
    let value_type = reader.take_u8("value type")?;
    Ok(match value_type {
        0 => HeaderValue::Bool(true),
        1 => HeaderValue::Bool(false),
        2 => HeaderValue::Byte(i8::from_be_bytes(reader.take_array(VALUE)?)),
        3 => HeaderValue::Short(i16::from_be_bytes(reader.take_array(VALUE)?)),
        4 => HeaderValue::Int(i32::from_be_bytes(reader.take_array(VALUE)?)),
        5 => HeaderValue::Long(i64::from_be_bytes(reader.take_array(VALUE)?)),
        6 => {
            let len = usize::from(reader.take_u16("value length")?);
            HeaderValue::ByteArray(reader.take(len, VALUE)?)
        }
        7 => {
            let len = usize::from(reader.take_u16("value length")?);
            HeaderValue::String(reader.take_str(len, VALUE, FrameError::HeaderStringNotUtf8)?)
        }
        8 => HeaderValue::Timestamp(i64::from_be_bytes(reader.take_array(VALUE)?)),
        9 => HeaderValue::Uuid(reader.take_array(VALUE)?),
        other => return Err(FrameError::BadHeaderValueType { value_type: other }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(message: &Message) -> Bytes {
        message.encode()
    }

    #[test]
    fn decodes_two_frames_pushed_at_once() {
        let mut wire = BytesMut::new();
        Message::event("a", &b"one"[..]).encode_into(&mut wire);
        Message::event("b", &b"two"[..]).encode_into(&mut wire);
        let mut decoder = Decoder::new();
        decoder.push(&wire);
        assert_eq!(decoder.next_message().unwrap().unwrap().payload, "one");
        assert_eq!(decoder.next_message().unwrap().unwrap().payload, "two");
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.buffered_len(), 0);
        decoder.finish().unwrap();
    }

    #[test]
    fn corrupt_prelude_is_reported_after_twelve_bytes() {
        let wire = frame(&Message::event("a", &b"payload"[..]));
        let mut corrupt = wire.to_vec();
        corrupt[2] ^= 0x40;
        let mut decoder = Decoder::new();
        decoder.push(&corrupt[..11]);
        assert_eq!(decoder.next_message().unwrap(), None);
        decoder.push(&corrupt[11..12]);
        assert!(matches!(
            decoder.next_message(),
            Err(FrameError::PreludeCrcMismatch { .. })
        ));
    }

    #[test]
    fn error_poisons_the_decoder() {
        let mut prelude = BytesMut::new();
        prelude.put_u32(8);
        prelude.put_u32(0);
        let crc = crc32fast::hash(&prelude);
        prelude.put_u32(crc);
        let mut decoder = Decoder::new();
        decoder.push(&prelude);
        let first = decoder.next_message().unwrap_err();
        assert_eq!(first, FrameError::FrameTooSmall { len: 8 });
        decoder.push(&frame(&Message::event("a", &b"x"[..])));
        assert_eq!(decoder.next_message().unwrap_err(), first);
        assert_eq!(decoder.finish().unwrap_err(), first);
    }

    #[test]
    fn every_well_known_string_is_found_and_near_misses_are_not() {
        for known in [
            ":event-type",
            ":content-type",
            ":message-type",
            ":exception-type",
            ":error-code",
            ":error-message",
            "application/json",
            "event",
            "exception",
            "error",
            "assistantResponseEvent",
            "reasoningContentEvent",
            "toolUseEvent",
            "meteringEvent",
            "contextUsageEvent",
            "metadataEvent",
        ] {
            assert_eq!(well_known(known.as_bytes()), Some(known));
            let mut near = known.as_bytes().to_vec();
            let last = near.len() - 1;
            near[last] ^= 1;
            assert_eq!(well_known(&near), None, "{known}");
        }
        assert_eq!(well_known(b""), None);
        assert_eq!(well_known(b"e"), None);
    }

    #[test]
    fn unknown_header_strings_are_slices_and_known_ones_static() {
        let message = Message {
            headers: vec![
                Header::string(":event-type", "someFutureEvent"),
                Header::string("x-custom", "event"),
            ],
            payload: Bytes::from_static(b"{}"),
        };
        let mut decoder = Decoder::new();
        decoder.push(&frame(&message));
        assert_eq!(decoder.next_message().unwrap().unwrap(), message);
    }

    #[test]
    fn partial_frame_at_end_is_an_error() {
        let wire = frame(&Message::event("a", &b"payload"[..]));
        let mut decoder = Decoder::new();
        decoder.push(&wire[..wire.len() - 1]);
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(
            decoder.finish().unwrap_err(),
            FrameError::TruncatedAtEnd {
                buffered: wire.len() - 1,
                frame_len: Some(wire.len())
            }
        );
    }
}
