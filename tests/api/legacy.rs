//! PuSH 0.3/0.4 subscribers next to WebSub ones: synchronous verification, verify_token, sha1.

use reqwest::StatusCode;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, subscriber::expected_signature};

#[tokio::test(flavor = "multi_thread")]
async fn sync_verification_answers_204_once_verified_and_409_with_the_reason_otherwise() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/legacy";
    let cb = sub.callback("ok");
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", &cb),
            ("hub.verify", "sync"),
        ])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Verified before the answer: active right away, no waiting.
    assert_eq!(
        app.subscription_state(topic, &cb).await.as_deref(),
        Some("active")
    );

    sub.on_verify("no", [Answer::Status(404)]);
    let cb = sub.callback("no");
    let (status, body) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", &cb),
            ("hub.verify", "sync"),
        ])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("callback answered 404"), "{body}");
    assert_eq!(app.subscription_state(topic, &cb).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_known_verify_keyword_wins() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/kw";
    for (name, verify, expected) in [
        ("a", vec!["async"], StatusCode::ACCEPTED),
        ("b", vec!["foo", "sync", "async"], StatusCode::NO_CONTENT),
        ("c", vec!["foo", "async", "sync"], StatusCode::ACCEPTED),
        ("d", vec!["foo"], StatusCode::ACCEPTED),
    ] {
        let cb = sub.callback(name);
        let mut pairs = vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", cb.as_str()),
        ];
        pairs.extend(verify.iter().map(|v| ("hub.verify", *v)));
        assert_eq!(app.post_form(&pairs).await.0, expected, "{verify:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verify_token_is_echoed_and_legacy_subscriptions_are_signed_with_sha1() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("mixed", Some("text/plain"), "both kinds");
    let topic = publisher.url("mixed");
    let legacy_cb = sub.callback("statusnet");
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &legacy_cb),
            ("hub.verify", "sync"),
            ("hub.verify_token", "Deprecated-since-PuSH-0.4"),
            ("hub.secret", "old-secret"),
        ])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let get = &sub.verifications("statusnet")[0];
    assert_eq!(
        get.param("hub.verify_token"),
        Some("Deprecated-since-PuSH-0.4")
    );
    assert!(get.param("hub.lease_seconds").is_some());

    app.subscribed(
        &topic,
        &sub.callback("websub"),
        &[("hub.secret", "new-secret")],
    )
    .await;
    assert_eq!(
        sub.verifications("websub")[0].param("hub.verify_token"),
        None
    );

    app.publish(&topic).await;
    let old = &sub.wait_deliveries("statusnet", 1).await[0];
    let new = &sub.wait_deliveries("websub", 1).await[0];
    assert_eq!(
        old.header("x-hub-signature"),
        Some(expected_signature("sha1", "old-secret", b"both kinds").as_str())
    );
    assert_eq!(
        new.header("x-hub-signature"),
        Some(expected_signature("sha256", "new-secret", b"both kinds").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sync_verification_names_the_kind_of_failure_and_nothing_internal() {
    let app = TestApp::spawn().await;
    // Nothing listens there: the connection is refused.
    let (_, closed_port) = crate::helpers::loopback_listener();
    let cb = format!("http://127.0.0.1:{closed_port}/cb?token=subscribers-own");
    let (status, body) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", "http://127.0.0.1:9/legacy-leak"),
            ("hub.callback", &cb),
            ("hub.verify", "sync"),
        ])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("connection to the callback failed"), "{body}");
    for internal in [
        "127.0.0.1",
        "refused",
        "tcp",
        "hub.challenge",
        "subscribers-own",
    ] {
        assert!(!body.contains(internal), "{internal:?} in {body}");
    }
}
