//! The hub's one outbound HTTP client: timeouts, a User-Agent, size caps and the address policy.
//!
//! Verification and delivery never follow redirects (WebSub §5.3.1, §7: a 3xx is a failure).
//! Topic fetches follow up to [`MAX_REDIRECTS`], each hop checked against the same policy.
//! Host names are resolved asynchronously ([`dns`]) and the addresses the policy forbids are
//! dropped before connecting, so the address checked is the address connected to (no
//! DNS-rebinding gap); IP literals, which skip the resolver, are checked before each request.
//! When the policy opens loopback on some ports only (`loopback:8000`), a request to a listed
//! port goes through clients whose resolver keeps loopback, any other through clients whose
//! resolver does not; each redirect hop of a fetch picks again.

pub mod dns;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{
    Client, StatusCode,
    header::{self, HeaderMap, HeaderValue},
    redirect,
};

pub use self::dns::{DNS_TIMEOUT, Dns, LookupError};

use crate::{
    config::Settings,
    domain::{
        address::{AddressPolicy, LoopbackPorts},
        url::HubUrl,
    },
};

pub const MAX_REDIRECTS: usize = 5;
/// A verification answer longer than this cannot be a challenge echo.
const MAX_VERIFY_BODY: usize = 1024;
/// Delivery responses are read (to keep the connection reusable) up to this size, then dropped.
const MAX_DELIVERY_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    #[error("address not allowed: {0}")]
    Forbidden(String),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Transport(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The server answered with a status that is not a success.
    #[error("answered {0}")]
    Status(u16),
    /// A topic answered 429 or 503: it asks for a pause, perhaps saying how long
    /// (`Retry-After`).
    #[error("answered {status}")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl From<reqwest::Error> for OutboundError {
    fn from(e: reqwest::Error) -> Self {
        // Never the URL: a verification URL carries the challenge, a callback URL may carry the
        // subscriber's own credentials; the caller knows which URL it asked for.
        let e = e.without_url();
        if e.is_timeout() {
            return Self::Timeout;
        }
        // The resolver's refusal, and a redirect's, arrive wrapped; surface them as the policy
        // errors they are.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if let Some(LookupError::NotAllowed(host)) = s.downcast_ref::<LookupError>() {
                return Self::Forbidden(format!("{host} resolves only to non-public addresses"));
            }
            if let Some(Self::Forbidden(reason)) = s.downcast_ref::<Self>() {
                return Self::Forbidden(reason.clone());
            }
            source = s.source();
        }
        Self::Transport(describe(&e))
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A fetched topic.
#[derive(Debug)]
pub enum Fetched {
    NotModified {
        /// How long the answer stays fresh (`Cache-Control: max-age`, `Expires`).
        fresh_for: Option<Duration>,
    },
    Body {
        body: Vec<u8>,
        content_type: Option<String>,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Every rel="hub" URL of the response's Link headers.
        advertised_hubs: Vec<String>,
        /// How long the answer stays fresh (`Cache-Control: max-age`, `Expires`).
        fresh_for: Option<Duration>,
    },
}

/// What a delivery POST got back.
#[derive(Debug)]
pub struct DeliveryResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

/// rustls needs its crypto provider chosen once per process (docs/architecture.md, "apalis and
/// sqlx as relied on").
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What the outbound client is built from (the address policy and timeouts of the settings).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub policy: AddressPolicy,
    /// Named in the User-Agent, when configured.
    pub public_url: Option<HubUrl>,
    pub verify_timeout: Duration,
    pub deliver_timeout: Duration,
    pub fetch_timeout: Duration,
    pub max_topic_bytes: usize,
}

impl From<&Settings> for ClientSettings {
    fn from(settings: &Settings) -> Self {
        Self {
            policy: settings.address_policy.clone(),
            public_url: settings.public_url.clone(),
            verify_timeout: settings.verification.timeout,
            deliver_timeout: settings.delivery.timeout,
            fetch_timeout: settings.fetch.timeout,
            max_topic_bytes: settings.fetch.max_bytes,
        }
    }
}

