//! Reading Kiro's `getUsageLimits` answer. Its shape, from public Kiro clients (no official
//! documentation exists):
//!
//! ```json
//! { "usageBreakdownList": [ { "resourceType": "CREDIT", "currentUsage": 12,
//!     "currentUsageWithPrecision": 12.5, "usageLimit": 50, "usageLimitWithPrecision": 50.0,
//!     "nextDateReset": 1767225600,
//!     "freeTrialInfo": { "freeTrialStatus": "ACTIVE", "currentUsageWithPrecision": 3.0,
//!                        "usageLimitWithPrecision": 500.0 },
//!     "bonuses": [ { "status": "ACTIVE", "currentUsageWithPrecision": 0,
//!                    "usageLimitWithPrecision": 100, "expiresAt": "2026-03-01T00:00:00Z" } ] } ],
//!   "nextDateReset": 1767225600, "daysUntilReset": 12,
//!   "subscriptionInfo": { "subscriptionTitle": "KIRO FREE", "type": "..." },
//!   "userInfo": { "email": "...", "userId": "..." } }
//! ```
//!
//! Clients disagree on whether `nextDateReset` is epoch seconds or an ISO 8601 string, so
//! both are read. The totals add the main breakdown, an active free trial and active bonuses,
//! as Kiro's own usage display does (according to those clients; not confirmed with Kiro).

use kiro_layers::store::{LimitSnapshot, Timestamp};
use serde_json::Value;

fn number(v: &Value, precise: &str, plain: &str) -> f64 {
    v.get(precise)
        .and_then(Value::as_f64)
        .or_else(|| v.get(plain).and_then(Value::as_f64))
        .filter(|n| n.is_finite() && *n >= 0.0)
        .unwrap_or(0.0)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

/// Epoch seconds (or milliseconds, when too big to be seconds) or an RFC 3339 string.
fn instant(v: Option<&Value>) -> Option<Timestamp> {
    match v? {
        Value::Number(n) => {
            let n = n.as_f64()?;
            let ms = if n > 1e11 { n } else { n * 1000.0 };
            chrono::DateTime::from_timestamp_millis(ms as i64)
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc)),
        _ => None,
    }
}

fn active(part: &Value, status_field: &str, now: Timestamp) -> bool {
    match part.get(status_field).and_then(Value::as_str) {
        Some(status) => status.eq_ignore_ascii_case("ACTIVE"),
        None => instant(part.get("expiresAt")).is_some_and(|t| t > now),
    }
}

