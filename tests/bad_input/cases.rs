//! The table of bad calls, one row per line (rustfmt skips this file: the rows read best as a
//! table). `MUTATIONS` lists every mutation route with the kinds of bad input it must be tried
//! with; the test fails when a route lacks a case of one of its kinds.

use serde_json::json;

/// Every mutation route of the three APIs and the kinds of bad input (letters of [`Kind`]) it
/// must be tried with.
pub const MUTATIONS: &[(&str, &str, &str)] = &[
    ("POST", "/admin/accounts", "BTMFNV"),
    ("POST", "/admin/accounts/{id}/enable", "UI"),
    ("POST", "/admin/accounts/{id}/disable", "UI"),
    ("POST", "/admin/accounts/{id}/refresh", "UI"),
    ("DELETE", "/admin/accounts/{id}", "UI"),
    ("POST", "/admin/users", "BTMFNUV"),
    ("PATCH", "/admin/users/{id}", "BTMFNUIV"),
    ("DELETE", "/admin/users/{id}", "UI"),
    ("POST", "/admin/keys", "BTMFNUV"),
    ("DELETE", "/admin/keys/{id}", "UI"),
    ("POST", "/admin/quotas/set", "BTMFUV"),
    ("POST", "/admin/quotas/add", "BTMFUV"),
    ("PUT", "/admin/aliases/{name}", "BTMFN"),
    ("DELETE", "/admin/aliases/{name}", "U"),
    ("PUT", "/admin/combos/{name}", "BTMFNV"),
    ("DELETE", "/admin/combos/{name}", "U"),
    ("PUT", "/admin/prices/{model}", "BTMFNV"),
    ("POST", "/admin/agents", "BTMFNV"),
    ("POST", "/admin/agents/{id}/topup", "BTMFUIV"),
    ("POST", "/user/keys", "BTFNV"),
    ("DELETE", "/user/keys/{id}", "UI"),
    ("POST", "/agent/users", "BTMFN"),
    ("PATCH", "/agent/users/{id}", "BTMFNUI"),
    ("POST", "/agent/users/{id}/keys", "BTFNUI"),
    ("DELETE", "/agent/users/{id}/keys/{key_id}", "UI"),
    ("POST", "/agent/users/{id}/transfer", "BTMFUIV"),
];

/// What is wrong with a case's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `B`: not a JSON object (garbage, empty, an array, null, a string).
    Malformed,
    /// `T`: a field of the wrong JSON type.
    WrongType,
    /// `M`: a required field missing.
    Missing,
    /// `F`: a field the endpoint does not know.
    UnknownField,
    /// `N`: a name (or model name) with SQL metacharacters, in the body or the path.
    Name,
    /// `U`: an id (or name) that does not exist, or is outside the caller's reach.
    UnknownId,
    /// `I`: an id that is not a positive integer.
    BadId,
    /// `V`: a value of the right type that breaks a rule (negative, empty, duplicate, wrong key).
    BadValue,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Malformed => 'B',
            Kind::WrongType => 'T',
            Kind::Missing => 'M',
            Kind::UnknownField => 'F',
            Kind::Name => 'N',
            Kind::UnknownId => 'U',
            Kind::BadId => 'I',
            Kind::BadValue => 'V',
        }
    }
}

/// Names that must be refused: SQL metacharacters and comment markers, control characters,
/// markup, and symbols outside the allowed set.
pub const NASTY: &[&str] = &[
    "Robert'); DROP TABLE users;--",
    "x' OR '1'='1",
    "semi;colon",
    "dash--dash",
    "back\\slash",
    "quote\"d",
    "50%_off",
    "nul\u{0}byte",
    "tab\tname",
    "/* comment */",
    "<script>alert(1)</script>",
    "emoji ✓",
];

/// The name rule and the model name rule, as the messages state them.
pub const NAME_RULE: &str = "may contain only letters, digits, spaces and `._-@+:/()`";
pub const MODEL_RULE: &str = "may contain only ASCII letters, digits and `._-[]:/`";

