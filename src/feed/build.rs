//! Builds outgoing documents from the original bytes by leaving entries out.

use super::{Feed, FeedKind};

/// The document with only the entries for which `keep(index)` holds; everything else —
/// declaration, envelope, whitespace between kept entries — is copied byte for byte.
pub fn build(feed: &Feed, body: &[u8], keep: impl Fn(usize) -> bool) -> Vec<u8> {
    match (feed.kind, &feed.items_array) {
        (FeedKind::JsonFeed, Some(array)) => build_json(feed, body, array.clone(), keep),
        _ => build_xml(feed, body, keep),
    }
}

fn build_xml(feed: &Feed, body: &[u8], keep: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (i, entry) in feed.entries.iter().enumerate() {
        if keep(i) {
            continue;
        }
        // Remove the entry and the whitespace that leads up to it, so no blank line is left.
        let mut start = entry.span.start;
        while start > at && body[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        out.extend_from_slice(&body[at..start]);
        at = entry.span.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// JSON needs its commas right: the kept items are joined with the separators that preceded
/// them in the original (the first kept item takes the first item's leading whitespace).
fn build_json(
    feed: &Feed,
    body: &[u8],
    array: std::ops::Range<usize>,
    keep: impl Fn(usize) -> bool,
) -> Vec<u8> {
    let entries = &feed.entries;
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..array.start + 1]);
    let Some(first) = entries.first() else {
        out.extend_from_slice(&body[array.start + 1..]);
        return out;
    };
    let mut kept_any = false;
    for (i, entry) in entries.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        let before = if kept_any {
            &body[entries[i - 1].span.end..entry.span.start]
        } else {
            &body[array.start + 1..first.span.start]
        };
        out.extend_from_slice(before);
        out.extend_from_slice(&body[entry.span.clone()]);
        kept_any = true;
    }
    let last = entries.last().map_or(array.start + 1, |e| e.span.end);
    out.extend_from_slice(&body[last..]);
    out
}
