//! JSON Feed 1.0 / 1.1 (https://jsonfeed.org/version/1.1): items found with their exact text
//! and position, so diffs keep everything else as the publisher wrote it.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Analysis, Feed, FeedKind, MAX_ENTRIES, finish_entries};

#[derive(Deserialize)]
struct Document<'a> {
    version: Option<String>,
    /// The URL the feed gives for itself.
    feed_url: Option<String>,
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Item {
    id: Option<serde_json::Value>,
    url: Option<String>,
    title: Option<String>,
    date_published: Option<String>,
}

pub(super) fn parse(body: &[u8], declared_feed: bool) -> Analysis {
    let not_feed = |reason: String| {
        if declared_feed {
            Analysis::Invalid(reason)
        } else {
            Analysis::NotFeed
        }
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return not_feed("the JSON is not UTF-8".into());
    };
    let doc: Document<'_> = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return not_feed(format!("malformed JSON: {e}")),
    };
    let is_json_feed = doc
        .version
        .as_deref()
        .is_some_and(|v| v.starts_with("https://jsonfeed.org/version/"));
    if !is_json_feed {
        return not_feed("not a JSON Feed (no jsonfeed.org version)".into());
    }
    let Some(items) = doc.items else {
        return Analysis::Invalid("JSON Feed without items".into());
    };
    let items_start = offset(text, items.get());
    let list: Vec<&RawValue> = match serde_json::from_str(items.get()) {
        Ok(l) => l,
        Err(e) => return Analysis::Invalid(format!("JSON Feed items is not an array: {e}")),
    };
    if list.len() > MAX_ENTRIES {
        return Analysis::Invalid(format!("more than {MAX_ENTRIES} entries"));
    }
    let mut raw = Vec::with_capacity(list.len());
    for item in list {
        let start = offset(text, item.get());
        let fields: Item = serde_json::from_str(item.get()).unwrap_or(Item {
            id: None,
            url: None,
            title: None,
            date_published: None,
        });
        let id = match fields.id {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let identity = id
            .or(fields.url.clone().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| {
                format!(
                    "title+link+date:{}\u{0}{}\u{0}{}",
                    fields.title.unwrap_or_default(),
                    fields.url.unwrap_or_default(),
                    fields.date_published.unwrap_or_default()
                )
            });
        raw.push((identity, start..start + item.get().len()));
    }
    let kind = FeedKind::JsonFeed;
    Analysis::Feed(Feed {
        identity: super::identity(doc.feed_url.as_deref(), None),
        refresh_hint: None,
        typical_gap: None,
        kind,
        entries: finish_entries(kind, raw, body),
        items_array: Some(items_start..items_start + items.get().len()),
    })
}

/// Where `part`, a slice borrowed from `whole`, starts in it.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}
