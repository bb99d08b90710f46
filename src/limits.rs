//! Limits that keep one party from occupying the hub: requests per client address (token
//! buckets, `governor`), new subscription requests per callback host, requests in flight to
//! one callback host, and synchronous verifications at once. In-process: each Herald process
//! applies them to what it receives and sends itself.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    config::{AccessSettings, AddressRanges, DeliverySettings, FetchSettings},
    domain::{
        breaker::{Admission, Breaker, Reached},
        ids::{SubscriptionId, UnixMs},
        rate::RateLimit,
        url::HubUrl,
    },
};

#[derive(Debug)]
pub struct Limits {
    /// Delivery batches being sent at once in this process, including those their jobs left
    /// to finish in the background.
    pipelines: Arc<Semaphore>,
    /// Small fan-outs being sent by the process that made them, outside the queue
    /// (`delivery::Express`).
    express: Arc<Semaphore>,
    per_host: HostSlots,
    fetches_per_host: HostSlots,
    breakers: Mutex<HashMap<String, Breaker>>,
    breaker_cooldown: Duration,
    sync_verifications: Arc<Semaphore>,
    clients: Option<Buckets<Option<IpAddr>>>,
    /// How many leading bits of an IPv6 client address name the client.
    ipv6_prefix: u8,
    /// New subscription requests per (client, callback host): one party's requests use up its
    /// own allowance only.
    subscriptions_per_client_host: Option<Buckets<(Option<IpAddr>, String)>>,
    /// New subscription requests per callback host, every client together.
    subscriptions_per_host: Option<Buckets<String>>,
    /// Secrets tried on the details pages, per client and per subscription.
    secret_tries: Option<(Buckets<Option<IpAddr>>, Buckets<SubscriptionId>)>,
    trusted: AddressRanges,
    /// Polls this process may start, in all.
    poll_budget: Option<governor::DefaultDirectRateLimiter>,
    /// When each topic host may be polled next.
    poll_hosts: Option<HostCalendar>,
}

impl Limits {
    /// The limits the sections `access`, `delivery` and `fetch` of the settings set.
    pub fn new(
        access: &AccessSettings,
        delivery: &DeliverySettings,
        fetch: &FetchSettings,
    ) -> Self {
        Self {
            pipelines: Arc::new(Semaphore::new(MAX_DELIVERY_PIPELINES)),
            express: Arc::new(Semaphore::new(MAX_EXPRESS_RUNS)),
            per_host: HostSlots::new(delivery.max_per_host),
            fetches_per_host: HostSlots::new(fetch.max_per_host),
            breakers: Mutex::new(HashMap::new()),
            breaker_cooldown: delivery.breaker_cooldown,
            sync_verifications: Arc::new(Semaphore::new(access.max_sync_verifications)),
            clients: access.rate_limit.0.map(Buckets::new),
            ipv6_prefix: access.client_ipv6_prefix,
            subscriptions_per_client_host: access.subscribe_rate_limit.0.map(Buckets::new),
            subscriptions_per_host: access.subscribe_host_rate_limit.0.map(Buckets::new),
            secret_tries: access
                .secret_try_limit
                .0
                .map(|rate| (Buckets::new(rate), Buckets::new(rate))),
            trusted: access.trusted_clients.clone(),
            poll_budget: fetch
                .poll
                .rate
                .0
                .map(|rate| RateLimiter::direct(quota(rate))),
            poll_hosts: fetch.poll.host_rate.0.map(HostCalendar::new),
        }
    }

    /// Takes up to `want` polls from this process's budget: how many it may start now, and,
    /// when none, how long until one.
    pub fn poll_budget(&self, want: usize) -> (usize, Duration) {
        let Some(budget) = &self.poll_budget else {
            return (want, Duration::ZERO);
        };
        let mut taken = 0;
        while taken < want {
            match budget.check() {
                Ok(()) => taken += 1,
                Err(not_until) if taken == 0 => {
                    return (0, not_until.wait_time_from(DefaultClock::default().now()));
                }
                Err(_) => break,
            }
        }
        (taken, Duration::ZERO)
    }

    /// When a poll of `topic`'s host may start, booked now: `now` itself, or a later slot at
    /// the host's rate (the topic is then put off until it).
    pub fn poll_host_slot(&self, topic: &HubUrl, now: UnixMs) -> UnixMs {
        match &self.poll_hosts {
            Some(calendar) => calendar.book(&host_key(topic), now),
            None => now,
        }
    }

