//! Bounded storage benchmark (run with `cargo bench --bench retention`).
//!
//! Starts the real `herald` binary (release build, its own process) on a fresh database with a
//! short retention
//! (`HERALD_RETENTION=5s`, sweep every second) and a local sink, then measures:
//! - an ordered stream: a 0.6 MB Atom feed with 400 new entries to one `single` subscriber —
//!   documents per second, and what the distribution stored;
//! - database size while a topic changes on every one of `HERALD_BENCH_PUBLISHES` (10,000)
//!   publishes to 10 subscribers: it should stop growing once retention applies.
//!
//! `HERALD_TEST_DATABASE=postgres` and `HERALD_TEST_POSTGRES_URL` select PostgreSQL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, web};
use herald::store::Db;
use tokio::sync::Notify;

mod support;
use support::{HubProcess, Sink, database_url, env_usize, ping, seed};

/// The database's size on disk: the SQLite file and its WAL, or PostgreSQL's own figure.
async fn database_bytes(db: &Db, url: &str) -> u64 {
    match db {
        Db::Sqlite(_) => {
            let path = url.trim_start_matches("sqlite://");
            let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
            size(path.to_owned()) + size(format!("{path}-wal"))
        }
        Db::Pg(p) => {
            let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(p)
                .await
                .expect("size");
            n as u64
        }
    }
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
    }
}

async fn exec(db: &Db, sql: &'static str) {
    match db {
        Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()).expect("exec"),
        Db::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()).expect("exec"),
    }
}

async fn wait_received(sink: &Sink, target: usize, limit: Duration) {
    let start = Instant::now();
    while sink.received.load(Ordering::SeqCst) < target {
        let notified = sink.notify.notified();
        if sink.received.load(Ordering::SeqCst) >= target {
            break;
        }
        assert!(start.elapsed() < limit, "deliveries did not arrive");
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

#[tokio::main]
async fn main() {
    let publishes = env_usize("HERALD_BENCH_PUBLISHES", 10_000);
    let sink = Arc::new(Sink {
        received: AtomicUsize::new(0),
        notify: Notify::new(),
    });
    let version = Arc::new(AtomicUsize::new(0));
    let heavy = web::Bytes::from(herald::feed::samples::envelope_heavy_atom(600_000, 400));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let sink_port = listener.local_addr().expect("addr").port();
    {
        let sink = web::Data::from(sink.clone());
        let version = web::Data::from(version.clone());
        let heavy = web::Data::new(heavy.clone());
        let server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(version.clone())
                .app_data(heavy.clone())
                .route(
                    "/changing",
                    web::get().to(|v: web::Data<AtomicUsize>| async move {
                        let n = v.load(Ordering::SeqCst);
                        HttpResponse::Ok()
                            .content_type("text/plain")
                            .body(format!("version {n}\n{}", "x".repeat(2048)))
                    }),
                )
                .route(
                    "/heavy",
                    web::get().to(|b: web::Data<web::Bytes>| async move {
                        HttpResponse::Ok()
                            .content_type("application/atom+xml")
                            .body(b.get_ref().clone())
                    }),
                )
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
    let app = HubProcess::start(
        &url,
        &[("HERALD_RETENTION", "5s"), ("HERALD_SWEEP_INTERVAL", "1s")],
    )
    .await;
    let hub = app.hub_url();
    let db = Db::connect(&url).await.expect("db");
    let client = reqwest::Client::new();

    // An ordered stream of single-entry documents.
    let heavy_topic = format!("http://127.0.0.1:{sink_port}/heavy");
    seed(&db, &heavy_topic, sink_port, 1).await;
    exec(&db, "UPDATE subscriptions SET delivery_mode = 'single'").await;
    let start = Instant::now();
    ping(&client, &hub, &heavy_topic).await;
    wait_received(&sink, 400, Duration::from_secs(300)).await;
    let stream = start.elapsed();
    let stored = count(
        &db,
        "SELECT CAST(COALESCE(SUM(LENGTH(body)), 0) AS BIGINT) FROM bodies",
    )
    .await;
    println!("backend                 {}", db.engine());
    println!(
        "ordered stream          400 single-entry documents of {:.1} MB in {stream:.2?} ({:.0} documents/s); stored {:.2} MB",
        heavy.len() as f64 / 1e6,
        400.0 / stream.as_secs_f64(),
        stored as f64 / 1e6
    );

    // A topic that changes on every publish, to 10 subscribers.
    let topic = format!("http://127.0.0.1:{sink_port}/changing");
    seed(&db, &topic, sink_port, 10).await;
    let start = Instant::now();
    println!("publishes  database MB  contents  deliveries  elapsed");
    for i in 1..=publishes {
        version.fetch_add(1, Ordering::SeqCst);
        let target = sink.received.load(Ordering::SeqCst) + 10;
        ping(&client, &hub, &topic).await;
        wait_received(&sink, target, Duration::from_secs(60)).await;
        if i % (publishes / 10).max(1) == 0 {
            println!(
                "{i:>9}  {:>11.1}  {:>8}  {:>10}  {:.1?}",
                database_bytes(&db, &url).await as f64 / 1e6,
                count(&db, "SELECT COUNT(*) FROM contents").await,
                count(&db, "SELECT COUNT(*) FROM deliveries").await,
                start.elapsed()
            );
        }
    }
    println!("peak RSS (hub process)  {:.0} MB", app.peak_rss_mb());
    app.stop();
}
