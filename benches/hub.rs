//! The whole hub, measured as users run it (`cargo bench --bench hub -- [options]`).
//!
//! Starts the real `herald` binary (release build) on a fresh database — one process, or on
//! PostgreSQL with `--processes 3` one web and two worker processes — and plays, from this
//! process, the subscribers (a sink on 4 ports that echoes challenges and takes deliveries) and
//! the publisher (a server for the topics). Phases, each with a progress bar:
//!
//! 1. the sink's own ceiling: POSTs/s it takes from 64 keep-alive clients in this process;
//! 2. subscribe + verify: `--subscriptions` (10,000) subscribe requests from 16 clients, until
//!    every subscription is active;
//! 3. idle latency: 20 pings of a topic with one subscriber, ping → delivery;
//! 4. fan-out: `--publishes` (5) pings of the big topic (1 KiB bodies), each once the previous
//!    one was delivered everywhere; deliveries/s, publish → delivery p50/p95/p99 over every
//!    delivery, ping → delivery of the one-subscriber topic probed meanwhile (latency under
//!    fan-out), then until every result is recorded;
//! 5. ordered stream: one single-entry subscriber, a feed with `--stream-entries` (400) new
//!    entries; documents/s;
//!
//! and the peak resident memory of the hub process(es). Prints a table, each throughput also
//! as a fraction of the sink's ceiling (so machines compare), and with `--json` one JSON line.
//! `HERALD_TEST_DATABASE=postgres` (and `HERALD_TEST_POSTGRES_URL`) selects PostgreSQL;
//! `HERALD_BENCH_LOG=<file>` keeps the hub's log (`HERALD_BENCH_RUST_LOG` filters it, default
//! `info`).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, web};
use futures::StreamExt;
use herald::store::Db;
use indicatif::{ProgressBar, ProgressStyle};

mod support;
use support::{HubProcess, database_url};

const SINK_PORTS: usize = 4;

struct Options {
    subscriptions: usize,
    publishes: usize,
    stream_entries: usize,
    processes: usize,
    json: bool,
}

