//! A small hand-written JSON writer for the streaming hot path.
//!
//! Each SSE chunk is written straight into one pre-sized buffer instead of going through
//! `serde_json::Value`, so a text delta costs one allocation: the outgoing bytes. The output of
//! [`write_str`] is byte-identical to `serde_json`'s, which the tests check on random strings.

use bytes::BufMut;

/// Appends `text` as a JSON string literal, quotes included.
///
/// Escapes `"`, `\` and every control character below U+0020 (`\b \t \n \f \r` by name, the rest
/// as `\u00XX`); everything else, non-ASCII included, is copied as raw UTF-8, exactly as
/// `serde_json` does. Runs of plain bytes are copied in one go.
pub fn write_str<B: BufMut>(out: &mut B, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.put_u8(b'"');
    let mut plain_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let named: u8 = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.put_slice(&bytes[plain_from..at]);
        plain_from = at + 1;
        if named == b'u' {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ]);
        } else {
            out.put_slice(&[b'\\', named]);
        }
    }
    out.put_slice(&bytes[plain_from..]);
    out.put_u8(b'"');
}

/// Appends an unsigned integer in decimal.
pub fn write_u64<B: BufMut>(out: &mut B, value: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// Upper bound of the bytes [`write_str`] needs for `text`, for sizing buffers without a second
/// pass: plain text plus some room for escapes (a buffer grows if the text is escape-heavy).
pub fn str_size_hint(text: &str) -> usize {
    text.len() + text.len() / 8 + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(escaped("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(escaped("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(escaped("\u{0}\u{1f}"), r#""\u0000\u001f""#);
        assert_eq!(escaped("héllo 世界 🎉"), "\"héllo 世界 🎉\"");
        assert_eq!(escaped(""), "\"\"");
    }

    #[test]
    fn writes_integers() {
        for value in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        }
    }

    proptest! {
        #[test]
        fn matches_serde_json_on_any_string(text in any::<String>()) {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn matches_serde_json_on_control_heavy_strings(text in "[\\x00-\\x20\"\\\\a-z\u{7f}\u{2028}é]{0,64}") {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
