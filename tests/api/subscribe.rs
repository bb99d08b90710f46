//! The hub URL's subscribe/unsubscribe side (WebSub §5.1, §5.1.2).

use reqwest::StatusCode;

use crate::helpers::{Subscriber, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_subscribe_request_is_accepted_with_202_and_verified_with_a_challenge_get() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/feed?x=1";
    let callback = format!("{}?token=a%20b&hub.mode=keep", sub.callback("alice"));

    let (status, body) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", &callback),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let get = &sub.wait_verifications("alice", 1).await[0];
    // The callback's own query comes first, byte for byte; the hub's parameters are appended.
    assert!(
        get.uri
            .starts_with("/cb/alice?token=a%20b&hub.mode=keep&hub.mode=subscribe&"),
        "{}",
        get.uri
    );
    let modes: Vec<&str> = get
        .query
        .iter()
        .filter(|(k, _)| k == "hub.mode")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(modes, ["keep", "subscribe"]);
    assert_eq!(get.param("hub.topic"), Some(topic));
    assert_eq!(
        get.param("hub.lease_seconds"),
        Some("864000"),
        "the default lease is always sent"
    );
    let challenge = get.param("hub.challenge").expect("a challenge");
    assert!(challenge.len() >= 32 && challenge.bytes().all(|b| b.is_ascii_alphanumeric()));

    assert_eq!(app.settled_request(topic, &callback).await, "verified");
    assert_eq!(
        app.subscription_state(topic, &callback).await.as_deref(),
        Some("active")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_parameters_are_ignored_and_not_echoed() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let cb = sub.callback("extra");
    let status = app
        .subscribe(
            "http://127.0.0.1:9/t",
            &cb,
            &[("foo", "bar"), ("hub.foo", "hub.bar")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let get = &sub.wait_verifications("extra", 1).await[0];
    assert!(get.param("foo").is_none() && get.param("hub.foo").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_a_plain_text_4xx_and_store_nothing() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_REQUEST_BYTES", "4096")]).await;
    let cb = "http://127.0.0.1:9/cb";
    let topic = "http://127.0.0.1:9/t";
    let secret_200_bytes = "s".repeat(200);
    let secret_100_two_byte_chars = "é".repeat(100);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("hub.topic", topic), ("hub.callback", cb)],
            "hub.mode is missing",
        ),
        (
            vec![
                ("hub.mode", "follow"),
                ("hub.topic", topic),
                ("hub.callback", cb),
            ],
            "is not one of",
        ),
        (
            vec![("hub.mode", "subscribe"), ("hub.topic", topic)],
            "hub.callback is missing",
        ),
        (
            vec![("hub.mode", "subscribe"), ("hub.callback", cb)],
            "hub.topic is missing",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", "/relative"),
            ],
            "not an absolute URL",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", "ftp://x/f"),
                ("hub.callback", cb),
            ],
            "must use http or https",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", "http://127.0.0.1:9/cb#x"),
            ],
            "fragment",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", cb),
                ("hub.secret", &secret_200_bytes),
            ],
            "200 bytes",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", cb),
                ("hub.secret", &secret_100_two_byte_chars),
            ],
            "200 bytes",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", cb),
                ("hub.lease_seconds", "0"),
            ],
            "positive decimal integer",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", cb),
                ("hub.lease_seconds", "-5"),
            ],
            "positive decimal integer",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.callback", cb),
                ("hub.lease_seconds", "1.5"),
            ],
            "positive decimal integer",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.topic", topic),
                ("hub.callback", cb),
            ],
            "more than once",
        ),
    ];
    for (pairs, expected) in cases {
        let (status, body) = app.post_form(&pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pairs:?}: {body}");
        assert!(
            body.contains(expected),
            "{pairs:?}: {body:?} should mention {expected:?}"
        );
    }

    let (status, body) = app
        .post_raw("application/json", br#"{"hub.mode":"subscribe"}"#.to_vec())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, _) = app
        .post_raw(
            "application/x-www-form-urlencoded",
            b"hub.mode=subscribe&hub.topic=%FF%FE".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let huge = format!(
        "hub.mode=subscribe&hub.topic={topic}&hub.callback={cb}&pad={}",
        "x".repeat(5000)
    );
    let (status, body) = app
        .post_raw("application/x-www-form-urlencoded", huge.into_bytes())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("4096"));

    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscription_requests")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_does_not_wait_for_an_unreachable_callback() {
    let app = TestApp::spawn().await;
    // Port 9 (discard) refuses connections: verification fails, the answer is still 202.
    let cb = "http://127.0.0.1:9/never";
    assert_eq!(
        app.subscribe("http://127.0.0.1:9/t", cb, &[]).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.settled_request("http://127.0.0.1:9/t", cb).await,
        "failed"
    );
    assert_eq!(
        app.subscription_state("http://127.0.0.1:9/t", cb).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_on_forbidden_addresses_are_refused_at_once() {
    let app = TestApp::spawn_with(&[("HERALD_ALLOW_PRIVATE_ADDRESSES", "false")]).await;
    for cb in [
        "http://127.0.0.1/cb",
        "http://10.0.0.7/cb",
        "http://169.254.169.254/latest",
        "http://[::1]/cb",
        // IPv6 forms that embed or reach IPv4.
        "http://[::ffff:127.0.0.1]/cb",
        "http://[::127.0.0.1]/cb",
        "http://[::ffff:0:10.0.0.1]/cb",
        "http://[2002:7f00:1::1]/cb",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/cb",
        "http://[64:ff9b::a9fe:a9fe]/cb",
        "http://[64:ff9b:1::a00:1]/cb",
        "http://[fec0::1]/cb",
    ] {
        let (status, body) = app
            .post_form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", "http://example.com/f"),
                ("hub.callback", cb),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{cb}");
        assert!(body.contains("not allowed"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn percent_encoded_unreserved_characters_name_the_same_subscription() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/~feed";
    let encoded_cb = format!("{}%7Euser", sub.callback("enc"));
    let plain_cb = format!("{}~user", sub.callback("enc"));
    assert_eq!(
        app.subscribe("http://127.0.0.1:9/%7Efeed", &encoded_cb, &[])
            .await,
        StatusCode::ACCEPTED
    );
    // Stored, verified and keyed under the decoded spelling.
    assert_eq!(app.settled_request(topic, &plain_cb).await, "verified");
    assert_eq!(
        sub.wait_verifications("enc~user", 1).await[0].param("hub.topic"),
        Some(topic)
    );
    assert_eq!(
        app.subscription_state(topic, &plain_cb).await.as_deref(),
        Some("active")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_path_is_an_alias_of_the_hub_url() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let body = format!(
        "hub.mode=subscribe&hub.topic=http%3A%2F%2F127.0.0.1%3A9%2Ft&hub.callback={}",
        url::form_urlencoded::byte_serialize(sub.callback("root").as_bytes()).collect::<String>()
    );
    let response = app
        .client
        .post(format!("http://127.0.0.1:{}/", app.port))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    sub.wait_verifications("root", 1).await;
}