    /// Whether a request to `host` (see [`host_key`]) may go now, by its circuit breaker
    /// (`domain::breaker`).
    pub fn breaker_admit(&self, host: &str, now: UnixMs) -> Admission {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match breakers.get_mut(host) {
            Some(breaker) => breaker.admit(now),
            None => Admission::Go,
        }
    }

    /// Records whether `host` answered. When its breaker opened or closed, returns
    /// `Some(Some(retry_at))` (open) or `Some(None)` (closed), for operators to see.
    pub fn breaker_record(
        &self,
        host: &str,
        reached: Reached,
        now: UnixMs,
    ) -> Option<Option<UnixMs>> {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if reached == Reached::Answered && !breakers.contains_key(host) {
            return None;
        }
        if breakers.len() > FORGET_IDLE_ABOVE {
            breakers.retain(|_, b| !b.is_closed());
        }
        let breaker = breakers
            .entry(host.to_owned())
            .or_insert_with(|| Breaker::new(self.breaker_cooldown));
        if !breaker.record(reached, now) {
            return None;
        }
        let retry_at = match breaker.state() {
            crate::domain::breaker::BreakerState::Open { until, .. } => Some(until),
            _ => None,
        };
        if retry_at.is_none() {
            breakers.remove(host);
        }
        Some(retry_at)
    }

    /// Loopback, or `HERALD_TRUSTED_CLIENTS`.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        crate::domain::address::canonical(ip).is_loopback() || self.trusted.contains(ip)
    }

    /// Whether `client` may make one more request; `Err` says how long it should wait.
    /// Loopback and trusted clients are never limited.
    /// A client not known (`None`: a proxy forwarded something that is no address) is limited
    /// under one allowance shared by all such requests. IPv6 clients are limited per network
    /// (`HERALD_CLIENT_IPV6_PREFIX`).
    pub fn admit_client(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        match (client, &self.clients) {
            (Some(ip), _) if self.is_trusted(ip) => Ok(()),
            (client, Some(buckets)) => buckets.admit(&self.client_key(client)),
            (_, None) => Ok(()),
        }
    }

    /// The key a client counts under for per-client caps (its address, an IPv6 client's
    /// network; `Some(None)`: not known), or `None` when it is trusted and not limited.
    pub fn limited_key(&self, client: Option<IpAddr>) -> Option<Option<IpAddr>> {
        match client {
            Some(ip) if self.is_trusted(ip) => None,
            client => Some(self.client_key(client)),
        }
    }

    /// The key a client is limited under.
    fn client_key(&self, client: Option<IpAddr>) -> Option<IpAddr> {
        client.map(|ip| crate::domain::address::limit_key(ip, self.ipv6_prefix))
    }

    /// Whether `client` may try one more secret on `subscription`'s details page: within its
    /// own allowance and within the subscription's, so that neither one address nor many can
    /// guess a secret by trying. Trusted clients are not limited.
    pub fn admit_secret_try(
        &self,
        client: Option<IpAddr>,
        subscription: SubscriptionId,
    ) -> Result<(), Duration> {
        match (client, &self.secret_tries) {
            (Some(ip), _) if self.is_trusted(ip) => Ok(()),
            (client, Some((per_client, per_subscription))) => {
                per_client.admit(&self.client_key(client))?;
                per_subscription.admit(&subscription)
            }
            (_, None) => Ok(()),
        }
    }

    /// Whether `client` may send one more subscription request for `callback`'s host: within
    /// its own allowance for that host, and within the host's allowance from every client.
    pub fn admit_subscription(
        &self,
        client: Option<IpAddr>,
        callback: &HubUrl,
    ) -> Result<(), Duration> {
        if client.is_some_and(|ip| self.is_trusted(ip)) {
            return Ok(());
        }
        let host = callback.as_url().host_str().unwrap_or_default().to_owned();
        if let Some(buckets) = &self.subscriptions_per_client_host {
            buckets.admit(&(self.client_key(client), host.clone()))?;
        }
        match &self.subscriptions_per_host {
            Some(buckets) => buckets.admit(&host),
            None => Ok(()),
        }
    }

    /// A slot for one request to `host` (see [`host_key`]), or `None` when that host already
    /// has its share in flight (the caller defers the request rather than wait in line).
    pub fn host_slot(&self, host: &str) -> Option<OwnedSemaphorePermit> {
        self.per_host.semaphore(host).try_acquire_owned().ok()
    }

    /// As [`Limits::host_slot`], waiting up to `wait` for a slot to come free: a busy but fast
    /// host (one server behind thousands of subscriptions) frees slots within milliseconds, so
    /// its requests wait briefly instead of being deferred; a slow host's are deferred.
    pub async fn host_slot_within(
        &self,
        host: &str,
        wait: std::time::Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.per_host.semaphore(host);
        if let Ok(slot) = semaphore.clone().try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// A slot for one batch of deliveries being sent (waits for one).
    pub async fn delivery_pipeline(
        &self,
    ) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
        self.pipelines.clone().acquire_owned().await
    }

    /// A slot for sending one small fan-out at once, outside the queue, or `None` when this
    /// many are being sent already (the fan-out's job is then due at once, as any other).
    pub fn express_delivery(&self) -> Option<OwnedSemaphorePermit> {
        self.express.clone().try_acquire_owned().ok()
    }

    /// A slot for one fetch from `topic`'s host, or `None` when that host already has its
    /// share of fetches running (the caller puts the fetch back for a moment).
    pub fn fetch_slot(&self, topic: &HubUrl) -> Option<OwnedSemaphorePermit> {
        self.fetches_per_host
            .semaphore(&host_key(topic))
            .try_acquire_owned()
            .ok()
    }

    /// A slot for one synchronous verification, or `None` when too many are running.
    pub fn sync_verification(&self) -> Option<OwnedSemaphorePermit> {
        self.sync_verifications.clone().try_acquire_owned().ok()
    }
}

