//! The admin API (`/api/v1/admin`) and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Answer, Publisher, Subscriber, TestApp};

const ADMIN: &str = "admin-token-for-tests";
const PRODUCER: &str = "producer-token-for-tests";

async fn admin_app() -> TestApp {
    TestApp::spawn_with(&[
        ("HERALD_ADMIN_TOKEN", ADMIN),
        ("HERALD_PRODUCER_TOKEN", PRODUCER),
    ])
    .await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("http://127.0.0.1:{}{path}", app.port));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let response = req.send().await.expect("answer");
    let status = response.status();
    let json = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, json)
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    call(app, Method::GET, path, Some(ADMIN), None).await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::POST, path, Some(ADMIN), Some(body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_its_own_token() {
    // Off without a token, saying how to turn it on.
    let off = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", PRODUCER)]).await;
    let (status, body) = call(
        &off,
        Method::GET,
        "/api/v1/admin/status",
        Some(PRODUCER),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "disabled");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_ADMIN_TOKEN")),
        "{body}"
    );

    let app = admin_app().await;
    let response = app
        .client
        .get(format!("http://127.0.0.1:{}/api/v1/admin/status", app.port))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    // Neither token opens the other API.
    let (status, body) = call(
        &app,
        Method::GET,
        "/api/v1/admin/status",
        Some(PRODUCER),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = call(
        &app,
        Method::GET,
        "/api/v1/topics?topic=http://example.com/",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unknown endpoints and bad input are JSON errors too.
    let (status, body) = get(&app, "/api/v1/admin/nothing").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = get(&app, "/api/v1/admin/subscriptions/abc").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, body) = get(&app, "/api/v1/admin/subscriptions?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("active")),
        "{body}"
    );
    let (status, body) = get(&app, "/api/v1/admin/subscriptions?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let response = app
        .client
        .post(format!(
            "http://127.0.0.1:{}/api/v1/admin/subscriptions/expire",
            app.port
        ))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "bad_request");
    let (status, body) = post(
        &app,
        "/api/v1/admin/subscriptions/expire",
        json!({"idz": [1]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_list_show_expire_and_delete_subscriptions() {
    let app = admin_app().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let topic = publisher.url("t");
    let other = publisher.url("other");
    let (a, b, c) = (sub.callback("a"), sub.callback("b"), sub.callback("c"));
    app.subscribed(&topic, &a, &[]).await;
    app.subscribed(&topic, &b, &[("hub.secret", "a-secret-value")])
        .await;
    app.subscribed(&other, &c, &[]).await;

    let (status, all) = get(&app, "/api/v1/admin/subscriptions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3));
    assert!(
        !all.to_string().contains("a-secret-value"),
        "secrets never shown"
    );
    let by_topic = get(
        &app,
        &format!("/api/v1/admin/subscriptions?topic={}", urlencoding(&topic)),
    )
    .await
    .1;
    assert_eq!(by_topic["items"].as_array().map(Vec::len), Some(2));
    let by_callback = get(&app, "/api/v1/admin/subscriptions?callback=/cb/c")
        .await
        .1;
    assert_eq!(by_callback["items"][0]["callback"], c.as_str());
    let expiring = get(&app, "/api/v1/admin/subscriptions?expiring_within=1s")
        .await
        .1;
    assert_eq!(expiring["items"].as_array().map(Vec::len), Some(0));

    let id_b = by_topic["items"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["callback"] == b.as_str()))
        .and_then(|r| r["id"].as_i64())
        .expect("b's id");
    let (status, shown) = get(&app, &format!("/api/v1/admin/subscriptions/{id_b}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["subscription"]["has_secret"], true);
    assert_eq!(shown["subscription"]["legacy"], false);
    assert_eq!(shown["subscription"]["state"], "active");
    // Times are RFC 3339, as in the producer API.
    for field in ["verified_at", "expires_at", "created_at"] {
        let at = shown["subscription"][field].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{field}: {}",
            shown["subscription"]
        );
    }
    assert!(shown["recent_deliveries"].is_array());
    let (status, _) = get(&app, "/api/v1/admin/subscriptions/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Expiring: nothing named is refused; a dry run changes nothing.
    let (status, _) = post(&app, "/api/v1/admin/subscriptions/expire", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, dry) = post(
        &app,
        "/api/v1/admin/subscriptions/expire",
        json!({"topic": topic, "dry_run": true}),
    )
    .await;
    assert_eq!((status, dry["count"].as_i64()), (StatusCode::OK, Some(2)));
    assert_eq!(
        app.subscription_state(&topic, &a).await.as_deref(),
        Some("active")
    );
    let (status, done) = post(
        &app,
        "/api/v1/admin/subscriptions/expire",
        json!({"callback": "/cb/a", "notify": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["count"], 1);
    assert_eq!(done["notices_failed"], json!([]));
    assert_eq!(
        app.subscription_state(&topic, &a).await.as_deref(),
        Some("expired")
    );
    assert_eq!(
        app.subscription_state(&topic, &b).await.as_deref(),
        Some("active")
    );
    let notice = sub
        .wait_verifications("a", 2)
        .await
        .pop()
        .expect("a notice");
    assert_eq!(notice.param("hub.mode"), Some("denied"));
    assert_eq!(notice.param("hub.topic"), Some(topic.as_str()));
    let expired = get(&app, "/api/v1/admin/subscriptions?state=expired")
        .await
        .1;
    assert_eq!(expired["items"].as_array().map(Vec::len), Some(1));

    // Deleting, one by id and a list with a dry run first.
    let (status, dry) = post(
        &app,
        "/api/v1/admin/subscriptions/delete",
        json!({"ids": [id_b], "dry_run": true}),
    )
    .await;
    assert_eq!((status, dry["deleted"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 3);
    let (status, deleted) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/subscriptions/{id_b}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (status, deleted["deleted"].as_i64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 2);
    let (status, _) = get(&app, &format!("/api/v1/admin/subscriptions/{id_b}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_failed_deliveries_replay_them_and_read_the_status() {
    let app = admin_app().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("t", Some("text/plain"), "dead letter");
    let topic = publisher.url("t");
    app.subscribed(&topic, &sub.callback("down"), &[]).await;
    app.subscribed(&topic, &sub.callback("up"), &[]).await;
    sub.on_deliver("down", std::iter::repeat_n(Answer::Status(500), 4));
    app.publish(&topic).await;
    sub.wait_deliveries("down", 4).await;
    app.wait_delivery_states_settled().await;

    let (status, failed) = get(&app, "/api/v1/admin/deliveries?state=failed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        failed["items"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    assert_eq!(failed["items"][0]["last_error"], "callback answered 500");
    let id = failed["items"][0]["id"].as_i64().expect("id");
    let all = get(&app, "/api/v1/admin/deliveries").await.1;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));

    let (status, status_body) = get(&app, "/api/v1/admin/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_body["subscriptions"]["active"], 2);
    assert_eq!(status_body["subscriptions"]["expired"], 0);
    assert_eq!(status_body["processes"], 1);
    for queue in ["hubverify", "hubdistrib", "hubout"] {
        assert!(status_body["queues"][queue].is_i64(), "{status_body}");
    }
    assert_eq!(status_body["version"], env!("CARGO_PKG_VERSION"));
    assert!(status_body["open_breakers"].is_array());
    assert_eq!(
        status_body["pending_deliveries"].as_i64(),
        Some(
            app.count("SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'sending')")
                .await
        )
    );

    // Replay: nothing named is refused, a dry run counts only failed ones, then it goes out.
    let (status, _) = post(&app, "/api/v1/admin/deliveries/replay", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &app,
        "/api/v1/admin/deliveries/replay",
        json!({"ids": [id], "all_failed": true}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, dry) = post(
        &app,
        "/api/v1/admin/deliveries/replay",
        json!({"all_failed": true, "dry_run": true}),
    )
    .await;
    assert_eq!((status, dry["ids"].clone()), (StatusCode::OK, json!([id])));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE state = 'failed'")
            .await,
        1
    );
    let (status, replayed) = post(
        &app,
        "/api/v1/admin/deliveries/replay",
        json!({"ids": [id, id + 1000]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed["count"], 1, "only the failed one: {replayed}");
    let got = sub.wait_deliveries("down", 5).await;
    assert_eq!(got[4].body, b"dead letter");
    app.wait_delivery_states_settled().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
            .await,
        2
    );

    // Topics: the list, one by id, and a JSON 404.
    let topics = get(&app, "/api/v1/admin/topics").await.1;
    assert_eq!(topics["items"][0]["url"], topic.as_str());
    assert_eq!(topics["items"][0]["active_subscriptions"], 2);
    let topic_id = topics["items"][0]["id"].as_i64().expect("id");
    let (status, one) = get(&app, &format!("/api/v1/admin/topics/{topic_id}")).await;
    assert_eq!(
        (status, one["url"].as_str()),
        (StatusCode::OK, Some(topic.as_str()))
    );
    let by_url = get(
        &app,
        &format!("/api/v1/admin/topics?topic={}", urlencoding(&topic)),
    )
    .await
    .1;
    assert_eq!(by_url["items"].as_array().map(Vec::len), Some(1));
    // The name of before still works.
    let by_old_name = get(
        &app,
        &format!("/api/v1/admin/topics?url={}", urlencoding(&topic)),
    )
    .await
    .1;
    assert_eq!(by_old_name, by_url);
    let (status, _) = get(&app, "/api/v1/admin/topics/424242").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, hosts) = get(&app, "/api/v1/admin/hosts?all=true").await;
    assert_eq!(status, StatusCode::OK);
    assert!(hosts["items"].is_array() && hosts["next_cursor"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served_and_kept_in_docs() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("http://127.0.0.1:{}/api/v1/openapi.json", app.port))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.expect("json");
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    for path in [
        "/api/v1/publish",
        "/api/v1/distributions/{id}",
        "/api/v1/admin/status",
        "/api/v1/admin/subscriptions",
        "/api/v1/admin/subscriptions/expire",
        "/api/v1/admin/deliveries/replay",
    ] {
        assert!(served["paths"][path].is_object(), "{path} is described");
    }
    let schemes = &served["components"]["securitySchemes"];
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(schemes["producer_token"]["scheme"], "bearer");
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json"),
    )
    .expect("valid JSON");
    assert_eq!(
        served, kept,
        "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
    );
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_wildcard_selector_selects_nothing_and_everything_needs_all() {
    let app = admin_app().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    let (topic, other) = (publisher.url("t"), publisher.url("other"));
    app.subscribed(&topic, &sub.callback("a"), &[]).await;
    app.subscribed(&topic, &sub.callback("b"), &[]).await;
    app.subscribed(&other, &sub.callback("c"), &[]).await;
    let expire = "/api/v1/admin/subscriptions/expire";

    // An empty text selects nothing: it is refused, as naming nothing is.
    for empty in [json!({"callback": ""}), json!({"topic": ""}), json!({})] {
        let (status, body) = post(&app, expire, empty.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{empty} → {body}");
        assert_eq!(body["error"], "bad_request");
    }
    // LIKE's wildcards are matched as the characters they are.
    for wildcard in ["%", "_", "%%", "\\"] {
        let (status, body) =
            post(&app, expire, json!({"callback": wildcard, "dry_run": true})).await;
        assert_eq!(
            (status, body["count"].as_i64()),
            (StatusCode::OK, Some(0)),
            "{wildcard} → {body}"
        );
        let (status, listed) = get(
            &app,
            &format!(
                "/api/v1/admin/subscriptions?callback={}",
                urlencoding(wildcard)
            ),
        )
        .await;
        assert_eq!(
            (status, listed["items"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(0))
        );
    }
    // A filter that happens to choose every active subscription is refused without `all`.
    let (status, body) = post(
        &app,
        expire,
        json!({"callback": "127.0.0.1", "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"all\": true")),
        "{body}"
    );
    // Everything, said so.
    let (status, body) = post(&app, expire, json!({"all": true, "dry_run": true})).await;
    assert_eq!(
        (status, body["count"].as_i64()),
        (StatusCode::OK, Some(3)),
        "{body}"
    );
    let (status, body) = post(&app, expire, json!({"all": true})).await;
    assert_eq!(
        (status, body["count"].as_i64()),
        (StatusCode::OK, Some(3)),
        "{body}"
    );
    assert_eq!(
        app.subscription_state(&other, &sub.callback("c"))
            .await
            .as_deref(),
        Some("expired")
    );
}

/// Lists come newest first, a page at a time: `next_cursor` leads to the older rows, and the
/// last page says there is no more.
#[tokio::test(flavor = "multi_thread")]
async fn lists_are_newest_first_in_pages_followed_by_their_cursor() {
    let app = TestApp::spawn_with(&[("HERALD_ADMIN_TOKEN", ADMIN)]).await;
    let sub = Subscriber::spawn();
    for name in ["p1", "p2", "p3"] {
        app.subscribed("http://127.0.0.1:9/paged", &sub.callback(name), &[])
            .await;
    }
    let (status, first) = get(&app, "/api/v1/admin/subscriptions?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let ids = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
            .unwrap_or_default()
    };
    let newest = ids(&first);
    assert_eq!(newest.len(), 2);
    assert!(newest[0] > newest[1], "newest first: {newest:?}");
    assert_eq!(first["items"][0]["callback"], sub.callback("p3").as_str());
    let cursor = first["next_cursor"].as_str().expect("a cursor to more");
    let (_, second) = get(
        &app,
        &format!("/api/v1/admin/subscriptions?limit=2&cursor={cursor}"),
    )
    .await;
    let older = ids(&second);
    assert_eq!(older.len(), 1);
    assert!(older[0] < newest[1]);
    assert_eq!(second["next_cursor"], Value::Null, "the last page");
    let (status, refused) = get(&app, "/api/v1/admin/subscriptions?cursor=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "bad_request");
}

/// What polling costs each topic host: its topics, the polled ones and the polls an hour their
/// intervals add up to, the failing and parked ones, the next due poll — most polls first —
/// in the admin API and `herald topics hosts`.
#[tokio::test(flavor = "multi_thread")]
async fn topic_hosts_show_what_polling_costs_each_host() {
    let app =
        TestApp::spawn_with(&[("HERALD_ADMIN_TOKEN", ADMIN), ("HERALD_POLLING", "off")]).await;
    // Topics as the schedule leaves them (the poller is off: nothing moves them).
    app.exec(
        "INSERT INTO topics (url, created_at, poll_interval_ms, poll_reason, poll_next_at, failing_since) VALUES
         ('http://a.example/one', 1, 600000, 'quiet', 2000000000000, NULL),
         ('http://a.example/two', 1, 3600000, 'publisher pings', 1900000000000, 1),
         ('http://b.example:8080/x', 1, 86400000, 'failing too long', 1800000000000, 1),
         ('http://b.example:8080/y', 1, 3600000, 'no subscriber', 1700000000000, NULL),
         ('https://c.example/z', 1, 1800000, 'entry rate', 2100000000000, NULL)",
    )
    .await;
    let (status, page) = get(&app, "/api/v1/admin/topic-hosts").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let hosts = page["items"].as_array().expect("items");
    let names: Vec<&str> = hosts.iter().filter_map(|h| h["host"].as_str()).collect();
    assert_eq!(names, ["a.example:80", "c.example:443", "b.example:8080"]);
    assert_eq!(
        hosts[0],
        json!({"host": "a.example:80", "topics": 2, "polled": 2, "polls_per_hour": 7.0,
               "failing": 1, "parked": 0, "next_poll_at": "2030-03-17T17:46:40.000Z"})
    );
    assert_eq!(hosts[1]["polls_per_hour"], 2.0);
    assert_eq!(
        hosts[2],
        json!({"host": "b.example:8080", "topics": 2, "polled": 0, "polls_per_hour": 0.0,
               "failing": 1, "parked": 1, "next_poll_at": null})
    );
    let (status, page) = get(&app, "/api/v1/admin/topic-hosts?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let (status, bad) = get(&app, "/api/v1/admin/topic-hosts?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["topics", "hosts"])
        .env("HERALD_DATABASE_URL", &app.database_url)
        .output()
        .await
        .expect("herald runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.lines().any(|l| l.contains("POLLS/HOUR")), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("a.example:80") && l.contains("7.0")),
        "{table}"
    );
}
