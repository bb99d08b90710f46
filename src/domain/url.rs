//! `hub.topic` and `hub.callback` (WebSub §5.1.1).
//!
//! A URL is accepted when it is an absolute `http`/`https` URL with a host, without a fragment,
//! credentials, whitespace or control characters, and not longer than [`MAX_URL_BYTES`].
//! Percent-encoded *unreserved* characters (`ALPHA / DIGIT / - . _ ~`) are decoded, as the spec
//! requires; nothing else is normalised, so the stored string — the subscription key — is the
//! URL exactly as the subscriber spelled it otherwise. Whether the host may be contacted is not
//! decided here but by the address policy of `outbound`.

use std::fmt;

/// The longest topic or callback URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 4096;

/// Why a topic or callback URL was refused. The text is shown to the requester.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    #[error("contains whitespace or control characters")]
    Whitespace,
    #[error("is not an absolute URL")]
    NotAbsolute,
    #[error("must use http or https, not {0}")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    #[error("must not contain a fragment (#...)")]
    Fragment,
    #[error("must not contain user credentials")]
    Credentials,
}

/// A validated http(s) URL in the hub's canonical spelling (unreserved escapes decoded).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HubUrl {
    canonical: String,
    parsed: url::Url,
}

impl HubUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if raw.len() > MAX_URL_BYTES {
            return Err(UrlError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Whitespace);
        }
        if raw.contains('#') {
            return Err(UrlError::Fragment);
        }
        let canonical = decode_unreserved(raw);
        let parsed = url::Url::parse(&canonical).map_err(|e| match e {
            url::ParseError::EmptyHost => UrlError::NoHost,
            _ => UrlError::NotAbsolute,
        })?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => return Err(UrlError::Scheme(other.to_owned())),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Credentials);
        }
        Ok(Self { canonical, parsed })
    }

    /// The subscription-key spelling of this URL.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// `host:port` (the port the scheme implies when none is written): the unit the hub's
    /// per-host limits, breakers and caps count by.
    pub fn host_key(&self) -> String {
        format!(
            "{}:{}",
            self.parsed.host_str().unwrap_or_default(),
            self.parsed.port_or_known_default().unwrap_or(0)
        )
    }

    pub fn as_url(&self) -> &url::Url {
        &self.parsed
    }

    /// This URL with `params` appended to its query string, keeping the existing query exactly
    /// as it is (WebSub §5.1.1: "appending new parameters to the end of the list using the &").
    pub fn with_appended_query(&self, params: &[(&str, &str)]) -> String {
        let mut out = self.canonical.clone();
        let mut separator = if out.contains('?') {
            if out.ends_with('?') || out.ends_with('&') {
                ""
            } else {
                "&"
            }
        } else {
            "?"
        };
        for (name, value) in params {
            out.push_str(separator);
            out.extend(url::form_urlencoded::byte_serialize(name.as_bytes()));
            out.push('=');
            out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
            separator = "&";
        }
        out
    }
}

impl fmt::Debug for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HubUrl({})", self.canonical)
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` escapes of unreserved characters; every other byte, and every other escape,
/// is left exactly as written.
fn decode_unreserved(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            let decoded = h * 16 + l;
            if is_unreserved(decoded) {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were substituted for ASCII escapes, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A URL as logs show it: without its query (`?…` stands for one), since callback URLs often
/// carry the subscriber's own credentials there.
#[derive(Debug, Clone, Copy)]
pub struct Logged<'a>(&'a url::Url);

impl fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        f.write_str(&url[..url::Position::AfterPath])?;
        if url.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

impl HubUrl {
    /// This URL as logs show it: without its query.
    pub fn logged(&self) -> Logged<'_> {
        Logged(self.as_url())
    }
}

/// `url` (a database URL, say) with its password, if any, replaced by `***`: for every message
/// and printout that shows it.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL: it cannot be told where a password would be, so show none of it.
        Err(_) => "(an unparseable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_http_and_https_urls() {
        for raw in [
            "http://example.com/feed",
            "https://example.com:8443/a/b?x=1&y=two%20words",
            "http://[::1]:8080/cb",
            "https://例え.jp/フィード",
        ] {
            assert!(HubUrl::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_absolute_http_url() {
        let cases = [
            ("", UrlError::Empty),
            ("/relative/path", UrlError::NotAbsolute),
            ("example.com/feed", UrlError::NotAbsolute),
            ("ftp://example.com/feed", UrlError::Scheme("ftp".into())),
            ("javascript:alert(1)", UrlError::Scheme("javascript".into())),
            ("http://example.com/feed#top", UrlError::Fragment),
            ("http://user:pw@example.com/", UrlError::Credentials),
            ("http://example.com/a b", UrlError::Whitespace),
            (
                "http://example.com/a\r\nX-Injected: 1",
                UrlError::Whitespace,
            ),
            ("http://", UrlError::NoHost),
        ];
        for (raw, expected) in cases {
            assert_eq!(HubUrl::parse(raw), Err(expected), "{raw:?}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(HubUrl::parse(&long), Err(UrlError::TooLong));
    }

    #[test]
    fn decodes_unreserved_escapes_only() {
        let url = HubUrl::parse("http://example.com/%7Euser/%41b%2Fc?q=%2e%26x%3D").unwrap();
        assert_eq!(url.as_str(), "http://example.com/~user/Ab%2Fc?q=.%26x%3D");
        assert_eq!(
            HubUrl::parse("http://example.com/~user").unwrap(),
            HubUrl::parse("http://example.com/%7euser").unwrap()
        );
    }

    #[test]
    fn keeps_the_spelling_otherwise() {
        let url = HubUrl::parse("HTTP://Example.COM:80/Feed/").unwrap();
        assert_eq!(url.as_str(), "HTTP://Example.COM:80/Feed/");
    }

    #[test]
    fn appends_parameters_after_the_existing_query() {
        let url = HubUrl::parse("http://sub.example/cb?a=1&b=two%20words&hub.mode=x").unwrap();
        assert_eq!(
            url.with_appended_query(&[("hub.mode", "subscribe"), ("hub.topic", "http://t/?a=1&b")]),
            "http://sub.example/cb?a=1&b=two%20words&hub.mode=x&hub.mode=subscribe&hub.topic=http%3A%2F%2Ft%2F%3Fa%3D1%26b"
        );
        let bare = HubUrl::parse("http://sub.example/cb").unwrap();
        assert_eq!(
            bare.with_appended_query(&[("a", "1")]),
            "http://sub.example/cb?a=1"
        );
        let dangling = HubUrl::parse("http://sub.example/cb?").unwrap();
        assert_eq!(
            dangling.with_appended_query(&[("a", "1")]),
            "http://sub.example/cb?a=1"
        );
    }

    #[test]
    fn logs_show_urls_without_their_queries() {
        let url = HubUrl::parse("https://sub.example:8443/cb/7?token=s3cr3t&x=1").unwrap();
        assert_eq!(url.logged().to_string(), "https://sub.example:8443/cb/7?…");
        let plain = HubUrl::parse("https://sub.example/cb").unwrap();
        assert_eq!(plain.logged().to_string(), "https://sub.example/cb");
    }
}
