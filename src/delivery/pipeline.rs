//! A claimed batch's POSTs and the recording of their results, as one task: the job follows
//! it, and may leave it to finish in the background ([`super::batch`]).
//!
//! Results are recorded as they come, in small groups (each group is what finished while the
//! previous one was being written), one transaction per group: their states, subscriptions
//! that answered 410, the retries' jobs, and the jobs of the deliveries that waited for the
//! finished ones. A POST holds its slot until its result is written, so what a crash can
//! repeat — POSTs sent and not yet recorded — is never more than the concurrency.
//!
//! When the database is away (a restart, a full disk), results that could not be written are
//! kept and written again when it returns ([`RECORD_PATIENCE`]); meanwhile their slots stay
//! taken, so sending stops once the concurrency is used up, and nothing is sent that could not
//! be recorded. Only if the recording is given up does the claim lapse and the deliveries go
//! out again.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc::UnboundedSender};

use super::{DeliverJob, Delivery, jobs_due};
use serde_json::json;

use crate::{
    domain::{
        event::EventType,
        ids::{ContentId, DeliveryId, SubscriptionId, UnixMs},
    },
    queue::{Job, JobError, Outbox, Queue},
    store::{
        StoreError,
        contents::ContentRow,
        deliveries::{self, ClaimedDelivery, Recorded},
        events, subscriptions,
    },
};

/// The jobs of successors this job goes on to send itself are still pushed (so a crash cannot
/// strand them), due this much later: by then they are sent, and the jobs find nothing to do.
const STREAM_FALLBACK: Duration = Duration::from_secs(5);

/// How long results that could not be written are kept and tried again while the database is
/// away: POSTs recorded within it are not sent a second time.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);

/// The first and the longest pause between tries of a recording.
const RECORD_PAUSES: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A claimed batch, ready to be sent.
pub(super) struct Pipeline {
    pub rows: Vec<ClaimedDelivery>,
    pub contents: HashMap<ContentId, Arc<ContentRow>>,
    /// The claim the batch was taken under: results are recorded only while it holds.
    pub token: UnixMs,
    /// The batch's draw of retry jitter.
    pub jitter: f64,
    /// Whether the job sends the successors of what finishes itself.
    pub stream: bool,
    /// Set when the job left this pipeline to finish in the background: successors are then
    /// queued at once.
    pub detached: Arc<AtomicBool>,
    /// How many results are recorded so far.
    pub recorded: Arc<AtomicUsize>,
    /// Where the deliveries that waited for finished ones are sent back to the job.
    pub next: UnboundedSender<Vec<DeliveryId>>,
    /// This pipeline's place among the process's pipelines.
    pub _slot: OwnedSemaphorePermit,
}

