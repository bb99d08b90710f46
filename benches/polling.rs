//! Polling 10,000 feeds that never ping (run with `cargo bench --bench polling`).
//!
//! The real `herald` binary (release build, its own process, `HERALD_POLLING=all`) polls feeds
//! served by this process on 20 local ports, each feed with one subscriber whose callback is
//! also here. Feeds publish at varied rates — 1 % every 10 s, 9 % every 60 s, 85 % every 30 min
//! (nothing new within the run: they answer 304) — 3 % answer 429 with `Retry-After: 30` and 2 %
//! fail with 500. Time is compressed: the hub's bounds are 5 s – 10 min (`HERALD_POLL_MIN_INTERVAL`
//! / `_MAX_INTERVAL`) where a deployment would use 5 min – 24 h, so a feed's detection delay is
//! reported against its own period, which compression does not change.
//!
//! Three phases:
//! 1. **Wave**: every feed is due at once (a hub that just started with 10,000 feeds): the time
//!    until each has had its first poll gives the poller's throughput, with the rate limits off
//!    (`HERALD_POLL_RATE=off`, `HERALD_POLL_HOST_RATE=off`: the local feeds share one address).
//! 2. **Steady**: `HERALD_BENCH_SECONDS` (default 180) of schedules running; measured: polls,
//!    the share answered 304, each delivered entry's delay from its appearance to its arrival
//!    (p50 / p95 per class), and the hub's CPU per poll, from which the cost of 10,000 feeds at a
//!    mean 5-minute interval follows.
//! 3. **Second wave**: every feed due again at once, now that the hub knows them (conditional
//!    GETs, most answered 304: what a due poll usually is): the poller's throughput on them.
//!
//! `HERALD_BENCH_FEEDS` sets the number of feeds; `HERALD_TEST_DATABASE=postgres` selects
//! PostgreSQL.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, web};
use herald::store::Db;

mod support;
use support::{HubProcess, database_url, env_usize, seed_topics};

/// How a feed behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Fast,
    Medium,
    Slow,
    Limited,
    Failing,
}

impl Class {
    fn of(i: usize) -> Self {
        match i % 100 {
            0 => Self::Fast,
            1..=9 => Self::Medium,
            10..=94 => Self::Slow,
            95..=97 => Self::Limited,
            _ => Self::Failing,
        }
    }

    /// Time between two new entries.
    fn period(self) -> Duration {
        match self {
            Self::Fast => Duration::from_secs(10),
            Self::Medium => Duration::from_secs(60),
            _ => Duration::from_secs(1800),
        }
    }
}

struct Feeds {
    start: Instant,
    /// Delivered entries: (feed, entry number) → arrival.
    arrivals: Mutex<HashMap<(usize, u64), Instant>>,
    fetches: Mutex<usize>,
}

impl Feeds {
    /// A feed's entries start at an offset of its own within its period.
    fn offset(i: usize) -> Duration {
        let period = Class::of(i).period();
        period.mul_f64(((i * 7919) % 1000) as f64 / 1000.0)
    }

    /// The entries that have appeared by now (entry k appears at offset + k × period).
    fn version(&self, i: usize) -> u64 {
        let elapsed = self.start.elapsed();
        let offset = Self::offset(i);
        if elapsed < offset {
            return 0;
        }
        1 + ((elapsed - offset).as_secs_f64() / Class::of(i).period().as_secs_f64()) as u64
    }

    fn appeared_at(&self, i: usize, k: u64) -> Instant {
        self.start + Self::offset(i) + Class::of(i).period() * (k.max(1) - 1) as u32
    }
}

fn atom(i: usize, version: u64) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <id>urn:bench:{i}</id><title>feed {i}</title><updated>2026-12-07T00:00:00Z</updated>\n"
    );
    for k in (version.saturating_sub(4)..=version)
        .rev()
        .filter(|k| *k > 0)
    {
        out.push_str(&format!(
            "<entry><id>urn:bench:{i}:{k}</id><title>entry {k} of feed {i}</title>\
             <updated>2026-12-07T00:00:00Z</updated><content>{}</content></entry>\n",
            "lorem ipsum ".repeat(20)
        ));
    }
    out.push_str("</feed>\n");
    out
}

async fn feed(req: HttpRequest, path: web::Path<usize>, feeds: web::Data<Feeds>) -> HttpResponse {
    let i = path.into_inner();
    *feeds.fetches.lock().expect("lock") += 1;
    match Class::of(i) {
        Class::Limited => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "30"))
                .finish();
        }
        Class::Failing => return HttpResponse::InternalServerError().finish(),
        _ => {}
    }
    let version = feeds.version(i);
    let etag = format!("\"{version}\"");
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return HttpResponse::NotModified().finish();
    }
    HttpResponse::Ok()
        .content_type("application/atom+xml")
        .insert_header(("ETag", etag))
        .body(atom(i, version))
}

