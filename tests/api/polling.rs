//! Polling (docs/polling.md): topics fetched on a schedule, with real local feed servers.
//! Intervals are shortened to tenths of a second so schedules run within a test; every wait
//! is on an observed event (a delivery, a fetch, a stored schedule) with a deadline.

use std::time::Duration;

use crate::helpers::{Publisher, Subscriber, TestApp, eventually, eventually_within};

/// A small Atom feed with these entries (id, title), newest first.
fn atom(entries: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  \
         <id>urn:feed:polled</id>\n  <title>polled</title>\n  <updated>2026-12-07T00:00:00Z</updated>\n",
    );
    for (id, title) in entries {
        out.push_str(&format!(
            "  <entry><id>{id}</id><title>{title}</title><updated>2026-12-07T00:00:00Z</updated></entry>\n"
        ));
    }
    out.push_str("</feed>\n");
    out
}

const ATOM: Option<&str> = Some("application/atom+xml");

/// Fast schedules: polls between 200 ms and 2 s apart.
fn fast(mode: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("HERALD_POLLING", mode),
        ("HERALD_POLL_MIN_INTERVAL", "200ms"),
        ("HERALD_POLL_MAX_INTERVAL", "2s"),
        ("HERALD_POLL_PINGED_INTERVAL", "1s"),
    ]
}

/// The JSON answer of the producer API at `path` (the token `producer-token`).
async fn producer_get(app: &TestApp, path: &str) -> serde_json::Value {
    app.client
        .get(format!("http://127.0.0.1:{}{path}", app.port))
        .bearer_auth("producer-token")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json")
}

/// A number of a topic row's column (by URL).
async fn topic_number(app: &TestApp, column: &str, url: &str) -> Option<i64> {
    let sql = format!("SELECT CAST({column} AS TEXT) FROM topics WHERE url = $1");
    app.scalar_text_built(sql, &[url])
        .await
        .and_then(|v| v.parse().ok())
}

async fn topic_text(app: &TestApp, column: &'static str, url: &str) -> Option<String> {
    let sql = format!("SELECT {column} FROM topics WHERE url = $1");
    app.scalar_text_built(sql, &[url]).await
}

