//! `hubout`: content distribution requests (WebSub §7, §7.1).
//!
//! A job carries a batch of delivery ids. It claims those that are due, POSTs them
//! concurrently over pooled keep-alive connections (one slow subscriber holds one slot, not the
//! batch), and records the results as they come, in small groups, under the claim it took (a
//! worker whose claim lapsed and was taken over records nothing). Deliveries to one subscription go out in
//! order; when one finishes, the job goes on to send the next one waiting for that subscription
//! itself, round after round (for up to [`STREAM_BUDGET`]), so a subscriber's ordered stream of
//! single-entry documents costs no queue round trip per document. A fan-out of one batch is
//! sent at once by the process that made it, outside the queue ([`Express`]). Each POST carries
//! the exact body with `Content-Length`, the topic's Content-Type verbatim, one `Link` header
//! (rel=hub, rel=self), and `X-Hub-Signature` when the subscription has a secret. What happens
//! next is decided by `domain::retry`: retries become new jobs that are due later, pushed in the
//! same transaction.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LINK};
use serde::{Deserialize, Serialize};

use super::{
    JobError,
    queue::{self, Job, Queue},
};
use crate::{
    context::HubContext,
    domain::{
        breaker::{Admission, Reached},
        ids::{DeliveryId, UnixMs},
        link::delivery_link_header,
        retry::{NextStep, Outcome, with_jitter},
        state::SubscriptionState,
    },
    store::{
        callback_hosts, contents,
        contents::ContentRow,
        deliveries::{self, ClaimedDelivery, Recorded},
        subscriptions,
    },
};

pub const QUEUE: &str = "hubout";

/// A delivery's stable identity: the same on every attempt of that delivery.
pub const EVENT_ID_HEADER: &str = "herald-event-id";
/// The delivery's number among all deliveries to its subscription, from 1, without gaps.
pub const SEQUENCE_HEADER: &str = "herald-sequence";

/// Content-Type sent when the topic had none.
pub const FALLBACK_CONTENT_TYPE: &str = "application/octet-stream";

/// Waits up to this long in the handler for a job that the queue started early (the queue keeps
/// whole seconds); longer waits go back to the queue.
const MAX_IN_HANDLER_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverJob {
    pub deliveries: Vec<DeliveryId>,
    /// Before this instant nothing in the batch is due (the epoch: at once).
    #[serde(default)]
    pub not_before: UnixMs,
}

/// Jobs that send `ids` at once, `batch` deliveries per job. Work that fits in one job (a
/// topic with few subscribers, the next document of an ordered stream) goes ahead of the
/// batches of big fan-outs waiting in the queue: one topic with 100,000 subscribers does not
/// make every other topic's subscribers wait for all of them.
pub fn jobs_now(ids: &[DeliveryId], batch: usize) -> Vec<Job> {
    let small = ids.len() <= batch;
    ids.chunks(batch.max(1))
        .map(|chunk| {
            let job = DeliverJob {
                deliveries: chunk.to_vec(),
                not_before: UnixMs::EPOCH,
            };
            let job = Job::new(Queue::Deliver, &job);
            if small { job.ahead() } else { job }
        })
        .collect()
}