/// One HTTP client per kind of request, all resolving through one policy.
#[derive(Debug, Clone)]
struct Clients {
    verify: Client,
    deliver: Client,
    fetch: Client,
}

impl Clients {
    fn new(
        settings: &ClientSettings,
        user_agent: &str,
        resolver: dns::PolicyResolver,
    ) -> Result<Self, reqwest::Error> {
        let base = |timeout: Duration| {
            Client::builder()
                .user_agent(user_agent)
                .dns_resolver(resolver.clone())
                .no_proxy()
                .tcp_nodelay(true)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .timeout(timeout)
                // Verification and delivery never follow one (§5.3.1, §7); fetches follow them
                // one hop at a time (`fetch_topic`), each checked.
                .redirect(redirect::Policy::none())
        };
        Ok(Self {
            verify: base(settings.verify_timeout).build()?,
            deliver: base(settings.deliver_timeout).build()?,
            fetch: base(settings.fetch_timeout).build()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Outbound {
    /// For every request, or, when loopback is open on some ports only, for the other ports.
    clients: Clients,
    /// When loopback is open on some ports only: for those ports.
    listed_ports: Option<Clients>,
    dns: Dns,
    policy: AddressPolicy,
    fetch_timeout: Duration,
    max_topic_bytes: usize,
    /// The start of a fetch's User-Agent, `Herald/<version> (+<hub URL>`, which a subscriber
    /// count (PuSH 0.3 §7.2) and `)` complete.
    fetch_agent: String,
}

impl Outbound {
    pub fn new(settings: &ClientSettings) -> Result<Self, reqwest::Error> {
        let policy = settings.policy.clone();
        let hub = settings
            .public_url
            .as_ref()
            .map_or("unconfigured", |u| u.as_str());
        let user_agent = format!("Herald/{} (WebSub hub; +{hub})", crate::build_info::VERSION);
        let fetch_agent = format!("Herald/{} (+{hub}", crate::build_info::VERSION);
        let dns = Dns::from_system();
        let resolver = |policy: AddressPolicy| dns::PolicyResolver {
            dns: dns.clone(),
            policy,
        };
        let (clients, listed_ports) = if policy.depends_on_port() {
            let local = AddressPolicy::AllowLoopback(LoopbackPorts::Any);
            (
                Clients::new(settings, &user_agent, resolver(AddressPolicy::PublicOnly))?,
                Some(Clients::new(settings, &user_agent, resolver(local))?),
            )
        } else {
            (
                Clients::new(settings, &user_agent, resolver(policy.clone()))?,
                None,
            )
        };
        Ok(Self {
            clients,
            listed_ports,
            dns,
            policy,
            fetch_timeout: settings.fetch_timeout,
            max_topic_bytes: settings.max_topic_bytes,
            fetch_agent,
        })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Resolves `host` with the hub's resolver (every address, permitted or not).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, LookupError> {
        self.dns.lookup(host, port, DNS_TIMEOUT).await
    }

    /// Whether `url` may be contacted at all, as far as can be told without DNS.
    pub fn check(&self, url: &url::Url) -> Result<(), OutboundError> {
        check_literal(&self.policy, url)
    }

    /// The clients for `url`: by its port, when the policy opens loopback on some ports only.
    fn clients_for(&self, url: &url::Url) -> &Clients {
        match &self.listed_ports {
            Some(listed) if self.policy.opens_loopback_on(port_of(url)) => listed,
            _ => &self.clients,
        }
    }

    /// A verification (or denial) GET: the status and up to [`MAX_VERIFY_BODY`] bytes of body.
    pub async fn get_verification(&self, url: &str) -> Result<(u16, Vec<u8>), OutboundError> {
        let url = parse(url)?;
        self.check(&url)?;
        let mut response = self.clients_for(&url).verify.get(url).send().await?;
        let status = response.status().as_u16();
        let body = read_capped(&mut response, MAX_VERIFY_BODY, false).await?;
        Ok((status, body))
    }

    /// A content distribution POST of `body` with `headers`.
    pub async fn post_delivery(
        &self,
        url: &str,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<DeliveryResponse, OutboundError> {
        let url = parse(url)?;
        self.check(&url)?;
        let mut response = self
            .clients_for(&url)
            .deliver
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(parse_retry_after),
            _ => None,
        };
        // The body is ignored (§7); draining a small one keeps the connection reusable.
        let _ = read_capped(&mut response, MAX_DELIVERY_RESPONSE, false).await;
        Ok(DeliveryResponse {
            status: status.as_u16(),
            retry_after,
        })
    }

    /// GETs a topic with conditional headers, following a few redirects, each hop checked
    /// against the policy (and its port) like the first; all of them within the fetch timeout.
    pub async fn fetch_topic(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
        subscribers: Option<i64>,
    ) -> Result<Fetched, OutboundError> {
        let agent = match subscribers {
            Some(n) => format!(
                "{}; {n} subscriber{})",
                self.fetch_agent,
                if n == 1 { "" } else { "s" }
            ),
            None => format!("{})", self.fetch_agent),
        };
        let mut url = parse(url)?;
        let deadline = tokio::time::Instant::now() + self.fetch_timeout;
        let mut hops = 0;
        let mut response = loop {
            self.check(&url)?;
            let mut request = self
                .clients_for(&url)
                .fetch
                .get(url.clone())
                .header(header::ACCEPT, "*/*")
                .header(header::USER_AGENT, agent.as_str());
            if let Some(etag) = etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, lm);
            }
            let response = tokio::time::timeout_at(deadline, request.send())
                .await
                .map_err(|_| OutboundError::Timeout)??;
            let Some(next) = redirect_target(&url, &response)? else {
                break response;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(OutboundError::Transport(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            url = next;
        };
        let status = response.status();
        let fresh_for = freshness(response.headers());
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { fresh_for });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(OutboundError::Unavailable {
                status: status.as_u16(),
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(parse_retry_after),
            });
        }
        if !status.is_success() {
            return Err(OutboundError::Status(status.as_u16()));
        }
        let headers = response.headers();
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = text(header::CONTENT_TYPE);
        let etag = text(header::ETAG);
        let last_modified = text(header::LAST_MODIFIED);
        let advertised_hubs = headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| crate::domain::link::links_with_rel(v, "hub"))
            .collect();
        let body = read_capped(&mut response, self.max_topic_bytes, true).await?;
        Ok(Fetched::Body {
            body,
            content_type,
            etag,
            last_modified,
            advertised_hubs,
            fresh_for,
        })
    }
}

fn parse(url: &str) -> Result<url::Url, OutboundError> {
    url::Url::parse(url).map_err(|e| OutboundError::Transport(format!("invalid URL: {e}")))
}

/// The port a URL connects to.
fn port_of(url: &url::Url) -> u16 {
    url.port_or_known_default().unwrap_or(80)
}

fn check_literal(policy: &AddressPolicy, url: &url::Url) -> Result<(), OutboundError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.into(),
        Some(url::Host::Ipv6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let port = port_of(url);
    if policy.permits(ip, port) {
        Ok(())
    } else if policy.permits_any_port(ip) {
        Err(OutboundError::Forbidden(format!(
            "port {port} of {ip} is not among the loopback ports this hub may contact"
        )))
    } else {
        Err(OutboundError::Forbidden(format!(
            "{ip} is not a public address"
        )))
    }
}

/// Where a redirect answer sends the fetch next (`None`: it is no redirect).
fn redirect_target(
    from: &url::Url,
    response: &reqwest::Response,
) -> Result<Option<url::Url>, OutboundError> {
    let followed = [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ];
    if !followed.contains(&response.status()) {
        return Ok(None);
    }
    let status = response.status().as_u16();
    let Some(location) = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(OutboundError::Status(status));
    };
    let next = from
        .join(location)
        .map_err(|e| OutboundError::Transport(format!("redirect to an invalid URL: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(OutboundError::Transport(format!(
            "redirect to a {} URL",
            next.scheme()
        )));
    }
    Ok(Some(next))
}

