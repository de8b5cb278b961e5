//! Debug capture end to end: each `DEBUG_MODE` writes exactly the requests it promises, each
//! capture holds every boundary of the request, and no secret reaches the disk.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use kiro_gateway::fake_kiro::FakeKiroConfig;
use serde_json::Value;

/// The user message carries the client's own key (and the echo sends it back in pieces): it must
/// not reach the disk anywhere.
const OK_PROMPT: &str = "[fake:echo] please remember e2e-test-key for me";
const FAILING_PROMPT: &str = "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD] too long";

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("kiro-debug-{}", uuid::Uuid::new_v4().simple()))
}

struct Run {
    dir: PathBuf,
    files: Vec<Vec<Value>>,
    secrets: Vec<String>,
    kept: u64,
}

/// Serves one good streamed request and one failing request in `mode`, waits until the writer
/// has seen both and written what it kept, and reads the captures back.
async fn run(mode: &str) -> Run {
    let dir = temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let h = start_with(
        FakeKiroConfig::default(),
        &["--debug-mode", mode, "--debug-dir", &dir_arg],
    )
    .await;
    let ok = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", OK_PROMPT, true),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(body.contains("[DONE]"));
    let failed = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", FAILING_PROMPT, false),
        )
        .await;
    assert_eq!(failed.status(), 400);
    let _ = failed.text().await;

    let writer = h.gateway.debug.clone().expect("debug mode is on");
    for _ in 0..500 {
        if writer.seen() >= 2 && writer.written() == writer.kept() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(writer.seen(), 2, "both requests reach the writer");
    assert_eq!(writer.written(), writer.kept());
    assert_eq!(writer.dropped(), 0);
    let access_token = h.gateway.credentials[0]
        .current()
        .await
        .unwrap()
        .access_token;
    let refresh_token = h.fake().current_refresh_token();
    let files = read_captures(&dir);
    let kept = writer.kept();
    h.shutdown().await;
    Run {
        dir,
        files,
        secrets: vec![KEY.to_owned(), access_token, refresh_token],
        kept,
    }
}

fn read_captures(dir: &Path) -> Vec<Vec<Value>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .iter()
        .map(|path| {
            assert_eq!(
                path.extension().unwrap(),
                "jsonl",
                "only captures in {path:?}"
            );
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is JSON"))
                .collect()
        })
        .collect()
}

/// No byte of any file under `dir` holds a secret.
fn assert_no_secret(run: &Run) {
    for entry in std::fs::read_dir(&run.dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in &run.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{path:?} holds a secret ({} chars)",
                secret.len()
            );
        }
        assert!(!text.contains("123456789012"), "ARN account id in {path:?}");
    }
}

fn kinds(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["kind"].as_str().unwrap()).collect()
}

fn is_failed(lines: &[Value]) -> bool {
    lines[0]["failed"] == true
}

#[tokio::test]
async fn mode_all_captures_every_boundary_of_every_request() {
    let run = run("all").await;
    assert_eq!(run.kept, 2);
    assert_eq!(run.files.len(), 2);
    assert_no_secret(&run);
    let ok = run
        .files
        .iter()
        .find(|f| !is_failed(f))
        .expect("the good one");
    let kinds_ok = kinds(ok);
    assert_eq!(kinds_ok[0], "request");
    for kind in [
        "client_request",
        "kiro_request",
        "upstream_frame",
        "client_response",
    ] {
        assert!(kinds_ok.contains(&kind), "{kind} missing: {kinds_ok:?}");
    }
    assert!(!kinds_ok.contains(&"error"));
    let request = &ok[0];
    assert_eq!(request["status"], 200);
    assert_eq!(request["key_id"], "proxy-api-key");
    assert_eq!(request["headers"]["authorization"], "<redacted>");
    let client = ok.iter().find(|l| l["kind"] == "client_request").unwrap();
    assert_eq!(client["body"]["model"], "claude-sonnet-4.5");
    let prompt = client["body"]["messages"][0]["content"].as_str().unwrap();
    assert_eq!(prompt, "[fake:echo] please remember <redacted> for me");
    let kiro = ok.iter().find(|l| l["kind"] == "kiro_request").unwrap();
    assert!(kiro["body"]["conversationState"].is_object(), "{kiro}");
    let frames: Vec<&Value> = ok
        .iter()
        .filter(|l| l["kind"] == "upstream_frame")
        .collect();
    assert!(frames
        .iter()
        .any(|f| f["event"] == "assistantResponseEvent" && f["payload"]["content"].is_string()));
    let sent = ok.iter().find(|l| l["kind"] == "client_response").unwrap();
    let sent = sent["text"].as_str().unwrap();
    assert!(sent.contains("data: [DONE]"));

    let failed = run
        .files
        .iter()
        .find(|f| is_failed(f))
        .expect("the failed one");
    let kinds_failed = kinds(failed);
    assert_eq!(failed[0]["status"], 400);
    assert_eq!(failed[0]["kiro_status"], 400);
    for kind in ["client_request", "kiro_request", "upstream_body", "error"] {
        assert!(
            kinds_failed.contains(&kind),
            "{kind} missing: {kinds_failed:?}"
        );
    }
    let upstream = failed
        .iter()
        .find(|l| l["kind"] == "upstream_body")
        .unwrap();
    assert_eq!(
        upstream["body"]["reason"],
        "CONTENT_LENGTH_EXCEEDS_THRESHOLD"
    );
    let _ = std::fs::remove_dir_all(&run.dir);
}