impl Pipeline {
    /// POSTs the batch concurrently and records the results as they come.
    pub async fn run(self, delivery: Arc<Delivery>) -> Result<(), JobError> {
        let delivery = &*delivery;
        let Self {
            rows,
            contents,
            token,
            jitter,
            stream,
            detached,
            recorded,
            next,
            _slot,
        } = self;
        let concurrency = delivery.settings.concurrency;
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let (results, mut finished) = tokio::sync::mpsc::channel(concurrency);
        let recorder = results.clone();
        let send = futures::stream::iter(rows)
            .map(move |row| {
                let content = contents.get(&row.content_id).cloned();
                let slots = slots.clone();
                let recorder = recorder.clone();
                async move {
                    let slot = slots.acquire_owned().await;
                    if recorder.is_closed() {
                        // Recording gave up: what is sent now could not be recorded.
                        return None;
                    }
                    let recorded = match content {
                        Some(content) => delivery.attempt(&row, content, jitter).await,
                        None => Recorded::Cancelled {
                            reason: "content row missing".into(),
                        },
                    };
                    Some((row, recorded, slot))
                }
            })
            .buffer_unordered(concurrency)
            .for_each(move |result| {
                let results = results.clone();
                async move {
                    // The recorder only goes away on an error, which this batch then returns.
                    if let Some(result) = result {
                        let _ = results.send(result).await;
                    }
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
                let waiting = delivery
                    .record_patiently(token, &outcomes, streaming)
                    .await?;
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
}

impl Delivery {
    /// Records a group's results, trying again while the database is away (for up to
    /// [`RECORD_PATIENCE`]); any other error is returned at once.
    async fn record_patiently(
        &self,
        token: UnixMs,
        results: &[(ClaimedDelivery, Recorded)],
        stream: bool,
    ) -> Result<Vec<DeliveryId>, JobError> {
        let started = tokio::time::Instant::now();
        let mut pause = RECORD_PAUSES.0;
        let mut told = false;
        loop {
            match self.record_group(token, results, stream).await {
                Err(JobError::Store(error))
                    if error.is_unavailable() && started.elapsed() < RECORD_PATIENCE =>
                {
                    if !told {
                        tracing::warn!(results = results.len(), error = %crate::telemetry::Chain(&error), "delivery results could not be written; they are kept and written when the database answers again");
                        told = true;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECORD_PAUSES.1);
                }
                Ok(waiting) if told => {
                    tracing::info!(
                        results = results.len(),
                        "delivery results kept during the outage are written"
                    );
                    return Ok(waiting);
                }
                other => return other,
            }
        }
    }

    /// Records the results of one group of POSTs in one transaction. Returns the deliveries
    /// that waited for the finished ones when `stream` says this job sends them itself (their
    /// jobs are pushed anyway, due a little later).
    async fn record_group(
        &self,
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
                | Recorded::Deferred { until: due } => {
                    retries.entry(*due).or_default().push(row.id)
                }
                Recorded::Gone => gone.push(row.subscription_id),
                _ => finished.push(row.subscription_id),
            }
        }
        let mut jobs = jobs_due(retries);
        let records: Vec<(DeliveryId, Recorded)> =
            results.iter().map(|(row, r)| (row.id, r.clone())).collect();

        let mut outbox = self.outbox().await?;
        let dead = deliveries::record(&mut outbox, token, &records, now).await?;
        subscriptions::end(&mut outbox, &gone, "callback answered 410 Gone", now).await?;
        deliveries::cancel_open(&mut outbox, &gone, "subscription ended (410 Gone)", now).await?;
        let next = deliveries::successors(&mut outbox, &finished).await?;
        let due = if stream {
            now.after(STREAM_FALLBACK)
        } else {
            UnixMs::EPOCH
        };
        for batch in next.chunks(self.settings.batch) {
            let job = DeliverJob {
                deliveries: batch.to_vec(),
                not_before: due,
            };
            jobs.push(Job::new(Queue::Deliver, &job).not_before(due));
        }
        outbox.push(&jobs).await?;
        // Last: the event counter's row is the last lock the transaction takes (docs/events.md).
        self.tell_health(&mut outbox, results, &dead, now).await?;
        outbox.commit().await?;
        self.count_outcomes(&records);
        Ok(if stream { next } else { Vec::new() })
    }

    /// The producer's events of a recorded group (docs/events.md): each dead-lettered delivery,
    /// the subscriptions it makes failing (the first dead letter since a delivery arrived), and
    /// the failing subscriptions a delivery reached again.
    async fn tell_health(
        &self,
        outbox: &mut Outbox,
        results: &[(ClaimedDelivery, Recorded)],
        dead: &[DeliveryId],
        now: UnixMs,
    ) -> Result<(), StoreError> {
        // Only subscriptions known failing when the batch was loaded: the healthy many cost
        // no statement here.
        let mut arrived: Vec<SubscriptionId> = results
            .iter()
            .filter(|(row, r)| row.failing && matches!(r, Recorded::Delivered { .. }))
            .map(|(row, _)| row.subscription_id)
            .collect();
        arrived.sort_unstable();
        arrived.dedup();
        let recovered = subscriptions::mark_recovered(outbox, &arrived).await?;
        let recovered: Vec<_> = recovered.into_iter().map(|s| (s, json!({}))).collect();
        events::record_for_subscriptions(outbox, EventType::CallbackRecovered, &recovered, now)
            .await?;
        if dead.is_empty() {
            return Ok(());
        }
        let dead_rows: Vec<&(ClaimedDelivery, Recorded)> = results
            .iter()
            .filter(|(row, _)| dead.contains(&row.id))
            .collect();
        let mut subs: Vec<SubscriptionId> = dead_rows
            .iter()
            .map(|(row, _)| row.subscription_id)
            .collect();
        subs.sort_unstable();
        subs.dedup();
        let described = subscriptions::describe(outbox, &subs).await?;
        let lettered: Vec<_> = dead_rows
            .iter()
            .filter_map(|(row, recorded)| {
                let s = described.iter().find(|s| s.id == row.subscription_id)?;
                let error = match recorded {
                    Recorded::Failed { error, .. } => error.as_str(),
                    _ => "",
                };
                Some((s.clone(), json!({ "delivery_id": row.id, "error": error })))
            })
            .collect();
        events::record_for_subscriptions(outbox, EventType::DeliveryDeadLettered, &lettered, now)
            .await?;
        let failing = subscriptions::mark_failing(outbox, &subs, now).await?;
        let failing: Vec<_> = failing
            .into_iter()
            .map(|s| (s, json!({ "reason": "a delivery exhausted its retries" })))
            .collect();
        events::record_for_subscriptions(outbox, EventType::CallbackFailing, &failing, now).await
    }

    /// Counts recorded outcomes (`herald_deliveries_total`).
    fn count_outcomes(&self, records: &[(DeliveryId, Recorded)]) {
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
            self.metrics.delivery(outcome, n);
        }
    }
}
