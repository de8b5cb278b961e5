//! Context compression of a ~200k-token agent conversation down to a 68k target (levels 1–3),
//! and the cheap path: a request that already fits.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;

use kiro_layers::chat::{ChatRequest, ContentBlock, Dialect, Message, Role, Tool};
use kiro_layers::compress::{compress, Budget, CompressConfig};
use kiro_layers::tokens::estimate_request_tokens;

const MODEL: &str = "claude-sonnet-4.5";

fn prose(seed: usize, words: usize) -> String {
    const WORDS: [&str; 8] = [
        "gateway", "stream", "tool", "result", "context", "window", "answer", "frame",
    ];
    (0..words)
        .map(|i| WORDS[(i * 7 + seed) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn conversation(rounds: usize, size: usize) -> ChatRequest {
    let mut request = ChatRequest::user_text(Dialect::Anthropic, MODEL, "Build the project.");
    request.system = Some("You are a careful coding agent.".into());
    request.tools = vec![Tool {
        name: "write_file".into(),
        description: "Writes a file".into(),
        input_schema: json!({"type":"object","properties":{"content":{"type":"string"}}}),
    }];
    for round in 0..rounds {
        let id = format!("toolu_{round:04}");
        request.messages.push(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Thinking {
                    text: prose(round, size / 4),
                    signature: None,
                },
                ContentBlock::Text(prose(round + 1, size / 4)),
                ContentBlock::ToolUse {
                    id: id.clone(),
                    name: "write_file".into(),
                    input: json!({"content": prose(round + 2, size)}),
                },
            ],
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id,
                content: vec![ContentBlock::Text(prose(round + 3, size))],
                is_error: false,
            }],
        });
    }
    request
}

fn bench(c: &mut Criterion) {
    let big = conversation(80, 1_000);
    eprintln!("fixture: {} tokens", estimate_request_tokens(&big));
    let config = CompressConfig::default();
    let target = Budget {
        max_tokens: 68_000,
        max_bytes: 584_000,
    };
    c.bench_function("compress_200k_to_68k", |b| {
        b.iter_batched(
            || big.clone(),
            |mut request| black_box(compress(&mut request, &target, &config, MODEL)),
            BatchSize::LargeInput,
        )
    });
    let small = conversation(4, 300);
    c.bench_function("compress_fits_already", |b| {
        b.iter_batched(
            || small.clone(),
            |mut request| black_box(compress(&mut request, &target, &config, MODEL)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
