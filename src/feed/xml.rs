//! Atom 1.0, RSS 2.0 and RSS 1.0 in one streaming pass with quick-xml, recording each entry's
//! byte span and the fields that identify it.

use std::ops::Range;

use quick_xml::{Reader, events::Event};

use super::{Analysis, Feed, FeedKind, MAX_DEPTH, MAX_ENTRIES, finish_entries};

/// The identifying fields of one entry, as far as they were read.
#[derive(Default)]
struct Fields {
    id: Option<String>,
    guid: Option<String>,
    about: Option<String>,
    link: Option<String>,
    title: Option<String>,
    date: Option<String>,
}

impl Fields {
    fn identity(self, kind: FeedKind) -> String {
        let primary = match kind {
            FeedKind::Atom => self.id,
            FeedKind::Rss2 => self.guid,
            FeedKind::Rss1 => self.about,
            FeedKind::JsonFeed => None,
        };
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        non_empty(primary)
            .or_else(|| non_empty(self.link.clone()))
            .unwrap_or_else(|| {
                format!(
                    "title+link+date:{}\u{0}{}\u{0}{}",
                    self.title.unwrap_or_default().trim(),
                    self.link.unwrap_or_default().trim(),
                    self.date.unwrap_or_default().trim()
                )
            })
    }
}

/// Which field of the current entry the text being read belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Guid,
    Link,
    Title,
    Date,
}

pub(super) fn parse(body: &[u8], declared_feed: bool) -> Analysis {
    match scan(body) {
        Ok(Some(feed)) => Analysis::Feed(feed),
        Ok(None) if declared_feed => {
            Analysis::Invalid("the document is not Atom, RSS 2.0 or RSS 1.0".into())
        }
        Ok(None) => Analysis::NotFeed,
        Err(reason) => Analysis::Invalid(reason.to_string()),
    }
}

/// Why a document that looked like a feed could not be read as one (the reason is kept on the
/// topic, and the body delivered whole).
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("malformed XML at byte {at}: {error}")]
    Malformed {
        at: usize,
        #[source]
        error: quick_xml::Error,
    },
    #[error("more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("{0}")]
    Encoding(#[from] quick_xml::encoding::EncodingError),
    #[error("the document ends before its elements are closed")]
    Unclosed,
}

