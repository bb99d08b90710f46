//! `hubdistrib`: topic fetches and fan-out (WebSub §6, §7).
//!
//! - [`ping`]: publish pings count against their topic and push this queue's jobs;
//! - this module: the job itself — it claims the topic (one distribution per topic at a time,
//!   so a newer body never overtakes an older one), fetches it (conditional GET, a few checked
//!   redirects, a size cap) and, when the bytes changed, fans them out;
//! - [`plan`]: what a changed body becomes (diff, single-entry or whole documents);
//! - [`push`]: a producer's fat ping, distributed without a fetch.
//!
//! Each document is one `contents` row fanned out with a single `INSERT … SELECT` to its
//! subscriptions, numbered per subscription, with `hubout` jobs carrying batches of delivery
//! ids — all in one transaction; a fan-out of one batch is then sent at once by this process
//! (`jobs::deliver::Express`). Live followers get the same documents in their backlogs
//! (`store::live`), and the processes holding their connections are told (`crate::live`).

pub mod ping;
mod plan;
pub mod push;

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::{
    ping::{accept_ping, record_pings},
    push::{Pushed, push_content},
};
use super::{
    JobError, deliver,
    queue::{self, Job, Queue},
};
use crate::{
    context::HubContext,
    domain::{
        challenge,
        ids::{DeliveryId, DistributionId, TopicId, UnixMs},
        link,
        state::{Audience, DistributionSource},
    },
    outbound::Fetched,
    store::{
        StoreError, Tx, bodies, contents, deliveries, distributions, live, subscriptions,
        topics::{self, ClaimFor},
    },
};

pub const QUEUE: &str = "hubdistrib";

/// Delays before re-fetching a topic whose fetch failed; then the pings are given up.
const FETCH_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// How long a fetch whose topic host has its share of fetches running waits to try again.
const HOST_BUSY_RECHECK: Duration = Duration::from_secs(1);

/// Beyond the fetch timeout, how long a distribution may take to write its fan-out.
const FAN_OUT_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributeJob {
    pub topic: TopicId,
    /// How many fetches of this topic failed in a row before this job.
    #[serde(default)]
    pub failures: u32,
    /// When the ping that asked for this distribution was accepted (`None`: a follow-up).
    #[serde(default)]
    pub accepted_at: Option<UnixMs>,
    /// The HTTP request of that ping (`X-Request-Id`), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl DistributeJob {
    /// A distribution no HTTP request asked for (a follow-up, a recovery).
    pub fn follow_up(topic: TopicId) -> Self {
        Self {
            topic,
            failures: 0,
            accepted_at: None,
            request_id: None,
        }
    }
}

