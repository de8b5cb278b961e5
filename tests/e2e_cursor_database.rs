//! Issue 11's proof, end to end: the real `kiro-gateway` process on a database whose pool holds
//! one Kiro account (fake Kiro) and one Cursor account (fake Cursor over HTTP/2 prior
//! knowledge), both added through `POST /admin/accounts`. An OpenAI client and an Anthropic
//! client, streamed and not, with tools and with thinking, on a model both kinds serve (Kiro's
//! `claude-sonnet-4.5`, Cursor's `claude-4.5-sonnet`): both accounts serve, each kind receives
//! its own model id, usage rows name the account and its kind (Cursor's marked estimated), and
//! the user's quota is charged by the same price rule for both. Also `account add` from the
//! CLI with a state.vscdb, and its clear error for a file that is not one.

mod process_support;

use std::time::Duration;

use kiro_gateway::fake_cursor::{self, FakeCursorConfig};
use kiro_gateway::fake_kiro::{self, FakeKiroConfig};
use process_support::*;
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4.5";

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kgw-cursor-db-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One request of the matrix: (dialect, streamed, tools or thinking).
#[derive(Debug, Clone, Copy)]
struct Case {
    anthropic: bool,
    stream: bool,
    tools: bool,
}

fn body(case: Case) -> Value {
    // Each fake answers its own directive: `[fake:…]` for Kiro, `[cursor:…]` for Cursor.
    let text = if case.tools {
        "[fake:tool_call] [cursor:tool] what is the weather?"
    } else {
        "[fake:thinking] [cursor:thinking] what is it?"
    };
    let mut body = if case.anthropic {
        json!({"model": MODEL, "max_tokens": 500, "stream": case.stream,
               "messages": [{"role": "user", "content": text}]})
    } else {
        json!({"model": MODEL, "stream": case.stream,
               "messages": [{"role": "user", "content": text}]})
    };
    if case.tools {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        body["tools"] = if case.anthropic {
            json!([{"name": "get_weather", "description": "Weather", "input_schema": schema}])
        } else {
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema}}])
        };
    } else if case.anthropic {
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 2000});
    } else {
        body["reasoning_effort"] = json!("high");
    }
    body
}