/// A feed whose publisher never pings: its first poll learns what it serves (nothing is
/// delivered), an entry that appears later is delivered, as a diff, by the poll that finds
/// it; the fetch tells the publisher how many subscribers the topic has.
#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_never_pings_gets_its_new_entries_to_subscribers() {
    let app = TestApp::spawn_with(&fast("all")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("quiet", ATOM, atom(&[("urn:e:1", "first")]));
    let topic = publisher.url("quiet");
    app.subscribed(&topic, &sub.callback("quiet"), &[]).await;
    // The baseline poll.
    eventually("the first poll", || async {
        (publisher.fetches("quiet") >= 1).then_some(())
    })
    .await;
    eventually("the baseline to be stored", || async {
        topic_text(&app, "feed_kind", &topic).await
    })
    .await;
    assert!(
        sub.deliveries("quiet").is_empty(),
        "the baseline is not delivered"
    );

    publisher.set(
        "quiet",
        ATOM,
        atom(&[("urn:e:2", "second"), ("urn:e:1", "first")]),
    );
    let delivered = sub.wait_deliveries("quiet", 1).await;
    let body = String::from_utf8_lossy(&delivered[0].body).into_owned();
    assert!(body.contains("urn:e:2"), "{body}");
    assert!(!body.contains("urn:e:1"), "only the new entry: {body}");
    let sources = app
        .texts(
            "SELECT d.source FROM distributions d JOIN topics t ON t.id = d.topic_id WHERE t.url = $1",
            &[&topic],
        )
        .await;
    assert_eq!(sources, vec!["poll".to_owned()]);
    let agents = publisher.request_headers("quiet", "user-agent");
    let agent = agents.last().cloned().flatten().expect("a User-Agent");
    assert!(
        agent.starts_with("Herald/")
            && agent.ends_with(&format!("+{}; 1 subscriber)", app.hub_url())),
        "{agent}"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("herald_polls_total{outcome=\"changed\"} ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// A failing feed backs off exponentially from the minimum, shows since when it fails, and
/// recovers by itself when it answers again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_feed_backs_off_and_recovers() {
    let app = TestApp::spawn_with(&fast("all")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("flaky", ATOM, atom(&[("urn:f:1", "one")]));
    publisher.set_status("flaky", 500);
    let topic = publisher.url("flaky");
    app.subscribed(&topic, &sub.callback("flaky"), &[]).await;
    let mut intervals = Vec::new();
    for failures in 1..=3 {
        let interval = eventually_within(Duration::from_secs(30), "the next failure", || async {
            (topic_number(&app, "fetch_failures", &topic).await == Some(failures)).then_some(())?;
            topic_number(&app, "poll_interval_ms", &topic).await
        })
        .await;
        intervals.push(interval);
    }
    assert_eq!(intervals, vec![200, 400, 800]);
    assert_eq!(
        topic_text(&app, "poll_reason", &topic).await.as_deref(),
        Some("error backoff")
    );
    assert!(topic_number(&app, "failing_since", &topic).await.is_some());
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "herald_failing_topics 1"),
        "{metrics}"
    );
    let page = app
        .get_text(&format!("/topic-details?hub.url={}", urlencode(&topic)))
        .await;
    assert!(page.contains("Failing since"), "{page}");

    publisher.set_status("flaky", 200);
    eventually_within(Duration::from_secs(30), "the recovery", || async {
        (topic_number(&app, "failing_since", &topic).await.is_none()
            && topic_number(&app, "fetch_failures", &topic).await == Some(0))
        .then_some(())
    })
    .await;
    publisher.set(
        "flaky",
        ATOM,
        atom(&[("urn:f:2", "two"), ("urn:f:1", "one")]),
    );
    let delivered = sub.wait_deliveries("flaky", 1).await;
    assert!(String::from_utf8_lossy(&delivered[0].body).contains("urn:f:2"));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A 503 with `Retry-After` puts the next poll at least that far away, and no fetch comes
/// before it.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let app = TestApp::spawn_with(&fast("all")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("busy", ATOM, atom(&[("urn:b:1", "one")]));
    publisher.set_status("busy", 503);
    publisher.set_header("busy", "Retry-After", "1");
    let topic = publisher.url("busy");
    app.subscribed(&topic, &sub.callback("busy"), &[]).await;
    let (fetched_at, next_at) = eventually_within(
        Duration::from_secs(30),
        "the 503 to be recorded",
        || async {
            (topic_text(&app, "poll_reason", &topic).await.as_deref() == Some("retry-after"))
                .then_some(())?;
            Some((
                topic_number(&app, "last_fetched_at", &topic).await?,
                topic_number(&app, "poll_next_at", &topic).await?,
            ))
        },
    )
    .await;
    assert_eq!(
        topic_number(&app, "poll_interval_ms", &topic).await,
        Some(1000)
    );
    assert!(next_at - fetched_at >= 900, "{fetched_at} → {next_at}");
    let fetches = publisher.fetches("busy");
    publisher.set_status("busy", 200);
    eventually_within(
        Duration::from_secs(30),
        "the poll after the pause",
        || async { (publisher.fetches("busy") > fetches).then_some(()) },
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        now >= next_at,
        "the next fetch came at {now}, before {next_at}"
    );
}

/// A topic whose publisher pings is polled as a safety net; a poll that finds entries it did
/// not ping for counts a missed ping and halves the safety-net interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_ping_is_counted_and_shortens_the_interval() {
    let mut vars = fast("safety-net");
    vars.push(("HERALD_PRODUCER_TOKEN", "producer-token"));
    let app = TestApp::spawn_with(&vars).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("pinger", ATOM, atom(&[("urn:p:1", "one")]));
    let topic = publisher.url("pinger");
    app.subscribed(&topic, &sub.callback("pinger"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("pinger", 1).await;
    eventually("the safety-net schedule", || async {
        (topic_text(&app, "poll_reason", &topic).await.as_deref() == Some("publisher pings"))
            .then_some(())
    })
    .await;
    assert_eq!(
        topic_number(&app, "poll_interval_ms", &topic).await,
        Some(1000)
    );

    // A new entry, and no ping.
    publisher.set(
        "pinger",
        ATOM,
        atom(&[("urn:p:2", "two"), ("urn:p:1", "one")]),
    );
    let delivered = sub.wait_deliveries("pinger", 2).await;
    assert!(String::from_utf8_lossy(&delivered[1].body).contains("urn:p:2"));
    eventually("the missed ping to be counted", || async {
        (topic_number(&app, "missed_pings", &topic).await == Some(1)).then_some(())
    })
    .await;
    // The safety-net floor is halved (500 ms); the entry rate seen (two changes about a second
    // apart) may ask for a little more.
    let interval = topic_number(&app, "poll_interval_ms", &topic)
        .await
        .expect("an interval");
    assert!((500..1000).contains(&interval), "{interval}");
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "herald_missed_pings_total 1"),
        "{metrics}"
    );
    // The producer sees it too.
    let status = producer_get(&app, &format!("/api/v1/topics?topic={}", urlencode(&topic))).await;
    assert_eq!(status["fetching"]["missed_pings"], 1, "{status}");
    let told = producer_get(&app, "/api/v1/events?type=topic.missed_ping").await;
    let items = told["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{told}");
    assert_eq!(items[0]["topic"], topic.as_str());
    assert!(status["fetching"]["next_poll_at"].is_string(), "{status}");
}

