//! Fan-out: one publish, hundreds of subscribers, no loss and no duplicates.

use std::collections::HashSet;

const FEED: &str = r#"<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:wide</id><entry><id>urn:wide:1</id></entry></feed>"#;

use crate::helpers::{Publisher, Subscriber, TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn one_publish_reaches_three_hundred_subscribers_exactly_once() {
    const N: usize = 300;
    // Small batches, so the fan-out spans several hubout jobs.
    let app = TestApp::spawn_with(&[("HERALD_DELIVERY_BATCH", "64")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("wide", Some("application/atom+xml"), FEED);
    let topic = publisher.url("wide");
    for i in 0..N {
        assert_eq!(
            app.subscribe(&topic, &sub.callback(&format!("s{i}")), &[])
                .await,
            reqwest::StatusCode::ACCEPTED
        );
    }
    eventually("all subscriptions to be verified", || async {
        (app.count("SELECT COUNT(*) FROM subscriptions WHERE state = 'active'")
            .await
            == N as i64)
            .then_some(())
    })
    .await;
    app.publish(&topic).await;
    app.wait_delivered(N as i64).await;
    let mut seen = HashSet::new();
    for i in 0..N {
        let got = sub.deliveries(&format!("s{i}"));
        assert_eq!(got.len(), 1, "subscriber s{i} got {} deliveries", got.len());
        assert_eq!(got[0].body, FEED.as_bytes());
        seen.insert(i);
    }
    assert_eq!(seen.len(), N);
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, N as i64);
}
