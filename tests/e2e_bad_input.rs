//! Bad input on every mutation of the management APIs (`/admin`, `/user`, `/agent`): malformed
//! bodies, wrong types, missing and unknown fields, unknown and malformed ids, and names full of
//! SQL metacharacters (the table is in `bad_input/cases.rs`). Each call must get its expected
//! 4xx with an OpenAI-shaped JSON error whose message says what was wrong, and must change
//! nothing: every admin list and the audit log read the same before and after. Runs on SQLite
//! and, when `TEST_DATABASE_URL` is set (scripts/pg.sh), on PostgreSQL.

mod common;
mod tenancy_support;

#[rustfmt::skip]
#[path = "bad_input/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};

use cases::{cases, segment, As, Kind, World, MUTATIONS};
use common::Harness;
use serde_json::{json, Value};
use tenancy_support::*;

/// Everything a refused call could have changed, as the admin sees it.
async fn everything(h: &Harness) -> BTreeMap<&'static str, Value> {
    let mut seen = BTreeMap::new();
    for (name, path) in [
        ("accounts", "/admin/accounts"),
        ("users", "/admin/users"),
        ("keys", "/admin/keys"),
        ("agents", "/admin/agents"),
        ("aliases", "/admin/aliases"),
        ("combos", "/admin/combos"),
        ("prices", "/admin/prices"),
        ("transfers", "/admin/transfers"),
        ("usage", "/admin/usage?group_by=user"),
        ("audit", "/admin/audit?limit=1000"),
    ] {
        seen.insert(name, ok(h, "GET", path, ROOT, None).await);
    }
    seen
}

/// An account, a platform user with a key, an agent with a user and its key, an alias and a
/// combo: something for every id and name in the table to point at.
async fn world(h: &Harness) -> World {
    let token = h.fake().config().refresh_token.clone();
    let body = json!({ "name": "main", "refresh_token": token });
    let account = ok(h, "POST", "/admin/accounts", ROOT, Some(body)).await;
    let body = json!({ "name": "taken" });
    let user = ok(h, "POST", "/admin/users", ROOT, Some(body)).await;
    let platform_user = user["user"]["id"].as_i64().unwrap();
    let body = json!({ "kind": "inference", "user_id": platform_user });
    let key = ok(h, "POST", "/admin/keys", ROOT, Some(body)).await;
    let (agent, agent_key, agent_user, agent_user_key) =
        agent_with_user(h, "acme", 5_000_000).await;
    let path = format!("/agent/users/{agent_user}/keys");
    let keys = ok(h, "GET", &path, &agent_key, None).await;
    let body = json!({ "model": "claude-sonnet-4.5" });
    ok(h, "PUT", "/admin/aliases/fast", ROOT, Some(body)).await;
    let body = json!({ "members": ["claude-opus-4.5", "auto"] });
    ok(h, "PUT", "/admin/combos/duo", ROOT, Some(body)).await;
    World {
        account: account["account"]["id"].as_i64().unwrap(),
        platform_user,
        platform_key_id: key["api_key"]["id"].as_i64().unwrap(),
        agent,
        agent_key,
        agent_user,
        agent_user_key,
        agent_user_key_id: keys["data"][0]["id"].as_i64().unwrap(),
    }
}

/// Sends `body` as is (no content type check is involved: bodies are parsed by hand).
async fn send(h: &Harness, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
    if !key.is_empty() {
        return call_raw(h, method, path, key, body).await;
    }
    let response = h
        .http
        .request(method.parse().unwrap(), h.url(path))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn every_mutation_refuses_bad_input_with_a_4xx_and_changes_nothing() {
    let dir = temp_dir();
    for (backend, url) in backend_urls(&dir).await {
        let h = start_on(&dir, &url).await;
        let w = world(&h).await;
        let cases = cases(&w);

        // Every route is tried with every kind of bad input it can get, and only listed
        // routes are tried.
        let mut covered: BTreeMap<(&str, &str), BTreeSet<char>> = BTreeMap::new();
        for case in &cases {
            let kinds = covered.entry((case.method, case.route)).or_default();
            kinds.insert(case.kind.letter());
        }
        for &(method, route, kinds) in MUTATIONS {
            let have = covered.remove(&(method, route)).unwrap_or_default();
            for kind in kinds.chars() {
                assert!(
                    have.contains(&kind),
                    "{method} {route}: no case of kind {kind}"
                );
            }
        }
        assert!(covered.is_empty(), "routes not in MUTATIONS: {covered:?}");

        let before = everything(&h).await;
        for case in &cases {
            let key = match case.caller {
                As::Admin => ROOT,
                As::Agent => &w.agent_key,
                As::User => &w.agent_user_key,
                As::Nobody => "",
            };
            let (status, value) = send(&h, case.method, &case.path, key, &case.body).await;
            let what = format!(
                "[{backend}] {:?} {} {} {:?}",
                case.kind, case.method, case.path, case.body
            );
            assert_eq!(status, case.status, "{what}: {value}");
            let message = value["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{what}: no message in {value}");
            assert!(value["error"]["type"].is_string(), "{what}: {value}");
            let says = case.says;
            assert!(message.contains(says), "{what}: {message:?} lacks {says:?}");
            if case.kind == Kind::Name && status == 400 {
                // The field first, then the rule, then the first refused character.
                let field_first = message.starts_with('`') || message.starts_with("The ");
                assert!(field_first, "{what}: {message}");
                assert!(message.ends_with("is not allowed"), "{what}: {message}");
            }
            if status == 404 {
                assert!(message.contains("not found"), "{what}: {message}");
            }
        }
        let after = everything(&h).await;
        for (name, value) in &before {
            assert_eq!(&after[name], value, "[{backend}] {name} changed");
        }
        let entries = |seen: &BTreeMap<_, Value>| seen["audit"]["data"].as_array().unwrap().len();
        assert_eq!(
            entries(&after),
            entries(&before),
            "[{backend}] refused calls audited"
        );
        eprintln!(
            "[{backend}] {} bad calls refused, nothing changed",
            cases.len()
        );

        // The allowed characters work and are stored exactly as given.
        let fine = "Zoë O.Brien-Smith (ops) bob+ci@x.io:eu/1 東京";
        let body = json!({ "name": format!("  {fine} ") });
        let user = ok(&h, "POST", "/admin/users", ROOT, Some(body)).await;
        assert_eq!(user["user"]["name"], fine, "trimmed, otherwise verbatim");
        let alias = "my-sonnet-4.5[1m]:beta/x_y";
        let path = format!("/admin/aliases/{}", segment(alias));
        let body = json!({ "model": "claude-opus-4-6[1m]" });
        ok(&h, "PUT", &path, ROOT, Some(body)).await;
        let aliases = ok(&h, "GET", "/admin/aliases", ROOT, None).await;
        assert!(aliases.to_string().contains(alias), "{aliases}");
        let body = json!({
            "kind": "inference", "user_id": user["user"]["id"], "name": "ci (eu) 1",
            "allowed_models": ["claude-sonnet-4.5", alias],
        });
        let key = ok(&h, "POST", "/admin/keys", ROOT, Some(body)).await;
        assert_eq!(key["api_key"]["name"], "ci (eu) 1");
        h.shutdown().await;
    }
}