/// A small fan-out (one batch) sent at once by the process that made it, outside the queue.
/// Through the queue it would wait behind the batches of any big fan-out its workers had
/// already taken (they take several jobs at a time, and run the ones they took first).
/// Its job is pushed anyway, due [`EXPRESS_FALLBACK`] later, so that a crash cannot strand
/// the deliveries; by then they are sent, and the job finds nothing to claim.
#[derive(Debug)]
pub struct Express {
    deliveries: Vec<DeliveryId>,
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// How much later the job of an express fan-out is due.
const EXPRESS_FALLBACK: Duration = Duration::from_secs(5);

/// What sends the deliveries a fan-out just created (`documents`: for each document, those of
/// its deliveries that may go at once): their jobs, to push in the fan-out's transaction, and —
/// when they fit in one batch, this process runs the workers and has an express slot free —
/// the [`Express`] run to start once that transaction has committed.
pub fn sending(
    ctx: &HubContext,
    documents: Vec<Vec<DeliveryId>>,
    now: UnixMs,
) -> (Vec<Job>, Option<Express>) {
    let batch = ctx.settings.delivery.batch;
    let total: usize = documents.iter().map(Vec::len).sum();
    let eligible = total > 0 && total <= batch && ctx.settings.role.runs_workers();
    match eligible.then(|| ctx.limits.express_delivery()).flatten() {
        Some(slot) => {
            let deliveries: Vec<DeliveryId> = documents.into_iter().flatten().collect();
            // Run at once whenever the queue gets to it: no wait in the handler.
            let fallback = DeliverJob {
                deliveries: deliveries.clone(),
                not_before: UnixMs::EPOCH,
            };
            let job = Job::new(Queue::Deliver, &fallback).not_before(now.after(EXPRESS_FALLBACK));
            (vec![job], Some(Express { deliveries, slot }))
        }
        None => (
            documents
                .iter()
                .flat_map(|ids| jobs_now(ids, batch))
                .collect(),
            None,
        ),
    }
}

impl Express {
    /// Sends the deliveries in a task of their own (call after the commit that created them).
    pub fn start(self, ctx: Arc<HubContext>) {
        let Self { deliveries, slot } = self;
        tokio::spawn(async move {
            let job = DeliverJob {
                deliveries,
                not_before: UnixMs::EPOCH,
            };
            if let Err(error) = run(&ctx, job).await {
                tracing::warn!(%error, "express delivery failed; its job in the queue will retry");
            }
            drop(slot);
        });
    }
}

#[tracing::instrument(skip_all, fields(batch = job.deliveries.len()))]
pub async fn run(ctx: &Arc<HubContext>, job: DeliverJob) -> Result<(), JobError> {
    let wait = UnixMs::now().until(job.not_before);
    if !wait.is_zero() {
        if wait > MAX_IN_HANDLER_WAIT {
            let mut tx = ctx.db.begin().await?;
            queue::push(
                &mut tx,
                &[Job::new(Queue::Deliver, &job).not_before(job.not_before)],
            )
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        tokio::time::sleep(wait).await;
    }
    // Ordered streams: when a delivery finishes, the next one waiting for the same
    // subscription is sent by this job at once, round after round, without a queue round trip.
    let started = tokio::time::Instant::now();
    let mut ids = job.deliveries;
    let mut bodies = contents::BodyCache::default();
    loop {
        let streaming = started.elapsed() < STREAM_BUDGET;
        ids = send_batch(ctx, &ids, streaming, &mut bodies).await?;
        if ids.is_empty() {
            return Ok(());
        }
    }
}

/// How long one job goes on sending the successors of what it delivered; then they go back
/// to the queue.
const STREAM_BUDGET: Duration = Duration::from_secs(30);

/// The jobs of successors this job goes on to send itself are still pushed (so a crash cannot
/// strand them), due this much later: by then they are sent, and the jobs find nothing to do.
const STREAM_FALLBACK: Duration = Duration::from_secs(5);

/// Claims and sends one batch and records the results. Returns the deliveries that waited for
/// the ones just finished, when `stream` says this job sends them too (their jobs are pushed
/// anyway, due a little later); otherwise their jobs are due at once and nothing is returned.
async fn send_batch(
    ctx: &Arc<HubContext>,
    ids: &[DeliveryId],
    stream: bool,
    bodies: &mut contents::BodyCache,
) -> Result<Vec<DeliveryId>, JobError> {
    let now = UnixMs::now();
    let hold = claim_until(ctx, now, ids.len());
    let claimed = deliveries::claim(&ctx.db, ids, now, hold, &ctx.process).await?;
    requeue_blocked(ctx, ids, &claimed.ids).await?;
    if claimed.ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = deliveries::load_claimed(&ctx.db, &claimed.ids).await?;
    let mut content_ids: Vec<_> = rows.iter().map(|r| r.content_id).collect();
    content_ids.sort_unstable();
    content_ids.dedup();
    let contents = contents::load_many(&ctx.db, &content_ids, bodies).await?;
    // One draw per batch: deliveries that failed alike come back together, as one job.
    let jitter = random_unit();

    // The POSTs and the recording of their results run as their own task: when a batch is
    // held up by a few callbacks that answer slowly (or never, until the timeout), the job
    // leaves that task to finish them and frees its worker slot for the next batch
    // (`DETACH_AFTER`). The number of such tasks is bounded per process (`pipelines`).
    let pipeline_slot = ctx
        .limits
        .delivery_pipeline()
        .await
        .map_err(|_| JobError::Busy("the delivery pipelines are closed".into()))?;
    let detached = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(AtomicUsize::new(0));
    let total = rows.len();
    let (next_tx, mut next_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<DeliveryId>>();
    let pipeline = tokio::spawn(send_and_record(
        ctx.clone(),
        rows,
        recorded.clone(),
        contents,
        claimed.token,
        jitter,
        stream,
        detached.clone(),
        next_tx,
        pipeline_slot,
    ));
    tokio::pin!(pipeline);
    let started = tokio::time::Instant::now();
    let mut progress = tokio::time::interval(PROGRESS_CHECK);
    let mut next = Vec::new();
    loop {
        tokio::select! {
            finished = &mut pipeline => {
                finished.map_err(|e| JobError::Busy(format!("delivery pipeline failed: {e}")))??;
                while let Ok(ids) = next_rx.try_recv() {
                    next.extend(ids);
                }
                return Ok(if stream { next } else { Vec::new() });
            }
            Some(ids) = next_rx.recv() => next.extend(ids),
            _ = progress.tick() => {
                if !held_up(started.elapsed(), recorded.load(Ordering::SeqCst), total) {
                    continue;
                }
                // Later groups queue their successors at once; those recorded so far were
                // queued for later (this job meant to send them itself): queue them now.
                detached.store(true, Ordering::SeqCst);
                while let Ok(ids) = next_rx.try_recv() {
                    next.extend(ids);
                }
                if stream && !next.is_empty() {
                    let jobs = jobs_now(&next, ctx.settings.delivery.batch);
                    let mut tx = ctx.db.begin().await?;
                    queue::push(&mut tx, &jobs).await?;
                    tx.commit().await?;
                    ctx.wakers.wake_for(&jobs);
                }
                tracing::debug!("batch held up by slow callbacks; left to finish in the background");
                return Ok(Vec::new());
            }
        }
    }
}

/// How often a job looks at how far its batch has got.
const PROGRESS_CHECK: Duration = Duration::from_millis(50);

/// Whether a batch is held up by a few slow callbacks, so the job should leave the rest to
/// finish in the background: almost all of it is done and the rest is late, or it has simply
/// taken long.
fn held_up(elapsed: Duration, recorded: usize, total: usize) -> bool {
    let almost_all = recorded * 10 >= total * 9;
    (almost_all && elapsed >= Duration::from_millis(250)) || elapsed >= Duration::from_secs(2)
}

/// POSTs a claimed batch concurrently and records the results as they come, in small groups
/// (each group is what finished while the previous one was being written). A POST holds its
/// slot until its result is written, so what a crash can repeat — POSTs sent and not yet
/// recorded — is never more than the concurrency. The deliveries that waited for finished
/// ones are sent back over `next`.
#[allow(clippy::too_many_arguments)]
async fn send_and_record(
    ctx: Arc<HubContext>,
    rows: Vec<ClaimedDelivery>,
    recorded: Arc<AtomicUsize>,
    contents: std::collections::HashMap<crate::domain::ids::ContentId, Arc<ContentRow>>,
    token: UnixMs,
    jitter: f64,
    stream: bool,
    detached: Arc<AtomicBool>,
    next: tokio::sync::mpsc::UnboundedSender<Vec<DeliveryId>>,
    _pipeline_slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), JobError> {
    let ctx = &*ctx;
    let concurrency = ctx.settings.delivery.concurrency;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (results, mut finished) = tokio::sync::mpsc::channel(concurrency);
    let send = futures::stream::iter(rows)
        .map(|row| {
            let content = contents.get(&row.content_id).cloned();
            let slots = slots.clone();
            async move {
                let slot = slots.acquire_owned().await;
                let recorded = match content {
                    Some(content) => attempt(ctx, &row, content, jitter).await,
                    None => Recorded::Cancelled {
                        reason: "content row missing".into(),
                    },
                };
                (row, recorded, slot)
            }
        })
        .buffer_unordered(concurrency)
        .for_each(move |result| {
            let results = results.clone();
            async move {
                // The recorder only goes away on an error, which this batch then returns.
                let _ = results.send(result).await;
            }
        });
    // Owns the receiver: should recording fail, the senders see it closed and stop waiting.
    let record = async move {
        let mut group = Vec::with_capacity(concurrency);
        while finished.recv_many(&mut group, concurrency).await > 0 {
            let (outcomes, slots): (Vec<_>, Vec<_>) = group
                .drain(..)
                .map(|(row, r, slot)| ((row, r), slot))
                .unzip();
            let streaming = stream && !detached.load(Ordering::SeqCst);
            let waiting = record_group(ctx, token, &outcomes, streaming).await?;
            recorded.fetch_add(outcomes.len(), Ordering::SeqCst);
            // The group's slots go back only now that its results are written.
            drop(slots);
            if !waiting.is_empty() {
                let _ = next.send(waiting);
            }
        }
        Ok::<_, JobError>(())
    };
    let ((), recorded) = tokio::join!(send, record);
    recorded
}

/// Records the results of one group of POSTs in one transaction: their states, subscriptions
/// that answered 410, the retries' jobs, and the jobs of the deliveries that waited for the
/// finished ones. Returns those waiting deliveries when `stream` says this job sends them
/// itself (their jobs are pushed anyway, due a little later).
async fn record_group(
    ctx: &HubContext,
    token: UnixMs,
    results: &[(ClaimedDelivery, Recorded)],
    stream: bool,
) -> Result<Vec<DeliveryId>, JobError> {
    let now = UnixMs::now();
    let mut retries: BTreeMap<UnixMs, Vec<DeliveryId>> = BTreeMap::new();
    let mut gone = Vec::new();
    // Subscriptions whose delivery reached a final state: the next one waiting may go.
    let mut finished = Vec::new();
    for (row, recorded) in results {
        match recorded {
            Recorded::Retry {
                next_attempt_at: due,
                ..
            }
            | Recorded::Deferred { until: due } => retries.entry(*due).or_default().push(row.id),
            Recorded::Gone => gone.push(row.subscription_id),
            _ => finished.push(row.subscription_id),
        }
    }
    let mut jobs = jobs_due(retries);
    let records: Vec<(DeliveryId, Recorded)> =
        results.iter().map(|(row, r)| (row.id, r.clone())).collect();

    let mut tx = ctx.db.begin().await?;
    deliveries::record(&mut tx, token, &records, now).await?;
    subscriptions::end(&mut tx, &gone, "callback answered 410 Gone", now).await?;
    deliveries::cancel_open(&mut tx, &gone, "subscription ended (410 Gone)", now).await?;
    let next = deliveries::successors(&mut tx, &finished).await?;
    let due = if stream {
        now.after(STREAM_FALLBACK)
    } else {
        UnixMs::EPOCH
    };
    for batch in next.chunks(ctx.settings.delivery.batch) {
        let job = DeliverJob {
            deliveries: batch.to_vec(),
            not_before: due,
        };
        jobs.push(Job::new(Queue::Deliver, &job).not_before(due));
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    count_outcomes(ctx, &records);
    Ok(if stream { next } else { Vec::new() })
}

/// Counts recorded outcomes (`herald_deliveries_total`).
fn count_outcomes(ctx: &HubContext, records: &[(DeliveryId, Recorded)]) {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (_, r) in records {
        let outcome = match r {
            Recorded::Delivered { .. } => "delivered",
            Recorded::Retry { .. } => "retry",
            Recorded::Failed { .. } => "failed",
            Recorded::Gone => "gone",
            Recorded::Cancelled { .. } => "cancelled",
            Recorded::Deferred { .. } => continue,
        };
        *counts.entry(outcome).or_default() += 1;
    }
    for (outcome, n) in counts {
        ctx.metrics.delivery(outcome, n);
    }
}

/// Deliveries of this job that it could not claim and that are still pending go back to the
/// queue: those behind an older one to the same subscription due when that one can next be
/// finished (when it finishes first, the job that finished it pushes them at once; this covers
/// the moment both jobs run together), the others when they are due.
async fn requeue_blocked(
    ctx: &HubContext,
    requested: &[DeliveryId],
    claimed: &[DeliveryId],
) -> Result<(), JobError> {
    let claimed: std::collections::HashSet<DeliveryId> = claimed.iter().copied().collect();
    let unclaimed: Vec<DeliveryId> = requested
        .iter()
        .copied()
        .filter(|id| !claimed.contains(id))
        .collect();
    if unclaimed.is_empty() {
        return Ok(());
    }
    let now = UnixMs::now();
    let soon = now.after(BLOCKED_RECHECK);
    let mut by_time: BTreeMap<UnixMs, Vec<DeliveryId>> = BTreeMap::new();
    for d in deliveries::unclaimed(&ctx.db, &unclaimed, soon).await? {
        by_time
            .entry(try_again_at(&d, now, soon))
            .or_default()
            .push(d.id);
    }
    if by_time.is_empty() {
        return Ok(());
    }
    let jobs = jobs_due(by_time);
    let mut tx = ctx.db.begin().await?;
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    Ok(())
}

/// When to try a delivery a claim missed again: behind an open one, when that one can be
/// finished (not before `soon`, so a blocker that is due but not yet taken is not polled in a
/// loop); not blocked any more (its blocker finished while this job claimed), at once (the
/// epoch) or when it is due.
fn try_again_at(d: &deliveries::Unclaimed, now: UnixMs, soon: UnixMs) -> UnixMs {
    match d.blocked_until {
        Some(until) => until.max(soon),
        None if d.next_attempt_at <= now => UnixMs::EPOCH,
        None => d.next_attempt_at,
    }
}

/// One hubout job per due time, carrying the deliveries due then.
fn jobs_due(by_time: BTreeMap<UnixMs, Vec<DeliveryId>>) -> Vec<Job> {
    by_time
        .into_iter()
        .map(|(at, ids)| {
            Job::new(
                Queue::Deliver,
                &DeliverJob {
                    deliveries: ids,
                    not_before: at,
                },
            )
            .not_before(at)
        })
        .collect()
}

/// How long a delivery waits in the job for a slot of its callback host before it is deferred.
const HOST_SLOT_WAIT: Duration = Duration::from_millis(250);

/// How long a delivery whose callback host is at its concurrency cap waits before it tries again.
pub const HOST_BUSY_DEFER: Duration = Duration::from_millis(500);

/// How long a delivery waiting behind one in flight waits before it looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);

/// How long a batch keeps its claim: every round of concurrent POSTs may take a full timeout,
/// plus one more and a margin for writing the results. A claim that lapses lets another worker
/// take the deliveries again, so it must outlast the slowest batch.
fn claim_until(ctx: &HubContext, now: UnixMs, batch: usize) -> UnixMs {
    let rounds = batch.div_ceil(ctx.settings.delivery.concurrency) as u32 + 1;
    now.after(ctx.settings.delivery.timeout * rounds + Duration::from_secs(5))
}

/// One POST, and what the retry policy makes of its outcome.
async fn attempt(
    ctx: &HubContext,
    row: &ClaimedDelivery,
    content: Arc<ContentRow>,
    jitter: f64,
) -> Recorded {
    if row.subscription_state != SubscriptionState::Active {
        return Recorded::Cancelled {
            reason: format!("subscription is {}", row.subscription_state),
        };
    }
    if row.expires_at <= UnixMs::now() {
        return Recorded::Cancelled {
            reason: "subscription lease expired".into(),
        };
    }
    // A host that stopped answering is paused: its deliveries wait without using attempts.
    let host = crate::limits::host_key(&row.callback);
    if let Admission::Wait(until) = ctx.limits.breaker_admit(&host, UnixMs::now()) {
        return Recorded::Deferred { until };
    }
    // One host gets its share of requests at a time; the rest wait without using an attempt.
    let slot = ctx.limits.host_slot_within(&host, HOST_SLOT_WAIT);
    let Some(_host_slot) = slot.await else {
        return Recorded::Deferred {
            until: UnixMs::now().after(HOST_BUSY_DEFER),
        };
    };
    let headers = match headers(ctx, row, &content) {
        Ok(h) => h,
        Err(reason) => {
            return Recorded::Failed {
                status: None,
                error: reason,
            };
        }
    };
    let outcome = match ctx
        .outbound
        .post_delivery(row.callback.as_str(), headers, content.body.clone())
        .await
    {
        Ok(r) if (200..300).contains(&r.status) => Outcome::Success(r.status),
        Ok(r) => Outcome::Status {
            status: r.status,
            retry_after: r.retry_after,
        },
        Err(e) => Outcome::Transport(e.to_string()),
    };
    let reached = match outcome {
        Outcome::Transport(_) => Reached::Unreachable,
        _ => Reached::Answered,
    };
    let now = UnixMs::now();
    if let Some(retry_at) = ctx.limits.breaker_record(&host, reached, now) {
        match retry_at {
            Some(at) => tracing::warn!(%host, retry_at = %at, "callback host unreachable: paused"),
            None => tracing::info!(%host, "callback host answers again: resumed"),
        }
        if let Err(error) = callback_hosts::record(&ctx.db, &host, retry_at, now).await {
            tracing::warn!(%error, "breaker state not recorded");
        }
    }
    let attempts = row.attempts.saturating_add(1);
    let (status, error) = match &outcome {
        Outcome::Success(s) => (Some(*s), String::new()),
        Outcome::Status { status, .. } => (Some(*status), format!("callback answered {status}")),
        Outcome::Transport(e) => (None, e.clone()),
    };
    match ctx.settings.delivery.retry.next_step(attempts, &outcome) {
        NextStep::Delivered => {
            ctx.metrics
                .delivered_after(content.accepted_at, UnixMs::now());
            Recorded::Delivered {
                status: status.unwrap_or(200),
            }
        }
        NextStep::EndSubscription => Recorded::Gone,
        NextStep::RetryAfter(delay) => Recorded::Retry {
            status,
            error,
            next_attempt_at: UnixMs::now().after(with_jitter(delay, jitter)),
        },
        NextStep::GiveUp => Recorded::Failed { status, error },
    }
}

fn headers(
    ctx: &HubContext,
    row: &ClaimedDelivery,
    content: &ContentRow,
) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    let content_type = content
        .content_type
        .as_deref()
        .unwrap_or(FALLBACK_CONTENT_TYPE);
    h.insert(CONTENT_TYPE, value(content_type)?);
    h.insert(
        LINK,
        value(&delivery_link_header(&content.hub_link, &content.self_link))?,
    );
    let event_id = format!("{}-{}", content.event_id, row.subscription_id);
    h.insert(HeaderName::from_static(EVENT_ID_HEADER), value(&event_id)?);
    h.insert(
        HeaderName::from_static(SEQUENCE_HEADER),
        value(&row.seq.to_string())?,
    );
    if let Some(secret) = &row.secret {
        // PuSH 0.3-era subscribers (GNU social, StatusNet) verify only sha1.
        let algorithm = if row.legacy {
            ctx.settings.delivery.legacy_signature_algorithm
        } else {
            ctx.settings.delivery.signature_algorithm
        };
        let signature = algorithm.sign(secret, &content.body);
        h.insert(
            HeaderName::from_static("x-hub-signature"),
            value(&signature)?,
        );
    }
    Ok(h)
}

fn value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("cannot send header value {s:?}"))
}

fn random_unit() -> f64 {
    let hex = crate::domain::challenge::random_hex(2);
    f64::from(u16::from_str_radix(&hex, 16).unwrap_or(0)) / 65536.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unclaimed(blocked_until: Option<i64>, next_attempt_at: i64) -> deliveries::Unclaimed {
        deliveries::Unclaimed {
            id: DeliveryId::new(7),
            blocked_until: blocked_until.map(UnixMs::from_millis),
            next_attempt_at: UnixMs::from_millis(next_attempt_at),
        }
    }

    #[test]
    fn one_job_of_work_goes_ahead_of_the_batches_of_a_big_fan_out() {
        let ids: Vec<DeliveryId> = (1..=1200).map(DeliveryId::new).collect();
        let big = jobs_now(&ids, 500);
        assert_eq!(big.len(), 3);
        assert!(big.iter().all(|j| j.priority() == 0));
        let small = jobs_now(&ids[..500], 500);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].priority(), 1);
    }

    #[test]
    fn a_missed_delivery_is_tried_again_at_once_only_when_nothing_blocks_it() {
        let (now, soon) = (UnixMs::from_millis(10_000), UnixMs::from_millis(11_000));
        // Its blocker finished between the claim and the look: at once.
        assert_eq!(
            try_again_at(&unclaimed(None, 9_000), now, soon),
            UnixMs::EPOCH
        );
        assert_eq!(
            try_again_at(&unclaimed(None, 10_000), now, soon),
            UnixMs::EPOCH
        );
        // Waiting for its own retry: then.
        assert_eq!(
            try_again_at(&unclaimed(None, 50_000), now, soon),
            UnixMs::from_millis(50_000)
        );
        // Behind one being sent (reported as `soon`) or due already: not before `soon`.
        assert_eq!(try_again_at(&unclaimed(Some(11_000), 0), now, soon), soon);
        assert_eq!(try_again_at(&unclaimed(Some(5_000), 0), now, soon), soon);
        // Behind one waiting for a retry later: when that one is due.
        assert_eq!(
            try_again_at(&unclaimed(Some(60_000), 0), now, soon),
            UnixMs::from_millis(60_000)
        );
    }
}
