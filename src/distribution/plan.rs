//! Planning a fan-out: what a changed body becomes.
//!
//! - a feed (`feed::analyze`) is compared with the entries the topic already distributed; with
//!   nothing new or changed nothing is delivered, otherwise each delivery mode in use gets its
//!   documents (webhook subscriptions and live followers alike): `diff` (only new and changed entries), `single` (one single-entry feed per
//!   entry, oldest first), `full` (the whole document);
//! - anything else (and a feed that does not parse, whose reason is kept on the topic) is
//!   delivered whole.

use std::ops::Range;

use crate::{
    domain::{
        delivery_mode::DeliveryMode,
        ids::{TopicId, UnixMs},
        state::Audience,
    },
    feed::{self, Analysis},
    store::{StoreError, Tx, bodies, live, subscriptions, topic_entries, topics},
};

/// One document to distribute and who receives it: the body, or the byte ranges of it the
/// document keeps (it is assembled when sent, so planning stores nothing per document but the
/// ranges).
pub(super) struct Outgoing {
    /// `None`: the whole body.
    pub ranges: Option<Vec<Range<usize>>>,
    pub audience: Audience,
    /// Its sequence number relative to the subscription's last one (single-entry documents
    /// are numbered 1, 2, … in delivery order).
    pub seq_offset: i64,
}

impl Outgoing {
    fn whole() -> Self {
        Self {
            ranges: None,
            audience: Audience::Whole,
            seq_offset: 1,
        }
    }
}

/// A topic's first body, from a poll: its entries are recorded as seen and nothing is
/// delivered, so only what appears after reaches the subscribers.
pub(super) async fn baseline(
    tx: &mut Tx,
    topic_id: TopicId,
    body: &[u8],
    record: &mut topics::FetchRecord,
    now: UnixMs,
) -> Result<(), StoreError> {
    record.analysed = true;
    // Kept for `hub.mode=retrieve` (pruned with the rest by retention).
    if let Some(hash) = &record.content_hash {
        bodies::insert(tx, topic_id, body, hash, now).await?;
    }
    match feed::analyze(record.content_type.as_deref(), body) {
        Analysis::Feed(feed) => {
            record.feed_kind = Some(feed.kind.as_str());
            record.feed_hint = feed.refresh_hint;
            record.feed_gap = feed.typical_gap;
            record.feed_identity = feed.identity.clone();
            topic_entries::record(tx, topic_id, &feed.entries, now).await?;
        }
        Analysis::NotFeed => {}
        Analysis::Invalid(reason) => record.feed_error = Some(reason),
    }
    Ok(())
}

/// The topic a fan-out distributes, and its aliases: the documents are for the subscribers of
/// all of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Served<'a> {
    pub topic: TopicId,
    pub aliases: &'a [TopicId],
}

/// Decides what a changed body becomes: for a feed, the documents of each delivery mode in use
/// by the subscribers `served` (nothing when no entry is new or changed); otherwise the body
/// itself. Records the entries seen and what kind of content it was.
pub(super) async fn plan(
    feed_default: DeliveryMode,
    tx: &mut Tx,
    served: Served<'_>,
    content_type: Option<&str>,
    body: &[u8],
    record: &mut topics::FetchRecord,
    now: UnixMs,
) -> Result<Vec<Outgoing>, StoreError> {
    record.analysed = true;
    let topic_id = served.topic;
    let feed = match feed::analyze(content_type, body) {
        Analysis::Feed(feed) => feed,
        Analysis::NotFeed => return Ok(vec![Outgoing::whole()]),
        Analysis::Invalid(reason) => {
            tracing::info!(topic = %topic_id, %reason, "feed could not be read; delivered whole");
            record.feed_error = Some(reason);
            return Ok(vec![Outgoing::whole()]);
        }
    };
    record.feed_kind = Some(feed.kind.as_str());
    record.feed_hint = feed.refresh_hint;
    record.feed_gap = feed.typical_gap;
    record.feed_identity = feed.identity.clone();
    let known = topic_entries::known(tx, topic_id, &feed.entries).await?;
    let selection = feed::select(&feed, &known);
    topic_entries::record(tx, topic_id, &feed.entries, now).await?;
    if selection.is_empty() {
        return Ok(Vec::new());
    }
    let default = feed_default;
    let mut outgoing = Vec::new();
    let mut modes = Vec::new();
    for &id in std::iter::once(&served.topic).chain(served.aliases) {
        modes.extend(subscriptions::modes_in_use(tx, id, default, now).await?);
        modes.extend(live::modes_in_use(tx, id, now).await?);
    }
    modes.sort_unstable();
    modes.dedup();
    for mode in modes {
        let audience = Audience::Mode(mode);
        match mode {
            DeliveryMode::Full => outgoing.push(Outgoing {
                ranges: None,
                audience,
                seq_offset: 1,
            }),
            DeliveryMode::Diff => outgoing.push(Outgoing {
                ranges: Some(feed::ranges(&feed, body, |i| selection.contains(i))),
                audience,
                seq_offset: 1,
            }),
            // Feeds list the newest entry first; single-entry documents go out oldest first.
            DeliveryMode::Single => {
                for (n, i) in selection.indexes().into_iter().rev().enumerate() {
                    outgoing.push(Outgoing {
                        ranges: Some(feed::ranges(&feed, body, |j| j == i)),
                        audience,
                        seq_offset: n as i64 + 1,
                    });
                }
            }
        }
    }
    Ok(outgoing)
}
