//! Console page times on a big ledger: one million usage rows (60 days, 1 000 users of 10
//! agents, 4 models, 5 accounts) in the SQLite store, then each page rendered through the
//! gateway's router in-process (`oneshot`: no network, so the figure is the page's own cost:
//! session check, the SQL aggregation, rendering). Run with
//! `cargo bench --bench console`; `CONSOLE_BENCH_ROWS` changes the ledger size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use kiro_gateway::app::assemble;
use kiro_gateway::config::{Cli, Command};
use kiro_gateway::tenancy::api::KeyOptions;
use kiro_layers::store::{KeyKind, NewUser, UsageRow};
use kiro_layers::traits::UsageStatus;
use kiro_layers::usage::MemoryUsageSink;
use tower::ServiceExt;

const ROOT: &str = "bench-root-admin-key";

struct Setup {
    router: axum::Router,
    admin: String,
    agent: String,
    user: String,
    _dir: tempfile::TempDir,
}

async fn login(router: &axum::Router, key: &str) -> String {
    let response = router
        .clone()
        .oneshot(
            Request::post("/console/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("key={key}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "bench login");
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn setup(rows: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let key_file = dir.path().join("secret.key");
    let argv = [
        "kiro-gateway",
        "serve",
        "--demo",
        "--log-level",
        "error",
        "--database-url",
        &db,
        "--admin-api-key",
        ROOT,
        "--secret-key-file",
        key_file.to_str().unwrap(),
    ];
    let Command::Serve(args) = Cli::parse_from(argv).command else {
        panic!("serve")
    };
    let gateway = assemble(&args, Arc::new(MemoryUsageSink::default()))
        .await
        .expect("gateway");
    let runtime = gateway.tenancy.clone().expect("tenancy");
    let t = &runtime.tenancy;
    let store = &t.store;
    let mut agents = Vec::new();
    for a in 0..10 {
        agents.push(store.create_agent(&format!("agent-{a}")).await.unwrap().id);
    }
    let mut users = Vec::new();
    for u in 0..1000 {
        let agent = agents[u % agents.len()];
        let user = store
            .create_user(NewUser {
                agent_id: Some(agent),
                name: format!("user-{u}"),
                quota_limit: None,
                rpm_limit: None,
            })
            .await
            .unwrap();
        users.push((user.id, agent));
    }
    t.reload_keys_and_quota().await.unwrap();
    let caller = kiro_gateway::tenancy::keys::Caller::Cli;
    let options = || KeyOptions {
        name: None,
        expires_at: None,
        allowed_models: Vec::new(),
        rpm_limit: None,
        max_concurrency: None,
        quota_limit: None,
    };
    let user_key = kiro_gateway::tenancy::api::create_key(
        t,
        &caller,
        KeyKind::Inference,
        Some(users[0].0),
        Some(users[0].1),
        options(),
    )
    .await
    .unwrap();
    let agent_key = kiro_gateway::tenancy::api::create_key(
        t,
        &caller,
        KeyKind::Agent,
        None,
        Some(users[0].1),
        options(),
    )
    .await
    .unwrap();
    let models = [
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
        "claude-opus-4.5",
        "auto",
    ];
    let now = chrono::Utc::now();
    let started = Instant::now();
    let batch = 10_000;
    for start in (0..rows).step_by(batch) {
        let chunk: Vec<UsageRow> = (start..(start + batch).min(rows))
            .map(|i| {
                let (user, agent) = users[i % users.len()];
                UsageRow {
                    request_id: format!("bench-{i}"),
                    attempt: 1,
                    user_id: Some(user),
                    agent_id: Some(agent),
                    key_id: Some(100_000 + (i % users.len()) as i64),
                    requested_model: models[i % 4].to_owned(),
                    resolved_model: models[i % 4].to_owned(),
                    account_id: Some(format!("{}", 1 + i % 5)),
                    input_tokens: 1000 + (i % 500) as u64,
                    output_tokens: 100 + (i % 300) as u64,
                    cache_read_tokens: 0,
                    cache_write_tokens: 0,
                    credits: 0.01,
                    status: if i % 50 == 0 {
                        UsageStatus::UpstreamError
                    } else {
                        UsageStatus::Ok
                    },
                    time_to_first_token: Some(Duration::from_millis(300)),
                    duration: Duration::from_secs(2),
                    // Spread over 60 days, newest last.
                    started_at: now
                        - chrono::Duration::seconds(((rows - i) * 5_184_000 / rows) as i64),
                    charged: 1_000,
                    account_kind: None,
                    estimated: false,
                }
            })
            .collect();
        store.insert_usage(&chunk).await.unwrap();
    }
    eprintln!("seeded {rows} usage rows in {:.1?}", started.elapsed());
    let router = gateway.router.clone();
    let admin = login(&router, ROOT).await;
    let agent = login(&router, &agent_key.secret).await;
    let user = login(&router, &user_key.secret).await;
    Setup {
        router,
        admin,
        agent,
        user,
        _dir: dir,
    }
}

async fn get(router: &axum::Router, cookie: &str, path: &str) {
    let response = router
        .clone()
        .oneshot(
            Request::get(path)
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
}

fn pages(c: &mut Criterion) {
    let rows = std::env::var("CONSOLE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let setup = runtime.block_on(setup(rows));
    let mut group = c.benchmark_group(format!("console_{rows}_rows"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let cases = [
        ("admin_overview", &setup.admin, "/console/admin"),
        ("admin_accounts", &setup.admin, "/console/admin/accounts"),
        ("admin_users_page1", &setup.admin, "/console/admin/users"),
        (
            "admin_usage_by_day",
            &setup.admin,
            "/console/admin/usage?group_by=day",
        ),
        (
            "admin_usage_by_user",
            &setup.admin,
            "/console/admin/usage?group_by=user",
        ),
        (
            "admin_usage_by_model_30d",
            &setup.admin,
            "/console/admin/usage?group_by=model&from=2026-11-04",
        ),
        (
            "admin_usage_csv_by_key",
            &setup.admin,
            "/console/admin/usage.csv?group_by=key",
        ),
        ("agent_overview", &setup.agent, "/console/agent"),
        ("user_overview", &setup.user, "/console/user"),
    ];
    for (name, cookie, path) in cases {
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| get(&setup.router, cookie, path))
        });
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
