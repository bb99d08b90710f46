//! Test harness: a real Herald on a random loopback port against a fresh database, a real
//! scriptable subscriber and a real publisher, and deadline-bounded waiting.

pub mod app;
pub mod live;
pub mod pg_cluster;
pub mod process;
pub mod publisher;
pub mod sink;
pub mod subscriber;

use std::{future::Future, time::Duration};

pub use app::TestApp;
pub use publisher::Publisher;
pub use subscriber::{Answer, Subscriber};

/// How long any awaited event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, failing the test with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// As [`eventually`], with its own deadline (for what waits on the queue's orphan recovery).
pub async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a test double: an actix server on a free loopback port whose every request goes to
/// `$handler`, with `$data` as app data. Evaluates to the port.
#[macro_export]
macro_rules! spawn_double {
    ($data:expr, $handler:expr) => {{
        let data = $data;
        let (listener, port) = $crate::helpers::loopback_listener();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                // Large deliveries (the 10 MB feed) must reach the handler.
                .app_data(actix_web::web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(actix_web::web::to($handler))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        port
    }};
}

/// The commit checked out, as build.rs records it in the binary (the tests are built from it).
pub fn git_commit() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    assert!(out.status.success(), "the tests run in a git checkout");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loopback listener on a free port.
pub fn loopback_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("bound address").port();
    (listener, port)
}
