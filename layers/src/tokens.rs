//! Token estimates for `count_tokens` and for usage reporting when Kiro reports no counts.
//!
//! Why a heuristic and not a real tokenizer: Claude's tokenizer is not public, so any BPE table
//! (tiktoken's `cl100k_base`, say) is itself only an approximation of it, and it would add a
//! dependency, a large table in the binary and a load time of about 100 ms. Instead the text is
//! split the way BPE pre-tokenizers split it (letter runs, digit groups, punctuation runs,
//! whitespace) and each piece is priced by its length. On English prose, code and JSON this lands
//! within roughly 10-15 % of `cl100k_base`, it is linear in the input (one pass over the chars, no
//! allocation), and no correction factor is applied on top: the gateway never inflates counts.
//!
//! Images are priced by Anthropic's published rule (`width × height / 750`, after scaling the long
//! edge to at most 1568 px, at most about 1600 tokens), with the size read from the PNG, GIF,
//! JPEG or WebP header; an image whose size cannot be read counts [`IMAGE_TOKENS`].

use base64::Engine as _;

use crate::chat::{ChatRequest, ContentBlock, Image, Message};

/// Flat token cost of an image whose dimensions cannot be read.
pub const IMAGE_TOKENS: u64 = 100;

/// What a character is, for pricing runs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Letters (and `_`, which BPE vocabularies glue into identifiers).
    Letter,
    Digit,
    Punct,
    Space,
    Newline,
    /// Han, kana, Hangul and similar scripts: about one token per character.
    Ideograph,
    /// Emoji and other symbols: at least one token each.
    Symbol,
}

fn classify(c: char) -> Class {
    match c {
        'a'..='z' | 'A'..='Z' | '_' => Class::Letter,
        '0'..='9' => Class::Digit,
        '\n' | '\r' => Class::Newline,
        c if c.is_ascii_whitespace() => Class::Space,
        c if c.is_ascii() => Class::Punct,
        '\u{1100}'..='\u{11FF}'
        | '\u{2E80}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF00}'..='\u{FFEF}'
        | '\u{20000}'..='\u{3FFFF}' => Class::Ideograph,
        c if c.is_alphabetic() => Class::Letter,
        c if c.is_whitespace() => Class::Space,
        _ => Class::Symbol,
    }
}

/// A run of same-class characters being priced.
#[derive(Debug, Default)]
struct Run {
    /// Letter weight (ASCII 1, other scripts 3: they split into far shorter pieces), digit count,
    /// punctuation count or whitespace length.
    weight: u64,
    /// Whitespace only: the run contains a line break.
    newline: bool,
    /// Whitespace only: spaces since the last line break (indentation).
    trailing_spaces: u64,
}

fn run_tokens(class: Class, run: &Run) -> u64 {
    match class {
        // Common words are one token up to about eight letters; longer ones split.
        Class::Letter => 1 + (run.weight - 1) / 8,
        // BPE vocabularies group digits by up to three.
        Class::Digit => run.weight.div_ceil(3),
        // `{"`, `":`, `});` are single tokens; long runs split into a few.
        Class::Punct => 1 + (run.weight - 1) / 3,
        // One space before a word is part of the word's token; longer runs (indentation) and line
        // breaks are tokens of their own.
        Class::Space | Class::Newline => {
            if run.newline {
                1 + u64::from(run.trailing_spaces >= 2)
            } else {
                u64::from(run.weight >= 2)
            }
        }
        Class::Ideograph | Class::Symbol => run.weight,
    }
}

/// Estimates the tokens of a text (see the module docs for the method).
pub fn estimate_text_tokens(text: &str) -> u64 {
    // Every streamed delta is counted, and most are ASCII: price those a byte run at a time.
    if text.is_ascii() {
        estimate_ascii(text.as_bytes())
    } else {
        estimate_chars(text)
    }
}

/// The class of every ASCII byte, as [`classify`] gives it.
const ASCII_CLASSES: [Class; 128] = {
    let mut classes = [Class::Punct; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        classes[b] = if byte.is_ascii_alphabetic() || byte == b'_' {
            Class::Letter
        } else if byte.is_ascii_digit() {
            Class::Digit
        } else if byte == b'\n' || byte == b'\r' {
            Class::Newline
        } else if byte.is_ascii_whitespace() {
            Class::Space
        } else {
            Class::Punct
        };
        b += 1;
    }
    classes
};

