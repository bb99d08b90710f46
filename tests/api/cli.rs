//! The admin CLI, run as a real process against the hub's database while the hub runs.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Answer, Publisher, Subscriber, TestApp};

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

async fn herald(app: &TestApp, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_DATABASE_URL", &app.database_url)
        .env("HERALD_ALLOW_PRIVATE_ADDRESSES", "true")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("herald runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn state(app: &TestApp, cb: &str) -> String {
    app.scalar_text("SELECT state FROM subscriptions WHERE callback = $1", &[cb])
        .await
        .expect("a subscription")
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_can_be_listed_filtered_and_shown() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let (a, b) = (sub.callback("a"), sub.callback("b"));
    app.subscribed("http://127.0.0.1:9/one", &a, &[("hub.secret", "s")])
        .await;
    app.subscribed(
        "http://127.0.0.1:9/two",
        &b,
        &[("hub.lease_seconds", "100")],
    )
    .await;

    let out = herald(&app, &["subscriptions", "list"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(out.stdout.contains(&a) && out.stdout.contains(&b));

    let all = herald(&app, &["subscriptions", "list", "--json"])
        .await
        .json();
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let only = herald(
        &app,
        &[
            "subscriptions",
            "list",
            "--topic",
            "http://127.0.0.1:9/one",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(only[0]["callback"], a.as_str());
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    let soon = herald(
        &app,
        &["subscriptions", "list", "--expiring-within", "1h", "--json"],
    )
    .await
    .json();
    assert_eq!(soon.as_array().map(Vec::len), Some(1));
    assert_eq!(soon[0]["callback"], b.as_str());
    let none = herald(
        &app,
        &["subscriptions", "list", "--state", "expired", "--json"],
    )
    .await
    .json();
    assert_eq!(none.as_array().map(Vec::len), Some(0));

    let id = only[0]["id"].as_i64().expect("an id").to_string();
    let shown = herald(&app, &["subscriptions", "show", &id, "--json"])
        .await
        .json();
    assert_eq!(shown["subscription"]["has_secret"], true);
    assert!(
        !shown.to_string().contains("\"s\""),
        "the secret itself is never shown"
    );
    let text = herald(&app, &["subscriptions", "show", &id]).await;
    assert!(
        text.stdout.contains("secret          yes"),
        "{}",
        text.stdout
    );
    let missing = herald(&app, &["subscriptions", "show", "999"]).await;
    assert!(!missing.ok && missing.stderr.contains("no subscription 999"));
}

#[tokio::test(flavor = "multi_thread")]
async fn expire_respects_dry_run_confirmation_and_notifies() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let (a, b) = (sub.callback("a"), sub.callback("b"));
    app.subscribed("http://127.0.0.1:9/t", &a, &[]).await;
    app.subscribed("http://127.0.0.1:9/t", &b, &[]).await;
    app.subscribed("http://127.0.0.1:9/u", &sub.callback("c"), &[])
        .await;

    // Filters that choose every active subscription need --all; empty text is refused.
    let everything = herald(
        &app,
        &[
            "subscriptions",
            "expire",
            "--callback",
            "127.0.0.1",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        !everything.ok && everything.stderr.contains("--all"),
        "{}",
        everything.stderr
    );
    let empty = herald(
        &app,
        &["subscriptions", "expire", "--callback", "", "--dry-run"],
    )
    .await;
    assert!(
        !empty.ok && empty.stderr.contains("empty"),
        "{}",
        empty.stderr
    );
    let all = herald(
        &app,
        &["subscriptions", "expire", "--all", "--dry-run", "--json"],
    )
    .await;
    assert!(all.ok, "{}", all.stderr);
    assert_eq!(all.json()["count"], 3);

    let dry = herald(
        &app,
        &[
            "subscriptions",
            "expire",
            "--topic",
            "http://127.0.0.1:9/t",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    assert!(dry.ok, "{}", dry.stderr);
    assert_eq!(dry.json()["count"], 2);
    assert_eq!(state(&app, &a).await, "active", "--dry-run changes nothing");

    let refused = herald(&app, &["subscriptions", "expire", "--callback", "/cb/a"]).await;
    assert!(
        !refused.ok && refused.stderr.contains("--yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(state(&app, &a).await, "active");
    assert!(
        !herald(&app, &["subscriptions", "expire"]).await.ok,
        "a selector is required"
    );

    let done = herald(
        &app,
        &[
            "subscriptions",
            "expire",
            "--callback",
            "/cb/a",
            "--notify",
            "--yes",
            "--json",
        ],
    )
    .await;
    assert!(done.ok, "{}", done.stderr);
    assert_eq!(done.json()["count"], 1);
    assert_eq!(state(&app, &a).await, "expired");
    assert_eq!(state(&app, &b).await, "active");
    let notice = sub
        .wait_verifications("a", 2)
        .await
        .pop()
        .expect("a notice");
    assert_eq!(notice.param("hub.mode"), Some("denied"));

    // By lease end: nothing ended before 2000-01-01.
    let old = herald(
        &app,
        &[
            "subscriptions",
            "expire",
            "--expired-before",
            "2000-01-01",
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(old.json()["count"], 0);

    let id = app
        .scalar_text(
            "SELECT CAST(id AS TEXT) FROM subscriptions WHERE callback = $1",
            &[&b],
        )
        .await
        .expect("id");
    assert!(
        herald(&app, &["subscriptions", "delete", &id, "--dry-run"])
            .await
            .ok
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 3);
    let deleted = herald(&app, &["subscriptions", "delete", &id, "--yes", "--json"]).await;
    assert_eq!(deleted.json()["deleted"], 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_are_listed_and_replayed_and_publish_pings() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("t", Some("text/plain"), "dead letter");
    let topic = publisher.url("t");
    app.subscribed(&topic, &sub.callback("down"), &[]).await;
    sub.on_deliver("down", std::iter::repeat_n(Answer::Status(500), 4));

    // `herald publish` pings like a publisher; the running hub distributes.
    let out = herald(&app, &["publish", &topic, "--json"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.json()["subscribed"], 1);
    sub.wait_deliveries("down", 4).await;
    app.wait_delivery_state("failed").await;

    let failed = herald(&app, &["deliveries", "list", "--failed", "--json"])
        .await
        .json();
    assert_eq!(failed.as_array().map(Vec::len), Some(1));
    assert_eq!(failed[0]["last_error"], "callback answered 500");
    assert!(
        herald(&app, &["deliveries", "list", "--failed"])
            .await
            .stdout
            .contains("callback answered 500")
    );

    let dry = herald(
        &app,
        &["deliveries", "retry", "--all-failed", "--dry-run", "--json"],
    )
    .await;
    assert_eq!(dry.json()["count"], 1);
    assert!(
        !herald(&app, &["deliveries", "retry", "--all-failed"])
            .await
            .ok,
        "needs --yes off a terminal"
    );
    // Replay by id (no confirmation needed for named deliveries).
    let id = failed[0]["id"].as_i64().expect("an id").to_string();
    let replay = herald(&app, &["deliveries", "retry", &id, "--json"]).await;
    assert!(replay.ok, "{}", replay.stderr);
    assert_eq!(replay.json()["count"], 1);
    let got = sub.wait_deliveries("down", 5).await;
    assert_eq!(got[4].body, b"dead letter");
    app.wait_delivery_state("delivered").await;

    let topics = herald(&app, &["topics", "list", "--json"]).await.json();
    assert_eq!(topics[0]["url"], topic.as_str());
    assert_eq!(topics[0]["active_subscriptions"], 1);
    let shown = herald(&app, &["topics", "show", &topic]).await;
    assert!(
        shown.ok && shown.stdout.contains("active subs    1"),
        "{}",
        shown.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_and_help() {
    let app = TestApp::spawn().await;
    let ok = herald(&app, &["check-config", "--json"]).await;
    assert!(ok.ok, "{}", ok.stderr);
    assert_eq!(ok.json()["valid"], true);
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config"])
        .env("HERALD_DATABASE_URL", &app.database_url)
        .env("HERALD_LEASE_MIN_SECONDS", "0")
        .output()
        .await
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("minimum lease"));
    // With --json a failure is JSON too, and the flags of serve are taken.
    let bad_json = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config", "--json", "--lease-min-seconds", "0"])
        .env("HERALD_DATABASE_URL", &app.database_url)
        .output()
        .await
        .expect("runs");
    assert!(!bad_json.status.success());
    let failure: Value = serde_json::from_slice(&bad_json.stdout).expect("JSON on a failure");
    assert_eq!(failure["valid"], false);
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("minimum lease")),
        "{failure}"
    );
    let flagged = herald(
        &app,
        &["check-config", "--json", "--listen", "127.0.0.1:9999"],
    )
    .await;
    assert!(flagged.ok, "{}", flagged.stderr);
    assert_eq!(flagged.json()["listen"], "127.0.0.1:9999");
    for args in [
        vec!["--help"],
        vec!["subscriptions", "--help"],
        vec!["subscriptions", "expire", "--help"],
        vec!["deliveries", "retry", "--help"],
        vec!["topics", "show", "--help"],
        vec!["publish", "--help"],
    ] {
        let out = herald(&app, &args).await;
        assert!(out.ok && out.stdout.contains("Usage:"), "{args:?}");
    }
    // Operator commands never create a database: run where there is none, they say so and
    // leave nothing behind.
    let missing =
        std::env::temp_dir().join(format!("herald_test_{}_missing.db", std::process::id()));
    let run_on = |url: String, args: &'static [&'static str]| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .env("HERALD_DATABASE_URL", url)
            .output()
            .await
            .expect("runs")
    };
    let out = run_on(
        format!("sqlite://{}", missing.display()),
        &["topics", "list"],
    )
    .await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("there is no database at"), "{said}");
    assert!(!missing.exists(), "the CLI created no database file");
    // check-config does not create one either: serve will.
    let out = run_on(format!("sqlite://{}", missing.display()), &["check-config"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created at first start"));
    assert!(!missing.exists(), "check-config created no database file");
    // Operator commands never migrate: an empty database gets a hint, not a schema.
    let empty = std::env::temp_dir().join(format!("herald_test_{}_empty.db", std::process::id()));
    let url = format!("sqlite://{}", empty.display());
    herald::store::Db::connect(&url)
        .await
        .expect("an empty database")
        .close()
        .await;
    let out = run_on(url.clone(), &["subscriptions", "list"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("herald migrate"));
    let db = herald::store::Db::connect(&url).await.expect("connect");
    assert!(!db.has_schema().await, "the CLI created no tables");
    db.close().await;
    let _ = std::fs::remove_file(&empty);

    // A hub URL no subscriber can reach fails the check: the listen address 0.0.0.0 standing
    // in for a public URL, or a loopback public URL on a listener beyond loopback.
    for (listen, public) in [
        ("0.0.0.0:8080", None),
        ("0.0.0.0:8080", Some("http://127.0.0.1:8080/hub")),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(["check-config", "--json"])
            .env("HERALD_DATABASE_URL", &app.database_url)
            .env("HERALD_LISTEN", listen)
            .env_remove("HERALD_PUBLIC_URL");
        if let Some(public) = public {
            command.env("HERALD_PUBLIC_URL", public);
        }
        let out = command.output().await.expect("runs");
        assert!(!out.status.success(), "{listen} {public:?}");
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["valid"], false);
        assert!(
            report["error"]
                .as_str()
                .is_some_and(|e| e.contains("HERALD_PUBLIC_URL")),
            "{report}"
        );
    }

    // The hub keeps serving while the CLI works on its database.
    assert_eq!(
        app.publish("http://127.0.0.1:9/x").await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_callback_host_is_paused_without_using_up_attempts_and_shown() {
    let app = TestApp::spawn_with(&[
        ("HERALD_BREAKER_COOLDOWN", "1h"),
        (
            "HERALD_RETRY_SCHEDULE",
            "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
        ),
    ])
    .await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("b", Some("text/plain"), "to all");
    let topic = publisher.url("b");
    app.subscribed(&topic, &sub.callback("alive"), &[]).await;
    // Ten subscriptions on a host that refuses every connection, arranged in bulk.
    let (_, dead) = crate::helpers::loopback_listener();
    app.exec_built(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
         INSERT INTO subscriptions (topic_id, callback, lease_seconds, state, verified_at, expires_at,
                                    applied_request_id, created_at, updated_at)
         SELECT (SELECT id FROM topics), 'http://127.0.0.1:{dead}/cb/' || i, 86400, 'active',
                s.verified_at, s.expires_at, 0, s.created_at, s.created_at
         FROM n, (SELECT verified_at, expires_at, created_at FROM subscriptions) s"
    ))
    .await;
    app.publish(&topic).await;
    sub.wait_deliveries("alive", 1).await;
    // After a few refused connections the host is paused until its cool-down ends (an hour):
    // its deliveries wait for it instead of running through their eight retries.
    let in_an_hour = (chrono::Utc::now().timestamp_millis() + 30 * 60_000).to_string();
    crate::helpers::eventually("the dead host's deliveries to wait for its breaker", || async {
        let waiting = app
            .scalar_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
                 WHERE s.callback LIKE '%/cb/%' AND d.state = 'pending'
                   AND d.next_attempt_at > CAST($1 AS BIGINT)",
                &[&in_an_hour],
            )
            .await;
        (waiting.as_deref() == Some("10")).then_some(())
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE attempts > 1")
            .await,
        0,
        "no retry was spent on the paused host"
    );
    let shown = herald(&app, &["hosts", "--json"]).await;
    assert!(shown.ok, "{}", shown.stderr);
    let hosts = shown.json();
    assert_eq!(hosts[0]["host"], format!("127.0.0.1:{dead}"));
    assert_eq!(hosts[0]["state"], "open");
    assert!(
        hosts[0]["retry_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // The producer hears it once, for the host.
    let told = herald(&app, &["events", "--json", "--type", "callback.failing"]).await;
    assert!(told.ok, "{}", told.stderr);
    let lines: Vec<Value> = told
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", told.stdout);
    assert_eq!(lines[0]["callback_host"], format!("127.0.0.1:{dead}"));
    assert!(lines[0]["subscription_id"].is_null());
    assert!(lines[0]["detail"]["retry_at"].is_string());
}

/// A PostgreSQL server that is not there is reported at once with the reason, not as the
/// connection pool's timeout 15 s later.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_postgresql_connection_is_said_at_once() {
    let (_, closed) = crate::helpers::loopback_listener();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("migrate")
        .env(
            "HERALD_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{closed}/herald"),
        )
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    // Not "pool timed out while waiting for an open connection".
    assert!(said.contains("Connection refused"), "{said}");
}

/// `HERALD_MIGRATE=false`: serve never changes the schema; on one older than its version it
/// refuses to start and says to run `herald migrate`, after which it starts.
#[tokio::test(flavor = "multi_thread")]
async fn serve_can_be_told_to_leave_migrations_to_herald_migrate() {
    let file = std::env::temp_dir().join(format!(
        "herald_test_{}_held.db",
        herald::domain::challenge::random_hex(6)
    ));
    let url = format!("sqlite://{}", file.display());
    let (_, port) = crate::helpers::loopback_listener();
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("HERALD_DATABASE_URL", &url)
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_MIGRATE", "false")
        .output()
        .await
        .expect("runs");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("herald migrate"), "{said}");
    let migrated = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("migrate")
        .env("HERALD_DATABASE_URL", &url)
        .output()
        .await
        .expect("runs");
    assert!(migrated.status.success());
    let _hub = crate::helpers::process::HubProcess::start(
        &url,
        port,
        &[("HERALD_MIGRATE", "false".to_owned())],
    );
    herald::outbound::install_crypto_provider();
    let client = reqwest::Client::new();
    crate::helpers::eventually("the hub to start on the migrated schema", || async {
        let health = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .ok()?;
        (health.status() == StatusCode::OK).then_some(())
    })
    .await;
    let _ = std::fs::remove_file(&file);
}

/// Shell completions and the manual page come from the binary itself.
#[tokio::test(flavor = "multi_thread")]
async fn completions_and_the_manual_page_are_printed() {
    let run = |args: &'static [&'static str]| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .output()
            .await
            .expect("runs")
    };
    for shell in ["bash", "zsh", "fish"] {
        let out = run(match shell {
            "bash" => &["completions", "bash"],
            "zsh" => &["completions", "zsh"],
            _ => &["completions", "fish"],
        })
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("subscriptions"),
            "{shell}: {text}"
        );
    }
    let man = run(&["man"]).await;
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.status.success() && text.contains(".TH herald 1"),
        "{text}"
    );
}

/// `herald backup` copies a SQLite database while the hub runs; a hub started on the copy has
/// what the original had; a second backup to the same file is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_the_hub_runs_restores_to_a_working_hub() {
    if crate::helpers::app::Backend::from_env() != crate::helpers::app::Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topic = "http://127.0.0.1:9/backed-up";
    app.subscribed(topic, &sub.callback("kept"), &[]).await;
    let copy = std::env::temp_dir().join(format!(
        "herald_test_{}_backup.db",
        herald::domain::challenge::random_hex(6)
    ));
    let path = copy.display().to_string();
    let out = herald(&app, &["backup", &path]).await;
    assert!(out.ok, "{}", out.stderr);
    let again = herald(&app, &["backup", &path]).await;
    assert!(
        !again.ok && again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    app.stop().await;

    let restored = TestApp::spawn_on(format!("sqlite://{path}"), &[]).await;
    assert_eq!(
        restored
            .subscription_state(topic, &sub.callback("kept"))
            .await
            .as_deref(),
        Some("active")
    );
    restored.stop().await;
    let _ = std::fs::remove_file(&copy);
}

/// Exit codes tell scripts what went wrong: 2 usage, 3 not found, 4 refused, 5 unavailable.
#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_say_what_kind_of_failure_it_was() {
    let app = TestApp::spawn().await;
    let (_, closed) = crate::helpers::loopback_listener();
    let missing = std::env::temp_dir().join(format!(
        "herald_test_{}_nowhere.db",
        herald::domain::challenge::random_hex(6)
    ));
    // (arguments, environment, exit code)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, i32);
    let cases: Vec<Case> = vec![
        (vec!["no-such-command"], vec![], 2),
        (
            vec!["subscriptions", "show", "999999"],
            vec![("HERALD_DATABASE_URL", app.database_url.clone())],
            3,
        ),
        (
            vec!["topics", "list"],
            vec![(
                "HERALD_DATABASE_URL",
                format!("sqlite://{}", missing.display()),
            )],
            3,
        ),
        (
            vec!["check-config"],
            vec![
                ("HERALD_DATABASE_URL", app.database_url.clone()),
                ("HERALD_LEASE_MIN_SECONDS", "0".to_owned()),
            ],
            4,
        ),
        (
            vec!["serve"],
            vec![
                ("HERALD_DATABASE_URL", app.database_url.clone()),
                ("HERALD_LEASE_MIN_SECONDS", "0".to_owned()),
            ],
            4,
        ),
        (
            vec!["migrate"],
            vec![(
                "HERALD_DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{closed}/herald"),
            )],
            5,
        ),
    ];
    for (args, vars, expected) in cases {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .envs(vars)
            .output()
            .await
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!missing.exists());
}

/// On a terminal a table fits its width (long cells wrap); into a pipe each row stays on one
/// line. The terminal is a real pseudo-terminal (util-linux `script`) set to 60 columns.
#[tokio::test(flavor = "multi_thread")]
async fn tables_fit_the_terminal_and_stay_whole_in_a_pipe() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let topics: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:9/a/rather/long/path/to/a/feed/that/goes/on/{i}.xml"))
        .collect();
    for (i, t) in topics.iter().enumerate() {
        app.subscribed(t, &sub.callback(&format!("wide{i}")), &[])
            .await;
    }
    let piped = herald(&app, &["topics", "list"]).await;
    assert!(piped.ok, "{}", piped.stderr);
    for t in &topics {
        assert_eq!(
            piped
                .stdout
                .lines()
                .filter(|l| l.ends_with(t.as_str()))
                .count(),
            1,
            "{}",
            piped.stdout
        );
    }

    let command = format!("stty cols 60; {} topics list", env!("CARGO_BIN_EXE_herald"));
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HERALD_DATABASE_URL", &app.database_url)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > topics.len() + 1, "long URLs wrap: {text}");
    for line in &lines {
        assert!(
            line.chars().count() <= 60,
            "{line:?} is wider than 60: {text}"
        );
    }
    // Every URL is still there, in pieces.
    let joined: String = text.split_whitespace().collect();
    for t in &topics {
        assert!(joined.contains(t.as_str()), "{t} in {text}");
    }
}

/// `herald events`: the producer's events for operators — a table, JSON lines, a filter, and
/// `--follow`, which prints what is recorded while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn events_are_listed_and_followed() {
    use tokio::io::AsyncBufReadExt;
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    app.subscribed("http://127.0.0.1:9/e1", &sub.callback("e1"), &[])
        .await;
    app.unsubscribe("http://127.0.0.1:9/e1", &sub.callback("e1"))
        .await;
    assert_eq!(
        app.settled_request("http://127.0.0.1:9/e1", &sub.callback("e1"))
            .await,
        "verified"
    );
    let table = herald(&app, &["events"]).await;
    assert!(table.ok, "{}", table.stderr);
    assert!(
        table.stdout.contains("subscription.activated"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("subscription.unsubscribed"),
        "{}",
        table.stdout
    );
    let lines = herald(
        &app,
        &["events", "--json", "--type", "subscription.unsubscribed"],
    )
    .await;
    assert!(lines.ok, "{}", lines.stderr);
    let events: Vec<Value> = lines
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(events.len(), 1, "{}", lines.stdout);
    assert_eq!(events[0]["id"], 2);
    let bad = herald(&app, &["events", "--type", "nothing"]).await;
    assert!(!bad.ok && bad.stderr.contains("nothing"), "{}", bad.stderr);

    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["events", "--follow", "--json", "--after", "2"])
        .env("HERALD_DATABASE_URL", &app.database_url)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("herald runs");
    let mut out = tokio::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();
    app.subscribed("http://127.0.0.1:9/e2", &sub.callback("e2"), &[])
        .await;
    let line = tokio::time::timeout(crate::helpers::DEADLINE, out.next_line())
        .await
        .expect("a line within the deadline")
        .expect("read")
        .expect("a line");
    let event: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(event["id"], 3, "what comes after 2, as it comes: {line}");
    assert_eq!(event["topic"], "http://127.0.0.1:9/e2");
    follow.kill().await.expect("stopped");

    // Retention took the oldest: the last 20 are what is kept; asking for a pruned id is told.
    app.exec("DELETE FROM events WHERE id <= 2").await;
    app.exec("UPDATE event_counter SET pruned_upto = 2").await;
    let kept = herald(&app, &["events", "--json"]).await;
    assert!(kept.ok, "{}", kept.stderr);
    let ids: Vec<i64> = kept
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["id"].as_i64())
        .collect();
    assert_eq!(ids, [3]);
    let gone = herald(&app, &["events", "--after", "1"]).await;
    assert!(
        !gone.ok && gone.stderr.contains("retention"),
        "{}",
        gone.stderr
    );
}
