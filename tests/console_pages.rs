//! The web console, page by page and role by role, against the real server on loopback (the
//! fake Kiro upstream, a SQLite database per test): sign-in and sessions, CSRF refusals, role
//! isolation, the forms of each role, revocation ending sessions, the login rate limit, the
//! sub-path, and the language switch.

mod common;
mod console_support;
mod tenancy_support;

use common::chat;
use console_support::{Browser, Page};
use serde_json::json;
use tenancy_support::*;

const ROOT_PATH: &str = "/console";

fn browser(env: &Env) -> Browser {
    Browser::new(format!("http://{}", env.h.addr))
}

async fn admin(env: &Env) -> Browser {
    let mut b = browser(env);
    assert_eq!(b.login(ROOT_PATH, ROOT).await, "/console/admin");
    b
}

fn sessions_in(dir: &TempDir) -> Vec<(Vec<u8>, String)> {
    let db = rusqlite::Connection::open(dir.0.join("gw.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT id_hash, role FROM console_sessions")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn sign_in_opens_a_hashed_session_and_sign_out_ends_it() {
    let env = start().await;
    let mut b = browser(&env);
    let page = b.get("/console").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/console/login"))
    );
    let page = b.get("/console/admin").await;
    assert_eq!(page.location.as_deref(), Some("/console/login"));
    let page = b.get("/console/login").await;
    assert!(page.has(r#"data-testid="login-form""#) && page.has(r#"type="password""#));

    let page = b.post("/console/login", &[("key", "sk-wrong")]).await;
    assert_eq!(page.status, 401);
    assert!(page.has(r#"data-testid="login-error""#));
    assert!(!b.cookies.contains_key("kg_console"));

    let page = b.post("/console/login", &[("key", ROOT)]).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/console/admin"))
    );
    let cookie = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kg_console="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(ROOT), "the key itself is never a cookie");
    // Only the hash of the session id is stored.
    let id = b.cookies["kg_console"].clone();
    let rows = sessions_in(&env._dir);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "admin");
    assert_ne!(rows[0].0, id.as_bytes());
    assert!(!String::from_utf8_lossy(&rows[0].0).contains(&id));

    let overview = b.get("/console/admin").await;
    assert_eq!(overview.status, 200);
    for testid in [
        "card-accounts",
        "card-requests",
        "card-errors",
        "card-charged",
        "chart-24h",
        "nav-admin-accounts",
    ] {
        assert!(
            overview.has(&format!(r#"data-testid="{testid}""#)),
            "{testid}"
        );
    }
    assert_eq!(
        b.get("/console").await.location.as_deref(),
        Some("/console/admin")
    );

    // Sign-out needs the CSRF token too; then the session is gone from the database.
    let refused = b.post("/console/logout", &[]).await;
    assert_eq!(refused.status, 403);
    let csrf = overview.csrf();
    let out = b.post("/console/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.location.as_deref(), Some("/console/login"));
    assert!(sessions_in(&env._dir).is_empty());
    assert_eq!(
        b.get("/console/admin").await.location.as_deref(),
        Some("/console/login")
    );
    // The old cookie does not come back to life.
    b.cookies.insert("kg_console".into(), id);
    assert_eq!(b.get("/console/admin").await.status, 303);
    // A forged cookie opens nothing.
    b.cookies.insert("kg_console".into(), "ab".repeat(32));
    assert_eq!(b.get("/console/admin").await.status, 303);
    env.h.shutdown().await;
}

#[tokio::test]
async fn every_change_needs_the_csrf_token_and_the_same_origin() {
    let env = start().await;
    let mut b = admin(&env).await;
    let page = b.get("/console/admin/users").await;
    let csrf = page.csrf();
    let missing = b.post("/console/admin/users", &[("name", "mallory")]).await;
    assert_eq!(missing.status, 403);
    let wrong = b
        .post(
            "/console/admin/users",
            &[("name", "mallory"), ("_csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let cross = b
        .post_with(
            "/console/admin/users",
            &[("name", "mallory"), ("_csrf", &csrf)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(cross.status, 403);
    assert!(cross.has("another site"));
    let users = ok(&env.h, "GET", "/admin/users", ROOT, None).await;
    assert_eq!(
        users["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    // Other forms refuse the same way.
    for path in [
        "/console/admin/accounts",
        "/console/admin/keys",
        "/console/admin/agents",
        "/console/admin/models",
    ] {
        assert_eq!(
            b.post(path, &[("op", "create"), ("name", "x")])
                .await
                .status,
            403,
            "{path}"
        );
    }
    let made = b
        .post(
            "/console/admin/users",
            &[("name", "alice"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(made.status, 303);
    assert!(made.location.unwrap().starts_with("/console/admin/users/"));
    env.h.shutdown().await;
}

#[tokio::test]
async fn operator_runs_users_keys_quota_agents_and_models_from_the_console() {
    let env = start().await;
    let mut b = admin(&env).await;
    let csrf = b.get("/console/admin/users").await.csrf();

    // A user with a quota of 5 credits.
    let made = b
        .post(
            "/console/admin/users",
            &[("name", "alice"), ("quota", "5"), ("_csrf", &csrf)],
        )
        .await;
    let user_page = made.location.unwrap();
    let page = b.get(&user_page).await;
    assert!(page.has("Saved.") && page.has("alice"), "{}", page.body);
    assert!(page.has("0 / 5"));
    // The flash is shown once.
    assert!(!b.get(&user_page).await.has(r#"data-testid="flash""#));
    let user_id: i64 = user_page.rsplit('/').next().unwrap().parse().unwrap();
    let stored = ok(
        &env.h,
        "GET",
        &format!("/admin/users/{user_id}"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(stored["user"]["quota_limit"], 5_000_000);

    // Bad input comes back as a message, not a crash.
    let bad = b
        .post(
            &user_page,
            &[("op", "set_quota"), ("amount", "lots"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(bad.status, 303);
    assert!(b.get(&user_page).await.has("must be an amount of credits"));
    b.post(
        &user_page,
        &[("op", "add_quota"), ("amount", "2.5"), ("_csrf", &csrf)],
    )
    .await;
    let stored = ok(
        &env.h,
        "GET",
        &format!("/admin/users/{user_id}"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(stored["user"]["quota_limit"], 7_500_000);

    // A key, shown once, that works for chat.
    let created = b
        .post(
            &user_page,
            &[("op", "create_key"), ("name", "laptop"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(created.status, 200);
    let secret = created.testid_text("new-key").unwrap();
    assert!(secret.starts_with("sk-"));
    assert!(!b.get(&user_page).await.has(&secret), "never shown again");
    let chat_response = env
        .h
        .http
        .post(env.h.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&chat("claude-sonnet-4.5", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(chat_response.status(), 200);
    chat_response.text().await.unwrap();
    wait_for(&env.h, "/admin/usage?group_by=user", ROOT, |v| {
        v["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;

    // The usage explorer in every grouping, and its CSV.
    for group in ["day", "hour", "model", "user", "agent", "key", "account"] {
        let page = b
            .get(&format!("/console/admin/usage?group_by={group}"))
            .await;
        assert_eq!(page.status, 200, "{group}");
        assert!(
            page.has(r#"data-testid="usage-chart""#) && page.has(r#"<td>1</td>"#),
            "{group}"
        );
    }
    let bad = b.get("/console/admin/usage?group_by=planet").await;
    assert_eq!(bad.status, 400);
    let bad = b.get("/console/admin/usage?from=yesterday").await;
    assert_eq!(bad.status, 400);
    let csv = b.get("/console/admin/usage.csv?group_by=model").await;
    assert_eq!(csv.status, 200);
    let mut lines = csv.body.lines();
    assert!(lines.next().unwrap().starts_with("model,requests,errors"));
    assert!(lines.next().unwrap().starts_with("claude-sonnet-4.5,1,0,"));

    // An agent, a top-up, and the agent key form.
    let page = b
        .post(
            "/console/admin/agents",
            &[("op", "create"), ("name", "reseller"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 303);
    let agents = ok(&env.h, "GET", "/admin/agents", ROOT, None).await;
    let agent_id = agents["data"][0]["id"].as_i64().unwrap().to_string();
    b.post(
        "/console/admin/agents",
        &[
            ("op", "topup"),
            ("agent_id", &agent_id),
            ("amount", "100"),
            ("_csrf", &csrf),
        ],
    )
    .await;
    let page = b.get("/console/admin/agents").await;
    assert_eq!(
        page.testid_text(&format!("agent-balance-{agent_id}"))
            .as_deref(),
        Some("100")
    );
    let key = b
        .post(
            "/console/admin/keys",
            &[
                ("op", "create"),
                ("kind", "agent"),
                ("agent_id", &agent_id),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert!(key.testid_text("new-key").unwrap().starts_with("sk-"));
    let refused = b
        .post(
            "/console/admin/keys",
            &[("op", "create"), ("kind", "inference"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, 303);

    // Prices, aliases, combos.
    b.post(
        "/console/admin/models",
        &[
            ("op", "price"),
            ("model", "claude-sonnet-4.5"),
            ("input", "3"),
            ("output", "15"),
            ("_csrf", &csrf),
        ],
    )
    .await;
    b.post(
        "/console/admin/models",
        &[
            ("op", "alias"),
            ("name", "fast"),
            ("model", "claude-haiku-4.5"),
            ("_csrf", &csrf),
        ],
    )
    .await;
    b.post(
        "/console/admin/models",
        &[
            ("op", "combo"),
            ("name", "best"),
            ("members", "claude-opus-4.5, claude-sonnet-4.5"),
            ("_csrf", &csrf),
        ],
    )
    .await;
    let models = b.get("/console/admin/models").await;
    assert!(models.has("<td>fast</td>") && models.has("claude-opus-4.5, claude-sonnet-4.5"));
    let prices = ok(&env.h, "GET", "/admin/prices", ROOT, None).await;
    assert_eq!(prices["data"][0]["price"]["output_per_m"], 15_000_000);

    // Accounts: the demo account is listed; a selection is disabled and enabled again.
    let page = b.get("/console/admin/accounts").await;
    assert!(page.has(r#"data-testid="accounts""#));
    let none = b
        .post(
            "/console/admin/accounts",
            &[("act", "disable"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(none.status, 303);
    assert!(b
        .get("/console/admin/accounts")
        .await
        .has("Select at least one row"));
    let added = b
        .post(
            "/console/admin/accounts/add",
            &[
                ("name", "second"),
                ("refresh_token", "not-a-real-token"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(added.status, 303);
    // A Cursor session token goes through the same rules as POST /admin/accounts.
    let cursor = b
        .post(
            "/console/admin/accounts/add",
            &[
                ("name", "cursor"),
                ("session_token", "not-a-jwt"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(cursor.status, 303);
    assert!(b
        .get("/console/admin/accounts")
        .await
        .has("not a Cursor token"));
    let accounts = ok(&env.h, "GET", "/admin/accounts", ROOT, None).await;
    let ids: Vec<String> = accounts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"]["id"].to_string())
        .collect();
    if !ids.is_empty() {
        let mut fields = vec![("act", "disable"), ("_csrf", csrf.as_str())];
        fields.extend(ids.iter().map(|id| ("id", id.as_str())));
        assert_eq!(b.post("/console/admin/accounts", &fields).await.status, 303);
        let accounts = ok(&env.h, "GET", "/admin/accounts", ROOT, None).await;
        assert!(accounts["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["account"]["status"] == "disabled"));
    }

    // The audit log saw it all, without secrets.
    let audit = b.get("/console/admin/audit").await;
    assert!(audit.has("top_up") && audit.has("api_key") && !audit.has(&secret));
    assert_eq!(b.get("/console/admin/debug").await.status, 200);
    assert_eq!(b.get("/console/admin/nothing-here").await.status, 404);
    env.h.shutdown().await;
}

#[tokio::test]
async fn agents_and_users_see_only_their_own_pages() {
    let env = start().await;
    let (_, agent_key, user_id, user_key) = agent_with_user(&env.h, "north", 50_000_000).await;
    let (_, _, other_user, _) = agent_with_user(&env.h, "south", 0).await;

    let mut agent = browser(&env);
    assert_eq!(agent.login(ROOT_PATH, &agent_key).await, "/console/agent");
    for path in [
        "/console/admin",
        "/console/admin/users",
        "/console/admin/usage.csv",
        "/console/user",
    ] {
        assert_eq!(agent.get(path).await.status, 403, "{path}");
    }
    let page = agent.get("/console/agent").await;
    assert_eq!(page.testid_text("agent-balance").as_deref(), Some("50"));
    assert!(page.has(&format!(r#"data-testid="agent-user-{user_id}""#)));
    assert!(!page.has(&format!(r#"data-testid="agent-user-{other_user}""#)));
    let csrf = page.csrf();
    // Another agent's user: 404, for reading and for every change.
    assert_eq!(
        agent
            .get(&format!("/console/agent/users/{other_user}"))
            .await
            .status,
        404
    );
    for op in ["transfer", "create_key", "update", "revoke"] {
        let page = agent
            .post(
                &format!("/console/agent/users/{other_user}"),
                &[("op", op), ("amount", "1"), ("_csrf", &csrf)],
            )
            .await;
        assert_eq!(page.status, 404, "{op}");
    }
    assert_eq!(
        agent
            .post("/console/admin/users", &[("name", "x"), ("_csrf", &csrf)])
            .await
            .status,
        403
    );

    // Its own user: a transfer moves credit, the history shows it.
    let mine = format!("/console/agent/users/{user_id}");
    let page = agent
        .post(
            &mine,
            &[("op", "transfer"), ("amount", "12.5"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = agent.get(&mine).await;
    assert!(page.has("Saved.") && page.has("0 / 12.5"), "{}", page.body);
    assert_eq!(page.testid_text("agent-balance").as_deref(), Some("37.5"));
    let too_much = agent
        .post(
            &mine,
            &[("op", "transfer"), ("amount", "1000"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(too_much.status, 303);
    assert!(agent.get(&mine).await.has(r#"class="flash error""#));
    let history = agent.get("/console/agent/transfers").await;
    assert!(history.has("12.5"));
    let created = agent
        .post("/console/agent", &[("name", "newbie"), ("_csrf", &csrf)])
        .await;
    assert!(created
        .location
        .unwrap()
        .starts_with("/console/agent/users/"));

    // The user: its pages, not the others'.
    let mut user = browser(&env);
    assert_eq!(user.login(ROOT_PATH, &user_key).await, "/console/user");
    for path in [
        "/console/admin",
        "/console/agent",
        "/console/agent/transfers",
    ] {
        assert_eq!(user.get(path).await.status, 403, "{path}");
    }
    let page = user.get("/console/user").await;
    assert_eq!(page.testid_text("quota-left").as_deref(), Some("12.5"));
    assert!(page.has(&format!("http://{}/v1", env.h.addr)));
    assert!(page.has("ANTHROPIC_BASE_URL"));
    assert!(user
        .get("/console/user/models")
        .await
        .has("claude-sonnet-4.5"));
    env.h.shutdown().await;
}

#[tokio::test]
async fn a_user_makes_and_revokes_keys_and_a_revoked_key_ends_its_sessions() {
    let env = start().await;
    let (_, _, _, user_key) = agent_with_user(&env.h, "north", 0).await;
    let mut user = browser(&env);
    user.login(ROOT_PATH, &user_key).await;
    let page = user.get("/console/user/keys").await;
    let csrf = page.csrf();
    let created = user
        .post(
            "/console/user/keys",
            &[
                ("op", "create"),
                ("name", "ci"),
                ("expires_days", "30"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    let second = created.testid_text("new-key").unwrap();
    let keys = ok(&env.h, "GET", "/user/keys", &second, None).await;
    let second_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci")
        .unwrap()["id"]
        .to_string();
    let bad = user
        .post(
            "/console/user/keys",
            &[("op", "create"), ("expires_days", "0"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(bad.status, 303);
    assert!(user.get("/console/user/keys").await.has("expires_days"));

    // A second browser signed in with the second key; revoking it from the first ends it.
    let mut other = browser(&env);
    other.login(ROOT_PATH, &second).await;
    assert_eq!(other.get("/console/user").await.status, 200);
    let revoked = user
        .post(
            "/console/user/keys",
            &[("op", "revoke"), ("key_id", &second_id), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, 303);
    assert_eq!(
        other.get("/console/user").await.location.as_deref(),
        Some("/console/login")
    );
    assert_eq!(
        sessions_in(&env._dir).len(),
        1,
        "only the first browser's session is left"
    );
    // A key revoked through the JSON API ends the console session too.
    let mine = ok(&env.h, "GET", "/user/keys", &user_key, None).await;
    let my_id = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "active")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    ok(
        &env.h,
        "DELETE",
        &format!("/admin/keys/{my_id}"),
        ROOT,
        None,
    )
    .await;
    assert_eq!(
        user.get("/console/user").await.location.as_deref(),
        Some("/console/login")
    );
    assert!(sessions_in(&env._dir).is_empty());
    env.h.shutdown().await;
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let env = start().await;
    let mut b = browser(&env);
    for _ in 0..10 {
        assert_eq!(
            b.post("/console/login", &[("key", "sk-guess")])
                .await
                .status,
            401
        );
    }
    let page: Page = b.post("/console/login", &[("key", ROOT)]).await;
    assert_eq!(page.status, 429, "even the right key waits");
    assert!(page.has("Too many failed sign-ins"));
    env.h.shutdown().await;
}

#[tokio::test]
async fn the_console_lives_under_the_public_base_path_and_speaks_chinese() {
    let dir = temp_dir();
    let url = database_url(&dir);
    let key_file = dir.0.join("secret.key");
    let h = common::start_with(
        kiro_gateway::fake_kiro::FakeKiroConfig::default(),
        &[
            "--database-url",
            &url,
            "--admin-api-key",
            ROOT,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--public-base-path",
            "/kiro/",
        ],
    )
    .await;
    let mut b = Browser::new(format!("http://{}", h.addr));
    // The proxy strips /kiro; every link and cookie the page makes carries it.
    let page = b.get("/console/login").await;
    assert!(page.has(r#"action="/kiro/console/login""#));
    assert!(page.has(r#"href="/kiro/console/static/console-"#));
    assert!(!page.has(r#"="/console/"#));
    let login = b.post("/console/login", &[("key", ROOT)]).await;
    assert_eq!(login.location.as_deref(), Some("/kiro/console/admin"));
    assert!(login.set_cookies[0].contains("Path=/kiro/console"));
    let lang = b.get("/console/lang/zh").await;
    assert_eq!(lang.location.as_deref(), Some("/kiro/console/"));
    let page = b.get("/console/admin").await;
    assert!(page.has(r#"<html lang="zh-CN">"#) && page.has("概览") && page.has("账号"));
    // Behind TLS (the proxy says so) the cookie is Secure.
    let mut tls = Browser::new(format!("http://{}", h.addr));
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/login", tls.base))
        .header("x-forwarded-proto", "https")
        .form(&[("key", ROOT)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    tls.cookies.clear();
    let css = b
        .get(
            page.body
                .split(r#"href="/kiro"#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap(),
        )
        .await;
    assert_eq!(css.status, 200);
    assert!(css.body.contains("svg.chart"));
    h.shutdown().await;
    drop(dir);
}

#[tokio::test]
async fn the_json_api_and_the_console_agree_because_they_share_one_function() {
    // A rule of the JSON API (an agent cannot transfer a negative amount; names are checked)
    // answers the same through the console.
    let env = start().await;
    let (_, agent_key, user_id, _) = agent_with_user(&env.h, "north", 10_000_000).await;
    let (status, body) = call(
        &env.h,
        "POST",
        &format!("/agent/users/{user_id}/transfer"),
        &agent_key,
        Some(json!({ "amount": -1 })),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    let mut agent = browser(&env);
    agent.login(ROOT_PATH, &agent_key).await;
    let csrf = agent.get("/console/agent").await.csrf();
    agent
        .post(
            &format!("/console/agent/users/{user_id}"),
            &[
                ("op", "transfer"),
                ("amount", "-0.000001"),
                ("_csrf", &csrf),
            ],
        )
        .await;
    let page = agent.get(&format!("/console/agent/users/{user_id}")).await;
    assert!(page.has(&message), "{message} not in {}", page.body);
    env.h.shutdown().await;
}

#[tokio::test]
async fn long_lists_are_paged_searched_and_sorted_by_the_database() {
    let env = start().await;
    let (agent_id, agent_key, first_user, _) = agent_with_user(&env.h, "pager", 0).await;
    // 60 more users: 55 of the operator's, 5 of the agent's.
    let mut ids = vec![first_user];
    for n in 0..60 {
        let name = format!("member-{n:02}");
        let made = if n < 55 {
            ok(
                &env.h,
                "POST",
                "/admin/users",
                ROOT,
                Some(json!({ "name": name })),
            )
            .await
        } else {
            ok(
                &env.h,
                "POST",
                "/agent/users",
                &agent_key,
                Some(json!({ "name": name })),
            )
            .await
        };
        ids.push(made["user"]["id"].as_i64().unwrap());
    }
    let mut b = admin(&env).await;
    let testid = |id: i64| format!(r#"data-testid="user-{id}""#);

    // 61 users, 50 a page: page 1 has the first 50 by id, page 2 the other 11.
    let page1 = b.get("/console/admin/users").await;
    assert!(page1.has("1 / 2") && page1.has(&testid(ids[49])));
    assert!(!page1.has(&testid(ids[50])));
    let page2 = b.get("/console/admin/users?page=2").await;
    assert!(page2.has("2 / 2") && page2.has(&testid(ids[60])));
    assert!(!page2.has(&testid(ids[0])));
    // A page past the end shows no rows and links back.
    let past = b.get("/console/admin/users?page=9").await;
    assert!(
        past.has("9 / 2") && !past.has(&testid(ids[0])),
        "{}",
        past.body
    );

    // Searched (either case), filtered by agent, sorted: one page, links keep the filter.
    let found = b
        .get(&format!(
            "/console/admin/users?q=MEMBER-5&agent={agent_id}&sort=name"
        ))
        .await;
    for (i, id) in ids.iter().enumerate() {
        // member-55 .. member-59 are the agent's (ids[56..=60]).
        assert_eq!(found.has(&testid(*id)), i >= 56, "user {i}");
    }
    assert!(
        found.has(r#"value="MEMBER-5""#),
        "the form keeps the search"
    );
    let by_name = found.body.find(&testid(ids[56])).unwrap();
    assert!(by_name < found.body.find(&testid(ids[60])).unwrap());
    let broad = b.get("/console/admin/users?q=member&sort=name").await;
    assert!(broad.has("1 / 2") && broad.has("q=member&amp;sort=name&amp;page=2"));
    // Nothing matches: an empty table, no crash, no SQL from the search box.
    let none = b
        .get("/console/admin/users?q=%25%27%20OR%201%3D1%20--")
        .await;
    assert_eq!(none.status, 200);
    assert!(!none.has(&testid(ids[0])) && none.has("No user yet."));

    // The agent sees only its own 6 users, still paged by the database.
    let mut agent = browser(&env);
    assert_eq!(agent.login(ROOT_PATH, &agent_key).await, "/console/agent");
    let own = agent.get("/console/agent").await;
    assert_eq!(own.testid_text("agent-users").as_deref(), Some("6"));
    assert!(own.has(&format!(r#"data-testid="agent-user-{}""#, ids[60])));
    assert!(!own.has(&format!(r#"data-testid="agent-user-{}""#, ids[1])));

    // The audit log filtered by an action prefix (61 users and more: two pages in all).
    let audit = b.get("/console/admin/audit?action=crea").await;
    assert!(audit.has("<td>create</td>") && audit.has("action=crea&amp;page=2"));
    let none = b.get("/console/admin/audit?action=delete").await;
    assert!(none.has("Nothing here yet.") && !none.has("<td>create</td>"));
}
