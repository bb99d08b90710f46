//! Prometheus metrics of this process (`GET /metrics`, text exposition by `prometheus-client`).
//!
//! Counters are counted where the outcome is recorded; gauges of stored state (queue depths,
//! pending deliveries, subscriptions by state, paused callback hosts) are read from the
//! database when scraped, with a few cheap `COUNT`s. Label values come from closed sets (routes
//! as patterns, outcomes, states, queue names): never one series per topic or callback.
//! With several processes each exposes its own counters; the sampled gauges are the shared
//! database's.

mod process;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    domain::ids::UnixMs,
    store::{Db, StoreError},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerificationLabels {
    pub mode: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    verifications: Family<VerificationLabels, Counter>,
    fetches: Family<OutcomeLabel, Counter>,
    polls: Family<OutcomeLabel, Counter>,
    fetched_bytes: Counter,
    missed_pings: Counter,
    failing_topics: Gauge,
    deliveries: Family<OutcomeLabel, Counter>,
    publish_to_delivery: Histogram,
    queue_depth: Family<QueueLabel, Gauge>,
    pending_deliveries: Gauge,
    subscriptions: Family<StateLabel, Gauge>,
    paused_hosts: Gauge,
    live_connections: Gauge,
    live_sent: Family<TransportLabel, Counter>,
    live_backlog: Gauge,
    live_refused: Family<ReasonLabel, Counter>,
    process: process::Process,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status",
            http_requests.clone(),
        );
        let verifications = Family::<VerificationLabels, Counter>::default();
        registry.register(
            "verifications",
            "Verifications of intent completed, by mode and outcome (verified, failed, denied)",
            verifications.clone(),
        );
        let fetches = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "fetches",
            "Topic fetches, by outcome (changed, unchanged, not_modified, failed)",
            fetches.clone(),
        );
        let polls = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "polls",
            "Scheduled polls, by outcome (changed, unchanged, not_modified, failed; put_off: due \
             but not fetched, for want of a subscriber or a ping in safety-net mode)",
            polls.clone(),
        );
        let fetched_bytes = Counter::default();
        registry.register(
            "fetched_bytes",
            "Bytes of topic bodies fetched (pings and polls)",
            fetched_bytes.clone(),
        );
        let missed_pings = Counter::default();
        registry.register(
            "missed_pings",
            "Polls that found new entries on a topic whose publisher pings",
            missed_pings.clone(),
        );
        let failing_topics = Gauge::default();
        registry.register(
            "failing_topics",
            "Topics whose last fetch failed (sampled when scraped)",
            failing_topics.clone(),
        );
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts recorded, by outcome (delivered, retry, failed, gone, cancelled)",
            deliveries.clone(),
        );
        let publish_to_delivery = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            3600.0,
        ]);
        registry.register(
            "publish_to_delivery_seconds",
            "From a publish ping (or producer push) accepted to a 2xx from the callback",
            publish_to_delivery.clone(),
        );
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "queue_depth",
            "Queue jobs waiting or running, by queue (sampled when scraped)",
            queue_depth.clone(),
        );
        let pending_deliveries = Gauge::default();
        registry.register(
            "pending_deliveries",
            "Deliveries waiting or being sent (sampled when scraped)",
            pending_deliveries.clone(),
        );
        let subscriptions = Family::<StateLabel, Gauge>::default();
        registry.register(
            "subscriptions",
            "Subscriptions by state (sampled when scraped)",
            subscriptions.clone(),
        );
        let paused_hosts = Gauge::default();
        registry.register(
            "paused_callback_hosts",
            "Callback hosts whose circuit breaker is open (sampled when scraped)",
            paused_hosts.clone(),
        );
        let live_connections = Gauge::default();
        registry.register(
            "live_connections",
            "Live connections (SSE and WebSocket) this process holds",
            live_connections.clone(),
        );
        let live_sent = Family::<TransportLabel, Counter>::default();
        registry.register(
            "live_updates_sent",
            "Updates sent to live connections, by transport (sse, websocket)",
            live_sent.clone(),
        );
        let live_backlog = Gauge::default();
        registry.register(
            "live_backlog",
            "Updates waiting in live subscribers' backlogs (sampled when scraped)",
            live_backlog.clone(),
        );
        let live_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "live_connections_refused",
            "Live connections refused by a cap, by the cap (token, client, total)",
            live_refused.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1: the version of Herald this process runs",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: crate::build_info::VERSION,
                commit: crate::build_info::COMMIT,
            })
            .set(1);
        // Every series of a closed label set exists from the start, at 0: an alert comparing
        // a rate against one that has not happened yet would otherwise find no series.
        for outcome in ["changed", "unchanged", "not_modified", "failed"] {
            let _ = fetches.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["changed", "unchanged", "not_modified", "failed", "put_off"] {
            let _ = polls.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["delivered", "retry", "failed", "gone", "cancelled"] {
            let _ = deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        for mode in ["subscribe", "unsubscribe"] {
            for outcome in ["verified", "failed", "denied"] {
                let _ = verifications.get_or_create(&VerificationLabels { mode, outcome });
            }
        }
        for transport in ["sse", "websocket"] {
            let _ = live_sent.get_or_create(&TransportLabel { transport });
        }
        for reason in ["token", "client", "total"] {
            let _ = live_refused.get_or_create(&ReasonLabel { reason });
        }
        let process = process::Process::register(&mut registry);
        Self {
            process,
            registry,
            live_refused,
            live_connections,
            live_sent,
            live_backlog,
            http_requests,
            verifications,
            fetches,
            polls,
            fetched_bytes,
            missed_pings,
            failing_topics,
            deliveries,
            publish_to_delivery,
            queue_depth,
            pending_deliveries,
            subscriptions,
            paused_hosts,
        }
    }
}

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot sample the stored state")]
    Sample(#[from] StoreError),
    #[error("cannot encode the metrics")]
    Encode(#[source] std::fmt::Error),
}

impl Metrics {
    pub fn http_request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn verification(&self, mode: &'static str, outcome: &'static str) {
        self.verifications
            .get_or_create(&VerificationLabels { mode, outcome })
            .inc();
    }

    pub fn fetch(&self, outcome: &'static str) {
        self.fetches.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A scheduled poll's outcome (see the family's help).
    pub fn poll(&self, outcome: &'static str) {
        self.polls.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A topic body of `n` bytes fetched.
    pub fn fetched_bytes(&self, n: usize) {
        self.fetched_bytes.inc_by(n as u64);
    }

    /// A poll found new entries its publisher did not ping for.
    pub fn missed_ping(&self) {
        self.missed_pings.inc();
    }

    pub fn delivery(&self, outcome: &'static str, n: u64) {
        self.deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(n);
    }

    /// A 2xx received `now` for an update accepted at `accepted`.
    pub fn delivered_after(&self, accepted: UnixMs, now: UnixMs) {
        self.publish_to_delivery
            .observe(accepted.until(now).as_secs_f64());
    }

    /// A live connection refused by the cap `reason` (`token`, `client`, `total`).
    pub fn live_refused(&self, reason: &'static str) {
        self.live_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// An update sent to a live connection over `transport` (`sse`, `websocket`).
    pub fn live_sent(&self, transport: &'static str) {
        self.live_sent
            .get_or_create(&TransportLabel { transport })
            .inc();
    }

    /// Samples the stored state and encodes everything in the Prometheus text format, with the
    /// live connections this process holds.
    pub async fn render(&self, db: &Db, live_connections: usize) -> Result<String, RenderError> {
        let sample = crate::store::views::sample_status(db).await?;
        self.live_connections.set(live_connections as i64);
        self.live_backlog
            .set(crate::store::live::backlog_total(db).await?);
        for (queue, depth) in crate::queue::tables::depths(db).await? {
            self.queue_depth
                .get_or_create(&QueueLabel {
                    queue: queue.name(),
                })
                .set(depth);
        }
        self.pending_deliveries.set(sample.pending_deliveries);
        for (state, n) in sample.subscriptions {
            self.subscriptions
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(n);
        }
        self.paused_hosts.set(sample.open_breakers);
        self.failing_topics.set(sample.failing_topics);
        self.process.sample();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(RenderError::Encode)?;
        Ok(text)
    }
}
