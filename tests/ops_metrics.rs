//! `/metrics` parses as Prometheus text and its figures move as requests are served; `/ready`
//! follows the accounts and the registered checks.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use futures_util::future::BoxFuture;
use kiro_gateway::ops::ReadinessCheck;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text
            .parse()
            .unwrap_or_else(|_| panic!("bad value {text:?}")),
    }
}

/// A strict parser of the Prometheus text format (0.0.4): every sample belongs to a family
/// declared by `# TYPE` before it, names and labels are well formed, label values are properly
/// quoted and escaped, no series repeats, and histogram buckets are cumulative up to `+Inf`,
/// which equals `_count`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut series = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().expect("name after # HELP/TYPE");
            assert!(valid_name(name, true), "bad family name {name:?}");
            if keyword == "TYPE" {
                let kind = parts.next().expect("type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type {kind:?}"
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice for {name}"
                );
            } else {
                assert_eq!(keyword, "HELP", "unknown comment {line:?}");
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment {line:?}");
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let name = &line[..open];
                let (labels, after) = parse_labels(&line[open + 1..]);
                (name, labels, after)
            }
            None => {
                let (name, rest) = line.split_once(' ').expect("value after name");
                (name, HashMap::new(), rest)
            }
        };
        assert!(valid_name(name, true), "bad metric name {name:?}");
        let mut fields = rest.trim_start_matches(' ').split(' ');
        let value = parse_value(fields.next().expect("value"));
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().expect("timestamp");
        }
        assert!(fields.next().is_none(), "trailing text in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| {
                    types
                        .get(*base)
                        .is_some_and(|t| t == "histogram" || t == "summary")
                })
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample {name} before its TYPE");
        let mut key: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        key.sort();
        assert!(
            series.insert(format!("{name}{key:?}")),
            "series twice: {line}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&types, &samples);
    samples
}

fn parse_labels(text: &str) -> (HashMap<String, String>, &str) {
    let mut labels = HashMap::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find('=').expect("label =");
        let name = &rest[..eq];
        assert!(valid_name(name, false), "bad label name {name:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .expect("quoted label value");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (at, c) = chars.next().expect("unterminated label value");
            match c {
                '\\' => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => panic!("bad escape \\{other}"),
                },
                '"' => break at,
                '\n' => panic!("raw newline in label value"),
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label twice"
        );
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) {
    for (family, kind) in types {
        if kind != "histogram" {
            continue;
        }
        let mut groups: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = parse_value(s.labels.get("le").expect("bucket without le"));
            let mut rest: Vec<_> = s.labels.iter().filter(|(k, _)| *k != "le").collect();
            rest.sort();
            groups
                .entry(format!("{rest:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (group, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{group} not cumulative"
            );
            let last = buckets.last().unwrap();
            assert!(last.0.is_infinite(), "{family}{group} has no +Inf bucket");
            let count = samples
                .iter()
                .find(|s| {
                    let mut rest: Vec<_> = s.labels.iter().collect();
                    rest.sort();
                    s.name == format!("{family}_count") && format!("{rest:?}") == group
                })
                .expect("_count");
            assert_eq!(count.value, last.1, "{family}{group}: +Inf bucket != count");
        }
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(h: &Harness) -> Vec<Sample> {
    let response = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    parse_prometheus(&response.text().await.unwrap())
}

const REQUESTS: &str = "kiro_gateway_requests_total";

#[tokio::test]
async fn metrics_parse_and_move_as_requests_are_served() {
    let h = start().await;
    let before = scrape(&h).await;
    assert_eq!(value(&before, "kiro_gateway_usage_queue_depth", &[]), 0.0);
    assert_eq!(value(&before, "kiro_gateway_usage_dropped_total", &[]), 0.0);
    let sonnet_ok = [
        ("endpoint", "chat_completions"),
        ("model", "claude-sonnet-4.5"),
        ("status", "200"),
    ];

    let plain = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4.5", "hi", false),
        )
        .await;
    assert_eq!(plain.status(), 200);
    plain.text().await.unwrap();
    let streamed = h
        .post(
            "/v1/chat/completions",
            chat("claude-sonnet-4-5", "hi", true),
        )
        .await;
    assert_eq!(streamed.status(), 200);
    streamed.text().await.unwrap();
    let unknown = h
        .post(
            "/v1/chat/completions",
            chat("my-secret-model-name", "hi", false),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let overflow = h
        .post(
            "/v1/messages",
            serde_json::json!({
                "model": "claude-sonnet-4.5", "max_tokens": 100,
                "messages": [{"role": "user", "content": "[fake:status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD]"}],
            }),
        )
        .await;
    assert_eq!(overflow.status(), 400);
    h.settle(3).await;

    let after = scrape(&h).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        moved(REQUESTS, &sonnet_ok),
        2.0,
        "the alias resolves to the same model label"
    );
    assert_eq!(
        moved(REQUESTS, &[("model", "other"), ("status", "404")]),
        1.0
    );
    assert_eq!(
        moved(
            REQUESTS,
            &[
                ("endpoint", "messages"),
                ("model", "claude-sonnet-4.5"),
                ("status", "400")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "kiro_gateway_upstream_errors_total",
            &[("reason", "CONTENT_LENGTH_EXCEEDS_THRESHOLD")]
        ),
        1.0
    );
    let model_labels = [
        ("endpoint", "chat_completions"),
        ("model", "claude-sonnet-4.5"),
    ];
    assert_eq!(
        moved("kiro_gateway_request_duration_seconds_count", &model_labels),
        2.0
    );
    assert_eq!(
        moved(
            "kiro_gateway_time_to_first_token_seconds_count",
            &model_labels
        ),
        2.0
    );
    assert!(
        moved(
            "kiro_gateway_overhead_seconds_count",
            &[("endpoint", "chat_completions")]
        ) >= 3.0
    );
    assert!(value(&after, "kiro_gateway_token_refreshes_total", &[]) >= 1.0);
    let account = h.gateway.credentials[0].account_id().to_owned();
    assert_eq!(
        value(
            &after,
            "kiro_gateway_account_state",
            &[("account", &account), ("state", "healthy")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "kiro_gateway_account_state",
            &[("account", &account), ("state", "disabled")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "kiro_gateway_account_in_flight",
            &[("account", &account)]
        ),
        0.0
    );
    assert_eq!(value(&after, "kiro_gateway_usage_dropped_total", &[]), 0.0);
    // Bounded labels: no raw client model string, no key, no user.
    for sample in &after {
        for value in sample.labels.values() {
            assert!(
                !value.contains("my-secret-model-name") && !value.contains(KEY),
                "{sample:?}"
            );
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn ready_needs_an_account_and_every_check() {
    let none = start_gateway(serve_args(&[])).await;
    let response = none.http.get(none.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains("no Kiro account"),
        "{body}"
    );
    let live = none.http.get(none.url("/health")).send().await.unwrap();
    assert_eq!(live.status(), 200, "liveness does not depend on accounts");
    none.shutdown().await;

    let one = start().await;
    let response = one.http.get(one.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["accounts"]["usable"], 1);

    let database_down = || -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("connection refused".to_owned()) })
    };
    one.gateway.readiness.add(
        "database",
        Arc::new(database_down) as Arc<dyn ReadinessCheck>,
    );
    let response = one.http.get(one.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "connection refused");
    assert!(body["reason"].as_str().unwrap().contains("database"));
    one.shutdown().await;
}
