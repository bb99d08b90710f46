//! `hubdistrib`: publish pings, topic fetches and fan-out (WebSub §6, §7).
//!
//! A ping counts against the topic (only topics with an active subscriber are tracked) and
//! pushes a job unless one is already pending: pings that arrive while a distribution is
//! pending or running lead to one more fetch, not one each. The job claims the topic (one
//! distribution per topic at a time, so a newer body never overtakes an older one), fetches
//! it (conditional GET, a few checked redirects, a size cap), and when the bytes changed:
//!
//! - a feed (`feed::analyze`) is compared with the entries the topic already distributed; with
//!   nothing new or changed nothing is delivered, otherwise each delivery mode in use gets its
//!   documents: `diff` (only new and changed entries), `single` (one single-entry feed per
//!   entry, oldest first), `full` (the whole document);
//! - anything else (and a feed that does not parse, whose reason is kept on the topic) is
//!   delivered whole.
//!
//! Each document is one `contents` row fanned out with a single `INSERT … SELECT` to its
//! subscriptions, numbered per subscription, with `hubout` jobs carrying batches of delivery
//! ids — all in one transaction.

use std::{borrow::Cow, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    JobError,
    deliver::DeliverJob,
    queue::{self, Job, Queue},
};
use crate::{
    context::HubContext,
    domain::{challenge, delivery_mode::DeliveryMode, link, url::HubUrl},
    feed::{self, Analysis},
    outbound::Fetched,
    store::{
        Db, StoreError, Tx, contents,
        deliveries::{self, Audience},
        distributions, now_ms, subscriptions, topic_entries,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributeJob {
    pub topic: i64,
    /// How many fetches of this topic failed in a row before this job.
    #[serde(default)]
    pub failures: u32,
}

/// Accepts a publish ping for `urls`. Returns how many of them have subscribers.
pub async fn accept_ping(ctx: &HubContext, urls: &[HubUrl]) -> Result<usize, StoreError> {
    let (subscribed, jobs) = record_pings(&ctx.db, urls).await?;
    ctx.wakers.wake_for(&jobs);
    tracing::info!(topics = urls.len(), subscribed, "publish ping accepted");
    Ok(subscribed)
}

/// Counts a ping against each subscribed topic and pushes the distribution jobs needed, in
/// one transaction (also used by `herald publish`, whose jobs the running hub polls for).
pub async fn record_pings(db: &Db, urls: &[HubUrl]) -> Result<(usize, Vec<Job>), StoreError> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let mut jobs = Vec::new();
    let mut subscribed = 0;
    for url in urls {
        if let Some(ping) = topics::record_ping(&mut tx, url.as_str(), now).await? {
            subscribed += 1;
            if ping.needs_job {
                let job = DistributeJob {
                    topic: ping.topic_id,
                    failures: 0,
                };
                jobs.push(Job::new(Queue::Distribute, &job));
            }
        }
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    Ok((subscribed, jobs))
}

#[tracing::instrument(skip_all, fields(topic = job.topic))]
pub async fn run(ctx: &HubContext, job: DistributeJob) -> Result<(), JobError> {
    let now = now_ms();
    // The fetch is bounded by its timeout; the margin covers the fan-out transaction.
    let hold = now + ctx.settings.fetch_timeout.as_millis() as i64 + 30_000;
    let Some(topic) = topics::claim(&ctx.db, job.topic, now, hold, ClaimFor::Pings).await? else {
        return Ok(());
    };
    let result = distribute(ctx, &job, &topic, now).await;
    if result.is_err() {
        // Give the claim back so that the next ping, or the reconciler, retries at once.
        let _ = topics::release(&ctx.db, topic.id).await;
    }
    result
}

async fn distribute(
    ctx: &HubContext,
    job: &DistributeJob,
    topic: &topics::ClaimedTopic,
    now: i64,
) -> Result<(), JobError> {
    let fetched = ctx
        .outbound
        .fetch_topic(
            &topic.url,
            topic.etag.as_deref(),
            topic.last_modified.as_deref(),
        )
        .await;
    let (body, mut record, hubs) = match fetched {
        Ok(Fetched::NotModified) => (None, topics::FetchRecord::default(), Vec::new()),
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
                ..Default::default()
            };
            (changed.then_some(body), record, advertised_hubs)
        }
        Err(e) => return fetch_failed(ctx, job, topic, &e.to_string()).await,
    };

    let mut tx = ctx.db.begin().await?;
    let mut fanned = Fanned::default();
    if let Some(body) = &body {
        fanned = fan_out_body(ctx, &mut tx, topic, body, &hubs, &mut record, "ping", now).await?;
    }
    finish(
        ctx,
        tx,
        topic.id,
        Some(topic.ping_seq),
        &record,
        fanned.jobs,
    )
    .await?;
    tracing::info!(url = %topic.url, changed = body.is_some(), deliveries = fanned.deliveries, "topic distributed");
    Ok(())
}