impl Options {
    fn parse() -> Self {
        let mut o = Self {
            subscriptions: 10_000,
            publishes: 5,
            stream_entries: 400,
            processes: 1,
            json: false,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || {
                args.get(i + 1)
                    .and_then(|v| v.replace('_', "").parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--subscriptions" => o.subscriptions = value(),
                "--publishes" => o.publishes = value(),
                "--stream-entries" => o.stream_entries = value(),
                "--processes" => o.processes = value(),
                "--json" => {
                    o.json = true;
                    i -= 1;
                }
                // `cargo bench` passes its own flags through.
                "--bench" => i -= 1,
                other => panic!(
                    "unknown option {other}: --subscriptions N --publishes N --stream-entries N --processes 1|3 --json"
                ),
            }
            i += 2;
        }
        o
    }
}

/// What the sink saw, shared with its handlers.
#[derive(Default)]
struct Sink {
    verified: AtomicUsize,
    posts: AtomicUsize,
    /// Per publish number of the big topic: deliveries received.
    fan_out: Mutex<HashMap<usize, usize>>,
    /// Microseconds from the bench's start, of every big-topic delivery, by publish.
    arrivals: Mutex<Vec<(usize, u64)>>,
    probe_arrivals: Mutex<HashMap<usize, u64>>,
    stream: AtomicUsize,
    clock: Clock,
}

#[derive(Clone, Copy)]
struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock {
    fn us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// The number after `marker` in `body`.
fn number_after(body: &[u8], marker: &str) -> Option<usize> {
    let text = std::str::from_utf8(body.get(..body.len().min(64))?).ok()?;
    text.split(marker)
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn sink(req: HttpRequest, body: web::Bytes, s: web::Data<Sink>) -> HttpResponse {
    if let Some(challenge) = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "hub.challenge")
        .map(|(_, c)| c.into_owned())
    {
        s.verified.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Ok().body(challenge);
    }
    s.posts.fetch_add(1, Ordering::Relaxed);
    let path = req.path();
    if path.starts_with("/cb/") {
        if let Some(n) = number_after(&body, "publish ") {
            let at = s.clock.us();
            *s.fan_out
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(n)
                .or_default() += 1;
            s.arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((n, at));
        }
    } else if path == "/probe" {
        if let Some(n) = number_after(&body, "probe ") {
            s.probe_arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(n, s.clock.us());
        }
    } else if path == "/stream" {
        s.stream.fetch_add(1, Ordering::Relaxed);
    }
    HttpResponse::NoContent().finish()
}

/// The publisher: topic name → (Content-Type, body).
type Topics = Mutex<HashMap<String, (String, Vec<u8>)>>;

async fn publisher(req: HttpRequest, topics: web::Data<Topics>) -> HttpResponse {
    let name = req.path().trim_start_matches('/').to_owned();
    match topics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&name)
        .cloned()
    {
        Some((ct, body)) => HttpResponse::Ok().content_type(ct).body(body),
        None => HttpResponse::NotFound().finish(),
    }
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:<22} [{bar:32}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Waits until `current()` reaches `target`, showing it on a bar.
async fn wait_until(what: &str, target: usize, mut current: impl FnMut() -> usize) {
    let bar = bar(target, what);
    let start = Instant::now();
    loop {
        let now = current();
        bar.set_position(now.min(target) as u64);
        if now >= target {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "{what}: stuck at {now} of {target}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bar.finish_and_clear();
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

async fn count(db: &Db, sql: &'static str) -> usize {
    let n: i64 = match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
    };
    n as usize
}

async fn ping(client: &reqwest::Client, hub: &str, topic: &str) {
    support::ping(client, hub, topic).await;
}

/// The sink's ceiling: POSTs/s from 64 keep-alive clients for 2 s.
async fn sink_ceiling(port: u16, sink: &Sink) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let before = sink.posts.load(Ordering::Relaxed);
    let start = Instant::now();
    let until = start + Duration::from_secs(2);
    let url = format!("http://127.0.0.1:{port}/ceiling");
    futures::future::join_all((0..64).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            while Instant::now() < until {
                let _ = client.post(&url).body(vec![b'x'; 1024]).send().await;
            }
        }
    }))
    .await;
    (sink.posts.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64()
}

fn atom(entries: usize) -> Vec<u8> {
    let mut feed = String::from(
        "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:bench</id><title>bench</title><updated>2026-01-01T00:00:00Z</updated>",
    );
    for i in (0..entries).rev() {
        feed.push_str(&format!(
            "<entry><id>urn:bench:{i}</id><title>entry {i}</title><updated>2026-01-01T00:00:00Z</updated><content>{}</content></entry>",
            "x".repeat(200)
        ));
    }
    feed.push_str("</feed>");
    feed.into_bytes()
}

#[tokio::main]
async fn main() {
    let o = Options::parse();
    herald::outbound::install_crypto_provider();
    let sink_state = web::Data::new(Sink::default());
    let clock = sink_state.clock;
    let mut server = {
        let s = sink_state.clone();
        actix_web::HttpServer::new(move || {
            App::new()
                .app_data(s.clone())
                .default_service(web::to(sink))
        })
        .workers(2)
        .disable_signals()
    };
    let mut ports = Vec::new();
    for _ in 0..SINK_PORTS {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        ports.push(listener.local_addr().expect("addr").port());
        server = server.listen(listener).expect("listen");
    }
    tokio::spawn(server.run());
    let topics = web::Data::new(Topics::default());
    let publisher_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let publisher_port = publisher_listener.local_addr().expect("addr").port();
    {
        let t = topics.clone();
        let server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(t.clone())
                .default_service(web::to(publisher))
        })
        .workers(1)
        .disable_signals()
        .listen(publisher_listener)
        .expect("listen");
        tokio::spawn(server.run());
    }
    let topic_url = |name: &str| format!("http://127.0.0.1:{publisher_port}/{name}");
    let set_topic = |name: &str, ct: &str, body: Vec<u8>| {
        topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), (ct.to_owned(), body));
    };

    eprintln!("measuring the sink's ceiling…");
    let ceiling = sink_ceiling(ports[0], &sink_state).await;

    let url = database_url().await;
    let engine = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert!(
        o.processes == 1 || engine == "postgres",
        "--processes 3 needs PostgreSQL (HERALD_TEST_DATABASE=postgres)"
    );
    let vars = [
        ("HERALD_SUBSCRIBE_RATE_LIMIT", "off"),
        ("HERALD_RATE_LIMIT", "off"),
        ("HERALD_MAX_PENDING_PER_SUBSCRIPTION", "100000"),
    ];
    let mut web_vars = vars.to_vec();
    let mut workers = Vec::new();
    if o.processes > 1 {
        web_vars.push(("HERALD_ROLE", "web"));
    }
    let hub_process = HubProcess::start(&url, &web_vars).await;
    for _ in 1..o.processes {
        let mut worker_vars = vars.to_vec();
        worker_vars.push(("HERALD_ROLE", "worker"));
        workers.push(HubProcess::start_worker(&url, &worker_vars));
    }
    let hub = hub_process.hub_url();
    let db = Db::connect(&url).await.expect("db");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");

    // 2. Subscribe + verify.
    let big = "big";
    set_topic(big, "text/plain", b"publish 0".to_vec());
    let big_url = topic_url(big);
    let start = Instant::now();
    let requests: Vec<String> = (0..o.subscriptions)
        .map(|i| {
            let callback = format!("http://127.0.0.1:{}/cb/{i}", ports[i % SINK_PORTS]);
            subscribe_form(&big_url, &callback, &[])
        })
        .collect();
    let sent = bar(o.subscriptions, "subscribe requests");
    futures::stream::iter(requests)
        .for_each_concurrent(16, |body| {
            let (client, hub, sent) = (&client, &hub, &sent);
            async move {
                let status = client
                    .post(hub.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok();
                assert_eq!(status, Some(202), "subscribe refused");
                sent.inc(1);
            }
        })
        .await;
    sent.finish_and_clear();
    let accept_rate = o.subscriptions as f64 / start.elapsed().as_secs_f64();
    let active_sql = "SELECT COUNT(*) FROM subscriptions WHERE state = 'active'";
    {
        let bar = bar(o.subscriptions, "verified and active");
        let failed_sql = "SELECT COUNT(*) FROM subscription_requests WHERE state <> 'pending' AND state <> 'verified'";
        loop {
            let n = count(&db, active_sql).await;
            bar.set_position(n as u64);
            if n >= o.subscriptions {
                break;
            }
            // A verification that failed (the sink refused a connection, say) never becomes
            // active: say so instead of waiting for ever.
            let failed = count(&db, failed_sql).await;
            assert!(
                n + failed < o.subscriptions,
                "{failed} of {} verifications did not succeed (see subscription_requests.reason)",
                o.subscriptions
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bar.finish_and_clear();
    }
    let subscribe_rate = o.subscriptions as f64 / start.elapsed().as_secs_f64();

    // 3. Idle latency: one subscriber, one topic.
    let probe = "probe";
    let probe_url = topic_url(probe);
    set_topic(probe, "text/plain", b"probe 0".to_vec());
    let probe_callback = format!("http://127.0.0.1:{}/probe", ports[1]);
    subscribe(&client, &hub, &probe_url, &probe_callback, &[]).await;
    wait_until("probe verified", o.subscriptions + 1, || {
        sink_state.verified.load(Ordering::Relaxed)
    })
    .await;
    // The verification answer is counted before the subscription is active: wait for that too.
    let mut probe = Probe {
        client: &client,
        hub: &hub,
        url: &probe_url,
        number: 0,
        topics: &topics,
        sink: &sink_state,
    };
    let mut idle = Vec::new();
    while count(&db, active_sql).await < o.subscriptions + 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..20 {
        idle.push(probe.once().await);
    }
    idle.sort_unstable();

    // 4. Fan-out.
    let padding = "x".repeat(1000);
    let arrivals_before = sink_state.arrivals.lock().map(|a| a.len()).unwrap_or(0);
    let start = Instant::now();
    let mut sent_at = HashMap::new();
    let mut under_load = Vec::new();
    let fanning = bar(o.subscriptions * o.publishes, "deliveries");
    for n in 1..=o.publishes {
        set_topic(
            big,
            "text/plain",
            format!("publish {n} {padding}").into_bytes(),
        );
        sent_at.insert(n, clock.us());
        ping(&client, &hub, &big_url).await;
        // Meanwhile, how long does a one-subscriber topic wait?
        let mut next_probe = Instant::now();
        loop {
            let got = sink_state
                .fan_out
                .lock()
                .map(|m| m.get(&n).copied().unwrap_or(0))
                .unwrap_or(0);
            fanning.set_position(((n - 1) * o.subscriptions + got) as u64);
            if got >= o.subscriptions {
                break;
            }
            if Instant::now() >= next_probe && got < o.subscriptions / 2 {
                under_load.push(probe.once().await);
                next_probe = Instant::now() + Duration::from_millis(100);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    fanning.finish_and_clear();
    let delivered_in = start.elapsed().as_secs_f64();
    let total = o.subscriptions * o.publishes;
    let delivered_sql = "SELECT COUNT(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE d.state = 'delivered' AND s.callback LIKE '%/cb/%'";
    {
        let bar = bar(total, "results recorded");
        loop {
            let n = count(&db, delivered_sql).await;
            bar.set_position(n as u64);
            if n >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bar.finish_and_clear();
    }
    let recorded_in = start.elapsed().as_secs_f64();
    let mut latencies: Vec<u64> = sink_state
        .arrivals
        .lock()
        .map(|a| {
            a[arrivals_before..]
                .iter()
                .map(|(n, at)| at.saturating_sub(sent_at[n]))
                .collect()
        })
        .unwrap_or_default();
    latencies.sort_unstable();
    let mut first: Vec<u64> = (1..=o.publishes)
        .filter_map(|n| {
            sink_state.arrivals.lock().ok().and_then(|a| {
                a[arrivals_before..]
                    .iter()
                    .filter(|(m, _)| *m == n)
                    .map(|(_, at)| at.saturating_sub(sent_at[&n]))
                    .min()
            })
        })
        .collect();
    first.sort_unstable();
    under_load.sort_unstable();

    // 5. Ordered stream: one single-entry subscriber, a feed with many new entries.
    let feed = "feed";
    let feed_url = topic_url(feed);
    set_topic(feed, "application/atom+xml", atom(0));
    let stream_callback = format!("http://127.0.0.1:{}/stream", ports[2]);
    let single = [("herald.delivery", "single")];
    subscribe(&client, &hub, &feed_url, &stream_callback, &single).await;
    while count(&db, active_sql).await < o.subscriptions + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    set_topic(feed, "application/atom+xml", atom(o.stream_entries));
    let start = Instant::now();
    ping(&client, &hub, &feed_url).await;
    wait_until("ordered stream", o.stream_entries, || {
        sink_state.stream.load(Ordering::Relaxed)
    })
    .await;
    let stream_rate = o.stream_entries as f64 / start.elapsed().as_secs_f64();

    let mut rss = hub_process.peak_rss_mb();
    for w in &workers {
        rss += w.peak_rss_mb();
    }
    let deliveries_rate = total as f64 / delivered_in;
    let recorded_rate = total as f64 / recorded_in;
    let ms = |v: &[u64], p| percentile(v, p);
    let pct = |rate: f64| 100.0 * rate / ceiling;
    println!();
    println!(
        "Herald on {engine}, {} process(es); {} subscriptions, {} publishes of 1 KiB, {} stream entries",
        o.processes, o.subscriptions, o.publishes, o.stream_entries
    );
    println!("| measure | value | of the sink's ceiling |");
    println!("|---|---|---|");
    println!("| sink ceiling (POSTs/s) | {ceiling:.0} | 100 % |");
    println!("| subscribe requests accepted (202) /s | {accept_rate:.0} | |");
    println!(
        "| subscribe + verify /s | {subscribe_rate:.0} | {:.1} % |",
        pct(subscribe_rate)
    );
    println!(
        "| deliveries/s (received) | {deliveries_rate:.0} | {:.1} % |",
        pct(deliveries_rate)
    );
    println!(
        "| deliveries/s (every result recorded) | {recorded_rate:.0} | {:.1} % |",
        pct(recorded_rate)
    );
    println!(
        "| publish → delivery p50 / p95 / p99 | {:.0} / {:.0} / {:.0} ms | |",
        ms(&latencies, 0.5),
        ms(&latencies, 0.95),
        ms(&latencies, 0.99)
    );
    println!(
        "| publish → first delivery p50 | {:.1} ms | |",
        ms(&first, 0.5)
    );
    println!(
        "| ping → delivery, idle, p50 / p99 | {:.1} / {:.1} ms | |",
        ms(&idle, 0.5),
        ms(&idle, 0.99)
    );
    println!(
        "| ping → delivery during the fan-out, p50 ({} probes) | {:.1} ms | |",
        under_load.len(),
        ms(&under_load, 0.5)
    );
    println!(
        "| ordered stream, documents/s | {stream_rate:.0} | {:.1} % |",
        pct(stream_rate)
    );
    println!("| hub peak RSS | {rss:.0} MB | |");
    if o.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "hub", "backend": engine, "processes": o.processes,
                "subscriptions": o.subscriptions, "publishes": o.publishes,
                "sink_ceiling_per_s": ceiling, "subscribe_accept_per_s": accept_rate,
                "subscribe_verify_per_s": subscribe_rate,
                "deliveries_per_s": deliveries_rate, "recorded_per_s": recorded_rate,
                "publish_to_delivery_ms": {"p50": ms(&latencies, 0.5), "p95": ms(&latencies, 0.95), "p99": ms(&latencies, 0.99)},
                "publish_to_first_delivery_p50_ms": ms(&first, 0.5),
                "idle_ping_to_delivery_ms": {"p50": ms(&idle, 0.5), "p99": ms(&idle, 0.99)},
                "under_fan_out_ping_to_delivery_p50_ms": ms(&under_load, 0.5),
                "ordered_stream_per_s": stream_rate, "hub_peak_rss_mb": rss,
            })
        );
    }
    for w in workers {
        w.stop();
    }
    hub_process.stop();
}

/// A subscribe request's form.
fn subscribe_form(topic: &str, callback: &str, extra: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", callback),
        ])
        .extend_pairs(extra)
        .finish()
}

