//! The pages in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, which `scripts/test.sh` installs when missing). Screenshots go to
//! `target/screenshots/`.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp, eventually, live, loopback_listener};

/// A chromedriver on a free port, and a browser session through it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempdir::Profile,
}

mod tempdir {
    /// A fresh Chromium profile directory, removed afterwards.
    pub struct Profile(pub std::path::PathBuf);

    impl Profile {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "herald_test_chrome_{}",
                herald::domain::challenge::random_hex(6)
            ));
            std::fs::create_dir_all(&path).expect("profile directory");
            Self(path)
        }
    }

    impl Drop for Profile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    async fn start() -> Self {
        let (_, port) = loopback_listener();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) runs; scripts/test.sh installs it");
        let profile = tempdir::Profile::new();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=430,1000",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to take a session", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The text of the first element matching `css`, once there is one (looked up again if
    /// the page changed under it).
    async fn text_of(&self, css: &str) -> String {
        eventually(&format!("an element {css:?}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
        .await
    }

    /// Waits for the browser to be on `path` (after a form was submitted), with `marker` shown.
    async fn arrived(&self, path: &str, marker: &str) {
        eventually(&format!("the browser to reach {path}"), || async {
            let url = self.client.current_url().await.ok()?;
            (url.path() == path).then_some(())
        })
        .await;
        eventually(&format!("{marker:?} on {path}"), || async {
            let body = self.client.find(Locator::Css("body")).await.ok()?;
            body.text().await.ok()?.contains(marker).then_some(())
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_finds_out_why_a_subscription_gets_nothing() {
    let app = TestApp::spawn_with(&[("HERALD_RETRY_SCHEDULE", "1h")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("b", Some("text/plain"), "news");
    let topic = publisher.url("b");
    let cb = sub.callback("failing");
    app.subscribed(&topic, &cb, &[("hub.secret", "the-secret")])
        .await;
    sub.on_deliver("failing", [Answer::Status(500)]);
    app.publish(&topic).await;
    eventually("the failure to be recorded", || async {
        (app.count("SELECT COUNT(*) FROM deliveries WHERE last_status = 500")
            .await
            == 1)
            .then_some(())
    })
    .await;

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("http://127.0.0.1:{}/", app.port))
        .await
        .expect("landing page");
    assert!(browser.text_of("h1").await.contains("WebSub hub"));
    assert!(browser.text_of("body").await.contains(&app.hub_url()));
    browser.screenshot("landing").await;

    // The form leads to the subscription's page; without the secret it shows only the state.
    let form = c
        .form(Locator::Css("form[action='/subscription-details']"))
        .await
        .expect("the subscription form");
    form.set_by_name("hub.topic", &topic).await.expect("topic");
    form.set_by_name("hub.callback", &cb)
        .await
        .expect("callback");
    form.submit().await.expect("submitted");
    browser.arrived("/subscription-details", "State").await;
    let page = browser.text_of("body").await;
    assert!(page.contains("State: active"), "{page}");
    assert!(!page.contains("answered 500"), "{page}");
    // With the secret, the reason.
    let form = c.form(Locator::Css("form")).await.expect("the secret form");
    form.set_by_name("hub.secret", "the-secret")
        .await
        .expect("secret");
    form.submit().await.expect("submitted");
    browser
        .arrived("/subscription-details", "Recent deliveries")
        .await;
    let page = browser.text_of("body").await;
    assert!(page.contains("callback answered 500"), "{page}");
    browser.screenshot("subscription-details").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_topic_url_is_shown_as_text() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let hostile = "http://127.0.0.1:9/t?x=<script>document.title='owned'</script>";
    app.subscribed(hostile, &sub.callback("h"), &[]).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("http://127.0.0.1:{}/", app.port))
        .await
        .expect("landing page");
    let form = c
        .form(Locator::Css("form[action='/topic-details']"))
        .await
        .expect("the topic form");
    form.set_by_name("hub.url", hostile).await.expect("url");
    form.submit().await.expect("submitted");
    browser.arrived("/topic-details", "Subscribers").await;
    assert_eq!(
        browser.text_of("td code").await,
        hostile,
        "shown as written"
    );
    assert_ne!(c.title().await.expect("title"), "owned", "and not run");
    tokio::time::timeout(Duration::from_secs(5), browser.screenshot("topic-details"))
        .await
        .expect("screenshot in time");
    browser.close().await;
}

/// The live demo page: a person pastes a token, sees what waited, then each publish live; after
/// leaving and coming back, the page shows only what they missed.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_follows_a_topic_live_on_the_demo_page_and_sees_what_they_missed() {
    let app = TestApp::spawn_with(&[("HERALD_PRODUCER_TOKEN", live::PRODUCER_TOKEN)]).await;
    let topic = "http://127.0.0.1:9/live/chat";
    let token = live::token(&app, "alice", &[topic]).await;
    live::push(&app, topic, "text/plain", "Hello from before").await;

    let browser = Browser::start().await;
    let c = &browser.client;
    let demo = format!("http://127.0.0.1:{}/live/demo", app.port);
    c.goto(&demo).await.expect("demo page");
    let form = c.form(Locator::Css("form#connect")).await.expect("form");
    form.set_by_name("token", &token).await.expect("token");
    // Clicked, so the page's script handles it (a direct submit would bypass it).
    c.find(Locator::Css("form#connect button[type=submit]"))
        .await
        .expect("the follow button")
        .click()
        .await
        .expect("clicked");
    let updates = || async {
        let items = c.find_all(Locator::Css("li.update")).await.ok()?;
        let mut texts = Vec::new();
        for item in items {
            texts.push(item.text().await.ok()?);
        }
        Some(texts)
    };
    let shown = eventually("the waiting update on the page", || async {
        updates().await.filter(|t| t.len() == 1)
    })
    .await;
    assert!(shown[0].contains("Hello from before"), "{shown:?}");
    assert!(shown[0].contains("while you were away"), "{shown:?}");
    assert!(browser.text_of("#status").await.contains("as alice"));

    live::push(&app, topic, "text/plain", "A message, live").await;
    let shown = eventually("the live update on the page", || async {
        updates().await.filter(|t| t.len() == 2)
    })
    .await;
    assert!(
        shown[1].contains("A message, live") && shown[1].contains("· live"),
        "{shown:?}"
    );
    browser.screenshot("live-demo").await;

    // Away: the page is closed while another message is published.
    c.goto("about:blank").await.expect("away");
    live::push(&app, topic, "text/plain", "Sent while you were away").await;
    c.goto(&demo).await.expect("back");
    let shown = eventually("the missed update after coming back", || async {
        updates().await.filter(|t| t.len() == 1)
    })
    .await;
    assert!(shown[0].contains("Sent while you were away"), "{shown:?}");
    assert!(shown[0].contains("while you were away"), "{shown:?}");
    // What the page had shown before was consumed by its resume.
    eventually("the shown updates to be consumed", || async {
        (app.count("SELECT COUNT(*) FROM live_events").await == 1).then_some(())
    })
    .await;
    browser.close().await;
}
