//! Verification of intent, denial, re-subscription, unsubscription and leases (§5.2, §5.3).

use reqwest::StatusCode;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_but_an_exact_echo_fails_verification_and_redirects_are_not_followed() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/t";
    let cases = [
        ("wrong", Answer::WrongChallenge),
        ("notfound", Answer::Status(404)),
        ("error", Answer::Status(500)),
        ("nocontent", Answer::Status(204)),
        ("redirect", Answer::Redirect("/cb/target".into())),
    ];
    for (name, answer) in cases {
        sub.on_verify(name, [answer]);
        let cb = sub.callback(name);
        assert_eq!(app.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
        assert_eq!(app.settled_request(topic, &cb).await, "failed", "{name}");
        assert_eq!(app.subscription_state(topic, &cb).await, None, "{name}");
    }
    assert!(
        sub.requests("target").is_empty(),
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resubscription_replaces_the_secret_only_once_verified() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("news", Some("text/plain"), "one");
    let topic = publisher.url("news");
    let cb = sub.callback("r");

    app.subscribed(&topic, &cb, &[("hub.secret", "first")])
        .await;
    // A re-subscription with a new secret whose verification fails changes nothing.
    sub.on_verify("r", [Answer::Status(404)]);
    assert_eq!(
        app.subscribe(&topic, &cb, &[("hub.secret", "second")])
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.settled_request(&topic, &cb).await, "failed");
    app.publish(&topic).await;
    let d = &sub.wait_deliveries("r", 1).await[0];
    assert_eq!(
        d.header("x-hub-signature"),
        Some(crate::helpers::subscriber::expected_signature("sha256", "first", b"one").as_str())
    );

    // A verified re-subscription without a secret drops the signature.
    app.subscribed(&topic, &cb, &[]).await;
    publisher.set("news", Some("text/plain"), "two");
    app.publish(&topic).await;
    let d = &sub.wait_deliveries("r", 2).await[1];
    assert_eq!(d.body, b"two");
    assert_eq!(d.header("x-hub-signature"), None);
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsubscription_is_verified_and_stops_deliveries() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("u", Some("text/plain"), "v1");
    let topic = publisher.url("u");
    let (stays, leaves) = (sub.callback("stays"), sub.callback("leaves"));
    app.subscribed(&topic, &stays, &[]).await;
    app.subscribed(&topic, &leaves, &[]).await;

    // An unsubscription the subscriber disowns (404) leaves the subscription active.
    sub.on_verify("stays", [Answer::Status(404)]);
    assert_eq!(app.unsubscribe(&topic, &stays).await, StatusCode::ACCEPTED);
    assert_eq!(app.settled_request(&topic, &stays).await, "failed");

    assert_eq!(app.unsubscribe(&topic, &leaves).await, StatusCode::ACCEPTED);
    assert_eq!(app.settled_request(&topic, &leaves).await, "verified");
    let get = sub
        .verifications("leaves")
        .pop()
        .expect("an unsubscribe verification");
    assert_eq!(get.param("hub.mode"), Some("unsubscribe"));
    assert_eq!(get.param("hub.lease_seconds"), None);
    assert_eq!(
        app.subscription_state(&topic, &leaves).await.as_deref(),
        Some("unsubscribed")
    );

    app.publish(&topic).await;
    sub.wait_deliveries("stays", 1).await;
    // Both deliveries are created by the same fan-out: once the one for "stays" exists and was
    // answered, a delivery for "leaves" would have been recorded too.
    app.wait_delivered(1).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 1);
    assert!(sub.deliveries("leaves").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_are_clamped_and_expired_subscriptions_receive_nothing() {
    let app = TestApp::spawn_with(&[
        ("HERALD_LEASE_MIN_SECONDS", "1"),
        ("HERALD_LEASE_DEFAULT_SECONDS", "3600"),
        ("HERALD_LEASE_MAX_SECONDS", "5000"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("l", Some("text/plain"), "content");
    let topic = publisher.url("l");

    app.subscribed(
        &topic,
        &sub.callback("long"),
        &[("hub.lease_seconds", "99999999999999999999")],
    )
    .await;
    assert_eq!(
        sub.verifications("long")[0].param("hub.lease_seconds"),
        Some("5000")
    );

    app.subscribed(
        &topic,
        &sub.callback("short"),
        &[("hub.lease_seconds", "1")],
    )
    .await;
    assert_eq!(
        sub.verifications("short")[0].param("hub.lease_seconds"),
        Some("1")
    );
    // Wait until the short lease has run out, by the hub's own clock of record.
    eventually("the short lease to expire", || async {
        let expires: i64 = app
            .count("SELECT expires_at FROM subscriptions WHERE lease_seconds = 1")
            .await;
        (chrono::Utc::now().timestamp_millis() > expires).then_some(())
    })
    .await;

    app.publish(&topic).await;
    sub.wait_deliveries("long", 1).await;
    app.wait_delivered(1).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 1);
    assert!(sub.deliveries("short").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_the_hub_may_not_fetch_is_denied_with_a_reason() {
    let app = TestApp::spawn_with(&[("HERALD_ALLOW_PRIVATE_ADDRESSES", "loopback")]).await;
    let sub = Subscriber::spawn();
    let cb = sub.callback("d");
    let topic = "http://10.1.2.3/internal-feed";
    assert_eq!(app.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
    assert_eq!(app.settled_request(topic, &cb).await, "denied");
    let get = &sub.wait_verifications("d", 1).await[0];
    assert_eq!(get.param("hub.mode"), Some("denied"));
    assert_eq!(get.param("hub.topic"), Some(topic));
    assert!(
        get.param("hub.reason")
            .is_some_and(|r| r.contains("not a public address")),
        "{get:?}"
    );
    assert!(get.param("hub.challenge").is_none());
    assert_eq!(app.subscription_state(topic, &cb).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latest_of_quick_successive_requests_wins() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/race";
    let cb = sub.callback("race");
    for _ in 0..3 {
        assert_eq!(app.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
        assert_eq!(app.unsubscribe(topic, &cb).await, StatusCode::ACCEPTED);
    }
    assert_eq!(
        app.subscribe(topic, &cb, &[("hub.secret", "last")]).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.settled_request(topic, &cb).await, "verified");
    eventually("every request to be settled", || async {
        (app.count("SELECT COUNT(*) FROM subscription_requests WHERE state = 'pending'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        app.subscription_state(topic, &cb).await.as_deref(),
        Some("active")
    );
    let secret = app
        .scalar_text("SELECT secret FROM subscriptions", &[])
        .await;
    assert_eq!(
        secret.as_deref(),
        Some("last"),
        "the last request's secret is the one in force"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsubscribing_a_pair_never_subscribed_creates_nothing() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let cb = sub.callback("stranger");
    assert_eq!(
        app.unsubscribe("http://127.0.0.1:9/never", &cb).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.settled_request("http://127.0.0.1:9/never", &cb).await,
        "verified"
    );
    assert_eq!(
        sub.verifications("stranger")[0].param("hub.mode"),
        Some("unsubscribe")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM topics").await, 0);
}
