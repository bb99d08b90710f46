//! Planning a fan-out: what a changed body becomes.
//!
//! - a feed (`feed::analyze`) is compared with the entries the topic already distributed; with
//!   nothing new or changed nothing is delivered, otherwise each delivery mode in use gets its
//!   documents: `diff` (only new and changed entries), `single` (one single-entry feed per
//!   entry, oldest first), `full` (the whole document);
//! - anything else (and a feed that does not parse, whose reason is kept on the topic) is
//!   delivered whole.

use std::borrow::Cow;

use crate::{
    context::HubContext,
    domain::{
        delivery_mode::DeliveryMode,
        ids::{TopicId, UnixMs},
        state::Audience,
    },
    feed::{self, Analysis},
    store::{StoreError, Tx, subscriptions, topic_entries, topics},
};

/// One document to distribute and who receives it; whole documents borrow the fetched bytes.
pub(super) struct Outgoing<'a> {
    pub body: Cow<'a, [u8]>,
    pub audience: Audience,
    /// Its sequence number relative to the subscription's last one (single-entry documents
    /// are numbered 1, 2, … in delivery order).
    pub seq_offset: i64,
}

impl<'a> Outgoing<'a> {
    fn whole(body: &'a [u8]) -> Self {
        Self {
            body: Cow::Borrowed(body),
            audience: Audience::Whole,
            seq_offset: 1,
        }
    }
}

/// Decides what a changed body becomes: for a feed, the documents of each delivery mode in use
/// (nothing when no entry is new or changed); otherwise the body itself. Records the entries
/// seen and what kind of content it was.
pub(super) async fn plan<'a>(
    ctx: &HubContext,
    tx: &mut Tx,
    topic_id: TopicId,
    content_type: Option<&str>,
    body: &'a [u8],
    record: &mut topics::FetchRecord,
    now: UnixMs,
) -> Result<Vec<Outgoing<'a>>, StoreError> {
    record.analysed = true;
    let feed = match feed::analyze(content_type, body) {
        Analysis::Feed(feed) => feed,
        Analysis::NotFeed => return Ok(vec![Outgoing::whole(body)]),
        Analysis::Invalid(reason) => {
            tracing::info!(topic = %topic_id, %reason, "feed could not be read; delivered whole");
            record.feed_error = Some(reason);
            return Ok(vec![Outgoing::whole(body)]);
        }
    };
    record.feed_kind = Some(feed.kind.as_str());
    let known = topic_entries::known(tx, topic_id, &feed.entries).await?;
    let selection = feed::select(&feed, &known);
    topic_entries::record(tx, topic_id, &feed.entries, now).await?;
    if selection.is_empty() {
        return Ok(Vec::new());
    }
    let default = ctx.settings.delivery.feed_default;
    let mut outgoing = Vec::new();
    for mode in subscriptions::modes_in_use(tx, topic_id, default, now).await? {
        let audience = Audience::Mode(mode);
        match mode {
            DeliveryMode::Full => outgoing.push(Outgoing {
                body: Cow::Borrowed(body),
                audience,
                seq_offset: 1,
            }),
            DeliveryMode::Diff => outgoing.push(Outgoing {
                body: Cow::Owned(feed::build(&feed, body, |i| selection.contains(i))),
                audience,
                seq_offset: 1,
            }),
            // Feeds list the newest entry first; single-entry documents go out oldest first.
            DeliveryMode::Single => {
                for (n, i) in selection.indexes().into_iter().rev().enumerate() {
                    outgoing.push(Outgoing {
                        body: Cow::Owned(feed::build(&feed, body, |j| j == i)),
                        audience,
                        seq_offset: n as i64 + 1,
                    });
                }
            }
        }
    }
    Ok(outgoing)
}
