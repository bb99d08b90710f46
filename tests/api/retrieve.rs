//! `GET /hub?hub.mode=retrieve` (catch-up, docs/polling.md): the latest stored entries of a
//! topic, for its subscribers (signed with the subscription's secret) and the producer only.

use reqwest::StatusCode;

use crate::helpers::{Publisher, Subscriber, TestApp, subscriber::expected_signature};

fn atom(entries: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <id>urn:feed:kept</id><title>kept</title><updated>2026-12-07T00:00:00Z</updated>\n",
    );
    for (id, title) in entries {
        out.push_str(&format!(
            "<entry><id>{id}</id><title>{title}</title></entry>\n"
        ));
    }
    out.push_str("</feed>\n");
    out
}

struct Asked {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// Retrieves with `query` (after `hub.mode=retrieve&`), signed with `secret` when given
/// (over the request target exactly as sent), or with a bearer `token`.
async fn retrieve(
    app: &TestApp,
    query: &[(&str, &str)],
    secret: Option<&str>,
    token: Option<&str>,
) -> Asked {
    let mut pairs = vec![("hub.mode", "retrieve")];
    pairs.extend_from_slice(query);
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let url = url::Url::parse(&format!("{}?{encoded}", app.hub_url())).expect("a URL");
    let target = &url[url::Position::BeforePath..];
    let mut request = app.client.get(url.clone());
    if let Some(secret) = secret {
        request = request.header(
            "X-Hub-Signature",
            expected_signature("sha256", secret, target.as_bytes()),
        );
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer");
    Asked {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.expect("a body"),
    }
}

fn now_secs() -> String {
    (chrono::Utc::now().timestamp()).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_and_the_producer_retrieve_the_latest_entries_and_strangers_get_404() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", "producer-secret")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "kept",
        Some("application/atom+xml"),
        atom(&[("urn:k:3", "three"), ("urn:k:2", "two"), ("urn:k:1", "one")]),
    );
    let topic = publisher.url("kept");
    let callback = sub.callback("kept");
    app.subscribed(&topic, &callback, &[("hub.secret", "s3cret")])
        .await;
    app.publish(&topic).await;
    sub.wait_deliveries("kept", 1).await;

    let ts = now_secs();
    let signed = [
        ("hub.topic", topic.as_str()),
        ("hub.callback", callback.as_str()),
        ("hub.timestamp", ts.as_str()),
        ("count", "2"),
    ];
    let got = retrieve(&app, &signed, Some("s3cret"), None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert!(
        got.body.contains("urn:k:3") && got.body.contains("urn:k:2"),
        "{}",
        got.body
    );
    assert!(!got.body.contains("urn:k:1"), "count=2: {}", got.body);
    assert!(
        got.body.contains("<id>urn:feed:kept</id>"),
        "the feed's own envelope"
    );
    assert_eq!(
        got.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/atom+xml")
    );
    assert!(got.headers.contains_key("x-herald-last-fetch"));

    // Only what is newer than an entry the caller has.
    let mut after = signed.to_vec();
    after.push(("after", "urn:k:2"));
    let got = retrieve(&app, &after, Some("s3cret"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body.contains("urn:k:3") && !got.body.contains("urn:k:2"),
        "{}",
        got.body
    );

    // The producer may ask without a subscription.
    let got = retrieve(
        &app,
        &[("hub.topic", topic.as_str())],
        None,
        Some("producer-secret"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body.contains("urn:k:1"),
        "default count 10: {}",
        got.body
    );

    // Strangers: no proof, a wrong secret, a stale timestamp, a wrong token, an unknown topic —
    // one and the same answer.
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let mut old = signed.to_vec();
    old[2] = ("hub.timestamp", stale.as_str());
    let refusals = [
        retrieve(&app, &signed, None, None).await,
        retrieve(&app, &signed, Some("guess"), None).await,
        retrieve(&app, &old, Some("s3cret"), None).await,
        retrieve(&app, &[("hub.topic", topic.as_str())], None, Some("wrong")).await,
        retrieve(
            &app,
            &[("hub.topic", "http://127.0.0.1:9/unknown")],
            None,
            Some("producer-secret"),
        )
        .await,
    ];
    let first = &refusals[0].body;
    for refused in &refusals {
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
        assert_eq!(&refused.body, first);
        assert!(!refused.body.contains("urn:k"), "{}", refused.body);
    }

    // Bad requests say what is wrong.
    let bad = retrieve(
        &app,
        &[("hub.topic", topic.as_str()), ("count", "0")],
        None,
        Some("producer-secret"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("count"), "{}", bad.body);
    let other = retrieve(
        &app,
        &[("hub.topic", topic.as_str()), ("format", "json")],
        None,
        Some("producer-secret"),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_ACCEPTABLE);
    assert!(other.body.contains("atom"), "{}", other.body);
}

/// A feed that never pings: its first poll delivers nothing, yet its subscriber can catch up
/// on what it served then.
#[tokio::test(flavor = "multi_thread")]
async fn a_polled_feeds_first_body_can_be_retrieved() {
    let app = TestApp::spawn_with(&[
        ("HERALD_POLLING", "all"),
        ("HERALD_POLL_MIN_INTERVAL", "200ms"),
        ("HERALD_POLL_MAX_INTERVAL", "2s"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "polled",
        Some("application/atom+xml"),
        atom(&[("urn:p:2", "two"), ("urn:p:1", "one")]),
    );
    let topic = publisher.url("polled");
    let callback = sub.callback("polled");
    app.subscribed(&topic, &callback, &[("hub.secret", "k")])
        .await;
    let ts = now_secs();
    let query = [
        ("hub.topic", topic.as_str()),
        ("hub.callback", callback.as_str()),
        ("hub.timestamp", ts.as_str()),
    ];
    let got = crate::helpers::eventually("the first poll's body", || async {
        let got = retrieve(&app, &query, Some("k"), None).await;
        (got.status == StatusCode::OK).then_some(got)
    })
    .await;
    assert!(
        got.body.contains("urn:p:2") && got.body.contains("urn:p:1"),
        "{}",
        got.body
    );
    assert!(
        sub.deliveries("polled").is_empty(),
        "the first poll delivers nothing"
    );
    assert_eq!(
        got.headers
            .get("x-herald-poll-reason")
            .and_then(|v| v.to_str().ok()),
        Some("quiet"),
        "{:?}",
        got.headers
    );
}

/// `herald.replay=N`: a subscriber that subscribes late receives the latest N entries of what
/// the hub last stored, once, as soon as it is verified — in the same transaction as its
/// activation, so a topic the hub holds nothing of replays nothing. Asking for more than the
/// hub keeps, or for nonsense, is refused at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_subscriber_asks_for_a_replay_of_the_latest_entries() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "news",
        Some("application/atom+xml"),
        atom(&[("urn:n:3", "three"), ("urn:n:2", "two"), ("urn:n:1", "one")]),
    );
    let topic = publisher.url("news");
    app.subscribed(&topic, &sub.callback("early"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("early", 1).await;

    app.subscribed(&topic, &sub.callback("late"), &[("herald.replay", "2")])
        .await;
    let got = sub.wait_deliveries("late", 1).await;
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(
        body.contains("urn:n:3") && body.contains("urn:n:2"),
        "{body}"
    );
    assert!(!body.contains("urn:n:1"), "{body}");
    assert!(
        body.contains("<id>urn:feed:kept</id>"),
        "the feed's own envelope: {body}"
    );
    let link = got[0].header("link").expect("a Link header");
    assert!(link.contains(&format!("<{topic}>; rel=\"self\"")), "{link}");
    assert!(
        got[0].header("x-hub-signature").is_none(),
        "no secret, no signature"
    );

    // Nothing stored for this topic: nothing replayed (written with the activation).
    let empty = publisher.url("empty");
    app.subscribed(&empty, &sub.callback("nothing"), &[("herald.replay", "5")])
        .await;
    let replayed = app
        .scalar_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
             WHERE s.callback = $1",
            &[&sub.callback("nothing")],
        )
        .await;
    assert_eq!(replayed.as_deref(), Some("0"));

    for (value, says) in [
        ("0", "herald.replay must be a whole number from 1 to 1000"),
        (
            "many",
            "herald.replay must be a whole number from 1 to 1000",
        ),
        (
            "51",
            "herald.replay may ask for at most 50 entries on this hub",
        ),
    ] {
        let (status, text) = app
            .post_form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &topic),
                ("hub.callback", &sub.callback("bad")),
                ("herald.replay", value),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert!(text.contains(says), "{value}: {text}");
    }
    assert_eq!(sub.verifications("bad").len(), 0);
}
