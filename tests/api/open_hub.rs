//! Defences of an open hub: one callback host cannot hold every delivery slot, synchronous
//! verifications are bounded, slow clients are cut off, a failing topic does not gain a fetch
//! job per ping.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Answer, Publisher, Subscriber, TestApp, app::Backend, eventually, eventually_within,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_callback_host_gets_its_share_and_the_others_go_on() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_PER_HOST", "2")]).await;
    let slow = Subscriber::spawn();
    let fast = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("shared", Some("text/plain"), "news");
    let topic = publisher.url("shared");
    for i in 0..8 {
        let name = format!("s{i}");
        app.subscribed(&topic, &slow.callback(&name), &[]).await;
        slow.on_deliver(&name, [Answer::Gated]);
    }
    app.subscribed(&topic, &fast.callback("f"), &[]).await;
    app.publish(&topic).await;
    // The other host is served while the slow one holds its two slots.
    fast.wait_deliveries("f", 1).await;
    let in_flight = || {
        (0..8)
            .map(|i| slow.deliveries(&format!("s{i}")).len())
            .sum::<usize>()
    };
    eventually("the slow host to hold its share", || async {
        (in_flight() == 2).then_some(())
    })
    .await;
    // The rest waited without using up attempts; once the host answers, all arrive.
    slow.open_gate_for_good();
    eventually_within(Duration::from_secs(30), "every slow delivery", || async {
        (in_flight() == 8).then_some(())
    })
    .await;
    app.wait_delivered(9).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE attempts <> 1")
            .await,
        0,
        "each delivery was attempted once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn synchronous_verifications_beyond_the_limit_are_told_to_retry() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_SYNC_VERIFICATIONS", "1")]).await;
    let sub = Subscriber::spawn();
    sub.on_verify("held", [Answer::Gated]);
    let sync_subscribe = |name: &str| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("hub.mode", "subscribe"),
                ("hub.topic", "http://127.0.0.1:9/sync-limit"),
                ("hub.callback", sub.callback(name).as_str()),
                ("hub.verify", "sync"),
            ])
            .finish();
        app.client
            .post(app.hub_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let first = tokio::spawn(sync_subscribe("held"));
    sub.wait_verifications("held", 1).await;
    let refused = sync_subscribe("other").await.expect("answer");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert!(refused.text().await.unwrap_or_default().contains("retry"));
    assert!(sub.verifications("other").is_empty());
    sub.open_gate();
    let first = first.await.expect("task").expect("answer");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_trickle_their_bodies_are_cut_off_and_others_are_served() {
    let app = TestApp::spawn_with(&[("HERALD_CLIENT_TIMEOUT", "1s")]).await;
    // Hundreds of clients send headers and a few bytes of the body they announced, then stall.
    let mut slow = Vec::new();
    for _ in 0..400 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /hub HTTP/1.1\r\nHost: hub\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nhub.mode=",
            )
            .await
            .expect("write");
        slow.push(stream);
    }
    // Meanwhile, an ordinary request is answered.
    let (status, _) = app
        .post_form(&[("hub.mode", "publish"), ("hub.url", "http://127.0.0.1:9/x")])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Every stalled client gets 408 once its time is up.
    for mut stream in slow {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .expect("the hub answers within its timeout")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_to_a_failing_topic_do_not_stack_fetch_jobs() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("down", Some("text/plain"), "up");
    let topic = publisher.url("down");
    app.subscribed(&topic, &sub.callback("d"), &[]).await;
    publisher.set_status("down", 500);
    app.publish(&topic).await;
    app.wait_fetch_error(&topic).await;
    let waiting = || async {
        match Backend::from_env() {
            Backend::Sqlite => {
                app.count("SELECT COUNT(*) FROM Jobs WHERE job_type = 'hubdistrib' AND status = 'Pending'")
                    .await
            }
            Backend::Postgres => {
                app.count("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'hubdistrib' AND status = 'Pending'")
                    .await
            }
        }
    };
    // The retry of the failed fetch is scheduled…
    let scheduled = eventually("the retry to be scheduled", || async {
        let n = waiting().await;
        (n >= 1).then_some(n)
    })
    .await;
    for _ in 0..10 {
        assert_eq!(app.publish(&topic).await, StatusCode::NO_CONTENT);
    }
    // …and covers the pings: none of them added a fetch job of its own.
    assert_eq!(waiting().await, scheduled);
}

