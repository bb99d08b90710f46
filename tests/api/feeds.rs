//! Feed-aware distribution through the real hub: delivery modes, entry tracking, coalescing,
//! event identity.

use std::collections::HashSet;

use reqwest::StatusCode;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, subscriber::Request};

const ATOM: &str = "application/atom+xml; charset=utf-8";

/// An Atom feed with an envelope that must survive byte for byte, and `entries` (id, title),
/// newest first.
fn atom(updated: &str, entries: &[(&str, &str)]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" \
         xmlns:activity=\"http://activitystrea.ms/spec/1.0/\">\n  <id>https://social.example/api/statuses/user_timeline/7.atom</id>\n  \
         <title>kay timeline</title>\n  <updated>{updated}</updated>\n  <link rel=\"hub\" href=\"https://hub.example/\"/>\n"
    );
    for (id, title) in entries {
        out.push_str(&format!(
            "  <entry>\n    <id>{id}</id>\n    <title>{title}</title>\n    \
             <activity:verb>http://activitystrea.ms/schema/1.0/post</activity:verb>\n  </entry>\n"
        ));
    }
    out.push_str("</feed>\n");
    out
}

fn rss(items: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\"?>\n<rss version=\"2.0\">\n<channel>\n<title>News</title>\n<link>https://news.example/</link>\n",
    );
    for (guid, title) in items {
        out.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{guid}</guid><title>{title}</title></item>\n"
        ));
    }
    out.push_str("</channel>\n</rss>\n");
    out
}

fn entry_ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("<id>")
        .skip(2)
        .map(|s| s.split("</id>").next().unwrap_or_default().to_owned())
        .collect()
}