/// Releases the topic (marking pings up to `seq` distributed), pushes `jobs` and a follow-up
/// distribution when pings are still waiting, commits, and wakes the workers.
async fn finish(
    ctx: &HubContext,
    mut tx: Tx,
    topic_id: i64,
    seq: Option<i64>,
    record: &topics::FetchRecord,
    mut jobs: Vec<Job>,
) -> Result<(), StoreError> {
    if topics::finish(&mut tx, topic_id, seq, record, now_ms()).await? {
        jobs.push(Job::new(
            Queue::Distribute,
            &DistributeJob {
                topic: topic_id,
                failures: 0,
            },
        ));
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    Ok(())
}

/// What a fan-out created.
#[derive(Debug, Default)]
struct Fanned {
    jobs: Vec<Job>,
    deliveries: usize,
    distribution: Option<i64>,
}

/// Turns a changed body into documents (see [`plan`]) and, when there are any, records a
/// distribution, one `contents` row per document and its deliveries, numbered per subscription.
#[allow(clippy::too_many_arguments)]
async fn fan_out_body(
    ctx: &HubContext,
    tx: &mut Tx,
    topic: &topics::ClaimedTopic,
    body: &[u8],
    advertised_hubs: &[String],
    record: &mut topics::FetchRecord,
    source: &str,
    now: i64,
) -> Result<Fanned, StoreError> {
    let content_type = record.content_type.clone();
    let outgoing = plan(
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
    let hub_link = advertised_hubs
        .iter()
        .find(|h| link::same_hub(h, ctx.public_url.as_str()))
        .map_or(ctx.public_url.as_str(), String::as_str);
    let default = ctx.settings.feed_delivery.as_str();
    let mut per_mode: Vec<(&str, i64)> = Vec::new();
    for doc in &outgoing {
        let content = contents::NewContent {
            topic_id: topic.id,
            content_type: content_type.as_deref(),
            body: &doc.body,
            content_hash: &match (&doc.body, record.content_hash.as_deref()) {
                // The fetched bytes themselves: their hash is already known.
                (Cow::Borrowed(_), Some(hash)) => hash.to_owned(),
                _ => content_hash(content_type.as_deref(), &doc.body),
            },
            hub_link,
            self_link: &topic.url,
            mode: doc.mode,
            event_id: &challenge::random_hex(12),
            distribution_id: Some(distribution),
        };
        let content_id = contents::insert(tx, &content, now).await?;
        let audience = match doc.mode {
            WHOLE => Audience::All,
            mode => Audience::Mode { mode, default },
        };
        let ids =
            deliveries::fan_out(tx, content_id, topic.id, audience, doc.seq_offset, now).await?;
        fanned.deliveries += ids.len();
        for batch in ids.chunks(ctx.settings.delivery_batch) {
            fanned.jobs.push(Job::new(
                Queue::Deliver,
                &DeliverJob {
                    deliveries: batch.to_vec(),
                    not_before: 0,
                },
            ));
        }
        match per_mode.iter_mut().find(|(m, _)| *m == doc.mode) {
            Some((_, n)) => *n = (*n).max(doc.seq_offset),
            None => per_mode.push((doc.mode, doc.seq_offset)),
        }
    }
    subscriptions::advance_sequences(tx, topic.id, default, now, &per_mode).await?;
    Ok(fanned)
}

/// What a producer's fat ping came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Nobody is subscribed to the topic: nothing stored.
    NoSubscribers,
    /// The same bytes were distributed last time: nothing delivered.
    Unchanged,
    /// Distributed: `distribution` is `None` when a feed had no new or changed entry.
    Distributed {
        distribution: Option<i64>,
        deliveries: usize,
    },
}

/// How long a fat ping waits for a distribution of the same topic to finish.
const PUSH_CLAIM_WAIT: Duration = Duration::from_secs(10);

/// A producer's fat ping: `body` is distributed as if it had been fetched from `url`, at once
/// and without a fetch. Waits (briefly) for a running distribution of the topic to finish, so
/// bodies still go out in order.
pub async fn push_content(
    ctx: &HubContext,
    url: &HubUrl,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Pushed, JobError> {
    let Some(topic_id) = topics::find_subscribed(&ctx.db, url.as_str(), now_ms()).await? else {
        return Ok(Pushed::NoSubscribers);
    };
    let started = tokio::time::Instant::now();
    let topic = loop {
        let now = now_ms();
        let hold = now + 60_000;
        if let Some(topic) = topics::claim(&ctx.db, topic_id, now, hold, ClaimFor::Push).await? {
            break topic;
        }
        if started.elapsed() > PUSH_CLAIM_WAIT {
            return Err(JobError::Busy(
                "a distribution of this topic is still running; retry shortly".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let result = push_claimed(ctx, &topic, content_type, body).await;
    if result.is_err() {
        let _ = topics::release(&ctx.db, topic.id).await;
    }
    result
}

async fn push_claimed(
    ctx: &HubContext,
    topic: &topics::ClaimedTopic,
    content_type: Option<String>,
    body: &[u8],
) -> Result<Pushed, JobError> {
    let now = now_ms();
    let hash = content_hash(content_type.as_deref(), body);
    let unchanged = topic.content_hash.as_deref() == Some(hash.as_str());
    let mut record = topics::FetchRecord {
        content_type,
        content_hash: Some(hash),
        ..Default::default()
    };
    let mut tx = ctx.db.begin().await?;
    let mut fanned = Fanned::default();
    if !unchanged {
        fanned = fan_out_body(ctx, &mut tx, topic, body, &[], &mut record, "push", now).await?;
    }
    // Pings that wait for a fetch keep waiting (their job, pushed again if it gave up while
    // this push held the claim, fetches them).
    finish(
        ctx,
        tx,
        topic.id,
        None,
        &record,
        std::mem::take(&mut fanned.jobs),
    )
    .await?;
    tracing::info!(url = %topic.url, unchanged, deliveries = fanned.deliveries, "content pushed by the producer");
    Ok(if unchanged {
        Pushed::Unchanged
    } else {
        Pushed::Distributed {
            distribution: fanned.distribution,
            deliveries: fanned.deliveries,
        }
    })
}

/// Content that is not a feed, or a feed that could not be read: delivered whole to everyone.
const WHOLE: &str = "whole";

/// One document to distribute and who receives it; whole documents borrow the fetched bytes.
struct Outgoing<'a> {
    body: Cow<'a, [u8]>,
    /// [`WHOLE`] or a delivery mode.
    mode: &'static str,
    /// Its sequence number relative to the subscription's last one (single-entry documents
    /// are numbered 1, 2, … in delivery order).
    seq_offset: i64,
}

/// Decides what a changed body becomes: for a feed, the documents of each delivery mode in use
/// (nothing when no entry is new or changed); otherwise the body itself. Records the entries
/// seen and what kind of content it was.
async fn plan<'a>(
    ctx: &HubContext,
    tx: &mut Tx,
    topic_id: i64,
    content_type: Option<&str>,
    body: &'a [u8],
    record: &mut topics::FetchRecord,
    now: i64,
) -> Result<Vec<Outgoing<'a>>, StoreError> {
    record.analysed = true;
    let feed = match feed::analyze(content_type, body) {
        Analysis::Feed(feed) => feed,
        Analysis::NotFeed => {
            return Ok(vec![Outgoing {
                body: Cow::Borrowed(body),
                mode: WHOLE,
                seq_offset: 1,
            }]);
        }
        Analysis::Invalid(reason) => {
            tracing::info!(topic = topic_id, %reason, "feed could not be read; delivered whole");
            record.feed_error = Some(reason);
            return Ok(vec![Outgoing {
                body: Cow::Borrowed(body),
                mode: WHOLE,
                seq_offset: 1,
            }]);
        }
    };
    record.feed_kind = Some(feed.kind.as_str());
    let known = topic_entries::known(tx, topic_id, &feed.entries).await?;
    let selection = feed::select(&feed, &known);
    topic_entries::record(tx, topic_id, &feed.entries, now).await?;
    if selection.is_empty() {
        return Ok(Vec::new());
    }
    let default = ctx.settings.feed_delivery.as_str();
    let mut outgoing = Vec::new();
    for mode in subscriptions::modes_in_use(tx, topic_id, default, now).await? {
        let Ok(mode) = mode.parse::<DeliveryMode>() else {
            continue;
        };
        match mode {
            DeliveryMode::Full => outgoing.push(Outgoing {
                body: Cow::Borrowed(body),
                mode: mode.as_str(),
                seq_offset: 1,
            }),
            DeliveryMode::Diff => outgoing.push(Outgoing {
                body: Cow::Owned(feed::build(&feed, body, |i| selection.contains(i))),
                mode: mode.as_str(),
                seq_offset: 1,
            }),
            // Feeds list the newest entry first; single-entry documents go out oldest first.
            DeliveryMode::Single => {
                for (n, i) in selection.indexes().into_iter().rev().enumerate() {
                    outgoing.push(Outgoing {
                        body: Cow::Owned(feed::build(&feed, body, |j| j == i)),
                        mode: mode.as_str(),
                        seq_offset: n as i64 + 1,
                    });
                }
            }
        }
    }
    Ok(outgoing)
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
