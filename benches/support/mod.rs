//! What the benchmarks share: a fresh database, seeded subscriptions, the publish ping and
//! memory readings. (Each bench is its own crate; what one of them leaves unused is allowed.)
#![allow(dead_code)]

use std::sync::atomic::AtomicUsize;

use herald::store::Db;
use tokio::sync::Notify;

pub struct Sink {
    pub received: AtomicUsize,
    pub notify: Notify,
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn database_url() -> String {
    let name = format!("herald_bench_{}", herald::domain::challenge::random_hex(6));
    if std::env::var("HERALD_TEST_DATABASE").is_ok_and(|v| v.starts_with("postgres")) {
        let admin = std::env::var("HERALD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        format!("{base}/{name}")
    } else {
        format!(
            "sqlite://{}",
            std::env::temp_dir().join(format!("{name}.db")).display()
        )
    }
}

/// Inserts `n` active subscriptions of `topic` with callbacks on the sink.
pub async fn seed(db: &Db, topic: &str, sink_port: u16, n: usize) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let far = now + 86_400_000;
    macro_rules! seed_on {
        ($pool:expr) => {{
            let topic_id: i64 = sqlx::query_scalar("INSERT INTO topics (url, created_at) VALUES ($1, $2) RETURNING id")
                .bind(topic)
                .bind(now)
                .fetch_one($pool)
                .await
                .expect("topic");
            let mut tx = $pool.begin().await.expect("tx");
            for i in 0..n {
                sqlx::query(
                    "INSERT INTO subscriptions (topic_id, callback, lease_seconds, state, verified_at, expires_at,
                         applied_request_id, created_at, updated_at)
                     VALUES ($1, $2, 86400, 'active', $3, $4, 0, $3, $3)",
                )
                .bind(topic_id)
                .bind(format!("http://127.0.0.1:{sink_port}/cb/{i}"))
                .bind(now)
                .bind(far)
                .execute(&mut *tx)
                .await
                .expect("subscription");
            }
            tx.commit().await.expect("commit");
            topic_id
        }};
    }
    match db {
        Db::Sqlite(pool) => seed_on!(pool),
        Db::Pg(pool) => seed_on!(pool),
    }
}

pub async fn delivered(db: &Db) -> i64 {
    let sql = "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
    }
}

pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

pub fn current_rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub async fn ping(client: &reqwest::Client, hub: &str, topic: &str) {
    let status = client
        .post(hub)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "hub.mode=publish&hub.url={}",
            url::form_urlencoded::byte_serialize(topic.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("ping")
        .status();
    assert_eq!(status.as_u16(), 204);
}