#[tracing::instrument(skip_all, fields(topic = %job.topic, request_id = job.request_id.as_deref()))]
pub async fn run(ctx: &Arc<HubContext>, job: DistributeJob) -> Result<(), JobError> {
    let now = UnixMs::now();
    let hold = now.after(ctx.settings.fetch.timeout + FAN_OUT_MARGIN);
    let claimed = topics::claim(&ctx.db, job.topic, now, hold, ClaimFor::Pings, &ctx.process);
    let Some(topic) = claimed.await? else {
        return Ok(());
    };
    // One host's topics get their share of fetches at a time: slow or failing topics of one
    // host cannot take every fetch worker.
    let Some(_fetch_slot) = ctx.limits.fetch_slot(&topic.url) else {
        topics::release(&ctx.db, &topic).await?;
        let due = UnixMs::now().after(HOST_BUSY_RECHECK);
        let mut tx = ctx.db.begin().await?;
        queue::push(
            &mut tx,
            &[Job::new(Queue::Distribute, &job).not_before(due)],
        )
        .await?;
        tx.commit().await?;
        return Ok(());
    };
    match distribute(ctx, &job, &topic, now).await {
        Err(JobError::Store(StoreError::ClaimLost(_))) => {
            tracing::warn!(url = %topic.url, "distribution outlived its claim; another worker took the topic over");
            Ok(())
        }
        Err(e) => {
            // Give the claim back so that the next ping, or the reconciler, retries at once.
            let _ = topics::release(&ctx.db, &topic).await;
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

async fn distribute(
    ctx: &Arc<HubContext>,
    job: &DistributeJob,
    topic: &topics::ClaimedTopic,
    now: UnixMs,
) -> Result<(), JobError> {
    let fetched = ctx
        .outbound
        .fetch_topic(
            topic.url.as_str(),
            topic.etag.as_deref(),
            topic.last_modified.as_deref(),
        )
        .await;
    let outcome = match &fetched {
        Ok(Fetched::NotModified) => "not_modified",
        Ok(Fetched::Body { .. }) => "fetched",
        Err(_) => "failed",
    };
    if outcome != "fetched" {
        ctx.metrics.fetch(outcome);
    }
    let (body, mut record, hubs) = match fetched {
        Ok(Fetched::NotModified) => (
            None,
            topics::FetchRecord {
                not_modified: true,
                ..Default::default()
            },
            Vec::new(),
        ),
        Ok(Fetched::Body {
            body,
            content_type,
            etag,
            last_modified,
            advertised_hubs,
        }) => {
            let hash = content_hash(content_type.as_deref(), &body);
            let changed = topic.content_hash.as_deref() != Some(hash.as_str());
            ctx.metrics
                .fetch(if changed { "changed" } else { "unchanged" });
            let record = topics::FetchRecord {
                content_type,
                content_hash: Some(hash),
                etag,
                last_modified,
                ..Default::default()
            };
            (changed.then_some(body), record, advertised_hubs)
        }
        Err(e) => return fetch_failed(ctx, job, topic, &e.to_string()).await,
    };

    let mut tx = ctx.db.begin().await?;
    let mut fanned = Fanned::default();
    if let Some(body) = &body {
        fanned = fan_out_body(
            ctx,
            &mut tx,
            topic,
            body,
            &hubs,
            &mut record,
            DistributionSource::Ping,
            job.accepted_at.unwrap_or(now),
            now,
        )
        .await?;
    }
    finish(
        ctx,
        tx,
        topic,
        Some(topic.ping_seq),
        &record,
        fanned.to_send,
    )
    .await?;
    if fanned.live_events > 0 {
        ctx.live.wake(topic.id);
    }
    tracing::info!(url = %topic.url, changed = body.is_some(), deliveries = fanned.deliveries, "topic distributed");
    Ok(())
}

/// Releases the topic (marking pings up to `seq` distributed), pushes the jobs that send
/// `to_send` (see [`deliver::sending`]) and a follow-up distribution when pings are still
/// waiting, commits, wakes the workers and starts an express run.
async fn finish(
    ctx: &Arc<HubContext>,
    mut tx: Tx,
    topic: &topics::ClaimedTopic,
    seq: Option<i64>,
    record: &topics::FetchRecord,
    to_send: Vec<Vec<DeliveryId>>,
) -> Result<(), StoreError> {
    let (mut jobs, express) = deliver::sending(ctx, to_send, UnixMs::now());
    if topics::finish(&mut tx, topic, seq, record, UnixMs::now()).await? {
        jobs.push(Job::new(
            Queue::Distribute,
            &DistributeJob::follow_up(topic.id),
        ));
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    if let Some(express) = express {
        // Its job is due later: no worker needs waking for it.
        jobs.retain(|j| j.queue() != Queue::Deliver);
        express.start(ctx.clone());
    }
    ctx.wakers.wake_for(&jobs);
    Ok(())
}

/// What a fan-out created.
#[derive(Debug, Default)]
struct Fanned {
    /// Per document, the deliveries that may be sent at once.
    to_send: Vec<Vec<DeliveryId>>,
    deliveries: usize,
    /// Events put in live subscribers' backlogs.
    live_events: usize,
    distribution: Option<DistributionId>,
}

/// Turns a changed body into documents (see [`plan::plan`]) and, when there are any, records a
/// distribution, one `contents` row per document and its deliveries, numbered per subscription.
#[allow(clippy::too_many_arguments)]
async fn fan_out_body(
    ctx: &HubContext,
    tx: &mut Tx,
    topic: &topics::ClaimedTopic,
    body: &[u8],
    advertised_hubs: &[String],
    record: &mut topics::FetchRecord,
    source: DistributionSource,
    accepted_at: UnixMs,
    now: UnixMs,
) -> Result<Fanned, StoreError> {
    let content_type = record.content_type.clone();
    let outgoing = plan::plan(
        ctx,
        tx,
        topic.id,
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
    let distribution = distributions::insert(tx, topic.id, source, now).await?;
    fanned.distribution = Some(distribution);
    let body_hash = match record.content_hash.clone() {
        Some(hash) => hash,
        None => content_hash(content_type.as_deref(), body),
    };
    // The body is stored once; every document is the whole of it or ranges of it.
    let body_id = bodies::insert(tx, topic.id, body, &body_hash, now).await?;
    let hub_link = advertised_hubs
        .iter()
        .find(|h| link::same_hub(h, ctx.public_url.as_str()))
        .map_or(ctx.public_url.as_str(), String::as_str);
    let default = ctx.settings.delivery.feed_default;
    let mut per_audience: Vec<(Audience, i64)> = Vec::new();
    // Asked once: most topics have no live follower, and their documents then cost no live
    // statement each.
    let live_followed = live::is_followed(tx, topic.id, now).await?;
    for doc in &outgoing {
        let content = contents::NewContent {
            topic_id: topic.id,
            content_type: content_type.as_deref(),
            body_id,
            ranges: doc.ranges.as_deref(),
            content_hash: &document_hash(&body_hash, doc.ranges.as_deref()),
            hub_link,
            self_link: topic.url.as_str(),
            audience: doc.audience,
            event_id: &challenge::random_hex(12),
            distribution_id: Some(distribution),
            accepted_at,
        };
        let content_id = contents::insert(tx, &content, now).await?;
        let ids = deliveries::fan_out(
            tx,
            content_id,
            topic.id,
            doc.audience,
            default,
            doc.seq_offset,
            now,
        )
        .await?;
        fanned.deliveries += ids.len();
        if live_followed {
            fanned.live_events +=
                live::fan_out(tx, content_id, topic.id, doc.audience, doc.seq_offset, now).await?;
        }
        // Later single-entry documents wait for the earlier ones to the same subscriptions:
        // finishing one sends the next (`jobs::deliver`), so only the first are queued.
        let first = doc.seq_offset == 1;
        if first {
            fanned.to_send.push(ids);
        }
        match per_audience.iter_mut().find(|(a, _)| *a == doc.audience) {
            Some((_, n)) => *n = (*n).max(doc.seq_offset),
            None => per_audience.push((doc.audience, doc.seq_offset)),
        }
    }
    subscriptions::advance_sequences(tx, topic.id, default, now, &per_audience).await?;
    if fanned.live_events > 0 {
        live::advance_sequences(tx, topic.id, now, &per_audience).await?;
        let max = ctx.settings.live.backlog_max as i64;
        live::bound(tx, topic.id, max).await?;
        crate::live::announce(tx, topic.id).await?;
    }
    Ok(fanned)
}

async fn fetch_failed(
    ctx: &HubContext,
    job: &DistributeJob,
    topic: &topics::ClaimedTopic,
    error: &str,
) -> Result<(), JobError> {
    let now = UnixMs::now();
    if !topics::fetch_failed(&ctx.db, topic, error, now).await? {
        tracing::warn!(url = %topic.url, "fetch outlived its claim; another worker took the topic over");
        return Ok(());
    }
    match FETCH_RETRY_DELAYS.get(job.failures as usize) {
        Some(delay) => {
            tracing::warn!(url = %topic.url, %error, retry_in = ?delay, "topic fetch failed");
            let mut tx = ctx.db.begin().await?;
            let retry = DistributeJob {
                topic: topic.id,
                failures: job.failures + 1,
                accepted_at: job.accepted_at,
                request_id: job.request_id.clone(),
            };
            let jobs = [Job::new(Queue::Distribute, &retry).not_before(now.after(*delay))];
            queue::push(&mut tx, &jobs).await?;
            tx.commit().await?;
        }
        None => {
            tracing::warn!(url = %topic.url, %error, "topic fetch failed again; pings given up");
            topics::abandon(&ctx.db, topic.id, topic.ping_seq).await?;
        }
    }
    Ok(())
}

/// Identifies a document made of ranges of a body by the body's hash and the ranges (the
/// document itself is only assembled when sent); a whole body by its own hash.
fn document_hash(body_hash: &str, ranges: Option<&[std::ops::Range<usize>]>) -> String {
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
fn content_hash(content_type: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(content_type.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}