async fn callback(
    body: web::Bytes,
    path: web::Path<usize>,
    feeds: web::Data<Feeds>,
) -> HttpResponse {
    let now = Instant::now();
    let i = path.into_inner();
    let text = String::from_utf8_lossy(&body);
    let prefix = format!("urn:bench:{i}:");
    let mut arrivals = feeds.arrivals.lock().expect("lock");
    for part in text.split(&prefix).skip(1) {
        if let Some(k) = part.split('<').next().and_then(|k| k.parse::<u64>().ok()) {
            arrivals.entry((i, k)).or_insert(now);
        }
    }
    HttpResponse::NoContent().finish()
}

/// One server on `ports` listeners: feeds at `/f/{i}`, callbacks at `/cb/{i}`.
fn serve(feeds: Arc<Feeds>, ports: usize) -> Vec<u16> {
    let data = web::Data::from(feeds);
    let mut server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/f/{i}", web::get().to(feed))
            .route("/cb/{i}", web::post().to(callback))
            .route(
                "/cb/{i}",
                web::get().to(|req: HttpRequest| async move {
                    let challenge = req
                        .query_string()
                        .split('&')
                        .find_map(|p| p.strip_prefix("hub.challenge="))
                        .unwrap_or("")
                        .to_owned();
                    HttpResponse::Ok().body(challenge)
                }),
            )
    })
    .workers(2)
    .max_connections(100_000)
    .disable_signals();
    let mut bound = Vec::new();
    for _ in 0..ports {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        bound.push(listener.local_addr().expect("addr").port());
        server = server.listen(listener).expect("listen");
    }
    tokio::spawn(server.run());
    bound
}

/// One topic per feed, subscribed now (the hub knows nothing of any feed's rhythm yet and
/// learns it), each with one subscription whose callback is on the feed's port.
async fn seed(db: &Db, ports: &[u16], n: usize) {
    let topics: Vec<(String, Vec<String>)> = (0..n)
        .map(|i| {
            let port = ports[i % ports.len()];
            (
                format!("http://127.0.0.1:{port}/f/{i}"),
                vec![format!("http://127.0.0.1:{port}/cb/{i}")],
            )
        })
        .collect();
    seed_topics(db, &topics).await;
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
    }
}