fn scan(body: &[u8]) -> Result<Option<Feed>, ScanError> {
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut kind: Option<FeedKind> = None;
    let mut depth = 0usize;
    // Depth at which entries sit, once the root is known.
    let mut entry_depth = usize::MAX;
    let mut raw: Vec<(String, Range<usize>)> = Vec::new();
    let mut current: Option<(usize, Fields)> = None;
    let mut field: Option<(Field, String)> = None;
    // A feed-level refresh hint being read, and those read.
    let mut head_field: Option<(HeadField, String)> = None;
    let mut head = Head::default();
    // The entries' own dates (ms), for how often the feed publishes.
    let mut dates: Vec<i64> = Vec::new();

    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|error| ScanError::Malformed { at: before, error })?;
        match event {
            event @ (Event::Start(_) | Event::Empty(_)) => {
                let is_empty = matches!(event, Event::Empty(_));
                let (Event::Start(e) | Event::Empty(e)) = event else {
                    continue;
                };
                let local = e.local_name();
                let name = local.as_ref();
                if kind.is_none() {
                    kind = match name {
                        b"feed" => Some(FeedKind::Atom),
                        b"rss" => Some(FeedKind::Rss2),
                        b"RDF" => Some(FeedKind::Rss1),
                        _ => return Ok(None),
                    };
                    entry_depth = match kind {
                        Some(FeedKind::Rss2) => 2,
                        _ => 1,
                    };
                }
                let feed_kind = kind.unwrap_or(FeedKind::Atom);
                let is_entry = depth == entry_depth
                    && match feed_kind {
                        FeedKind::Atom => name == b"entry",
                        _ => name == b"item",
                    };
                if is_entry {
                    if raw.len() >= super::MAX_ENTRIES {
                        return Err(ScanError::TooManyEntries);
                    }
                    let mut fields = Fields::default();
                    if feed_kind == FeedKind::Rss1 {
                        fields.about = attribute(&e, b"about", reader.decoder());
                    }
                    if is_empty {
                        let end = reader.buffer_position() as usize;
                        dates.extend(fields.date.as_deref().and_then(entry_time));
                        raw.push((fields.identity(feed_kind), before..end));
                    } else {
                        current = Some((before, fields));
                    }
                } else if current.is_none()
                    && depth == head_depth(feed_kind)
                    && name == b"link"
                    && attribute(&e, b"rel", reader.decoder()).as_deref() == Some("self")
                {
                    // Atom's own `link`, or `atom:link` in an RSS channel: what the feed says
                    // its URL is (an RSS `<link>` without rel is the site, not the feed).
                    head.self_link = head
                        .self_link
                        .take()
                        .or_else(|| attribute(&e, b"href", reader.decoder()));
                } else if current.is_none() && !is_empty && depth == head_depth(feed_kind) {
                    head_field = match name {
                        b"id" if feed_kind == FeedKind::Atom => {
                            Some((HeadField::Id, String::new()))
                        }
                        b"ttl" if feed_kind == FeedKind::Rss2 => {
                            Some((HeadField::Ttl, String::new()))
                        }
                        b"updatePeriod" => Some((HeadField::Period, String::new())),
                        b"updateFrequency" => Some((HeadField::Frequency, String::new())),
                        _ => None,
                    };
                } else if let Some((_, fields)) = current.as_mut()
                    && depth == entry_depth + 1
                {
                    let wanted = match (feed_kind, name) {
                        (FeedKind::Atom, b"id") => Some(Field::Id),
                        (FeedKind::Rss2, b"guid") => Some(Field::Guid),
                        (FeedKind::Atom, b"title") | (_, b"title") => Some(Field::Title),
                        (FeedKind::Atom, b"updated")
                        | (FeedKind::Rss2, b"pubDate")
                        | (FeedKind::Rss1, b"date") => Some(Field::Date),
                        (FeedKind::Atom, b"link") => {
                            let rel = attribute(&e, b"rel", reader.decoder());
                            if fields.link.is_none()
                                && rel.as_deref().is_none_or(|r| r == "alternate")
                            {
                                fields.link = attribute(&e, b"href", reader.decoder());
                            }
                            None
                        }
                        (_, b"link") => Some(Field::Link),
                        _ => None,
                    };
                    if let Some(w) = wanted
                        && !is_empty
                    {
                        field = Some((w, String::new()));
                    }
                }
                if !is_empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ScanError::TooDeep);
                    }
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if let Some((f, text)) = head_field.take() {
                    head.set(f, text.trim());
                }
                if let Some((f, text)) = field.take() {
                    if depth == entry_depth + 1 {
                        if let Some((_, fields)) = current.as_mut() {
                            let slot = match f {
                                Field::Id => &mut fields.id,
                                Field::Guid => &mut fields.guid,
                                Field::Link => &mut fields.link,
                                Field::Title => &mut fields.title,
                                Field::Date => &mut fields.date,
                            };
                            slot.get_or_insert(text);
                        }
                    } else {
                        field = Some((f, text));
                    }
                }
                if depth == entry_depth
                    && let Some((start, fields)) = current.take()
                {
                    let end = reader.buffer_position() as usize;
                    dates.extend(fields.date.as_deref().and_then(entry_time));
                    raw.push((fields.identity(kind.unwrap_or(FeedKind::Atom)), start..end));
                }
            }
            Event::Text(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&t.decode()?);
                } else if let Some((_, text)) = head_field.as_mut() {
                    text.push_str(&t.decode()?);
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, text)) = field.as_mut() {
                    // Character references and the five predefined entities only; any other
                    // entity stays as written and is never expanded.
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => text.push(c),
                        _ => {
                            let name = r.decode()?;
                            match name.as_ref() {
                                "amp" => text.push('&'),
                                "lt" => text.push('<'),
                                "gt" => text.push('>'),
                                "quot" => text.push('"'),
                                "apos" => text.push('\''),
                                other => {
                                    text.push('&');
                                    text.push_str(other);
                                    text.push(';');
                                }
                            }
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 || current.is_some() {
        return Err(ScanError::Unclosed);
    }
    let Some(kind) = kind else { return Ok(None) };
    let identity = super::identity(head.self_link.as_deref(), head.id.as_deref());
    Ok(Some(Feed {
        kind,
        identity,
        refresh_hint: head.hint(),
        typical_gap: super::typical_gap(dates),
        entries: finish_entries(kind, raw, body),
        items_array: None,
    }))
}

/// An entry's date (Atom and RSS 1.0: RFC 3339; RSS 2.0: RFC 2822), in ms since the epoch.
fn entry_time(text: &str) -> Option<i64> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(text))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The depth of a feed's own elements (its channel's, for RSS).
fn head_depth(kind: FeedKind) -> usize {
    match kind {
        FeedKind::Atom => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone, Copy)]
enum HeadField {
    /// Atom's `feed/id`.
    Id,
    Ttl,
    Period,
    Frequency,
}

/// What a feed says of itself in its head: its identity and its refresh hints.
#[derive(Debug, Default)]
struct Head {
    /// `link rel="self"`: the URL the feed gives for itself.
    self_link: Option<String>,
    /// Atom's `feed/id`.
    id: Option<String>,
    ttl_minutes: Option<u64>,
    period: Option<std::time::Duration>,
    frequency: Option<u32>,
}

impl Head {
    fn set(&mut self, field: HeadField, text: &str) {
        match field {
            HeadField::Id => self.id = Some(text.to_owned()).filter(|t| !t.is_empty()),
            HeadField::Ttl => self.ttl_minutes = text.parse().ok(),
            HeadField::Frequency => self.frequency = text.parse().ok().filter(|f| *f > 0),
            HeadField::Period => {
                let day = 86_400;
                self.period = match text {
                    "hourly" => Some(3600),
                    "daily" => Some(day),
                    "weekly" => Some(7 * day),
                    "monthly" => Some(30 * day),
                    "yearly" => Some(365 * day),
                    _ => None,
                }
                .map(std::time::Duration::from_secs);
            }
        }
    }

    /// `<ttl>` first; else the update period divided by its frequency (1 when absent).
    fn hint(&self) -> Option<std::time::Duration> {
        if let Some(minutes) = self.ttl_minutes {
            return Some(std::time::Duration::from_secs(minutes.saturating_mul(60)));
        }
        self.period.map(|p| p / self.frequency.unwrap_or(1))
    }
}

fn attribute(
    e: &quick_xml::events::BytesStart<'_>,
    local: &[u8],
    decoder: quick_xml::encoding::Decoder,
) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .and_then(|a| {
            a.decoded_and_normalized_value(quick_xml::XmlVersion::Implicit1_0, decoder)
                .ok()
                .map(|v| v.into_owned())
        })
}
