//! Subscribe + verify throughput (run with `cargo bench --bench subscribe`).
//!
//! Starts the real `herald` binary (release build, its own process) on a fresh database, and
//! from this process: a subscriber sink that echoes every `hub.challenge` (on 4 ports), and
//! `HERALD_BENCH_CLIENTS` (16) clients that send `HERALD_BENCH_SUBSCRIPTIONS` (10,000) subscribe
//! requests for distinct callbacks. Measures requests accepted per second (202s), and
//! subscriptions verified per second from the first request until the last is active, plus the
//! hub's peak memory. The subscribe rate limit is off (one callback host takes them all).
//!
//! `HERALD_TEST_DATABASE=postgres` and `HERALD_TEST_POSTGRES_URL` select PostgreSQL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, web};
use futures::StreamExt;
use herald::store::Db;

mod support;
use support::{HubProcess, database_url, env_usize};

const SINK_PORTS: usize = 4;

async fn active(db: &Db) -> i64 {
    let sql = "SELECT COUNT(*) FROM subscriptions WHERE state = 'active'";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
    }
}

#[tokio::main]
async fn main() {
    let total = env_usize("HERALD_BENCH_SUBSCRIPTIONS", 10_000);
    let clients = env_usize("HERALD_BENCH_CLIENTS", 16);
    let verified = Arc::new(AtomicUsize::new(0));

    // The sink: echoes the challenge of every verification GET.
    let mut ports = Vec::new();
    let mut server = {
        let verified = web::Data::from(verified.clone());
        actix_web::HttpServer::new(move || {
            App::new()
                .app_data(verified.clone())
                .default_service(web::to(
                    |req: HttpRequest, v: web::Data<AtomicUsize>| async move {
                        let challenge = url::form_urlencoded::parse(req.query_string().as_bytes())
                            .find(|(k, _)| k == "hub.challenge")
                            .map(|(_, c)| c.into_owned());
                        match challenge {
                            Some(c) => {
                                v.fetch_add(1, Ordering::Relaxed);
                                HttpResponse::Ok().body(c)
                            }
                            None => HttpResponse::NoContent().finish(),
                        }
                    },
                ))
        })
        .workers(1)
        .disable_signals()
    };
    for _ in 0..SINK_PORTS {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        ports.push(listener.local_addr().expect("addr").port());
        server = server.listen(listener).expect("listen");
    }
    tokio::spawn(server.run());

    let url = database_url().await;
    let app = HubProcess::start(
        &url,
        &[
            ("HERALD_SUBSCRIBE_RATE_LIMIT", "off"),
            ("HERALD_RATE_LIMIT", "off"),
        ],
    )
    .await;
    let hub = app.hub_url();
    let db = Db::connect(&url).await.expect("db");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");

    let start = Instant::now();
    let bodies: Vec<String> = (0..total)
        .map(|i| {
            let callback = format!("http://127.0.0.1:{}/cb/{i}", ports[i % SINK_PORTS]);
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("hub.mode", "subscribe"),
                    ("hub.topic", "http://127.0.0.1:9/bench-topic"),
                    ("hub.callback", callback.as_str()),
                ])
                .finish()
        })
        .collect();
    let refused = AtomicUsize::new(0);
    futures::stream::iter(bodies)
        .for_each_concurrent(clients, |body| {
            let (client, hub, refused) = (&client, &hub, &refused);
            async move {
                let status = client
                    .post(hub.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok();
                if status != Some(202) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let accepted_in = start.elapsed();
    let expected = i64::try_from(total - refused.load(Ordering::Relaxed)).expect("fits");
    loop {
        if active(&db).await >= expected {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "verifications did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done_in = start.elapsed();
    println!("backend                 {}", db.engine());
    println!(
        "subscribe requests      {total} from {clients} clients, {} refused",
        refused.load(Ordering::Relaxed)
    );
    println!(
        "accepted (202)          {:.0}/s ({accepted_in:.2?})",
        total as f64 / accepted_in.as_secs_f64()
    );
    println!(
        "subscribe + verify      {:.0}/s ({done_in:.2?} until all {expected} were active; {} challenge GETs)",
        expected as f64 / done_in.as_secs_f64(),
        verified.load(Ordering::Relaxed)
    );
    println!("peak RSS (hub process)  {:.0} MB", app.peak_rss_mb());
    app.stop();
}
