//! Connect streaming envelopes: `[flags u8][length u32 BE][payload]`. Flag bit 0 says the
//! payload is gzip, bit 1 that this is the end-of-stream frame whose payload is JSON
//! ([`super::end_stream`]). Frames never line up with network reads, so [`EnvelopeDecoder`]
//! buffers bytes and hands out whole envelopes; it checks every length before buffering and caps
//! both the frame and its inflated size, so a hostile length or a gzip bomb is an error, not an
//! allocation.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};

/// Flag bit: the payload is gzip.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag bit: the end-of-stream frame (JSON payload).
pub const FLAG_END_STREAM: u8 = 0x02;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;
/// Default cap on one frame, compressed or inflated. Cursor's largest frames (the filled
/// prompt) are a few kB; a tool call with a big argument is well below this.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// One envelope as it travels: flags and the payload still compressed if bit 0 is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEnvelope {
    /// The flag byte.
    pub flags: u8,
    /// The payload as sent.
    pub payload: Bytes,
}

impl RawEnvelope {
    /// True for the end-of-stream frame.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END_STREAM != 0
    }

    /// The payload, inflated when bit 0 says gzip (at most `max` bytes).
    pub fn plain_payload(&self, max: usize) -> Result<Bytes, EnvelopeError> {
        if self.flags & FLAG_COMPRESSED == 0 {
            return Ok(self.payload.clone());
        }
        gunzip(&self.payload, max)
    }

    /// The envelope's bytes on the wire.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&[self.flags]);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.freeze()
    }
}

/// Why a byte stream is not a valid envelope stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// A frame announces more than the cap.
    TooLarge {
        /// The announced (or inflated) length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Flag bits other than 0 and 1 are set.
    UnknownFlags(u8),
    /// The gzip payload does not inflate.
    BadGzip(String),
    /// Bytes after the end-of-stream frame.
    AfterEnd,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::TooLarge { len, max } => {
                write!(
                    f,
                    "a Connect frame of {len} bytes exceeds the {max}-byte limit"
                )
            }
            EnvelopeError::UnknownFlags(flags) => {
                write!(f, "a Connect frame has unknown flags {flags:#04x}")
            }
            EnvelopeError::BadGzip(why) => {
                write!(f, "a gzip Connect frame does not inflate: {why}")
            }
            EnvelopeError::AfterEnd => f.write_str("data follows the end-of-stream frame"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Incremental envelope splitter (see the module docs).
#[derive(Debug)]
pub struct EnvelopeDecoder {
    buffer: BytesMut,
    max_frame: usize,
    ended: bool,
}

impl Default for EnvelopeDecoder {
    fn default() -> Self {
        EnvelopeDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl EnvelopeDecoder {
    /// A decoder refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        EnvelopeDecoder {
            buffer: BytesMut::new(),
            max_frame,
            ended: false,
        }
    }

    /// Appends bytes read from the network.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole envelope, `None` until enough bytes arrived.
    pub fn next_envelope(&mut self) -> Result<Option<RawEnvelope>, EnvelopeError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        if self.ended {
            return Err(EnvelopeError::AfterEnd);
        }
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let flags = self.buffer[0];
        if flags & !(FLAG_COMPRESSED | FLAG_END_STREAM) != 0 {
            return Err(EnvelopeError::UnknownFlags(flags));
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if len > self.max_frame {
            return Err(EnvelopeError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let Some(total) = HEADER_LEN.checked_add(len) else {
            return Err(EnvelopeError::TooLarge {
                len,
                max: self.max_frame,
            });
        };
        if self.buffer.len() < total {
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(HEADER_LEN);
        let payload = self.buffer.split_to(len).freeze();
        if flags & FLAG_END_STREAM != 0 {
            self.ended = true;
        }
        Ok(Some(RawEnvelope { flags, payload }))
    }

    /// True once the end-of-stream frame was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Bytes buffered that do not yet make a whole envelope.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

/// Inflates a gzip payload, refusing more than `max` bytes of output.
pub fn gunzip(payload: &[u8], max: usize) -> Result<Bytes, EnvelopeError> {
    let mut out = Vec::new();
    let limit = (max as u64).saturating_add(1);
    flate2::read::GzDecoder::new(payload)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| EnvelopeError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(EnvelopeError::TooLarge {
            len: out.len(),
            max,
        });
    }
    Ok(Bytes::from(out))
}

/// Compresses a payload with gzip.
pub fn gzip(payload: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(payload);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// One data envelope holding `payload`, gzip-compressed when `compress` is set.
pub fn data_envelope(payload: &[u8], compress: bool) -> Bytes {
    if compress {
        RawEnvelope {
            flags: FLAG_COMPRESSED,
            payload: gzip(payload),
        }
        .to_bytes()
    } else {
        RawEnvelope {
            flags: 0,
            payload: Bytes::copy_from_slice(payload),
        }
        .to_bytes()
    }
}

/// The end-of-stream envelope with `json` as its payload.
pub fn end_envelope(json: &[u8]) -> Bytes {
    RawEnvelope {
        flags: FLAG_END_STREAM,
        payload: Bytes::copy_from_slice(json),
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut EnvelopeDecoder) -> Vec<RawEnvelope> {
        let mut out = Vec::new();
        while let Some(envelope) = decoder.next_envelope().unwrap() {
            out.push(envelope);
        }
        out
    }

    #[test]
    fn round_trips_data_gzip_empty_and_end_frames() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&data_envelope(b"hello", false));
        wire.extend_from_slice(&data_envelope(&[7; 3000], true));
        wire.extend_from_slice(&data_envelope(b"", false));
        wire.extend_from_slice(&end_envelope(b"{}"));
        let mut decoder = EnvelopeDecoder::default();
        decoder.push(&wire);
        let frames = all(&mut decoder);
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].plain_payload(100).unwrap(), &b"hello"[..]);
        assert_eq!(frames[1].flags, FLAG_COMPRESSED);
        assert!(frames[1].payload.len() < 3000);
        assert_eq!(frames[1].plain_payload(4000).unwrap(), vec![7u8; 3000]);
        assert!(frames[2].payload.is_empty());
        assert!(frames[3].is_end());
        assert!(decoder.ended());
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn a_length_over_the_cap_is_refused_before_buffering() {
        let mut decoder = EnvelopeDecoder::new(1024);
        decoder.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decoder.next_envelope(),
            Err(EnvelopeError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
    }

    #[test]
    fn unknown_flags_and_data_after_the_end_are_errors() {
        let mut decoder = EnvelopeDecoder::default();
        decoder.push(&[0x80, 0, 0, 0, 0]);
        assert_eq!(
            decoder.next_envelope(),
            Err(EnvelopeError::UnknownFlags(0x80))
        );
        let mut decoder = EnvelopeDecoder::default();
        decoder.push(&end_envelope(b"{}"));
        decoder.push(&data_envelope(b"x", false));
        assert!(decoder.next_envelope().unwrap().unwrap().is_end());
        assert_eq!(decoder.next_envelope(), Err(EnvelopeError::AfterEnd));
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_cap_and_bad_gzip_is_an_error() {
        let bomb = RawEnvelope {
            flags: FLAG_COMPRESSED,
            payload: gzip(&vec![0u8; 1 << 20]),
        };
        assert!(matches!(
            bomb.plain_payload(4096),
            Err(EnvelopeError::TooLarge { .. })
        ));
        let bad = RawEnvelope {
            flags: FLAG_COMPRESSED,
            payload: Bytes::from_static(b"not gzip"),
        };
        assert!(matches!(
            bad.plain_payload(4096),
            Err(EnvelopeError::BadGzip(_))
        ));
    }
}
