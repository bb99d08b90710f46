//! Configuration: `HERALD_*` environment variables (and an optional `.env`), each also a flag of
//! `herald serve`, parsed once into [`Settings`] made of domain types. `.env.example` lists every
//! setting with its default.

mod args;

use std::{net::SocketAddr, str::FromStr, time::Duration};

pub use self::args::{DatabaseArgs, DatabaseUrl, Redacted, Role, ServeArgs};
use crate::domain::{
    access::{BearerToken, HubMode, TopicAllowList},
    address::AddressPolicy,
    delivery_mode::DeliveryMode,
    lease::{LeaseBoundsError, LeasePolicy},
    poll::{PollBounds, PollingMode},
    rate::RateSetting,
    retry::RetryPolicy,
    secret::{Secret, SecretTooLong},
    signature::SignatureAlgorithm,
    url::{HubUrl, UrlError},
};

/// Validated settings, shared by the web side and the workers, grouped by the part of the hub
/// that needs them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub listen: SocketAddr,
    /// Where /metrics is served on a listener of its own (`None`: on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// `None`: derived from the address actually bound.
    pub public_url: Option<HubUrl>,
    pub role: Role,
    /// Whether `serve` migrates the schema at start (`HERALD_MIGRATE`).
    pub migrate: bool,
    /// Which addresses callbacks and topics may resolve to.
    pub address_policy: AddressPolicy,
    pub access: AccessSettings,
    pub lease: LeaseSettings,
    pub sweep: SweepSettings,
    pub verification: VerificationSettings,
    pub fetch: FetchSettings,
    pub delivery: DeliverySettings,
    pub queue: QueueSettings,
    pub live: LiveSettings,
    /// Where the producer's events are pushed (`HERALD_PRODUCER_EVENTS_URL`); `None`: nowhere.
    pub events_push: Option<EventsPush>,
}

/// The producer's endpoint for pushed events, and the key their signatures are made with.
#[derive(Debug, Clone)]
pub struct EventsPush {
    pub url: HubUrl,
    pub secret: Secret,
}

/// Live subscribers over SSE and WebSocket (`live`).
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub backlog_max: usize,
    pub backlog_ttl: Duration,
    pub token_max_ttl: Duration,
    pub heartbeat: Duration,
    pub poll: Duration,
    /// The most connections one process holds, in all.
    pub max_connections: usize,
    /// The most connections open with one token.
    pub max_per_token: usize,
    /// The most connections from one client address (an IPv6 network).
    pub max_per_client: usize,
}

/// Who may use the hub, and how much they may send.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub mode: HubMode,
    pub topic_allow: TopicAllowList,
    pub producer_token: Option<BearerToken>,
    pub max_request_bytes: usize,
    /// Headers and body of one request together.
    pub client_timeout: Duration,
    pub max_connections: usize,
    pub max_sync_verifications: usize,
    /// The most entries `hub.mode=retrieve` gives (`HERALD_RETRIEVE_ENTRIES`).
    pub retrieve_max: usize,
    /// Requests per client IP address (hub URL and APIs).
    pub rate_limit: RateSetting,
    /// New subscription requests per callback host.
    /// Per client address and callback host.
    pub subscribe_rate_limit: RateSetting,
    /// How many leading bits of an IPv6 address name one client for the limits.
    pub client_ipv6_prefix: u8,
    /// Secrets tried on the details pages, per client and per subscription.
    pub secret_try_limit: RateSetting,
    /// Per callback host, every address together.
    pub subscribe_host_rate_limit: RateSetting,
    /// Exempt from rate limits (besides loopback).
    pub trusted_clients: AddressRanges,
    /// What `/metrics` asks for, if anything.
    pub metrics_token: Option<BearerToken>,
    /// What the admin API asks for; none: that API is off.
    pub admin_token: Option<BearerToken>,
    /// Reverse proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: AddressRanges,
}

