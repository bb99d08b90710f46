//! Lease expiry and hub-initiated renewal.

use reqwest::StatusCode;

use crate::helpers::{Answer, Subscriber, TestApp, eventually};

const FAST_SWEEP: [(&str, &str); 2] = [
    ("HERALD_LEASE_SWEEP_INTERVAL", "100ms"),
    ("HERALD_RENEW_BEFORE", "2s"),
];

async fn expires_at(app: &TestApp, callback: &str) -> i64 {
    app.scalar_text(
        "SELECT CAST(expires_at AS TEXT) FROM subscriptions WHERE callback = $1",
        &[callback],
    )
    .await
    .and_then(|v| v.parse().ok())
    .expect("a subscription")
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_subscriptions_are_expired_with_when_and_why() {
    let app = TestApp::spawn_with(&FAST_SWEEP).await;
    let sub = Subscriber::spawn();
    let cb = sub.callback("brief");
    app.subscribed("http://127.0.0.1:9/t", &cb, &[("hub.lease_seconds", "1")])
        .await;
    let end = expires_at(&app, &cb).await;
    eventually("the subscription to expire", || async {
        (app.subscription_state("http://127.0.0.1:9/t", &cb).await? == "expired").then_some(())
    })
    .await;
    let ended = app
        .scalar_text("SELECT CAST(ended_at AS TEXT) FROM subscriptions", &[])
        .await;
    assert_eq!(ended, Some(end.to_string()));
    assert_eq!(
        app.scalar_text("SELECT state_reason FROM subscriptions", &[])
            .await
            .as_deref(),
        Some("lease expired")
    );
    // No renewal for a WebSub subscription without HERALD_AUTO_RENEW.
    assert_eq!(sub.verifications("brief").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_subscriptions_are_renewed_before_they_expire() {
    let app = TestApp::spawn_with(&FAST_SWEEP).await;
    let sub = Subscriber::spawn();
    let cb = sub.callback("old");
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", "http://127.0.0.1:9/t"),
            ("hub.callback", &cb),
            ("hub.verify", "async"),
            ("hub.verify_token", "tok"),
            ("hub.lease_seconds", "3"),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the first verification", || async {
        (app.subscription_state("http://127.0.0.1:9/t", &cb).await? == "active").then_some(())
    })
    .await;
    let before = expires_at(&app, &cb).await;
    // The renewal is a fresh subscribe verification carrying the stored token.
    let gets = sub.wait_verifications("old", 2).await;
    assert_eq!(gets[1].param("hub.mode"), Some("subscribe"));
    assert_eq!(gets[1].param("hub.verify_token"), Some("tok"));
    assert_ne!(
        gets[1].param("hub.challenge"),
        gets[0].param("hub.challenge")
    );
    let renewed = eventually("the lease to be extended", || async {
        let now = expires_at(&app, &cb).await;
        (now > before).then_some(now)
    })
    .await;
    assert!(renewed > before);
    assert_eq!(
        app.subscription_state("http://127.0.0.1:9/t", &cb)
            .await
            .as_deref(),
        Some("active")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_renewal_lets_the_lease_run_out_and_auto_renew_covers_everyone() {
    let app =
        TestApp::spawn_with(&[FAST_SWEEP[0], FAST_SWEEP[1], ("HERALD_AUTO_RENEW", "true")]).await;
    let sub = Subscriber::spawn();
    let (keeps, drops) = (sub.callback("keeps"), sub.callback("drops"));
    app.subscribed(
        "http://127.0.0.1:9/t",
        &keeps,
        &[("hub.lease_seconds", "3")],
    )
    .await;
    app.subscribed(
        "http://127.0.0.1:9/t",
        &drops,
        &[("hub.lease_seconds", "3")],
    )
    .await;
    sub.on_verify("drops", [Answer::Status(404)]);
    let gets = sub.wait_verifications("keeps", 2).await;
    assert_eq!(gets[1].param("hub.mode"), Some("subscribe"));
    eventually("the unrenewed subscription to expire", || async {
        (app.subscription_state("http://127.0.0.1:9/t", &drops)
            .await?
            == "expired")
            .then_some(())
    })
    .await;
    assert_eq!(
        app.subscription_state("http://127.0.0.1:9/t", &keeps)
            .await
            .as_deref(),
        Some("active")
    );
}