/// Waits until each of the `n` feeds has a last fetch (10 minutes at most).
async fn wait_every_feed_fetched(db: &Db, n: usize, wave: &str) {
    let start = Instant::now();
    loop {
        let done = count(
            db,
            "SELECT COUNT(*) FROM topics WHERE last_fetched_at IS NOT NULL",
        )
        .await;
        if done >= n as i64 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{wave} did not finish: {done}/{n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes every topic due now (as a hub restarted after a long stop would find them), its last
/// fetch forgotten: a topic is polled again when it has one (a poll that ends as this runs
/// counts, as it should: its next poll is then its own).
async fn set_all_due(db: &Db) {
    let sql = "UPDATE topics SET poll_next_at = 0, last_fetched_at = NULL";
    match db {
        Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        Db::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .expect("all due");
}

/// CPU seconds the process `pid` has used (user + system, from `/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields; `rest` starts at the 3rd.
    (ticks(11) + ticks(12)) / 100.0
}

/// The sum of a counter family's samples in a scrape, by outcome.
async fn polls(client: &reqwest::Client, port: u16) -> HashMap<String, f64> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter_map(|l| l.strip_prefix("herald_polls_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, rest) = l.split_once("\"} ")?;
            Some((outcome.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n = env_usize("HERALD_BENCH_FEEDS", 10_000);
    let seconds = env_usize("HERALD_BENCH_SECONDS", 180) as u64;
    let feeds = Arc::new(Feeds {
        start: Instant::now(),
        arrivals: Mutex::new(HashMap::new()),
        fetches: Mutex::new(0),
    });
    let ports = serve(feeds.clone(), 20);
    let url = database_url().await;
    {
        // The schema, then the feeds and their subscribers, before the hub starts.
        let db = Db::connect(&url).await.expect("db");
        db.migrate().await.expect("migrate");
        herald::queue::tables::migrate(&db)
            .await
            .expect("queue tables");
        seed(&db, &ports, n).await;
    }
    let hub = HubProcess::start(
        &url,
        &[
            ("HERALD_POLLING", "all"),
            ("HERALD_POLL_MIN_INTERVAL", "5s"),
            ("HERALD_POLL_MAX_INTERVAL", "10m"),
            ("HERALD_POLL_RATE", "off"),
            ("HERALD_POLL_HOST_RATE", "off"),
            ("HERALD_MAX_FETCHES_PER_HOST", "1000"),
            ("HERALD_POLL_CONCURRENCY", "128"),
        ],
    )
    .await;
    let db = Db::connect(&url).await.expect("db");
    let client = reqwest::Client::new();

    // 1. The wave: every feed's first poll.
    let wave_start = Instant::now();
    let cpu_start = cpu_seconds(hub.pid());
    wait_every_feed_fetched(&db, n, "the wave").await;
    let wave = wave_start.elapsed();
    let wave_cpu = cpu_seconds(hub.pid()) - cpu_start;

    // 2. Steady schedules.
    let before = polls(&client, hub.port).await;
    let cpu_before = cpu_seconds(hub.pid());
    let steady_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = polls(&client, hub.port).await;
    let cpu = cpu_seconds(hub.pid()) - cpu_before;
    let elapsed = steady_start.elapsed().as_secs_f64();
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let total: f64 = ["changed", "unchanged", "not_modified", "failed", "put_off"]
        .iter()
        .map(|k| delta(k))
        .sum();
    let cpu_per_poll = cpu / total.max(1.0);

    // Detection delay, per class, for entries that appeared during the steady phase.
    let arrivals = feeds.arrivals.lock().expect("lock").clone();
    let mut by_class: HashMap<Class, Vec<f64>> = HashMap::new();
    for ((i, k), at) in &arrivals {
        let appeared = feeds.appeared_at(*i, *k);
        if appeared < steady_start {
            continue;
        }
        let delay = at.saturating_duration_since(appeared).as_secs_f64();
        by_class.entry(Class::of(*i)).or_default().push(delay);
    }
    // 3. A second wave: every feed due again at once, now that the hub knows them (what a
    //    due poll usually is: conditional, most answered 304).
    let polls_before = polls(&client, hub.port).await;
    let rewave_cpu_start = cpu_seconds(hub.pid());
    let rewave_start = Instant::now();
    set_all_due(&db).await;
    wait_every_feed_fetched(&db, n, "the second wave").await;
    let rewave = rewave_start.elapsed();
    let rewave_cpu = cpu_seconds(hub.pid()) - rewave_cpu_start;
    let polls_after = polls(&client, hub.port).await;
    let rewave_delta = |k: &str| {
        polls_after.get(k).copied().unwrap_or(0.0) - polls_before.get(k).copied().unwrap_or(0.0)
    };
    let rewave_polls: f64 = ["changed", "unchanged", "not_modified", "failed"]
        .iter()
        .map(|k| rewave_delta(k))
        .sum();

    let rss = hub.peak_rss_mb();
    hub.stop();

    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "polling bench, {backend}, {n} feeds on {} local ports",
        ports.len()
    );
    println!(
        "wave: {n} first polls in {:.1} s = {:.0} polls/s (hub CPU {:.1} s = {:.2} ms per poll)",
        wave.as_secs_f64(),
        n as f64 / wave.as_secs_f64(),
        wave_cpu,
        wave_cpu * 1000.0 / n as f64
    );
    println!(
        "steady: {:.0} polls in {elapsed:.0} s ({:.1}/s): {:.0} % answered 304, {:.0} changed, {:.0} failed; hub CPU {:.1} s = {:.2} ms per poll",
        total,
        total / elapsed,
        100.0 * delta("not_modified") / total.max(1.0),
        delta("changed"),
        delta("failed"),
        cpu,
        cpu_per_poll * 1000.0
    );
    println!(
        "10,000 feeds at a mean 5-minute interval (33.3 polls/s) at that cost: {:.2} % of one core",
        100.0 * 10_000.0 / 300.0 * cpu_per_poll
    );
    println!(
        "second wave: {n} known feeds due at once, all polled in {:.1} s = {:.0} polls/s ({:.0} % answered 304; hub CPU {:.1} s = {:.2} ms per poll)",
        rewave.as_secs_f64(),
        n as f64 / rewave.as_secs_f64(),
        100.0 * rewave_delta("not_modified") / rewave_polls.max(1.0),
        rewave_cpu,
        rewave_cpu * 1000.0 / n as f64
    );
    for class in [Class::Fast, Class::Medium] {
        let mut delays = by_class.remove(&class).unwrap_or_default();
        delays.sort_by(f64::total_cmp);
        let period = class.period().as_secs_f64();
        println!(
            "{class:?} feeds (new entry every {period:.0} s): {} entries delivered, delay p50 {:.1} s ({:.2} periods), p95 {:.1} s ({:.2} periods)",
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.5) / period,
            percentile(&delays, 0.95),
            percentile(&delays, 0.95) / period,
        );
    }
    println!(
        "feed server: {} fetches in all; hub peak RSS {rss:.0} MB",
        feeds.fetches.lock().expect("lock")
    );
}
