//! Incremental event-stream decoder.
//!
//! Bytes go in with [`Decoder::push`] (copied) or [`Decoder::push_bytes`] (kept) in chunks of
//! any size; whole frames come out of [`Decoder::next_message`] (headers taken apart) or
//! [`Decoder::next_frame`] (headers checked, looked up on demand: the answer path). The prelude
//! CRC is checked as soon as its 12 bytes are in and the announced length is capped before
//! anything else is buffered, so a corrupt or hostile length can neither make the decoder wait
//! for gigabytes nor allocate them. Payloads and header strings are slices of the received
//! bytes, not copies; a frame that arrives whole inside one pushed chunk is never copied at all.
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
        Ok(self.next_frame()?.map(|frame| frame.to_message()))
    }

    /// The next complete frame with its headers checked but not taken apart: what the answer
    /// path reads (two header lookups per frame) without building a [`Message`].
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, FrameError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        match self.decode_next() {
            Ok(frame) => Ok(frame),
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

    fn decode_next(&mut self) -> Result<Option<RawFrame>, FrameError> {
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

/// Checks one whole frame whose prelude was already validated: its CRC and every header.
fn decode_frame(frame: Bytes) -> Result<RawFrame, FrameError> {
    let body_end = frame.len() - 4;
    let found = (&frame[body_end..]).get_u32();
    let expected = crc32fast::hash(&frame[..body_end]);
    if expected != found {
        return Err(FrameError::MessageCrcMismatch { expected, found });
    }
    let headers_len = (&frame[4..8]).get_u32() as usize;
    let headers_end = PRELUDE_LEN + headers_len;
    if let Some(event) = kiro_event_headers(&frame[PRELUDE_LEN..headers_end]) {
        return Ok(RawFrame {
            headers: frame.slice(PRELUDE_LEN..headers_end),
            payload: frame.slice(headers_end..body_end),
            message_type: Known::Static("event"),
            event_type: Known::Static(event),
        });
    }
    let mut headers = HeaderReader {
        frame: &frame,
        pos: PRELUDE_LEN,
        end: headers_end,
    };
    let mut message_type = Known::Absent;
    let mut event_type = Known::Absent;
    while let Some(raw) = headers.next_raw(true)? {
        if raw.value_type != 7 {
            continue;
        }
        let slot = match raw.name {
            b":message-type" => &mut message_type,
            b":event-type" => &mut event_type,
            _ => continue,
        };
        if *slot == Known::Absent {
            *slot = match well_known(&frame[raw.value.clone()]) {
                Some(text) => Known::Static(text),
                None => Known::At(raw.value.start - PRELUDE_LEN..raw.value.end - PRELUDE_LEN),
            };
        }
    }
    Ok(RawFrame {
        headers: frame.slice(PRELUDE_LEN..headers_end),
        payload: frame.slice(headers_end..body_end),
        message_type,
        event_type,
    })
}

/// The start of a Kiro event frame's headers section, up to the length of its event type.
const KIRO_EVENT_HEAD: &[u8] = b"\x0b:event-type\x07\x00";
/// The rest of it after the event type, byte for byte as Kiro sends it.
const KIRO_EVENT_TAIL: &[u8] =
    b"\x0d:content-type\x07\x00\x10application/json\x0d:message-type\x07\x00\x05event";

/// The event type of a headers section that is exactly Kiro's usual three headers
/// (`:event-type` of a well-known event, `:content-type: application/json`,
/// `:message-type: event`, in that order). Nearly every frame is; recognising it with two
/// comparisons skips the header walk, which would accept it with the same result.
fn kiro_event_headers(section: &[u8]) -> Option<&'static str> {
    let rest = section.strip_prefix(KIRO_EVENT_HEAD)?;
    let (&len, rest) = rest.split_first()?;
    let (event, tail) = rest.split_at_checked(usize::from(len))?;
    if tail != KIRO_EVENT_TAIL {
        return None;
    }
    well_known(event)
}

/// Where the value of a header every frame is asked for is, noted while the frame is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// No string header of that name.
    Absent,
    /// One of the well-known values.
    Static(&'static str),
    /// Another value, at this range of the headers section.
    At(std::ops::Range<usize>),
}

/// One frame: the raw headers section (already checked: every length fits, every type is
/// known, every name and string is UTF-8) and the payload, both slices of the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    headers: Bytes,
    /// Payload bytes.
    pub payload: Bytes,
    message_type: Known,
    event_type: Known,
}

impl RawFrame {
    /// The value of a string header, if present (the first of that name).
    pub fn header_str(&self, name: &str) -> Option<&str> {
        let known = match name {
            ":message-type" => &self.message_type,
            ":event-type" => &self.event_type,
            _ => return self.find_str(name),
        };
        match known {
            Known::Absent => None,
            Known::Static(text) => Some(text),
            Known::At(range) => std::str::from_utf8(&self.headers[range.clone()]).ok(),
        }
    }

    /// A cursor over the (already checked) headers section.
    fn reader(&self) -> HeaderReader<'_> {
        HeaderReader {
            frame: &self.headers,
            pos: 0,
            end: self.headers.len(),
        }
    }

    fn find_str(&self, name: &str) -> Option<&str> {
        let mut reader = self.reader();
        // The section was checked when the frame was decoded: walk it without checking again.
        while let Ok(Some(raw)) = reader.next_raw(false) {
            if raw.value_type == 7 && raw.name == name.as_bytes() {
                return std::str::from_utf8(&self.headers[raw.value]).ok();
            }
        }
        None
    }

    /// The frame as a [`Message`] with its headers taken apart.
    pub fn to_message(&self) -> Message {
        let mut reader = self.reader();
        // Kiro frames carry three headers; avoid regrowing for the common case.
        let mut headers = Vec::with_capacity(3);
        // The section was checked when the frame was decoded, so nothing here can fail.
        while let Ok(Some(raw)) = reader.next_raw(false) {
            headers.push(Header {
                name: string_at(&self.headers, raw.name_range.clone()),
                value: value_of(&self.headers, &raw),
            });
        }
        Message {
            headers,
            payload: self.payload.clone(),
        }
    }
}

