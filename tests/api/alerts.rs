//! The alert rules operators are given (`packaging/prometheus-alerts.yml`, shown in
//! docs/operations.md), evaluated by Prometheus's own `promtool` against real scrapes of a hub.
//!
//! Each scenario scrapes `/metrics` twice around something the hub really did (delivered,
//! failed, hung on a callback). The two scrapes become an hour of input series — counters go
//! on growing at the rate seen between the scrapes, gauges stay where the second scrape left
//! them — and promtool says which alerts fire 50 minutes in. `promtool` comes from Debian's
//! `prometheus` package (`scripts/test.sh` fetches it) or `HERALD_TEST_PROMTOOL`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use crate::helpers::{Answer, Publisher, Subscriber, TestApp};

const RULES: &str = include_str!("../../packaging/prometheus-alerts.yml");
const OPERATIONS: &str = include_str!("../../docs/operations.md");

/// Minutes of input series built from two scrapes; alerts are read at [`EVAL_MINUTE`].
const MINUTES: u32 = 60;
const EVAL_MINUTE: u32 = 50;

fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_TEST_PROMTOOL") {
        return path.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .expect(
            "the alert tests need promtool: set HERALD_TEST_PROMTOOL, or put Debian's prometheus \
             package's promtool on PATH (scripts/test.sh fetches it)",
        )
}

/// One scrape: every sample's series (name and labels as exposed) with its value, and the
/// declared type of each family.
struct Scrape {
    samples: Vec<(String, f64)>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
                samples.push((series.to_owned(), value));
            }
        }
        Self { samples, types }
    }

    fn value(&self, series: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
    }

    /// Whether a sample of this name belongs to a counter or histogram family (it only grows).
    fn grows(&self, series: &str) -> bool {
        let name = series.split('{').next().unwrap_or(series);
        self.types
            .iter()
            .filter(|(family, _)| name.starts_with(family.as_str()))
            .max_by_key(|(family, _)| family.len())
            .is_some_and(|(_, kind)| kind == "counter" || kind == "histogram")
    }

    fn has_metric(&self, name: &str) -> bool {
        self.samples
            .iter()
            .any(|(s, _)| s.split('{').next() == Some(name))
    }
}

/// promtool's input series: the hub going on for an hour as it did between the two scrapes.
fn input_series(before: &Scrape, after: &Scrape) -> String {
    let mut out = String::new();
    for (series, now) in &after.samples {
        let values = if after.grows(series) {
            let was = before.value(series).unwrap_or(0.0);
            format!("{was}+{}x{MINUTES}", now - was)
        } else {
            format!("{now}x{MINUTES}")
        };
        out.push_str(&format!(
            "      - series: '{series}'\n        values: '{values}'\n"
        ));
    }
    out
}

fn work_dir(scenario: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald_test_alerts_{}_{scenario}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a directory for promtool's files");
    dir
}

