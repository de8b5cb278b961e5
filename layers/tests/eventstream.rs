//! The event-stream decoder against AWS's published vectors, our own committed vectors, every
//! chunk size, and random messages split at random points.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kiro_layers::kiro::eventstream::{Decoder, FrameError, Header, HeaderValue, Message};
use proptest::prelude::*;

fn vector(dir: &str, name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "test_data",
        "eventstream",
        dir,
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Everything the decoder makes of `data` pushed in one piece, then `finish()`.
fn decode_whole(data: &[u8]) -> Result<Vec<Message>, FrameError> {
    decode_chunked(data, data.len().max(1))
}

fn decode_chunked(data: &[u8], chunk: usize) -> Result<Vec<Message>, FrameError> {
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    for piece in data.chunks(chunk) {
        decoder.push(piece);
        while let Some(message) = decoder.next_message()? {
            messages.push(message);
        }
    }
    decoder.finish()?;
    Ok(messages)
}

fn header(name: &str, value: HeaderValue) -> Header {
    Header {
        name: name.into(),
        value,
    }
}

#[test]
fn crc32_known_answer() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn aws_valid_no_headers() {
    let messages = decode_whole(&vector("aws", "valid_no_headers")).unwrap();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].headers.is_empty());
    assert_eq!(messages[0].payload, "another test payload");
}

#[test]
fn aws_valid_empty_payload() {
    let messages = decode_whole(&vector("aws", "valid_empty_payload")).unwrap();
    assert_eq!(
        messages,
        vec![Message {
            // Type byte 3: a 16-bit short, although the shared README says int32.
            headers: vec![header("some-header", HeaderValue::Short(500))],
            payload: Bytes::new(),
        }]
    );
}

#[test]
fn aws_valid_with_all_headers_and_payload() {
    let messages = decode_whole(&vector("aws", "valid_with_all_headers_and_payload")).unwrap();
    assert_eq!(messages.len(), 1);
    let uuid = [
        0xb7, 0x9b, 0xc9, 0x14, 0xde, 0x21, 0x4e, 0x13, 0xb8, 0xb2, 0xbc, 0x47, 0xe8, 0x5b, 0x7f,
        0x0b,
    ];
    let expected = vec![
        header("true", HeaderValue::Bool(true)),
        header("false", HeaderValue::Bool(false)),
        header("byte", HeaderValue::Byte(50)),
        header("short", HeaderValue::Short(20000)),
        header("int", HeaderValue::Int(500000)),
        header("long", HeaderValue::Long(50_000_000_000)),
        header(
            "bytes",
            HeaderValue::ByteArray(Bytes::from_static(b"some bytes")),
        ),
        header("str", HeaderValue::String("some str".into())),
        header("time", HeaderValue::Timestamp(5_000_000_000)),
        header("uuid", HeaderValue::Uuid(uuid)),
    ];
    assert_eq!(messages[0].headers, expected);
    assert_eq!(messages[0].payload, "some payload");
    // And the encoder writes the same bytes back.
    assert_eq!(
        messages[0].encode(),
        vector("aws", "valid_with_all_headers_and_payload")
    );
}

#[test]
fn aws_checksum_vectors_report_expected_and_found() {
    assert_eq!(
        decode_whole(&vector("aws", "invalid_prelude_checksum")).unwrap_err(),
        FrameError::PreludeCrcMismatch {
            expected: 0x8BB4_95FB,
            found: 0xDEAD_BEEF
        }
    );
    assert_eq!(
        decode_whole(&vector("aws", "invalid_message_checksum")).unwrap_err(),
        FrameError::MessageCrcMismatch {
            expected: 0x01A0_5860,
            found: 0xDEAD_BEEF
        }
    );
}

#[test]
fn aws_invalid_vectors_are_all_rejected() {
    for name in [
        "invalid_header_name_length",
        "invalid_header_name_length_too_long",
        "invalid_header_string_length_cut_off",
        "invalid_header_string_value_length",
        "invalid_header_value_type",
        "invalid_headers_length",
        "invalid_message_checksum",
        "invalid_prelude_checksum",
    ] {
        let data = vector("aws", name);
        for chunk in [1, 7, data.len()] {
            assert!(
                decode_chunked(&data, chunk).is_err(),
                "{name} accepted with {chunk}-byte chunks"
            );
        }
    }
}