/// Comma-separated IP addresses and CIDR ranges (`HERALD_TRUSTED_CLIENTS`,
/// `HERALD_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRanges(Vec<ipnet::IpNet>);

/// An entry of an address list that is neither an address nor a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR range")]
pub struct NotAnAddress(String);

impl FromStr for AddressRanges {
    type Err = NotAnAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| NotAnAddress(p.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl AddressRanges {
    /// Inside one of the ranges (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = crate::domain::address::canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Leases granted, enforced and renewed (`upkeep::leases`).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub policy: LeasePolicy,
    pub renew_before: Duration,
    pub auto_renew: bool,
}

/// The periodic sweep (`upkeep::sweep`): leases, backlog caps, retention.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub interval: Duration,
    /// How long finished rows are kept.
    pub retention: Duration,
    /// How long failed deliveries are kept.
    pub failed_retention: Duration,
    /// How long the producer's events are kept.
    pub events_retention: Duration,
}

/// Verification of intent (`verification`).
#[derive(Debug, Clone)]
pub struct VerificationSettings {
    pub timeout: Duration,
    /// Whether feeds that never pinged are polled (`HERALD_POLLING=all`), and so subject to
    /// the caps below.
    pub polls_unpinged: bool,
    /// The caps on feeds that never pinged, per callback host and per client address
    /// (`HERALD_POLL_MAX_PER_CALLBACK_HOST`, `HERALD_POLL_MAX_PER_SUBSCRIBER`; `None`: none).
    pub poll_cap_per_callback_host: Option<u64>,
    pub poll_cap_per_subscriber: Option<u64>,
}

/// Topic fetches (`distribution`).
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub timeout: Duration,
    pub max_bytes: usize,
    /// Concurrent fetches from one topic host.
    pub max_per_host: usize,
    /// Whether fetches carry the topic's subscriber count in their User-Agent.
    pub subscriber_counts: bool,
    pub poll: PollSettings,
}

/// Polling topics on a schedule (docs/polling.md).
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub mode: PollingMode,
    pub bounds: PollBounds,
    /// Polls at once in one process.
    pub concurrency: usize,
    /// Polls started per process, in all.
    pub rate: RateSetting,
    /// Polls started per host, per process.
    pub host_rate: RateSetting,
    /// After this many polls less one answered 304 in a row, the next goes without validators
    /// (`None`: never).
    pub unconditional_every: Option<u32>,
}

/// Content distribution (`delivery`, and the documents `distribution` plans).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    pub signature_algorithm: SignatureAlgorithm,
    pub legacy_signature_algorithm: SignatureAlgorithm,
    /// How feeds are delivered to subscriptions that did not choose.
    pub feed_default: DeliveryMode,
    pub timeout: Duration,
    /// Deliveries per hubout job.
    pub batch: usize,
    /// Concurrent POSTs per hubout job.
    pub concurrency: usize,
    /// The most deliveries that may wait for one subscription.
    pub max_pending: usize,
    /// Concurrent requests (deliveries and verifications) to one callback host.
    pub max_per_host: usize,
    /// How long an unreachable callback host is paused before a probe.
    pub breaker_cooldown: Duration,
}

/// The queue workers and the reconciler (`queue`, `upkeep::reconcile`).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub poll: Duration,
    pub reconcile_interval: Duration,
}

