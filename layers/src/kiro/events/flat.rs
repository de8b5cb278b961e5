//! A fast path for the frames that make up almost every answer: `assistantResponseEvent` and
//! `reasoningContentEvent` payloads are flat JSON objects of strings, such as
//! `{"content":"Hello","modelId":"auto"}`. Reading one string field out of such an object does
//! not need serde's machinery; [`string_field`] scans it directly.
//!
//! The scanner only answers when the payload is exactly such an object; for anything else
//! (nesting, numbers, escaped keys, a repeated key, a lone surrogate, broken JSON) it says
//! [`Scan::Unsure`] and the caller parses with serde as before, so errors and edge cases keep
//! serde's behaviour. A property test checks that both agree wherever the scanner answers.

use std::borrow::Cow;

/// What [`string_field`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Scan<'a> {
    /// A flat object of strings with the field set to this value (borrowed when unescaped).
    Found(Cow<'a, str>),
    /// A flat object of strings without the field.
    Absent,
    /// Not a flat object of strings: parse it the general way.
    Unsure,
}

/// The value of the string field `key` in `json`, if `json` is a flat object whose values are
/// all strings.
pub(crate) fn string_field<'a>(json: &'a str, key: &str) -> Scan<'a> {
    let bytes = json.as_bytes();
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Scan::Unsure;
    }
    at = skip_ws(bytes, at + 1);
    let mut found = None;
    if bytes.get(at) == Some(&b'}') {
        return finish(bytes, at + 1, found);
    }
    loop {
        // Key: a plain string (an escaped key is left to serde).
        let Some((name, after)) = plain_string(json, at) else {
            return Scan::Unsure;
        };
        at = skip_ws(bytes, after);
        if bytes.get(at) != Some(&b':') {
            return Scan::Unsure;
        }
        at = skip_ws(bytes, at + 1);
        let Some((value, after)) = string_value(json, at) else {
            return Scan::Unsure;
        };
        if name == key {
            if found.is_some() {
                return Scan::Unsure; // a repeated field: serde decides what that means
            }
            found = Some(value);
        }
        at = skip_ws(bytes, after);
        match bytes.get(at) {
            Some(b',') => at = skip_ws(bytes, at + 1),
            Some(b'}') => return finish(bytes, at + 1, found),
            _ => return Scan::Unsure,
        }
    }
}

/// The text of a delta in exactly the shape Kiro sends it, `{"content":"…","modelId":"…"}` (or
/// without `modelId`), with both strings free of escapes: a few comparisons instead of a scan.
/// Works on the raw payload; a payload it answers for is valid UTF-8. `None` for anything else,
/// which [`string_field`] then reads.
pub(crate) fn plain_content(bytes: &[u8]) -> Option<&str> {
    const HEAD: &[u8] = b"{\"content\":\"";
    const MODEL: &[u8] = b",\"modelId\":\"";
    if !bytes.starts_with(HEAD) {
        return None;
    }
    let end = next_stop(bytes, HEAD.len())?;
    if bytes[end] != b'"' {
        return None;
    }
    let tail = &bytes[end + 1..];
    let shape_fits = tail == b"}"
        || (tail.starts_with(MODEL) && {
            let model_end = next_stop(bytes, end + 1 + MODEL.len())?;
            bytes[model_end] == b'"' && &bytes[model_end + 1..] == b"}"
        });
    if !shape_fits {
        return None;
    }
    // One check of the whole payload: each call costs about as much as a short string.
    let json = std::str::from_utf8(bytes).ok()?;
    Some(&json[HEAD.len()..end])
}

fn finish<'a>(bytes: &[u8], at: usize, found: Option<Cow<'a, str>>) -> Scan<'a> {
    if skip_ws(bytes, at) != bytes.len() {
        return Scan::Unsure;
    }
    match found {
        Some(value) => Scan::Found(value),
        None => Scan::Absent,
    }
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Bytes that end a run of plain string text: the quote, the backslash and control characters.
const STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stops[b] = true;
        b += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// The index of the first byte at or after `from` that ends plain string text.
fn next_stop(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.iter()
        .position(|&b| STOPS[usize::from(b)])
        .map(|len| from + len)
}

/// A string starting at `at` (its opening quote) without escapes: the text and the index after
/// the closing quote.
fn plain_string(json: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = json.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = next_stop(bytes, start)?;
    (bytes[end] == b'"').then(|| (&json[start..end], end + 1))
}

/// A string starting at `at`, escapes decoded: borrowed when there were none.
fn string_value(json: &str, at: usize) -> Option<(Cow<'_, str>, usize)> {
    if let Some((text, after)) = plain_string(json, at) {
        return Some((Cow::Borrowed(text), after));
    }
    let bytes = json.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut out = String::new();
    let mut i = at + 1;
    loop {
        let stop = next_stop(bytes, i)?;
        out.push_str(&json[i..stop]);
        i = stop;
        match bytes[i] {
            b'"' => return Some((Cow::Owned(out), i + 1)),
            b'\\' => {
                let (c, len) = escape(bytes, i + 1)?;
                out.push(c);
                i += 1 + len;
            }
            _ => return None, // a raw control character: invalid JSON
        }
    }
}

