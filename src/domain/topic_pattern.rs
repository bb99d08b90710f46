//! `HERALD_TOPIC_ALLOW` patterns: which topics a closed hub serves, matched as URLs, not as
//! strings (a string prefix `https://site.example` would also admit
//! `https://site.example.evil.org/`).
//!
//! A pattern is an http(s) URL whose parts match separately:
//! - scheme: exactly;
//! - host: exactly (hosts compare in the lower-case form URLs give them), or `*.example.org`,
//!   which matches any host ending in whole labels `.example.org` (not `example.org` itself,
//!   nor `badexample.org`);
//! - port: exactly, the scheme's default when none is written;
//! - path: by segments, as a subtree — `/feeds` matches `/feeds` and `/feeds/a`, never
//!   `/feeds-evil`; within a segment `*` matches any run of characters; a `**` segment matches
//!   any number of segments (`/users/**/feed.atom`);
//! - a topic's query string is not considered (it names a resource under the path).
//!
//! Refused at start-up, with the reason: other schemes, user information, a query or fragment,
//! `*` elsewhere in the host, `**` inside a segment, and characters a URL cannot carry.

use std::fmt;

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    scheme: String,
    host: HostPattern,
    port: u16,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: one or more labels, then `.suffix`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A segment, `*` matching any run of characters within it.
    Glob(String),
    /// `**`: any number of segments.
    AnyDepth,
}

/// The label put in place of a leading `*` so that the URL parser accepts the host.
const WILDCARD_LABEL: &str = "herald-wildcard-label";

/// A topic pattern that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic pattern {pattern:?}: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: PatternFault,
}

/// What is wrong with a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternFault {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("must not contain user information")]
    UserInfo,
    #[error("a host may only start with \"*.\" (whole labels)")]
    HostGlob,
    #[error("must not contain a query or fragment")]
    QueryOrFragment,
    #[error("{0}")]
    Url(url::ParseError),
    #[error("has no host")]
    NoHost,
    #[error("has an unusable host")]
    UnusableHost,
    #[error("has no port")]
    NoPort,
    #[error("\"**\" must be a whole path segment")]
    DoubleStar,
}

impl TopicPattern {
    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        let bad = |why: PatternFault| PatternError {
            pattern: raw.to_owned(),
            why,
        };
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad(PatternFault::Scheme))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad(PatternFault::Scheme));
        }
        let subdomains = rest.starts_with("*.");
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if rest[..authority_end].contains('@') {
            return Err(bad(PatternFault::UserInfo));
        }
        let host_part = if subdomains { &rest[2..] } else { rest };
        if host_part[..host_part.find('/').unwrap_or(host_part.len())].contains('*') {
            return Err(bad(PatternFault::HostGlob));
        }
        if raw.contains('?') || raw.contains('#') {
            return Err(bad(PatternFault::QueryOrFragment));
        }
        let parseable = if subdomains {
            format!("{scheme}://{WILDCARD_LABEL}.{host_part}")
        } else {
            raw.to_owned()
        };
        let url = url::Url::parse(&parseable).map_err(|e| bad(PatternFault::Url(e)))?;
        let host = url.host_str().ok_or_else(|| bad(PatternFault::NoHost))?;
        let host = if subdomains {
            let suffix = host
                .strip_prefix(WILDCARD_LABEL)
                .and_then(|h| h.strip_prefix('.'))
                .ok_or_else(|| bad(PatternFault::UnusableHost))?;
            HostPattern::Subdomains(suffix.to_owned())
        } else {
            HostPattern::Exact(host.to_owned())
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad(PatternFault::NoPort))?;
        let mut segments = Vec::new();
        for segment in url.path().split('/').filter(|s| !s.is_empty()) {
            if segment == "**" {
                segments.push(Segment::AnyDepth);
            } else if segment.contains("**") {
                return Err(bad(PatternFault::DoubleStar));
            } else {
                segments.push(Segment::Glob(segment.to_owned()));
            }
        }
        Ok(Self {
            text: raw.to_owned(),
            scheme: scheme.to_owned(),
            host,
            port,
            segments,
        })
    }

    /// Whether `topic` is one this pattern admits.
    pub fn matches(&self, topic: &url::Url) -> bool {
        if topic.scheme() != self.scheme || topic.port_or_known_default() != Some(self.port) {
            return false;
        }
        if !topic.username().is_empty() || topic.password().is_some() {
            return false;
        }
        let Some(host) = topic.host_str() else {
            return false;
        };
        let host_ok = match &self.host {
            HostPattern::Exact(h) => host == h,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|labels| labels.strip_suffix('.'))
                .is_some_and(|labels| !labels.is_empty() && !labels.starts_with('.')),
        };
        if !host_ok {
            return false;
        }
        let path: Vec<&str> = topic.path().split('/').filter(|s| !s.is_empty()).collect();
        segments_match(&self.segments, &path)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The pattern's segments match a prefix of the path's (subtree semantics).
