//! A minimal event-stream reader for the tests (the production decoder lives in kiro-layers):
//! splits a body into frames, checking both CRCs.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn event_type(&self) -> &str {
        self.header(":event-type")
            .or(self.header(":exception-type"))
            .unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Splits a whole body into frames, checking both CRCs; panics on anything malformed and
/// returns the frames plus any incomplete tail.
pub fn decode(body: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while body.len() - at >= 12 {
        let be = |o: usize| u32::from_be_bytes(body[o..o + 4].try_into().unwrap());
        let total = be(at) as usize;
        let headers_len = be(at + 4) as usize;
        assert_eq!(be(at + 8), crc32(&body[at..at + 8]), "prelude CRC");
        if body.len() - at < total {
            break;
        }
        let frame = &body[at..at + total];
        assert_eq!(
            be(at + total - 4),
            crc32(&frame[..total - 4]),
            "message CRC"
        );
        let mut headers = Vec::new();
        let mut h = 12;
        while h < 12 + headers_len {
            let name_len = frame[h] as usize;
            let name = String::from_utf8(frame[h + 1..h + 1 + name_len].to_vec()).unwrap();
            h += 1 + name_len;
            assert_eq!(frame[h], 7, "only string headers");
            let len = u16::from_be_bytes([frame[h + 1], frame[h + 2]]) as usize;
            let value = String::from_utf8(frame[h + 3..h + 3 + len].to_vec()).unwrap();
            h += 3 + len;
            headers.push((name, value));
        }
        frames.push(Frame {
            headers,
            payload: frame[12 + headers_len..total - 4].to_vec(),
        });
        at += total;
    }
    (frames, body.len() - at)
}

pub fn text_of(frames: &[Frame]) -> String {
    frames
        .iter()
        .filter(|f| f.event_type() == "assistantResponseEvent")
        .map(|f| f.json()["content"].as_str().unwrap().to_owned())
        .collect()
}

pub fn event_types(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.event_type().to_owned()).collect()
}

pub fn assert_ends_like_real_stream(frames: &[Frame]) {
    let types = event_types(frames);
    assert_eq!(
        &types[types.len() - 2..],
        ["contextUsageEvent", "meteringEvent"]
    );
    let metering = frames.last().unwrap().json();
    assert_eq!(metering["unit"], "credit");
    assert!(metering["usage"].as_f64().unwrap() > 0.0);
}
