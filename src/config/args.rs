//! The flags of `herald serve`, each also a `HERALD_*` variable: what clap parses, before
//! [`super::Settings`] validates it. `.env.example` lists every one with its default.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use clap::Args;

use super::AddressRanges;
use crate::domain::{
    access::{HubMode, TopicAllowList},
    address::AddressPolicy,
    delivery_mode::DeliveryMode,
    duration::{parse_duration, parse_seconds},
    poll::PollingMode,
    rate::RateSetting,
    retry::RetrySchedule,
    signature::SignatureAlgorithm,
};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Where state and queues live: `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
    /// A file holding the database URL, instead of HERALD_DATABASE_URL (a password in a
    /// variable shows in the process's environment); its trailing newline is ignored.
    #[arg(long, env = "HERALD_DATABASE_URL_FILE")]
    pub database_url_file: Option<std::path::PathBuf>,
}

impl DatabaseArgs {
    /// The database URL: read from `HERALD_DATABASE_URL_FILE` when given, else
    /// `HERALD_DATABASE_URL` (or its default).
    pub fn url(&self) -> Result<DatabaseUrl, DatabaseUrlFileError> {
        let Some(path) = &self.database_url_file else {
            return Ok(self.database_url.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|error| DatabaseUrlFileError {
            path: path.display().to_string(),
            error,
        })?;
        Ok(DatabaseUrl(text.trim_end_matches(['\n', '\r']).to_owned()))
    }
}

/// `HERALD_DATABASE_URL_FILE` names a file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("HERALD_DATABASE_URL_FILE: cannot read {path}")]
pub struct DatabaseUrlFileError {
    path: String,
    #[source]
    error: std::io::Error,
}

/// A database URL. It may carry a password, so it prints (`Display`, `Debug`) with the
/// password masked; [`DatabaseUrl::expose`] gives the real one to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::domain::url::redact_password(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A command-line or environment value that must never be printed (a token).
#[derive(Clone)]
pub struct Redacted(String);

impl Redacted {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address the hub listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve /metrics (and /health) on this address of their own, in any role, and no longer on
    /// the hub's listener [default: /metrics on the hub's listener].
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The hub URL as subscribers and publishers see it [default: http://<listen>/hub].
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Which addresses callbacks and topics may resolve to: false (public only),
    /// loopback:PORT,PORT (and loopback on those ports), loopback (on every port), true.
    #[arg(long, env = "HERALD_ALLOW_PRIVATE_ADDRESSES", default_value = "false")]
    pub allow_private_addresses: AddressPolicy,
    /// The shortest lease granted: seconds, or a duration (`1m`).
    #[arg(long, env = "HERALD_LEASE_MIN_SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub lease_min_seconds: u64,
    /// The lease granted when the subscriber asks for none: seconds, or a duration (`10d`).
    #[arg(long, env = "HERALD_LEASE_DEFAULT_SECONDS", default_value = "864000", value_parser = parse_seconds)]
    pub lease_default_seconds: u64,
    /// The longest lease granted: seconds, or a duration (`30d`).
    #[arg(long, env = "HERALD_LEASE_MAX_SECONDS", default_value = "2592000", value_parser = parse_seconds)]
    pub lease_max_seconds: u64,
    /// How often the periodic sweep runs: lapsed leases expired, renewals requested, backlogs
    /// capped, old rows pruned [default: 30s].
    #[arg(long, env = "HERALD_SWEEP_INTERVAL", value_parser = parse_duration)]
    pub sweep_interval: Option<Duration>,
    /// The former name of HERALD_SWEEP_INTERVAL, still accepted.
    #[arg(long, env = "HERALD_LEASE_SWEEP_INTERVAL", value_parser = parse_duration, hide = true)]
    pub lease_sweep_interval: Option<Duration>,
    /// How long delivered deliveries, finished requests, distributions and documents nothing
    /// refers to any more are kept.
    #[arg(long, env = "HERALD_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,
    /// How long failed deliveries (and their documents) are kept for replay.
    #[arg(long, env = "HERALD_FAILED_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub failed_retention: Duration,
    /// How long the producer's events (`GET /api/v1/events`) are kept; a reader asking for
    /// older ones is told they are gone.
    #[arg(long, env = "HERALD_EVENTS_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub events_retention: Duration,
    /// Where the producer's events are pushed as they happen (docs/events.md): each page of
    /// events a signed POST, in order, retried and dead-lettered like any delivery. Unset: no
    /// push (the events stay readable at `/api/v1/events`).
    #[arg(long, env = "HERALD_PRODUCER_EVENTS_URL")]
    pub producer_events_url: Option<String>,
    /// The key of the pushed events' `X-Hub-Signature` (HMAC, `HERALD_SIGNATURE_ALGORITHM`);
    /// needed with HERALD_PRODUCER_EVENTS_URL.
    #[arg(long, env = "HERALD_PRODUCER_EVENTS_SECRET", hide_env_values = true)]
    pub producer_events_secret: Option<Redacted>,
    /// A file holding HERALD_PRODUCER_EVENTS_SECRET instead (its trailing newline ignored).
    #[arg(
        long,
        env = "HERALD_PRODUCER_EVENTS_SECRET_FILE",
        conflicts_with = "producer_events_secret"
    )]
    pub producer_events_secret_file: Option<std::path::PathBuf>,
    /// The most deliveries that may wait for one subscription; beyond it the oldest are dropped
    /// (for content that is not a feed, all but the newest).
    #[arg(
        long,
        env = "HERALD_MAX_PENDING_PER_SUBSCRIPTION",
        default_value_t = 1000
    )]
    pub max_pending_per_subscription: usize,
    /// How long before a lease ends the hub re-verifies subscriptions it renews.
    #[arg(long, env = "HERALD_RENEW_BEFORE", default_value = "24h", value_parser = parse_duration)]
    pub renew_before: Duration,
    /// Renew every subscription before its lease ends, not only PuSH 0.3-style ones.
    #[arg(long, env = "HERALD_AUTO_RENEW", default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_renew: bool,
    /// Delays between delivery attempts, e.g. `1m,5m,30m,2h,6h,12h`.
    #[arg(
        long,
        env = "HERALD_RETRY_SCHEDULE",
        default_value = "1m,5m,30m,2h,6h,12h"
    )]
    pub retry_schedule: RetrySchedule,
    /// The longest Retry-After (on 429/503) the hub honours.
    #[arg(long, env = "HERALD_MAX_RETRY_AFTER", default_value = "12h", value_parser = parse_duration)]
    pub max_retry_after: Duration,
    /// How feed topics are delivered unless a subscription asks otherwise: diff, single, full.
    #[arg(long, env = "HERALD_FEED_DELIVERY", default_value = "diff")]
    pub feed_delivery: DeliveryMode,
    /// HMAC for X-Hub-Signature: sha1, sha256, sha384 or sha512.
    #[arg(long, env = "HERALD_SIGNATURE_ALGORITHM", default_value = "sha256")]
    pub signature_algorithm: SignatureAlgorithm,
    /// HMAC for subscriptions made PuSH 0.3-style (they sent hub.verify): GNU social and StatusNet
    /// subscribers accept only sha1.
    #[arg(
        long,
        env = "HERALD_LEGACY_SIGNATURE_ALGORITHM",
        default_value = "sha1"
    )]
    pub legacy_signature_algorithm: SignatureAlgorithm,
    /// Largest request body accepted on the hub URL (bytes).
    #[arg(long, env = "HERALD_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    pub max_request_bytes: usize,
    /// Largest topic body the hub fetches and distributes (bytes).
    #[arg(long, env = "HERALD_MAX_TOPIC_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_topic_bytes: usize,
    /// How long a subscriber's callback may take to answer a verification GET.
    #[arg(long, env = "HERALD_VERIFY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub verify_timeout: Duration,
    /// How long a topic fetch may take, redirects included.
    #[arg(long, env = "HERALD_FETCH_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub fetch_timeout: Duration,
    /// How long a subscriber's callback may take to answer a delivery POST.
    #[arg(long, env = "HERALD_DELIVERY_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,
    /// Deliveries carried by one hubout job.
    #[arg(long, env = "HERALD_DELIVERY_BATCH", default_value_t = 500)]
    pub delivery_batch: usize,
    /// Concurrent POSTs within one hubout job.
    #[arg(long, env = "HERALD_DELIVERY_CONCURRENCY", default_value_t = 64)]
    pub delivery_concurrency: usize,
    /// How often idle queue workers (and the verifier) look for work pushed by other processes
    /// or come due.
    #[arg(long, env = "HERALD_QUEUE_POLL", default_value = "250ms", value_parser = parse_duration)]
    pub queue_poll: Duration,
    /// How often the reconciler re-enqueues pending work that no job covers.
    #[arg(long, env = "HERALD_RECONCILE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// open: anyone may subscribe and ping; closed: only topics matching HERALD_TOPIC_ALLOW, and
    /// pings on the hub URL need the producer token.
    #[arg(long, env = "HERALD_MODE", default_value = "open")]
    pub mode: HubMode,
    /// Comma-separated topic URL patterns a closed hub serves (matched as URLs: exact scheme,
    /// host and port; path by whole segments; * within a segment, ** across segments).
    #[arg(long, env = "HERALD_TOPIC_ALLOW", default_value = "")]
    pub topic_allow: TopicAllowList,
    /// Bearer token that /metrics asks for; unset: /metrics is open.
    #[arg(long, env = "HERALD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Redacted>,
    /// Bearer token of the producer API (and of pings on a closed hub); unset: API off.
    #[arg(long, env = "HERALD_PRODUCER_TOKEN", hide_env_values = true)]
    pub producer_token: Option<Redacted>,
    /// Bearer token of the admin API (/api/v1/admin/…: subscriptions, topics, failed
    /// deliveries, status); unset: that API is off. Keep it apart from the producer token.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Redacted>,
    /// A file holding the metrics token, instead of HERALD_METRICS_TOKEN (a variable or flag
    /// shows in the process's environment and in `ps`); its trailing newline is ignored.
    #[arg(
        long,
        env = "HERALD_METRICS_TOKEN_FILE",
        conflicts_with = "metrics_token"
    )]
    pub metrics_token_file: Option<std::path::PathBuf>,
    /// A file holding the producer API's token, instead of HERALD_PRODUCER_TOKEN.
    #[arg(
        long,
        env = "HERALD_PRODUCER_TOKEN_FILE",
        conflicts_with = "producer_token"
    )]
    pub producer_token_file: Option<std::path::PathBuf>,
    /// A file holding the admin API's token, instead of HERALD_ADMIN_TOKEN.
    #[arg(long, env = "HERALD_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// At most this many POSTs and verification GETs to one callback host (host and port) at
    /// once in this process; more wait their turn without using up an attempt.
    #[arg(long, env = "HERALD_MAX_PER_HOST", default_value_t = 64)]
    pub max_per_host: usize,
    /// At most this many topic fetches from one host at once in this process, so slow or
    /// failing topics of one host cannot take every fetch worker.
    #[arg(long, env = "HERALD_MAX_FETCHES_PER_HOST", default_value_t = 2)]
    pub max_fetches_per_host: usize,
    /// Which topics are fetched on a schedule, though nobody pinged (docs/polling.md): off;
    /// safety-net (topics whose publisher pinged or pushed before, at the pinged interval);
    /// all (every topic with a subscriber, at an interval learnt from its entry rate).
    #[arg(long, env = "HERALD_POLLING", default_value = "safety-net")]
    pub polling: PollingMode,
    /// The shortest interval between two polls of a topic.
    #[arg(long, env = "HERALD_POLL_MIN_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub poll_min_interval: Duration,
    /// The longest interval between two polls of a topic (also the cap of a failing topic's
    /// backoff and of a Retry-After).
    #[arg(long, env = "HERALD_POLL_MAX_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub poll_max_interval: Duration,
    /// The interval of a safety-net poll of a topic whose publisher pings (halved for each ping
    /// it was found to have missed, down to the minimum).
    #[arg(long, env = "HERALD_POLL_PINGED_INTERVAL", default_value = "6h", value_parser = parse_duration)]
    pub poll_pinged_interval: Duration,
    /// How long every fetch of a topic may fail before it is no longer polled (until a new
    /// subscriber or a ping asks for it again).
    #[arg(long, env = "HERALD_POLL_GIVE_UP_AFTER", default_value = "7d", value_parser = parse_duration)]
    pub poll_give_up_after: Duration,
    /// Polls this process starts, in all: COUNT/UNIT[,BURST] or off.
    #[arg(long, env = "HERALD_POLL_RATE", default_value = "100/s,100")]
    pub poll_rate: RateSetting,
    /// Polls of one host this process starts: COUNT/UNIT[,BURST] or off. A host's due topics
    /// are spread out at this rate, so thousands of feeds on one host do not arrive at once.
    #[arg(long, env = "HERALD_POLL_HOST_RATE", default_value = "1/s,4")]
    pub poll_host_rate: RateSetting,
    /// With HERALD_POLLING=all, the most feeds that never pinged (polled for their subscribers
    /// alone) one callback host (host:port) may subscribe to; a subscription beyond it is
    /// denied. 0: no cap.
    #[arg(
        long,
        env = "HERALD_POLL_MAX_PER_CALLBACK_HOST",
        default_value_t = 10_000
    )]
    pub poll_max_per_callback_host: u64,
    /// With HERALD_POLLING=all, the most feeds that never pinged the subscribe requests of one
    /// client address may have the hub poll; a subscription beyond it is denied. 0: no cap.
    #[arg(long, env = "HERALD_POLL_MAX_PER_SUBSCRIBER", default_value_t = 10_000)]
    pub poll_max_per_subscriber: u64,
    /// The most entries one `hub.mode=retrieve` answer gives (the latest stored body of the
    /// topic, cut to them; docs/polling.md, "Catch-up").
    #[arg(long, env = "HERALD_RETRIEVE_ENTRIES", default_value_t = 50)]
    pub retrieve_entries: usize,
    /// At most this many polls at once in this process.
    #[arg(long, env = "HERALD_POLL_CONCURRENCY", default_value_t = 64)]
    pub poll_concurrency: usize,
    /// After this many polls less one answered 304 Not Modified in a row, the next goes without
    /// ETag and Last-Modified, so that a server whose validators never change (answering 304
    /// to new content) is caught within this many polls. 0: never.
    #[arg(long, env = "HERALD_POLL_UNCONDITIONAL_EVERY", default_value_t = 20)]
    pub poll_unconditional_every: u32,
    /// Whether topic fetches tell publishers how many subscribers the topic has, in the
    /// User-Agent (`Herald/<version> (+<hub URL>; N subscribers)`, PuSH 0.3 §7.2).
    #[arg(long, env = "HERALD_SUBSCRIBER_COUNTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub subscriber_counts: bool,
    /// How long a callback host is paused after 5 connection failures or timeouts in a row
    /// (then probed; doubled up to 10 minutes while probes fail).
    #[arg(long, env = "HERALD_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    pub breaker_cooldown: Duration,
    /// At most this many `hub.verify=sync` verifications at once; beyond it requests get 503
    /// with Retry-After.
    #[arg(long, env = "HERALD_MAX_SYNC_VERIFICATIONS", default_value_t = 32)]
    pub max_sync_verifications: usize,
    /// How long a client may take to send a request's headers and body together.
    #[arg(long, env = "HERALD_CLIENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub client_timeout: Duration,
    /// Requests per client IP address on the hub URL and the APIs: COUNT/UNIT[,BURST] or off.
    /// Loopback and HERALD_TRUSTED_CLIENTS are not limited.
    #[arg(long, env = "HERALD_RATE_LIMIT", default_value = "20/s,100")]
    pub rate_limit: RateSetting,
    /// New subscription requests per client address and callback host together:
    /// COUNT/UNIT[,BURST] or off. A stranger's requests for a host use up the stranger's own
    /// allowance, never the host's own subscribers'.
    #[arg(long, env = "HERALD_SUBSCRIBE_RATE_LIMIT", default_value = "10/s,100")]
    pub subscribe_rate_limit: RateSetting,
    /// New subscription requests per callback host from every address together (what the hub
    /// may be made to send one host): COUNT/UNIT[,BURST] or off.
    #[arg(
        long,
        env = "HERALD_SUBSCRIBE_HOST_RATE_LIMIT",
        default_value = "100/s,1000"
    )]
    pub subscribe_host_rate_limit: RateSetting,
    /// How many leading bits of an IPv6 client address the rate limits count as one client
    /// (64: a subscriber's network; rotating addresses within it does not escape a limit).
    #[arg(long, env = "HERALD_CLIENT_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub client_ipv6_prefix: u8,
    /// Secrets tried on a subscription's details page, per client address and per subscription:
    /// COUNT/UNIT[,BURST] or off (a secret cannot be guessed by trying many).
    #[arg(long, env = "HERALD_SECRET_TRY_LIMIT", default_value = "5/m,10")]
    pub secret_try_limit: RateSetting,
    /// Comma-separated client addresses or CIDR ranges that no rate limit applies to (a
    /// producer, a load test); loopback never is.
    #[arg(long, env = "HERALD_TRUSTED_CLIENTS", default_value = "")]
    pub trusted_clients: AddressRanges,
    /// Comma-separated addresses or CIDR ranges of reverse proxies in front of the hub: for a
    /// request from one of them, the client is the last address in X-Forwarded-For that is not
    /// itself a trusted proxy. Unset: X-Forwarded-For is ignored.
    #[arg(long, env = "HERALD_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: AddressRanges,
    /// At most this many client connections at once per HTTP worker thread.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 25_000)]
    pub max_connections: usize,
    /// What this process runs: all (HTTP and queue workers), web, or worker.
    #[arg(long, env = "HERALD_ROLE", default_value = "all")]
    pub role: Role,
    /// Whether serve migrates the schema at start (true), or refuses to start on a schema
    /// older than this version (false: migrations are run by `herald migrate` alone).
    #[arg(long, env = "HERALD_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// The most updates kept for one live subscriber (SSE / WebSocket) until it consumes them;
    /// beyond it the oldest are dropped, and the subscriber is told how many.
    #[arg(long, env = "HERALD_LIVE_BACKLOG_MAX", default_value_t = 1000)]
    pub live_backlog_max: usize,
    /// How long an update waits for a live subscriber before it is dropped.
    #[arg(long, env = "HERALD_LIVE_BACKLOG_TTL", default_value = "7d", value_parser = parse_duration)]
    pub live_backlog_ttl: Duration,
    /// The longest a live token may be valid (`ttl_seconds` of POST /api/v1/live/tokens).
    #[arg(long, env = "HERALD_LIVE_TOKEN_MAX_TTL", default_value = "30d", value_parser = parse_duration)]
    pub live_token_max_ttl: Duration,
    /// How often an idle live connection gets a heartbeat (an SSE comment, a WebSocket ping),
    /// and its token is checked again.
    #[arg(long, env = "HERALD_LIVE_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub live_heartbeat: Duration,
    /// How often a process holding live connections looks for new updates without being told
    /// (a fallback: distributions notify at once, through PostgreSQL's NOTIFY across processes).
    #[arg(long, env = "HERALD_LIVE_POLL", default_value = "5s", value_parser = parse_duration)]
    pub live_poll: Duration,
    /// The most live connections (SSE and WebSocket) one process holds.
    #[arg(long, env = "HERALD_LIVE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub live_max_connections: usize,
    /// The most live connections open with one token at once.
    #[arg(long, env = "HERALD_LIVE_MAX_PER_TOKEN", default_value_t = 4)]
    pub live_max_per_token: usize,
    /// The most live connections from one client address (an IPv6 network) at once.
    #[arg(long, env = "HERALD_LIVE_MAX_PER_CLIENT", default_value_t = 32)]
    pub live_max_per_client: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Web,
    Worker,
}

impl Role {
    pub fn serves_http(self) -> bool {
        matches!(self, Self::All | Self::Web)
    }
    pub fn runs_workers(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}
