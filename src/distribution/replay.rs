//! `herald.replay=N`: a subscriber that just subscribed receives the topic's latest N entries
//! once, closing the gap between its last fetch of the feed and its subscription
//! (docs/polling.md, "Catch-up").
//!
//! **In:** a verified subscribe that asked for it (`verification`), in the transaction that
//! activates the subscription.
//!
//! **Stored:** one `contents` row made of ranges of the latest stored body of the topic (the
//! one `hub.mode=retrieve` reads; nothing is copied) — the first N entries in the document's
//! own order, as retrieve gives them; content that is not a feed, whole — and one delivery
//! to that subscription alone, numbered after its last.
//!
//! **Out:** the delivery, sent and retried like any other (`crate::delivery`). A topic the hub
//! has no body of (never fetched, or pruned by retention) replays nothing.

use crate::{
    domain::{
        challenge,
        delivery_mode::DeliveryMode,
        ids::{DeliveryId, SubscriptionId, TopicId, UnixMs},
        state::Audience,
        url::HubUrl,
    },
    feed::{self, Analysis},
    store::{StoreError, Tx, bodies, contents, deliveries},
};

/// One subscription's replay.
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a> {
    pub topic_id: TopicId,
    pub topic: &'a HubUrl,
    pub subscription: SubscriptionId,
    /// The entries asked for.
    pub entries: usize,
    /// The hub URL the delivery names as `rel="hub"`.
    pub hub_link: &'a str,
}

/// Records the replay delivery in `tx`; `None` when there is nothing to replay.
pub async fn record(
    tx: &mut Tx,
    replay: Replay<'_>,
    now: UnixMs,
) -> Result<Option<DeliveryId>, StoreError> {
    let Some(latest) = bodies::latest_of(tx, replay.topic_id).await? else {
        return Ok(None);
    };
    let (ranges, audience) = match feed::analyze(latest.content_type.as_deref(), &latest.body) {
        Analysis::Feed(f) if f.entries.is_empty() => return Ok(None),
        Analysis::Feed(f) => (
            Some(feed::ranges(&f, &latest.body, |i| i < replay.entries)),
            Audience::Mode(DeliveryMode::Diff),
        ),
        Analysis::NotFeed | Analysis::Invalid(_) => (None, Audience::Whole),
    };
    let content = contents::NewContent {
        topic_id: replay.topic_id,
        content_type: latest.content_type.as_deref(),
        body_id: latest.id,
        ranges: ranges.as_deref(),
        content_hash: &super::fan_out::document_hash(&latest.content_hash, ranges.as_deref()),
        hub_link: replay.hub_link,
        self_link: replay.topic.as_str(),
        audience,
        event_id: &challenge::random_hex(12),
        distribution_id: None,
        accepted_at: now,
    };
    let content_id = contents::insert(tx, &content, now).await?;
    let id = deliveries::insert_one(tx, content_id, replay.subscription, now).await?;
    Ok(Some(id))
}
