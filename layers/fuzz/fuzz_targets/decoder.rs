//! Fuzz target: arbitrary bytes through the event-stream decoder and the event decoder.
//!
//! Random bytes almost never carry valid CRCs, so the fuzzer would only ever exercise the
//! prelude check. The harness first rewrites both CRCs of every frame whose length is plausible,
//! so the header parser, the length arithmetic and the JSON event decoding get exercised too.
#![no_main]

use kiro_layers::kiro::eventstream::Decoder;
use kiro_layers::kiro::events::EventDecoder;
use libfuzzer_sys::fuzz_target;

/// Recomputes the prelude CRC of each frame, and its message CRC when the announced length fits
/// in the input, walking frame by frame.
fn repair_crcs(data: &mut [u8]) {
    let mut start = 0usize;
    while data.len().saturating_sub(start) >= 12 {
        let prelude_crc = crc32fast::hash(&data[start..start + 8]);
        data[start + 8..start + 12].copy_from_slice(&prelude_crc.to_be_bytes());
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[start..start + 4]);
        let total = u32::from_be_bytes(len) as usize;
        let Some(end) = start.checked_add(total) else { return };
        if total < 16 || end > data.len() {
            return;
        }
        let message_crc = crc32fast::hash(&data[start..end - 4]);
        data[end - 4..end].copy_from_slice(&message_crc.to_be_bytes());
        start = end;
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks a chunk size so split points get fuzzed as well.
    let Some((&chunk_seed, rest)) = input.split_first() else { return };
    let chunk = usize::from(chunk_seed).max(1);
    let mut data = rest.to_vec();
    repair_crcs(&mut data);

    let mut frames = Decoder::with_max_frame_len(1 << 20);
    let mut events = EventDecoder::new();
    let mut via_message = EventDecoder::new();
    let (mut out, mut out_message) = (Vec::new(), Vec::new());
    for (index, piece) in data.chunks(chunk).enumerate() {
        // Both ways in: copied, or kept as a chunk (the answer path's zero-copy case).
        if (usize::from(chunk_seed) + index) % 2 == 0 {
            frames.push(piece);
        } else {
            frames.push_bytes(bytes::Bytes::copy_from_slice(piece));
        }
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    // Errors are fine; panics are not. The raw frame and the message built
                    // from it must read the same.
                    let message = frame.to_message();
                    for name in [":message-type", ":event-type", ":exception-type"] {
                        assert_eq!(frame.header_str(name), message.header_str(name));
                    }
                    let raw = events.decode(&frame, &mut out);
                    let built = via_message.decode(&message, &mut out_message);
                    assert_eq!(raw.is_ok(), built.is_ok());
                    assert_eq!(out, out_message);
                    out.clear();
                    out_message.clear();
                }
                Ok(None) => break,
                Err(_) => {
                    // Poisoned decoders must keep failing rather than recover silently.
                    assert!(frames.next_frame().is_err());
                    return;
                }
            }
        }
    }
    let _ = frames.finish();
});
