//! What 1 % of subscribers that never answer cost the others (run with
//! `cargo bench --bench dead_subscribers`).
//!
//! Starts the real `herald` binary (release build, its own process) on a fresh database twice: once with 10,000
//! subscribers spread over four local sink servers that answer at once, once with 9,900 of
//! those and 100 on a fifth server that accepts the POST and never answers (each such delivery
//! ends at `HERALD_DELIVERY_TIMEOUT`, here 5 s). One publish each; measured for the answering
//! subscribers: publish → delivery p50 / p99 and the time until all of them have it.
//! `HERALD_TEST_DATABASE=postgres` and `HERALD_TEST_POSTGRES_URL` select PostgreSQL.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, web};
use herald::store::Db;

mod support;
use support::{HubProcess, database_url, ping, seed_topics};

#[derive(Default)]
struct Arrivals(Mutex<Vec<Instant>>);

fn spawn_sink(answer: bool, arrivals: Arc<Arrivals>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let arrivals = web::Data::from(arrivals);
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(arrivals.clone())
            .route(
                "/topic",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("text/plain").body("update") }),
            )
            .default_service(web::to(move |a: web::Data<Arrivals>| async move {
                if !answer {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                a.0.lock().expect("lock").push(Instant::now());
                HttpResponse::NoContent().finish()
            }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    port
}

struct Run {
    p50: Duration,
    p99: Duration,
    all: Duration,
}

async fn run(live_ports: &[u16], dead_port: Option<u16>, arrivals: &Arc<Arrivals>) -> Run {
    let live_total = if dead_port.is_some() { 9_900 } else { 10_000 };
    let mut callbacks: Vec<String> = (0..live_total)
        .map(|i| {
            format!(
                "http://127.0.0.1:{}/cb/{i}",
                live_ports[i % live_ports.len()]
            )
        })
        .collect();
    if let Some(dead) = dead_port {
        // Spread among the others, as dead subscribers are.
        for i in 0..100 {
            callbacks.insert(i * 99, format!("http://127.0.0.1:{dead}/cb/dead{i}"));
        }
    }
    let url = database_url().await;
    let app = HubProcess::start(&url, &[("HERALD_DELIVERY_TIMEOUT", "5s")]).await;
    let hub = app.hub_url();
    let db = Db::connect(&url).await.expect("db");
    let topic = format!("http://127.0.0.1:{}/topic", live_ports[0]);
    seed_topics(&db, &[(topic.clone(), callbacks)]).await;
    arrivals.0.lock().expect("lock").clear();
    let client = reqwest::Client::new();
    let start = Instant::now();
    ping(&client, &hub, &topic).await;
    loop {
        if arrivals.0.lock().expect("lock").len() >= live_total {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "deliveries missing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies: Vec<Duration> = arrivals
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|t| t.duration_since(start))
        .collect();
    latencies.sort();
    app.stop();
    Run {
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        all: *latencies.last().expect("some"),
    }
}

#[tokio::main]
async fn main() {
    let arrivals = Arc::new(Arrivals::default());
    let live: Vec<u16> = (0..4).map(|_| spawn_sink(true, arrivals.clone())).collect();
    let dead = spawn_sink(false, arrivals.clone());
    let healthy = run(&live, None, &arrivals).await;
    let with_dead = run(&live, Some(dead), &arrivals).await;
    let show = |name: &str, r: &Run| {
        println!(
            "{name:<28} p50 {:>8.1?}  p99 {:>8.1?}  all {:>8.1?}",
            r.p50, r.p99, r.all
        )
    };
    show("10,000 answering", &healthy);
    show("9,900 answering + 100 dead", &with_dead);
    println!(
        "p99 with dead subscribers / without: {:.2}",
        with_dead.p99.as_secs_f64() / healthy.p99.as_secs_f64()
    );
}
