//! `hubdistrib`: publish pings, topic fetches and fan-out (WebSub §6, §7).
//!
//! A ping counts against the topic (only topics with an active subscriber are tracked) and
//! pushes a job. The job claims the topic, fetches it (conditional GET, a few checked
//! redirects, a size cap), and when the content changed stores one `contents` row, creates one
//! delivery per active subscription with a single `INSERT … SELECT`, and pushes `hubout` jobs
//! carrying batches of delivery ids — all in one transaction. Pings that arrive during the
//! fetch leave the topic pending, and the job pushes one follow-up job for them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    JobError,
    deliver::DeliverJob,
    queue::{self, Job, Queue},
};
use crate::{
    context::HubContext,
    domain::{link, url::HubUrl},
    outbound::Fetched,
    store::{StoreError, contents, deliveries, now_ms, topics},
};

pub const QUEUE: &str = "hubdistrib";

/// Delays before re-fetching a topic whose fetch failed; then the pings are given up.
const FETCH_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributeJob {
    pub topic: i64,
    /// How many fetches of this topic failed in a row before this job.
    #[serde(default)]
    pub failures: u32,
}

/// Accepts a publish ping for `urls`. Returns how many of them have subscribers.
pub async fn accept_ping(ctx: &HubContext, urls: &[HubUrl]) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut tx = ctx.db.begin().await?;
    let mut jobs = Vec::new();
    for url in urls {
        if let Some(topic) = topics::record_ping(&mut tx, url.as_str(), now).await? {
            jobs.push(Job::new(
                Queue::Distribute,
                &DistributeJob { topic, failures: 0 },
            ));
        }
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    tracing::info!(
        topics = urls.len(),
        subscribed = jobs.len(),
        "publish ping accepted"
    );
    Ok(jobs.len())
}

#[tracing::instrument(skip_all, fields(topic = job.topic))]
pub async fn run(ctx: &HubContext, job: DistributeJob) -> Result<(), JobError> {
    let now = now_ms();
    // The fetch is bounded by its timeout; the margin covers the fan-out transaction.
    let hold = now + ctx.settings.fetch_timeout.as_millis() as i64 + 30_000;
    let Some(topic) = topics::claim(&ctx.db, job.topic, now, hold).await? else {
        return Ok(());
    };
    let fetched = ctx
        .outbound
        .fetch_topic(
            &topic.url,
            topic.etag.as_deref(),
            topic.last_modified.as_deref(),
        )
        .await;
    let (body, record, hubs) = match fetched {
        Ok(Fetched::NotModified) => (None, None, Vec::new()),
        Ok(Fetched::Body {
            body,
            content_type,
            etag,
            last_modified,
            advertised_hubs,
        }) => {
            let hash = content_hash(content_type.as_deref(), &body);
            let changed = topic.content_hash.as_deref() != Some(hash.as_str());
            let record = topics::FetchRecord {
                content_type,
                content_hash: Some(hash),
                etag,
                last_modified,
            };
            (changed.then_some(body), Some(record), advertised_hubs)
        }
        Err(e) => return fetch_failed(ctx, &job, &topic, &e.to_string()).await,
    };

    let record = record.unwrap_or_default();
    let mut tx = ctx.db.begin().await?;
    let mut jobs = Vec::new();
    let mut fanned_out = 0;
    if let Some(body) = &body {
        let hub_link = hubs
            .iter()
            .find(|h| link::same_hub(h, ctx.public_url.as_str()))
            .map_or(ctx.public_url.as_str(), String::as_str);
        let content = contents::NewContent {
            topic_id: topic.id,
            content_type: record.content_type.as_deref(),
            body,
            content_hash: record.content_hash.as_deref().unwrap_or_default(),
            hub_link,
            self_link: &topic.url,
        };
        let content_id = contents::insert(&mut tx, &content, now).await?;
        let ids = deliveries::fan_out(&mut tx, content_id, topic.id, now).await?;
        fanned_out = ids.len();
        for batch in ids.chunks(ctx.settings.delivery_batch) {
            jobs.push(Job::new(
                Queue::Deliver,
                &DeliverJob {
                    deliveries: batch.to_vec(),
                    not_before: 0,
                },
            ));
        }
    }
    if topics::finish(&mut tx, topic.id, topic.ping_seq, &record, now_ms()).await? {
        jobs.push(Job::new(
            Queue::Distribute,
            &DistributeJob {
                topic: topic.id,
                failures: 0,
            },
        ));
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    tracing::info!(url = %topic.url, changed = body.is_some(), deliveries = fanned_out, "topic distributed");
    Ok(())
}

async fn fetch_failed(
    ctx: &HubContext,
    job: &DistributeJob,
    topic: &topics::ClaimedTopic,
    error: &str,
) -> Result<(), JobError> {
    let now = now_ms();
    topics::fetch_failed(&ctx.db, topic.id, error, now).await?;
    match FETCH_RETRY_DELAYS.get(job.failures as usize) {
        Some(delay) => {
            tracing::warn!(url = %topic.url, %error, retry_in = ?delay, "topic fetch failed");
            let mut tx = ctx.db.begin().await?;
            let retry = DistributeJob {
                topic: topic.id,
                failures: job.failures + 1,
            };
            let jobs =
                [Job::new(Queue::Distribute, &retry).not_before(now + delay.as_millis() as i64)];
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

/// Identifies a topic's content: its bytes and its Content-Type.
fn content_hash(content_type: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(content_type.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}
