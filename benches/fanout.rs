//! Fan-out and latency benchmark (design targets; run with `cargo bench --bench fanout`).
//!
//! Starts a real Herald (release build) on a fresh database, a local sink that answers 204 to
//! every delivery and serves the topic, and inserts N verified subscriptions directly (the
//! subscribe path has its own measure). Then it measures:
//! - fan-out: one publish ping → every delivery POSTed and recorded (deliveries/s);
//! - latency: with one subscriber and an idle hub, ping → delivery received (median, p90);
//! - peak resident memory of the process (hub and sink together).
//!
//! `HERALD_BENCH_SUBSCRIBERS` (default 10000) sets N; `HERALD_TEST_DATABASE=postgres` and
//! `HERALD_TEST_POSTGRES_URL` select PostgreSQL as in the tests.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, web};
use herald::{app::Application, config::Settings, store::Db};
use tokio::sync::Notify;

mod support;
use support::{Sink, current_rss_mb, database_url, delivered, env_usize, peak_rss_mb, ping, seed};

#[tokio::main]
async fn main() {
    let n = env_usize("HERALD_BENCH_SUBSCRIBERS", 10_000);
    let sink = Arc::new(Sink {
        received: AtomicUsize::new(0),
        notify: Notify::new(),
    });
    let topic_version = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let sink_port = listener.local_addr().expect("addr").port();
    {
        let sink = web::Data::from(sink.clone());
        let version = web::Data::from(topic_version.clone());
        let server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(version.clone())
                .route(
                    "/topic",
                    web::get().to(|v: web::Data<AtomicUsize>| async move {
                        HttpResponse::Ok()
                            .content_type("application/atom+xml")
                            .body(format!(
                                "<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:bench</id><entry><id>urn:bench:v{}</id></entry></feed>",
                                v.load(Ordering::SeqCst)
                            ))
                    }),
                )
                .route(
                    "/big",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("application/atom+xml")
                            .body(herald::feed::samples::big_atom(10 * 1024 * 1024))
                    }),
                )
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(|s: web::Data<Sink>| async move {
                    s.received.fetch_add(1, Ordering::SeqCst);
                    s.notify.notify_waiters();
                    HttpResponse::NoContent().finish()
                }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
    }

    let url = database_url().await;
    let settings = Settings::from_vars([
        ("HERALD_DATABASE_URL", url.clone()),
        ("HERALD_LISTEN", "127.0.0.1:0".to_owned()),
        ("HERALD_ALLOW_PRIVATE_ADDRESSES", "true".to_owned()),
    ])
    .expect("settings");
    let app = Application::build(settings).await.expect("hub");
    let hub = format!("http://127.0.0.1:{}/hub", app.port().expect("port"));
    let db = Db::connect(&url).await.expect("db");
    let topic = format!("http://127.0.0.1:{sink_port}/topic");
    let client = reqwest::Client::new();

    // Latency: one subscriber, idle hub.
    let latency_topic = format!("{topic}?latency");
    seed(&db, &latency_topic, sink_port, 1).await;
    let mut samples = Vec::new();
    for _ in 0..30 {
        let before = sink.received.load(Ordering::SeqCst);
        topic_version.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        ping(&client, &hub, &latency_topic).await;
        while sink.received.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no delivery for the latency ping"
            );
            let notified = sink.notify.notified();
            if sink.received.load(Ordering::SeqCst) != before {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
        }
        samples.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    let already = delivered(&db).await;

    // Fan-out.
    let seed_start = Instant::now();
    seed(&db, &topic, sink_port, n).await;
    let seeded = seed_start.elapsed();
    let received_before = sink.received.load(Ordering::SeqCst);
    topic_version.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    ping(&client, &hub, &topic).await;
    // Wait on the sink's own counter (no database polling while the hub works)…
    while sink.received.load(Ordering::SeqCst) - received_before < n {
        let notified = sink.notify.notified();
        if sink.received.load(Ordering::SeqCst) - received_before >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "fan-out did not finish"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    let posted = start.elapsed();
    // …then for every result to be written back.
    while delivered(&db).await - already < n as i64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recorded = start.elapsed();

    // A 10 MB feed to a few subscribers: what distributing it costs in memory.
    let rss_before = current_rss_mb();
    let big_topic = format!("http://127.0.0.1:{sink_port}/big");
    seed(&db, &big_topic, sink_port, 10).await;
    let received_before = sink.received.load(Ordering::SeqCst);
    let big_start = Instant::now();
    ping(&client, &hub, &big_topic).await;
    while sink.received.load(Ordering::SeqCst) - received_before < 10 {
        let notified = sink.notify.notified();
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        assert!(
            big_start.elapsed() < Duration::from_secs(120),
            "big feed not delivered"
        );
    }
    let big_elapsed = big_start.elapsed();
    let rss_after_big = peak_rss_mb();

    println!("backend                 {}", db.engine());
    println!("subscribers             {n} (seeded in {seeded:.2?})");
    println!(
        "fan-out, all POSTed     {posted:.2?}  ({:.0} deliveries/s)",
        n as f64 / posted.as_secs_f64()
    );
    println!(
        "fan-out, all recorded   {recorded:.2?}  ({:.0} deliveries/s)",
        n as f64 / recorded.as_secs_f64()
    );
    println!("latency ping→delivery   median {median:.2?}, p90 {p90:.2?} (30 samples, idle)");
    println!("peak RSS (hub + sink)   {:.0} MB", peak_rss_mb());
    println!(
        "10 MB feed → 10 subs     {big_elapsed:.2?}; RSS {rss_before:.0} MB before, peak {rss_after_big:.0} MB after"
    );
    app.stop().await;
}
