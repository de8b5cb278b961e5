//! Turns a script's parts into the chunks hyper writes, with the configured chunking, pauses,
//! cuts and stalls.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};

use super::scenarios::Part;
use super::Chunking;

/// The response body type of the fake.
pub(crate) type FakeBody = UnsyncBoxBody<Bytes, io::Error>;

/// A body of one buffer, written in one piece.
pub(crate) fn full(bytes: Bytes) -> FakeBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What the body writer does next.
#[derive(Debug)]
enum Step {
    Chunk(Bytes),
    /// Encoded when it is due, so its stamp is the time it is written.
    StampedDelta {
        text: String,
        model_id: String,
    },
    Pause(Duration),
    Cut,
    Stall,
}

/// A streaming body that plays `parts`, split by `chunking`. `seed` varies the awkward sizes
/// from one request to the next.
pub(crate) fn streaming(parts: Vec<Part>, chunking: Chunking, seed: u64) -> FakeBody {
    let steps = plan(parts, chunking, seed);
    let chunks = stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Chunk(bytes) => return Some((Ok(Frame::data(bytes)), steps)),
                Step::StampedDelta { text, model_id } => {
                    let frame = super::scenarios::stamped_delta(&text, &model_id);
                    return Some((Ok(Frame::data(frame)), steps));
                }
                Step::Pause(delay) => tokio::time::sleep(delay).await,
                Step::Cut => {
                    let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "fake cut_stream");
                    return Some((Err(cut), steps));
                }
                // Dropping the response (client gone, server shut down) drops this future.
                Step::Stall => std::future::pending::<()>().await,
            }
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

fn plan(parts: Vec<Part>, chunking: Chunking, seed: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut run: Vec<Bytes> = Vec::new();
    let mut sizes = AwkwardSizes::new(seed);
    for part in parts {
        match part {
            Part::Bytes(bytes) => run.push(bytes),
            other => {
                flush_run(&mut run, chunking, &mut sizes, &mut steps);
                steps.push(match other {
                    Part::Pause(delay) => Step::Pause(delay),
                    Part::StampedDelta { text, model_id } => Step::StampedDelta { text, model_id },
                    Part::Cut => Step::Cut,
                    Part::Stall | Part::Bytes(_) => Step::Stall,
                });
            }
        }
    }
    flush_run(&mut run, chunking, &mut sizes, &mut steps);
    steps
}

/// Emits a run of consecutive byte parts as chunks.
fn flush_run(
    run: &mut Vec<Bytes>,
    chunking: Chunking,
    sizes: &mut AwkwardSizes,
    steps: &mut Vec<Step>,
) {
    if run.is_empty() {
        return;
    }
    match chunking {
        Chunking::Whole => steps.extend(run.drain(..).map(Step::Chunk)),
        Chunking::Fixed(size) => {
            let joined = join(run);
            steps.extend(split_at(&joined, |_| size.max(1)).map(Step::Chunk));
        }
        Chunking::Awkward => {
            let joined = join(run);
            let boundaries = awkward_boundaries(&joined, sizes);
            let mut start = 0;
            for end in boundaries {
                steps.push(Step::Chunk(joined.slice(start..end)));
                start = end;
            }
        }
    }
}

fn join(run: &mut Vec<Bytes>) -> Bytes {
    if run.len() == 1 {
        return run.remove(0);
    }
    let joined: Vec<u8> = run.drain(..).flat_map(|b| b.to_vec()).collect();
    Bytes::from(joined)
}

fn split_at(bytes: &Bytes, mut size: impl FnMut(usize) -> usize) -> impl Iterator<Item = Bytes> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + size(start)).min(bytes.len());
        chunks.push(bytes.slice(start..end));
        start = end;
    }
    chunks.into_iter()
}

