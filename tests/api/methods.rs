//! Methods a URL does not take are answered 405 with `Allow` (RFC 9110 §15.5.6), plain text on
//! the hub's pages and JSON on the APIs; paths that do not exist stay 404.

use reqwest::{Method, StatusCode};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_methods_answer_405_with_allow() {
    let app = TestApp::spawn_with(&[
        ("HERALD_PRODUCER_TOKEN", "producer-tok"),
        ("HERALD_ADMIN_TOKEN", "admin-tok"),
    ])
    .await;
    let trace = Method::from_bytes(b"TRACE").expect("a method");
    for (path, allow, json) in [
        ("/hub", "GET, POST", false),
        ("/", "GET, POST", false),
        ("/subscription-details", "GET, POST", false),
        ("/topic-details", "GET", false),
        ("/health", "GET", false),
        ("/metrics", "GET", false),
        ("/live/events", "GET", false),
        ("/api/v1/openapi.json", "GET", true),
        ("/api/v1/publish", "POST", true),
        ("/api/v1/topics", "GET", true),
        ("/api/v1/distributions/7", "GET", true),
        ("/api/v1/live/tokens", "POST, DELETE", true),
        ("/api/v1/live/tokens/7", "DELETE", true),
        ("/api/v1/admin/status", "GET", true),
        ("/api/v1/admin/subscriptions/7", "GET, DELETE", true),
        ("/api/v1/admin/subscriptions/expire", "POST", true),
        ("/api/v1/admin/deliveries/replay", "POST", true),
    ] {
        // The APIs check their token first (a stranger learns nothing of an endpoint); with it,
        // the method.
        let token = if path.starts_with("/api/v1/admin/") {
            "admin-tok"
        } else {
            "producer-tok"
        };
        for method in [trace.clone(), Method::PUT, Method::PATCH] {
            let response = app
                .client
                .request(
                    method.clone(),
                    format!("http://127.0.0.1:{}{path}", app.port),
                )
                .bearer_auth(token)
                .send()
                .await
                .expect("answer");
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                response
                    .headers()
                    .get("allow")
                    .and_then(|v| v.to_str().ok()),
                Some(allow),
                "{method} {path}"
            );
            let body = response.text().await.unwrap_or_default();
            if json {
                let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                assert_eq!(body["error"], "method_not_allowed", "{path}");
            } else {
                assert!(body.contains(allow), "{path}: {body}");
            }
        }
    }
    for missing in ["/nowhere", "/api/v1/nowhere", "/api/v1/admin/nowhere"] {
        let response = app
            .client
            .request(
                trace.clone(),
                format!("http://127.0.0.1:{}{missing}", app.port),
            )
            .bearer_auth(if missing.starts_with("/api/v1/admin/") {
                "admin-tok"
            } else {
                "producer-tok"
            })
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}