/// Delivery batches sent at once per process: the queue runs 4 hubout jobs at a time, and a
/// job whose batch is held up by slow callbacks leaves it running (`delivery`), so up to
/// this many can be in flight.
const MAX_DELIVERY_PIPELINES: usize = 64;

/// Small fan-outs sent at once by the process that made them (`delivery::Express`); beyond
/// these, small fan-outs go through the queue. Each holds one delivery pipeline while it sends.
const MAX_EXPRESS_RUNS: usize = 16;

/// How long a delivery waits for a slot of its callback host before it is deferred.
pub const HOST_SLOT_WAIT: Duration = Duration::from_millis(250);

/// How long a delivery or verification whose callback host is at its concurrency cap waits
/// before it tries again.
pub const HOST_BUSY_DEFER: Duration = Duration::from_millis(500);

/// A callback host as limits count it: host and port (one server).
pub fn host_key(url: &HubUrl) -> String {
    url.host_key()
}

fn quota(rate: RateLimit) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::with_period(rate.replenish_every())
        .unwrap_or_else(|| Quota::per_second(one))
        .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(one))
}

/// Each host's next free slot at a rate (with a burst): polls of one host are spread out
/// rather than refused, each booked at the slot after the last.
#[derive(Debug)]
struct HostCalendar {
    every: Duration,
    burst: u32,
    next: Mutex<HashMap<String, UnixMs>>,
}

impl HostCalendar {
    fn new(rate: RateLimit) -> Self {
        Self {
            every: rate.replenish_every(),
            burst: rate.burst.max(1),
            next: Mutex::new(HashMap::new()),
        }
    }

    fn book(&self, host: &str, now: UnixMs) -> UnixMs {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.len() > FORGET_IDLE_ABOVE {
            next.retain(|_, at| *at > now);
        }
        let earliest = now.before(self.every * (self.burst - 1));
        let slot = next.get(host).map_or(earliest, |at| (*at).max(earliest));
        next.insert(host.to_owned(), slot.after(self.every));
        slot.max(now)
    }
}

/// A token bucket per key.
struct Buckets<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Buckets<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("keys", &self.limiter.len())
            .finish()
    }
}