/// The escape after a backslash at `at`: the character and how many bytes it took.
fn escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let c = match bytes.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let high = hex4(bytes, at + 1)?;
            if !(0xD800..0xE000).contains(&high) {
                return Some((char::from_u32(high)?, 5));
            }
            // A surrogate pair, or nothing: lone surrogates are left to serde.
            if high >= 0xDC00 || bytes.get(at + 5..at + 7)? != b"\\u" {
                return None;
            }
            let low = hex4(bytes, at + 7)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(code)?, 11));
        }
        _ => return None,
    };
    Some((c, 1))
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    // from_str_radix accepts a leading `+`; JSON does not.
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    #[test]
    fn reads_the_usual_delta() {
        let json = r#"{"content":"Hello","modelId":"auto"}"#;
        assert_eq!(string_field(json, "content"), Scan::Found("Hello".into()));
        assert!(matches!(
            string_field(json, "content"),
            Scan::Found(Cow::Borrowed(_))
        ));
        assert_eq!(string_field(json, "text"), Scan::Absent);
    }

    #[test]
    fn decodes_escapes() {
        let json = r#"{"content":"a\"b\\c\/\n\t\u00e9\ud83d\ude00"}"#;
        assert_eq!(
            string_field(json, "content"),
            Scan::Found("a\"b\\c/\n\té😀".into())
        );
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for json in [
            r#"{"content":"a","n":1}"#,
            r#"{"content":{"x":"y"}}"#,
            r#"{"content":"a","content":"b"}"#,
            r#"{"con\u0074ent":"a"}"#,
            r#"{"content":"\ud800"}"#,
            r#"{"content":"a"} x"#,
            r#"{"content":"a",}"#,
            r#"["content"]"#,
            "{\"content\":\"a\u{1}\"}",
            r#"{"content":"\x"}"#,
            r#"{"content":"\u+123"}"#,
            r#"{"content""a"}"#,
            r#"{"content":"a""#,
        ] {
            assert_eq!(string_field(json, "content"), Scan::Unsure, "{json}");
        }
    }

    /// What serde makes of the same text: `Some(value)` for a flat object of strings.
    fn serde_reading(json: &str, key: &str) -> Option<Option<String>> {
        let map: Map<String, Value> = serde_json::from_str(json).ok()?;
        if !map.values().all(Value::is_string) {
            return None;
        }
        Some(map.get(key).and_then(Value::as_str).map(str::to_owned))
    }

    fn json_text() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            "[a-z \"\\\\/\\n\\t\u{e9}\u{1F600}\u{1}]{0,12}".prop_map(Value::String),
            any::<i32>().prop_map(Value::from),
        ];
        let object = prop::collection::btree_map("content|modelId|text|x", value, 0..4);
        (object, any::<bool>()).prop_map(|(object, pretty)| {
            let value = Value::Object(object.into_iter().collect());
            if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            }
        })
    }

    #[test]
    fn the_kiro_shape_is_read_directly() {
        assert_eq!(
            plain_content(br#"{"content":"Hi","modelId":"auto"}"#),
            Some("Hi")
        );
        assert_eq!(
            plain_content(br#"{"content":"","modelId":"auto"}"#),
            Some("")
        );
        assert_eq!(plain_content(br#"{"content":"Hi"}"#), Some("Hi"));
        // Not UTF-8 in either string: not this shape (the caller's UTF-8 check reports it).
        assert_eq!(plain_content(b"{\"content\":\"\xff\"}"), None);
        assert_eq!(
            plain_content(b"{\"content\":\"Hi\",\"modelId\":\"\xc3\"}"),
            None
        );
        for other in [
            r#"{"content":"a\nb","modelId":"auto"}"#,
            r#"{"content":"Hi","modelId":"auto"} "#,
            r#"{"content":"Hi","modelId":"a\"b"}"#,
            r#"{"content":"Hi","modelId":"auto","x":"y"}"#,
            r#"{"modelId":"auto","content":"Hi"}"#,
            r#"{"content":"Hi","modelId":1}"#,
            r#"{"content":"Hi""#,
            r#"{"content":"Hi"#,
        ] {
            assert_eq!(plain_content(other.as_bytes()), None, "{other}");
        }
    }

    proptest! {
        #[test]
        fn the_kiro_shape_reads_like_the_scanner(json in json_text()) {
            if let Some(text) = plain_content(json.as_bytes()) {
                prop_assert_eq!(string_field(&json, "content"), Scan::Found(text.into()));
            }
        }

        #[test]
        fn the_kiro_shape_is_read_whenever_it_has_no_escapes(
            content in "[a-z \"\\\\\n\u{e9}]{0,12}",
            model in prop::option::of("[a-z\"]{0,6}"),
        ) {
            let content_json = Value::String(content.clone()).to_string();
            let json = match &model {
                Some(model) => format!(
                    r#"{{"content":{content_json},"modelId":{}}}"#,
                    Value::String(model.clone())
                ),
                None => format!(r#"{{"content":{content_json}}}"#),
            };
            match plain_content(json.as_bytes()) {
                Some(text) => prop_assert_eq!(text, content.as_str()),
                None => prop_assert!(json.contains('\\'), "{}", json),
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_serde_whenever_it_answers(json in json_text()) {
            match string_field(&json, "content") {
                Scan::Unsure => {}
                Scan::Found(value) => prop_assert_eq!(
                    serde_reading(&json, "content"),
                    Some(Some(value.into_owned()))
                ),
                Scan::Absent => prop_assert_eq!(serde_reading(&json, "content"), Some(None)),
            }
        }

        #[test]
        fn answers_for_every_flat_object_of_strings(json in json_text()) {
            if let Some(expected) = serde_reading(&json, "content") {
                let got = match string_field(&json, "content") {
                    Scan::Found(value) => Some(value.into_owned()),
                    Scan::Absent => None,
                    Scan::Unsure => return Err(TestCaseError::fail(format!("unsure about {json}"))),
                };
                prop_assert_eq!(got, expected);
            }
        }

        #[test]
        fn never_panics(json in ".{0,40}") {
            let _ = string_field(&json, "content");
        }
    }
}