fn segments_match(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((Segment::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| segments_match(rest, &path[skip..]))
        }
        Some((Segment::Glob(glob), rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob_match(glob, segment) && segments_match(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` matches any run of characters (within one segment: segments never contain `/`).
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admits(pattern: &str, topic: &str) -> bool {
        let p = TopicPattern::parse(pattern).unwrap();
        p.matches(&url::Url::parse(topic).unwrap())
    }

    #[test]
    fn bypass_attempts_are_refused() {
        let cases = [
            // (pattern, topic, admitted)
            ("https://site.example", "https://site.example/feed", true),
            (
                "https://site.example",
                "https://site.example.evil.org/feed",
                false,
            ),
            (
                "https://site.example",
                "https://evil.org/site.example/feed",
                false,
            ),
            ("https://site.example", "https://SITE.example/feed", true),
            ("https://site.example", "http://site.example/feed", false),
            (
                "https://site.example",
                "https://site.example:8443/feed",
                false,
            ),
            (
                "https://site.example",
                "https://site.example:443/feed",
                true,
            ),
            (
                "https://site.example:8443",
                "https://site.example/feed",
                false,
            ),
            (
                "https://site.example",
                "https://user@site.example/feed",
                false,
            ),
            (
                "https://site.example",
                "https://site.example@evil.org/feed",
                false,
            ),
            ("http://127.0.0.1:1/feeds", "http://127.0.0.1:1/feeds", true),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:1/feeds/x",
                true,
            ),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:1/feeds-evil/x",
                false,
            ),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:1/feeds/../admin",
                false,
            ),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:1/feeds/%2E%2E/admin",
                false,
            ),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:1/Feeds/x",
                false,
            ),
            (
                "http://127.0.0.1:1/feeds/",
                "http://127.0.0.1:1/feeds?x=1",
                true,
            ),
            (
                "http://127.0.0.1:1/feeds",
                "http://127.0.0.1:2/feeds",
                false,
            ),
            ("https://*.example.org", "https://a.example.org/x", true),
            ("https://*.example.org", "https://a.b.example.org/x", true),
            ("https://*.example.org", "https://example.org/x", false),
            ("https://*.example.org", "https://badexample.org/x", false),
            (
                "https://*.example.org",
                "https://a.example.org.evil.net/x",
                false,
            ),
            (
                "https://s.example/users/*/feed.atom",
                "https://s.example/users/ada/feed.atom",
                true,
            ),
            (
                "https://s.example/users/*/feed.atom",
                "https://s.example/users/a/b/feed.atom",
                false,
            ),
            (
                "https://s.example/users/*/feed.atom",
                "https://s.example/users/ada/feed.atomx",
                false,
            ),
            (
                "https://s.example/users/**/feed.atom",
                "https://s.example/users/a/b/feed.atom",
                true,
            ),
            (
                "https://s.example/users/**/feed.atom",
                "https://s.example/users/feed.atom",
                true,
            ),
            (
                "https://s.example/users/**/feed.atom",
                "https://s.example/other/feed.atom",
                false,
            ),
            ("https://s.example/a%2Fb", "https://s.example/a/b", false),
        ];
        for (pattern, topic, admitted) in cases {
            assert_eq!(admits(pattern, topic), admitted, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn ambiguous_patterns_are_refused_with_a_reason() {
        for bad in [
            "ftp://site.example/",
            "site.example/feed",
            "https://user@site.example/",
            "https://site.example/feed?x=1",
            "https://site.example/feed#top",
            "https://si*te.example/",
            "https://site.*.example/",
            "https://site.example/a**/b",
            "https:// bad host/",
        ] {
            let err = TopicPattern::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