/// Settings that cannot run a hub, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("HERALD_PUBLIC_URL {error}: {url:?}")]
    PublicUrl {
        url: String,
        #[source]
        error: UrlError,
    },
    #[error("HERALD_MODE=closed needs HERALD_TOPIC_ALLOW (the producer's topic URL prefixes)")]
    ClosedWithoutTopics,
    #[error(transparent)]
    Lease(#[from] LeaseBoundsError),
    #[error("{0} must be at least 1")]
    NotPositive(&'static str),
    #[error(
        "HERALD_POLL_MIN_INTERVAL ({min:?}) must be positive and no longer than HERALD_POLL_MAX_INTERVAL ({max:?})"
    )]
    PollBounds { min: Duration, max: Duration },
    #[error(transparent)]
    DatabaseUrlFile(#[from] args::DatabaseUrlFileError),
    /// A `*_FILE` setting whose file cannot be read.
    #[error("{setting}: cannot read {path}")]
    SecretFile {
        setting: &'static str,
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("HERALD_PRODUCER_EVENTS_URL {error}: {url:?}")]
    EventsPushUrl {
        url: String,
        #[source]
        error: UrlError,
    },
    #[error(
        "HERALD_PRODUCER_EVENTS_URL needs HERALD_PRODUCER_EVENTS_SECRET (pushed events are signed)"
    )]
    EventsPushWithoutSecret,
    #[error("HERALD_PRODUCER_EVENTS_SECRET is set but HERALD_PRODUCER_EVENTS_URL is not")]
    EventsSecretWithoutUrl,
    #[error("HERALD_PRODUCER_EVENTS_SECRET must be shorter than 200 bytes (it has {})", .0.0)]
    EventsPushSecret(SecretTooLong),
    /// A flag or variable that does not parse (clap's own message).
    #[error(transparent)]
    Args(#[from] clap::Error),
}

/// The polling intervals, checked: a positive minimum no longer than the maximum; the pinged
/// interval is held within them.
fn poll_bounds(a: &args::ServeArgs) -> Result<PollBounds, ConfigError> {
    let (min, max) = (a.poll_min_interval, a.poll_max_interval);
    if min.is_zero() || min > max {
        return Err(ConfigError::PollBounds { min, max });
    }
    Ok(PollBounds {
        min,
        max,
        pinged: a.poll_pinged_interval.clamp(min, max),
        give_up: a.poll_give_up_after,
    })
}

/// A bearer token given as a value, or read from a file (its trailing newline dropped).
fn token(
    value: Option<&Redacted>,
    file: Option<&std::path::Path>,
    setting: &'static str,
) -> Result<Option<BearerToken>, ConfigError> {
    Ok(secret_text(value, file, setting)?.and_then(|t| BearerToken::new(&t)))
}

/// A secret given as a value or in a file (`setting`, the file's variable, names it in an
/// error); the file's trailing newline is not part of it.
fn secret_text(
    value: Option<&Redacted>,
    file: Option<&std::path::Path>,
    setting: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(value), _) => Ok(Some(value.expose().to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::SecretFile {
                setting,
                path: path.display().to_string(),
                error,
            })?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// `HERALD_PRODUCER_EVENTS_URL` and its secret, both or neither.
fn events_push(a: &ServeArgs) -> Result<Option<EventsPush>, ConfigError> {
    let secret = secret_text(
        a.producer_events_secret.as_ref(),
        a.producer_events_secret_file.as_deref(),
        "HERALD_PRODUCER_EVENTS_SECRET_FILE",
    )?
    .filter(|s| !s.is_empty());
    let url = a.producer_events_url.as_deref().filter(|u| !u.is_empty());
    match (url, secret) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::EventsSecretWithoutUrl),
        (Some(_), None) => Err(ConfigError::EventsPushWithoutSecret),
        (Some(url), Some(secret)) => Ok(Some(EventsPush {
            url: HubUrl::parse(url).map_err(|error| ConfigError::EventsPushUrl {
                url: url.to_owned(),
                error,
            })?,
            secret: Secret::parse(Some(&secret))
                .map_err(ConfigError::EventsPushSecret)?
                .ok_or(ConfigError::EventsPushWithoutSecret)?,
        })),
    }
}

impl TryFrom<ServeArgs> for Settings {
    type Error = ConfigError;

