//! The hub URL's form (WebSub §5.1, §6; PuSH 0.3 §7.1) parsed into a [`HubRequest`].
//!
//! The body is `application/x-www-form-urlencoded` UTF-8, read as a list of pairs so repeated
//! keys are seen. Unknown parameters are ignored (§5.1 "MUST ignore"). Every refusal is a
//! [`HubRequestError`] whose text is returned to the client as plain text.
//!
//! Decisions where the spec is silent: `hub.mode` is matched literally (lower case);
//! `hub.topic` or `hub.callback` given twice is ambiguous and refused; a publish ping takes its
//! topics from every `hub.url`, `hub.url[]` and `hub.topic`, splitting comma-separated lists, and
//! is refused whole if any of them is not a valid URL.

use super::{
    delivery_mode::DeliveryMode,
    lease::{self, InvalidLease},
    secret::{Secret, SecretTooLong},
    url::{HubUrl, UrlError},
};

/// At most this many topics in one publish ping.
pub const MAX_PUBLISH_TOPICS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Subscribe,
    Unsubscribe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = super::vocabulary::NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subscribe" => Ok(Self::Subscribe),
            "unsubscribe" => Ok(Self::Unsubscribe),
            other => Err(super::vocabulary::NotOneOf::new(
                other,
                &["subscribe", "unsubscribe"],
            )),
        }
    }
}

/// PuSH 0.3's `hub.verify`: how the subscriber wants verification done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Verify before answering: 204 when verified, 4xx otherwise.
    Sync,
    /// Verify after answering (202), as WebSub always does.
    Async,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

impl std::str::FromStr for VerifyMode {
    type Err = super::vocabulary::NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(super::vocabulary::NotOneOf::new(other, &["sync", "async"])),
        }
    }
}

/// The longest `hub.verify_token` accepted, in bytes.
pub const MAX_VERIFY_TOKEN_BYTES: usize = 1024;

/// A subscribe or unsubscribe request, validated. Its `Debug` shows neither the secret nor the
/// verify token.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub mode: Mode,
    pub topic: HubUrl,
    pub callback: HubUrl,
    /// The lease asked for; always `None` for unsubscribe (§5.1: "MUST be ignored").
    pub lease_seconds: Option<u64>,
    /// Always `None` for unsubscribe.
    pub secret: Option<Secret>,
    /// `herald.delivery`: how feed updates are delivered; `None` for the hub default.
    pub delivery_mode: Option<DeliveryMode>,
    /// `Some` when the subscriber sent `hub.verify` (PuSH 0.3 style): the first keyword Herald
    /// knows, in the subscriber's order of preference, or `Async` when it knows none.
    pub legacy: Option<VerifyMode>,
    /// PuSH 0.3's `hub.verify_token`, echoed in every verification of this subscription.
    pub verify_token: Option<String>,
    /// PuSH 0.3 §7.3: how many users the subscriber subscribes for (`X-Hub-On-Behalf-Of`, a
    /// header of the HTTP request, set by the HTTP layer; [`on_behalf_of`] reads it).
    pub on_behalf_of: Option<u32>,
    /// `herald.replay`: after verification, deliver the topic's latest this many entries (the
    /// gap between the subscriber's last fetch and its subscription; w3c/websub#174).
    pub replay: Option<u32>,
    /// The address the request came from (set by the HTTP layer; `None` for renewals the hub
    /// makes): what the cap on feeds polled for one subscriber counts by.
    pub client: Option<std::net::IpAddr>,
}

/// The most entries `herald.replay` may ask for (the hub's `HERALD_RETRIEVE_ENTRIES` may hold
/// it to fewer).
pub const MAX_REPLAY: u32 = 1_000;

/// The most users one subscription may say it stands for (a larger claim is held to it).
pub const MAX_ON_BEHALF_OF: u32 = 1_000_000;

/// Reads an `X-Hub-On-Behalf-Of` value: a positive whole number, held to
/// [`MAX_ON_BEHALF_OF`]; anything else is ignored, as the header is advisory.
pub fn on_behalf_of(value: &str) -> Option<u32> {
    let n: u64 = value.trim().parse().ok()?;
    (n > 0).then(|| u32::try_from(n.min(u64::from(MAX_ON_BEHALF_OF))).unwrap_or(MAX_ON_BEHALF_OF))
}