/// Reads at most `cap` bytes of body. Past the cap: an error when `strict`, else truncation.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
    strict: bool,
) -> Result<Vec<u8>, OutboundError> {
    if strict && response.content_length().is_some_and(|l| l > cap as u64) {
        return Err(OutboundError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            if strict {
                return Err(OutboundError::TooLarge(cap));
            }
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// How long an answer says it stays fresh: `Cache-Control: max-age` (`no-cache` / `no-store`:
/// not at all), else `Expires` less `Date` (or now).
fn freshness(headers: &header::HeaderMap) -> Option<Duration> {
    let cache_control = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    if cache_control
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store"))
    {
        return None;
    }
    if let Some(secs) = cache_control.iter().find_map(|d| {
        let (name, value) = d.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
    }) {
        return Some(Duration::from_secs(secs));
    }
    let date = |name: header::HeaderName| {
        let text = headers.get(name)?.to_str().ok()?;
        chrono::DateTime::parse_from_rfc2822(text.trim()).ok()
    };
    let expires = date(header::EXPIRES)?;
    let now = date(header::DATE).map_or_else(chrono::Utc::now, |d| d.with_timezone(&chrono::Utc));
    (expires.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// Shared handle used by the jobs.
pub type SharedOutbound = Arc<Outbound>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_from_max_age_or_expires() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = header::HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let d = |s| Some(Duration::from_secs(s));
        assert_eq!(
            freshness(&headers(&[("cache-control", "public, max-age=600")])),
            d(600)
        );
        assert_eq!(
            freshness(&headers(&[("cache-control", "no-cache, max-age=600")])),
            None
        );
        assert_eq!(
            freshness(&headers(&[
                ("date", "Mon, 07 Dec 2026 18:00:00 GMT"),
                ("expires", "Mon, 07 Dec 2026 19:00:00 GMT")
            ])),
            d(3600)
        );
        assert_eq!(
            freshness(&headers(&[
                ("date", "Mon, 07 Dec 2026 18:00:00 GMT"),
                ("expires", "0")
            ])),
            None
        );
        assert_eq!(freshness(&headers(&[])), None);
    }

    #[tokio::test]
    async fn errors_never_carry_the_url_a_challenge_travels_in() {
        install_crypto_provider();
        let settings = ClientSettings {
            policy: AddressPolicy::AllowLoopback(LoopbackPorts::Any),
            public_url: None,
            verify_timeout: Duration::from_secs(10),
            deliver_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(10),
            max_topic_bytes: 1 << 20,
        };
        let outbound = Outbound::new(&settings).expect("client");
        // Nothing listens there: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}/cb?token=own&hub.challenge=c4ll3ng3");
        let error = outbound.get_verification(&url).await.expect_err("refused");
        let text = format!("{error} {error:?}");
        assert!(!text.contains("c4ll3ng3"), "{text}");
        assert!(!text.contains("token=own"), "{text}");
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("120")),
            Some(Duration::from_secs(120))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(300)).to_rfc2822();
        let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(250) && d <= Duration::from_secs(300),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn literal_addresses_are_checked() {
        let url = |s| url::Url::parse(s).unwrap();
        let public = AddressPolicy::PublicOnly;
        assert!(check_literal(&public, &url("http://127.0.0.1/")).is_err());
        assert!(check_literal(&public, &url("http://[::1]:8080/")).is_err());
        assert!(check_literal(&public, &url("http://169.254.169.254/")).is_err());
        assert!(check_literal(&public, &url("http://93.184.216.34/")).is_ok());
        assert!(check_literal(&public, &url("http://example.com/")).is_ok());
        let any = AddressPolicy::AllowLoopback(LoopbackPorts::Any);
        assert!(check_literal(&any, &url("http://127.0.0.1/")).is_ok());
        let some: AddressPolicy = "loopback:8000,443".parse().unwrap();
        assert!(check_literal(&some, &url("http://127.0.0.1:8000/")).is_ok());
        assert!(check_literal(&some, &url("https://[::1]/")).is_ok());
        let refused = check_literal(&some, &url("http://127.0.0.1/")).unwrap_err();
        assert!(refused.to_string().contains("port 80"), "{refused}");
    }
}