/// [`estimate_chars`] for ASCII text, run by run instead of char by char (same result).
fn estimate_ascii(bytes: &[u8]) -> u64 {
    let class_of = |b: u8| ASCII_CLASSES[usize::from(b & 0x7f)];
    let mut total = 0;
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let class = class_of(bytes[at]);
        if matches!(class, Class::Space | Class::Newline) {
            let mut run = Run::default();
            while at < bytes.len() {
                match class_of(bytes[at]) {
                    Class::Newline => {
                        run.newline = true;
                        run.trailing_spaces = 0;
                    }
                    Class::Space => run.trailing_spaces += 1,
                    _ => break,
                }
                at += 1;
            }
            run.weight = (at - start) as u64;
            total += run_tokens(Class::Space, &run);
        } else {
            while at < bytes.len() && class_of(bytes[at]) == class {
                at += 1;
            }
            let run = Run {
                weight: (at - start) as u64,
                ..Run::default()
            };
            total += run_tokens(class, &run);
        }
    }
    total
}

/// The general estimate, one char at a time.
fn estimate_chars(text: &str) -> u64 {
    let mut total = 0;
    let mut current: Option<Class> = None;
    let mut run = Run::default();
    for c in text.chars() {
        let class = match classify(c) {
            // Whitespace of both kinds forms one run.
            Class::Newline => Class::Space,
            other => other,
        };
        let splits = matches!(class, Class::Ideograph | Class::Symbol);
        if current != Some(class) || splits {
            if let Some(previous) = current {
                total += run_tokens(previous, &run);
            }
            current = Some(class);
            run = Run::default();
        }
        match c {
            '\n' | '\r' => {
                run.newline = true;
                run.trailing_spaces = 0;
                run.weight += 1;
            }
            _ if class == Class::Space => {
                run.trailing_spaces += 1;
                run.weight += 1;
            }
            _ if class == Class::Letter && !c.is_ascii() => run.weight += 3,
            _ => run.weight += 1,
        }
    }
    if let Some(previous) = current {
        total += run_tokens(previous, &run);
    }
    total
}

/// Estimates the tokens of one content block: images by their size, tool calls by their name
/// and arguments.
pub fn estimate_block_tokens(block: &ContentBlock) -> u64 {
    match block {
        ContentBlock::Text(text) => estimate_text_tokens(text),
        ContentBlock::Image(image) => estimate_image_tokens(image),
        ContentBlock::ToolUse { name, input, .. } => {
            estimate_text_tokens(name) + estimate_text_tokens(&input.to_string()) + 4
        }
        ContentBlock::ToolResult { content, .. } => {
            content.iter().map(estimate_block_tokens).sum::<u64>() + 4
        }
        ContentBlock::Thinking { text, .. } => estimate_text_tokens(text),
    }
}

/// Estimates the tokens of one conversation turn (its blocks plus a per-turn overhead).
pub fn estimate_message_tokens(message: &Message) -> u64 {
    4 + message
        .content
        .iter()
        .map(estimate_block_tokens)
        .sum::<u64>()
}

/// Estimates the tokens of the system prompt and the tool definitions (everything but the
/// conversation), plus the fixed overhead of a request.
pub fn estimate_fixed_tokens(request: &ChatRequest) -> u64 {
    let system = request.system.as_deref().map_or(0, estimate_text_tokens);
    let tools: u64 = request
        .tools
        .iter()
        .map(|t| {
            estimate_text_tokens(&t.name)
                + estimate_text_tokens(&t.description)
                + estimate_text_tokens(&t.input_schema.to_string())
        })
        .sum();
    system + tools + 3
}

/// Estimates the prompt tokens of a whole request: system, messages, tools. Images count by
/// their size, tool calls their name and arguments.
pub fn estimate_request_tokens(request: &ChatRequest) -> u64 {
    estimate_fixed_tokens(request)
        + request
            .messages
            .iter()
            .map(estimate_message_tokens)
            .sum::<u64>()
}

/// Tokens of one image by Anthropic's rule, or [`IMAGE_TOKENS`] when its size is unreadable.
pub fn estimate_image_tokens(image: &Image) -> u64 {
    const LONG_EDGE: f64 = 1568.0;
    const MAX_TOKENS: f64 = 1600.0;
    let Some((width, height)) = image_size(&image.data) else {
        return IMAGE_TOKENS;
    };
    let (width, height) = (f64::from(width), f64::from(height));
    let scale = (LONG_EDGE / width.max(height)).min(1.0);
    let tokens = (width * scale) * (height * scale) / 750.0;
    tokens.clamp(1.0, MAX_TOKENS).ceil() as u64
}