/// Checks the answer has what the case asked for, in the client's own shape.
fn check(case: Case, status: u16, text: &str) {
    assert_eq!(status, 200, "{case:?}: {text}");
    match (case.anthropic, case.stream, case.tools) {
        (false, false, false) => {
            let answer: Value = serde_json::from_str(text).unwrap();
            let message = &answer["choices"][0]["message"];
            assert!(
                !message["reasoning_content"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{case:?}: {answer}"
            );
            assert!(
                !message["content"].as_str().unwrap_or("").is_empty(),
                "{case:?}: {answer}"
            );
        }
        (false, false, true) => {
            let answer: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                answer["choices"][0]["finish_reason"], "tool_calls",
                "{case:?}: {answer}"
            );
            let call = &answer["choices"][0]["message"]["tool_calls"][0];
            assert_eq!(call["function"]["name"], "get_weather", "{answer}");
            let arguments: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert!(arguments["city"].is_string(), "{answer}");
        }
        (false, true, false) => {
            assert!(text.contains("\"reasoning_content\""), "{case:?}: {text}");
            assert!(
                text.trim_end().ends_with("data: [DONE]"),
                "{case:?}: {text}"
            );
        }
        (false, true, true) => {
            assert!(
                text.contains("\"tool_calls\"") && text.contains("get_weather"),
                "{case:?}: {text}"
            );
            assert!(
                text.contains("\"finish_reason\":\"tool_calls\""),
                "{case:?}: {text}"
            );
        }
        (true, false, false) => {
            let answer: Value = serde_json::from_str(text).unwrap();
            let content = answer["content"].as_array().unwrap();
            assert!(
                content
                    .iter()
                    .any(|b| b["type"] == "thinking"
                        && !b["thinking"].as_str().unwrap_or("").is_empty()),
                "{case:?}: {answer}"
            );
            assert!(
                content.iter().any(|b| b["type"] == "text"),
                "{case:?}: {answer}"
            );
        }
        (true, false, true) => {
            let answer: Value = serde_json::from_str(text).unwrap();
            assert_eq!(answer["stop_reason"], "tool_use", "{case:?}: {answer}");
            let call = answer["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap();
            assert_eq!(call["name"], "get_weather", "{answer}");
            assert!(call["input"]["city"].is_string(), "{answer}");
        }
        (true, true, false) => {
            assert!(
                text.contains("thinking_delta") && text.contains("text_delta"),
                "{case:?}: {text}"
            );
            assert!(text.contains("message_stop"), "{case:?}: {text}");
        }
        (true, true, true) => {
            assert!(
                text.contains("\"tool_use\"") && text.contains("input_json_delta"),
                "{case:?}: {text}"
            );
            assert!(
                text.contains("\"stop_reason\":\"tool_use\""),
                "{case:?}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_pool_of_one_kiro_and_one_cursor_account_serves_both_clients_alike() {
    let kiro = fake_kiro::start(FakeKiroConfig::default()).await.unwrap();
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("gateway.db").display());
    let mut args = upstream_args(&kiro);
    args.extend([
        "--cursor-api-url".into(),
        cursor.base_url(),
        "--cursor-website-url".into(),
        cursor.base_url(),
    ]);
    let gw = GatewayProcess::start(&dir, &url, &args).await;

    let kiro_account = gw
        .ok(
            "POST",
            "/admin/accounts",
            ROOT,
            Some(json!({
                "name": "kiro one", "refresh_token": kiro.config().refresh_token,
                "profile_arn": fake_kiro::FAKE_PROFILE_ARN,
            })),
        )
        .await["account"]["id"]
        .as_i64()
        .unwrap();
    let cursor_account = gw
        .ok(
            "POST",
            "/admin/accounts",
            ROOT,
            Some(json!({
                "name": "cursor one",
                "session_token": format!("user_01PROOF::{}", cursor.issue_session_token(3600)),
                "refresh_token": cursor.issue_refresh_token(),
            })),
        )
        .await["account"]
        .clone();
    assert_eq!(cursor_account["kind"], "cursor");
    let cursor_account = cursor_account["id"].as_i64().unwrap();
    let (_, key) = gw.user_key("alice", Some(1_000_000_000)).await;

    // Cursor's catalog loads in the background; the shared name is listed once, and Cursor's
    // own spelling is not listed.
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..200 {
        let models = gw.ok("GET", "/v1/models", &key, None).await;
        ids = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().any(|id| id == "gpt-5.4-medium") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ids.iter().any(|id| id == "gpt-5.4-medium"), "{ids:?}");
    assert_eq!(ids.iter().filter(|id| *id == MODEL).count(), 1, "{ids:?}");
    assert!(!ids.iter().any(|id| id == "claude-4.5-sonnet"), "{ids:?}");

    // Every case twice in a row: round robin alternates, so each case reaches both kinds.
    let mut cases = Vec::new();
    for anthropic in [false, true] {
        for stream in [false, true] {
            for tools in [false, true] {
                let case = Case {
                    anthropic,
                    stream,
                    tools,
                };
                cases.extend([case, case]);
            }
        }
    }
    for case in &cases {
        let path = if case.anthropic {
            "/v1/messages"
        } else {
            "/v1/chat/completions"
        };
        let response = gw
            .http
            .post(gw.url(path))
            .bearer_auth(&key)
            .header("anthropic-version", "2023-06-01")
            .json(&body(*case))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        check(*case, status, &response.text().await.unwrap());
    }
    // Each kind got its own spelling of the model.
    assert_eq!(
        cursor.stats().chat_calls,
        cases.len() as u64 / 2,
        "{:?}",
        cursor.stats()
    );
    let kiro_sent = kiro.stats().last_request_body.unwrap();
    assert_eq!(
        kiro_sent["conversationState"]["currentMessage"]["userInputMessage"]["modelId"],
        MODEL
    );

    // The usage rows, as stored: each names its account and kind; Cursor's are estimated; every
    // row is charged by the same rule (the model's price times the tokens, rounded up).
    let db = dir.join("gateway.db");
    let mut rows = Vec::new();
    for _ in 0..200 {
        let path = db.clone();
        rows = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT account_id, account_kind, estimated, input_tokens, output_tokens, \
                     cache_read_tokens, cache_write_tokens, charged, status, resolved_model \
                     FROM usage_records ORDER BY id",
                )
                .unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, bool>(2)?,
                    [r.get::<_, i64>(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                    r.get::<_, i64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        if rows.len() >= cases.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), cases.len(), "one row per request: {rows:?}");
    let price = kiro_gateway::tenancy::pricing::default_price(MODEL);
    let mut charged_total = 0;
    for (account, kind, estimated, tokens, charged, status, model) in &rows {
        assert_eq!(status, "ok", "{rows:?}");
        assert_eq!(model, MODEL, "usage names the public model for both kinds");
        let expected_kind = if *account == Some(kiro_account.to_string()) {
            "kiro"
        } else {
            assert_eq!(*account, Some(cursor_account.to_string()), "{rows:?}");
            "cursor"
        };
        assert_eq!(kind.as_deref(), Some(expected_kind), "{rows:?}");
        assert_eq!(
            *estimated,
            expected_kind == "cursor",
            "Cursor sends no counts: {rows:?}"
        );
        assert!(tokens[0] > 0 && tokens[1] > 0, "{rows:?}");
        let micro = i128::from(tokens[0]) * i128::from(price.input_per_m)
            + i128::from(tokens[1]) * i128::from(price.output_per_m)
            + i128::from(tokens[2]) * i128::from(price.cache_read_per_m)
            + i128::from(tokens[3]) * i128::from(price.cache_write_per_m);
        assert_eq!(
            i128::from(*charged),
            (micro + 999_999) / 1_000_000,
            "{rows:?}"
        );
        charged_total += charged;
    }
    let served = |kind: &str| rows.iter().filter(|r| r.1.as_deref() == Some(kind)).count();
    assert_eq!(
        (served("kiro"), served("cursor")),
        (cases.len() / 2, cases.len() / 2)
    );

    // The admin's usage view groups by kind and counts the estimated attempts.
    let by_kind = gw.ok("GET", "/admin/usage?group_by=kind", ROOT, None).await;
    let group = |kind: &str| {
        by_kind["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == kind)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        group("cursor")["estimated_requests"],
        cases.len() as u64 / 2,
        "{by_kind}"
    );
    assert_eq!(group("kiro")["estimated_requests"], 0, "{by_kind}");
    assert_eq!(
        group("kiro")["requests"],
        cases.len() as u64 / 2,
        "{by_kind}"
    );
    // The user's quota is charged exactly what the rows say, for both kinds.
    let quota = gw.ok("GET", "/user/quota", &key, None).await;
    assert_eq!(quota["quota_used"], charged_total, "{quota}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_add_takes_a_state_vscdb_or_a_cookie_and_refuses_what_is_neither() {
    let cursor = fake_cursor::start(FakeCursorConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let vscdb = dir.join("state.vscdb");
    let db = rusqlite::Connection::open(&vscdb).unwrap();
    db.execute_batch("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB);")
        .unwrap();
    for (key, value) in [
        ("cursorAuth/accessToken", cursor.issue_session_token(3600)),
        ("cursorAuth/refreshToken", cursor.issue_refresh_token()),
        ("cursorAuth/cachedEmail", "cli@example.com".to_owned()),
    ] {
        db.execute(
            "INSERT INTO ItemTable VALUES (?1, ?2)",
            [key, value.as_str()],
        )
        .unwrap();
    }
    drop(db);
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = vec![
            "account".into(),
            "add".into(),
            "--database-url".into(),
            format!("sqlite://{}", dir.join("cli.db").display()),
            "--secret-key-file".into(),
            dir.join("secret.key").display().to_string(),
            "--cursor-api-url".into(),
            cursor.base_url(),
            // The fake serves the website's half of the cookie upgrade too.
            "--cursor-website-url".into(),
            cursor.base_url(),
        ];
        args.extend(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_kiro-gateway"))
            .args(&args)
            .env_clear()
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let added = run(vec!["--state-vscdb".into(), vscdb.display().to_string()]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(printed["account"]["kind"], "cursor", "{printed}");
    assert_eq!(printed["account"]["name"], "cli@example.com", "{printed}");

    // A browser cookie: upgraded through the fake to a session token with its refresh token.
    let cookie = format!("user_01CLI%3A%3A{}", cursor.issue_web_token(3600));
    let from_cookie = run(vec![
        "--name".into(),
        "from cookie".into(),
        "--session-token".into(),
        cookie,
    ]);
    assert!(
        from_cookie.status.success(),
        "{}",
        String::from_utf8_lossy(&from_cookie.stderr)
    );
    let printed: Value = serde_json::from_slice(&from_cookie.stdout).unwrap();
    assert_eq!(printed["account"]["kind"], "cursor", "{printed}");
    assert_eq!(printed["account"]["name"], "from cookie", "{printed}");

    // A cookie the website no longer knows is refused with directions to the session token.
    let stale = run(vec![
        "--name".into(),
        "stale".into(),
        "--session-token".into(),
        format!("user_01CLI::{}", cursor.issue_web_token(-60)),
    ]);
    assert!(!stale.status.success());
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains("cursorAuth/accessToken"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let text = dir.join("notes.txt");
    std::fs::write(
        &text,
        "these are notes, not a database; long enough to have a header",
    )
    .unwrap();
    let refused = run(vec![
        "--name".into(),
        "x".into(),
        "--state-vscdb".into(),
        text.display().to_string(),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a Cursor state database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
