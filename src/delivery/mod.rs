//! `hubout`: content distribution requests (WebSub §7, §7.1).
//!
//! **In:** delivery ids — from a fan-out (`crate::distribution`, which pushes this flow's jobs
//! in its own transaction and may start an [`Express`] run), from the sweep and the reconciler
//! (`crate::upkeep`), from an operator's replay (`crate::admin`).
//!
//! **Stored:** each delivery's state in `deliveries` (`store::deliveries`): claimed
//! (`sending`, `claimed_until`, the claiming process), then delivered, retrying
//! (`next_attempt_at`), failed, gone (410) or cancelled, with `last_status` and `last_error`.
//!
//! **Out:** one POST per delivery, signed (`X-Hub-Signature`), with the exact body and
//! `Content-Length`, the topic's Content-Type verbatim, one `Link` header (rel=hub, rel=self),
//! `Herald-Event-Id` and `Herald-Sequence` ([`attempt`]).
//!
//! **Retried:** `domain::retry` decides from the attempt and the answer; a retry is a new job
//! due at the precise time, pushed with the results ([`pipeline`]); a host that stops
//! answering is paused by its circuit breaker, and a host at its concurrency cap defers its
//! deliveries without using attempts.
//!
//! How a job runs ([`batch`]): it claims the batch's due deliveries, POSTs them concurrently
//! over pooled keep-alive connections (one slow subscriber holds one slot, not the batch) and
//! records the results as they come, in small groups, under the claim it took (a worker whose
//! claim lapsed and was taken over records nothing). Deliveries to one subscription go out in
//! order; when one finishes, the job goes on to send the next one waiting for that subscription
//! itself, round after round (for up to `STREAM_BUDGET`), so a subscriber's ordered stream of
//! single-entry documents costs no queue round trip per document.

mod attempt;
mod batch;
mod express;
mod pipeline;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

pub use self::express::{Express, Sending};
use crate::{
    config::DeliverySettings,
    domain::ids::{DeliveryId, ProcessId, UnixMs},
    limits::Limits,
    metrics::Metrics,
    outbound::Outbound,
    queue::{Job, JobError, Outbox, Queue, Wakers},
    store::{Db, contents},
};

/// A delivery's stable identity: the same on every attempt of that delivery.
pub const EVENT_ID_HEADER: &str = "herald-event-id";
/// The delivery's number among all deliveries to its subscription, from 1, without gaps.
pub const SEQUENCE_HEADER: &str = "herald-sequence";

/// Waits up to this long in the handler for a job that the queue started early (the queue keeps
/// whole seconds); longer waits go back to the queue.
const MAX_IN_HANDLER_WAIT: Duration = Duration::from_secs(3);

/// How long one job goes on sending the successors of what it delivered; then they go back
/// to the queue.
const STREAM_BUDGET: Duration = Duration::from_secs(30);

/// The delivery flow's handle, built once at start-up: what sending and recording needs.
#[derive(Debug)]
pub struct Delivery {
    pub db: Db,
    pub wakers: Wakers,
    /// This process: the owner of the claims it takes.
    pub process: ProcessId,
    pub outbound: Outbound,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub settings: DeliverySettings,
    /// Whether this process runs the queue workers: only then may it send a small fan-out at
    /// once itself ([`Express`]).
    pub express: bool,
}

/// A `hubout` job: a batch of deliveries.
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

impl Delivery {
    /// Jobs that send `ids` at once, in this hub's batches (see [`jobs_now`]).
    pub fn jobs_now(&self, ids: &[DeliveryId]) -> Vec<Job> {
        jobs_now(ids, self.settings.batch)
    }

    /// Begins a transaction whose jobs wake this process's workers once it commits.
    async fn outbox(&self) -> Result<Outbox, crate::store::StoreError> {
        Outbox::begin(&self.db, &self.wakers).await
    }

    /// Runs a `hubout` job.
    #[tracing::instrument(skip_all, fields(batch = job.deliveries.len()))]
    pub async fn run(self: &Arc<Self>, job: DeliverJob) -> Result<(), JobError> {
        let wait = UnixMs::now().until(job.not_before);
        if !wait.is_zero() {
            if wait > MAX_IN_HANDLER_WAIT {
                let mut outbox = self.outbox().await?;
                outbox
                    .push_due_later(&[Job::new(Queue::Deliver, &job).not_before(job.not_before)])
                    .await?;
                outbox.commit().await?;
                return Ok(());
            }
            tokio::time::sleep(wait).await;
        }
        // Ordered streams: when a delivery finishes, the next one waiting for the same
        // subscription is sent by this job at once, round after round, without a queue round
        // trip.
        let started = tokio::time::Instant::now();
        let mut ids = job.deliveries;
        let mut bodies = contents::BodyCache::default();
        loop {
            let streaming = started.elapsed() < STREAM_BUDGET;
            ids = self.send_batch(&ids, streaming, &mut bodies).await?;
            if ids.is_empty() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
