//! Turns a [`CaptureRecord`] into the JSON lines of a capture file, redacting as it goes: the
//! output of [`render`] is the first form of the capture that holds text, and it holds no secret.

use kiro_layers::capture::CaptureRecord;
use kiro_layers::kiro::eventstream::{Decoder, HeaderValue, Message};
use serde_json::{json, Map, Value};

use super::redact::Redactor;

/// The capture as JSON lines (each ends with `\n`). `extra_secrets` are scrubbed too (the
/// gateway's own key and refresh tokens).
pub fn render(record: &CaptureRecord, extra_secrets: &[String]) -> String {
    let redactor = Redactor::new(
        record
            .secrets
            .iter()
            .chain(extra_secrets)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut lines: Vec<Value> = Vec::new();
    let headers: Map<String, Value> = record
        .request_headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(redactor.text(value))))
        .collect();
    let started = record
        .started_at
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
    lines.push(json!({
        "kind": "request",
        "request_id": redactor.text(&record.request_id),
        "started_at": started,
        "duration_ms": record.duration.as_millis() as u64,
        "method": record.method,
        "path": redactor.text(&record.path),
        "headers": headers,
        "user_id": record.principal.as_ref().and_then(|p| p.user_id.clone()),
        "key_id": record.principal.as_ref().map(|p| p.key_id.clone()),
        "status": record.status,
        "kiro_status": record.kiro_status,
        "failed": record.failed(),
        "truncated": record.truncated,
    }));
    if let Some(body) = &record.client_request {
        lines.push(json!({"kind": "client_request", "body": redactor.body(body)}));
    }
    if let Some(body) = &record.kiro_request {
        lines.push(json!({
            "kind": "kiro_request",
            "url": record.kiro_url.as_deref().map(|u| redactor.text(u)),
            "body": redactor.body(body),
        }));
    }
    upstream_lines(record, &redactor, &mut lines);
    if !record.client_response.is_empty() {
        let sent: Vec<u8> = record.client_response.concat();
        lines.push(json!({
            "kind": "client_response",
            "text": redactor.text(&String::from_utf8_lossy(&sent)),
        }));
    }
    for error in &record.errors {
        lines.push(json!({"kind": "error", "message": redactor.text(error)}));
    }
    let mut out = String::new();
    for line in lines {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// The upstream bytes as one line per event-stream frame; an error answer (not event-stream)
/// as one `upstream_body` line.
fn upstream_lines(record: &CaptureRecord, redactor: &Redactor, lines: &mut Vec<Value>) {
    if record.upstream.is_empty() {
        return;
    }
    if record.kiro_status.is_some_and(|s| s != 200) {
        let body: Vec<u8> = record.upstream.concat();
        lines.push(json!({"kind": "upstream_body", "body": redactor.body(&body)}));
        return;
    }
    let mut decoder = Decoder::new();
    for chunk in &record.upstream {
        decoder.push_bytes(chunk.clone());
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => lines.push(frame_line(&message, redactor)),
                Ok(None) => break,
                Err(error) => {
                    lines.push(
                        json!({"kind": "upstream_frame_error", "message": error.to_string()}),
                    );
                    return;
                }
            }
        }
    }
    if let Err(error) = decoder.finish() {
        lines.push(json!({"kind": "upstream_frame_error", "message": error.to_string()}));
    }
}

fn frame_line(message: &Message, redactor: &Redactor) -> Value {
    let mut headers = Map::new();
    for header in &message.headers {
        let value = match &header.value {
            HeaderValue::String(s) => Value::String(redactor.text(s)),
            HeaderValue::Bool(b) => json!(b),
            HeaderValue::Byte(n) => json!(n),
            HeaderValue::Short(n) => json!(n),
            HeaderValue::Int(n) => json!(n),
            HeaderValue::Long(n) | HeaderValue::Timestamp(n) => json!(n),
            HeaderValue::ByteArray(bytes) => json!(format!("<{} bytes>", bytes.len())),
            HeaderValue::Uuid(bytes) => json!(hex::encode(bytes)),
        };
        headers.insert(header.name.to_string(), value);
    }
    json!({
        "kind": "upstream_frame",
        "event": message.header_str(":event-type")
            .or_else(|| message.header_str(":exception-type"))
            .unwrap_or(""),
        "message_type": message.header_str(":message-type").unwrap_or(""),
        "headers": headers,
        "payload": redactor.body(&message.payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn frames_become_readable_lines_and_secrets_vanish() {
        let wire = Message::event(
            "assistantResponseEvent",
            &br#"{"content":"token SECRET-TOKEN-1 here"}"#[..],
        )
        .encode();
        let (a, b) = wire.split_at(7);
        let record = CaptureRecord {
            request_id: "req_1".into(),
            kiro_status: Some(200),
            kiro_request: Some(Bytes::from_static(
                br#"{"profileArn":"arn:aws:codewhisperer:us-east-1:123456789012:profile/P"}"#,
            )),
            upstream: vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)],
            secrets: vec!["SECRET-TOKEN-1".into()],
            status: Some(200),
            ..CaptureRecord::default()
        };
        let text = render(&record, &[]);
        assert!(!text.contains("SECRET-TOKEN-1"));
        assert!(!text.contains("123456789012"));
        let frames: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["kind"] == "upstream_frame")
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["event"], "assistantResponseEvent");
        assert_eq!(frames[0]["payload"]["content"], "token <redacted> here");
    }
}
