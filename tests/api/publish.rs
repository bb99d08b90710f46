//! Publish pings and topic fetches (§6; PuSH 0.3 §7.1).

use reqwest::StatusCode;

const RSS: &str = r#"<rss version="2.0"><channel><title>moved</title><item><guid>1</guid></item></channel></rss>"#;

use crate::helpers::{Publisher, Subscriber, TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn pings_name_topics_in_every_spelling_and_get_204() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let names = ["a", "b", "c", "d", "e"];
    for name in names {
        publisher.set(name, Some("text/plain"), format!("topic {name}"));
        app.subscribed(&publisher.url(name), &sub.callback(name), &[])
            .await;
    }
    let (a, b, c, d, e) = (
        publisher.url("a"),
        publisher.url("b"),
        publisher.url("c"),
        publisher.url("d"),
        publisher.url("e"),
    );
    let de = format!("{d},{e}");
    let (status, body) = app
        .post_form(&[
            ("hub.mode", "publish"),
            ("hub.url", &a),
            ("hub.url", &b),
            ("hub.url[]", &c),
            ("hub.url", &de),
        ])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for name in ["a", "b", "c", "d", "e"] {
        let got = sub.wait_deliveries(name, 1).await;
        assert_eq!(got[0].body, format!("topic {name}").as_bytes());
    }
    // websub.rocks pings with hub.topic only.
    publisher.set("a", Some("text/plain"), "topic a, again");
    let (status, _) = app
        .post_form(&[("hub.mode", "publish"), ("hub.topic", &a)])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sub.wait_deliveries("a", 2).await[1].body, b"topic a, again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ping_without_subscribers_is_accepted_and_fetches_nothing() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::spawn();
    publisher.set("lonely", Some("text/plain"), "x");
    assert_eq!(
        app.publish(&publisher.url("lonely")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM topics").await, 0);
    assert_eq!(publisher.fetches("lonely"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_ping_sent_as_get_is_a_ping() {
    // ikiwiki's pinger (and others) ping with GET /hub?hub.mode=publish&hub.url=…
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("t", Some("text/plain"), "first");
    let topic = publisher.url("t");
    app.subscribed(&topic, &sub.callback("a"), &[]).await;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "publish")
        .append_pair("hub.url", &topic)
        .finish();
    for path in ["/hub", "/"] {
        let response = app
            .client
            .get(format!("http://127.0.0.1:{}{path}?{query}", app.port))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
    }
    let delivered = sub.wait_deliveries("a", 1).await;
    assert_eq!(delivered[0].body, b"first");
    // A bad GET ping is refused with its reason, as the same POST is.
    let response = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/hub?hub.mode=publish&hub.url=gopher://x/",
            app.port
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap_or_default()
            .contains("http or https")
    );
    // Subscriptions still need a POST: a GET that asks for one is told so.
    let response = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/hub?hub.mode=subscribe&hub.topic={}",
            app.port,
            url::form_urlencoded::byte_serialize(topic.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_pings_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    for (pairs, expected) in [
        (vec![("hub.mode", "publish")], "at least one hub.url"),
        (
            vec![("hub.mode", "publish"), ("hub.url", "")],
            "at least one hub.url",
        ),
        (
            vec![("hub.mode", "publish"), ("hub.url", "not a url")],
            "hub.url",
        ),
        (
            vec![
                ("hub.mode", "publish"),
                ("hub.url", "http://127.0.0.1:9/ok"),
                ("hub.url", "gopher://x/"),
            ],
            "http or https",
        ),
    ] {
        let (status, body) = app.post_form(&pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pairs:?}");
        assert!(body.contains(expected), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_content_is_not_delivered_again_and_error_pages_never_are() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("same", Some("text/plain"), "stable");
    let topic = publisher.url("same");
    app.subscribed(&topic, &sub.callback("s"), &[]).await;

    app.publish(&topic).await;
    sub.wait_deliveries("s", 1).await;
    app.publish(&topic).await;
    eventually("the second fetch", || async {
        (publisher.fetches("same") >= 2).then_some(())
    })
    .await;
    app.wait_topics_idle().await;

    publisher.set_status("same", 500);
    app.publish(&topic).await;
    app.wait_fetch_error(&topic).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 1);
    assert_eq!(sub.deliveries("s").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_topic_is_delivered_decoded() {
    use std::io::Write;
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let plain = "squeezed content ".repeat(50);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain.as_bytes()).expect("compress");
    publisher.set(
        "gz",
        Some("text/plain; charset=utf-8"),
        gz.finish().expect("compress"),
    );
    publisher.set_header("gz", "content-encoding", "gzip");
    let topic = publisher.url("gz");
    app.subscribed(&topic, &sub.callback("g"), &[]).await;
    app.publish(&topic).await;
    let d = &sub.wait_deliveries("g", 1).await[0];
    assert_eq!(d.body, plain.as_bytes());
    assert_eq!(d.header("content-encoding"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirected_topic_is_followed_and_delivered_with_its_subscribed_url_as_self() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("new-home", Some("application/rss+xml"), RSS);
    publisher.set_redirect("old", &publisher.url("new-home"));
    let topic = publisher.url("old");
    app.subscribed(&topic, &sub.callback("m"), &[]).await;
    app.publish(&topic).await;
    let d = &sub.wait_deliveries("m", 1).await[0];
    assert_eq!(d.body, RSS.as_bytes());
    assert!(
        d.header("link")
            .is_some_and(|l| l.ends_with(&format!("<{topic}>; rel=\"self\"")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_into_a_forbidden_address_is_not_followed() {
    let app = TestApp::spawn_with(&[("HERALD_ALLOW_PRIVATE_ADDRESSES", "loopback")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set_redirect("trap", "http://169.254.169.254/latest/meta-data/");
    let topic = publisher.url("trap");
    app.subscribed(&topic, &sub.callback("t"), &[]).await;
    app.publish(&topic).await;
    let error = app.wait_fetch_error(&topic).await;
    assert!(error.contains("not allowed"), "{error}");
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fetches_are_conditional_and_a_304_delivers_nothing() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("etag", Some("text/plain"), "tagged");
    publisher.set_etag("etag", "\"v1\"");
    let topic = publisher.url("etag");
    app.subscribed(&topic, &sub.callback("e"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("e", 1).await;
    // A 304 keeps the validators: every later fetch is conditional too.
    for fetches in 2..=3 {
        app.publish(&topic).await;
        eventually("the fetch to finish", || async {
            let idle = app
                .count("SELECT COUNT(*) FROM topics WHERE ping_seq > distributed_seq")
                .await
                == 0;
            (publisher.fetches("etag") == fetches && idle).then_some(())
        })
        .await;
    }
    let v1 = Some("\"v1\"".to_owned());
    assert_eq!(
        publisher.request_headers("etag", "if-none-match"),
        [None, v1.clone(), v1]
    );
    assert_eq!(sub.deliveries("e").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_over_the_size_cap_is_not_delivered() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_TOPIC_BYTES", "1024")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("big", Some("text/plain"), "x".repeat(4096));
    let topic = publisher.url("big");
    app.subscribed(&topic, &sub.callback("b"), &[]).await;
    app.publish(&topic).await;
    let error = app.wait_fetch_error(&topic).await;
    assert!(error.contains("larger than 1024 bytes"), "{error}");
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_distribution_that_outlived_its_claim_is_rolled_back() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("slow", Some("text/plain"), "body");
    let topic = publisher.url("slow");
    app.subscribed(&topic, &sub.callback("s"), &[]).await;
    publisher.set_gated("slow");
    app.publish(&topic).await;
    eventually("the fetch to be in flight", || async {
        (publisher.fetches("slow") == 1).then_some(())
    })
    .await;
    // The claim lapses mid-fetch and another worker takes the topic (and dies holding it).
    app.exec("UPDATE topics SET distributing_until = 1").await;
    publisher.open_gate();
    // The first distribution is not committed; the pings are still pending, so the topic is
    // fetched again and delivered exactly once.
    let upkeep = app.app.as_ref().expect("running").upkeep().clone();
    eventually("a second fetch", || async {
        herald::upkeep::reconcile::run_once(&upkeep)
            .await
            .expect("reconcile");
        (publisher.fetches("slow") >= 2).then_some(())
    })
    .await;
    sub.wait_deliveries("s", 1).await;
    app.wait_topics_idle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 1);
    assert_eq!(sub.deliveries("s").len(), 1);
}

/// A failed fetch is shown by its class — on the topic page and in the stored error — never
/// with the resolver's or the connection's own words (they describe the hub's network).
#[tokio::test(flavor = "multi_thread")]
async fn fetch_failures_are_shown_by_class_without_network_details() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let refused = "http://127.0.0.1:9/nothing-listens";
    app.subscribed(refused, &sub.callback("r"), &[]).await;
    publisher.set_status("error", 503);
    let erring = publisher.url("error");
    app.subscribed(&erring, &sub.callback("e"), &[]).await;
    app.publish(refused).await;
    app.publish(&erring).await;
    assert_eq!(
        app.wait_fetch_error(refused).await,
        "the connection to the topic failed"
    );
    assert_eq!(
        app.wait_fetch_error(&erring).await,
        "the topic answered 503"
    );
    let page = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/topic-details?{}",
            app.port,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("hub.url", refused)
                .finish()
        ))
        .header("accept", "text/html")
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("the connection to the topic failed"),
        "{page}"
    );
    for detail in ["refused", "error sending request", "tcp", "os error"] {
        assert!(!page.to_lowercase().contains(detail), "{detail}: {page}");
    }
}
