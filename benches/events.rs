//! A producer's event stream catching up (run with `cargo bench --bench events`).
//!
//! The real `herald` binary (release build, its own process) on a database holding
//! `HERALD_BENCH_EVENTS` (100,000) recorded events, seeded directly; a consumer in this process
//! opens `GET /api/v1/events/stream` with `Last-Event-ID: 0` — 100,000 events behind — and reads
//! until it has them all. Reports events/s and the hub's CPU per event; then the same through
//! the page API (`GET /api/v1/events?after=…&limit=1000`). Target: catch-up at 20,000 events/s
//! or more. `HERALD_TEST_DATABASE=postgres` selects PostgreSQL.

use std::time::Instant;

use herald::store::Db;

mod support;
use support::{HubProcess, database_url, env_usize};

const TOKEN: &str = "bench-producer-token";

/// The hub process's CPU time so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn seed(db: &Db, n: usize) {
    let now = chrono::Utc::now().timestamp_millis();
    let detail =
        r#"{"expires_at":"2026-12-17T00:00:00.000Z","lease_seconds":864000,"renewal":false}"#;
    let (sqlite, pg) = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
         INSERT INTO events (id, created_at, type, topic, subscription_id, callback_host, detail)
         SELECT i, $2, 'subscription.activated', 'https://site.example/users/' || (i % 1000) || '.atom',
                i, 'reader.example:443', $3 FROM n",
        "INSERT INTO events (id, created_at, type, topic, subscription_id, callback_host, detail)
         SELECT i, $2, 'subscription.activated', 'https://site.example/users/' || (i % 1000) || '.atom',
                i, 'reader.example:443', $3 FROM generate_series(1, $1::bigint) AS i",
    );
    let count = "UPDATE event_counter SET last_id = $1 WHERE id = 1";
    macro_rules! seed_on {
        ($pool:expr, $insert:expr) => {{
            sqlx::query($insert)
                .bind(n as i64)
                .bind(now)
                .bind(detail)
                .execute($pool)
                .await
                .expect("seed");
            sqlx::query(count)
                .bind(n as i64)
                .execute($pool)
                .await
                .expect("counter");
        }};
    }
    match db {
        Db::Sqlite(p) => seed_on!(p, sqlite),
        Db::Pg(p) => seed_on!(p, pg),
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("HERALD_BENCH_EVENTS", 100_000);
    let url = database_url().await;
    let hub = HubProcess::start(&url, &[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let db = Db::connect(&url).await.expect("database");
    seed(&db, n).await;
    let backend = match db {
        Db::Sqlite(_) => "SQLite",
        Db::Pg(_) => "PostgreSQL",
    };
    let client = reqwest::Client::new();

    // The stream, 100,000 behind.
    let cpu = cpu_seconds(hub.pid());
    let start = Instant::now();
    let response = client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/events/stream",
            hub.port
        ))
        .bearer_auth(TOKEN)
        .header("last-event-id", "0")
        .send()
        .await
        .expect("the stream opens");
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = response;
    let (mut seen, mut tail) = (0usize, Vec::<u8>::new());
    while seen < n {
        let chunk = body
            .chunk()
            .await
            .expect("bytes")
            .expect("the stream goes on");
        tail.extend_from_slice(&chunk);
        // Only whole frames are counted; a frame cut by the chunk waits for the rest.
        let Some(end) = tail.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let rest = tail.split_off(end + 2);
        seen += String::from_utf8_lossy(&tail)
            .lines()
            .filter(|l| l.starts_with("event: "))
            .count();
        tail = rest;
    }
    let stream_time = start.elapsed();
    let stream_cpu = cpu_seconds(hub.pid()) - cpu;
    drop(body);

    // The page API, 1,000 at a time.
    let cpu = cpu_seconds(hub.pid());
    let start = Instant::now();
    let (mut after, mut paged) = (0i64, 0usize);
    while paged < n {
        let page: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{}/api/v1/events?after={after}&limit=1000",
                hub.port
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        let items = page["items"].as_array().map_or(0, Vec::len);
        assert!(items > 0, "the page API ran dry at {after}");
        paged += items;
        after = page["next_cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .expect("cursor");
    }
    let page_time = start.elapsed();
    let page_cpu = cpu_seconds(hub.pid()) - cpu;

    println!("events bench, {backend}, {n} events behind");
    println!(
        "stream (Last-Event-ID: 0): {:.2} s = {:.0} events/s (hub CPU {:.1} µs per event)",
        stream_time.as_secs_f64(),
        n as f64 / stream_time.as_secs_f64(),
        stream_cpu * 1e6 / n as f64
    );
    println!(
        "pages of 1,000: {:.2} s = {:.0} events/s (hub CPU {:.1} µs per event)",
        page_time.as_secs_f64(),
        n as f64 / page_time.as_secs_f64(),
        page_cpu * 1e6 / n as f64
    );
    hub.stop();
}
