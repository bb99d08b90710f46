//! Live subscribers (docs/live.md): tokens, Server-Sent Events, WebSocket, the backlog and its
//! bound, and a web process serving what a worker process distributed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Publisher, Subscriber, TestApp,
    app::Backend,
    eventually,
    live::{self, PRODUCER_TOKEN, Sse, SseOptions, Ws, push, token, token_with},
};

async fn hub(extra: &[(&'static str, &str)]) -> TestApp {
    let mut vars = vec![("HERALD_PRODUCER_TOKEN", PRODUCER_TOKEN)];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

const TOPIC: &str = "http://127.0.0.1:9/live/room";

fn body(update: &Value) -> &str {
    update["body"].as_str().expect("a body")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_issued_by_the_producer_and_bad_requests_are_json_errors() {
    let app = hub(&[("HERALD_LIVE_TOKEN_MAX_TTL", "1h")]).await;
    let (status, issued) = live::issue(
        &app,
        json!({"subscriber": "alice", "topics": [TOPIC], "ttl_seconds": 600, "mode": "single"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert!(
        issued["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("hlt_"))
    );
    assert_eq!(issued["subscriber"], "alice");
    assert_eq!(issued["mode"], "single");
    assert_eq!(issued["topics"], json!([TOPIC]));
    assert!(
        issued["expires_at"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );
    // Only the hash is stored.
    let token = issued["token"].as_str().expect("token");
    let stored = app
        .texts("SELECT token_hash FROM live_tokens", &[])
        .await
        .join(",");
    assert!(!stored.contains(token) && !stored.is_empty());

    for (bad, why) in [
        (json!({"subscriber": "", "topics": [TOPIC]}), "subscriber"),
        (json!({"subscriber": "a", "topics": []}), "topics"),
        (json!({"subscriber": "a", "topics": ["not a url"]}), "topic"),
        (
            json!({"subscriber": "a", "topics": [TOPIC], "mode": "all"}),
            "mode",
        ),
        (
            json!({"subscriber": "a", "topics": [TOPIC], "ttl_seconds": 7200}),
            "ttl_seconds",
        ),
        (
            json!({"subscriber": "a", "topics": [TOPIC], "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (
            json!({"subscriber": "a", "topics": [TOPIC], "colour": "red"}),
            "JSON",
        ),
    ] {
        let (status, answer) = live::issue(&app, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert_eq!(answer["error"], "bad_request");
        assert!(
            answer["message"].as_str().is_some_and(|m| m.contains(why)),
            "{answer}"
        );
    }
    // The producer token is required; the admin one would not do.
    let url = format!("http://127.0.0.1:{}/api/v1/live/tokens", app.port);
    let answer = app
        .client
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(live::revoke(&app, "/999").await.0, StatusCode::NOT_FOUND);
    let (status, answer) = live::revoke(&app, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "bad_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_refused_without_a_good_token_for_the_topic() {
    let app = hub(&[]).await;
    let good = token(&app, "alice", &[TOPIC]).await;
    let short = token_with(
        &app,
        json!({"subscriber": "bob", "topics": [TOPIC], "ttl_seconds": 1}),
    )
    .await;
    let revoked = token(&app, "carol", &[TOPIC]).await;
    let revoked_id: String = app
        .texts(
            "SELECT CAST(t.id AS TEXT) FROM live_tokens t JOIN live_subscribers s ON s.id = t.subscriber_id WHERE s.name = 'carol'",
            &[],
        )
        .await
        .remove(0);
    let (status, _) = live::revoke(&app, &format!("/{revoked_id}")).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the short token to expire", || async {
        let refused = Sse::connect(
            &app,
            SseOptions {
                token: Some(&short),
                ..Default::default()
            },
        )
        .await
        .err()?;
        (refused.1["error"] == "token_expired").then_some(())
    })
    .await;

    let other_topic = "http://127.0.0.1:9/live/other";
    let cases: [(Option<&str>, &[&str], StatusCode, &str); 5] = [
        (None, &[], StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            Some("hlt_nope"),
            &[],
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (Some(&short), &[], StatusCode::UNAUTHORIZED, "token_expired"),
        (
            Some(&revoked),
            &[],
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        ),
        (
            Some(&good),
            &[other_topic],
            StatusCode::FORBIDDEN,
            "topic_not_granted",
        ),
    ];
    for (token, topics, status, code) in cases {
        for token_in_query in [false, true] {
            let refused = Sse::connect(
                &app,
                SseOptions {
                    token,
                    token_in_query,
                    topics,
                    ..Default::default()
                },
            )
            .await
            .err()
            .expect("refused");
            assert_eq!(refused.0, status, "{code}");
            assert_eq!(refused.1["error"], code);
            assert!(refused.1["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let mut ws = Ws::connect(&app).await;
        let mut auth = json!({"type": "auth", "token": token.unwrap_or(""), "topics": topics});
        if token.is_none() {
            auth = json!({"type": "hello"});
        }
        ws.send(auth).await;
        let closed = ws.next().await.expect_err("closed");
        assert_eq!(closed.code, 1008, "{code}");
        if token.is_some() {
            assert!(closed.reason.starts_with(code), "{code}: {}", closed.reason);
        }
    }
    // The good token still works, for the granted topic asked by name too.
    let mut sse = Sse::connect(
        &app,
        SseOptions {
            token: Some(&good),
            topics: &[TOPIC],
            ..Default::default()
        },
    )
    .await
    .expect("accepted");
    let ready = sse.expect("ready").await;
    assert_eq!(ready.data["subscriber"], "alice");
    assert_eq!(ready.data["topics"], json!([TOPIC]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_reaches_every_connection_with_the_webhook_event_id() {
    let app = hub(&[]).await;
    let publisher = Publisher::spawn();
    publisher.set("room", Some("text/plain"), "first");
    let topic = publisher.url("room");
    let webhook = Subscriber::spawn();
    let cb = webhook.callback("hook");
    app.subscribed(&topic, &cb, &[]).await;
    let alice = token(&app, "alice", &[&topic]).await;

    // Two tabs over SSE, one app over WebSocket.
    let mut tab1 = Sse::open(&app, &alice).await;
    let mut tab2 = Sse::connect(
        &app,
        SseOptions {
            token: Some(&alice),
            token_in_query: true,
            ..Default::default()
        },
    )
    .await
    .expect("accepted");
    let (mut ws, ready) = Ws::open(&app, json!({"type": "auth", "token": alice})).await;
    assert_eq!(ready["subscriber"], "alice");
    assert_eq!(ready["backlog"], 0);
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(tab.expect("ready").await.data["backlog"], 0);
    }

    app.publish(&topic).await;
    let hooked = webhook.wait_deliveries("hook", 1).await;
    let webhook_event = hooked[0]
        .header("herald-event-id")
        .expect("event id")
        .to_owned();
    let update_id = webhook_event
        .rsplit_once('-')
        .expect("update-subscription")
        .0;

    let over_ws = ws.updates(1).await.remove(0);
    assert_eq!(body(&over_ws), "first");
    assert_eq!(over_ws["topic"], topic.as_str());
    assert_eq!(over_ws["content_type"], "text/plain");
    assert_eq!(over_ws["encoding"], "utf-8");
    assert_eq!(over_ws["sequence"], 1);
    let ws_id = over_ws["id"].as_str().expect("id");
    assert!(
        ws_id.starts_with(&format!("{update_id}-")),
        "{ws_id} / {webhook_event}"
    );
    for tab in [&mut tab1, &mut tab2] {
        let update = tab.updates(1).await.remove(0);
        assert_eq!(update.id.as_deref(), Some(ws_id));
        assert_eq!(body(&update.data), "first");
        assert_eq!(update.data["sequence"], 1);
        assert!(update.data.get("type").is_none());
    }

    // Bytes that are not UTF-8 arrive as base64.
    let binary = [0xffu8, 0xfe, 0x00, 0x41];
    publisher.set("room", Some("application/octet-stream"), binary.to_vec());
    app.publish(&topic).await;
    let update = ws.updates(1).await.remove(0);
    assert_eq!(update["encoding"], "base64");
    assert_eq!(body(&update), "//4AQQ==");
    assert_eq!(update["sequence"], 2);
    assert_eq!(tab1.updates(1).await[0].data["encoding"], "base64");
    tab2.updates(1).await;

    let metrics = app
        .client
        .get(format!("http://127.0.0.1:{}/metrics", app.port))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    assert_eq!(sample("herald_live_connections"), Some(3.0), "{metrics}");
    assert_eq!(
        sample("herald_live_updates_sent_total{transport=\"sse\"}"),
        Some(4.0)
    );
    assert_eq!(
        sample("herald_live_updates_sent_total{transport=\"websocket\"}"),
        Some(2.0)
    );
    // SSE events stay until a later Last-Event-ID passes them; WebSocket ones until acked.
    assert_eq!(sample("herald_live_backlog"), Some(2.0));
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_followed_only_live_is_fetched_and_feeds_go_in_the_token_mode() {
    let app = hub(&[]).await;
    let publisher = Publisher::spawn();
    let feed = |ids: &[u32]| {
        let entries: String = ids
            .iter()
            .map(|i| format!("<entry><id>urn:e:{i}</id><title>entry {i}</title><updated>2026-01-0{i}T00:00:00Z</updated></entry>"))
            .collect();
        format!(
            "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:f</id><title>f</title><updated>2026-01-09T00:00:00Z</updated>{entries}</feed>"
        )
    };
    publisher.set("feed", Some("application/atom+xml"), feed(&[1]));
    let topic = publisher.url("feed");
    let diff = token(&app, "diff-reader", &[&topic]).await;
    let single = token_with(
        &app,
        json!({"subscriber": "single-reader", "topics": [topic], "mode": "single"}),
    )
    .await;
    let mut diff_sse = Sse::open(&app, &diff).await;
    let (mut single_ws, _) = Ws::open(&app, json!({"type": "auth", "token": single})).await;

    assert_eq!(app.publish(&topic).await, StatusCode::NO_CONTENT);
    let first = diff_sse.updates(1).await.remove(0);
    assert!(body(&first.data).contains("urn:e:1"));
    assert_eq!(single_ws.updates(1).await[0]["sequence"], 1);

    publisher.set("feed", Some("application/atom+xml"), feed(&[3, 2, 1]));
    app.publish(&topic).await;
    let second = diff_sse.updates(1).await.remove(0);
    let text = body(&second.data);
    assert!(text.contains("urn:e:2") && text.contains("urn:e:3") && !text.contains("urn:e:1"));
    // Single-entry mode: one update per new entry, oldest first.
    let singles = single_ws.updates(2).await;
    assert!(body(&singles[0]).contains("urn:e:2") && !body(&singles[0]).contains("urn:e:3"));
    assert!(body(&singles[1]).contains("urn:e:3"));
    assert_eq!(
        singles
            .iter()
            .map(|u| u["sequence"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(3)]
    );
    assert_eq!(publisher.fetches("feed"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_wait_while_away_and_a_resume_consumes_what_it_passes() {
    let app = hub(&[]).await;
    let alice = token(&app, "alice", &[TOPIC]).await;
    for text in ["one", "two", "three"] {
        push(&app, TOPIC, "text/plain", text).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM live_events").await,
        3,
        "kept while nobody is connected"
    );
    let mut sse = Sse::open(&app, &alice).await;
    assert_eq!(sse.expect("ready").await.data["backlog"], 3);
    let got = sse.updates(3).await;
    let bodies: Vec<&str> = got.iter().map(|e| body(&e.data)).collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    let seqs: Vec<i64> = got
        .iter()
        .map(|e| e.data["sequence"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    drop(sse);
    // Sent is not consumed: SSE events stay until a later Last-Event-ID passes them.
    assert_eq!(app.count("SELECT COUNT(*) FROM live_events").await, 3);

    let second = got[1].id.clone().expect("id");
    let mut resumed = Sse::connect(
        &app,
        SseOptions {
            token: Some(&alice),
            last_event_id: Some(&second),
            ..Default::default()
        },
    )
    .await
    .expect("accepted");
    assert_eq!(resumed.expect("ready").await.data["backlog"], 1);
    let rest = resumed.updates(1).await;
    assert_eq!(body(&rest[0].data), "three");
    assert_eq!(app.count("SELECT COUNT(*) FROM live_events").await, 1);
    assert_eq!(
        app.count("SELECT backlog FROM live_subscribers WHERE name = 'alice'")
            .await,
        1
    );
    // A malformed Last-Event-ID is a clear error.
    let refused = Sse::connect(
        &app,
        SseOptions {
            token: Some(&alice),
            last_event_id: Some("yesterday"),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    assert_eq!(refused.1["error"], "bad_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_acks_delete_and_resume_replays() {
    let app = hub(&[]).await;
    let bob = token(&app, "bob", &[TOPIC]).await;
    for text in ["a", "b", "c"] {
        push(&app, TOPIC, "text/plain", text).await;
    }
    let (mut ws, ready) = Ws::open(&app, json!({"type": "auth", "token": bob})).await;
    assert_eq!(ready["backlog"], 3);
    let got = ws.updates(3).await;
    let id_of = |u: &Value| u["id"].as_str().expect("id").to_owned();
    ws.send(json!({"type": "ack", "id": id_of(&got[1])})).await;
    eventually("the acknowledged events to go", || async {
        (app.count("SELECT COUNT(*) FROM live_events").await == 1).then_some(())
    })
    .await;
    // Resume replays what came after the point named, in order.
    ws.send(json!({"type": "resume", "after": id_of(&got[0])}))
        .await;
    let again = ws.updates(1).await;
    assert_eq!(body(&again[0]), "c", "b was acknowledged, so deleted");
    push(&app, TOPIC, "text/plain", "d").await;
    assert_eq!(body(&ws.updates(1).await[0]), "d");
    // Nonsense gets an error message, and the connection stays.
    ws.send(json!({"type": "dance"})).await;
    let error = ws.next().await.expect("open");
    assert_eq!(error["type"], "error");
    ws.send(json!({"type": "ack", "id": "garbage"})).await;
    assert_eq!(ws.next().await.expect("open")["type"], "error");
    ws.close().await;

    // An auth frame may resume too.
    let (mut ws, ready) = Ws::open(
        &app,
        json!({"type": "auth", "token": bob, "after": id_of(&got[2])}),
    )
    .await;
    assert_eq!(ready["backlog"], 1);
    assert_eq!(body(&ws.updates(1).await[0]), "d");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backlog_is_bounded_and_the_next_connection_hears_how_much_was_dropped() {
    let app = hub(&[("HERALD_LIVE_BACKLOG_MAX", "3")]).await;
    let alice = token(&app, "alice", &[TOPIC]).await;
    for n in 1..=5 {
        push(&app, TOPIC, "text/plain", &format!("m{n}")).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM live_events").await, 3);
    let mut sse = Sse::open(&app, &alice).await;
    let ready = sse.expect("ready").await;
    assert_eq!(ready.data["dropped"], 2);
    assert_eq!(ready.data["backlog"], 3);
    assert_eq!(sse.expect("dropped").await.data["dropped"], 2);
    let got = sse.updates(3).await;
    let bodies: Vec<&str> = got.iter().map(|e| body(&e.data)).collect();
    assert_eq!(bodies, ["m3", "m4", "m5"]);
    assert_eq!(got[0].data["sequence"], 3, "sequence numbers show the gap");
    drop(sse);
    // Told once.
    let (_ws, ready) = Ws::open(&app, json!({"type": "auth", "token": alice})).await;
    assert!(ready.get("dropped").is_none(), "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_updates_expire_and_a_revoked_token_ends_its_connections() {
    let app = hub(&[
        ("HERALD_LIVE_BACKLOG_TTL", "1s"),
        ("HERALD_SWEEP_INTERVAL", "200ms"),
        // Revocation ends connections at once, not at the next heartbeat.
        ("HERALD_LIVE_HEARTBEAT", "1h"),
    ])
    .await;
    let alice = token(&app, "alice", &[TOPIC]).await;
    push(&app, TOPIC, "text/plain", "stale").await;
    eventually("the old update to expire", || async {
        (app.count("SELECT COUNT(*) FROM live_events").await == 0).then_some(())
    })
    .await;
    let mut sse = Sse::open(&app, &alice).await;
    assert_eq!(sse.expect("ready").await.data["dropped"], 1);
    let (mut ws, _) = Ws::open(&app, json!({"type": "auth", "token": alice})).await;
    let (_, answer) = live::revoke(&app, "?subscriber=alice").await;
    assert_eq!(answer["revoked"], 1);
    loop {
        let event = sse.next().await.expect("a closing event before the end");
        if event.event == "closed" {
            assert_eq!(event.data["error"], "token_revoked");
            break;
        }
    }
    assert!(sse.next().await.is_none(), "the stream ends");
    let closed = loop {
        match ws.next().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    assert_eq!(closed.code, 1008);
    assert!(
        closed.reason.starts_with("token_revoked"),
        "{}",
        closed.reason
    );
    // And nothing is kept for a subscriber nobody may follow any more.
    push(&app, TOPIC, "text/plain", "after").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM live_events").await, 0);
}

/// A connection that opens while updates are being distributed gets each exactly once and in
/// order: the backlog it reads and what the dispatcher hands it overlap, and must not repeat
/// or skip. Fifty rounds, alternating SSE and WebSocket.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_opened_during_publishing_gets_each_update_once_in_order() {
    let app = std::sync::Arc::new(hub(&[]).await);
    const UPDATES: usize = 6;
    for round in 0..50 {
        let topic = format!("http://127.0.0.1:9/live/race/{round}");
        let subscriber = format!("racer-{round}");
        let t = token(&app, &subscriber, &[&topic]).await;
        let publishing = {
            let app = app.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                for n in 1..=UPDATES {
                    push(&app, &topic, "text/plain", &format!("u{n}")).await;
                }
            })
        };
        let seqs: Vec<i64> = if round % 2 == 0 {
            let mut sse = Sse::open(&app, &t).await;
            sse.updates(UPDATES)
                .await
                .iter()
                .map(|e| e.data["sequence"].as_i64().expect("seq"))
                .collect()
        } else {
            let (mut ws, _) = Ws::open(&app, json!({"type": "auth", "token": t})).await;
            let seqs = ws
                .updates(UPDATES)
                .await
                .iter()
                .map(|u| u["sequence"].as_i64().expect("seq"))
                .collect();
            ws.close().await;
            seqs
        };
        publishing.await.expect("published");
        assert_eq!(
            seqs,
            (1..=UPDATES as i64).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

/// With PostgreSQL, a worker process distributes and a web process holds the connection: the
/// ping's job reaches the worker, and the update the web process, over NOTIFY (the queue's and
/// the live connections' polling are set to an hour, so only notifications can bring them).
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_process_distribution_reaches_a_web_process_connection() {
    if Backend::from_env() != Backend::Postgres {
        return;
    }
    let web = hub(&[
        ("HERALD_ROLE", "web"),
        ("HERALD_LIVE_POLL", "1h"),
        ("HERALD_QUEUE_POLL", "1h"),
        ("HERALD_RECONCILE_INTERVAL", "1h"),
    ])
    .await;
    let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let publisher = Publisher::spawn();
    publisher.set("room", Some("text/plain"), "from the worker");
    let topic = publisher.url("room");
    let alice = token(&web, "alice", &[&topic]).await;
    let mut sse = Sse::open(&web, &alice).await;
    sse.expect("ready").await;
    let (mut ws, _) = Ws::open(&web, json!({"type": "auth", "token": alice})).await;
    for round in 1..=3 {
        publisher.set(
            "room",
            Some("text/plain"),
            format!("from the worker {round}"),
        );
        assert_eq!(web.publish(&topic).await, StatusCode::NO_CONTENT);
        // Well before any fallback could bring it (without notifications, each took ~10 s).
        let update = tokio::time::timeout(Duration::from_secs(5), sse.updates(1))
            .await
            .expect("brought by notifications")
            .remove(0);
        assert_eq!(body(&update.data), format!("from the worker {round}"));
        assert_eq!(
            body(&ws.updates(1).await[0]),
            format!("from the worker {round}")
        );
    }
    assert!(sse.quiet_for(Duration::from_millis(300)).await.is_none());
    worker.stop().await;
}

/// A graceful stop ends live connections with a reason (the clients reconnect to the next
/// process), instead of holding the stop until the server's drain gives up on them.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_hub_ends_its_live_connections_with_a_reason() {
    let app = hub(&[]).await;
    let alice = token(&app, "alice", &[TOPIC]).await;
    let mut sse = Sse::open(&app, &alice).await;
    sse.expect("ready").await;
    let (mut ws, _) = Ws::open(&app, json!({"type": "auth", "token": alice})).await;
    let stopping = tokio::spawn(app.stop());
    let closed = sse.expect("closed").await;
    assert_eq!(closed.data["error"], "closing");
    assert!(sse.next().await.is_none(), "the stream ends");
    let closed = ws.next().await.expect_err("closed");
    assert_eq!(closed.code, 1012, "{}", closed.reason);
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the stop does not wait for the drain timeout")
        .expect("stopped");
}

/// On PostgreSQL a revocation made through one process ends the connections another process
/// holds, at once (the heartbeat, which would also catch it, is an hour away).
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_through_one_process_ends_connections_held_by_another() {
    if Backend::from_env() != Backend::Postgres {
        return;
    }
    let holder = hub(&[("HERALD_LIVE_HEARTBEAT", "1h")]).await;
    let other = holder.sibling(&[]).await;
    let alice = token(&holder, "alice", &[TOPIC]).await;
    let mut sse = Sse::open(&holder, &alice).await;
    sse.expect("ready").await;
    let (mut ws, _) = Ws::open(&holder, json!({"type": "auth", "token": alice})).await;
    let (status, _) = live::revoke(&other, "?subscriber=alice").await;
    assert_eq!(status, StatusCode::OK);
    let closed = sse.expect("closed").await;
    assert_eq!(closed.data["error"], "token_revoked");
    let closed = ws.next().await.expect_err("closed");
    assert_eq!(closed.code, 1008);
    assert!(
        closed.reason.starts_with("token_revoked"),
        "{}",
        closed.reason
    );
    other.stop().await;
}

/// Revoking thousands of tokens at once revokes every one — none still opens a stream — and
/// ends the connections that use them, in this process and (on PostgreSQL) in another: the
/// revocation is never dropped for being large, nor forgotten for being old.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_thousands_of_tokens_refuses_every_one_and_ends_their_connections() {
    use futures::StreamExt;
    let app = hub(&[("HERALD_LIVE_HEARTBEAT", "1h")]).await;
    let other = match Backend::from_env() {
        Backend::Postgres => Some(app.sibling(&[]).await),
        Backend::Sqlite => None,
    };
    let tokens: Vec<String> = futures::stream::iter(0..5000)
        .map(|_| token(&app, "mallory", &[TOPIC]))
        .buffer_unordered(16)
        .collect()
        .await;
    // Connections with the first and the last token issued, on this process and another.
    let mut held = Vec::new();
    for (holder, token) in [
        (&app, &tokens[0]),
        (other.as_ref().unwrap_or(&app), &tokens[4999]),
    ] {
        let mut sse = Sse::open(holder, token).await;
        sse.expect("ready").await;
        held.push(sse);
    }
    let (status, answer) = live::revoke(&app, "?subscriber=mallory").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["revoked"], 5000);
    for mut sse in held {
        let closed = sse.expect("closed").await;
        assert_eq!(closed.data["error"], "token_revoked");
    }
    for token in tokens.iter().step_by(250) {
        let refused = Sse::connect(
            &app,
            SseOptions {
                token: Some(token),
                topics: &[TOPIC],
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("a revoked token is refused");
        assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{}", refused.1);
    }
    if let Some(other) = other {
        other.stop().await;
    }
}

/// Live connections are capped per token and in all (and per client address: the local client
/// here is trusted, as for the rate limits); a refused one is told
/// which cap it hit (429 for SSE, close code 1013 for a WebSocket) and counted. A closed
/// connection gives its place back.
#[tokio::test(flavor = "multi_thread")]
async fn live_connections_are_capped_per_token_per_client_and_in_all() {
    let app = hub(&[
        ("HERALD_LIVE_MAX_PER_TOKEN", "2"),
        ("HERALD_LIVE_MAX_CONNECTIONS", "3"),
        ("HERALD_LIVE_HEARTBEAT", "200ms"),
    ])
    .await;
    let alice = token(&app, "alice", &[TOPIC]).await;
    let bob = token(&app, "bob", &[TOPIC]).await;
    let open = |token: String| {
        let app = &app;
        async move {
            let mut sse = Sse::open(app, &token).await;
            sse.expect("ready").await;
            sse
        }
    };
    let refused = |token: String| {
        let app = &app;
        async move {
            Sse::connect(
                app,
                SseOptions {
                    token: Some(&token),
                    topics: &[TOPIC],
                    ..Default::default()
                },
            )
            .await
            .err()
            .expect("refused")
        }
    };
    let first = open(alice.clone()).await;
    let _second = open(alice.clone()).await;
    let (status, body) = refused(alice.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_connections");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("token")),
        "{body}"
    );
    let mut ws = Ws::connect(&app).await;
    ws.send(json!({"type": "auth", "token": alice})).await;
    let closed = ws.next().await.expect_err("closed");
    assert_eq!(closed.code, 1013);
    assert!(
        closed.reason.starts_with("too_many_connections"),
        "{}",
        closed.reason
    );
    // Three in all.
    let _third = open(bob.clone()).await;
    let (status, body) = refused(bob.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("try again")),
        "{body}"
    );
    // A closed connection gives its place back (the hub notices at its next heartbeat).
    drop(first);
    eventually("the closed connection's place to come back", || async {
        Sse::connect(
            &app,
            SseOptions {
                token: Some(&bob),
                topics: &[TOPIC],
                ..Default::default()
            },
        )
        .await
        .ok()
    })
    .await;
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("herald_live_connections_refused_total{reason=\"token\"} 2"),
        "{metrics}"
    );
}

/// Behind a trusted proxy, one client address holds at most `HERALD_LIVE_MAX_PER_CLIENT`
/// connections whatever tokens it uses, while another address is not held back by it.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_address_holds_at_most_its_cap_of_live_connections() {
    let app = hub(&[
        ("HERALD_LIVE_MAX_PER_CLIENT", "2"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let tokens = [
        token(&app, "ann", &[TOPIC]).await,
        token(&app, "ben", &[TOPIC]).await,
        token(&app, "cal", &[TOPIC]).await,
    ];
    let connect = |token: &str, client: &'static str| {
        let app = &app;
        let token = token.to_owned();
        async move {
            Sse::connect(
                app,
                SseOptions {
                    token: Some(&token),
                    forwarded_for: Some(client),
                    ..Default::default()
                },
            )
            .await
        }
    };
    let mut held = Vec::new();
    for t in &tokens[..2] {
        let mut sse = connect(t, "198.51.100.7").await.expect("under the cap");
        sse.expect("ready").await;
        held.push(sse);
    }
    let (status, body) = connect(&tokens[2], "198.51.100.7")
        .await
        .err()
        .expect("a third from the same address is refused");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_LIVE_MAX_PER_CLIENT")),
        "{body}"
    );
    let mut other = connect(&tokens[2], "198.51.100.8")
        .await
        .expect("another address has its own allowance");
    other.expect("ready").await;
}

/// One subscriber follows two topics while updates are pushed to both at once, and reconnects
/// with `Last-Event-ID` every few updates: every update arrives exactly once, in order within
/// its topic (a resume consumes what that connection was sent, never an event of the other
/// topic that committed later). Looped: the race it guards against is timing-dependent.
#[tokio::test(flavor = "multi_thread")]
async fn resuming_while_two_topics_publish_at_once_loses_and_repeats_nothing() {
    // Dropped connections are noticed when next written to: the caps would count them.
    let app = std::sync::Arc::new(
        hub(&[
            ("HERALD_LIVE_MAX_PER_TOKEN", "10000"),
            ("HERALD_LIVE_MAX_PER_CLIENT", "10000"),
        ])
        .await,
    );
    const PER_TOPIC: usize = 60;
    const EVERY: usize = 3;
    for round in 0..20 {
        let topics: Vec<String> = ["a", "b"]
            .iter()
            .map(|t| format!("http://127.0.0.1:9/live/resume/{round}/{t}"))
            .collect();
        let name = format!("resumer-{round}");
        let t = token(&app, &name, &[&topics[0], &topics[1]]).await;
        let publishers: Vec<_> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                let (app, topic) = (app.clone(), topic.clone());
                tokio::spawn(async move {
                    for n in 1..=PER_TOPIC {
                        push(&app, &topic, "text/plain", &format!("{i}:{n}")).await;
                    }
                })
            })
            .collect();
        let mut got: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        let read =
            |sse_events: Vec<live::Event>, got: &mut Vec<String>, last: &mut Option<String>| {
                for e in sse_events {
                    got.push(body(&e.data).to_owned());
                    *last = e.id.clone();
                }
            };
        let resume = |last: Option<String>| {
            let app = app.clone();
            let t = t.clone();
            async move {
                let mut sse = Sse::connect(
                    &app,
                    SseOptions {
                        token: Some(&t),
                        last_event_id: last.as_deref(),
                        ..Default::default()
                    },
                )
                .await
                .expect("accepted");
                let ready = sse.expect("ready").await;
                (
                    sse,
                    ready.data["backlog"].as_u64().expect("backlog") as usize,
                )
            }
        };
        // Reconnects while publishing goes on, up to 40 short of the end (a loss shows below).
        while got.len() + 40 < 2 * PER_TOPIC {
            let (mut sse, _) = resume(last.clone()).await;
            read(sse.updates(EVERY).await, &mut got, &mut last);
        }
        for p in publishers {
            p.await.expect("published");
        }
        eventually("every update to reach the subscriber's backlog", || async {
            let total = app
                .texts(
                    "SELECT CAST(SUM(f.seq) AS TEXT) FROM live_follows f
                     JOIN live_subscribers s ON s.id = f.subscriber_id WHERE s.name = $1",
                    &[&name],
                )
                .await;
            (total.first().map(String::as_str) == Some(&(2 * PER_TOPIC).to_string())).then_some(())
        })
        .await;
        let (mut sse, waiting) = resume(last.clone()).await;
        read(sse.updates(waiting).await, &mut got, &mut last);
        for i in 0..2 {
            let of_topic: Vec<&str> = got
                .iter()
                .map(String::as_str)
                .filter(|b| b.starts_with(&format!("{i}:")))
                .collect();
            let expected: Vec<String> = (1..=PER_TOPIC).map(|n| format!("{i}:{n}")).collect();
            assert_eq!(
                of_topic, expected,
                "round {round}, topic {i}: lost, repeated or reordered"
            );
        }
    }
}
