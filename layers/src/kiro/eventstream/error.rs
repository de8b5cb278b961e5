//! Why a byte stream is not a valid sequence of event-stream frames.

use std::fmt;

/// A framing error. Every variant names what broke so the message a user finally sees is
/// actionable; the decoder that returned it is poisoned and keeps returning it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The CRC32 of the first 8 bytes does not match the prelude CRC field.
    PreludeCrcMismatch {
        /// CRC computed over the received bytes.
        expected: u32,
        /// CRC carried by the frame.
        found: u32,
    },
    /// The CRC32 of the whole frame does not match the trailing message CRC field.
    MessageCrcMismatch {
        /// CRC computed over the received bytes.
        expected: u32,
        /// CRC carried by the frame.
        found: u32,
    },
    /// The prelude announces a frame larger than the configured limit.
    FrameTooLarge {
        /// Announced total length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// The prelude announces a frame shorter than prelude + message CRC (16 bytes).
    FrameTooSmall {
        /// Announced total length.
        len: u32,
    },
    /// The headers length does not fit inside the announced frame.
    HeadersLengthDoesNotFit {
        /// Announced headers length.
        headers_len: u32,
        /// Announced total length.
        total_len: u32,
    },
    /// A header carries a value type outside 0..=9.
    BadHeaderValueType {
        /// The type byte.
        value_type: u8,
    },
    /// A header name is not valid UTF-8.
    HeaderNameNotUtf8,
    /// A string header value is not valid UTF-8.
    HeaderStringNotUtf8,
    /// A header (name, type, length or value) runs past the end of the headers section.
    HeaderCutOff {
        /// Which part of the header was cut.
        part: &'static str,
    },
    /// The input ended inside a frame.
    TruncatedAtEnd {
        /// Bytes of the unfinished frame that were received.
        buffered: usize,
        /// The frame's announced length, when its prelude had arrived.
        frame_len: Option<usize>,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::PreludeCrcMismatch { expected, found } => write!(
                f,
                "event-stream prelude CRC mismatch (computed {expected:#010x}, frame says {found:#010x})"
            ),
            FrameError::MessageCrcMismatch { expected, found } => write!(
                f,
                "event-stream message CRC mismatch (computed {expected:#010x}, frame says {found:#010x})"
            ),
            FrameError::FrameTooLarge { len, max } => write!(
                f,
                "event-stream frame of {len} bytes exceeds the limit of {max} bytes"
            ),
            FrameError::FrameTooSmall { len } => write!(
                f,
                "event-stream frame length {len} is below the 16-byte minimum"
            ),
            FrameError::HeadersLengthDoesNotFit {
                headers_len,
                total_len,
            } => write!(
                f,
                "event-stream headers length {headers_len} does not fit in a frame of {total_len} bytes"
            ),
            FrameError::BadHeaderValueType { value_type } => {
                write!(f, "event-stream header has unknown value type {value_type}")
            }
            FrameError::HeaderNameNotUtf8 => f.write_str("event-stream header name is not UTF-8"),
            FrameError::HeaderStringNotUtf8 => {
                f.write_str("event-stream string header value is not UTF-8")
            }
            FrameError::HeaderCutOff { part } => {
                write!(f, "event-stream header {part} runs past the headers section")
            }
            FrameError::TruncatedAtEnd {
                buffered,
                frame_len: Some(len),
            } => write!(
                f,
                "event stream ended inside a frame ({buffered} of {len} bytes received)"
            ),
            FrameError::TruncatedAtEnd {
                buffered,
                frame_len: None,
            } => write!(
                f,
                "event stream ended inside a frame prelude ({buffered} bytes received)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}
