//! JSON logs: every line logged for a request carries its request id (the client's own, when it
//! sends a sane `x-request-id`), including lines logged while the answer streams.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use kiro_gateway::config::LogFormat;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn json_log_lines_of_a_request_carry_its_id() {
    let buffer = Buffer::default();
    let sink = buffer.clone();
    kiro_gateway::logging::init_with_writer("info", LogFormat::Json, move || sink.clone());
    let h = start().await;
    let mut ids = Vec::new();
    for (id, stream, model) in [
        ("client-chosen.id_1", true, "claude-sonnet-4.5"),
        ("client-chosen.id_2", false, "no-such-model"),
    ] {
        let response = h
            .http
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", id)
            .json(&chat(model, "hi", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], id);
        response.text().await.unwrap();
        ids.push(id);
    }
    h.settle(1).await;
    // The access log line is written when the response body is dropped; wait for both.
    let mut lines: Vec<serde_json::Value> = Vec::new();
    for _ in 0..300 {
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        lines = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect();
        let done = lines
            .iter()
            .filter(|l| l["message"] == "request completed")
            .count();
        if done >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for id in ids {
        let of_request: Vec<_> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect();
        assert!(
            of_request
                .iter()
                .any(|l| l["message"] == "request completed"),
            "no access line for {id}: {lines:#?}"
        );
        // Every line that names the request (anywhere) is inside its span.
        for line in lines.iter().filter(|l| l.to_string().contains(id)) {
            assert_eq!(line["span"]["request_id"], id, "{line}");
        }
    }
    let refused = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "client-chosen.id_2" && l["status"] == 404)
        .expect("the 404 is logged with its id");
    assert_eq!(refused["model"], "other");
    h.shutdown().await;
}