fn header(d: &Request, name: &str) -> String {
    d.header(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_subscribers_get_everything_first_then_only_new_and_edited_entries() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let v1 = atom(
        "2026-11-20T10:00:00Z",
        &[("urn:n:2", "two"), ("urn:n:1", "one")],
    );
    publisher.set("f", Some(ATOM), v1.clone());
    let topic = publisher.url("f");
    app.subscribed(&topic, &sub.callback("d"), &[]).await;

    app.publish(&topic).await;
    let first = sub.wait_deliveries("d", 1).await;
    assert_eq!(
        first[0].body,
        v1.as_bytes(),
        "the first fetch delivers everything, byte for byte"
    );
    assert_eq!(first[0].header("content-type"), Some(ATOM));

    // One new entry: only it, in the untouched envelope.
    let v2 = atom(
        "2026-11-21T10:00:00Z",
        &[("urn:n:3", "three"), ("urn:n:2", "two"), ("urn:n:1", "one")],
    );
    publisher.set("f", Some(ATOM), v2);
    app.publish(&topic).await;
    let got = sub.wait_deliveries("d", 2).await;
    assert_eq!(
        String::from_utf8_lossy(&got[1].body),
        atom("2026-11-21T10:00:00Z", &[("urn:n:3", "three")]),
        "exactly the new entry inside the publisher's own envelope"
    );

    // An edited entry is delivered again.
    let v3 = atom(
        "2026-11-22T10:00:00Z",
        &[
            ("urn:n:3", "three"),
            ("urn:n:2", "two, edited"),
            ("urn:n:1", "one"),
        ],
    );
    publisher.set("f", Some(ATOM), v3);
    app.publish(&topic).await;
    let got = sub.wait_deliveries("d", 3).await;
    assert_eq!(entry_ids(&got[2].body), ["urn:n:2"]);
    assert!(String::from_utf8_lossy(&got[2].body).contains("two, edited"));

    // Only the envelope changed: nothing to deliver.
    let v4 = atom(
        "2026-11-23T10:00:00Z",
        &[
            ("urn:n:3", "three"),
            ("urn:n:2", "two, edited"),
            ("urn:n:1", "one"),
        ],
    );
    publisher.set("f", Some(ATOM), v4);
    app.publish(&topic).await;
    app.wait_topics_idle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 3);
    assert_eq!(sub.deliveries("d").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn single_subscribers_get_one_single_entry_feed_per_new_notice_and_full_ones_the_document() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let v1 = atom(
        "2026-11-20T10:00:00Z",
        &[("urn:n:2", "two"), ("urn:n:1", "one")],
    );
    publisher.set("f", Some(ATOM), v1.clone());
    let topic = publisher.url("f");
    app.subscribed(
        &topic,
        &sub.callback("ostatus"),
        &[("herald.delivery", "single")],
    )
    .await;
    app.subscribed(
        &topic,
        &sub.callback("full"),
        &[("herald.delivery", "full")],
    )
    .await;

    app.publish(&topic).await;
    let singles = sub.wait_deliveries("ostatus", 2).await;
    // Oldest first, each a feed of exactly one entry with the original envelope.
    assert_eq!(
        String::from_utf8_lossy(&singles[0].body),
        atom("2026-11-20T10:00:00Z", &[("urn:n:1", "one")])
    );
    assert_eq!(
        String::from_utf8_lossy(&singles[1].body),
        atom("2026-11-20T10:00:00Z", &[("urn:n:2", "two")])
    );
    assert_eq!(sub.wait_deliveries("full", 1).await[0].body, v1.as_bytes());

    let v2 = atom(
        "2026-11-21T10:00:00Z",
        &[
            ("urn:n:4", "four"),
            ("urn:n:3", "three"),
            ("urn:n:2", "two"),
            ("urn:n:1", "one"),
        ],
    );
    publisher.set("f", Some(ATOM), v2.clone());
    app.publish(&topic).await;
    let singles = sub.wait_deliveries("ostatus", 4).await;
    assert_eq!(entry_ids(&singles[2].body), ["urn:n:3"]);
    assert_eq!(entry_ids(&singles[3].body), ["urn:n:4"]);
    assert_eq!(sub.wait_deliveries("full", 2).await[1].body, v2.as_bytes());
    let seqs: Vec<String> = singles
        .iter()
        .map(|d| header(d, "herald-sequence"))
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4"]);
    app.wait_delivered(6).await;
    assert_eq!(sub.deliveries("ostatus").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rss_subscriber_receives_only_the_new_items() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "r",
        Some("application/rss+xml"),
        rss(&[("b", "B"), ("a", "A")]),
    );
    let topic = publisher.url("r");
    app.subscribed(&topic, &sub.callback("r"), &[]).await;
    app.publish(&topic).await;
    sub.wait_deliveries("r", 1).await;
    publisher.set(
        "r",
        Some("application/rss+xml"),
        rss(&[("c", "C"), ("b", "B"), ("a", "A")]),
    );
    app.publish(&topic).await;
    let got = sub.wait_deliveries("r", 2).await;
    assert_eq!(String::from_utf8_lossy(&got[1].body), rss(&[("c", "C")]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_pings_gives_one_fetch_and_one_delivery() {
    // Pings reach a web-only process; the worker starts after the burst.
    let web = TestApp::spawn_with(&[("HERALD_ROLE", "web")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set(
        "burst",
        Some(ATOM),
        atom("2026-11-20T10:00:00Z", &[("urn:b:1", "one")]),
    );
    let topic = publisher.url("burst");
    let worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    web.subscribed(&topic, &sub.callback("b"), &[]).await;
    worker.stop().await;

    for _ in 0..10 {
        assert_eq!(web.publish(&topic).await, StatusCode::NO_CONTENT);
    }
    let _worker = web.sibling(&[("HERALD_ROLE", "worker")]).await;
    sub.wait_deliveries("b", 1).await;
    web.wait_topics_idle().await;
    web.wait_delivered(1).await;
    assert_eq!(publisher.fetches("burst"), 1);
    assert_eq!(sub.deliveries("b").len(), 1);
    assert_eq!(web.count("SELECT ping_seq FROM topics").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn event_ids_are_stable_across_retries_and_sequences_have_no_gaps() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("e", Some("text/plain"), "v1");
    let topic = publisher.url("e");
    app.subscribed(&topic, &sub.callback("e"), &[]).await;
    sub.on_deliver("e", [Answer::Status(500), Answer::Status(502)]);
    app.publish(&topic).await;
    let got = sub.wait_deliveries("e", 3).await;
    let ids: HashSet<String> = got.iter().map(|d| header(d, "herald-event-id")).collect();
    assert_eq!(ids.len(), 1, "one event, three attempts: {ids:?}");
    assert!(got.iter().all(|d| header(d, "herald-sequence") == "1"));

    for (n, body) in ["v2", "v3", "v4"].iter().enumerate() {
        publisher.set("e", Some("text/plain"), *body);
        app.publish(&topic).await;
        let got = sub.wait_deliveries("e", 4 + n).await;
        assert_eq!(got[3 + n].body, body.as_bytes());
    }
    let got = sub.deliveries("e");
    let seqs: Vec<String> = got[2..]
        .iter()
        .map(|d| header(d, "herald-sequence"))
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4"]);
    let distinct: HashSet<String> = got[2..]
        .iter()
        .map(|d| header(d, "herald-event-id"))
        .collect();
    assert_eq!(distinct.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_body_never_overtakes_an_older_one() {
    let app = TestApp::spawn_with(&[("HERALD_RETRY_SCHEDULE", "300ms,300ms")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("o", Some("text/plain"), "old");
    let topic = publisher.url("o");
    app.subscribed(&topic, &sub.callback("o"), &[]).await;
    // The first delivery fails once; meanwhile a newer version is published.
    sub.on_deliver("o", [Answer::Status(503)]);
    app.publish(&topic).await;
    sub.wait_deliveries("o", 1).await;
    publisher.set("o", Some("text/plain"), "new");
    app.publish(&topic).await;
    let got = sub.wait_deliveries("o", 3).await;
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
    assert_eq!(bodies, [b"old".as_slice(), b"old", b"new"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_does_not_parse_is_delivered_whole_with_the_reason_recorded() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let broken = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/feeds/malformed.atom"
    ))
    .expect("fixture");
    publisher.set("m", Some("application/atom+xml"), broken.clone());
    let topic = publisher.url("m");
    app.subscribed(&topic, &sub.callback("m"), &[]).await;
    app.publish(&topic).await;
    assert_eq!(sub.wait_deliveries("m", 1).await[0].body, broken);
    let reason = app
        .scalar_text("SELECT feed_error FROM topics", &[])
        .await
        .expect("a recorded reason");
    assert!(reason.contains("malformed XML"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_feeds_are_handled_without_harm() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let bomb = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/feeds/billion-laughs.atom"
    ))
    .expect("fixture");
    publisher.set("bomb", Some("application/atom+xml"), bomb.clone());
    let big = herald::feed::samples::big_atom(10 * 1024 * 1024);
    publisher.set("big", Some("application/atom+xml"), big.clone());
    for name in ["bomb", "big"] {
        app.subscribed(&publisher.url(name), &sub.callback(name), &[])
            .await;
        app.publish(&publisher.url(name)).await;
    }
    assert_eq!(
        sub.wait_deliveries("bomb", 1).await[0].body,
        bomb,
        "delivered as written, never expanded"
    );
    assert_eq!(sub.wait_deliveries("big", 1).await[0].body.len(), big.len());
    assert_eq!(
        app.scalar_text(
            "SELECT feed_kind FROM topics WHERE url = $1",
            &[&publisher.url("big")]
        )
        .await
        .as_deref(),
        Some("atom")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn single_entry_documents_are_stored_once_whatever_the_number_of_entries() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let feed = herald::feed::samples::envelope_heavy_atom(600_000, 400);
    let feed_len = feed.len() as i64;
    publisher.set("heavy", Some(ATOM), feed);
    let topic = publisher.url("heavy");
    app.subscribed(
        &topic,
        &sub.callback("one"),
        &[("herald.delivery", "single")],
    )
    .await;
    app.publish(&topic).await;
    let got = sub.wait_deliveries("one", 400).await;
    // In order, oldest entry first, numbered without gaps, each the envelope and one entry.
    for (n, d) in got.iter().enumerate() {
        assert_eq!(header(d, "herald-sequence"), (n + 1).to_string());
        assert_eq!(entry_ids(&d.body), [format!("urn:e:{n}")]);
        assert!(d.body.len() > 600_000, "the envelope is whole");
    }
    // Stored: the fetched body once, and a few numbers per document.
    let stored = app
        .count(
            "SELECT CAST(COALESCE(SUM(LENGTH(body)), 0) AS BIGINT) FROM bodies",
        )
        .await
        + app
            .count("SELECT CAST(COALESCE(SUM(LENGTH(body)) + SUM(LENGTH(ranges)), 0) AS BIGINT) FROM contents")
            .await;
    assert!(
        stored < 2 * feed_len,
        "{stored} bytes stored for a {feed_len}-byte feed"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM contents").await, 400);
}
