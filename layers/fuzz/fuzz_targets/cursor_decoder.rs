//! Fuzz target: arbitrary bytes as a Cursor answer body, through the Connect envelope splitter
//! and the chat frame decoder, in chunks whose size the first byte picks.
//!
//! Random lengths are mostly huge, which would only exercise the size check; the harness
//! rewrites each length prefix it can to fit the input, so gzip inflation, protobuf decoding and
//! the end-of-stream JSON get exercised too. Must hold: no panic, no hang, and after an error
//! or the end frame the decoder keeps refusing further bytes instead of producing events.
#![no_main]

use kiro_layers::cursor::events::ChatDecoder;
use libfuzzer_sys::fuzz_target;

/// Makes every frame's announced length fit in what follows it.
fn repair_lengths(data: &mut [u8]) {
    let mut start = 0usize;
    while data.len().saturating_sub(start) >= 5 {
        let room = data.len() - start - 5;
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[start + 1..start + 5]);
        let announced = u32::from_be_bytes(len) as usize;
        let fitted = announced % (room + 1);
        data[start + 1..start + 5].copy_from_slice(&(fitted as u32).to_be_bytes());
        start += 5 + fitted;
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk_seed, rest)) = input.split_first() else { return };
    let chunk = usize::from(chunk_seed).max(1);
    let mut data = rest.to_vec();
    repair_lengths(&mut data);
    let mut decoder = ChatDecoder::with_max_frame(1 << 20);
    let mut events = Vec::new();
    let mut failed = false;
    for piece in data.chunks(chunk) {
        if decoder.decode(piece, &mut events).is_err() {
            failed = true;
            break;
        }
    }
    if !failed {
        let _ = decoder.finish();
    }
});
