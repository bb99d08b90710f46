//! Subscription intents for one (topic, callback) are verified and applied in arrival order: a
//! confirmed intent is never discarded by a later request, and a refused one changes nothing
//! (WebSub §5.1, §5.3.1). The races are run many times over, on each backend.

use reqwest::StatusCode;

use crate::helpers::{Answer, Subscriber, TestApp, app::Backend};

/// Rounds of each race: an ordering bug that shows one time in three cannot pass them all.
const ROUNDS: usize = 50;

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_unsubscribe_racing_a_confirmed_subscribe_leaves_it_subscribed() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents";
    for round in 0..ROUNDS {
        let name = format!("race{round}");
        let cb = sub.callback(&name);
        // Even rounds: the unsubscribe arrives while the subscribe's answer is held back.
        // Odd rounds: the subscriber answers at once and sends the unsubscribe right after.
        let gated = round % 2 == 0;
        let first = if gated { Answer::Gated } else { Answer::Ok };
        sub.on_verify(&name, [first, Answer::Status(404)]);
        assert_eq!(app.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
        sub.wait_verifications(&name, 1).await;
        assert_eq!(app.unsubscribe(topic, &cb).await, StatusCode::ACCEPTED);
        if gated {
            sub.open_gate();
        }
        assert_eq!(
            app.settled_requests(&cb).await,
            ["verified", "failed"],
            "round {round}: the subscribe is applied, the refused unsubscribe is not"
        );
        assert_eq!(
            app.subscription_state(topic, &cb).await.as_deref(),
            Some("active"),
            "round {round}"
        );
        let modes: Vec<_> = sub
            .wait_verifications(&name, 2)
            .await
            .iter()
            .map(|r| r.param("hub.mode").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(modes, ["subscribe", "unsubscribe"], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resubscription_racing_the_first_subscribe_is_applied_after_it() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-secret";
    for round in 0..ROUNDS {
        let name = format!("resub{round}");
        let cb = sub.callback(&name);
        sub.on_verify(&name, [Answer::Gated, Answer::Ok]);
        let status = app.subscribe(topic, &cb, &[("hub.secret", "first")]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sub.wait_verifications(&name, 1).await;
        let status = app.subscribe(topic, &cb, &[("hub.secret", "second")]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sub.open_gate();
        assert_eq!(
            app.settled_requests(&cb).await,
            ["verified", "verified"],
            "round {round}"
        );
        let secret = app
            .scalar_text(
                "SELECT secret FROM subscriptions WHERE callback = $1",
                &[&cb],
            )
            .await;
        assert_eq!(
            secret.as_deref(),
            Some("second"),
            "round {round}: the later request is applied last"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_unsubscribe_cannot_cancel_the_owners_subscribe_while_it_verifies() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-stranger";
    let cb = sub.callback("owner");
    // The owner confirms its subscribe (held until the stranger has spoken) and, knowing
    // nothing of an unsubscribe, refuses that one.
    sub.on_verify("owner", [Answer::Gated, Answer::Status(404)]);
    assert_eq!(app.subscribe(topic, &cb, &[]).await, StatusCode::ACCEPTED);
    sub.wait_verifications("owner", 1).await;
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", topic),
            ("hub.callback", cb.as_str()),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The stranger's request waits its turn: nothing is sent for it while the owner's runs.
    assert_eq!(sub.verifications("owner").len(), 1);
    sub.open_gate();
    assert_eq!(app.settled_requests(&cb).await, ["verified", "failed"]);
    assert_eq!(
        app.subscription_state(topic, &cb).await.as_deref(),
        Some("active")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_request_waiting_its_turn_replaces_the_one_before_it() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-repeat";
    let cb = sub.callback("repeat");
    sub.on_verify("repeat", [Answer::Gated]);
    app.subscribe(topic, &cb, &[("hub.secret", "one")]).await;
    sub.wait_verifications("repeat", 1).await;
    // Two identical requests queue behind the one being verified: the first of them has not
    // started, so verifying it and then its twin would apply the same thing twice.
    for _ in 0..2 {
        let status = app.subscribe(topic, &cb, &[("hub.secret", "two")]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    sub.open_gate();
    assert_eq!(
        app.settled_requests(&cb).await,
        ["verified", "superseded", "verified"]
    );
    assert_eq!(sub.wait_verifications("repeat", 2).await.len(), 2);
    let secret = app
        .scalar_text("SELECT secret FROM subscriptions", &[])
        .await;
    assert_eq!(secret.as_deref(), Some("two"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_synchronous_verification_in_progress_is_left_alone_by_the_verifiers() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-sync";
    let cb = sub.callback("sync");
    sub.on_verify("sync", [Answer::Gated]);
    let client = app.client.clone();
    let hub = app.hub_url();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", cb.as_str()),
            ("hub.verify", "sync"),
        ])
        .finish();
    let answer = tokio::spawn(async move {
        client
            .post(hub)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("sync request")
            .status()
    });
    sub.wait_verifications("sync", 1).await;
    // A request stored after it is claimed and verified meanwhile: the verifier looked at the
    // older, reserved one and left it to its HTTP request.
    let other = sub.callback("other");
    app.subscribe(topic, &other, &[]).await;
    sub.wait_verifications("other", 1).await;
    assert_eq!(app.settled_requests(&other).await, ["verified"]);
    assert_eq!(
        sub.verifications("sync").len(),
        1,
        "the request being verified is not verified again"
    );
    sub.open_gate();
    assert_eq!(answer.await.expect("answer"), StatusCode::NO_CONTENT);
    assert_eq!(app.settled_requests(&cb).await, ["verified"]);
    assert_eq!(sub.verifications("sync").len(), 1);
}

/// Requests that arrive together are stored in one group and verified in batches; the
/// requests of one pair among them are still verified one at a time, in the order they were
/// stored, and the last one verified decides. Each round sends six alternating requests for one
/// pair at once (the subscriber confirms every one), beside requests for other pairs.
#[tokio::test(flavor = "multi_thread")]
async fn requests_of_one_pair_stored_in_one_group_are_verified_in_their_order() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-batch";
    for round in 0..ROUNDS {
        let name = format!("batch{round}");
        let cb = sub.callback(&name);
        let others: Vec<String> = (0..4)
            .map(|i| sub.callback(&format!("other{round}-{i}")))
            .collect();
        let sends = (0..6).map(|i| {
            let (app, cb) = (&app, cb.clone());
            async move {
                if i % 2 == 0 {
                    app.subscribe(topic, &cb, &[("hub.secret", &format!("s{i}"))])
                        .await
                } else {
                    app.unsubscribe(topic, &cb).await
                }
            }
        });
        let other_sends = others.iter().map(|cb| app.subscribe(topic, cb, &[]));
        let (mine, theirs) = tokio::join!(
            futures::future::join_all(sends),
            futures::future::join_all(other_sends)
        );
        assert!(
            mine.iter()
                .chain(&theirs)
                .all(|s| *s == StatusCode::ACCEPTED)
        );
        let states = app.settled_requests(&cb).await;
        // Every request was verified, or skipped as identical to the next before its turn.
        assert!(
            states.iter().all(|s| s == "verified" || s == "superseded"),
            "round {round}: {states:?}"
        );
        // The verification GETs went out in the order the requests were stored.
        let stored: Vec<String> = app
            .texts(
                "SELECT mode FROM subscription_requests WHERE callback = $1 AND state = 'verified'
                 ORDER BY id",
                &[&cb],
            )
            .await;
        let asked: Vec<String> = sub
            .verifications(&name)
            .iter()
            .map(|r| r.param("hub.mode").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(asked, stored, "round {round}");
        // The last one verified decides.
        let expected = match stored.last().map(String::as_str) {
            Some("subscribe") => "active",
            _ => "unsubscribed",
        };
        assert_eq!(
            app.subscription_state(topic, &cb).await.as_deref(),
            Some(expected),
            "round {round}: {stored:?}"
        );
        for other in &others {
            assert_eq!(app.settled_requests(other).await, ["verified"]);
        }
    }
    // Requests that arrived together were stored together: some group held several of them.
    let largest = stored_groups(&app).await.iter().map(Vec::len).max();
    assert!(
        largest > Some(1),
        "the largest group stored {largest:?} request(s)"
    );
}

/// Identical requests that arrive together, and so are stored in one group, replace one another
/// as they do arriving one by one: of those waiting their turn, only the last is verified.
#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_stored_in_one_group_replace_one_another() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/intents-twins";
    let mut grouped = 0;
    for round in 0..ROUNDS {
        let name = format!("twins{round}");
        let cb = sub.callback(&name);
        sub.on_verify(&name, [Answer::Gated]);
        app.subscribe(topic, &cb, &[("hub.secret", "one")]).await;
        sub.wait_verifications(&name, 1).await;
        let twins = (0..4).map(|_| app.subscribe(topic, &cb, &[("hub.secret", "two")]));
        let statuses = futures::future::join_all(twins).await;
        assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));
        sub.open_gate();
        assert_eq!(
            app.settled_requests(&cb).await,
            [
                "verified",
                "superseded",
                "superseded",
                "superseded",
                "verified"
            ],
            "round {round}"
        );
        assert_eq!(sub.wait_verifications(&name, 2).await.len(), 2);
        let secret = app
            .scalar_text(
                "SELECT secret FROM subscriptions WHERE callback = $1",
                &[&cb],
            )
            .await;
        assert_eq!(secret.as_deref(), Some("two"), "round {round}");
        let ids: Vec<i64> = app
            .texts(
                "SELECT CAST(id AS TEXT) FROM subscription_requests WHERE callback = $1",
                &[&cb],
            )
            .await
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        let together = stored_groups(&app)
            .await
            .iter()
            .map(|job| job.iter().filter(|id| ids.contains(id)).count())
            .max();
        grouped += usize::from(together > Some(1));
    }
    // The case this test is about happened: twins were stored in one group.
    assert!(grouped > 0, "no round stored two of its twins together");
}

/// The requests stored by each group commit: those stored with the same `created_at` (one
/// transaction stamps its whole group with one instant; separate commits a millisecond apart
/// are rarely stamped alike).
async fn stored_groups(app: &TestApp) -> Vec<Vec<i64>> {
    let rows = app
        .texts(
            "SELECT CAST(created_at AS TEXT) || ' ' || CAST(id AS TEXT) FROM subscription_requests
             ORDER BY id",
            &[],
        )
        .await;
    let mut groups: Vec<(String, Vec<i64>)> = Vec::new();
    for row in rows {
        let (at, id) = row.split_once(' ').expect("two values");
        let id = id.parse().expect("an id");
        match groups.last_mut() {
            Some((last, ids)) if last == at => ids.push(id),
            _ => groups.push((at.to_owned(), vec![id])),
        }
    }
    groups.into_iter().map(|(_, ids)| ids).collect()
}

/// Verifiers of several processes sharing PostgreSQL take different requests: each request is
/// verified once, whichever process claims it. (SQLite serves one process.)
#[tokio::test(flavor = "multi_thread")]
async fn verifiers_of_several_processes_verify_each_request_once() {
    if Backend::from_env() != Backend::Postgres {
        return;
    }
    let web = TestApp::spawn_with(&[
        ("HERALD_ROLE", "web"),
        ("HERALD_SUBSCRIBE_RATE_LIMIT", "off"),
    ])
    .await;
    let _one = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let _two = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/shared-verifiers";
    let mut all = Vec::new();
    for round in 0..ROUNDS {
        let names: Vec<String> = (0..20).map(|i| format!("r{round}-{i}")).collect();
        let callbacks: Vec<String> = names.iter().map(|n| sub.callback(n)).collect();
        let sent = callbacks.iter().map(|cb| web.subscribe(topic, cb, &[]));
        let statuses = futures::future::join_all(sent).await;
        assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));
        for (name, cb) in names.iter().zip(&callbacks) {
            assert_eq!(web.settled_requests(cb).await, ["verified"], "{name}");
            assert_eq!(sub.verifications(name).len(), 1, "{name}");
        }
        all.extend(names);
    }
    // A second claim's GET could only have come late: none did.
    for name in &all {
        assert_eq!(sub.verifications(name).len(), 1, "{name}");
    }
}
