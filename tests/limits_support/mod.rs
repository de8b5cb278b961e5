//! The shared-limits test servers: which engines to test, each as several clients ("processes"),
//! and the Redis server binary for tests that stop and restart one.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kiro_gateway::store::Secret;
use kiro_gateway::tenancy::shared_limits::{
    CounterEngine, PgCounters, RedisCounters, DEFAULT_PG_POOL,
};

/// An empty database on the server of `admin` (a `TEST_DATABASE_URL`), and its URL. (Not
/// store_support's copy: process_support includes that one, and a test may use both.)
pub async fn new_pg_database(admin: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .expect("TEST_DATABASE_URL must point at a running PostgreSQL");
    tokio::spawn(connection);
    let name = format!("kg_limits_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// The value of `name`, or `None`; under CI (`CI` set) a missing server fails the test.
pub fn server_url(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{name} is not set under CI: scripts/test.sh starts {what} for these tests")
        }
        _ => {
            eprintln!("{name} is not set: skipping the {what} part (scripts/test.sh sets it)");
            None
        }
    }
}

/// A fresh, migrated PostgreSQL database, if a server is configured.
pub async fn pg_database() -> Option<String> {
    let admin = server_url("TEST_DATABASE_URL", "PostgreSQL")?;
    let url = new_pg_database(&admin).await;
    kiro_gateway::store::open(&url, &Secret::from_bytes([7; 32]))
        .await
        .expect("the store migrates the fresh database");
    Some(url)
}

/// Every configured engine, each as `clients` independent clients.
pub async fn engines(clients: usize) -> Vec<(&'static str, Vec<Arc<dyn CounterEngine>>)> {
    let mut out = Vec::new();
    if let Some(url) = pg_database().await {
        let list = (0..clients)
            .map(|_| {
                Arc::new(PgCounters::connect(&url, DEFAULT_PG_POOL).unwrap())
                    as Arc<dyn CounterEngine>
            })
            .collect();
        out.push(("postgres", list));
    }
    if let Some(url) = server_url("TEST_REDIS_URL", "Redis") {
        let list = (0..clients)
            .map(|_| Arc::new(RedisCounters::connect(&url).unwrap()) as Arc<dyn CounterEngine>)
            .collect();
        out.push(("redis", list));
    }
    out
}

/// Waits while the current minute (engine windows are whole minutes of the epoch) has less
/// than 10 s left, so a burst of requests falls in one window.
pub async fn away_from_window_end() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % 60_000;
    if into > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into + 200) as u64)).await;
    }
}

/// A Redis server of the test's own (to stop and restart), on a fixed port in `dir`.
pub struct OwnRedis {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl OwnRedis {
    /// Starts `redis-server` (TEST_REDIS_SERVER or the one on PATH) on `port` (0 = free).
    pub fn start(dir: &std::path::Path, port: u16) -> Self {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let bin = std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (by its pid) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        *self = OwnRedis::start(&self.dir.clone(), self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
