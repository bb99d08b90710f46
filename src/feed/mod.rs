//! Feeds, as a hub needs them (WebSub §3.1, §7: "reduce the payload … to a diff"): bytes in,
//! values or bytes out. No HTTP, no database.
//!
//! [`analyze`] recognises Atom 1.0, RSS 2.0, RSS 1.0 (RDF) and JSON Feed 1.0/1.1 from the
//! Content-Type and the document itself, and finds every entry with its identity, a hash of
//! its content and its exact byte span. [`build`] then produces the diff and single-entry
//! documents by *removing* entries from the original bytes, so the envelope (ids, titles,
//! links, namespaces, extensions, formatting) arrives exactly as the publisher wrote it.
//!
//! Hostile input is bounded: no entity is ever expanded (only the five predefined ones and
//! character references are decoded, and only in identity fields), nesting deeper than
//! [`MAX_DEPTH`] or more than [`MAX_ENTRIES`] entries make the document "not a feed", and
//! parsing is a single linear pass.

mod build;
mod json;
pub mod samples;
mod select;
mod xml;

use std::ops::Range;

pub use build::{assemble, build, ranges};
pub use select::{Known, Selection, select};

/// Deeper nesting than this is refused.
pub const MAX_DEPTH: usize = 64;
/// More entries than this are refused.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    Atom,
    Rss2,
    Rss1,
    JsonFeed,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Atom => "atom",
            Self::Rss2 => "rss2",
            Self::Rss1 => "rss1",
            Self::JsonFeed => "jsonfeed",
        }
    }

    /// The format family a caller names (`hub.mode=retrieve`'s `format`): atom, rss or json.
    pub fn format(self) -> &'static str {
        match self {
            Self::Atom => "atom",
            Self::Rss2 | Self::Rss1 => "rss",
            Self::JsonFeed => "json",
        }
    }
}

/// One entry (atom:entry, rss:item, JSON Feed item) of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What identifies the entry across fetches: atom:id; RSS guid, else link, else title,
    /// link and date; RSS 1.0 rdf:about; JSON Feed id, else url. Repeats within one document
    /// are told apart by their order.
    pub identity: String,
    /// SHA-256 (hex) of `identity`: the key stored per topic.
    pub key: String,
    /// SHA-256 (hex) of the entry's exact bytes: a different hash means the entry changed.
    pub hash: String,
    /// The entry's bytes in the document.
    pub span: Range<usize>,
}

/// A document recognised as a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub kind: FeedKind,
    pub entries: Vec<Entry>,
    /// What the feed says it is ([`identity`]): its `rel="self"` link (Atom, `atom:link` in
    /// RSS, JSON Feed's `feed_url`), else Atom's `feed/id`. `None` when it says neither (an RSS
    /// channel's `<link>` is the site's page, shared by its posts and comments feeds: never an
    /// identity). Feed identity (docs/polling.md) merges topics only on this and identical
    /// content.
    pub identity: Option<String>,
    /// How often the feed says it is worth fetching: RSS `<ttl>` (minutes), or
    /// `sy:updatePeriod` / `sy:updateFrequency` (RSS 1.0 syndication module, also found in RSS
    /// 2.0 and Atom). A hint for polling (docs/polling.md), nothing more.
    pub refresh_hint: Option<std::time::Duration>,
    /// How often the feed publishes, by its newest entries' own dates ([`typical_gap`]): what
    /// polling starts from before it has seen the feed change.
    pub typical_gap: Option<std::time::Duration>,
    /// For JSON Feed: the span of the `items` array, `[` to `]` inclusive.
    items_array: Option<Range<usize>>,
}

/// A feed's identity from what it says of itself: its self link, else its Atom id; marked
/// with which it is, so that a link and an id never match each other.
fn identity(self_link: Option<&str>, id: Option<&str>) -> Option<String> {
    fn trimmed(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    trimmed(self_link)
        .map(|link| format!("self {link}"))
        .or_else(|| trimmed(id).map(|id| format!("id {id}")))
}

/// What a fetched body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Analysis {
    Feed(Feed),
    /// Not a feed format at all (HTML, plain text, other JSON, binary).
    NotFeed,
    /// Looked like a feed but could not be read; delivered whole, with this reason recorded.
    Invalid(String),
}

/// Recognises and parses `body`, using `content_type` as a hint.
pub fn analyze(content_type: Option<&str>, body: &[u8]) -> Analysis {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let first = body
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    let xml_type = essence.ends_with("xml");
    let json_type = essence.ends_with("json");
    let declared_feed = matches!(
        essence.as_str(),
        "application/atom+xml"
            | "application/rss+xml"
            | "application/rdf+xml"
            | "application/feed+json"
    );
    match first {
        Some(b'<') if xml_type || essence.is_empty() || essence == "text/plain" => {
            xml::parse(body, declared_feed)
        }
        Some(b'{') if json_type || essence.is_empty() || essence == "text/plain" => {
            json::parse(body, declared_feed)
        }
        _ if declared_feed => {
            Analysis::Invalid(format!("declared {essence} but does not look like one"))
        }
        _ => Analysis::NotFeed,
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Gives entries their keys, telling repeated identities apart by occurrence.
/// The median time between consecutive dates among the 10 newest of `dates` (ms); `None` with
/// fewer than 3 dates, or when they do not differ (a feed that stamps every entry alike).
pub(crate) fn typical_gap(mut dates: Vec<i64>) -> Option<std::time::Duration> {
    dates.sort_unstable_by(|a, b| b.cmp(a));
    dates.truncate(10);
    let mut gaps: Vec<i64> = dates.windows(2).map(|w| w[0] - w[1]).collect();
    if gaps.len() < 2 {
        return None;
    }
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    (median > 0).then(|| std::time::Duration::from_millis(median as u64))
}

pub(crate) fn finish_entries(
    kind: FeedKind,
    raw: Vec<(String, Range<usize>)>,
    body: &[u8],
) -> Vec<Entry> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    raw.into_iter()
        .map(|(identity, span)| {
            let n = seen.entry(identity.clone()).or_default();
            *n += 1;
            let identity = if *n == 1 {
                identity
            } else {
                format!("{identity}\u{0}#{n}")
            };
            let key = sha256_hex(format!("{}\u{0}{identity}", kind.as_str()).as_bytes());
            let hash = sha256_hex(&body[span.clone()]);
            Entry {
                identity,
                key,
                hash,
                span,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
