//! Codec throughput: the event-stream frame decoder over frames of several payload sizes, fed
//! whole and in chunks, the full frame + event decoding of a real Kiro text capture, and a whole
//! answer body of 100 deltas through `decode_body` with and without joining ready deltas.
//!
//! The Cursor answer decoder gets the same treatment (`cursor_decoder` group).
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiro_layers::kiro::events::EventDecoder;
use kiro_layers::kiro::eventstream::{Decoder, Message};

/// About 256 KiB of Kiro-style text frames, each with a `payload_len`-byte payload.
fn frames(payload_len: usize) -> Vec<u8> {
    let content = "a".repeat(payload_len.saturating_sub(14));
    let payload = format!(r#"{{"content":"{content}"}}"#);
    let message = Message::event("assistantResponseEvent", payload);
    let mut wire = BytesMut::new();
    while wire.len() < 256 * 1024 {
        message.encode_into(&mut wire);
    }
    wire.to_vec()
}

fn decode_all(wire: &[u8], chunk: usize) -> usize {
    let mut decoder = Decoder::new();
    let mut count = 0;
    for piece in wire.chunks(chunk) {
        decoder.push(piece);
        while let Ok(Some(message)) = decoder.next_message() {
            black_box(&message);
            count += 1;
        }
    }
    count
}

fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoder");
    for payload_len in [64, 1024, 16 * 1024] {
        let wire = frames(payload_len);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        for chunk in [wire.len(), 1, 64, 4096] {
            let label = if chunk == wire.len() {
                "whole".to_owned()
            } else {
                format!("chunk{chunk}")
            };
            group.bench_with_input(
                BenchmarkId::new(format!("payload{payload_len}"), label),
                &chunk,
                |b, &chunk| b.iter(|| decode_all(black_box(&wire), chunk)),
            );
        }
    }
    group.finish();
}

fn events(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/layers/test_data/kiro-captures/kiro-cli-q-20260524-t10-text-long-auto.bin"
    );
    let Ok(capture) = std::fs::read(path) else {
        eprintln!("skipping event benchmark: {path} not found");
        return;
    };
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Bytes(capture.len() as u64));
    group.bench_function("text_capture_t10", |b| {
        b.iter(|| {
            let mut frames = Decoder::new();
            let mut events = EventDecoder::new();
            let mut out = Vec::with_capacity(512);
            frames.push(black_box(&capture));
            while let Ok(Some(message)) = frames.next_message() {
                let _ = events.decode(&message, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// One answer of 100 deltas in Kiro's exact shape, received in one read: what the load test's
/// fake sends. Joined, it becomes one event; not joined, 100.
fn body(c: &mut Criterion) {
    use futures_util::StreamExt;
    let mut wire = BytesMut::new();
    for i in 0..100 {
        let payload = format!(r#"{{"content":"token{i} ","modelId":"auto"}}"#);
        Message::event("assistantResponseEvent", payload).encode_into(&mut wire);
    }
    let wire = wire.freeze();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("body_100_deltas");
    group.throughput(Throughput::Elements(100));
    for merge in [true, false] {
        let name = if merge { "joined" } else { "per_frame" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let read = futures_util::stream::iter([Ok::<_, std::io::Error>(wire.clone())]);
                let events = kiro_layers::kiro::events::decode_body(read, merge);
                runtime.block_on(events.count())
            })
        });
    }
    group.finish();
}

/// About 256 KiB of Cursor text frames (`StreamUnifiedChatResponseWithTools`, text at 2 -> 1),
/// each with a `text_len`-byte delta, then the end frame: the same shape as [`frames`] so the
/// two upstreams' decoders compare.
fn cursor_frames(text_len: usize) -> Vec<u8> {
    use kiro_layers::cursor::envelope::{data_envelope, end_envelope};
    use kiro_layers::cursor::proto::{
        stream_unified_chat_response_with_tools::Response, StreamUnifiedChatResponse,
        StreamUnifiedChatResponseWithTools,
    };
    use prost::Message as _;
    let frame = StreamUnifiedChatResponseWithTools {
        response: Some(Response::StreamUnifiedChatResponse(
            StreamUnifiedChatResponse {
                text: "a".repeat(text_len),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
    .encode_to_vec();
    let envelope = data_envelope(&frame, false);
    let mut wire = Vec::new();
    while wire.len() < 256 * 1024 {
        wire.extend_from_slice(&envelope);
    }
    wire.extend_from_slice(&end_envelope(b"{}"));
    wire
}

/// The Cursor answer decoder (envelopes + protobuf + events), next to the Kiro decoder above,
/// and the real recorded Cursor stream through the envelope splitter.
fn cursor(c: &mut Criterion) {
    use kiro_layers::cursor::envelope::EnvelopeDecoder;
    use kiro_layers::cursor::events::ChatDecoder;
    let mut group = c.benchmark_group("cursor_decoder");
    for text_len in [64, 1024, 16 * 1024] {
        let wire = cursor_frames(text_len);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        for chunk in [wire.len(), 64, 4096] {
            let label = if chunk == wire.len() {
                "whole".to_owned()
            } else {
                format!("chunk{chunk}")
            };
            group.bench_with_input(
                BenchmarkId::new(format!("payload{text_len}"), label),
                &chunk,
                |b, &chunk| {
                    b.iter(|| {
                        let mut decoder = ChatDecoder::new();
                        let mut events = Vec::new();
                        for piece in wire.chunks(chunk) {
                            decoder.decode(black_box(piece), &mut events).unwrap();
                            events.clear();
                        }
                        decoder.finish().unwrap();
                    })
                },
            );
        }
    }
    let hex_text = include_str!("../layers/test_data/cursor/wisdgod-cursor-api.stream_data.txt");
    let capture = hex::decode(hex_text.trim()).unwrap();
    group.throughput(Throughput::Bytes(capture.len() as u64));
    group.bench_function("real_capture_envelopes_t10", |b| {
        b.iter(|| {
            let mut decoder = EnvelopeDecoder::default();
            let mut count = 0;
            for piece in capture.chunks(10) {
                decoder.push(black_box(piece));
                while let Ok(Some(envelope)) = decoder.next_envelope() {
                    black_box(envelope.plain_payload(1 << 20).unwrap());
                    count += 1;
                }
            }
            count
        })
    });
    group.finish();
}

criterion_group!(benches, decoder, events, body, cursor);
criterion_main!(benches);