impl std::fmt::Debug for SubscriptionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionRequest")
            .field("mode", &self.mode)
            .field("topic", &self.topic)
            .field("callback", &self.callback)
            .field("lease_seconds", &self.lease_seconds)
            .field("secret", &self.secret)
            .field("delivery_mode", &self.delivery_mode)
            .field("legacy", &self.legacy)
            .field("verify_token", &self.verify_token.as_ref().map(|_| "***"))
            .field("on_behalf_of", &self.on_behalf_of)
            .field("replay", &self.replay)
            .field("client", &self.client)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubRequest {
    Subscription(Box<SubscriptionRequest>),
    Publish { topics: Vec<HubUrl> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubRequestError {
    #[error("the request body is not valid application/x-www-form-urlencoded UTF-8")]
    NotUtf8,
    #[error("hub.mode is missing (parameters must be sent in the form body)")]
    MissingMode,
    #[error("hub.mode {0:?} is not one of subscribe, unsubscribe, publish")]
    UnknownMode(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("{name} {error}: {value:?}")]
    BadUrl {
        name: &'static str,
        value: String,
        error: UrlError,
    },
    #[error(transparent)]
    Lease(#[from] InvalidLease),
    #[error(transparent)]
    Secret(#[from] SecretTooLong),
    #[error("hub.verify_token must be at most {MAX_VERIFY_TOKEN_BYTES} bytes")]
    VerifyTokenTooLong,
    #[error("herald.replay must be a whole number from 1 to {MAX_REPLAY}")]
    Replay,
    #[error("herald.delivery {0}")]
    DeliveryMode(super::vocabulary::NotOneOf),
    #[error("a publish ping needs at least one hub.url or hub.topic")]
    NoPublishTopic,
    #[error("a publish ping may name at most {MAX_PUBLISH_TOPICS} topics")]
    TooManyTopics,
}

/// Decodes a form body into pairs, refusing bytes that are not UTF-8 after percent-decoding.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, HubRequestError> {
    let mut pairs = Vec::new();
    for piece in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        pairs.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(pairs)
}

fn decode_component(raw: &[u8]) -> Result<String, HubRequestError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space);
    String::from_utf8(bytes).map_err(|_| HubRequestError::NotUtf8)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

struct Form<'a>(&'a [(String, String)]);

impl<'a> Form<'a> {
    fn all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The single value of `name`, refusing repeats.
    fn one(&self, name: &'static str) -> Result<Option<&'a str>, HubRequestError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(HubRequestError::Repeated(name));
        }
        Ok(first)
    }

    fn required_url(&self, name: &'static str) -> Result<HubUrl, HubRequestError> {
        match self.one(name)? {
            None | Some("") => Err(HubRequestError::Missing(name)),
            Some(value) => parse_url(name, value),
        }
    }
}

fn parse_url(name: &'static str, value: &str) -> Result<HubUrl, HubRequestError> {
    HubUrl::parse(value).map_err(|error| HubRequestError::BadUrl {
        name,
        value: value.chars().take(200).collect(),
        error,
    })
}

impl TryFrom<&[(String, String)]> for HubRequest {
    type Error = HubRequestError;

    fn try_from(pairs: &[(String, String)]) -> Result<Self, Self::Error> {
        let form = Form(pairs);
        let mode = match form.one("hub.mode")? {
            None | Some("") => return Err(HubRequestError::MissingMode),
            Some(m) => m,
        };
        let mode = match mode {
            "subscribe" => Mode::Subscribe,
            "unsubscribe" => Mode::Unsubscribe,
            "publish" => return publish(&form),
            other => {
                return Err(HubRequestError::UnknownMode(
                    other.chars().take(50).collect(),
                ));
            }
        };
        let callback = form.required_url("hub.callback")?;
        let topic = form.required_url("hub.topic")?;
        let (lease_seconds, secret, delivery_mode, replay) = match mode {
            Mode::Unsubscribe => (None, None, None, None),
            Mode::Subscribe => {
                let lease = match form.one("hub.lease_seconds")? {
                    None | Some("") => None,
                    Some(raw) => Some(lease::parse_requested(raw)?),
                };
                let delivery = match form.one("herald.delivery")? {
                    None | Some("") => None,
                    Some(raw) => Some(raw.parse().map_err(HubRequestError::DeliveryMode)?),
                };
                let replay = match form.one("herald.replay")? {
                    None | Some("") => None,
                    Some(raw) => Some(
                        raw.parse::<u32>()
                            .ok()
                            .filter(|n| (1..=MAX_REPLAY).contains(n))
                            .ok_or(HubRequestError::Replay)?,
                    ),
                };
                (
                    lease,
                    Secret::parse(form.one("hub.secret")?)?,
                    delivery,
                    replay,
                )
            }
        };
        // PuSH 0.3 §6.1: hub.verify may repeat in order of preference; unknown keywords are
        // ignored. Any hub.verify marks a 0.3-style subscriber.
        let verify_values: Vec<&str> = form.all("hub.verify").collect();
        let legacy = (!verify_values.is_empty()).then(|| {
            verify_values
                .iter()
                .flat_map(|v| v.split(','))
                .find_map(|k| match k.trim() {
                    "sync" => Some(VerifyMode::Sync),
                    "async" => Some(VerifyMode::Async),
                    _ => None,
                })
                .unwrap_or(VerifyMode::Async)
        });
        let verify_token = match form.one("hub.verify_token")? {
            None | Some("") => None,
            Some(t) if t.len() > MAX_VERIFY_TOKEN_BYTES => {
                return Err(HubRequestError::VerifyTokenTooLong);
            }
            Some(t) => Some(t.to_owned()),
        };
        Ok(Self::Subscription(Box::new(SubscriptionRequest {
            mode,
            topic,
            callback,
            lease_seconds,
            secret,
            delivery_mode,
            legacy,
            verify_token,
            on_behalf_of: None,
            replay,
            client: None,
        })))
    }
}