/// Which key a case is sent with.
#[derive(Debug, Clone, Copy)]
pub enum As {
    Admin,
    Agent,
    /// The agent's user's own key.
    User,
    /// No key at all.
    Nobody,
}

/// One bad call and what it must get.
pub struct Case {
    pub route: &'static str,
    pub method: &'static str,
    pub path: String,
    pub caller: As,
    pub body: String,
    pub kind: Kind,
    pub status: u16,
    /// Text the error message must contain.
    pub says: &'static str,
}

/// The ids the cases refer to.
pub struct World {
    pub account: i64,
    pub platform_user: i64,
    pub platform_key_id: i64,
    pub agent: i64,
    pub agent_key: String,
    pub agent_user: i64,
    pub agent_user_key: String,
    pub agent_user_key_id: i64,
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

type Row = (&'static str, &'static str, String, As, String, Kind, u16, &'static str);

fn case((route, method, path, caller, body, kind, status, says): Row) -> Case {
    Case { route, method, path, caller, body, kind, status, says }
}

/// Every bad call.
pub fn cases(w: &World) -> Vec<Case> {
    let (a, pu, pk, ag, au, auk) = (w.account, w.platform_user, w.platform_key_id, w.agent, w.agent_user, w.agent_user_key_id);
    let token = "a-refresh-token";
    let u = 999_999;
    let mut out = Vec::new();

    // Bodies that are not a JSON object, on every route that takes a body.
    for &(method, route, kinds) in MUTATIONS {
        if !kinds.contains('B') {
            continue;
        }
        let id = if route.starts_with("/admin/users") { pu } else if route.starts_with("/admin/agents") { ag } else { au };
        let path = route.replace("{id}", &id.to_string()).replace("{name}", "fast").replace("{model}", "claude-sonnet-4.5");
        let caller = if route.starts_with("/user") { As::User } else if route.starts_with("/agent") { As::Agent } else { As::Admin };
        for body in ["not json", "", "   ", "[1,2]", "null", "{\"name\":", "\"text\"", "42"] {
            out.push(case((route, method, path.clone(), caller, body.into(), Kind::Malformed, 400, "")));
        }
    }

    // Malformed ids, on every route with an id.
    for &(method, route, kinds) in MUTATIONS {
        if !kinds.contains('I') {
            continue;
        }
        for id in ["abc", "0", "-1", "1;DROP TABLE users", "1' OR '1'='1", "1.5", "99999999999999999999"] {
            let id = segment(id);
            let body = if method == "DELETE" { String::new() } else { json!({"name": "ok", "amount": 1}).to_string() };
            let (path, caller) = match route {
                "/agent/users/{id}/keys/{key_id}" => (format!("/agent/users/{au}/keys/{id}"), As::Agent),
                r if r.starts_with("/agent") => (r.replace("{id}", &id), As::Agent),
                r if r.starts_with("/user") => (r.replace("{id}", &id), As::User),
                r => (r.replace("{id}", &id), As::Admin),
            };
            out.push(case((route, method, path, caller, body, Kind::BadId, 400, "is not a valid id")));
        }
    }
    out.push(case(("/agent/users/{id}/keys/{key_id}", "DELETE", format!("/agent/users/x/keys/{auk}"), As::Agent, String::new(), Kind::BadId, 400, "is not a valid id")));

    // Names with metacharacters, in every body field that holds a name...
    let name_fields: &[(&str, &str, String, As, &str, bool)] = &[
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, "name", false),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, "name", false),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, "name", false),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, "name", false),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, "allowed_models", true),
        ("/admin/aliases/{name}", "PUT", "/admin/aliases/fast".into(), As::Admin, "model", true),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, "members", true),
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, "name", false),
        ("/user/keys", "POST", "/user/keys".into(), As::User, "name", false),
        ("/user/keys", "POST", "/user/keys".into(), As::User, "allowed_models", true),
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, "name", false),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{au}"), As::Agent, "name", false),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{au}/keys"), As::Agent, "name", false),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{au}/keys"), As::Agent, "allowed_models", true),
    ];
    for (route, method, path, caller, field, model) in name_fields {
        for nasty in NASTY {
            let mut body = match *route {
                "/admin/accounts" => json!({"refresh_token": token}),
                "/admin/keys" => json!({"kind": "inference", "user_id": pu}),
                _ => json!({}),
            };
            body[*field] = if matches!(*field, "allowed_models" | "members") { json!([nasty]) } else { json!(nasty) };
            let says = if *model { MODEL_RULE } else { NAME_RULE };
            out.push(case((route, method, path.clone(), *caller, body.to_string(), Kind::Name, 400, says)));
        }
    }
    // ...and every path segment that holds one.
    for nasty in NASTY {
        let n = segment(nasty);
        out.push(case(("/admin/aliases/{name}", "PUT", format!("/admin/aliases/{n}"), As::Admin, json!({"model": "claude-sonnet-4.5"}).to_string(), Kind::Name, 400, MODEL_RULE)));
        out.push(case(("/admin/combos/{name}", "PUT", format!("/admin/combos/{n}"), As::Admin, json!({"members": ["auto"]}).to_string(), Kind::Name, 400, MODEL_RULE)));
        out.push(case(("/admin/prices/{model}", "PUT", format!("/admin/prices/{n}"), As::Admin, json!({"input_per_m": 1, "output_per_m": 1}).to_string(), Kind::Name, 400, MODEL_RULE)));
        // Deleting by a name that cannot exist is a plain 404 (names stored before the rules
        // existed stay deletable).
        out.push(case(("/admin/aliases/{name}", "DELETE", format!("/admin/aliases/{n}"), As::Admin, String::new(), Kind::UnknownId, 404, "not found")));
        out.push(case(("/admin/combos/{name}", "DELETE", format!("/admin/combos/{n}"), As::Admin, String::new(), Kind::UnknownId, 404, "not found")));
    }

    // Everything else, route by route.
    let rows: Vec<Row> = vec![
        // Accounts.
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": 5, "refresh_token": token}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": 7}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "max_concurrency": "many"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"refresh_token": token}).to_string(), Kind::Missing, 400, "missing field `name`"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a"}).to_string(), Kind::Missing, 400, "exactly one of"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "region": "evil.example/#"}).to_string(), Kind::BadValue, 400, "`region` must be an AWS region"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "api_region": "us-east-1'"}).to_string(), Kind::BadValue, 400, "`api_region` must be an AWS region"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "profile_arn": "arn:aws:x' OR 1=1"}).to_string(), Kind::BadValue, 400, "profile_arn"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": token, "cli_db_path": "/nonexistent/x.db"}).to_string(), Kind::BadValue, 400, "exactly one of"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "cli_db_path": "/nonexistent/x.db"}).to_string(), Kind::BadValue, 400, ""),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "cli_db_base64": "!!not base64!!"}).to_string(), Kind::BadValue, 400, "base64"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "refresh_token": "tok\u{0}en"}).to_string(), Kind::BadValue, 400, "control characters"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Admin, json!({"name": "a", "creds": {"refreshToken": "t", "clientId": "c\u{0}", "clientSecret": "s", "region": "us-east-1"}}).to_string(), Kind::BadValue, 400, ""),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::Nobody, json!({"name": "a", "refresh_token": token}).to_string(), Kind::BadValue, 401, "Missing API key"),
        ("/admin/accounts", "POST", "/admin/accounts".into(), As::User, json!({"name": "a", "refresh_token": token}).to_string(), Kind::BadValue, 403, "not an admin key"),
        ("/admin/accounts/{id}/enable", "POST", format!("/admin/accounts/{u}/enable"), As::Admin, String::new(), Kind::UnknownId, 404, "account 999999"),
        ("/admin/accounts/{id}/disable", "POST", format!("/admin/accounts/{u}/disable"), As::Admin, String::new(), Kind::UnknownId, 404, "account 999999"),
        ("/admin/accounts/{id}/refresh", "POST", format!("/admin/accounts/{u}/refresh"), As::Admin, String::new(), Kind::UnknownId, 404, "account 999999"),
        ("/admin/accounts/{id}", "DELETE", format!("/admin/accounts/{u}"), As::Admin, String::new(), Kind::UnknownId, 404, "account 999999"),
        ("/admin/accounts/{id}", "DELETE", format!("/admin/accounts/{a}"), As::Agent, String::new(), Kind::BadValue, 403, "not an admin key"),
        // Users.
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": 5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "quota_limit": "lots"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "rpm_limit": -1}).to_string(), Kind::WrongType, 400, "invalid value"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "agent_id": "1"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `name`"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "agent_id": u}).to_string(), Kind::UnknownId, 404, "agent 999999"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x", "quota_limit": -5}).to_string(), Kind::BadValue, 400, "quota_limit"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "   "}).to_string(), Kind::BadValue, 400, NAME_RULE),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "x".repeat(101)}).to_string(), Kind::BadValue, 400, "got 101 characters"),
        ("/admin/users", "POST", "/admin/users".into(), As::Admin, json!({"name": "taken"}).to_string(), Kind::BadValue, 409, "already exists"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({"rpm_limit": "x"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({"name": 5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({}).to_string(), Kind::Missing, 400, "Nothing to update"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({"nmae": "y"}).to_string(), Kind::UnknownField, 400, "unknown field `nmae`"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{u}"), As::Admin, json!({"name": "y"}).to_string(), Kind::UnknownId, 404, "user 999999"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({"status": "banana"}).to_string(), Kind::BadValue, 400, "banana"),
        ("/admin/users/{id}", "PATCH", format!("/admin/users/{pu}"), As::Admin, json!({"name": "acme-user"}).to_string(), Kind::BadValue, 409, "already exists"),
        ("/admin/users/{id}", "DELETE", format!("/admin/users/{u}"), As::Admin, String::new(), Kind::UnknownId, 404, "user 999999"),
        // Keys.
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": 5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": "1"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": pu, "allowed_models": "auto"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": pu, "allowed_models": [5]}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": pu, "rpm_limit": "fast"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": pu, "expires_at": "tomorrow"}).to_string(), Kind::WrongType, 400, "Invalid request body"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `kind`"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference"}).to_string(), Kind::Missing, 400, "needs `user_id`"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "agent"}).to_string(), Kind::Missing, 400, "needs `agent_id`"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "admin", "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": u}).to_string(), Kind::UnknownId, 404, "user 999999"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "agent", "agent_id": u}).to_string(), Kind::UnknownId, 404, "agent 999999"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "root"}).to_string(), Kind::BadValue, 400, "root"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": pu, "quota_limit": -1}).to_string(), Kind::BadValue, 400, "quota_limit"),
        ("/admin/keys", "POST", "/admin/keys".into(), As::Admin, json!({"kind": "inference", "user_id": au, "agent_id": pu + 1000}).to_string(), Kind::BadValue, 404, "not found"),
        ("/admin/keys/{id}", "DELETE", format!("/admin/keys/{u}"), As::Admin, String::new(), Kind::UnknownId, 404, "API key"),
        // Quotas.
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "id": "1", "limit": 1}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "id": pu, "limit": "x"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"id": pu, "limit": 1}).to_string(), Kind::Missing, 400, "missing field `subject`"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "limit": 1}).to_string(), Kind::Missing, 400, "missing field `id`"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "id": pu, "limit": 1, "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "id": u, "limit": 1}).to_string(), Kind::UnknownId, 404, "999999"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "key", "id": u, "limit": 1}).to_string(), Kind::UnknownId, 404, "999999"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "agent", "id": u, "limit": 1}).to_string(), Kind::UnknownId, 404, "999999"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "planet", "id": pu, "limit": 1}).to_string(), Kind::BadValue, 400, "`subject` must be"),
        ("/admin/quotas/set", "POST", "/admin/quotas/set".into(), As::Admin, json!({"subject": "user", "id": pu, "limit": -1}).to_string(), Kind::BadValue, 400, "`limit`"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "user", "id": pu, "amount": "x"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "user", "id": pu}).to_string(), Kind::Missing, 400, "`amount` is required"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "user", "id": pu, "amount": 1, "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "user", "id": u, "amount": 1}).to_string(), Kind::UnknownId, 404, "999999"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "user", "id": pu, "amount": i64::MAX}).to_string(), Kind::BadValue, 400, "micro-credits"),
        ("/admin/quotas/add", "POST", "/admin/quotas/add".into(), As::Admin, json!({"subject": "agent", "id": ag, "amount": -1_000_000_000}).to_string(), Kind::BadValue, 409, "negative"),
        // Aliases, combos, prices.
        ("/admin/aliases/{name}", "PUT", "/admin/aliases/fast".into(), As::Admin, json!({"model": 7}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/aliases/{name}", "PUT", "/admin/aliases/fast".into(), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `model`"),
        ("/admin/aliases/{name}", "PUT", "/admin/aliases/fast".into(), As::Admin, json!({"model": "auto", "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/aliases/{name}", "DELETE", "/admin/aliases/nope".into(), As::Admin, String::new(), Kind::UnknownId, 404, "alias `nope`"),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, json!({"members": "auto"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, json!({"members": [5]}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `members`"),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, json!({"members": ["auto"], "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/combos/{name}", "PUT", "/admin/combos/duo".into(), As::Admin, json!({"members": []}).to_string(), Kind::BadValue, 400, "at least one"),
        ("/admin/combos/{name}", "DELETE", "/admin/combos/nope".into(), As::Admin, String::new(), Kind::UnknownId, 404, "combo `nope`"),
        ("/admin/prices/{model}", "PUT", "/admin/prices/claude-sonnet-4.5".into(), As::Admin, json!({"input_per_m": "1", "output_per_m": 1}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/prices/{model}", "PUT", "/admin/prices/claude-sonnet-4.5".into(), As::Admin, json!({"input_per_m": 1}).to_string(), Kind::Missing, 400, "missing field `output_per_m`"),
        ("/admin/prices/{model}", "PUT", "/admin/prices/claude-sonnet-4.5".into(), As::Admin, json!({"input_per_m": 1, "output_per_m": 1, "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/prices/{model}", "PUT", "/admin/prices/claude-sonnet-4.5".into(), As::Admin, json!({"input_per_m": -1, "output_per_m": 1}).to_string(), Kind::BadValue, 400, "negative"),
        // Agents.
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, json!({"name": 5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `name`"),
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, json!({"name": "x", "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, json!({"name": ""}).to_string(), Kind::BadValue, 400, NAME_RULE),
        ("/admin/agents", "POST", "/admin/agents".into(), As::Admin, json!({"name": "acme"}).to_string(), Kind::BadValue, 409, "already exists"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{ag}/topup"), As::Admin, json!({"amount": "lots"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{ag}/topup"), As::Admin, json!({}).to_string(), Kind::Missing, 400, "missing field `amount`"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{ag}/topup"), As::Admin, json!({"amount": 1, "surprise": 1}).to_string(), Kind::UnknownField, 400, "unknown field `surprise`"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{u}/topup"), As::Admin, json!({"amount": 5}).to_string(), Kind::UnknownId, 404, "agent 999999"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{ag}/topup"), As::Admin, json!({"amount": 0}).to_string(), Kind::BadValue, 400, "positive"),
        ("/admin/agents/{id}/topup", "POST", format!("/admin/agents/{ag}/topup"), As::Admin, json!({"amount": -5}).to_string(), Kind::BadValue, 400, "positive"),
        // The user API.
        ("/user/keys", "POST", "/user/keys".into(), As::User, json!({"rpm_limit": "fast"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/user/keys", "POST", "/user/keys".into(), As::User, json!({"name": ["a"]}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/user/keys", "POST", "/user/keys".into(), As::User, json!({"kind": "admin"}).to_string(), Kind::UnknownField, 400, "unknown field `kind`"),
        ("/user/keys", "POST", "/user/keys".into(), As::User, json!({"quota_limit": -1}).to_string(), Kind::BadValue, 400, "quota_limit"),
        ("/user/keys", "POST", "/user/keys".into(), As::User, json!({"expires_at": "2026-13-45"}).to_string(), Kind::BadValue, 400, "Invalid request body"),
        ("/user/keys", "POST", "/user/keys".into(), As::Agent, json!({}).to_string(), Kind::BadValue, 403, "does not belong to a user"),
        ("/user/keys/{id}", "DELETE", format!("/user/keys/{u}"), As::User, String::new(), Kind::UnknownId, 404, "API key"),
        ("/user/keys/{id}", "DELETE", format!("/user/keys/{pk}"), As::User, String::new(), Kind::UnknownId, 404, "not found"),
        // The agent API.
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, json!({"name": 5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, json!({"name": "x", "rpm_limit": "x"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, json!({}).to_string(), Kind::Missing, 400, "missing field `name`"),
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, json!({"nme": "x"}).to_string(), Kind::UnknownField, 400, "unknown field `nme`"),
        ("/agent/users", "POST", "/agent/users".into(), As::Agent, json!({"name": "x", "quota_limit": 5}).to_string(), Kind::UnknownField, 400, "unknown field `quota_limit`"),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{au}"), As::Agent, json!({"status": 1}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{au}"), As::Agent, json!({}).to_string(), Kind::Missing, 400, "Nothing to update"),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{au}"), As::Agent, json!({"agent_id": ag}).to_string(), Kind::UnknownField, 400, "unknown field `agent_id`"),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{u}"), As::Agent, json!({"name": "y"}).to_string(), Kind::UnknownId, 404, "User 999999 not found"),
        ("/agent/users/{id}", "PATCH", format!("/agent/users/{pu}"), As::Agent, json!({"name": "y"}).to_string(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{au}/keys"), As::Agent, json!({"rpm_limit": "x"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{au}/keys"), As::Agent, json!({"user_id": pu}).to_string(), Kind::UnknownField, 400, "unknown field `user_id`"),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{u}/keys"), As::Agent, json!({}).to_string(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/keys", "POST", format!("/agent/users/{pu}/keys"), As::Agent, json!({}).to_string(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/keys/{key_id}", "DELETE", format!("/agent/users/{au}/keys/{u}"), As::Agent, String::new(), Kind::UnknownId, 404, "API key"),
        ("/agent/users/{id}/keys/{key_id}", "DELETE", format!("/agent/users/{u}/keys/{auk}"), As::Agent, String::new(), Kind::UnknownId, 404, "User 999999"),
        ("/agent/users/{id}/keys/{key_id}", "DELETE", format!("/agent/users/{au}/keys/{pk}"), As::Agent, String::new(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/keys/{key_id}", "DELETE", format!("/agent/users/{pu}/keys/{pk}"), As::Agent, String::new(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({"amount": "lots"}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({"amount": 1.5}).to_string(), Kind::WrongType, 400, "invalid type"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({}).to_string(), Kind::Missing, 400, "missing field `amount`"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({"amount": 1, "to": pu}).to_string(), Kind::UnknownField, 400, "unknown field `to`"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{u}/transfer"), As::Agent, json!({"amount": 1}).to_string(), Kind::UnknownId, 404, "User 999999"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{pu}/transfer"), As::Agent, json!({"amount": 1}).to_string(), Kind::UnknownId, 404, "not found"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({"amount": -3}).to_string(), Kind::BadValue, 400, "positive"),
        ("/agent/users/{id}/transfer", "POST", format!("/agent/users/{au}/transfer"), As::Agent, json!({"amount": 9_000_000_000_i64}).to_string(), Kind::BadValue, 409, "balance"),
    ];
    out.extend(rows.into_iter().map(case));
    out
}
