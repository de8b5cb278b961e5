//! A fresh PostgreSQL database per test, so tests never see each other's rows (or rows
//! encrypted under another test's secret).

use tokio_postgres::NoTls;

/// Creates an empty database on the server of `admin` (a `TEST_DATABASE_URL`) and returns its URL.
pub async fn fresh_pg_database(admin: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin, NoTls)
        .await
        .expect("TEST_DATABASE_URL must point at a running PostgreSQL");
    tokio::spawn(connection);
    let name = format!("kg_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
