//! AWS event-stream binary framing (the body of every Kiro chat answer).
//!
//! ```text
//! offset  size  field
//! 0       4     total_length   u32 BE, whole message incl. both CRCs
//! 4       4     headers_length u32 BE
//! 8       4     prelude_crc    CRC32 of bytes [0..8)
//! 12      H     headers
//! 12+H    P     payload        P = total_length - H - 16
//! end-4   4     message_crc    CRC32 of bytes [0..total_length-4)
//! ```

use bytes::{BufMut, Bytes, BytesMut};

mod decoder;
mod error;

pub use decoder::{Decoder, RawFrame, DEFAULT_MAX_FRAME_LEN};
pub use error::FrameError;

/// Size of the prelude (two lengths and their CRC).
pub const PRELUDE_LEN: usize = 12;
/// Smallest possible message: prelude plus message CRC.
pub const MIN_MESSAGE_LEN: usize = 16;

/// A header value, one variant per wire type (0..=9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Type 0 (true) or 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6: u16 length + bytes.
    ByteArray(Bytes),
    /// Type 7: u16 length + UTF-8.
    String(bytestring::ByteString),
    /// Type 8: milliseconds since the epoch.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

/// One header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name (at most 255 bytes).
    pub name: bytestring::ByteString,
    /// Header value.
    pub value: HeaderValue,
}

/// One event-stream message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<Header>,
    /// Payload bytes.
    pub payload: Bytes,
}

impl Message {
    /// The value of a string header, if present.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| match &h.value {
            HeaderValue::String(s) if h.name == name => Some(&**s),
            _ => None,
        })
    }

    /// A Kiro-style event frame: `:event-type`, `:content-type`, `:message-type` = `event`,
    /// in the order the real service sends them.
    pub fn event(event_type: &str, payload: impl Into<Bytes>) -> Self {
        Message {
            headers: vec![
                Header::string(":event-type", event_type),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: payload.into(),
        }
    }

    /// A Kiro-style exception frame.
    pub fn exception(exception_type: &str, payload: impl Into<Bytes>) -> Self {
        Message {
            headers: vec![
                Header::string(":exception-type", exception_type),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ],
            payload: payload.into(),
        }
    }

    /// Encodes this message, appending to `out`. Panics never; lengths that cannot be framed
    /// (a header name over 255 bytes, a value over 65535 bytes) are truncated by the caller's
    /// contract: only use this with sane data (tests, the fake upstream).
    pub fn encode_into(&self, out: &mut BytesMut) {
        let start = out.len();
        let headers_len: usize = self.headers.iter().map(Header::encoded_len).sum();
        let total = MIN_MESSAGE_LEN + headers_len + self.payload.len();
        out.reserve(total);
        out.put_u32(total as u32);
        out.put_u32(headers_len as u32);
        let prelude_crc = crc32fast::hash(&out[start..start + 8]);
        out.put_u32(prelude_crc);
        for header in &self.headers {
            header.encode_into(out);
        }
        out.put_slice(&self.payload);
        let message_crc = crc32fast::hash(&out[start..]);
        out.put_u32(message_crc);
    }

    /// Encodes this message into a fresh buffer.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }
}

impl Header {
    /// A string header.
    pub fn string(name: &str, value: &str) -> Self {
        Header {
            name: name.into(),
            value: HeaderValue::String(value.into()),
        }
    }

    fn encoded_len(&self) -> usize {
        1 + self.name.len()
            + 1
            + match &self.value {
                HeaderValue::Bool(_) => 0,
                HeaderValue::Byte(_) => 1,
                HeaderValue::Short(_) => 2,
                HeaderValue::Int(_) => 4,
                HeaderValue::Long(_) | HeaderValue::Timestamp(_) => 8,
                HeaderValue::ByteArray(b) => 2 + b.len(),
                HeaderValue::String(s) => 2 + s.len(),
                HeaderValue::Uuid(_) => 16,
            }
    }

    fn encode_into(&self, out: &mut BytesMut) {
        out.put_u8(self.name.len() as u8);
        out.put_slice(self.name.as_bytes());
        match &self.value {
            HeaderValue::Bool(true) => out.put_u8(0),
            HeaderValue::Bool(false) => out.put_u8(1),
            HeaderValue::Byte(v) => {
                out.put_u8(2);
                out.put_i8(*v);
            }
            HeaderValue::Short(v) => {
                out.put_u8(3);
                out.put_i16(*v);
            }
            HeaderValue::Int(v) => {
                out.put_u8(4);
                out.put_i32(*v);
            }
            HeaderValue::Long(v) => {
                out.put_u8(5);
                out.put_i64(*v);
            }
            HeaderValue::ByteArray(b) => {
                out.put_u8(6);
                out.put_u16(b.len() as u16);
                out.put_slice(b);
            }
            HeaderValue::String(s) => {
                out.put_u8(7);
                out.put_u16(s.len() as u16);
                out.put_slice(s.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                out.put_u8(8);
                out.put_i64(*v);
            }
            HeaderValue::Uuid(u) => {
                out.put_u8(9);
                out.put_slice(u);
            }
        }
    }
}
