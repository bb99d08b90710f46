//! Nothing accepted is lost: restarts, and work whose queue job went missing.

use reqwest::StatusCode;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_pending_retries_delivers_them_afterwards() {
    // Retries far enough apart that the restart happens between them.
    let app = TestApp::spawn_with(&[("HERALD_RETRY_SCHEDULE", "2s,2s,2s")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("d", Some("text/plain"), "survives");
    let topic = publisher.url("d");
    app.subscribed(&topic, &sub.callback("c"), &[]).await;
    sub.on_deliver("c", [Answer::Status(503)]);
    app.publish(&topic).await;
    sub.wait_deliveries("c", 1).await;
    eventually("the retry to be scheduled", || async {
        (app.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND attempts = 1")
            .await
            == 1)
            .then_some(())
    })
    .await;

    let app = app.restart().await;
    let got = sub.wait_deliveries("c", 2).await;
    assert_eq!(got[1].body, b"survives");
    eventually("the delivery to be recorded", || async {
        (app.scalar_text("SELECT state FROM deliveries", &[]).await? == "delivered").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn work_whose_jobs_were_lost_is_reconciled_at_start_up() {
    // A web-only process accepts requests; no worker runs.
    let web = TestApp::spawn_with(&[("HERALD_ROLE", "web")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("lost", Some("text/plain"), "found again");
    let topic = publisher.url("lost");
    let cb = sub.callback("r");
    assert_eq!(web.subscribe(&topic, &cb, &[]).await, StatusCode::ACCEPTED);
    assert_eq!(
        web.count("SELECT COUNT(*) FROM subscription_requests WHERE state = 'pending'")
            .await,
        1
    );

    // Break things on purpose: the queue loses every job (a crash between commit and a queue
    // on another store would look like this).
    match web.db() {
        herald::store::Db::Sqlite(_) => web.exec("DELETE FROM Jobs").await,
        herald::store::Db::Pg(_) => web.exec("DELETE FROM apalis.jobs").await,
    }
    // A worker process starts: the reconciler finds the uncovered request.
    let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    assert_eq!(web.settled_request(&topic, &cb).await, "verified");

    // The same for a publish ping.
    worker.stop().await;
    assert_eq!(web.publish(&topic).await, StatusCode::NO_CONTENT);
    match web.db() {
        herald::store::Db::Sqlite(_) => web.exec("DELETE FROM Jobs").await,
        herald::store::Db::Pg(_) => web.exec("DELETE FROM apalis.jobs").await,
    }
    let _worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let got = sub.wait_deliveries("r", 1).await;
    assert_eq!(got[0].body, b"found again");
}