/// Sends one subscribe request, which must be accepted.
async fn subscribe(
    client: &reqwest::Client,
    hub: &str,
    topic: &str,
    callback: &str,
    extra: &[(&str, &str)],
) {
    let status = client
        .post(hub)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(subscribe_form(topic, callback, extra))
        .send()
        .await
        .expect("the hub answers")
        .status();
    assert_eq!(status.as_u16(), 202, "subscribe refused");
}

/// The one-subscriber topic whose ping → delivery is measured, idle and under load.
struct Probe<'a> {
    client: &'a reqwest::Client,
    hub: &'a str,
    url: &'a str,
    number: usize,
    topics: &'a Topics,
    sink: &'a Sink,
}

impl Probe<'_> {
    /// Publishes the probe topic once and returns ping → delivery, in µs.
    async fn once(&mut self) -> u64 {
        self.number += 1;
        let n = self.number;
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                "probe".to_owned(),
                ("text/plain".to_owned(), format!("probe {n}").into_bytes()),
            );
        let sent = self.sink.clock.us();
        ping(self.client, self.hub, self.url).await;
        let start = Instant::now();
        loop {
            if let Some(at) = self
                .sink
                .probe_arrivals
                .lock()
                .ok()
                .and_then(|m| m.get(&n).copied())
            {
                return at.saturating_sub(sent);
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "probe {n} never arrived"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
}