#[test]
fn own_valid_vectors() {
    let text = decode_whole(&vector("kiro", "valid_text_event")).unwrap();
    assert_eq!(text.len(), 1);
    assert_eq!(
        text[0].header_str(":event-type"),
        Some("assistantResponseEvent")
    );
    assert_eq!(text[0].header_str(":message-type"), Some("event"));
    assert_eq!(
        text[0].payload,
        r#"{"content":"héllo","modelId":"auto"}"#.as_bytes()
    );

    let two = decode_whole(&vector("kiro", "valid_two_frames")).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[1].payload, r#"{"contextUsagePercentage":2.5}"#);

    let exception = decode_whole(&vector("kiro", "valid_exception_frame")).unwrap();
    assert_eq!(
        exception[0].header_str(":exception-type"),
        Some("ThrottlingException")
    );

    let empty = decode_whole(&vector("kiro", "valid_empty_everything")).unwrap();
    assert_eq!(empty, vec![Message::default()]);
}

/// Whether an error is the one a vector was made to trigger.
type ErrorCheck = fn(&FrameError) -> bool;

#[test]
fn own_invalid_vectors_report_their_kind() {
    let cases: [(&str, ErrorCheck); 12] = [
        ("invalid_prelude_crc", |e| {
            matches!(e, FrameError::PreludeCrcMismatch { .. })
        }),
        ("invalid_message_crc", |e| {
            matches!(e, FrameError::MessageCrcMismatch { .. })
        }),
        ("invalid_frame_too_large_4gib", |e| {
            *e == FrameError::FrameTooLarge {
                len: u32::MAX,
                max: 16 * 1024 * 1024,
            }
        }),
        ("invalid_frame_too_small", |e| {
            *e == FrameError::FrameTooSmall { len: 15 }
        }),
        ("invalid_headers_length_does_not_fit", |e| {
            *e == FrameError::HeadersLengthDoesNotFit {
                headers_len: 5,
                total_len: 20,
            }
        }),
        ("invalid_header_value_type", |e| {
            *e == FrameError::BadHeaderValueType { value_type: 10 }
        }),
        ("invalid_header_name_not_utf8", |e| {
            *e == FrameError::HeaderNameNotUtf8
        }),
        ("invalid_header_string_not_utf8", |e| {
            *e == FrameError::HeaderStringNotUtf8
        }),
        ("invalid_header_name_cut_off", |e| {
            *e == FrameError::HeaderCutOff { part: "name" }
        }),
        ("invalid_header_value_cut_off", |e| {
            *e == FrameError::HeaderCutOff { part: "value" }
        }),
        ("invalid_header_uuid_cut_off", |e| {
            *e == FrameError::HeaderCutOff { part: "value" }
        }),
        ("invalid_truncated_at_end", |e| {
            *e == FrameError::TruncatedAtEnd {
                buffered: 120,
                frame_len: Some(123),
            }
        }),
    ];
    for (name, is_expected) in cases {
        let data = vector("kiro", name);
        for chunk in [1, 5, data.len()] {
            let error = decode_chunked(&data, chunk).unwrap_err();
            assert!(
                is_expected(&error),
                "{name} ({chunk}-byte chunks): {error:?}"
            );
            assert!(!error.to_string().is_empty());
        }
    }
}

#[test]
fn four_gib_length_is_rejected_from_the_prelude_alone() {
    let data = vector("kiro", "invalid_frame_too_large_4gib");
    let mut decoder = Decoder::new();
    decoder.push(&data[..11]);
    assert_eq!(decoder.next_message().unwrap(), None);
    decoder.push(&data[11..12]);
    assert!(matches!(
        decoder.next_message(),
        Err(FrameError::FrameTooLarge { len: u32::MAX, .. })
    ));
    // Poisoned: nothing more is buffered, and the error stays.
    decoder.push(&data[12..]);
    assert_eq!(decoder.buffered_len(), 0);
    assert!(decoder.next_message().is_err());
}

#[test]
fn frame_cap_is_configurable() {
    let wire = Message::event("x", vec![0u8; 100]).encode();
    let mut decoder = Decoder::with_max_frame_len(64);
    decoder.push(&wire[..12]);
    assert!(matches!(
        decoder.next_message(),
        Err(FrameError::FrameTooLarge { max: 64, .. })
    ));
}