/// Chunk ends for awkward chunking: small varying sizes (so the first chunk ends inside the
/// 12-byte prelude), plus one cut inside the first multi-byte UTF-8 character of the run so a
/// decoder that converts chunks to text too early is caught.
fn awkward_boundaries(bytes: &Bytes, sizes: &mut AwkwardSizes) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        position = (position + sizes.next_size()).min(bytes.len());
        ends.push(position);
    }
    let multibyte_lead = bytes.iter().position(|&b| b >= 0xC0);
    if let Some(lead) = multibyte_lead {
        let inside = lead + 1;
        if inside < bytes.len() && !ends.contains(&inside) {
            ends.push(inside);
            ends.sort_unstable();
        }
    }
    ends
}

/// A tiny deterministic generator (xorshift) of chunk sizes between 1 and 23 bytes: no need
/// for real randomness, and a failing test replays the same boundaries.
struct AwkwardSizes(u64);

impl AwkwardSizes {
    fn new(seed: u64) -> Self {
        AwkwardSizes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_size(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % 23) as usize + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(steps: &[Step]) -> Vec<Bytes> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Chunk(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_chunking_preserves_the_bytes() {
        let parts = vec![
            Part::Bytes(Bytes::from_static("héllo wörld, 你好 👋".as_bytes())),
            Part::Bytes(Bytes::from_static(b"second frame")),
        ];
        let expected: Vec<u8> = [&b"h\xc3\xa9llo"[..]].concat();
        for chunking in [Chunking::Whole, Chunking::Awkward, Chunking::Fixed(5)] {
            let joined: Vec<u8> = chunks(&plan(parts.clone(), chunking, 7))
                .iter()
                .flat_map(|b| b.to_vec())
                .collect();
            assert!(joined.starts_with(&expected));
            assert_eq!(joined.len(), "héllo wörld, 你好 👋second frame".len());
        }
    }

    #[test]
    fn awkward_chunks_are_small_and_split_a_multibyte_character() {
        let text = "ab\u{00e9}cdefghijklmnopqrstuvwxyz".repeat(4);
        let parts = vec![Part::Bytes(Bytes::from(text))];
        let pieces = chunks(&plan(parts, Chunking::Awkward, 3));
        assert!(pieces.len() > 4);
        assert!(pieces.iter().all(|p| p.len() <= 23));
        // Somewhere a chunk ends right after the 0xC3 lead byte of "é".
        assert!(pieces.iter().any(|p| p.last() == Some(&0xC3)));
    }

    #[test]
    fn whole_keeps_each_part_intact_and_pauses_split_runs() {
        let parts = vec![
            Part::Bytes(Bytes::from_static(b"one")),
            Part::Pause(Duration::from_millis(1)),
            Part::Bytes(Bytes::from_static(b"two")),
            Part::Cut,
        ];
        let steps = plan(parts, Chunking::Whole, 1);
        assert!(matches!(steps[1], Step::Pause(_)));
        assert!(matches!(steps[3], Step::Cut));
        assert_eq!(chunks(&steps), vec!["one", "two"]);
    }

    #[tokio::test]
    async fn a_stamped_delta_carries_the_time_it_was_written_not_planned() {
        let micros = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        };
        let parts = vec![
            Part::Pause(Duration::from_millis(40)),
            Part::StampedDelta {
                text: "d0".into(),
                model_id: "m".into(),
            },
        ];
        let planned = micros();
        let body = streaming(parts, Chunking::Awkward, 1)
            .collect()
            .await
            .unwrap();
        let written = micros();
        let mut decoder = kiro_layers::kiro::eventstream::Decoder::new();
        decoder.push(&body.to_bytes());
        let message = decoder.next_message().unwrap().expect("one whole frame");
        let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let content = payload["content"].as_str().unwrap();
        let stamp: u64 = content
            .strip_prefix("d0@")
            .and_then(|rest| rest.strip_suffix(' '))
            .and_then(|stamp| stamp.parse().ok())
            .unwrap_or_else(|| panic!("{content}"));
        assert!(
            stamp >= planned + 40_000 && stamp <= written,
            "{planned} {stamp} {written}"
        );
        assert_eq!(payload["modelId"], "m");
    }
}
