//! Live connections at scale (run with `cargo bench --bench live`).
//!
//! Starts the real `herald` binary (release build, its own process) on a fresh database, issues
//! one live token per subscriber for one topic (`HERALD_BENCH_LIVE_CONNECTIONS`, 10,000), opens
//! one Server-Sent Events connection per subscriber from this process (plain sockets, one small
//! task each), then pushes `HERALD_BENCH_LIVE_PUBLISHES` (20) updates through the producer API,
//! one after another, each once every connection received the one before. Each body carries
//! the instant it was sent, so every receiver measures publish → receive. Prints p50/p95/p99
//! over all receipts, updates received per second, and the hub's memory per connection
//! (resident memory after connecting minus before, divided by the connections; connections
//! open in waves of `HERALD_BENCH_LIVE_WAVE`, 500).
//!
//! `HERALD_TEST_DATABASE=postgres` and `HERALD_TEST_POSTGRES_URL` select PostgreSQL.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

mod support;
use support::{HubProcess, database_url, env_usize};

const TOKEN: &str = "bench-producer-token";
const TOPIC: &str = "http://127.0.0.1:9/bench/live";

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Shared {
    ready: AtomicUsize,
    received: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
}

/// One SSE connection: counts `ready`, then records the latency of every update.
async fn follow(port: u16, token: String, shared: Arc<Shared>) {
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let request = format!(
        "GET /live/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        // Frames end with a blank line; chunked-encoding lines in between are ignored.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            if text.contains("event: ready") {
                shared.ready.fetch_add(1, Ordering::Relaxed);
            } else if text.contains("event: update") {
                let received = now_us();
                let sent = text
                    .split("sent=")
                    .nth(1)
                    .and_then(|rest| {
                        rest.split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u128>()
                            .ok()
                    })
                    .unwrap_or(received);
                let latency = received.saturating_sub(sent) as u64;
                shared
                    .latencies_us
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(latency);
                shared.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let connections = env_usize("HERALD_BENCH_LIVE_CONNECTIONS", 10_000);
    let publishes = env_usize("HERALD_BENCH_LIVE_PUBLISHES", 20);
    let url = database_url().await;
    let hub = HubProcess::start(
        &url,
        &[
            ("HERALD_PRODUCER_TOKEN", TOKEN),
            ("HERALD_LIVE_HEARTBEAT", "60s"),
        ],
    )
    .await;
    let pid = hub.pid();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", hub.port);

    // One token per subscriber, 16 requests in flight.
    let started = Instant::now();
    let tokens: Vec<String> = futures::stream::iter(0..connections)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let answer: serde_json::Value = client
                    .post(format!("{base}/api/v1/live/tokens"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"subscriber": format!("reader-{i}"), "topics": [TOPIC]}))
                    .send()
                    .await
                    .expect("token issued")
                    .json()
                    .await
                    .expect("json");
                answer["token"].as_str().expect("token").to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    println!(
        "issued {connections} tokens in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let before_mb = rss_mb(pid);
    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        received: AtomicUsize::new(0),
        latencies_us: Mutex::new(Vec::with_capacity(connections * publishes)),
    });
    let started = Instant::now();
    // In waves, as clients arrive: the memory measured is what held connections cost, not the
    // transient peak of thousands of handshakes at once.
    let wave = env_usize("HERALD_BENCH_LIVE_WAVE", 500).max(1);
    for (i, token) in tokens.into_iter().enumerate() {
        tokio::spawn(follow(hub.port, token, shared.clone()));
        if (i + 1) % wave == 0 {
            wait_for(&shared.ready, i + 1, "a wave of connections to be ready").await;
        }
    }
    wait_for(&shared.ready, connections, "every connection to be ready").await;
    let connect_s = started.elapsed().as_secs_f64();
    let after_mb = rss_mb(pid);
    println!("{connections} connections ready in {connect_s:.1} s");

    let started = Instant::now();
    let mut push_ms = Vec::new();
    for n in 1..=publishes {
        let body = format!("update {n} sent={}", now_us());
        let pushed = Instant::now();
        let status = client
            .post(format!(
                "{base}/api/v1/publish?topic={}",
                url::form_urlencoded::byte_serialize(TOPIC.as_bytes()).collect::<String>()
            ))
            .bearer_auth(TOKEN)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .expect("pushed")
            .status();
        assert_eq!(status.as_u16(), 202);
        push_ms.push(pushed.elapsed().as_secs_f64() * 1000.0);
        wait_for(&shared.received, connections * n, "every receipt").await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = shared
        .latencies_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    latencies.sort_unstable();
    let per_connection_kb = (after_mb - before_mb).max(0.0) * 1024.0 / connections as f64;
    let (p50, p95, p99) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
    let rate = latencies.len() as f64 / elapsed;
    push_ms.sort_by(f64::total_cmp);
    let push_p50 = push_ms.get(push_ms.len() / 2).copied().unwrap_or(0.0);
    println!(
        "the push API answered in {push_p50:.1} ms (p50): the fan-out into {connections} backlogs"
    );
    let engine = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "| backend | connections | publishes | publish→receive p50 / p95 / p99 | updates received/s | hub RSS before → after connecting | per connection |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {engine} | {connections} | {publishes} | {p50:.1} / {p95:.1} / {p99:.1} ms | {rate:.0} | {before_mb:.1} → {after_mb:.1} MB | {per_connection_kb:.1} KB |"
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "live", "backend": engine, "connections": connections,
            "publishes": publishes, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "received_per_s": rate, "rss_before_mb": before_mb, "rss_after_mb": after_mb,
            "per_connection_kb": per_connection_kb, "hub_peak_rss_mb": hub.peak_rss_mb(),
            "push_p50_ms": push_p50,
        })
    );
    hub.stop();
}

async fn wait_for(counter: &AtomicUsize, target: usize, what: &str) {
    let start = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}: {} of {target}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