#[tokio::test]
async fn mode_errors_keeps_only_the_failed_request() {
    let run = run("errors").await;
    assert_eq!(run.kept, 1);
    assert_eq!(run.files.len(), 1);
    assert!(is_failed(&run.files[0]));
    assert_eq!(run.files[0][0]["status"], 400);
    assert_no_secret(&run);
    let _ = std::fs::remove_dir_all(&run.dir);
}

#[tokio::test]
async fn mode_trace_keeps_only_that_callers_requests() {
    let mine = run("trace:proxy-api-key").await;
    assert_eq!(mine.kept, 2);
    assert_eq!(mine.files.len(), 2);
    assert_no_secret(&mine);
    let _ = std::fs::remove_dir_all(&mine.dir);

    let someone_else = run("trace:alice").await;
    assert_eq!(someone_else.kept, 0);
    assert!(someone_else.files.is_empty());
    let _ = std::fs::remove_dir_all(&someone_else.dir);
}

#[tokio::test]
async fn mode_off_installs_no_capture_and_writes_nothing() {
    let dir = temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let h = start_with(
        FakeKiroConfig::default(),
        &["--debug-mode", "off", "--debug-dir", &dir_arg],
    )
    .await;
    assert!(h.gateway.debug.is_none());
    assert!(h.gateway.deps.capture.is_none());
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", OK_PROMPT, false),
        )
        .await;
    assert_eq!(response.status(), 200);
    h.settle(1).await;
    assert!(!dir.exists(), "off creates no directory");
    h.shutdown().await;
}

#[tokio::test]
async fn the_cli_lists_and_shows_captures() {
    let run = run("all").await;
    let exe = env!("CARGO_BIN_EXE_kiro-gateway");
    let list = std::process::Command::new(exe)
        .args(["debug", "--debug-dir"])
        .arg(&run.dir)
        .arg("list")
        .output()
        .unwrap();
    assert!(list.status.success());
    let listing = String::from_utf8(list.stdout).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    let request_id = run.files[0][0]["request_id"].as_str().unwrap().to_owned();
    let show = std::process::Command::new(exe)
        .args(["debug", "--debug-dir"])
        .arg(&run.dir)
        .args(["show", &request_id])
        .output()
        .unwrap();
    assert!(show.status.success());
    let shown = String::from_utf8(show.stdout).unwrap();
    assert!(shown.contains(&request_id));
    assert!(shown
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let missing = std::process::Command::new(exe)
        .args(["debug", "--debug-dir"])
        .arg(&run.dir)
        .args(["show", "../etc/passwd"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let _ = std::fs::remove_dir_all(&run.dir);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_still_captured_once() {
    let dir = temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let h = start_with(
        FakeKiroConfig::default(),
        &["--debug-mode", "all", "--debug-dir", &dir_arg],
    )
    .await;
    let mut response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "[fake:stall] wait for it", true),
        )
        .await;
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .unwrap()
        .expect("some output before the stall");
    assert!(!first.is_empty());
    drop(response);
    let writer = h.gateway.debug.clone().unwrap();
    for _ in 0..500 {
        if writer.seen() >= 1 && writer.written() == writer.kept() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(writer.seen(), 1);
    let files = read_captures(&dir);
    assert_eq!(files.len(), 1);
    let sent = files[0]
        .iter()
        .find(|l| l["kind"] == "client_response")
        .expect("what was sent before the client left");
    assert!(!sent["text"].as_str().unwrap().contains("[DONE]"));
    h.settle(1).await;
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_admin_endpoint_lists_and_shows_captures_to_the_admin_only() {
    let dir = temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let admin = "admin-key-for-tests";
    let h = start_with(
        FakeKiroConfig::default(),
        &[
            "--debug-mode",
            "all",
            "--debug-dir",
            &dir_arg,
            "--admin-api-key",
            admin,
        ],
    )
    .await;
    let response = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "hi", false),
        )
        .await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.text().await.unwrap();
    let writer = h.gateway.debug.clone().unwrap();
    for _ in 0..500 {
        if writer.seen() >= 1 && writer.written() == writer.kept() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let denied = h
        .http
        .get(h.url("/admin/debug"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401, "the client key is not the admin key");
    let list: Value = h
        .http
        .get(h.url("/admin/debug"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["data"][0]["request"]["request_id"],
        request_id.as_str()
    );
    let shown = h
        .http
        .get(h.url(&format!("/admin/debug/{request_id}")))
        .header("x-api-key", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    let text = shown.text().await.unwrap();
    assert!(text
        .lines()
        .any(|l| l.contains("\"kind\":\"kiro_request\"")));
    assert!(!text.contains(admin) && !text.contains(KEY));
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
