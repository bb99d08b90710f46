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
    app.wait_delivery_state("delivered").await;
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
    // A worker process starts: its verifier finds the waiting request (requests need no job).
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

/// A verification that stalled — its claim ran out, and its holder never completed it nor died
/// in a way the liveness check sees — is taken again once the hold lapses.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_verification_claim_lapsed_is_verified_again() {
    let web = TestApp::spawn_with(&[("HERALD_ROLE", "web")]).await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/lapsed";
    let cb = sub.callback("l");
    assert_eq!(web.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
    web.exec(
        "UPDATE subscription_requests SET claimed_until = 1, claimed_by = 'stalled', started_at = 1",
    )
    .await;
    let _worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    assert_eq!(web.settled_request(topic, &cb).await, "verified");
    assert_eq!(sub.verifications("l").len(), 1);
}

/// The real binary, killed with SIGKILL while a delivery is in flight, then started again.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_hub_delivers_what_was_in_flight_after_it_starts_again() {
    use std::process::{Command, Stdio};

    let app = TestApp::spawn().await; // provides a fresh database and the test settings
    let database_url = app.database_url.clone();
    let vars = app.vars.clone();
    app.stop().await;

    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("k", Some("text/plain"), "in flight");
    let topic = publisher.url("k");
    let (_, port) = crate::helpers::loopback_listener();
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env("HERALD_DATABASE_URL", &database_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"));
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        cmd.env("HERALD_DELIVERY_TIMEOUT", "2s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald starts")
    };
    let hub = format!("http://127.0.0.1:{port}/hub");
    let client = reqwest::Client::new();
    let post = |pairs: Vec<(&'static str, String)>| {
        let client = client.clone();
        let hub = hub.clone();
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            client
                .post(&hub)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        }
    };

    let mut child = start();
    eventually("the hub to listen", || async {
        post(vec![
            ("hub.mode", "publish".into()),
            ("hub.url", topic.clone()),
        ])
        .await
        .ok()
        .map(|_| ())
    })
    .await;
    let status = post(vec![
        ("hub.mode", "subscribe".into()),
        ("hub.topic", topic.clone()),
        ("hub.callback", sub.callback("k")),
    ])
    .await
    .expect("subscribe")
    .status();
    assert_eq!(status, StatusCode::ACCEPTED);
    sub.wait_verifications("k", 1).await;
    // The delivery will hang until the process is gone.
    sub.on_deliver("k", [Answer::Gated]);
    eventually("the subscription to be active", || async {
        let r = post(vec![
            ("hub.mode", "publish".into()),
            ("hub.url", topic.clone()),
        ])
        .await
        .ok()?;
        (r.status() == StatusCode::NO_CONTENT && !sub.deliveries("k").is_empty()).then_some(())
    })
    .await;

    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    sub.open_gate();

    let mut child = start();
    // The claim of the dead process lapses, the queue recovers its job, the delivery is made.
    let got = crate::helpers::eventually_within(
        std::time::Duration::from_secs(90),
        "redelivery after the kill",
        || async {
            let got = sub.deliveries("k");
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    assert_eq!(got.last().expect("a delivery").body, b"in flight");
    child.kill().expect("stop");
    let _ = child.wait();
}

/// A database made by the previous schema (migrations up to 0014), with a topic and an active
/// subscription in it, is upgraded when the hub starts: the subscriber gets the next update,
/// and a live subscriber of the same topic too (migration 0015 numbers live events).
#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_the_previous_schema_with_data_is_upgraded_at_start() {
    use crate::helpers::app::{Backend, fresh_database};
    let backend = Backend::from_env();
    let url = fresh_database().await;
    // The previous version's migrations, as files, run by sqlx as that version ran them.
    let source = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let previous = std::env::temp_dir().join(format!(
        "herald-migrations-{}",
        herald::domain::challenge::random_hex(6)
    ));
    std::fs::create_dir_all(&previous).expect("a folder");
    for entry in std::fs::read_dir(source).expect("the migrations") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < "0015" {
            std::fs::copy(&path, previous.join(&name)).expect("copied");
        }
    }
    let mut migrator = sqlx::migrate::Migrator::new(previous.as_path())
        .await
        .expect("the previous migrations");
    migrator.dangerous_set_table_name("_herald_migrations");
    let sub = Subscriber::spawn();
    let callback = sub.callback("from-before");
    let topic = "http://127.0.0.1:9/upgraded";
    let db = herald::store::Db::connect(&url).await.expect("connect");
    let rows = [
        format!("INSERT INTO topics (url, created_at) VALUES ('{topic}', 0)"),
        format!(
            "INSERT INTO subscriptions (topic_id, callback, lease_seconds, state, verified_at,
                 expires_at, applied_request_id, created_at, updated_at)
             SELECT id, '{callback}', 864000, 'active', 0, 9999999999999, 0, 0, 0 FROM topics"
        ),
    ];
    match &db {
        herald::store::Db::Sqlite(pool) => migrator.run(pool).await,
        herald::store::Db::Pg(pool) => migrator.run(pool).await,
    }
    .expect("the previous schema");
    for sql in rows {
        crate::helpers::app::exec_on(&db, sql).await;
    }
    db.close().await;
    let _ = std::fs::remove_dir_all(&previous);
    assert!(
        !herald::store::Db::connect(&url)
            .await
            .expect("connect")
            .pending_migrations()
            .await
            .expect("pending")
            .is_empty(),
        "the database is behind this version"
    );

    let before_start = chrono::Utc::now().timestamp_millis();
    // No poller: the schedule read below is the migration's alone.
    let app = TestApp::spawn_on(
        url,
        &[
            (
                "HERALD_PRODUCER_TOKEN",
                crate::helpers::live::PRODUCER_TOKEN,
            ),
            ("HERALD_POLLING", "off"),
        ],
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM live_subscribers").await,
        0,
        "migrated"
    );
    // Topics from before polling are not all due at once: their first polls are spread out.
    let first_poll: i64 = app
        .scalar_text("SELECT CAST(poll_next_at AS TEXT) FROM topics", &[])
        .await
        .and_then(|v| v.parse().ok())
        .expect("a schedule");
    assert!(
        first_poll >= before_start && first_poll <= before_start + 6 * 3_600_000 + 60_000,
        "{first_poll} against {before_start}"
    );
    let live = crate::helpers::live::token(&app, "after-upgrade", &[topic]).await;
    let mut sse = crate::helpers::live::Sse::open(&app, &live).await;
    crate::helpers::live::push(&app, topic, "text/plain", "after the upgrade").await;
    let got = sub.wait_deliveries("from-before", 1).await;
    assert_eq!(got[0].body, b"after the upgrade");
    let update = sse.updates(1).await;
    assert_eq!(update[0].data["body"], "after the upgrade");
}
