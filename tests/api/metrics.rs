//! `/metrics`: Prometheus text a scraper reads, counters that agree with the database.

use reqwest::StatusCode;

use crate::helpers::{Publisher, Subscriber, TestApp};

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_agree_with_the_database_and_the_token_guards_them() {
    let app = TestApp::spawn_with(&[("HERALD_METRICS_TOKEN", "scrape")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("m", Some("text/plain"), "counted");
    let topic = publisher.url("m");
    for i in 0..5 {
        app.subscribed(&topic, &sub.callback(&format!("m{i}")), &[])
            .await;
    }
    app.publish(&topic).await;
    app.wait_delivered(5).await;

    let url = format!("http://127.0.0.1:{}/metrics", app.port);
    let refused = app.client.get(&url).send().await.expect("answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let scraped = app
        .client
        .get(&url)
        .bearer_auth("scrape")
        .send()
        .await
        .expect("answer");
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.expect("text");
    let delivered = app
        .count("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
        .await;
    assert_eq!(delivered, 5);
    assert_eq!(
        sample(&text, "herald_deliveries_total{outcome=\"delivered\"}"),
        Some(delivered as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "herald_verifications_total{mode=\"subscribe\",outcome=\"verified\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "herald_http_requests_total{route=\"/hub\",status=\"202\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "herald_fetches_total{outcome=\"changed\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "herald_publish_to_delivery_seconds_count"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "herald_subscriptions{state=\"active\"}"),
        Some(5.0)
    );
    assert_eq!(sample(&text, "herald_pending_deliveries"), Some(0.0));
    assert!(sample(&text, "herald_queue_depth{queue=\"hubout\"}").is_some());
    assert_eq!(sample(&text, "herald_paused_callback_hosts"), Some(0.0));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let given = app
        .client
        .get(app.hub_url())
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        given
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
    let (status, _) = app.post_form(&[("hub.mode", "nonsense")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let generated = app
        .client
        .post(app.hub_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("hub.mode=nonsense")
        .send()
        .await
        .expect("answer");
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a generated id")
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
}

/// With `HERALD_METRICS_LISTEN`, the metrics (and a health check) are served on their own
/// listener and no longer on the public one: a public hub need not expose them.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_served_on_their_own_listener_only() {
    let app = TestApp::spawn_with(&[("HERALD_METRICS_LISTEN", "127.0.0.1:0")]).await;
    let metrics_port = app
        .app
        .as_ref()
        .expect("running")
        .metrics_port()
        .expect("a metrics listener");
    assert_ne!(metrics_port, app.port);
    let public = app
        .client
        .get(format!("http://127.0.0.1:{}/metrics", app.port))
        .send()
        .await
        .expect("answer");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let own = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("answer");
    assert_eq!(own.status(), StatusCode::OK);
    let text = own.text().await.expect("text");
    assert!(text.contains("herald_queue_depth"), "{text}");
    let health = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/health"))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), StatusCode::OK);
    // Nothing else is served there.
    let hub = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/hub"))
        .send()
        .await
        .expect("answer");
    assert_eq!(hub.status(), StatusCode::NOT_FOUND);
}

/// A fresh hub exposes which version it runs, its process's CPU, memory and file descriptors,
/// and every counter series of a closed label set at 0 before anything happened (an alert on a
/// rate needs the series to exist).
#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_hub_exposes_its_version_and_every_counter_at_zero() {
    let app = TestApp::spawn().await;
    let text = app.get_text("/metrics").await;
    let version = format!(
        "herald_build_info{{version=\"{}\",commit=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        crate::helpers::git_commit()
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");
    for series in [
        "herald_deliveries_total{outcome=\"failed\"}",
        "herald_deliveries_total{outcome=\"delivered\"}",
        "herald_fetches_total{outcome=\"failed\"}",
        "herald_verifications_total{mode=\"subscribe\",outcome=\"failed\"}",
        "herald_live_connections_refused_total{reason=\"total\"}",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series}: {text}");
    }
    // The process's own figures, from /proc.
    for series in [
        "herald_process_resident_memory_bytes",
        "herald_process_open_fds",
        "herald_process_max_fds",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series}: {text}"
        );
    }
    assert!(sample(&text, "herald_process_cpu_seconds_total").is_some());
}