/// A stream of every valid vector plus a few Kiro-style frames.
fn concatenated_frames() -> (Vec<u8>, usize) {
    let mut wire = BytesMut::new();
    let mut count = 0;
    for name in [
        "valid_no_headers",
        "valid_empty_payload",
        "valid_with_all_headers_and_payload",
    ] {
        wire.extend_from_slice(&vector("aws", name));
        count += 1;
    }
    for name in [
        "valid_text_event",
        "valid_two_frames",
        "valid_exception_frame",
    ] {
        wire.extend_from_slice(&vector("kiro", name));
    }
    count += 4;
    Message::event("assistantResponseEvent", &br#"{"content":"end"}"#[..]).encode_into(&mut wire);
    count += 1;
    (wire.to_vec(), count)
}

#[test]
fn every_chunk_size_gives_the_same_messages() {
    let (wire, count) = concatenated_frames();
    let reference = decode_whole(&wire).unwrap();
    assert_eq!(reference.len(), count);
    for chunk in 1..=wire.len() {
        assert_eq!(
            decode_chunked(&wire, chunk).unwrap(),
            reference,
            "chunk size {chunk}"
        );
    }
}

#[test]
fn push_bytes_matches_push_at_every_chunk_size() {
    let (wire, count) = concatenated_frames();
    let reference = decode_whole(&wire).unwrap();
    assert_eq!(reference.len(), count);
    for chunk in 1..=wire.len() {
        let mut decoder = Decoder::new();
        let mut messages = Vec::new();
        // Alternate the two ways in, so a kept chunk meets copied bytes and the other way round.
        for (index, piece) in wire.chunks(chunk).enumerate() {
            if index % 3 == 1 {
                decoder.push(piece);
            } else {
                decoder.push_bytes(Bytes::copy_from_slice(piece));
            }
            while let Some(message) = decoder.next_message().unwrap() {
                messages.push(message);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(messages, reference, "chunk size {chunk}");
    }
}

#[test]
fn whole_frames_pushed_as_bytes_are_not_copied() {
    let (wire, count) = concatenated_frames();
    let wire = Bytes::from(wire);
    let mut decoder = Decoder::new();
    decoder.push_bytes(wire.clone());
    let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    let mut seen = 0;
    while let Some(message) = decoder.next_message().unwrap() {
        if !message.payload.is_empty() {
            assert!(range.contains(&(message.payload.as_ptr() as usize)));
        }
        seen += 1;
    }
    assert_eq!(seen, count);
    decoder.finish().unwrap();
}

#[test]
fn a_truncated_kept_chunk_is_reported_at_the_end() {
    let wire = Message::event("assistantResponseEvent", &b"{\"content\":\"hi\"}"[..]).encode();
    let mut decoder = Decoder::new();
    decoder.push_bytes(wire.slice(..wire.len() - 1));
    assert_eq!(decoder.next_message().unwrap(), None);
    assert_eq!(decoder.buffered_len(), wire.len() - 1);
    assert!(matches!(
        decoder.finish(),
        Err(FrameError::TruncatedAtEnd { frame_len: Some(len), .. }) if len == wire.len()
    ));
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::Byte),
        any::<i16>().prop_map(HeaderValue::Short),
        any::<i32>().prop_map(HeaderValue::Int),
        any::<i64>().prop_map(HeaderValue::Long),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| HeaderValue::ByteArray(b.into())),
        ".{0,40}".prop_map(|s| HeaderValue::String(s.as_str().into())),
        any::<i64>().prop_map(HeaderValue::Timestamp),
        any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
    ]
}

/// Any name, and often one of the names the decoder knows by heart.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{1,30}",
        prop::sample::select(vec![
            ":event-type",
            ":content-type",
            ":message-type",
            "event"
        ])
        .prop_map(str::to_owned),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let headers = prop::collection::vec(
        (header_name(), header_value()).prop_map(|(name, value)| Header {
            name: name.as_str().into(),
            value,
        }),
        0..6,
    );
    let payload = prop::collection::vec(any::<u8>(), 0..300);
    (headers, payload).prop_map(|(headers, payload)| Message {
        headers,
        payload: payload.into(),
    })
}

proptest! {
    #[test]
    fn round_trip_with_random_splits(
        messages in prop::collection::vec(message(), 1..5),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        as_bytes in any::<u16>(),
    ) {
        let mut wire = BytesMut::new();
        for message in &messages {
            message.encode_into(&mut wire);
        }
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for (index, pair) in cuts.windows(2).enumerate() {
            // Each piece goes in by copy or as a kept chunk, as `as_bytes` says.
            if as_bytes & (1 << (index % 16)) != 0 {
                decoder.push_bytes(Bytes::copy_from_slice(&wire[pair[0]..pair[1]]));
            } else {
                decoder.push(&wire[pair[0]..pair[1]]);
            }
            while let Some(message) = decoder.next_message().unwrap() {
                decoded.push(message);
            }
        }
        decoder.finish().unwrap();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn raw_frames_answer_header_lookups_like_messages(message in message()) {
        let mut decoder = Decoder::new();
        decoder.push_bytes(message.encode());
        let raw = decoder.next_frame().unwrap().unwrap();
        prop_assert_eq!(&raw.payload, &message.payload);
        prop_assert_eq!(raw.to_message(), message.clone());
        for name in message.headers.iter().map(|h| h.name.to_string()).chain([":event-type".to_owned()]) {
            prop_assert_eq!(raw.header_str(&name), message.header_str(&name));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), chunk in 1usize..20) {
        let _ = decode_chunked(&data, chunk);
    }
}
