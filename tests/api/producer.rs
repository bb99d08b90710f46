//! The producer API (`/api/v1`) and the closed hub.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Publisher, Subscriber, TestApp, eventually};

const TOKEN: &str = "producer-token-for-tests";

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("http://127.0.0.1:{}{path}", app.port));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b.to_owned());
    }
    let response = req.send().await.expect("answer");
    let status = response.status();
    let json = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, json)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_needs_the_token_and_errors_are_json() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let topic = enc("http://127.0.0.1:9/t");
    let calls = [
        (
            reqwest::Method::POST,
            format!("/api/v1/publish?topic={topic}"),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/topics?topic={topic}"),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/topics/subscriptions?topic={topic}"),
        ),
        (reqwest::Method::GET, "/api/v1/distributions/1".to_owned()),
    ];
    for (method, path) in &calls {
        let (status, json) =
            call(&app, method.clone(), path, None, Some(("text/plain", "x"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(json["error"], "unauthorized");
        let (status, json) = call(
            &app,
            method.clone(),
            path,
            Some("wrong"),
            Some(("text/plain", "x")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| m.contains("not valid"))
        );
    }
    let (status, json) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/topics",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("topic"))
    );
    let (status, json) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/distributions/999",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "not_found");

    // Without a configured token the API does not exist.
    let off = TestApp::spawn().await;
    let (status, json) = call(
        &off,
        reqwest::Method::GET,
        &format!("/api/v1/topics?topic={topic}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "disabled");
}

/// Errors are RFC 9457 problem details, with the stable code as an extension member.
#[tokio::test(flavor = "multi_thread")]
async fn errors_are_problem_details_with_the_stable_code() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let response = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/topics?topic=not-a-url",
            app.port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["title"], "Bad Request");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["error"], "bad_request");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("topic")),
        "{problem}"
    );
    assert_eq!(problem["message"], problem["detail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_pushes_content_and_sees_who_is_subscribed_and_how_it_went() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", TOKEN)]).await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/producer-feed";
    let q = enc(topic);

    let (status, json) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/topics?topic={q}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        serde_json::json!({"topic": topic, "subscribed": false, "active_subscribers": 0})
    );
    let (status, json) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/publish?topic={q}"),
        Some(TOKEN),
        Some(("text/plain", "x")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json["result"], "no_subscribers");

    app.subscribed(
        topic,
        &sub.callback("one"),
        &[("hub.secret", "never-shown")],
    )
    .await;
    app.subscribed(topic, &sub.callback("two"), &[]).await;
    let (_, json) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/topics?topic={q}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(json["subscribed"], true);
    assert_eq!(json["active_subscribers"], 2);

    // A fat ping: no fetch (the topic's host does not even answer), the body is the content.
    let (status, json) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/publish?topic={q}"),
        Some(TOKEN),
        Some(("text/markdown; charset=utf-8", "# pushed\n")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["result"], "distributed");
    assert_eq!(json["deliveries"], 2);
    let id = json["distribution"].as_i64().expect("a distribution id");
    let d = &sub.wait_deliveries("one", 1).await[0];
    assert_eq!(d.body, b"# pushed\n");
    assert_eq!(
        d.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    sub.wait_deliveries("two", 1).await;

    let json = eventually("the distribution to complete", || async {
        let (_, json) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/distributions/{id}"),
            Some(TOKEN),
            None,
        )
        .await;
        (json["complete"] == true).then_some(json)
    })
    .await;
    assert_eq!(
        (
            json["delivered"].as_i64(),
            json["pending"].as_i64(),
            json["failed"].as_i64()
        ),
        (Some(2), Some(0), Some(0))
    );
    assert_eq!(json["source"], "push");

    let (_, json) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/topics/subscriptions?topic={q}"),
        Some(TOKEN),
        None,
    )
    .await;
    let subs = json["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {json}"));
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["callback_host"], "127.0.0.1");
    assert_eq!(subs[0]["state"], "active");
    assert_eq!(subs[0]["last_delivery"]["state"], "delivered");
    assert!(
        !json.to_string().contains("never-shown"),
        "secrets never leave the hub"
    );
    assert!(
        !json.to_string().contains("/cb/"),
        "only the callback host is shown"
    );

    // The same bytes again: nothing to deliver.
    let (_, json) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/publish?topic={q}"),
        Some(TOKEN),
        Some(("text/markdown; charset=utf-8", "# pushed\n")),
    )
    .await;
    assert_eq!(json["result"], "unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_hub_serves_only_its_producers_topics_and_pings() {
    let publisher = Publisher::spawn();
    // No trailing slash: as text, it is also a prefix of the look-alike topic below.
    let allowed_prefix = publisher.url("own");
    let app = TestApp::spawn_with(&[
        ("HERALD_MODE", "closed"),
        ("HERALD_TOPIC_ALLOW", &allowed_prefix),
        ("HERALD_PRODUCER_TOKEN", TOKEN),
    ])
    .await;
    let sub = Subscriber::spawn();
    publisher.set("own/feed", Some("text/plain"), "ours");
    let own = publisher.url("own/feed");
    let foreign = publisher.url("elsewhere");

    // A foreign topic is denied with a reason.
    assert_eq!(
        app.subscribe(&foreign, &sub.callback("f"), &[]).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.settled_request(&foreign, &sub.callback("f")).await,
        "denied"
    );
    let get = &sub.wait_verifications("f", 1).await[0];
    assert_eq!(get.param("hub.mode"), Some("denied"));
    assert!(
        get.param("hub.reason")
            .is_some_and(|r| r.contains("only serves"))
    );

    // A topic whose URL merely starts with the allowed text is not the producer's.
    let lookalike = publisher.url("own-evil/feed");
    assert!(lookalike.starts_with(&allowed_prefix));
    app.subscribe(&lookalike, &sub.callback("l"), &[]).await;
    assert_eq!(
        app.settled_request(&lookalike, &sub.callback("l")).await,
        "denied"
    );

    // The producer's own topic is served.
    app.subscribed(&own, &sub.callback("o"), &[]).await;
    // Pings from outside are refused; with the producer token they work.
    let (status, body) = app
        .post_form(&[("hub.mode", "publish"), ("hub.url", &own)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("producer token"));
    let status = app
        .client
        .post(app.hub_url())
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("hub.mode=publish&hub.url={}", enc(&own)))
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sub.wait_deliveries("o", 1).await[0].body, b"ours");
    // The producer API keeps working.
    let (status, json) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/topics?topic={}", enc(&own)),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["active_subscribers"], 1);
}