/// The snapshot of one answer, or why it is not one.
pub fn snapshot(answer: &Value, now: Timestamp) -> Result<LimitSnapshot, String> {
    let list = answer
        .get("usageBreakdownList")
        .and_then(Value::as_array)
        .ok_or("the answer has no usageBreakdownList")?;
    let main = list
        .iter()
        .find(|b| b.get("resourceType").and_then(Value::as_str) == Some("CREDIT"))
        .or_else(|| list.first())
        .ok_or("the usageBreakdownList is empty")?;
    let mut used = number(main, "currentUsageWithPrecision", "currentUsage");
    let mut limit = number(main, "usageLimitWithPrecision", "usageLimit");
    if let Some(trial) = main
        .get("freeTrialInfo")
        .filter(|t| active(t, "freeTrialStatus", now))
    {
        used += number(trial, "currentUsageWithPrecision", "currentUsage");
        limit += number(trial, "usageLimitWithPrecision", "usageLimit");
    }
    for bonus in main
        .get("bonuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| active(b, "status", now))
    {
        used += number(bonus, "currentUsageWithPrecision", "currentUsage");
        limit += number(bonus, "usageLimitWithPrecision", "usageLimit");
    }
    let subscription = answer.get("subscriptionInfo");
    Ok(LimitSnapshot {
        used,
        limit,
        resource: text(main.get("resourceType")),
        resets_at: instant(main.get("nextDateReset"))
            .or_else(|| instant(answer.get("nextDateReset"))),
        subscription: text(subscription.and_then(|s| s.get("subscriptionTitle")))
            .or_else(|| text(subscription.and_then(|s| s.get("type")))),
        email: text(answer.get("userInfo").and_then(|u| u.get("email"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn adds_the_active_trial_and_bonuses_to_the_credit_breakdown() {
        let answer = json!({
            "usageBreakdownList": [
                { "resourceType": "OTHER", "currentUsage": 999, "usageLimit": 1000 },
                { "resourceType": "CREDIT", "currentUsage": 12, "currentUsageWithPrecision": 12.5,
                  "usageLimit": 50, "usageLimitWithPrecision": 50.0,
                  "nextDateReset": 1_772_323_200,
                  "freeTrialInfo": { "freeTrialStatus": "ACTIVE",
                                     "currentUsageWithPrecision": 3.0, "usageLimitWithPrecision": 500.0 },
                  "bonuses": [
                      { "status": "ACTIVE", "currentUsage": 1, "usageLimit": 100 },
                      { "status": "EXPIRED", "currentUsage": 5, "usageLimit": 100 },
                      { "currentUsage": 2, "usageLimit": 10, "expiresAt": "2026-03-01T00:00:00Z" },
                      { "currentUsage": 2, "usageLimit": 10, "expiresAt": "2026-01-01T00:00:00Z" } ] } ],
            "subscriptionInfo": { "subscriptionTitle": "KIRO FREE", "type": "Q_DEVELOPER_STANDALONE_FREE" },
            "userInfo": { "email": "dev@example.com" }
        });
        let s = snapshot(&answer, now()).unwrap();
        assert_eq!(
            (s.used, s.limit),
            (12.5 + 3.0 + 1.0 + 2.0, 50.0 + 500.0 + 100.0 + 10.0)
        );
        assert_eq!(s.resource.as_deref(), Some("CREDIT"));
        assert_eq!(s.subscription.as_deref(), Some("KIRO FREE"));
        assert_eq!(s.email.as_deref(), Some("dev@example.com"));
        assert_eq!(
            s.resets_at.unwrap().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
    }

    #[test]
    fn reads_string_dates_plain_numbers_and_the_first_breakdown() {
        let answer = json!({
            "usageBreakdownList": [
                { "resourceType": "AGENTIC_REQUEST", "currentUsage": 7, "usageLimit": 50,
                  "freeTrialInfo": { "freeTrialStatus": "EXPIRED", "usageLimit": 500 } } ],
            "nextDateReset": "2026-02-15T00:00:00Z",
            "subscriptionInfo": { "type": "Q_DEVELOPER_STANDALONE_PRO" }
        });
        let s = snapshot(&answer, now()).unwrap();
        assert_eq!((s.used, s.limit), (7.0, 50.0));
        assert!((s.fraction() - 0.14).abs() < 1e-9);
        assert_eq!(
            s.resets_at.unwrap().to_rfc3339(),
            "2026-02-15T00:00:00+00:00"
        );
        assert_eq!(
            s.subscription.as_deref(),
            Some("Q_DEVELOPER_STANDALONE_PRO")
        );
        assert_eq!(s.email, None);
    }

    #[test]
    fn refuses_answers_without_a_breakdown_and_ignores_nonsense_numbers() {
        assert!(snapshot(&json!({}), now()).is_err());
        assert!(snapshot(&json!({ "usageBreakdownList": [] }), now()).is_err());
        assert!(snapshot(&json!({ "usageBreakdownList": "x" }), now()).is_err());
        let s = snapshot(
            &json!({ "usageBreakdownList": [ { "currentUsage": -3, "usageLimit": "lots",
                                               "nextDateReset": [1] } ] }),
            now(),
        )
        .unwrap();
        assert_eq!(
            (s.used, s.limit, s.resets_at, s.fraction()),
            (0.0, 0.0, None, 0.0)
        );
    }
}
