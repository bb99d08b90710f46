//! Builds outgoing documents from the original bytes by leaving entries out.
//!
//! A document is described by the byte ranges of the original it keeps ([`ranges`]), so it can
//! be stored as a few numbers next to the one stored copy of the fetched body and assembled
//! when it is sent ([`assemble`]); [`build`] does both at once.

use std::ops::Range;

use super::{Feed, FeedKind};

/// The document with only the entries for which `keep(index)` holds; everything else —
/// declaration, envelope, whitespace between kept entries — is copied byte for byte.
pub fn build(feed: &Feed, body: &[u8], keep: impl Fn(usize) -> bool) -> Vec<u8> {
    assemble(body, &ranges(feed, body, keep))
}

/// The ranges of `body` that make up the document [`build`] would return, in order, adjacent
/// ranges merged.
pub fn ranges(feed: &Feed, body: &[u8], keep: impl Fn(usize) -> bool) -> Vec<Range<usize>> {
    let mut out = Ranges::default();
    match (feed.kind, &feed.items_array) {
        (FeedKind::JsonFeed, Some(array)) => json_ranges(feed, body, array.clone(), keep, &mut out),
        _ => xml_ranges(feed, body, keep, &mut out),
    }
    out.0
}

/// The bytes of `body` in `ranges`, concatenated. Ranges outside `body` are clipped.
pub fn assemble(body: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let len = ranges.iter().map(|r| r.len()).sum();
    let mut doc = Vec::with_capacity(len);
    for r in ranges {
        let end = r.end.min(body.len());
        let start = r.start.min(end);
        doc.extend_from_slice(&body[start..end]);
    }
    doc
}

#[derive(Default)]
struct Ranges(Vec<Range<usize>>);

impl Ranges {
    fn push(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.0.push(r),
        }
    }
}

fn xml_ranges(feed: &Feed, body: &[u8], keep: impl Fn(usize) -> bool, out: &mut Ranges) {
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
        out.push(at..start);
        at = entry.span.end;
    }
    out.push(at..body.len());
}

/// JSON needs its commas right: the kept items are joined with the separators that preceded
/// them in the original (the first kept item takes the first item's leading whitespace).
fn json_ranges(
    feed: &Feed,
    body: &[u8],
    array: Range<usize>,
    keep: impl Fn(usize) -> bool,
    out: &mut Ranges,
) {
    let entries = &feed.entries;
    out.push(0..array.start + 1);
    let Some(first) = entries.first() else {
        out.push(array.start + 1..body.len());
        return;
    };
    let mut kept_any = false;
    for (i, entry) in entries.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        let before = if kept_any {
            entries[i - 1].span.end..entry.span.start
        } else {
            array.start + 1..first.span.start
        };
        out.push(before);
        out.push(entry.span.clone());
        kept_any = true;
    }
    let last = entries.last().map_or(array.start + 1, |e| e.span.end);
    out.push(last..body.len());
}