    fn try_from(a: ServeArgs) -> Result<Self, Self::Error> {
        let poll_bounds = poll_bounds(&a)?;
        let events_push = events_push(&a)?;
        let public_url = a
            .public_url
            .as_deref()
            .map(|u| {
                HubUrl::parse(u).map_err(|error| ConfigError::PublicUrl {
                    url: u.to_owned(),
                    error,
                })
            })
            .transpose()?;
        if a.mode == HubMode::Closed && a.topic_allow.is_empty() {
            return Err(ConfigError::ClosedWithoutTopics);
        }
        let lease = LeasePolicy::new(
            a.lease_min_seconds,
            a.lease_default_seconds,
            a.lease_max_seconds,
        )?;
        let positive = |name: &'static str, v: usize| {
            if v == 0 {
                Err(ConfigError::NotPositive(name))
            } else {
                Ok(v)
            }
        };
        Ok(Self {
            database_url: a.database.url()?,
            listen: a.listen,
            metrics_listen: a.metrics_listen,
            public_url,
            role: a.role,
            migrate: a.migrate,
            address_policy: a.allow_private_addresses,
            access: AccessSettings {
                mode: a.mode,
                topic_allow: a.topic_allow,
                producer_token: token(
                    a.producer_token.as_ref(),
                    a.producer_token_file.as_deref(),
                    "HERALD_PRODUCER_TOKEN_FILE",
                )?,
                max_request_bytes: positive("HERALD_MAX_REQUEST_BYTES", a.max_request_bytes)?,
                client_timeout: a.client_timeout,
                max_connections: positive("HERALD_MAX_CONNECTIONS", a.max_connections)?,
                max_sync_verifications: positive(
                    "HERALD_MAX_SYNC_VERIFICATIONS",
                    a.max_sync_verifications,
                )?,
                retrieve_max: positive("HERALD_RETRIEVE_ENTRIES", a.retrieve_entries)?,
                rate_limit: a.rate_limit,
                subscribe_rate_limit: a.subscribe_rate_limit,
                subscribe_host_rate_limit: a.subscribe_host_rate_limit,
                client_ipv6_prefix: a.client_ipv6_prefix,
                secret_try_limit: a.secret_try_limit,
                trusted_clients: a.trusted_clients,
                metrics_token: token(
                    a.metrics_token.as_ref(),
                    a.metrics_token_file.as_deref(),
                    "HERALD_METRICS_TOKEN_FILE",
                )?,
                admin_token: token(
                    a.admin_token.as_ref(),
                    a.admin_token_file.as_deref(),
                    "HERALD_ADMIN_TOKEN_FILE",
                )?,
                trusted_proxies: a.trusted_proxies,
            },
            lease: LeaseSettings {
                policy: lease,
                renew_before: a.renew_before,
                auto_renew: a.auto_renew,
            },
            sweep: SweepSettings {
                interval: a
                    .sweep_interval
                    .or(a.lease_sweep_interval)
                    .unwrap_or(Duration::from_secs(30)),
                retention: a.retention,
                failed_retention: a.failed_retention,
                events_retention: a.events_retention,
            },
            verification: VerificationSettings {
                timeout: a.verify_timeout,
                polls_unpinged: a.polling == PollingMode::All,
                poll_cap_per_callback_host: (a.poll_max_per_callback_host > 0)
                    .then_some(a.poll_max_per_callback_host),
                poll_cap_per_subscriber: (a.poll_max_per_subscriber > 0)
                    .then_some(a.poll_max_per_subscriber),
            },
            fetch: FetchSettings {
                timeout: a.fetch_timeout,
                max_bytes: positive("HERALD_MAX_TOPIC_BYTES", a.max_topic_bytes)?,
                max_per_host: positive("HERALD_MAX_FETCHES_PER_HOST", a.max_fetches_per_host)?,
                subscriber_counts: a.subscriber_counts,
                poll: PollSettings {
                    mode: a.polling,
                    bounds: poll_bounds,
                    concurrency: positive("HERALD_POLL_CONCURRENCY", a.poll_concurrency)?,
                    rate: a.poll_rate,
                    host_rate: a.poll_host_rate,
                    unconditional_every: (a.poll_unconditional_every > 0)
                        .then_some(a.poll_unconditional_every),
                },
            },
            events_push,
            live: LiveSettings {
                backlog_max: positive("HERALD_LIVE_BACKLOG_MAX", a.live_backlog_max)?,
                backlog_ttl: a.live_backlog_ttl,
                token_max_ttl: a.live_token_max_ttl,
                heartbeat: a.live_heartbeat.max(Duration::from_millis(100)),
                poll: a.live_poll.max(Duration::from_millis(100)),
                max_connections: positive("HERALD_LIVE_MAX_CONNECTIONS", a.live_max_connections)?,
                max_per_token: positive("HERALD_LIVE_MAX_PER_TOKEN", a.live_max_per_token)?,
                max_per_client: positive("HERALD_LIVE_MAX_PER_CLIENT", a.live_max_per_client)?,
            },
            delivery: DeliverySettings {
                retry: RetryPolicy::new(a.retry_schedule, a.max_retry_after),
                signature_algorithm: a.signature_algorithm,
                legacy_signature_algorithm: a.legacy_signature_algorithm,
                feed_default: a.feed_delivery,
                timeout: a.delivery_timeout,
                batch: positive("HERALD_DELIVERY_BATCH", a.delivery_batch)?,
                concurrency: positive("HERALD_DELIVERY_CONCURRENCY", a.delivery_concurrency)?,
                max_pending: positive(
                    "HERALD_MAX_PENDING_PER_SUBSCRIPTION",
                    a.max_pending_per_subscription,
                )?,
                max_per_host: positive("HERALD_MAX_PER_HOST", a.max_per_host)?,
                breaker_cooldown: a.breaker_cooldown,
            },
            queue: QueueSettings {
                poll: a.queue_poll,
                reconcile_interval: a.reconcile_interval,
            },
        })
    }
}