fn run(promtool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts that exactly the alerts `expected` fire when the hub goes on as it did between
/// `before` and `after`, and that every metric the rules name exists in a real scrape.
fn assert_firing(scenario: &str, before: &str, after: &str, expected: &[&str]) {
    let (before, after) = (Scrape::parse(before), Scrape::parse(after));
    for name in metric_names(RULES) {
        assert!(
            after.has_metric(&name),
            "the rules use {name}, which the hub does not expose"
        );
    }
    let dir = work_dir(scenario);
    std::fs::write(dir.join("rules.yml"), RULES).expect("rules written");
    let mut samples = String::new();
    for alert in expected {
        samples.push_str(&format!(
            "          - labels: '{{alertname=\"{alert}\"}}'\n            value: 1\n"
        ));
    }
    let samples = if samples.is_empty() {
        " []\n".to_owned()
    } else {
        format!("\n{samples}")
    };
    let test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}    promql_expr_test:\n      - expr: 'count by (alertname) (ALERTS{{alertstate=\"firing\"}})'\n        eval_time: {EVAL_MINUTE}m\n        exp_samples:{samples}",
        input_series(&before, &after)
    );
    std::fs::write(dir.join("test.yml"), &test).expect("test written");
    let promtool = promtool();
    let (ok, output) = run(&promtool, &dir, &["test", "rules", "test.yml"]);
    assert!(
        ok,
        "{scenario}: expected firing {expected:?}\n{output}\n(promtool input in {})",
        dir.display()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The `herald_*` metric names an expression text mentions.
fn metric_names(rules: &str) -> Vec<String> {
    let mut names: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("herald_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_rules_are_valid_and_shown_in_the_operations_guide() {
    let dir = work_dir("check");
    std::fs::write(dir.join("rules.yml"), RULES).expect("rules written");
    let (ok, output) = run(&promtool(), &dir, &["check", "rules", "rules.yml"]);
    assert!(ok, "{output}");
    std::fs::remove_dir_all(&dir).ok();
    // The guide shows the rules as shipped (without the file's comment lines).
    let shipped: String = RULES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        OPERATIONS.contains(&format!("```yaml\n{shipped}```")),
        "docs/operations.md must show packaging/prometheus-alerts.yml as it is"
    );
}

/// Deliveries succeed: nothing fires.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_hub_fires_no_alert() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("ok", Some("text/plain"), "fine");
    let topic = publisher.url("ok");
    for i in 0..3 {
        app.subscribed(&topic, &sub.callback(&format!("ok{i}")), &[])
            .await;
    }
    let before = app.get_text("/metrics").await;
    app.publish(&topic).await;
    app.wait_delivered(3).await;
    app.wait_topics_idle().await;
    let after = app.get_text("/metrics").await;
    assert_firing("healthy", &before, &after, &[]);
}

/// Deliveries exhaust their retries and most fetches fail: both alerts fire, nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn failing_deliveries_and_fetches_fire_their_alerts() {
    let app = TestApp::spawn().await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("bad", Some("text/plain"), "refused");
    let topic = publisher.url("bad");
    let callback = sub.callback("bad");
    app.subscribed(&topic, &callback, &[]).await;
    sub.on_deliver("bad", std::iter::repeat_n(Answer::Status(500), 10));
    let broken: Vec<String> = (0..2).map(|i| publisher.url(&format!("gone{i}"))).collect();
    for (i, t) in broken.iter().enumerate() {
        publisher.set_status(&format!("gone{i}"), 500);
        app.subscribed(t, &sub.callback(&format!("gone{i}")), &[])
            .await;
    }
    let before = app.get_text("/metrics").await;
    app.publish(&topic).await;
    app.wait_delivery_state("failed").await;
    for t in &broken {
        app.publish(t).await;
        app.wait_fetch_error(t).await;
    }
    let after = app.get_text("/metrics").await;
    assert_firing(
        "failing",
        &before,
        &after,
        &["HeraldDeliveriesFailing", "HeraldFetchesFailing"],
    );
}

/// A callback that never answers holds the delivery queue: the queue-stuck alert fires.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_hung_on_its_callback_fires_the_stuck_queue_alert() {
    let app = TestApp::spawn_with(&[("HERALD_DELIVERY_TIMEOUT", "120s")]).await;
    let sub = Subscriber::spawn();
    let publisher = Publisher::spawn();
    publisher.set("hang", Some("text/plain"), "waiting");
    let topic = publisher.url("hang");
    app.subscribed(&topic, &sub.callback("hang"), &[]).await;
    sub.on_deliver("hang", [Answer::Gated]);
    let before = app.get_text("/metrics").await;
    app.publish(&topic).await;
    sub.wait_deliveries("hang", 1).await;
    let after = app.get_text("/metrics").await;
    sub.open_gate();
    assert_firing("stuck", &before, &after, &["HeraldQueueStuck"]);
}
