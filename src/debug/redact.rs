//! Redaction, applied to every string before it is written: known secret values anywhere, the
//! values of credential-named JSON keys, and the account id inside profile ARNs.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// JSON keys (compared without case, `_` and `-`) whose values are never written.
const SECRET_KEYS: &[&str] = &[
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "token",
    "apikey",
    "xapikey",
    "authorization",
    "proxyauthorization",
    "clientsecret",
    "password",
    "secret",
    "cookie",
];

fn is_secret_key(key: &str) -> bool {
    let normal: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.contains(&normal.as_str())
}

/// Scrubs known secret values and ARN account ids from one string.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Scrubs these values (short ones are ignored: they would mangle ordinary text).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret and ARN account id replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        mask_arn_accounts(&out)
    }

    /// A JSON value with credential-named keys replaced and every string scrubbed.
    pub fn json(&self, value: Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| {
                        let value = if is_secret_key(&key) && !value.is_null() {
                            Value::String(REDACTED.to_owned())
                        } else {
                            self.json(value)
                        };
                        (self.text(&key), value)
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// Bytes as JSON when they parse (redacted structurally), else as scrubbed text.
    pub fn body(&self, bytes: &[u8]) -> Value {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => self.json(value),
            Err(_) => Value::String(self.text(&String::from_utf8_lossy(bytes))),
        }
    }
}

/// `arn:aws:<service>:<region>:123456789012:...` becomes `arn:aws:<service>:<region>:************:...`.
fn mask_arn_accounts(text: &str) -> String {
    if !text.contains("arn:aws") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("arn:aws") {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        // arn : partition : service : region : account : resource
        let parts: Vec<&str> = candidate.splitn(6, ':').collect();
        if parts.len() == 6 && parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())
        {
            let head_len = parts[..4].iter().map(|p| p.len() + 1).sum::<usize>();
            out.push_str(&candidate[..head_len]);
            out.push_str("************");
            rest = &candidate[head_len + 12..];
        } else {
            out.push_str("arn:aws");
            rest = &candidate["arn:aws".len()..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_scrubbed_everywhere() {
        let r = Redactor::new(["sk-live-123456".to_owned(), "ab".to_owned()]);
        assert_eq!(
            r.text("key sk-live-123456 and sk-live-123456!"),
            "key <redacted> and <redacted>!"
        );
        assert_eq!(r.text("ab stays"), "ab stays");
        let value = r.json(json!({
            "accessToken": "tok", "refresh_token": "rt", "nested": [{"x-api-key": "k"}],
            "content": "my key is sk-live-123456", "max_tokens": 5, "token": null
        }));
        assert_eq!(value["accessToken"], REDACTED);
        assert_eq!(value["refresh_token"], REDACTED);
        assert_eq!(value["nested"][0]["x-api-key"], REDACTED);
        assert_eq!(value["content"], "my key is <redacted>");
        assert_eq!(value["max_tokens"], 5);
        assert!(value["token"].is_null());
    }

    #[test]
    fn arn_accounts_are_masked() {
        let r = Redactor::default();
        assert_eq!(
            r.text(r#"{"profileArn":"arn:aws:codewhisperer:us-east-1:123456789012:profile/X"}"#),
            r#"{"profileArn":"arn:aws:codewhisperer:us-east-1:************:profile/X"}"#
        );
        assert_eq!(r.text("arn:aws:nothing"), "arn:aws:nothing");
    }
}
