//! `GET /getUsageLimits`, as strict as the real one is believed to be: a valid bearer token,
//! `origin=AI_EDITOR` and `resourceType=AGENTIC_REQUEST`, and no parameter it does not know
//! (`profileArn` and `isEmailRequired` are optional). The answer is configurable per profile
//! ARN, with a default, through [`super::FakeKiroHandle::set_usage_limits`].

use std::collections::HashMap;

use http::{Request, Response};
use serde_json::{json, Value};

use super::body::FakeBody;
use super::server::{bearer_rejection, json_response, State};

/// What the fake answers: a JSON body, or a status with Kiro's error shape.
#[derive(Debug, Clone, PartialEq)]
pub enum UsageLimitsAnswer {
    /// 200 with this body.
    Json(Value),
    /// This status with a `{"message": ...}` body.
    Status(u16),
}

/// The fake's usage-limits answers.
#[derive(Debug, Default)]
pub(crate) struct UsageLimitsState {
    /// For callers sending this `profileArn` (`""` for none).
    pub by_profile: HashMap<String, UsageLimitsAnswer>,
    /// For everyone else.
    pub default: Option<UsageLimitsAnswer>,
    /// Calls answered, accepted or not.
    pub calls: u64,
    /// The query string of the last call.
    pub last_query: Option<String>,
}

/// The default answer: a free plan with a trial, 12.5 + 3 of 50 + 500 credits used.
pub fn default_answer() -> Value {
    json!({
        "daysUntilReset": 12,
        "nextDateReset": 1_798_761_600,
        "subscriptionInfo": { "subscriptionTitle": "KIRO FREE", "type": "Q_DEVELOPER_STANDALONE_FREE" },
        "userInfo": { "email": "fake-user@example.com", "userId": "fake-user" },
        "usageBreakdownList": [ {
            "resourceType": "CREDIT", "displayName": "Credit", "unit": "INVOCATIONS",
            "currentUsage": 12, "currentUsageWithPrecision": 12.5,
            "usageLimit": 50, "usageLimitWithPrecision": 50.0,
            "nextDateReset": 1_798_761_600,
            "freeTrialInfo": { "freeTrialStatus": "ACTIVE", "currentUsage": 3,
                "currentUsageWithPrecision": 3.0, "usageLimit": 500, "usageLimitWithPrecision": 500.0 },
            "bonuses": []
        } ]
    })
}

const KNOWN: [&str; 4] = ["origin", "resourceType", "profileArn", "isEmailRequired"];

pub(crate) fn handle(
    state: &State,
    request: &Request<hyper::body::Incoming>,
) -> Response<FakeBody> {
    let query = request.uri().query().unwrap_or("").to_owned();
    {
        let mut limits = state.usage_limits();
        limits.calls += 1;
        limits.last_query = Some(query.clone());
    }
    if !state.bearer_is_valid(request) {
        return bearer_rejection();
    }
    let pairs: Vec<(String, String)> = reqwest::Url::parse(&format!("http://fake/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let invalid = |message: String| {
        json_response(
            400,
            json!({ "message": message, "__type": "com.amazon.aws.codewhisperer#ValidationException" }),
        )
    };
    if let Some((unknown, _)) = pairs.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return invalid(format!("fake: unknown parameter `{unknown}`"));
    }
    if get("origin") != Some("AI_EDITOR") {
        return invalid("fake: origin must be AI_EDITOR".into());
    }
    if get("resourceType") != Some("AGENTIC_REQUEST") {
        return invalid("fake: resourceType must be AGENTIC_REQUEST".into());
    }
    let profile = get("profileArn").unwrap_or("").to_owned();
    let answer = {
        let limits = state.usage_limits();
        limits
            .by_profile
            .get(&profile)
            .or(limits.default.as_ref())
            .cloned()
    }
    .unwrap_or_else(|| UsageLimitsAnswer::Json(default_answer()));
    match answer {
        UsageLimitsAnswer::Json(body) => json_response(200, body),
        UsageLimitsAnswer::Status(status) => json_response(
            status,
            json!({ "message": format!("fake: usage limits answer {status}") }),
        ),
    }
}