/// A POST to the hub URL as if from `client` behind the (trusted) local proxy.
async fn post_as(app: &TestApp, client: Option<&str>, pairs: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut request = app
        .client
        .post(app.hub_url())
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(client) = client {
        request = request.header("x-forwarded-for", format!("198.51.100.1, {client}"));
    }
    request.body(body).send().await.expect("answer")
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_over_their_rate_get_429_and_others_do_not() {
    let app = TestApp::spawn_with(&[
        ("HERALD_RATE_LIMIT", "1/h,3"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
        ("HERALD_PRODUCER_TOKEN", "tok"),
    ])
    .await;
    let ping = [
        ("hub.mode", "publish"),
        ("hub.url", "http://127.0.0.1:9/rate"),
    ];
    for _ in 0..3 {
        let r = post_as(&app, Some("203.0.113.5"), &ping).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let limited = post_as(&app, Some("203.0.113.5"), &ping).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry > 60, "{retry}");
    assert!(
        limited
            .text()
            .await
            .unwrap_or_default()
            .contains("too many requests"),
        "a plain-text reason"
    );
    // Another client has its own bucket; the proxy itself (loopback) is never limited.
    let other = post_as(&app, Some("203.0.113.6"), &ping).await;
    assert_eq!(other.status(), StatusCode::NO_CONTENT);
    for _ in 0..5 {
        assert_eq!(
            post_as(&app, None, &ping).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    // The APIs answer in JSON.
    let api = app
        .client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/topics?topic=http://127.0.0.1:9/rate",
            app.port
        ))
        .bearer_auth("tok")
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .expect("answer");
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
    let json: serde_json::Value = api.json().await.expect("JSON");
    assert_eq!(json["error"], "rate_limited");
    // /health is never limited.
    let health = app
        .client
        .get(format!("http://127.0.0.1:{}/health", app.port))
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_requests_per_callback_host_are_limited() {
    let app = TestApp::spawn_with(&[
        ("HERALD_SUBSCRIBE_RATE_LIMIT", "1/h,2"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let app = &app;
    let subscribe = |n: usize| {
        let cb = sub.callback(&format!("h{n}"));
        async move {
            post_as(
                app,
                Some("203.0.113.7"),
                &[
                    ("hub.mode", "subscribe"),
                    ("hub.topic", "http://127.0.0.1:9/per-host"),
                    ("hub.callback", cb.as_str()),
                ],
            )
            .await
            .status()
        }
    };
    assert_eq!(subscribe(1).await, StatusCode::ACCEPTED);
    assert_eq!(subscribe(2).await, StatusCode::ACCEPTED);
    assert_eq!(subscribe(3).await, StatusCode::TOO_MANY_REQUESTS);
    // From a trusted client (here: the local proxy itself) the host is not limited.
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", "http://127.0.0.1:9/per-host"),
            ("hub.callback", &sub.callback("h4")),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// Behind a trusted proxy, `X-Forwarded-For` is walked from the right and stops at an entry
/// that is no address: a client cannot slip a loopback entry past one and be exempt. IPv6
/// clients are limited per /64, so rotating addresses within one network does not escape.
#[tokio::test(flavor = "multi_thread")]
async fn spoofed_forwarded_entries_and_rotating_ipv6_addresses_stay_limited() {
    let app = TestApp::spawn_with(&[
        ("HERALD_RATE_LIMIT", "1/h,2"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let ping = [
        ("hub.mode", "publish"),
        ("hub.url", "http://127.0.0.1:9/spoof"),
    ];
    let statuses = |clients: &'static [&'static str]| {
        let app = &app;
        async move {
            let mut out = Vec::new();
            for client in clients {
                out.push(post_as(app, Some(client), &ping).await.status().as_u16());
            }
            out
        }
    };
    assert_eq!(
        statuses(&["127.0.0.2, not-an-address"; 3]).await,
        [204, 204, 429],
        "a spoofed loopback left of a bad entry"
    );
    assert_eq!(
        statuses(&["2001:db8:7:1::1", "2001:db8:7:1::2", "2001:db8:7:1:ffff::3"]).await,
        [204, 204, 429],
        "one /64"
    );
    assert_eq!(statuses(&["2001:db8:7:2::1"]).await, [204], "another /64");
}

/// The per-host allowance is kept per client: strangers sending subscription requests for a
/// victim's callback host use up their own allowances, not the victim's; a host-wide cap still
/// bounds what many addresses together can make the hub send one host.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_use_up_a_callback_hosts_allowance() {
    let app = TestApp::spawn_with(&[
        ("HERALD_SUBSCRIBE_RATE_LIMIT", "1/h,2"),
        ("HERALD_SUBSCRIBE_HOST_RATE_LIMIT", "1/h,6"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let sub = Subscriber::spawn();
    let app = &app;
    let subscribe = |client: &'static str, n: usize| {
        let cb = sub.callback(&format!("{client}-{n}"));
        async move {
            post_as(
                app,
                Some(client),
                &[
                    ("hub.mode", "subscribe"),
                    ("hub.topic", "http://127.0.0.1:9/victim"),
                    ("hub.callback", cb.as_str()),
                ],
            )
            .await
            .status()
        }
    };
    for stranger in ["203.0.113.7", "203.0.113.8"] {
        assert_eq!(subscribe(stranger, 1).await, StatusCode::ACCEPTED);
        assert_eq!(subscribe(stranger, 2).await, StatusCode::ACCEPTED);
        assert_eq!(subscribe(stranger, 3).await, StatusCode::TOO_MANY_REQUESTS);
    }
    // The host's own subscriber, from its own address, is not locked out.
    assert_eq!(subscribe("198.51.100.20", 1).await, StatusCode::ACCEPTED);
    // Six from every address together: the host-wide cap.
    assert_eq!(subscribe("203.0.113.9", 1).await, StatusCode::ACCEPTED);
    assert_eq!(
        subscribe("203.0.113.9", 2).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_topics_of_one_host_take_only_their_share_of_fetches() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_FETCHES_PER_HOST", "1")]).await;
    let sub = Subscriber::spawn();
    let slow_host = Publisher::spawn();
    let other_host = Publisher::spawn();
    for name in ["slow1", "slow2"] {
        slow_host.set(name, Some("text/plain"), name);
        app.subscribed(&slow_host.url(name), &sub.callback(name), &[])
            .await;
        slow_host.set_gated(name);
    }
    other_host.set("quick", Some("text/plain"), "quick");
    app.subscribed(&other_host.url("quick"), &sub.callback("quick"), &[])
        .await;
    // One ping names all three.
    let (status, _) = app
        .post_form(&[
            ("hub.mode", "publish"),
            ("hub.url", &slow_host.url("slow1")),
            ("hub.url", &slow_host.url("slow2")),
            ("hub.url", &other_host.url("quick")),
        ])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The other host's topic is fetched and delivered while the slow host holds its one slot.
    sub.wait_deliveries("quick", 1).await;
    let slow_fetches = || slow_host.fetches("slow1") + slow_host.fetches("slow2");
    eventually("a fetch from the slow host", || async {
        (slow_fetches() >= 1).then_some(())
    })
    .await;
    // By now, without the cap, both slow fetches would have started long ago.
    assert_eq!(slow_fetches(), 1, "the slow host holds its one fetch slot");
    slow_host.open_gate();
    sub.wait_deliveries("slow1", 1).await;
    sub.wait_deliveries("slow2", 1).await;
}

/// Verifications beyond a callback host's slots rest, held by nobody, and are verified once the
/// host has room again; none is asked twice.
#[tokio::test(flavor = "multi_thread")]
async fn verifications_beyond_a_callback_hosts_slots_rest_and_follow() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_PER_HOST", "2")]).await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/host-slots";
    let names: Vec<String> = (0..5).map(|i| format!("v{i}")).collect();
    for name in &names {
        sub.on_verify(name, [Answer::Gated]);
    }
    for name in &names {
        let status = app.subscribe(topic, &sub.callback(name), &[]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    eventually("two verifications in flight, three resting", || async {
        let asked: usize = names.iter().map(|n| sub.verifications(n).len()).sum();
        let resting = app
            .count(
                "SELECT COUNT(*) FROM subscription_requests
                 WHERE state = 'pending' AND claimed_by IS NULL AND claimed_until IS NOT NULL",
            )
            .await;
        (asked == 2 && resting == 3).then_some(())
    })
    .await;
    sub.open_gate_for_good();
    for name in &names {
        assert_eq!(
            app.settled_requests(&sub.callback(name)).await,
            ["verified"],
            "{name}: {:?}",
            app.texts(
                "SELECT COALESCE(reason, '') FROM subscription_requests",
                &[]
            )
            .await
        );
        assert_eq!(sub.verifications(name).len(), 1, "{name}");
    }
}

/// Sends a request's headers and the first bytes of the body it announces, then stalls;
/// returns the status line the hub answers with, whenever it does.
async fn stalled_request(app: &TestApp, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    stream
        .write_all(format!("{head}Content-Length: 100\r\n\r\n{{\"a").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    let read_status = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.expect("read");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_status)
        .await
        .expect("the hub answers within its timeout");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Every body has the client timeout to arrive, on the APIs and the pages as on the hub URL;
/// a request to an API without a valid token is refused before its body is read.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_times_bodies_and_apis_check_tokens_before_reading_them() {
    let app = TestApp::spawn_with(&[
        ("HERALD_CLIENT_TIMEOUT", "1s"),
        ("HERALD_PRODUCER_TOKEN", "producer-tok"),
        ("HERALD_ADMIN_TOKEN", "admin-tok"),
    ])
    .await;
    let json = "Content-Type: application/json\r\n";
    for (head, expected) in [
        (format!("POST /api/v1/live/tokens HTTP/1.1\r\nHost: hub\r\n{json}Authorization: Bearer producer-tok\r\n"), "408"),
        ("POST /api/v1/publish?topic=http://127.0.0.1:9/t HTTP/1.1\r\nHost: hub\r\nContent-Type: text/plain\r\nAuthorization: Bearer producer-tok\r\n".to_owned(), "408"),
        (format!("POST /api/v1/admin/subscriptions/expire HTTP/1.1\r\nHost: hub\r\n{json}Authorization: Bearer admin-tok\r\n"), "408"),
        ("POST /subscription-details HTTP/1.1\r\nHost: hub\r\nContent-Type: application/x-www-form-urlencoded\r\n".to_owned(), "408"),
        // No token, or another API's: refused at once, the body never waited for.
        (format!("POST /api/v1/live/tokens HTTP/1.1\r\nHost: hub\r\n{json}"), "401"),
        (format!("POST /api/v1/admin/subscriptions/expire HTTP/1.1\r\nHost: hub\r\n{json}Authorization: Bearer producer-tok\r\n"), "403"),
    ] {
        let status = stalled_request(&app, &head).await;
        assert!(
            status.starts_with(&format!("HTTP/1.1 {expected}")),
            "{head:?} → {status}"
        );
    }
}

/// Live connections count against the per-client rate limit like any other request: a client
/// cannot open (or retry) them without bound.
#[tokio::test(flavor = "multi_thread")]
async fn live_connection_attempts_count_against_the_client_rate_limit() {
    let app = TestApp::spawn_with(&[
        ("HERALD_RATE_LIMIT", "1/h,2"),
        ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app
            .client
            .get(format!(
                "http://127.0.0.1:{}/live/events?topic=http://127.0.0.1:9/t",
                app.port
            ))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.77")
            .send()
            .await
            .expect("answer");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
}

/// `loopback:PORTS` opens loopback on the ports named and on no other: a callback on another
/// local port, by address or by name, and a topic that redirects there, are refused without
/// that port being contacted; the ports named work.
#[tokio::test(flavor = "multi_thread")]
async fn loopback_is_open_only_on_the_ports_named() {
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    // A local service on a port the policy does not name.
    let other = Subscriber::spawn();
    let port = |u: &str| url::Url::parse(u).expect("url").port().expect("port");
    let policy = format!(
        "loopback:{},{}",
        port(&sub.callback("x")),
        port(&publisher.url("x"))
    );
    let app = TestApp::spawn_with(&[("HERALD_ALLOW_PRIVATE_ADDRESSES", &policy)]).await;
    publisher.set("feed", Some("text/plain"), "hello");
    let topic = publisher.url("feed");
    let named = sub.callback("named");
    assert_eq!(
        app.subscribe(&topic, &named, &[]).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.settled_request(&topic, &named).await, "verified");

    // An address is judged at once; a name when it is resolved, before connecting.
    let (status, text) = app
        .post_form(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &other.callback("address")),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("loopback ports"), "{text}");
    let by_name = other.callback("name").replace("127.0.0.1", "localhost");
    assert_eq!(
        app.subscribe(&topic, &by_name, &[]).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.settled_request(&topic, &by_name).await, "failed");
    let reason = app
        .scalar_text(
            "SELECT reason FROM subscription_requests WHERE callback = $1",
            &[&by_name],
        )
        .await
        .unwrap_or_default();
    assert!(reason.contains("not one this hub may contact"), "{reason}");

    let moved = publisher.url("moved");
    publisher.set_redirect(
        "moved",
        &other.callback("feed").replace("127.0.0.1", "localhost"),
    );
    let cb = sub.callback("moved");
    assert_eq!(app.subscribe(&moved, &cb, &[]).await, StatusCode::ACCEPTED);
    assert_eq!(app.settled_request(&moved, &cb).await, "verified");
    assert_eq!(app.publish(&moved).await, StatusCode::NO_CONTENT);
    let error = app.wait_fetch_error(&moved).await;
    assert!(error.contains("not allowed"), "{error}");
    assert_eq!(publisher.fetches("moved"), 1);
    for name in ["address", "name", "feed"] {
        assert!(other.requests(name).is_empty(), "{name} was contacted");
    }
}
