//! Recording a fan-out: a changed body becomes documents ([`super::plan`]) and, when there
//! are any, a distribution, the body once, one `contents` row per document and its deliveries
//! (one `INSERT … SELECT` each), numbered per subscription — and the same documents in live
//! followers' backlogs. A topic with aliases (the same feed under other URLs, docs/polling.md)
//! is planned once and its documents written once per topic, each naming that topic's URL.

use sha2::{Digest, Sha256};

use super::{Distribution, plan};
use crate::{
    domain::{
        challenge,
        ids::{BodyId, DeliveryId, DistributionId, TopicId, UnixMs},
        link,
        state::{Audience, DistributionSource},
        url::HubUrl,
    },
    store::{
        StoreError, Tx, bodies, contents, deliveries, distributions, live, subscriptions, topics,
    },
};

/// A changed body to fan out, and where it came from.
pub(super) struct FanOut<'a> {
    pub topic: &'a topics::ClaimedTopic,
    pub body: &'a [u8],
    /// The hubs the topic named itself (`rel="hub"`), one of which may be this one.
    pub advertised_hubs: &'a [String],
    pub source: DistributionSource,
    /// When the ping (or push) that led here was accepted.
    pub accepted_at: UnixMs,
    pub now: UnixMs,
}

/// What a fan-out created.
#[derive(Debug, Default)]
pub(super) struct Fanned {
    /// Per document, the deliveries that may be sent at once.
    pub to_send: Vec<Vec<DeliveryId>>,
    pub deliveries: usize,
    /// The topics whose live followers got events (the topic, its aliases): to be woken.
    pub live_topics: Vec<TopicId>,
    pub distribution: Option<DistributionId>,
}

impl Distribution {
    /// Turns a changed body into documents (see [`plan::plan`]) and, when there are any,
    /// records a distribution, one `contents` row per document and its deliveries.
    pub(super) async fn fan_out(
        &self,
        tx: &mut Tx,
        f: &FanOut<'_>,
        record: &mut topics::FetchRecord,
    ) -> Result<Fanned, StoreError> {
        let (topic, body, now) = (f.topic, f.body, f.now);
        let content_type = record.content_type.clone();
        // The topic and its aliases (the same feed under other URLs): one plan, and each
        // one's subscribers served with documents naming its own URL.
        let mut audience = vec![(topic.id, topic.url.clone())];
        audience.extend(topics::aliases_of(tx, topic.id).await?);
        let aliases: Vec<TopicId> = audience[1..].iter().map(|(id, _)| *id).collect();
        let served = plan::Served {
            topic: topic.id,
            aliases: &aliases,
        };
        let outgoing = plan::plan(
            self.feed_default,
            tx,
            served,
            content_type.as_deref(),
            body,
            record,
            now,
        )
        .await?;
        let mut fanned = Fanned::default();
        if outgoing.is_empty() {
            return Ok(fanned);
        }
        let distribution = distributions::insert(tx, topic.id, f.source, now).await?;
        fanned.distribution = Some(distribution);
        let body_hash = match record.content_hash.clone() {
            Some(hash) => hash,
            None => content_hash(content_type.as_deref(), body),
        };
        // The body is stored once; every document is the whole of it or ranges of it.
        let body_id = bodies::insert(tx, topic.id, body, &body_hash, now).await?;
        let hub_link = f
            .advertised_hubs
            .iter()
            .find(|h| link::same_hub(h, self.public_url.as_str()))
            .map_or(self.public_url.as_str(), String::as_str);
        for (id, url) in &audience {
            let target = Target {
                id: *id,
                url,
                body_id,
                body_hash: &body_hash,
                content_type: content_type.as_deref(),
                hub_link,
                distribution,
            };
            self.fan_out_to(tx, &target, &outgoing, f, &mut fanned)
                .await?;
        }
        Ok(fanned)
    }

    /// Records the documents of one fan-out for the subscribers of one topic (the distributed
    /// topic, or one of its aliases): a `contents` row per document naming the topic's own
    /// URL, and its deliveries and live events.
    async fn fan_out_to(
        &self,
        tx: &mut Tx,
        target: &Target<'_>,
        outgoing: &[plan::Outgoing],
        f: &FanOut<'_>,
        fanned: &mut Fanned,
    ) -> Result<(), StoreError> {
        let (id, now, default) = (target.id, f.now, self.feed_default);
        let mut per_audience: Vec<(Audience, i64)> = Vec::new();
        // Asked once: most topics have no live follower, and their documents then cost no live
        // statement each.
        let live_followed = live::is_followed(tx, id, now).await?;
        let mut live_events = 0;
        for doc in outgoing {
            let content = contents::NewContent {
                topic_id: id,
                content_type: target.content_type,
                body_id: target.body_id,
                ranges: doc.ranges.as_deref(),
                content_hash: &document_hash(target.body_hash, doc.ranges.as_deref()),
                hub_link: target.hub_link,
                self_link: target.url.as_str(),
                audience: doc.audience,
                event_id: &challenge::random_hex(12),
                distribution_id: Some(target.distribution),
                accepted_at: f.accepted_at,
            };
            let content_id = contents::insert(tx, &content, now).await?;
            let ids = deliveries::fan_out(
                tx,
                content_id,
                id,
                doc.audience,
                default,
                doc.seq_offset,
                now,
            )
            .await?;
            fanned.deliveries += ids.len();
            if live_followed {
                live_events +=
                    live::fan_out(tx, content_id, id, doc.audience, doc.seq_offset, now).await?;
            }
            // Later single-entry documents wait for the earlier ones to the same subscriptions:
            // finishing one sends the next (`crate::delivery`), so only the first are queued.
            let first = doc.seq_offset == 1;
            if first {
                fanned.to_send.push(ids);
            }
            match per_audience.iter_mut().find(|(a, _)| *a == doc.audience) {
                Some((_, n)) => *n = (*n).max(doc.seq_offset),
                None => per_audience.push((doc.audience, doc.seq_offset)),
            }
        }
        subscriptions::advance_sequences(tx, id, default, now, &per_audience).await?;
        if live_events > 0 {
            live::advance_sequences(tx, id, now, &per_audience).await?;
            live::bound(tx, id, self.live_backlog_max as i64).await?;
            crate::live::announce(tx, id).await?;
            fanned.live_topics.push(id);
        }
        Ok(())
    }
}

/// One topic a fan-out serves, and what its documents are made of.
struct Target<'a> {
    id: TopicId,
    url: &'a HubUrl,
    body_id: BodyId,
    body_hash: &'a str,
    content_type: Option<&'a str>,
    hub_link: &'a str,
    distribution: DistributionId,
}

/// Identifies a document made of ranges of a body by the body's hash and the ranges (the
/// document itself is only assembled when sent); a whole body by its own hash.
pub(super) fn document_hash(body_hash: &str, ranges: Option<&[std::ops::Range<usize>]>) -> String {
    let Some(ranges) = ranges else {
        return body_hash.to_owned();
    };
    let mut h = Sha256::new();
    h.update(body_hash.as_bytes());
    for r in ranges {
        h.update(r.start.to_le_bytes());
        h.update(r.end.to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// Identifies a topic's content: its bytes and its Content-Type.
pub(super) fn content_hash(content_type: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(content_type.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}
