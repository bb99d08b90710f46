//! Logs of the real binary: JSON lines with `HERALD_LOG_FORMAT=json`, and the request id of an
//! HTTP request on the spans of the jobs it caused.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    Publisher, Subscriber, TestApp, eventually_within, loopback_listener, process::HubProcess,
};

/// The log's JSON lines (every line must be one).
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Whether a log line was written inside a span named `name` that carries `request_id`.
fn in_span_with_request_id(line: &Value, name: &str, request_id: &str) -> bool {
    line["spans"].as_array().is_some_and(|spans| {
        spans
            .iter()
            .any(|s| s["name"] == name && s["request_id"] == request_id)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_follows_the_jobs_its_request_caused_in_json_logs() {
    let app = TestApp::spawn().await;
    let database_url = app.database_url.clone();
    let vars = app.vars.clone();
    app.stop().await;
    let log = std::env::temp_dir().join(format!(
        "herald-log-{}.jsonl",
        herald::domain::challenge::random_hex(6)
    ));
    let (_, port) = loopback_listener();
    let mut vars = vars;
    vars.push(("HERALD_LOG_FORMAT", "json".into()));
    vars.push(("RUST_LOG", "info".into()));
    let _hub = HubProcess::start_logging(&database_url, port, &vars, Some(&log));
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("t", Some("text/plain"), "hello");
    let topic = publisher.url("t");
    let client = reqwest::Client::new();
    let post = |pairs: Vec<(&'static str, String)>, request_id: &'static str| {
        let client = client.clone();
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            client
                .post(format!("http://127.0.0.1:{port}/hub"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-request-id", request_id)
                .body(body)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    // The callback carries its subscriber's own credential in its query: never logged.
    let subscribe = vec![
        ("hub.mode", "subscribe".to_owned()),
        ("hub.topic", topic.clone()),
        (
            "hub.callback",
            format!("{}?token=leaky-callback-credential", sub.callback("a")),
        ),
    ];
    let status = eventually_within(Duration::from_secs(30), "the hub to listen", || {
        post(subscribe.clone(), "subscribe-req-42")
    })
    .await;
    assert_eq!(status, 202);
    // The verification logs under the subscribe request's id (and the subscription is
    // active once it has).
    eventually_within(
        Duration::from_secs(20),
        "the verification's log line",
        || async {
            json_lines(&log)
                .iter()
                .any(|l| {
                    in_span_with_request_id(l, "verify", "subscribe-req-42")
                        && l["fields"]["message"] == "verified"
                })
                .then_some(())
        },
    )
    .await;
    let publish = vec![
        ("hub.mode", "publish".to_owned()),
        ("hub.url", topic.clone()),
    ];
    assert_eq!(post(publish, "ping-req-7").await, Some(204));
    sub.wait_deliveries("a", 1).await;
    // And the distribution job under the ping's.
    eventually_within(
        Duration::from_secs(20),
        "the distribution's log line",
        || async {
            json_lines(&log)
                .iter()
                .any(|l| {
                    in_span_with_request_id(l, "run", "ping-req-7")
                        && l["fields"]["message"] == "topic distributed"
                })
                .then_some(())
        },
    )
    .await;
    // A ping the hub cannot take is refused with its reason, and the refusal is logged at info
    // (an operator sees publishers whose pings never work).
    let xml_rpc = client
        .post(format!("http://127.0.0.1:{port}/hub"))
        .header("content-type", "text/xml")
        .header("x-request-id", "xmlrpc-req-9")
        .body("<?xml version=\"1.0\"?><methodCall><methodName>weblogUpdates.ping</methodName></methodCall>")
        .send()
        .await
        .expect("answer");
    assert_eq!(xml_rpc.status().as_u16(), 415);
    eventually_within(
        Duration::from_secs(20),
        "the refusal's log line",
        || async {
            json_lines(&log)
                .iter()
                .any(|l| {
                    in_span_with_request_id(l, "http", "xmlrpc-req-9")
                        && l["level"] == "INFO"
                        && l["fields"]["message"] == "hub request refused"
                        && l["fields"]["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("weblogUpdates.ping"))
                })
                .then_some(())
        },
    )
    .await;
    // The HTTP span has it too, and every line is JSON with a level and a time.
    let lines = json_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| in_span_with_request_id(l, "http", "subscribe-req-42"))
    );
    // Its access-log line: method, route, status and time, under the same request id.
    assert!(
        lines.iter().any(|l| {
            l["target"] == "herald::access"
                && in_span_with_request_id(l, "http", "subscribe-req-42")
                && l["fields"]["method"] == "POST"
                && l["fields"]["route"] == "/hub"
                && l["fields"]["status"] == 202
                && l["fields"]["ms"].is_number()
                && l["fields"]["client"] == "127.0.0.1"
        }),
        "an access-log line for the subscribe"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("leaky-callback-credential"),
        "a callback's query is never logged"
    );
    let _ = std::fs::remove_file(&log);
}

/// A text log written to a file (as under a supervisor) has no colour escapes, and its
/// start-up line says which version runs, in which role, as which hub.
#[tokio::test(flavor = "multi_thread")]
async fn a_text_log_in_a_file_is_plain_and_names_the_version() {
    let app = TestApp::spawn().await;
    let database_url = app.database_url.clone();
    let vars = app.vars.clone();
    app.stop().await;
    let log = std::env::temp_dir().join(format!(
        "herald-log-{}.txt",
        herald::domain::challenge::random_hex(6)
    ));
    let (_, port) = loopback_listener();
    let _hub = HubProcess::start_logging(&database_url, port, &vars, Some(&log));
    let line = eventually_within(Duration::from_secs(20), "the start-up line", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("Herald is running"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            || line.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("role="), "{line}");
    assert!(
        line.contains(&format!("commit=\"{}\"", crate::helpers::git_commit())),
        "{line}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains('\u{1b}'),
        "no colour escapes in a file: {text}"
    );
    let _ = std::fs::remove_file(&log);
}
