//! The pages people read: the landing page and the diagnostics pages (HTML, escaped, strict
//! CSP), read here over HTTP.

use reqwest::StatusCode;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, eventually};

async fn get_html(
    app: &TestApp,
    path_and_query: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .get(format!("http://127.0.0.1:{}{path_and_query}", app.port))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("text"))
}

/// A form POSTed from a page, as a browser sends it, from `client` behind the trusted local
/// proxy when given.
async fn post_html(
    app: &TestApp,
    path: &str,
    pairs: &[(&str, &str)],
    client: Option<&str>,
) -> (StatusCode, String) {
    let mut request = app
        .client
        .post(format!("http://127.0.0.1:{}{path}", app.port))
        .header("accept", "text/html,application/xhtml+xml")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(pairs));
    if let Some(client) = client {
        request = request.header("x-forwarded-for", client);
    }
    let response = request.send().await.expect("answer");
    let status = response.status();
    (status, response.text().await.expect("text"))
}

fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_landing_page_says_how_to_use_the_hub() {
    let app = TestApp::spawn().await;
    let (status, headers, body) = get_html(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(body.contains(&app.hub_url()), "the hub URL is shown");
    assert!(body.contains("hub.mode=subscribe") && body.contains("hub.mode=publish"));
    assert!(
        body.contains("action=\"/subscription-details\"")
            && body.contains("action=\"/topic-details\"")
    );
    assert!(body.contains("This hub is open"));
    // Plain text stays available.
    let plain = app
        .client
        .get(app.hub_url())
        .header("accept", "text/plain")
        .send()
        .await
        .expect("answer");
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let css = app
        .client
        .get(format!("http://127.0.0.1:{}/static/herald.css", app.port))
        .send()
        .await
        .expect("answer");
    assert_eq!(css.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_whose_callback_fails_finds_out_why_with_its_secret() {
    let app = TestApp::spawn_with(&[("HERALD_RETRY_SCHEDULE", "1h")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("p", Some("text/plain"), "news");
    let topic = publisher.url("p");
    let cb = sub.callback("failing");
    let (status, body) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &cb),
            ("hub.secret", "s3cret-of-the-subscriber"),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        body.contains("/subscription-details?"),
        "the 202 names its details page: {body}"
    );
    assert_eq!(app.settled_request(&topic, &cb).await, "verified");
    sub.on_deliver("failing", [Answer::Status(500)]);
    app.publish(&topic).await;
    eventually("the failure to be recorded", || async {
        (app.count("SELECT COUNT(*) FROM deliveries WHERE last_status = 500")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let base = query(&[("hub.topic", &topic), ("hub.callback", &cb)]);
    // Without the secret, a stranger learns the state and nothing more.
    let (status, _, body) = get_html(&app, &format!("/subscription-details?{base}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("State: active"), "{body}");
    assert!(!body.contains("answered 500"), "{body}");
    // The secret travels in a POST body (the pages' forms send it so), never in a URL.
    assert!(body.contains("method=\"post\""), "{body}");
    let details = |secret: &'static str| {
        let (topic, cb) = (topic.clone(), cb.clone());
        let app = &app;
        async move {
            post_html(
                app,
                "/subscription-details",
                &[
                    ("hub.topic", &topic),
                    ("hub.callback", &cb),
                    ("hub.secret", secret),
                ],
                None,
            )
            .await
        }
    };
    let (status, body) = details("guess").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("State: active") && !body.contains("answered 500"),
        "{body}"
    );
    let (status, body) = details("s3cret-of-the-subscriber").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("callback answered 500"), "{body}");
    assert!(body.contains("Next retry"));
    assert!(body.contains("Recent deliveries"));
    assert!(
        !body.contains("s3cret-of-the-subscriber"),
        "the secret is never shown"
    );
}

/// Guessing a subscription's secret on its details page is throttled per client and per
/// subscription, and a secret put in a URL is refused (URLs end up in access logs).
#[tokio::test(flavor = "multi_thread")]
async fn secret_guesses_are_throttled_and_secrets_stay_out_of_urls() {
    let app = TestApp::spawn_with(&[
        ("HERALD_SECRET_TRY_LIMIT", "1/h,3"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/guarded";
    let cb = sub.callback("guarded");
    app.subscribed(topic, &cb, &[("hub.secret", "the-real-secret")])
        .await;
    let guess = |client: &'static str, secret: &'static str| {
        let cb = cb.clone();
        let app = &app;
        async move {
            post_html(
                app,
                "/subscription-details",
                &[
                    ("hub.topic", topic),
                    ("hub.callback", &cb),
                    ("hub.secret", secret),
                ],
                Some(client),
            )
            .await
            .0
        }
    };
    for n in 0..3 {
        assert_eq!(
            guess("203.0.113.50", "wrong").await,
            StatusCode::OK,
            "try {n}"
        );
    }
    let (status, body) = post_html(
        &app,
        "/subscription-details",
        &[
            ("hub.topic", topic),
            ("hub.callback", &cb),
            ("hub.secret", "wrong"),
        ],
        Some("203.0.113.50"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("Too many tries"), "{body}");
    // Another address guessing the same subscription: its tries are used up as well.
    assert_eq!(
        guess("203.0.113.51", "wrong").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A URL carrying a secret is refused, with where to send it instead.
    let (status, _, body) = get_html(
        &app,
        &format!(
            "/subscription-details?{}",
            query(&[
                ("hub.topic", topic),
                ("hub.callback", &cb),
                ("hub.secret", "x")
            ])
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("POST"), "{body}");
    // The landing page's form sends the secret by POST.
    let (_, _, landing) = get_html(&app, "/").await;
    assert!(
        landing.contains("<form method=\"post\" action=\"/subscription-details\">"),
        "{landing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_escape_what_strangers_wrote() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let hostile = "http://127.0.0.1:9/t?x=<script>alert(1)</script>";
    app.subscribed(hostile, &sub.callback("h"), &[]).await;
    let (status, _, body) = get_html(
        &app,
        &format!("/topic-details?{}", query(&[("hub.url", hostile)])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(body.contains("Subscribers"));
    // Bad input gets a readable page.
    let (status, _, body) = get_html(&app, "/subscription-details?hub.topic=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Give both hub.topic and hub.callback"));
}

/// On a closed hub, how many subscribers a topic has — and so its distributions' delivery
/// counts — is the publisher's to see: a stranger's topic page shows neither.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_hub_shows_subscriber_and_delivery_counts_only_to_its_publisher() {
    let publisher = Publisher::spawn();
    let prefix = publisher.url("");
    let app = TestApp::spawn_with(&[
        ("HERALD_MODE", "closed"),
        ("HERALD_TOPIC_ALLOW", &format!("{prefix}**")),
        ("HERALD_PRODUCER_TOKEN", "producer-tok"),
    ])
    .await;
    let sub = Subscriber::spawn();
    publisher.set("t", Some("text/plain"), "news");
    let topic = publisher.url("t");
    app.subscribed(&topic, &sub.callback("a"), &[]).await;
    app.subscribed(&topic, &sub.callback("b"), &[]).await;
    let pinged = app
        .client
        .post(app.hub_url())
        .bearer_auth("producer-tok")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(&[
            ("hub.mode", "publish"),
            ("hub.url", topic.as_str()),
        ]))
        .send()
        .await
        .expect("answer");
    assert_eq!(pinged.status(), StatusCode::NO_CONTENT);
    app.wait_delivered(2).await;
    let page = |token: Option<&'static str>| {
        let topic = topic.clone();
        let app = &app;
        async move {
            let mut request = app
                .client
                .get(format!(
                    "http://127.0.0.1:{}/topic-details?{}",
                    app.port,
                    query(&[("hub.url", &topic)])
                ))
                .header("accept", "text/html");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request
                .send()
                .await
                .expect("answer")
                .text()
                .await
                .expect("text")
        }
    };
    let stranger = page(None).await;
    assert!(stranger.contains("Recent distributions"), "{stranger}");
    assert!(!stranger.contains("Delivered"), "{stranger}");
    assert!(stranger.contains("shown to the publisher"), "{stranger}");
    let producer = page(Some("producer-tok")).await;
    assert!(producer.contains("Delivered"), "{producer}");
}