/// Every this many checks, the buckets of keys that have gone quiet are dropped.
const FORGET_QUIET_EVERY: u64 = 4096;

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: RateLimit) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota(rate)),
            checks: AtomicU64::new(0),
        }
    }

    fn admit(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_QUIET_EVERY
            == FORGET_QUIET_EVERY - 1
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// One semaphore per callback host (host and port: one server), created on first use.
#[derive(Debug)]
struct HostSlots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Past this many hosts the idle ones are forgotten, so the map stays small.
const FORGET_IDLE_ABOVE: usize = 10_000;

impl HostSlots {
    fn new(per_host: usize) -> Self {
        Self {
            per_host,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(semaphore) = hosts.get(host) {
            return semaphore.clone();
        }
        if hosts.len() > FORGET_IDLE_ABOVE {
            let full = self.per_host;
            hosts.retain(|_, s| s.available_permits() < full);
        }
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_with(vars: &[(&str, &str)]) -> Limits {
        let vars = vars.iter().map(|(k, v)| (*k, (*v).to_owned()));
        let settings = crate::config::Settings::from_vars(vars).expect("valid");
        Limits::new(&settings.access, &settings.delivery, &settings.fetch)
    }

    #[test]
    fn a_hosts_polls_are_spread_at_its_rate_after_a_burst() {
        let limits = limits_with(&[
            ("HERALD_POLL_HOST_RATE", "2/s,3"),
            ("HERALD_POLL_RATE", "5/h,2"),
        ]);
        let now = UnixMs::from_millis(1_000_000);
        let busy = HubUrl::parse("https://feeds.example/a").unwrap();
        let other = HubUrl::parse("https://other.example/b").unwrap();
        let slots: Vec<i64> = (0..6)
            .map(|_| limits.poll_host_slot(&busy, now).as_millis() - now.as_millis())
            .collect();
        assert_eq!(slots, vec![0, 0, 0, 500, 1000, 1500]);
        assert_eq!(
            limits.poll_host_slot(&other, now),
            now,
            "another host has its own slots"
        );
        assert_eq!(
            limits.poll_budget(5).0,
            2,
            "the burst of the process's budget"
        );
        let (none, wait) = limits.poll_budget(5);
        assert_eq!(none, 0);
        assert!(wait > Duration::from_secs(600), "{wait:?}");
    }

    #[test]
    fn clients_get_a_bucket_each_and_trusted_ones_none() {
        let limits = limits_with(&[
            ("HERALD_RATE_LIMIT", "1/h,2"),
            ("HERALD_TRUSTED_CLIENTS", "10.1.0.0/16, 192.0.2.7"),
        ]);
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(limits.admit_client(Some(stranger)).is_ok());
        assert!(limits.admit_client(Some(stranger)).is_ok());
        let wait = limits.admit_client(Some(stranger)).unwrap_err();
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(
            limits
                .admit_client(Some("203.0.113.10".parse().unwrap()))
                .is_ok()
        );
        for trusted in [
            "127.0.0.1",
            "::1",
            "10.1.200.3",
            "192.0.2.7",
            "::ffff:10.1.0.1",
        ] {
            let ip: IpAddr = trusted.parse().unwrap();
            for _ in 0..5 {
                assert!(limits.admit_client(Some(ip)).is_ok(), "{trusted}");
            }
        }
        let off = limits_with(&[("HERALD_RATE_LIMIT", "off")]);
        for _ in 0..10 {
            assert!(off.admit_client(Some(stranger)).is_ok());
        }
    }

    #[test]
    fn each_host_has_its_own_share() {
        let limits = limits_with(&[
            ("HERALD_MAX_PER_HOST", "2"),
            ("HERALD_MAX_SYNC_VERIFICATIONS", "1"),
        ]);
        let a = HubUrl::parse("http://a.example/cb/1").unwrap();
        let a2 = HubUrl::parse("http://a.example/cb/2").unwrap();
        let a_other_port = HubUrl::parse("http://a.example:8080/cb").unwrap();
        let b = HubUrl::parse("https://b.example/cb").unwrap();
        let first = limits.host_slot(&host_key(&a)).expect("free");
        let _second = limits.host_slot(&host_key(&a2)).expect("free");
        assert!(
            limits.host_slot(&host_key(&a)).is_none(),
            "a's share is taken"
        );
        assert!(limits.host_slot(&host_key(&a_other_port)).is_some());
        assert!(limits.host_slot(&host_key(&b)).is_some());
        drop(first);
        assert!(
            limits.host_slot(&host_key(&a)).is_some(),
            "a slot came back"
        );
        let sync = limits.sync_verification().expect("free");
        assert!(limits.sync_verification().is_none());
        drop(sync);
        assert!(limits.sync_verification().is_some());
    }
}
