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
    let callbacks: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.0.1:{sink_port}/cb/{i}"))
        .collect();
    seed_topics(db, &[(topic.to_owned(), callbacks)]).await[0]
}

/// Inserts each topic (created now) with an active subscription (a day's lease, as if verified
/// now) for each of its callbacks, in one transaction; returns the topics' ids in order.
pub async fn seed_topics(db: &Db, topics: &[(String, Vec<String>)]) -> Vec<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    let far = now + 86_400_000;
    macro_rules! seed_on {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await.expect("tx");
            let mut ids = Vec::with_capacity(topics.len());
            for (topic, callbacks) in topics {
                let topic_id: i64 = sqlx::query_scalar(
                    "INSERT INTO topics (url, created_at) VALUES ($1, $2) RETURNING id",
                )
                .bind(topic)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .expect("topic");
                for callback in callbacks {
                    sqlx::query(
                        "INSERT INTO subscriptions (topic_id, callback, lease_seconds, state, verified_at, expires_at,
                             applied_request_id, created_at, updated_at)
                         VALUES ($1, $2, 86400, 'active', $3, $4, 0, $3, $3)",
                    )
                    .bind(topic_id)
                    .bind(callback)
                    .bind(now)
                    .bind(far)
                    .execute(&mut *tx)
                    .await
                    .expect("subscription");
                }
                ids.push(topic_id);
            }
            tx.commit().await.expect("commit");
            ids
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

/// The real `herald` binary (release build) serving on a free port: the hub measured as users
/// run it, in its own process, while the bench process plays publisher and subscribers.
pub struct HubProcess {
    child: std::process::Child,
    pub port: u16,
}

/// With `HERALD_BENCH_LOG=<file>`, the hub's log goes to that file (appended to), filtered by
/// `HERALD_BENCH_RUST_LOG` (default `info`): where its time went, for a profile of a run.
fn keep_log(cmd: &mut std::process::Command) {
    let Ok(path) = std::env::var("HERALD_BENCH_LOG") else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("HERALD_BENCH_LOG {path}: {e}"));
    let filter = std::env::var("HERALD_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into());
    let copy = file.try_clone().expect("log file handle");
    cmd.env("RUST_LOG", filter).stdout(file).stderr(copy);
}

impl HubProcess {
    /// Starts `herald serve` on `database_url` with `vars`, and waits until it answers.
    pub async fn start(database_url: &str, vars: &[(&str, &str)]) -> Self {
        herald::outbound::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        keep_log(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("herald starts");
        let client = reqwest::Client::new();
        let health = format!("http://127.0.0.1:{port}/health");
        let start = std::time::Instant::now();
        loop {
            if client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the hub did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self { child, port }
    }

    /// Starts `herald serve` as a worker (`HERALD_ROLE=worker` among `vars`): it serves no HTTP,
    /// so there is nothing to wait for.
    pub fn start_worker(database_url: &str, vars: &[(&str, &str)]) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        keep_log(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("herald starts"),
            port: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn hub_url(&self) -> String {
        format!("http://127.0.0.1:{}/hub", self.port)
    }

    /// Peak resident memory of the hub process alone.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// SIGTERM, and waits for the hub to stop.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    /// A bench that fails leaves no hub behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
