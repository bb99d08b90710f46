//! Who may use the hub (WebSub §1 "Any hub MAY implement its own policies on who can use it").
//!
//! `HERALD_MODE=closed` makes Herald the hub of one producer: subscriptions are accepted only
//! for topics matching `HERALD_TOPIC_ALLOW` (others are denied), and publish pings on the hub
//! URL need the producer token. The producer API always needs the token.

use std::{fmt, str::FromStr};

use super::{topic_pattern::TopicPattern, url::HubUrl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HubMode {
    #[default]
    Open,
    Closed,
}

/// `HERALD_TOPIC_ALLOW`: comma-separated URL patterns, matched as URLs (see
/// [`TopicPattern`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAllowList(Vec<TopicPattern>);

impl FromStr for TopicAllowList {
    type Err = super::topic_pattern::PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(TopicPattern::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TopicAllowList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one of the patterns admits `topic`.
    pub fn permits(&self, topic: &HubUrl) -> bool {
        self.0.iter().any(|p| p.matches(topic.as_url()))
    }
}

/// A bearer token the hub asks for (`HERALD_PRODUCER_TOKEN`, `HERALD_ADMIN_TOKEN`,
/// `HERALD_METRICS_TOKEN`). Compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (!raw.is_empty()).then(|| Self(raw.to_owned()))
    }

    /// Compares in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        super::secret::constant_time_eq(&self.0, presented)
    }

    /// Checks an `Authorization: Bearer <token>` header value.
    pub fn authorizes(&self, header: Option<&str>) -> bool {
        header
            .and_then(bearer_value)
            .is_some_and(|t| self.matches(t))
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_value(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_subtrees_and_stars() {
        let list: TopicAllowList =
            "https://social.example/api/statuses/user_timeline/, https://social.example/users/*/feed.atom"
                .parse()
                .unwrap();
        let permits = |t: &str| list.permits(&HubUrl::parse(t).unwrap());
        assert!(permits(
            "https://social.example/api/statuses/user_timeline/1.atom"
        ));
        assert!(permits("https://social.example/users/ada/feed.atom"));
        assert!(!permits("https://social.example/users/ada/other.atom"));
        assert!(!permits(
            "https://evil.example/api/statuses/user_timeline/1.atom"
        ));
        assert!(!permits(
            "http://social.example/api/statuses/user_timeline/1.atom"
        ));
        assert!("ftp://x/".parse::<TopicAllowList>().is_err());
        assert!("".parse::<TopicAllowList>().unwrap().is_empty());
    }

    #[test]
    fn tokens_compare_exactly_and_hide_themselves() {
        let t = BearerToken::new("s3cret-token").unwrap();
        assert!(t.matches("s3cret-token"));
        assert!(!t.matches("s3cret-toke"));
        assert!(!t.matches(""));
        assert!(t.authorizes(Some("Bearer s3cret-token")));
        assert!(!t.authorizes(Some("Basic s3cret-token")));
        assert!(!t.authorizes(None));
        assert_eq!(format!("{t:?}"), "BearerToken(***)");
        assert!(BearerToken::new("  ").is_none());
    }
}