/// A header as positions in the section: what [`HeaderReader::next_raw`] yields.
struct RawHeader<'a> {
    name: &'a [u8],
    name_range: std::ops::Range<usize>,
    value_type: u8,
    value: std::ops::Range<usize>,
}

/// A checked UTF-8 range of `section` as a string: a static one for the well-known Kiro
/// strings, else a slice.
fn string_at(section: &Bytes, range: std::ops::Range<usize>) -> ByteString {
    match well_known(&section[range.clone()]) {
        Some(known) => ByteString::from_static(known),
        None => ByteString::try_from(section.slice(range))
            .unwrap_or_else(|_| ByteString::from_static("")),
    }
}

fn value_of(section: &Bytes, raw: &RawHeader<'_>) -> HeaderValue {
    let bytes = &section[raw.value.clone()];
    match raw.value_type {
        0 => HeaderValue::Bool(true),
        1 => HeaderValue::Bool(false),
        2 => HeaderValue::Byte(i8::from_be_bytes(be(bytes))),
        3 => HeaderValue::Short(i16::from_be_bytes(be(bytes))),
        4 => HeaderValue::Int(i32::from_be_bytes(be(bytes))),
        5 => HeaderValue::Long(i64::from_be_bytes(be(bytes))),
        6 => HeaderValue::ByteArray(section.slice(raw.value.clone())),
        7 => HeaderValue::String(string_at(section, raw.value.clone())),
        8 => HeaderValue::Timestamp(i64::from_be_bytes(be(bytes))),
        _ => HeaderValue::Uuid(be(bytes)),
    }
}

/// A fixed-size value (its length was checked with the frame).
fn be<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// UTF-8, checked the cheap way first: header names and values are nearly always ASCII.
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// A cursor over a headers section (`frame[pos..end]`) that never reads past it.
struct HeaderReader<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> HeaderReader<'a> {
    fn take_range(
        &mut self,
        len: usize,
        part: &'static str,
    ) -> Result<std::ops::Range<usize>, FrameError> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.end)
            .ok_or(FrameError::HeaderCutOff { part })?;
        self.pos = end;
        Ok(start..end)
    }

    fn take_u8(&mut self, part: &'static str) -> Result<u8, FrameError> {
        let range = self.take_range(1, part)?;
        Ok(self.frame[range.start])
    }

    fn take_u16(&mut self, part: &'static str) -> Result<u16, FrameError> {
        let range = self.take_range(2, part)?;
        Ok(u16::from_be_bytes([
            self.frame[range.start],
            self.frame[range.start + 1],
        ]))
    }

    /// The next header; `None` at the end of the section. Lengths and types are always
    /// checked; with `check_utf8` names and string values are too.
    fn next_raw(&mut self, check_utf8: bool) -> Result<Option<RawHeader<'a>>, FrameError> {
        const VALUE: &str = "value";
        if self.pos >= self.end {
            return Ok(None);
        }
        let name_len = usize::from(self.take_u8("name length")?);
        let name_range = self.take_range(name_len, "name")?;
        let frame: &'a Bytes = self.frame;
        let name = &frame[name_range.clone()];
        if check_utf8 && !is_utf8(name) {
            return Err(FrameError::HeaderNameNotUtf8);
        }
        let value_type = self.take_u8("value type")?;
        let fixed = match value_type {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            other => return Err(FrameError::BadHeaderValueType { value_type: other }),
        };
        let value = match fixed {
            Some(len) => self.take_range(len, VALUE)?,
            None => {
                let len = usize::from(self.take_u16("value length")?);
                self.take_range(len, VALUE)?
            }
        };
        if check_utf8 && value_type == 7 && !is_utf8(&frame[value.clone()]) {
            return Err(FrameError::HeaderStringNotUtf8);
        }
        Ok(Some(RawHeader {
            name,
            name_range,
            value_type,
            value,
        }))
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
        (11, _) => match bytes.get(2) {
            Some(b'v') => ":event-type",
            _ => ":error-code",
        },
        (12, _) => "toolUseEvent",
        (13, b'c') => ":content-type",
        (13, b'm') => ":message-type",
        (13, b'e') => match bytes.get(4) {
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

    /// The shortcut for Kiro's usual headers gives exactly what the header walk gives, and
    /// anything else (other order, unknown event, an extra header) still takes the walk.
    #[test]
    fn kiro_header_shortcut_agrees_with_the_walk() {
        let usual = Message::event("assistantResponseEvent", &b"{}"[..]);
        let usual_wire = usual.encode();
        let section = &usual_wire[PRELUDE_LEN..usual_wire.len() - 4 - 2];
        assert_eq!(kiro_event_headers(section), Some("assistantResponseEvent"));
        let mut reordered = usual.clone();
        reordered.headers.reverse();
        let mut unknown = Message::event("someNewEvent", &b"{}"[..]);
        unknown.headers.push(Header {
            name: ByteString::from_static("x-extra"),
            value: HeaderValue::Int(1),
        });
        for message in [usual, reordered, unknown] {
            let mut decoder = Decoder::new();
            decoder.push(&message.encode());
            let frame = decoder.next_frame().unwrap().unwrap();
            assert_eq!(frame.to_message(), message);
            for name in [":event-type", ":message-type", ":content-type"] {
                assert_eq!(frame.header_str(name), message.header_str(name), "{name}");
            }
        }
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