impl Settings {
    /// What is valid but risky in these settings, one sentence each (logged at start and
    /// shown by `check-config`).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.address_policy
            == AddressPolicy::AllowLoopback(crate::domain::address::LoopbackPorts::Any)
        {
            warnings.push(
                "HERALD_ALLOW_PRIVATE_ADDRESSES=loopback opens every local port to callbacks and \
                 topics; name the ports, for example loopback:8000,9000"
                    .to_owned(),
            );
        }
        warnings.extend(self.unreachable_hub_url());
        warnings.extend(self.events_push_refused());
        warnings
    }

    /// Why every push to `HERALD_PRODUCER_EVENTS_URL` would be refused, if it would: its host
    /// is an IP address the address policy does not let deliveries reach (a name is resolved
    /// and checked at each POST).
    fn events_push_refused(&self) -> Option<String> {
        let push = self.events_push.as_ref()?;
        let url = push.url.as_url();
        let ip: std::net::IpAddr = match url.host()? {
            url::Host::Ipv4(ip) => ip.into(),
            url::Host::Ipv6(ip) => ip.into(),
            url::Host::Domain(_) => return None,
        };
        let port = url.port_or_known_default().unwrap_or(80);
        (!self.address_policy.permits(ip, port)).then(|| {
            format!(
                "HERALD_PRODUCER_EVENTS_URL is on {ip}, which HERALD_ALLOW_PRIVATE_ADDRESSES does \
                 not let the hub reach: every push would fail; allow it (for example \
                 loopback:{port}) or use another address"
            )
        })
    }

    /// Why the hub URL deliveries name cannot be reached by subscribers, if it cannot: the
    /// listen address `0.0.0.0` (or `::`) standing in for a missing `HERALD_PUBLIC_URL`, or a
    /// loopback URL while the hub listens beyond loopback. `check-config` fails on it; `serve`
    /// warns (a hub for local tests may mean it).
    pub fn unreachable_hub_url(&self) -> Option<String> {
        let Some(public) = &self.public_url else {
            return self.listen.ip().is_unspecified().then(|| {
                format!(
                    "HERALD_LISTEN is {} and HERALD_PUBLIC_URL is unset: deliveries would name \
                     http://{}/hub as the hub, which no subscriber can reach; set HERALD_PUBLIC_URL",
                    self.listen, self.listen
                )
            });
        };
        let loopback = match public.as_url().host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        (loopback && !self.listen.ip().is_loopback()).then(|| {
            format!(
                "HERALD_PUBLIC_URL is {public}, a loopback address, while the hub listens on {}: \
                 subscribers elsewhere cannot reach it; set HERALD_PUBLIC_URL to the address they use",
                self.listen
            )
        })
    }

    /// Settings as `herald serve` would build them with no flags and only `vars` set; used by
    /// tests and by `check-config`.
    pub fn from_vars<'a>(
        vars: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Self, ConfigError> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut args = vec!["herald".to_owned()];
        for (name, value) in vars {
            let flag = name
                .trim_start_matches("HERALD_")
                .to_ascii_lowercase()
                .replace('_', "-");
            args.push(format!("--{flag}={value}"));
        }
        let parsed = <Wrapper as clap::Parser>::try_parse_from(args)?;
        Self::try_from(parsed.serve)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn the_database_url_can_be_read_from_a_file() {
        let path = std::env::temp_dir().join(format!("herald-db-url-{}", std::process::id()));
        std::fs::write(&path, "postgres://herald:s3cret@db.example/herald\n").unwrap();
        let settings =
            Settings::from_vars([("HERALD_DATABASE_URL_FILE", path.display().to_string())])
                .expect("valid settings");
        assert_eq!(
            settings.database_url.expose(),
            "postgres://herald:s3cret@db.example/herald"
        );
        assert!(!format!("{:?}", settings.database_url).contains("s3cret"));
        std::fs::remove_file(&path).unwrap();
        let missing =
            Settings::from_vars([("HERALD_DATABASE_URL_FILE", path.display().to_string())])
                .expect_err("an unreadable file is refused");
        assert!(
            missing.to_string().contains("HERALD_DATABASE_URL_FILE"),
            "{missing}"
        );
    }

    #[test]
    fn the_events_push_needs_its_url_and_its_secret_together() {
        let url = (
            "HERALD_PRODUCER_EVENTS_URL",
            "https://producer.example/herald".to_owned(),
        );
        let secret = ("HERALD_PRODUCER_EVENTS_SECRET", "k".to_owned());
        let push = Settings::from_vars([url.clone(), secret.clone()])
            .expect("valid settings")
            .events_push
            .expect("a push");
        assert_eq!(push.url.as_str(), "https://producer.example/herald");
        assert!(push.secret.matches("k"));
        for (vars, says) in [
            (vec![url.clone()], "needs HERALD_PRODUCER_EVENTS_SECRET"),
            (vec![secret.clone()], "HERALD_PRODUCER_EVENTS_URL is not"),
            (
                vec![
                    ("HERALD_PRODUCER_EVENTS_URL", "ftp://x/".to_owned()),
                    secret.clone(),
                ],
                "HERALD_PRODUCER_EVENTS_URL",
            ),
            (
                vec![
                    url.clone(),
                    ("HERALD_PRODUCER_EVENTS_SECRET", "k".repeat(200)),
                ],
                "shorter than 200 bytes",
            ),
        ] {
            let error = Settings::from_vars(vars).expect_err(says).to_string();
            assert!(error.contains(says), "{error}");
        }
        assert!(
            Settings::from_vars([])
                .expect("valid")
                .events_push
                .is_none()
        );
        // A push to an address the hub may not reach is warned about.
        let local = (
            "HERALD_PRODUCER_EVENTS_URL",
            "http://127.0.0.1:8088/events".to_owned(),
        );
        let warned = Settings::from_vars([local.clone(), secret.clone()]).expect("valid");
        assert!(
            warned
                .warnings()
                .iter()
                .any(|w| w.contains("every push would fail")),
            "{:?}",
            warned.warnings()
        );
        let allowed = Settings::from_vars([
            local,
            secret,
            ("HERALD_ALLOW_PRIVATE_ADDRESSES", "loopback:8088".to_owned()),
        ])
        .expect("valid");
        assert!(allowed.warnings().iter().all(|w| !w.contains("push")));
    }

    #[test]
    fn tokens_can_be_read_from_files_but_not_given_twice() {
        let path = std::env::temp_dir().join(format!("herald-token-{}", std::process::id()));
        std::fs::write(&path, "from-a-file\n").unwrap();
        let file = path.display().to_string();
        let settings = Settings::from_vars([("HERALD_PRODUCER_TOKEN_FILE", file.clone())])
            .expect("valid settings");
        let token = settings.access.producer_token.expect("a token");
        assert!(token.authorizes(Some("Bearer from-a-file")));
        assert!(!token.authorizes(Some("Bearer from-a-fil")));
        let both = Settings::from_vars([
            ("HERALD_ADMIN_TOKEN_FILE", file.clone()),
            ("HERALD_ADMIN_TOKEN", "given".to_owned()),
        ]);
        assert!(both.is_err(), "a token and its file together are refused");
        std::fs::remove_file(&path).unwrap();
        let missing = Settings::from_vars([("HERALD_METRICS_TOKEN_FILE", file)])
            .expect_err("an unreadable file is refused");
        assert!(
            missing.to_string().contains("HERALD_METRICS_TOKEN_FILE"),
            "{missing}"
        );
    }

    #[test]
    fn every_flag_of_serve_says_what_it_is() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let command = <Wrapper as clap::CommandFactory>::command();
        let silent: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_help().is_none() && a.get_long().is_some())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(silent.is_empty(), "flags without help: {silent:?}");
    }

    #[test]
    fn every_duration_setting_takes_one_form_and_refuses_overflow() {
        let too_long =
            Settings::from_vars([("HERALD_RETRY_SCHEDULE", "10s,213503982335d".to_owned())]);
        let error = too_long.expect_err("an overflowing retry delay is refused");
        assert!(error.to_string().contains("longer than"), "{error}");
        let error = Settings::from_vars([("HERALD_RETENTION", "213503982335d".to_owned())])
            .expect_err("refused");
        assert!(error.to_string().contains("longer than"), "{error}");
        let settings = Settings::from_vars([
            ("HERALD_LEASE_DEFAULT_SECONDS", "10d".to_owned()),
            ("HERALD_LEASE_MAX_SECONDS", "30d".to_owned()),
            ("HERALD_RETENTION", "1h30m".to_owned()),
            ("HERALD_RETRY_SCHEDULE", "30s,5m,1h30m".to_owned()),
        ])
        .expect("valid");
        assert_eq!(settings.lease.policy.grant(None), 864_000);
        assert_eq!(settings.lease.policy.max(), 2_592_000);
        assert_eq!(settings.sweep.retention, Duration::from_secs(5400));
        let settings = Settings::from_vars([("HERALD_LEASE_MIN_SECONDS", "120".to_owned())])
            .expect("bare numbers stay seconds");
        assert_eq!(settings.lease.policy.grant(Some(1)), 120);
    }

    #[test]
    fn settings_never_print_passwords_or_tokens() {
        let settings = Settings::from_vars([
            (
                "HERALD_DATABASE_URL",
                "postgres://herald:hunter2@db.internal:5432/herald".to_owned(),
            ),
            ("HERALD_PRODUCER_TOKEN", "tok-123-secret".to_owned()),
        ])
        .expect("valid");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("tok-123-secret"), "{printed}");
        assert!(printed.contains("postgres://herald:***@db.internal:5432/herald"));
        assert_eq!(
            settings.database_url.expose(),
            "postgres://herald:hunter2@db.internal:5432/herald"
        );
        assert_eq!(
            crate::domain::url::redact_password("sqlite://herald.db"),
            "sqlite://herald.db"
        );
    }
}