fn publish(form: &Form<'_>) -> Result<HubRequest, HubRequestError> {
    let mut topics: Vec<HubUrl> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (name, value) in form
        .all("hub.url")
        .map(|v| ("hub.url", v))
        .chain(form.all("hub.url[]").map(|v| ("hub.url[]", v)))
        .chain(form.all("hub.topic").map(|v| ("hub.topic", v)))
    {
        for url in split_urls(name, value)? {
            if seen.insert(url.as_str().to_owned()) {
                topics.push(url);
            }
            if topics.len() > MAX_PUBLISH_TOPICS {
                return Err(HubRequestError::TooManyTopics);
            }
        }
    }
    if topics.is_empty() {
        return Err(HubRequestError::NoPublishTopic);
    }
    Ok(HubRequest::Publish { topics })
}

/// The URLs in one `hub.url` value: a comma-separated list when every piece is a URL, else the
/// value as one URL. A list longer than a ping may name is refused while it is being split.
fn split_urls(name: &'static str, value: &str) -> Result<Vec<HubUrl>, HubRequestError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    if value.contains(',') {
        let mut pieces = Vec::new();
        let mut all_urls = true;
        for piece in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match HubUrl::parse(piece) {
                Ok(url) => pieces.push(url),
                Err(_) => {
                    all_urls = false;
                    break;
                }
            }
            if pieces.len() > MAX_PUBLISH_TOPICS {
                return Err(HubRequestError::TooManyTopics);
            }
        }
        if all_urls {
            return Ok(pieces);
        }
    }
    Ok(vec![parse_url(name, value)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<HubRequest, HubRequestError> {
        let pairs = parse_form(body.as_bytes())?;
        HubRequest::try_from(pairs.as_slice())
    }

    fn subscription(body: &str) -> SubscriptionRequest {
        match parse(body) {
            Ok(HubRequest::Subscription(s)) => *s,
            other => panic!("{body}: {other:?}"),
        }
    }

    const CB: &str = "hub.callback=http%3A%2F%2Fsub.example%2Fcb%3Fa%3D1";
    const TOPIC: &str = "hub.topic=http%3A%2F%2Fpub.example%2Ffeed";

    #[test]
    fn minimal_subscribe() {
        let s = subscription(&format!("hub.mode=subscribe&{TOPIC}&{CB}"));
        assert_eq!(s.mode, Mode::Subscribe);
        assert_eq!(s.topic.as_str(), "http://pub.example/feed");
        assert_eq!(s.callback.as_str(), "http://sub.example/cb?a=1");
        assert_eq!(s.lease_seconds, None);
        assert!(s.secret.is_none());
    }

    #[test]
    fn ignores_unknown_parameters_and_reads_lease_and_secret() {
        let s = subscription(&format!(
            "hub.mode=subscribe&{TOPIC}&{CB}&foo=bar&hub.foo=hub.bar&hub.verify=sync\
             &hub.lease_seconds=3600&hub.secret=s%C3%A9cret"
        ));
        assert_eq!(s.lease_seconds, Some(3600));
        assert_eq!(s.secret.unwrap().expose(), "sécret");
        assert_eq!(s.delivery_mode, None);
        let s = subscription(&format!(
            "hub.mode=subscribe&{TOPIC}&{CB}&herald.delivery=single"
        ));
        assert_eq!(s.delivery_mode, Some(DeliveryMode::Single));
    }

    #[test]
    fn legacy_verify_modes_take_the_first_known_keyword() {
        let cases = [
            ("", None),
            ("&hub.verify=sync", Some(VerifyMode::Sync)),
            ("&hub.verify=async", Some(VerifyMode::Async)),
            (
                "&hub.verify=foo&hub.verify=sync&hub.verify=async",
                Some(VerifyMode::Sync),
            ),
            (
                "&hub.verify=foo&hub.verify=async&hub.verify=sync",
                Some(VerifyMode::Async),
            ),
            ("&hub.verify=foo", Some(VerifyMode::Async)),
        ];
        for (extra, expected) in cases {
            let s = subscription(&format!(
                "hub.mode=subscribe&{TOPIC}&{CB}{extra}&hub.verify_token=t%20k"
            ));
            assert_eq!(s.legacy, expected, "{extra}");
            assert_eq!(s.verify_token.as_deref(), Some("t k"));
        }
    }

    #[test]
    fn unsubscribe_ignores_lease_and_secret() {
        let s = subscription(&format!(
            "hub.mode=unsubscribe&{TOPIC}&{CB}&hub.lease_seconds=abc&hub.secret=x"
        ));
        assert_eq!(s.mode, Mode::Unsubscribe);
        assert_eq!(s.lease_seconds, None);
        assert!(s.secret.is_none());
    }

    #[test]
    fn refusals_have_reasons() {
        let long_secret = "x".repeat(200);
        let cases: Vec<(String, &str)> = vec![
            (format!("{TOPIC}&{CB}"), "hub.mode is missing"),
            (format!("hub.mode=&{TOPIC}&{CB}"), "hub.mode is missing"),
            (format!("hub.mode=SUBSCRIBE&{TOPIC}&{CB}"), "is not one of"),
            (format!("hub.mode=denied&{TOPIC}&{CB}"), "is not one of"),
            (
                format!("hub.mode=subscribe&{TOPIC}"),
                "hub.callback is missing",
            ),
            (format!("hub.mode=subscribe&{CB}"), "hub.topic is missing"),
            (
                format!("hub.mode=subscribe&hub.topic=&{CB}"),
                "hub.topic is missing",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{TOPIC}&{CB}"),
                "hub.topic is given more than once",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&hub.callback=%2Fcb"),
                "hub.callback is not an absolute URL",
            ),
            (
                format!("hub.mode=subscribe&hub.topic=ftp%3A%2F%2Fx%2Ff&{CB}"),
                "must use http or https",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&hub.callback=http%3A%2F%2Fs%2Fcb%23frag"),
                "fragment",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{CB}&hub.lease_seconds=0"),
                "positive decimal integer",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{CB}&hub.lease_seconds=-5"),
                "positive decimal integer",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{CB}&hub.lease_seconds=1.5"),
                "positive decimal integer",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{CB}&hub.secret={long_secret}"),
                "shorter than 200 bytes",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{CB}&herald.delivery=some"),
                "herald.delivery \"some\" is not one of",
            ),
            ("hub.mode=publish".to_owned(), "at least one hub.url"),
            (
                "hub.mode=publish&hub.url=not-a-url".to_owned(),
                "hub.url is not an absolute URL",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(&body).expect_err(&body).to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        assert_eq!(
            parse("hub.mode=subscribe&hub.topic=%FF"),
            Err(HubRequestError::NotUtf8)
        );
    }

    #[test]
    fn publish_collects_every_spelling() {
        let body = "hub.mode=publish&hub.url=http%3A%2F%2Fa.example%2F1&hub.url=http%3A%2F%2Fa.example%2F2\
                    &hub.url%5B%5D=http%3A%2F%2Fa.example%2F3\
                    &hub.url=http%3A%2F%2Fa.example%2F4%2Chttp%3A%2F%2Fa.example%2F5\
                    &hub.topic=http%3A%2F%2Fa.example%2F1";
        let Ok(HubRequest::Publish { topics }) = parse(body) else {
            panic!()
        };
        let urls: Vec<&str> = topics.iter().map(HubUrl::as_str).collect();
        assert_eq!(
            urls,
            // hub.url values first, then hub.url[], then hub.topic; duplicates dropped.
            [
                "http://a.example/1",
                "http://a.example/2",
                "http://a.example/4",
                "http://a.example/5",
                "http://a.example/3"
            ]
        );
    }

    #[test]
    fn a_comma_inside_one_url_is_kept() {
        let Ok(HubRequest::Publish { topics }) =
            parse("hub.mode=publish&hub.url=http%3A%2F%2Fa.example%2Ff%3Fids%3D1%2C2")
        else {
            panic!()
        };
        assert_eq!(topics[0].as_str(), "http://a.example/f?ids=1,2");
    }

    #[test]
    fn form_decoding_handles_plus_and_bare_keys() {
        let pairs = parse_form(b"a=b+c&flag&&d=%41%2b").unwrap();
        let expected: Vec<(String, String)> = [("a", "b c"), ("flag", ""), ("d", "A+")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }
}