/// Width and height from the header of a base64 PNG, GIF, JPEG or WebP.
fn image_size(base64_data: &str) -> Option<(u32, u32)> {
    // Enough for every header but a JPEG with a large EXIF block before its frame header.
    const PREFIX_CHARS: usize = 64 * 1024;
    let prefix = base64_data.get(..base64_data.len().min(PREFIX_CHARS) / 4 * 4)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(prefix)
        .ok()?;
    let be16 = |at: usize| {
        Some(u32::from(u16::from_be_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    let le16 = |at: usize| {
        Some(u32::from(u16::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    let le24 = |at: usize| {
        Some(u32::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
            *bytes.get(at + 2)?,
            0,
        ]))
    };
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
        let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
        return nonzero(width, height);
    }
    if bytes.starts_with(b"GIF8") {
        return nonzero(le16(6)?, le16(8)?);
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return match bytes.get(12..16)? {
            b"VP8X" => nonzero(le24(24)? + 1, le24(27)? + 1),
            b"VP8 " => nonzero(le16(26)? & 0x3fff, le16(28)? & 0x3fff),
            b"VP8L" => {
                let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
                nonzero((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1)
            }
            _ => None,
        };
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        // Walk the JPEG segments to the first frame header (SOF0..SOF15 but DHT, JPG, DAC).
        let mut at = 2;
        while at + 4 <= bytes.len() {
            if bytes[at] != 0xff {
                return None;
            }
            let marker = bytes[at + 1];
            if marker == 0xff {
                at += 1;
                continue;
            }
            let length = usize::try_from(be16(at + 2)?).ok()?;
            if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
                return nonzero(be16(at + 7)?, be16(at + 5)?);
            }
            at = at.checked_add(2 + length)?;
        }
    }
    None
}

fn nonzero(width: u32, height: u32) -> Option<(u32, u32)> {
    (width > 0 && height > 0).then_some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_ascii_path_prices_like_the_general_one(text in "[ -~\t\n\r\x0b\x0c\x01]{0,80}") {
            prop_assert_eq!(estimate_ascii(text.as_bytes()), estimate_chars(&text));
        }
    }

    #[test]
    fn prose_counts_about_one_token_per_word() {
        assert_eq!(estimate_text_tokens(""), 0);
        // cl100k_base: 10 tokens.
        assert_eq!(
            estimate_text_tokens("The quick brown fox jumps over the lazy dog."),
            10
        );
        assert_eq!(estimate_text_tokens(&"hello ".repeat(100)), 100);
    }

    #[test]
    fn code_and_json_count_their_punctuation() {
        // Every key, value and piece of punctuation is a token: about 12, not 26 / 4.
        let json = r#"{"name": "value", "x": 1}"#;
        assert!((10..=13).contains(&estimate_text_tokens(json)));
        let code = "fn main() {\n    println!(\"hi\");\n}";
        let estimate = estimate_text_tokens(code);
        assert!((9..=13).contains(&estimate), "{estimate}");
    }

    #[test]
    fn other_scripts_count_more_per_character() {
        assert_eq!(estimate_text_tokens("格格"), 2);
        assert!(estimate_text_tokens("программирование") >= 4);
        assert_eq!(estimate_text_tokens("🙂🙂"), 2);
    }

    #[test]
    fn long_text_is_linear() {
        let paragraph = "Tokens are estimated in one pass over the text, 42 times.\n";
        let one = estimate_text_tokens(paragraph);
        assert_eq!(estimate_text_tokens(&paragraph.repeat(1000)), one * 1000);
    }

    fn png(width: u32, height: u32) -> Image {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
        Image {
            media_type: "image/png".into(),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    #[test]
    fn images_cost_by_their_size() {
        assert_eq!(estimate_image_tokens(&png(200, 150)), 40);
        assert_eq!(estimate_image_tokens(&png(1000, 1000)), 1334);
        // A 4K screenshot is scaled down first and capped.
        assert_eq!(estimate_image_tokens(&png(3840, 2160)), 1600);
        let unreadable = Image {
            media_type: "image/png".into(),
            data: "not base64!".into(),
        };
        assert_eq!(estimate_image_tokens(&unreadable), IMAGE_TOKENS);
    }

    #[test]
    fn jpeg_and_gif_sizes_are_read() {
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x4a, 0x46];
        jpeg.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0x2c, 0x01, 0x90, 0x03]);
        let jpeg = Image {
            media_type: "image/jpeg".into(),
            data: base64::engine::general_purpose::STANDARD.encode(&jpeg),
        };
        // 400 × 300 / 750 = 160.
        assert_eq!(estimate_image_tokens(&jpeg), 160);
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0x90, 0x01, 0x2c, 0x01, 0, 0, 0, 0]);
        let gif = Image {
            media_type: "image/gif".into(),
            data: base64::engine::general_purpose::STANDARD.encode(&gif),
        };
        assert_eq!(estimate_image_tokens(&gif), 160);
    }
}