/// In safety-net mode (the default) a topic whose publisher never pinged is not fetched.
#[tokio::test(flavor = "multi_thread")]
async fn the_safety_net_leaves_topics_that_never_pinged_alone() {
    let app = TestApp::spawn_with(&fast("safety-net")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("silent", ATOM, atom(&[("urn:s:1", "one")]));
    let topic = publisher.url("silent");
    app.subscribed(&topic, &sub.callback("silent"), &[]).await;
    eventually("the topic to be put off", || async {
        (topic_text(&app, "poll_reason", &topic).await.as_deref() == Some("never pinged"))
            .then_some(())
    })
    .await;
    assert_eq!(publisher.fetches("silent"), 0);
    assert_eq!(
        topic_number(&app, "poll_interval_ms", &topic).await,
        Some(2000)
    );
}

/// A poll that finds pings waiting (their job lost, or not yet run) leaves them to their job
/// (reconciled at start): what the publisher pinged for is delivered once, fetched once, and
/// no missed ping is counted — whichever of the poller and the ping job gets to the topic
/// first. Run a few times: the order varies.
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_that_finds_pings_waiting_delivers_them_once() {
    for round in 0..10 {
        let web =
            TestApp::spawn_with(&[("HERALD_ROLE", "web"), ("HERALD_POLLING", "safety-net")]).await;
        let sub = Subscriber::spawn();
        let publisher = Publisher::spawn();
        publisher.set("waiting", Some("text/plain"), format!("pinged for {round}"));
        let topic = publisher.url("waiting");
        let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
        web.subscribed(&topic, &sub.callback("w"), &[]).await;
        worker.stop().await;
        assert_eq!(web.publish(&topic).await, reqwest::StatusCode::NO_CONTENT);
        // The ping's job is lost and the topic's poll is due: the next worker's poller and its
        // reconciler both find the topic.
        match web.db() {
            herald::store::Db::Sqlite(_) => web.exec("DELETE FROM Jobs").await,
            herald::store::Db::Pg(_) => web.exec("DELETE FROM apalis.jobs").await,
        }
        web.exec("UPDATE topics SET poll_next_at = 0").await;
        let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
        let got = sub.wait_deliveries("w", 1).await;
        assert_eq!(got[0].body, format!("pinged for {round}").as_bytes());
        web.wait_topics_idle().await;
        eventually("the topic's next poll", || async {
            topic_text(&web, "poll_reason", &topic).await
        })
        .await;
        assert_eq!(sub.deliveries("w").len(), 1, "round {round}");
        assert_eq!(publisher.fetches("waiting"), 1, "one fetch, round {round}");
        assert_eq!(topic_number(&web, "missed_pings", &topic).await, Some(0));
        worker.stop().await;
    }
}

/// The race behind a double fetch, made to happen in order: a poller takes a due topic, a
/// ping's fetch claims, fetches and writes the next poll, and only then does the poller try to
/// claim the topic — which it must not get (the fetch it was due for has just happened).
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_taken_before_another_fetch_rescheduled_the_topic_does_not_fetch_again() {
    use herald::{
        domain::{
            ids::{ProcessId, UnixMs},
            poll::PollReason,
        },
        store::topics::{self, ClaimFor, FetchRecord, PollWrite},
    };
    // A web-only process: no poller of its own.
    let web = TestApp::spawn_with(&[("HERALD_ROLE", "web")]).await;
    let sub = Subscriber::spawn();
    let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let topic = "http://127.0.0.1:9/raced";
    web.subscribed(topic, &sub.callback("raced"), &[]).await;
    worker.stop().await;
    web.exec("UPDATE topics SET poll_next_at = 0").await;
    let db = web.db();
    let me = ProcessId::generate();
    let now = UnixMs::now();
    let lease = now.after(Duration::from_secs(60));
    let due = topics::claim_due(db, now, lease, 10).await.expect("claim");
    assert_eq!(due.len(), 1);

    // Another fetch of the topic (a ping's, a push's) runs to its end meanwhile.
    let hold = now.after(Duration::from_secs(30));
    let other = topics::claim(db, due[0].id, now, hold, ClaimFor::Push, &me)
        .await
        .expect("claim")
        .expect("the topic is free");
    let mut tx = db.begin().await.expect("begin");
    let record = FetchRecord {
        poll: Some(PollWrite {
            next_at: now.after(Duration::from_secs(3600)),
            interval: Duration::from_secs(3600),
            reason: PollReason::Quiet,
            changed: None,
            gap_estimate: None,
            missed_ping: false,
        }),
        ..Default::default()
    };
    topics::finish(&mut tx, &other, None, &record, now)
        .await
        .expect("finish");
    tx.commit().await.expect("commit");

    let late = topics::claim_polls(db, &[due[0].id], now, hold, lease, &me)
        .await
        .expect("claim");
    assert!(
        late.is_empty(),
        "the poll must not fetch what was just fetched"
    );
}

/// The race behind a lost ping, made to happen in order: a ping is recorded and its job not
/// yet run when a poller takes the topic. The poll must not claim it (its job would find the
/// topic held and end, and a poll does not cover pings): the ping's job claims it.
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_does_not_claim_a_topic_whose_pings_wait_for_their_job() {
    use herald::{
        domain::ids::{ProcessId, UnixMs},
        store::topics::{self, ClaimFor},
    };
    let web = TestApp::spawn_with(&[("HERALD_ROLE", "web")]).await;
    let sub = Subscriber::spawn();
    let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let topic = "http://127.0.0.1:9/pinged";
    web.subscribed(topic, &sub.callback("pinged"), &[]).await;
    worker.stop().await;
    assert_eq!(web.publish(topic).await, reqwest::StatusCode::NO_CONTENT);
    web.exec("UPDATE topics SET poll_next_at = 0").await;
    let db = web.db();
    let me = ProcessId::generate();
    let now = UnixMs::now();
    let lease = now.after(Duration::from_secs(60));
    let due = topics::claim_due(db, now, lease, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    let hold = now.after(Duration::from_secs(30));
    let polled = topics::claim_polls(db, &[due[0].id], now, hold, lease, &me)
        .await
        .expect("claim");
    assert!(polled.is_empty(), "a poll took a topic whose pings wait");
    let pinged = topics::claim(db, due[0].id, now, hold, ClaimFor::Pings, &me)
        .await
        .expect("claim");
    assert!(pinged.is_some(), "the ping's job must find the topic free");
}

/// A ping that arrives while a poll's fetch of its topic is under way finds the topic held,
/// and its job ends; the poll fails. The failed poll must hand the ping on (a follow-up job),
/// not leave it to the reconciler a minute later: the new content is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_ping_during_a_failing_poll_is_not_lost() {
    let app = TestApp::spawn_with(&fast("safety-net")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("busy", ATOM, atom(&[("urn:b:1", "one")]));
    let topic = publisher.url("busy");
    app.subscribed(&topic, &sub.callback("busy"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("busy", 1).await;
    app.wait_topics_idle().await;

    // The next poll hangs, then fails.
    publisher.set_gated("busy");
    publisher.set_status("busy", 500);
    app.exec("UPDATE topics SET poll_next_at = 0").await;
    eventually("the poll's fetch to be under way", || async {
        (publisher.fetches("busy") == 2).then_some(())
    })
    .await;
    // A ping meanwhile: its job finds the topic held by the poll and ends.
    app.publish(&topic).await;
    let unfinished = match app.db() {
        herald::store::Db::Sqlite(_) => {
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'hubdistrib' AND status <> 'Done'"
        }
        herald::store::Db::Pg(_) => {
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'hubdistrib' AND status <> 'Done'"
        }
    };
    eventually("the ping's job to end", || async {
        (app.count(unfinished).await == 0).then_some(())
    })
    .await;
    publisher.open_gate();
    app.wait_fetch_error(&topic).await;
    publisher.set(
        "busy",
        ATOM,
        atom(&[("urn:b:2", "two"), ("urn:b:1", "one")]),
    );
    let got = sub.wait_deliveries("busy", 2).await;
    assert!(String::from_utf8_lossy(&got[1].body).contains("urn:b:2"));
}

/// A topic whose every fetch failed for the give-up time is parked (polled no more); a new
/// subscriber asks for it again, and a poll comes at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_failing_too_long_is_parked_until_a_subscriber_asks_again() {
    let mut vars = fast("all");
    vars.push(("HERALD_POLL_GIVE_UP_AFTER", "1s"));
    let app = TestApp::spawn_with(&vars).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("dead", ATOM, atom(&[("urn:d:1", "one")]));
    publisher.set_status("dead", 500);
    let topic = publisher.url("dead");
    app.subscribed(&topic, &sub.callback("dead1"), &[]).await;
    eventually_within(
        Duration::from_secs(30),
        "the topic to be parked",
        || async {
            (topic_text(&app, "poll_reason", &topic).await.as_deref() == Some("failing too long"))
                .then_some(())
        },
    )
    .await;
    let fetches = publisher.fetches("dead");
    assert!(fetches >= 2, "{fetches}");
    let page = app
        .get_text(&format!("/topic-details?hub.url={}", urlencode(&topic)))
        .await;
    assert!(page.contains("failing too long"), "{page}");

    // A new subscriber: the topic is polled again.
    publisher.set_status("dead", 200);
    app.subscribed(&topic, &sub.callback("dead2"), &[]).await;
    eventually_within(
        Duration::from_secs(30),
        "a poll after the new subscriber",
        || async {
            (publisher.fetches("dead") > fetches
                && topic_number(&app, "failing_since", &topic).await.is_none())
            .then_some(())
        },
    )
    .await;
}

/// What a topic says of its own freshness lengthens its interval, within the maximum: an RSS
/// `<ttl>` (minutes) and a `Cache-Control: max-age`.
#[tokio::test(flavor = "multi_thread")]
async fn server_hints_lengthen_the_interval_within_the_maximum() {
    let app = TestApp::spawn_with(&fast("all")).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "ttl",
        Some("application/rss+xml"),
        "<rss version=\"2.0\"><channel><title>t</title><ttl>60</ttl>\
         <item><guid>a</guid><title>A</title></item></channel></rss>",
    );
    publisher.set("cached", ATOM, atom(&[("urn:c:1", "one")]));
    publisher.set_header("cached", "Cache-Control", "public, max-age=1");
    let (ttl, cached) = (publisher.url("ttl"), publisher.url("cached"));
    app.subscribed(&ttl, &sub.callback("ttl"), &[]).await;
    app.subscribed(&cached, &sub.callback("cached"), &[]).await;
    for (topic, interval) in [(&ttl, 2000), (&cached, 1000)] {
        eventually("the hinted schedule", || async {
            (topic_text(&app, "poll_reason", topic).await.as_deref() == Some("server hint"))
                .then_some(())
        })
        .await;
        assert_eq!(
            topic_number(&app, "poll_interval_ms", topic).await,
            Some(interval),
            "{topic}"
        );
    }
}

/// A topic whose last subscriber left is not fetched any more; a new subscriber brings its
/// poll forward.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_without_subscribers_is_not_fetched() {
    let mut vars = fast("all");
    vars.retain(|(k, _)| *k != "HERALD_POLL_MAX_INTERVAL");
    vars.push(("HERALD_POLL_MAX_INTERVAL", "1h"));
    let app = TestApp::spawn_with(&vars).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("left", ATOM, atom(&[("urn:l:1", "one")]));
    let topic = publisher.url("left");
    let callback = sub.callback("left");
    app.subscribed(&topic, &callback, &[]).await;
    eventually("the first poll", || async {
        (publisher.fetches("left") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        app.unsubscribe(&topic, &callback).await,
        reqwest::StatusCode::ACCEPTED
    );
    assert_eq!(app.settled_request(&topic, &callback).await, "verified");
    eventually_within(
        Duration::from_secs(30),
        "the topic to be put off",
        || async {
            (topic_text(&app, "poll_reason", &topic).await.as_deref() == Some("no subscriber"))
                .then_some(())
        },
    )
    .await;
    let fetches = publisher.fetches("left");
    // Put off for an hour: a new subscriber does not wait for it.
    app.subscribed(&topic, &sub.callback("back"), &[]).await;
    eventually("a poll for the new subscriber", || async {
        (publisher.fetches("left") > fetches).then_some(())
    })
    .await;
}

/// Fetches tell the publisher how many users follow the topic: each subscription counts the
/// users it said it subscribes for (`X-Hub-On-Behalf-Of`, PuSH 0.3 §7.3), or 1; with
/// `HERALD_SUBSCRIBER_COUNTS=false` no count is given.
#[tokio::test(flavor = "multi_thread")]
async fn fetches_carry_the_subscriber_count_with_the_users_subscribers_stand_for() {
    for counts in ["true", "false"] {
        let app = TestApp::spawn_with(&[("HERALD_SUBSCRIBER_COUNTS", counts)]).await;
        let sub = Subscriber::spawn();
        let publisher = Publisher::spawn();
        publisher.set("counted", Some("text/plain"), "hello");
        let topic = publisher.url("counted");
        let reader = sub.callback("reader");
        let status = app
            .client
            .post(app.hub_url())
            .header("X-Hub-On-Behalf-Of", "25")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("hub.mode", "subscribe")
                    .append_pair("hub.topic", &topic)
                    .append_pair("hub.callback", &reader)
                    .finish(),
            )
            .send()
            .await
            .expect("an answer")
            .status();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        assert_eq!(app.settled_request(&topic, &reader).await, "verified");
        app.subscribed(&topic, &sub.callback("plain"), &[]).await;
        app.publish(&topic).await;
        eventually("the fetch", || async {
            (publisher.fetches("counted") >= 1).then_some(())
        })
        .await;
        let agent = publisher
            .request_headers("counted", "user-agent")
            .pop()
            .flatten()
            .expect("a User-Agent");
        let expected = match counts {
            "true" => format!(
                "Herald/{} (+{}; 26 subscribers)",
                env!("CARGO_PKG_VERSION"),
                app.hub_url()
            ),
            _ => format!("Herald/{} (+{})", env!("CARGO_PKG_VERSION"), app.hub_url()),
        };
        assert_eq!(agent, expected);
    }
}

/// A feed the hub has never seen change starts at the rhythm its entries' own dates show
/// (here one an hour: polled every 30 minutes), not at the minimum.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_feed_starts_from_the_rhythm_of_its_entries_dates() {
    let app = TestApp::spawn_with(&[
        ("HERALD_POLLING", "all"),
        ("HERALD_POLL_MIN_INTERVAL", "200ms"),
        ("HERALD_POLL_MAX_INTERVAL", "2h"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let entries: String = (0..4)
        .map(|i| {
            format!(
                "<entry><id>urn:h:{i}</id><title>{i}</title><updated>2026-12-07T{:02}:00:00Z</updated></entry>",
                12 - i
            )
        })
        .collect();
    publisher.set(
        "hourly",
        ATOM,
        format!("<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:h</id>{entries}</feed>"),
    );
    let topic = publisher.url("hourly");
    app.subscribed(&topic, &sub.callback("hourly"), &[]).await;
    eventually("the first poll's schedule", || async {
        topic_text(&app, "poll_reason", &topic).await
    })
    .await;
    assert_eq!(
        topic_text(&app, "poll_reason", &topic).await.as_deref(),
        Some("entry rate")
    );
    assert_eq!(
        topic_number(&app, "poll_interval_ms", &topic).await,
        Some(1_800_000)
    );
    assert_eq!(
        topic_number(&app, "change_gap_ms", &topic).await,
        Some(3_600_000)
    );
}

/// An open hub that polls every feed is nobody's free crawler: one callback host, and one
/// subscriber address, may have only so many feeds that never pinged polled for them. Beyond
/// a cap the subscription is denied (`hub.mode=denied`, with the reason); a feed whose
/// publisher pings costs no polling and is not counted, nor is a renewal counted against
/// itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_feeds_polled_for_one_callback_host_and_one_address_are_capped() {
    let mut vars = fast("all");
    vars.push(("HERALD_POLL_MAX_PER_CALLBACK_HOST", "2"));
    vars.push(("HERALD_POLL_MAX_PER_SUBSCRIBER", "3"));
    let app = TestApp::spawn_with(&vars).await;
    let (one, two) = (Subscriber::spawn(), Subscriber::spawn());
    let publisher = Publisher::spawn();
    for name in ["f1", "f2", "f3", "f4", "f5", "pinger"] {
        publisher.set(name, ATOM, atom(&[("urn:c:1", name)]));
    }
    let feed = |name: &str| publisher.url(name);
    let reason = |topic: String, callback: String| {
        let app = &app;
        async move {
            app.scalar_text(
                "SELECT reason FROM subscription_requests WHERE topic = $1 AND callback = $2
                 ORDER BY id DESC LIMIT 1",
                &[&topic, &callback],
            )
            .await
            .unwrap_or_default()
        }
    };

    // A feed whose publisher pings, subscribed by the second host.
    app.subscribed(&feed("pinger"), &two.callback("p"), &[])
        .await;
    app.publish(&feed("pinger")).await;
    two.wait_deliveries("p", 1).await;

    // The first callback host: two feeds that never pinged, then no more.
    app.subscribed(&feed("f1"), &one.callback("a"), &[]).await;
    app.subscribed(&feed("f2"), &one.callback("b"), &[]).await;
    app.subscribe(&feed("f3"), &one.callback("c"), &[]).await;
    assert_eq!(
        app.settled_request(&feed("f3"), &one.callback("c")).await,
        "denied"
    );
    let why = reason(feed("f3"), one.callback("c")).await;
    assert!(
        why.contains("at most 2 feeds that do not ping for one callback host"),
        "{why}"
    );
    let denied = one.wait_verifications("c", 1).await;
    assert_eq!(denied[0].param("hub.mode"), Some("denied"));
    // A feed that pings is not counted; a renewal is not counted against itself.
    app.subscribed(&feed("pinger"), &one.callback("d"), &[])
        .await;
    app.subscribed(&feed("f1"), &one.callback("a"), &[]).await;

    // The second host has room, but the address (both subscribe from 127.0.0.1) has three
    // feeds that never pinged with its third.
    app.subscribed(&feed("f4"), &two.callback("e"), &[]).await;
    app.subscribe(&feed("f5"), &two.callback("f"), &[]).await;
    assert_eq!(
        app.settled_request(&feed("f5"), &two.callback("f")).await,
        "denied"
    );
    let why = reason(feed("f5"), two.callback("f")).await;
    assert!(why.contains("for one subscriber address"), "{why}");
}

/// An Atom feed with a self link and these entries.
fn atom_self(self_link: &str, entries: &[(&str, &str)]) -> String {
    atom(entries).replacen(
        "<title>polled</title>",
        &format!("<title>polled</title><link rel=\"self\" href=\"{self_link}\"/>"),
        1,
    )
}

/// Feed identity: the same feed under two URLs — saying the same of itself and serving the
/// same content — becomes one topic with an alias. A ping to either is one fetch of the first,
/// and both subscribers get the new entry, each with the URL it subscribed to as
/// `rel="self"`. Feeds that only look alike are never merged: an RSS channel's `<link>` is not
/// an identity, and the same self link with other content is another feed.
#[tokio::test(flavor = "multi_thread")]
async fn an_alias_pair_gets_one_fetch_and_two_correct_deliveries() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let (feed, mirror) = (publisher.url("feed"), publisher.url("mirror"));
    let one = atom_self(&feed, &[("urn:a:1", "one")]);
    publisher.set("feed", ATOM, one.clone());
    publisher.set("mirror", ATOM, one);
    app.subscribed(&feed, &sub.callback("a"), &[]).await;
    app.subscribed(&mirror, &sub.callback("b"), &[]).await;
    app.publish(&feed).await;
    sub.wait_deliveries("a", 1).await;
    app.wait_topics_idle().await;
    app.publish(&mirror).await;
    sub.wait_deliveries("b", 1).await;
    eventually("the mirror to become an alias", || async {
        (topic_text(&app, "poll_reason", &mirror).await.as_deref() == Some("alias")).then_some(())
    })
    .await;
    let feed_id = topic_number(&app, "id", &feed).await;
    assert_eq!(topic_number(&app, "alias_of", &mirror).await, feed_id);
    assert_eq!(
        (publisher.fetches("feed"), publisher.fetches("mirror")),
        (1, 1)
    );
    let page = app
        .get_text(&format!("/topic-details?hub.url={}", urlencode(&mirror)))
        .await;
    assert!(page.contains("Same feed as"), "{page}");
    assert!(page.contains(&feed), "{page}");

    // A new entry, pinged on the alias: one fetch, of the feed; a delivery to each subscriber.
    let two = atom_self(&feed, &[("urn:a:2", "two"), ("urn:a:1", "one")]);
    publisher.set("feed", ATOM, two.clone());
    publisher.set("mirror", ATOM, two);
    assert_eq!(app.publish(&mirror).await, reqwest::StatusCode::NO_CONTENT);
    let a = sub.wait_deliveries("a", 2).await;
    let b = sub.wait_deliveries("b", 2).await;
    for (got, own) in [(&a[1], &feed), (&b[1], &mirror)] {
        let body = String::from_utf8_lossy(&got.body);
        assert!(
            body.contains("urn:a:2") && !body.contains("urn:a:1"),
            "{body}"
        );
        let link = got.header("link").expect("a Link header");
        assert!(link.ends_with(&format!("<{own}>; rel=\"self\"")), "{link}");
    }
    app.wait_topics_idle().await;
    assert_eq!(
        (publisher.fetches("feed"), publisher.fetches("mirror")),
        (2, 1)
    );

    // Look-alikes stay apart: RSS feeds with the same channel link and no self link, even
    // with identical content; the feed's self link with other entries.
    let rss = "<rss version=\"2.0\"><channel><title>site</title><link>https://site.example/</link>\
               <item><guid>p1</guid><title>post</title></item></channel></rss>";
    for name in ["posts", "comments"] {
        publisher.set(name, Some("application/rss+xml"), rss);
    }
    publisher.set("other", ATOM, atom_self(&feed, &[("urn:o:1", "other")]));
    for name in ["posts", "comments", "other"] {
        let url = publisher.url(name);
        app.subscribed(&url, &sub.callback(name), &[]).await;
        app.publish(&url).await;
        sub.wait_deliveries(name, 1).await;
    }
    app.wait_topics_idle().await;
    for name in ["posts", "comments", "other"] {
        assert_eq!(
            topic_number(&app, "alias_of", &publisher.url(name)).await,
            None,
            "{name}"
        );
    }
}

/// A server whose ETag never changes answers 304 to new content: after polls answered 304 in a
/// row, every `HERALD_POLL_UNCONDITIONAL_EVERY`-th (here the third) goes without validators,
/// and the new entry is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_stuck_validators_is_caught_by_an_unconditional_poll() {
    let mut vars = fast("all");
    vars.push(("HERALD_POLL_UNCONDITIONAL_EVERY", "3"));
    let app = TestApp::spawn_with(&vars).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("stuck", ATOM, atom(&[("urn:s:1", "one")]));
    publisher.set_etag("stuck", "\"v1\"");
    let topic = publisher.url("stuck");
    app.subscribed(&topic, &sub.callback("stuck"), &[]).await;
    eventually("the first poll", || async {
        topic_text(&app, "etag", &topic).await.map(|_| ())
    })
    .await;
    // New content under the same validator.
    publisher.set(
        "stuck",
        ATOM,
        atom(&[("urn:s:2", "two"), ("urn:s:1", "one")]),
    );
    let got = sub.wait_deliveries("stuck", 1).await;
    assert!(String::from_utf8_lossy(&got[0].body).contains("urn:s:2"));
    // The first fetch had nothing to send; the two after it sent the ETag and were answered
    // 304; the third after them went without; and the next ones are conditional again.
    let v1 = Some("\"v1\"".to_owned());
    eventually("a conditional poll after the unconditional one", || async {
        let asked = publisher.request_headers("stuck", "if-none-match");
        (asked.len() >= 5).then_some(asked)
    })
    .await;
    let asked = publisher.request_headers("stuck", "if-none-match");
    assert_eq!(
        asked[..5],
        [None, v1.clone(), v1.clone(), None, v1],
        "{asked:?}"
    );
}
