//! The hub's one outbound HTTP client: timeouts, a User-Agent, size caps and the address policy.
//!
//! Verification and delivery never follow redirects (WebSub §5.3.1, §7: a 3xx is a failure).
//! Topic fetches follow up to [`MAX_REDIRECTS`], each hop checked against the same policy.
//! Host names are resolved by [`PolicyResolver`], which drops addresses the policy forbids, so the
//! address checked is the address connected to (no DNS-rebinding gap); IP literals, which skip
//! the resolver, are checked before each request.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{
    Client, StatusCode,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{self, HeaderMap, HeaderValue},
    redirect,
};

use crate::{
    config::Settings,
    domain::{address::AddressPolicy, url::HubUrl},
};

pub const MAX_REDIRECTS: usize = 5;
/// How long a host name may take to resolve.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Resolves `host`, giving up after `timeout` (a resolver that never answers must not hold a
/// fetch, a verification or a delivery).
pub async fn lookup(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, LookupError> {
    bounded(host, timeout, tokio::net::lookup_host((host, port))).await
}

/// A resolution of `host` that gives up after `timeout`.
async fn bounded<I: Iterator<Item = SocketAddr>>(
    host: &str,
    timeout: Duration,
    resolving: impl std::future::Future<Output = std::io::Result<I>>,
) -> Result<Vec<SocketAddr>, LookupError> {
    match tokio::time::timeout(timeout, resolving).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(error)) => Err(LookupError::Failed {
            host: host.to_owned(),
            error,
        }),
        Err(_) => Err(LookupError::TimedOut(host.to_owned())),
    }
}

/// Why a host name did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("resolving {host} failed")]
    Failed {
        host: String,
        #[source]
        error: std::io::Error,
    },
    #[error("resolving {0} timed out")]
    TimedOut(String),
    #[error("address not allowed: {0} resolves only to non-public addresses")]
    NotAllowed(String),
}

/// Resolves host names and keeps only the addresses the policy permits.
#[derive(Debug, Clone, Copy)]
struct PolicyResolver(AddressPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all = lookup(&host, 0, DNS_TIMEOUT).await?;
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if allowed.is_empty() && !all.is_empty() {
                return Err(LookupError::NotAllowed(host).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A fetched topic.
#[derive(Debug)]
pub enum Fetched {
    NotModified,
    Body {
        body: Vec<u8>,
        content_type: Option<String>,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Every rel="hub" URL of the response's Link headers.
        advertised_hubs: Vec<String>,
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
            policy: settings.address_policy,
            public_url: settings.public_url.clone(),
            verify_timeout: settings.verification.timeout,
            deliver_timeout: settings.delivery.timeout,
            fetch_timeout: settings.fetch.timeout,
            max_topic_bytes: settings.fetch.max_bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outbound {
    verify: Client,
    deliver: Client,
    fetch: Client,
    policy: AddressPolicy,
    max_topic_bytes: usize,
}

impl Outbound {
    pub fn new(settings: &ClientSettings) -> Result<Self, reqwest::Error> {
        let policy = settings.policy;
        let user_agent = format!(
            "Herald/{} (WebSub hub; +{})",
            env!("CARGO_PKG_VERSION"),
            settings
                .public_url
                .as_ref()
                .map_or("unconfigured", |u| u.as_str())
        );
        let base = |timeout: Duration| {
            Client::builder()
                .user_agent(user_agent.clone())
                .dns_resolver(PolicyResolver(policy))
                .no_proxy()
                .tcp_nodelay(true)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .timeout(timeout)
        };
        let follow_checked = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Err(e) = check_literal(policy, attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        });
        Ok(Self {
            verify: base(settings.verify_timeout)
                .redirect(redirect::Policy::none())
                .build()?,
            deliver: base(settings.deliver_timeout)
                .redirect(redirect::Policy::none())
                .build()?,
            fetch: base(settings.fetch_timeout)
                .redirect(follow_checked)
                .build()?,
            policy,
            max_topic_bytes: settings.max_topic_bytes,
        })
    }

    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// Whether `url` may be contacted at all, as far as can be told without DNS.
    pub fn check(&self, url: &url::Url) -> Result<(), OutboundError> {
        check_literal(self.policy, url)
    }

    /// A verification (or denial) GET: the status and up to [`MAX_VERIFY_BODY`] bytes of body.
    pub async fn get_verification(&self, url: &str) -> Result<(u16, Vec<u8>), OutboundError> {
        let url = parse(url)?;
        self.check(&url)?;
        let mut response = self.verify.get(url).send().await?;
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

    /// GETs a topic with conditional headers, following a few checked redirects.
    pub async fn fetch_topic(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, OutboundError> {
        let url = parse(url)?;
        self.check(&url)?;
        let mut request = self.fetch.get(url).header(header::ACCEPT, "*/*");
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = last_modified {
            request = request.header(header::IF_MODIFIED_SINCE, lm);
        }
        let mut response = request.send().await?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
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
        })
    }
}

fn parse(url: &str) -> Result<url::Url, OutboundError> {
    url::Url::parse(url).map_err(|e| OutboundError::Transport(format!("invalid URL: {e}")))
}

fn check_literal(policy: AddressPolicy, url: &url::Url) -> Result<(), OutboundError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.into(),
        Some(url::Host::Ipv6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    if policy.permits(ip) {
        Ok(())
    } else {
        Err(OutboundError::Forbidden(format!(
            "{ip} is not a public address"
        )))
    }
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

/// Shared handle used by the jobs.
pub type SharedOutbound = Arc<Outbound>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups_give_up_after_their_timeout() {
        // A resolver that never answers (a real lookup of a bad name may fail before a zero
        // timeout is even looked at).
        let never = std::future::pending::<std::io::Result<std::vec::IntoIter<SocketAddr>>>();
        let error = bounded("example.invalid", Duration::from_millis(10), never)
            .await
            .expect_err("no answer in time");
        let error = crate::telemetry::Chain(&error).to_string();
        assert!(error.contains("timed out"), "{error}");
        let failing = std::future::ready(Err::<std::vec::IntoIter<SocketAddr>, _>(
            std::io::Error::other("no such name"),
        ));
        let error = bounded("example.invalid", DNS_TIMEOUT, failing)
            .await
            .expect_err("failed");
        let error = crate::telemetry::Chain(&error).to_string();
        assert!(error.contains("failed: no such name"), "{error}");
        assert!(
            !lookup("127.0.0.1", 80, DNS_TIMEOUT)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn errors_never_carry_the_url_a_challenge_travels_in() {
        install_crypto_provider();
        let settings = ClientSettings {
            policy: AddressPolicy::AllowLoopback,
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
        assert!(check_literal(AddressPolicy::PublicOnly, &url("http://127.0.0.1/")).is_err());
        assert!(check_literal(AddressPolicy::PublicOnly, &url("http://[::1]:8080/")).is_err());
        assert!(check_literal(AddressPolicy::PublicOnly, &url("http://169.254.169.254/")).is_err());
        assert!(check_literal(AddressPolicy::PublicOnly, &url("http://93.184.216.34/")).is_ok());
        assert!(check_literal(AddressPolicy::AllowLoopback, &url("http://127.0.0.1/")).is_ok());
        assert!(check_literal(AddressPolicy::PublicOnly, &url("http://example.com/")).is_ok());
    }
}
