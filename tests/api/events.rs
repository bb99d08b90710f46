//! The producer's events (docs/events.md): each produced by the real flow, in the transaction
//! of its change, read back page by page with a cursor that loses and repeats nothing.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, eventually, live::Sse};

const TOKEN: &str = "producer-token-for-events";

async fn page(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/events?{query}",
            app.port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every event from the start, read in pages of `size`.
async fn all_events(app: &TestApp, size: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let (status, body) = page(app, &format!("after={cursor}&limit={size}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let next = body["next_cursor"].as_str().expect("a cursor").to_owned();
        if items.is_empty() {
            assert_eq!(next, cursor, "an empty page keeps the cursor");
            return out;
        }
        out.extend(items);
        cursor = next;
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

const PUSH_SECRET: &str = "the-producer-events-key";

/// The settings that push the events to `producer`'s callback `events`.
fn push_to(producer: &Subscriber) -> [(&'static str, String); 2] {
    [
        ("HERALD_PRODUCER_EVENTS_URL", producer.callback("events")),
        ("HERALD_PRODUCER_EVENTS_SECRET", PUSH_SECRET.to_owned()),
    ]
}

/// The events pushed to `producer` in the POSTs after the first `failed` (which it answered
/// with an error), in the order they came; every POST's signature checked.
fn pushed(producer: &Subscriber, failed: usize) -> Vec<Value> {
    let posts = producer.deliveries("events");
    let mut events = Vec::new();
    for (i, post) in posts.iter().enumerate() {
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(
            post.header("x-hub-signature"),
            Some(
                crate::helpers::subscriber::expected_signature("sha256", PUSH_SECRET, &post.body)
                    .as_str()
            ),
            "every push is signed with HERALD_PRODUCER_EVENTS_SECRET"
        );
        let page: Value = serde_json::from_slice(&post.body).expect("a JSON page");
        let items = page["items"].as_array().expect("items");
        assert_eq!(
            page["next_cursor"].as_str(),
            items.last().map(|e| e["id"].to_string()).as_deref(),
            "{page}"
        );
        if i >= failed {
            events.extend(items.iter().cloned());
        }
    }
    events
}

/// A subscriber that subscribes, one whose lease runs out, one that unsubscribes, one the
/// callback does not confirm, one the hub denies, and a topic whose fetches fail then
/// recover: each an event, in order, with gap-free ids across pages.
#[tokio::test(flavor = "multi_thread")]
async fn the_producer_hears_what_happens_to_its_subscribers() {
    // Pushed too, to an endpoint that fails twice before it takes the first page.
    let producer = Subscriber::spawn();
    producer.on_deliver("events", vec![Answer::Status(503); 2]);
    let [url, secret] = push_to(&producer);
    let app = TestApp::spawn_with(&[
        ("HERALD_PRODUCER_TOKEN", TOKEN),
        ("HERALD_SWEEP_INTERVAL", "200ms"),
        ("HERALD_ALLOW_PRIVATE_ADDRESSES", "loopback"),
        (url.0, &url.1),
        (secret.0, &secret.1),
    ])
    .await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("t", Some("text/plain"), "first");
    let topic = publisher.url("t");

    app.subscribed(&topic, &sub.callback("stays"), &[]).await;
    app.subscribed(
        &topic,
        &sub.callback("short"),
        &[("hub.lease_seconds", "1")],
    )
    .await;
    app.subscribed(&topic, &sub.callback("leaves"), &[]).await;
    assert_eq!(
        app.unsubscribe(&topic, &sub.callback("leaves")).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.settled_request(&topic, &sub.callback("leaves")).await,
        "verified"
    );
    sub.on_verify("refuses", [Answer::Status(404)]);
    app.subscribe(&topic, &sub.callback("refuses"), &[]).await;
    assert_eq!(
        app.settled_request(&topic, &sub.callback("refuses")).await,
        "failed"
    );
    let forbidden = "http://10.1.2.3/feed";
    app.subscribe(forbidden, &sub.callback("denied"), &[]).await;
    assert_eq!(
        app.settled_request(forbidden, &sub.callback("denied"))
            .await,
        "denied"
    );
    eventually("the short lease to expire", || async {
        (app.subscription_state(&topic, &sub.callback("short"))
            .await
            .as_deref()
            == Some("expired"))
        .then_some(())
    })
    .await;
    // The topic fails, then recovers.
    publisher.set_status("t", 500);
    app.publish(&topic).await;
    app.wait_fetch_error(&topic).await;
    publisher.set("t", Some("text/plain"), "second");
    app.publish(&topic).await;
    sub.wait_deliveries("stays", 1).await;
    app.wait_topics_idle().await;

    let events = eventually("the recovery event", || async {
        let events = all_events(&app, 2).await;
        types(&events)
            .contains(&"topic.fetch_recovered")
            .then_some(events)
    })
    .await;
    let ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "gap-free: {events:?}"
    );
    let kinds = types(&events);
    for expected in [
        "subscription.activated",
        "subscription.unsubscribed",
        "subscription.verification_failed",
        "subscription.denied",
        "subscription.expired",
        "topic.fetch_failing",
        "topic.fetch_recovered",
    ] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "subscription.activated")
            .count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "topic.fetch_failing")
            .count(),
        1,
        "a failure is told once: {kinds:?}"
    );
    let by_type = |t: &str| events.iter().find(|e| e["type"] == t).expect(t).clone();
    let activated = by_type("subscription.activated");
    assert_eq!(activated["topic"], topic.as_str());
    assert_eq!(
        activated["callback_host"],
        format!("127.0.0.1:{}", sub.port())
    );
    assert!(
        activated["subscription_id"].as_i64().is_some(),
        "{activated}"
    );
    assert!(
        activated["detail"]["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(by_type("subscription.denied")["topic"], forbidden);
    assert!(
        by_type("subscription.denied")["detail"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(
        by_type("subscription.verification_failed")["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("404") || r.contains("challenge"))
    );
    let short_id = app
        .scalar_text(
            "SELECT CAST(id AS TEXT) FROM subscriptions WHERE callback = $1",
            &[&sub.callback("short")],
        )
        .await;
    assert_eq!(
        by_type("subscription.expired")["subscription_id"]
            .as_i64()
            .map(|id| id.to_string()),
        short_id
    );
    assert!(by_type("topic.fetch_failing")["detail"]["error"].is_string());
    let never: Vec<&Value> = events
        .iter()
        .filter(|e| e["callback_host"].as_str().is_some_and(|h| h.contains('/')))
        .collect();
    assert!(
        never.is_empty(),
        "hosts only, never callback URLs: {never:?}"
    );
    // The push: the same events, in the same order, each once, the failed POSTs retried.
    let got = eventually("every event to be pushed", || async {
        let got = pushed(&producer, 2);
        (got.len() >= events.len()).then_some(got)
    })
    .await;
    assert_eq!(got[..events.len()], events[..]);
    let failed = producer.deliveries("events");
    assert_eq!(
        failed[0].body, failed[1].body,
        "a failed page is sent again"
    );
    assert_eq!(failed[1].body, failed[2].body);

    // Filters: by type, by topic.
    let (status, body) = page(&app, "type=subscription.expired,topic.fetch_failing").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        types(body["items"].as_array().expect("items")),
        ["subscription.expired", "topic.fetch_failing"]
    );
    let (_, body) = page(
        &app,
        &format!(
            "topic={}",
            url::form_urlencoded::byte_serialize(forbidden.as_bytes()).collect::<String>()
        ),
    )
    .await;
    assert_eq!(
        types(body["items"].as_array().expect("items")),
        ["subscription.denied"]
    );
    // Bad parameters are JSON errors.
    for query in [
        "type=subscription.nothing",
        "limit=0",
        "after=-1",
        "after=100000",
    ] {
        let (status, body) = page(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
}

/// Events older than `HERALD_EVENTS_RETENTION` are pruned by the sweep; a reader asking for
/// what came after a pruned id is told so (410), never silently given what is left; one that
/// asks from the start gets what is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_behind_retention_is_told_its_events_are_gone() {
    let app = TestApp::spawn_with(&[
        ("HERALD_PRODUCER_TOKEN", TOKEN),
        ("HERALD_SWEEP_INTERVAL", "200ms"),
        ("HERALD_EVENTS_RETENTION", "3s"),
    ])
    .await;
    let sub = Subscriber::spawn();
    app.subscribed("http://127.0.0.1:9/old", &sub.callback("old"), &[])
        .await;
    eventually("the first event to be pruned", || async {
        (app.count("SELECT COUNT(*) FROM events").await == 0).then_some(())
    })
    .await;
    app.subscribed("http://127.0.0.1:9/new", &sub.callback("new"), &[])
        .await;
    let (status, body) = page(&app, "after=0").await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"], "gone");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("after 1")),
        "{body}"
    );
    let (status, body) = page(&app, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["id"], 2);
    assert_eq!(items[0]["topic"], "http://127.0.0.1:9/new");
    let (status, _) = page(&app, "after=1").await;
    assert_eq!(status, StatusCode::OK);
}

/// Opens `GET /api/v1/events/stream?{query}`, resuming after `last_event_id` when given.
async fn stream(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Sse {
    let mut req = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/events/stream?{query}",
            app.port
        ))
        .bearer_auth(TOKEN);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let response = req.send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    Sse::from_response(response)
}

/// The stream sends each event as it is recorded (`id:` its id, `event:` its type); a stream
/// resumed with `Last-Event-ID` sends exactly what came after it — nothing lost, nothing
/// repeated; a cursor behind retention gets a `gone` event first.
#[tokio::test(flavor = "multi_thread")]
async fn the_stream_sends_events_as_they_happen_and_resumes_where_it_stopped() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let sub = Subscriber::spawn();
    // Live: what comes after the connection.
    app.subscribed("http://127.0.0.1:9/before", &sub.callback("before"), &[])
        .await;
    let mut live = stream(&app, "", None).await;
    app.subscribed("http://127.0.0.1:9/one", &sub.callback("one"), &[])
        .await;
    let first = live.expect("subscription.activated").await;
    assert_eq!(first.id.as_deref(), Some("2"));
    assert_eq!(first.data["topic"], "http://127.0.0.1:9/one");
    drop(live);

    // Missed while away, then resumed: 3 and 4 exactly, in order.
    app.subscribed("http://127.0.0.1:9/two", &sub.callback("two"), &[])
        .await;
    assert_eq!(
        app.unsubscribe("http://127.0.0.1:9/two", &sub.callback("two"))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.settled_request("http://127.0.0.1:9/two", &sub.callback("two"))
            .await,
        "verified"
    );
    let mut resumed = stream(&app, "", Some("2")).await;
    let three = resumed.expect("subscription.activated").await;
    let four = resumed.expect("subscription.unsubscribed").await;
    assert_eq!(
        (three.id.as_deref(), four.id.as_deref()),
        (Some("3"), Some("4"))
    );
    assert_eq!(four.data["topic"], "http://127.0.0.1:9/two");
    assert!(
        resumed
            .quiet_for(std::time::Duration::from_millis(600))
            .await
            .is_none()
    );

    // A filter by type; `after` in the query from the start.
    let mut filtered = stream(&app, "after=0&type=subscription.unsubscribed", None).await;
    let only = filtered.expect("subscription.unsubscribed").await;
    assert_eq!(only.id.as_deref(), Some("4"));

    // Behind retention: told, then what is kept.
    app.exec("DELETE FROM events WHERE id <= 3").await;
    app.exec("UPDATE event_counter SET pruned_upto = 3").await;
    let mut behind = stream(&app, "", Some("1")).await;
    let gone = behind.expect("gone").await;
    assert_eq!(gone.data["resume_after"], 3);
    assert_eq!(
        behind
            .expect("subscription.unsubscribed")
            .await
            .id
            .as_deref(),
        Some("4")
    );
}

/// A callback that fails until a delivery exhausts its retries: the delivery is dead-lettered
/// and the subscription is failing (told once); the next delivery that arrives recovers it.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_callback_is_told_once_and_its_recovery_too() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("f", Some("text/plain"), "one");
    let topic = publisher.url("f");
    app.subscribed(&topic, &sub.callback("flaky"), &[]).await;
    sub.on_deliver("flaky", vec![Answer::Status(500); 8]);
    app.publish(&topic).await;
    app.wait_delivery_state("failed").await;
    // A second failure is the same news.
    publisher.set("f", Some("text/plain"), "two");
    app.publish(&topic).await;
    eventually("the second delivery to fail", || async {
        (app.count("SELECT COUNT(*) FROM deliveries WHERE state = 'failed'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    sub.on_deliver("flaky", []);
    publisher.set("f", Some("text/plain"), "three");
    app.publish(&topic).await;
    sub.wait_deliveries("flaky", 9).await;
    let events = eventually("the recovery", || async {
        let events = all_events(&app, 100).await;
        types(&events)
            .contains(&"callback.recovered")
            .then_some(events)
    })
    .await;
    let health: Vec<&str> = types(&events)
        .into_iter()
        .filter(|t| !t.starts_with("subscription."))
        .collect();
    assert_eq!(
        health,
        [
            "delivery.dead_lettered",
            "callback.failing",
            "delivery.dead_lettered",
            "callback.recovered"
        ]
    );
    let dead = events
        .iter()
        .find(|e| e["type"] == "delivery.dead_lettered")
        .expect("a dead letter");
    let first_failed = app
        .scalar_text(
            "SELECT CAST(MIN(id) AS TEXT) FROM deliveries WHERE state = 'failed'",
            &[],
        )
        .await;
    assert_eq!(
        dead["detail"]["delivery_id"]
            .as_i64()
            .map(|id| id.to_string()),
        first_failed
    );
    assert_eq!(dead["topic"], topic.as_str());
    assert!(dead["subscription_id"].as_i64().is_some());
}

/// Events are written with the changes they report: a hub killed (SIGKILL) while it verifies
/// hundreds of subscriptions, and started again, leaves exactly one `subscription.activated`
/// per subscription it activated — none lost with a verification cut short, none repeated
/// when that verification is done again — and ids without gaps.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_loses_and_repeats_no_event() {
    use crate::helpers::{
        loopback_listener,
        process::{HubProcess, post_hub},
    };
    const N: usize = 300;
    // Verifications wait as long as the test needs: the held ones end with the kill, not
    // with a timeout.
    // The events are pushed as well: across the kill, each reaches the producer at least
    // once (a page whose POST the kill cut short is sent again, whole).
    let producer = Subscriber::spawn();
    let [url, secret] = push_to(&producer);
    let app = TestApp::spawn_with(&[
        ("HERALD_VERIFY_TIMEOUT", "60s"),
        (url.0, &url.1),
        (secret.0, &secret.1),
    ])
    .await;
    let (database_url, vars) = (app.database_url.clone(), app.vars.clone());
    app.stop().await;
    let sub = Subscriber::spawn();
    let client = reqwest::Client::new();
    let (_, port) = loopback_listener();
    let first = HubProcess::start(&database_url, port, &vars);
    let topic = "http://127.0.0.1:9/killed";
    // The second half's verifications hang until the kill: claimed and asked, not answered.
    for i in N / 2..N {
        sub.on_verify(&format!("k{i}"), [Answer::Gated]);
    }
    for i in 0..N {
        let callback = sub.callback(&format!("k{i}"));
        let pairs = [
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", callback.as_str()),
        ];
        let status = eventually("the request to be accepted", || async {
            post_hub(&client, port, &pairs).await
        })
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let db = herald::store::Db::connect(&database_url)
        .await
        .expect("database");
    let active = |db: &herald::store::Db| {
        let db = db.clone();
        async move {
            crate::helpers::app::herald_sql::count(
                &db,
                "SELECT COUNT(*) FROM subscriptions s JOIN topics t ON t.id = s.topic_id
                 WHERE s.state = 'active' AND t.url = 'http://127.0.0.1:9/killed'",
            )
            .await
        }
    };
    // Killed in the middle of the verifications: some done, the held ones in flight.
    eventually("some to be verified", || async {
        (active(&db).await >= 50).then_some(())
    })
    .await;
    eventually(
        "verifications of the second half to be in flight",
        || async { (sub.verifications(&format!("k{}", N / 2)).len() == 1).then_some(()) },
    )
    .await;
    first.kill();
    let at_kill = active(&db).await;
    assert!(at_kill < N as i64, "the kill came before the end");
    sub.open_gate_for_good();
    let _second = HubProcess::start(&database_url, port, &vars);
    // The killed process's claims are taken back when it is found dead (`upkeep::liveness`).
    crate::helpers::eventually_within(
        std::time::Duration::from_secs(60),
        "every subscription to be active",
        || async { (active(&db).await == N as i64).then_some(()) },
    )
    .await;
    let ids =
        crate::helpers::app::herald_sql::texts(&db, "SELECT CAST(id AS TEXT) FROM events", &[])
            .await;
    let mut ids: Vec<i64> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "no gap");
    let per_subscription = crate::helpers::app::herald_sql::count(
        &db,
        "SELECT COUNT(*) FROM (SELECT subscription_id FROM events
                               WHERE type = 'subscription.activated'
                               GROUP BY subscription_id HAVING COUNT(*) = 1) AS once",
    )
    .await;
    assert_eq!(
        per_subscription, N as i64,
        "one activation event per subscription (killed with {at_kill} active)"
    );
    assert_eq!(
        crate::helpers::app::herald_sql::count(
            &db,
            "SELECT COUNT(*) FROM events WHERE type = 'subscription.activated'"
        )
        .await,
        N as i64
    );
    let all = ids.len();
    let got = eventually("every event to be pushed", || async {
        let got = pushed(&producer, 0);
        let mut seen: Vec<i64> = got.iter().filter_map(|e| e["id"].as_i64()).collect();
        seen.sort_unstable();
        seen.dedup();
        (seen.len() >= all).then_some(got)
    })
    .await;
    let mut seen: Vec<i64> = got.iter().filter_map(|e| e["id"].as_i64()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, ids, "every event pushed");
}

/// A page the producer never takes is dead-lettered like any delivery, without an event
/// about it (that would be pushed to the endpoint that fails); the pages after it are pushed,
/// and the dead letter, replayed by the operator, arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_that_exhausts_its_retries_is_dead_lettered_and_replayable() {
    let producer = Subscriber::spawn();
    producer.on_deliver("events", vec![Answer::Status(500); 4]);
    let [url, secret] = push_to(&producer);
    let app = TestApp::spawn_with(&[
        ("HERALD_PRODUCER_TOKEN", TOKEN),
        ("HERALD_ADMIN_TOKEN", "admin-token"),
        (url.0, &url.1),
        (secret.0, &secret.1),
    ])
    .await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/pushed";
    app.subscribed(topic, &sub.callback("first"), &[]).await;
    app.wait_delivery_state("failed").await;
    app.subscribed(topic, &sub.callback("second"), &[]).await;
    let after = eventually("the next page", || async {
        let got = pushed(&producer, 4);
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(types(&after), ["subscription.activated"]);
    assert_eq!(after[0]["id"], 2, "{after:?}");
    let events = all_events(&app, 100).await;
    assert_eq!(
        types(&events),
        ["subscription.activated", "subscription.activated"],
        "nothing is told of the push's own failure"
    );
    let replayed = app
        .client
        .post(format!(
            "http://127.0.0.1:{}/api/v1/admin/deliveries/replay",
            app.port
        ))
        .bearer_auth("admin-token")
        .json(&serde_json::json!({ "all_failed": true }))
        .send()
        .await
        .expect("answer");
    assert!(
        replayed.status().is_success(),
        "{:?}",
        replayed.text().await
    );
    let got = eventually("the replayed page", || async {
        let got = pushed(&producer, 4);
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(got[1]["id"], 1);
    assert_eq!(got[1], events[0]);
}

/// A push configured for the first time starts with the events recorded after it; turned off,
/// its subscription ends; turned on again, it goes on from where it stopped — the events
/// recorded meanwhile first.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_starts_where_it_is_configured_and_resumes_where_it_stopped() {
    let producer = Subscriber::spawn();
    let [url, secret] = push_to(&producer);
    let with_push = [(url.0, url.1.as_str()), (secret.0, secret.1.as_str())];
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/on-and-off";
    let pushed_ids = || -> Vec<i64> {
        pushed(&producer, 0)
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect()
    };

    let app = TestApp::spawn().await;
    app.subscribed(topic, &sub.callback("before"), &[]).await;
    let database_url = app.database_url.clone();
    app.stop().await;

    let app = TestApp::spawn_on(database_url.clone(), &with_push).await;
    app.subscribed(topic, &sub.callback("pushed"), &[]).await;
    eventually("the first push", || async {
        (!pushed_ids().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        pushed_ids(),
        [2],
        "the event before the push was configured is not pushed"
    );
    app.stop().await;

    let app = TestApp::spawn_on(database_url.clone(), &[]).await;
    let state = app
        .scalar_text(
            "SELECT s.state FROM subscriptions s JOIN topics t ON t.id = s.topic_id
             WHERE t.url = 'herald:producer-events'",
            &[],
        )
        .await;
    assert_eq!(state.as_deref(), Some("ended"));
    app.subscribed(topic, &sub.callback("while-off"), &[]).await;
    app.stop().await;

    let app = TestApp::spawn_on(database_url, &with_push).await;
    app.subscribed(topic, &sub.callback("again"), &[]).await;
    eventually("the events of while it was off, and after", || async {
        (pushed_ids().len() >= 3).then_some(())
    })
    .await;
    assert_eq!(pushed_ids(), [2, 3, 4]);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 4);
}

/// A producer that takes no push for longer than `HERALD_EVENTS_RETENTION` misses what
/// retention deleted before it could be pushed, and the next page says which ids those were.
#[tokio::test(flavor = "multi_thread")]
async fn events_pruned_before_they_were_pushed_are_said_to_be_missed() {
    let producer = Subscriber::spawn();
    // Every POST is held until the test opens the gate (the delivery timeout is longer).
    for _ in 0..4 {
        producer.on_deliver("events", [Answer::Gated]);
    }
    let [url, secret] = push_to(&producer);
    let app = TestApp::spawn_with(&[
        (url.0, &url.1),
        (secret.0, &secret.1),
        ("HERALD_DELIVERY_TIMEOUT", "60s"),
        ("HERALD_EVENTS_RETENTION", "2s"),
        ("HERALD_SWEEP_INTERVAL", "200ms"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/missed";
    let waiting = "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'sending')";
    // Four pages of one event each wait for the producer (the most that may wait).
    for i in 1..=4 {
        app.subscribed(topic, &sub.callback(&format!("s{i}")), &[])
            .await;
        eventually("the page to be made", || async {
            (app.count(waiting).await == i).then_some(())
        })
        .await;
    }
    // Two more stay in the log, and retention deletes them there.
    app.subscribed(topic, &sub.callback("s5"), &[]).await;
    app.subscribed(topic, &sub.callback("s6"), &[]).await;
    eventually("retention to delete the unpushed events", || async {
        (app.count("SELECT COUNT(*) FROM event_counter WHERE pruned_upto >= 6")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(app.count(waiting).await, 4, "no page of them was made");
    producer.open_gate_for_good();
    app.subscribed(topic, &sub.callback("s7"), &[]).await;
    let pages = eventually("the page after the gap", || async {
        let posts = producer.deliveries("events");
        (posts.len() >= 5).then_some(posts)
    })
    .await;
    let page: Value = serde_json::from_slice(&pages[4].body).expect("a JSON page");
    assert_eq!(page["missed_after"], 4, "{page}");
    assert_eq!(page["missed_upto"], 6, "{page}");
    assert_eq!(page["items"][0]["id"], 7, "{page}");
    let ids: Vec<i64> = pushed(&producer, 0)
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 7]);
}
