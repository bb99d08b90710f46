//! Fan-out: one publish, hundreds of subscribers, no loss and no duplicates.

use std::collections::HashSet;

const FEED: &str = r#"<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:wide</id><entry><id>urn:wide:1</id></entry></feed>"#;

use herald::store::Db;

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

/// A fan-out that fits in one batch is sent at once by the process that made it, not through
/// the queue (where it would wait behind the batches of big fan-outs the workers already took);
/// its job in the queue is due seconds later, only for a crash, and then finds nothing to send.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_fan_out_is_sent_at_once_and_its_queued_job_sends_nothing_again() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("small", Some("text/plain"), "one");
    let topic = publisher.url("small");
    app.subscribed(&topic, &sub.callback("s"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("s", 1).await;

    // The one hubout job is the fallback, due well after the delivery was created.
    let fallback = match app.db() {
        Db::Sqlite(_) => {
            "SELECT COUNT(*) FROM Jobs j, deliveries d
             WHERE j.job_type = 'hubout' AND j.run_at * 1000 >= d.created_at + 4000"
        }
        Db::Pg(_) => {
            "SELECT COUNT(*) FROM apalis.jobs j, deliveries d
             WHERE j.job_type = 'hubout'
               AND EXTRACT(EPOCH FROM j.run_at) * 1000 >= d.created_at + 4000"
        }
    };
    assert_eq!(app.count(fallback).await, 1, "a fallback job, due later");
    let (all, done) = match app.db() {
        Db::Sqlite(_) => (
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'hubout'",
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'hubout' AND status = 'Done'",
        ),
        Db::Pg(_) => (
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'hubout'",
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'hubout' AND status = 'Done'",
        ),
    };
    assert_eq!(app.count(all).await, 1, "no other hubout job");

    eventually("the fallback job to have run", || async {
        (app.count(done).await == 1).then_some(())
    })
    .await;
    assert_eq!(sub.deliveries("s").len(), 1, "sent once");
    assert_eq!(app.count(all).await, 1, "the fallback pushed nothing");
    assert_eq!(
        app.texts("SELECT state || ' ' || attempts FROM deliveries", &[])
            .await,
        ["delivered 1"]
    );
}
