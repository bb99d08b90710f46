//! Who may use the hub (WebSub §1 "Any hub MAY implement its own policies on who can use it").
//!
//! `HERALD_MODE=closed` makes Herald the hub of one producer: subscriptions are accepted only
//! for topics matching `HERALD_TOPIC_ALLOW` (others are denied), and publish pings on the hub
//! URL need the producer token. The producer API always needs the token.

use std::{fmt, str::FromStr};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HubMode {
    #[default]
    Open,
    Closed,
}

/// `HERALD_TOPIC_ALLOW`: comma-separated URL prefixes; `*` inside one matches any run of
/// characters (`https://example.org/users/*/feed.atom`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAllowList(Vec<String>);

impl FromStr for TopicAllowList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let patterns: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = patterns
            .iter()
            .find(|p| !(p.starts_with("http://") || p.starts_with("https://")))
        {
            return Err(format!(
                "topic pattern {bad:?} must start with http:// or https://"
            ));
        }
        Ok(Self(patterns))
    }
}

impl TopicAllowList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `topic` starts with (or, with `*`, matches the start of) one of the patterns.
    pub fn permits(&self, topic: &str) -> bool {
        self.0.iter().any(|p| prefix_match(p, topic))
    }
}

/// Glob match of `pattern` against a prefix of `text`, `*` matching any run of characters.
fn prefix_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The producer token (`HERALD_PRODUCER_TOKEN`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerToken(String);

impl ProducerToken {
    pub fn new(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (!raw.is_empty()).then(|| Self(raw.to_owned()))
    }

    /// Compares in constant time: both sides are hashed to a fixed length first, so neither
    /// the content nor the length of the token leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// Checks an `Authorization: Bearer <token>` header value.
    pub fn authorizes(&self, header: Option<&str>) -> bool {
        header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .is_some_and(|t| self.matches(t.trim()))
    }
}

impl fmt::Debug for ProducerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProducerToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_prefixes_and_stars() {
        let list: TopicAllowList =
            "https://social.example/api/statuses/user_timeline/, https://social.example/users/*/feed.atom"
                .parse()
                .unwrap();
        assert!(list.permits("https://social.example/api/statuses/user_timeline/1.atom"));
        assert!(list.permits("https://social.example/users/ada/feed.atom"));
        assert!(!list.permits("https://social.example/users/ada/other.atom"));
        assert!(!list.permits("https://evil.example/api/statuses/user_timeline/1.atom"));
        assert!(!list.permits("http://social.example/api/statuses/user_timeline/1.atom"));
        assert!("ftp://x/".parse::<TopicAllowList>().is_err());
        assert!("".parse::<TopicAllowList>().unwrap().is_empty());
    }

    #[test]
    fn tokens_compare_exactly_and_hide_themselves() {
        let t = ProducerToken::new("s3cret-token").unwrap();
        assert!(t.matches("s3cret-token"));
        assert!(!t.matches("s3cret-toke"));
        assert!(!t.matches(""));
        assert!(t.authorizes(Some("Bearer s3cret-token")));
        assert!(!t.authorizes(Some("Basic s3cret-token")));
        assert!(!t.authorizes(None));
        assert_eq!(format!("{t:?}"), "ProducerToken(***)");
        assert!(ProducerToken::new("  ").is_none());
    }
}
