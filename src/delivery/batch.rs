//! One batch of a job: claim what is due, hand the POSTs to a pipeline ([`super::pipeline`]),
//! and follow it until it finishes — or leave it to finish in the background when a few slow
//! callbacks hold it up. Deliveries the claim missed go back to the queue for when they can go.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::{Delivery, jobs_due, pipeline::Pipeline};
use crate::{
    domain::ids::{DeliveryId, UnixMs},
    queue::JobError,
    store::{contents, deliveries},
};

/// How often a job looks at how far its batch has got.
const PROGRESS_CHECK: Duration = Duration::from_millis(50);

/// How long a delivery waiting behind one in flight waits before it looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);

impl Delivery {
    /// Claims and sends one batch and records the results. Returns the deliveries that waited
    /// for the ones just finished, when `stream` says this job sends them too (their jobs are
    /// pushed anyway, due a little later); otherwise their jobs are due at once and nothing is
    /// returned.
    pub(super) async fn send_batch(
        self: &Arc<Self>,
        ids: &[DeliveryId],
        stream: bool,
        bodies: &mut contents::BodyCache,
    ) -> Result<Vec<DeliveryId>, JobError> {
        let now = UnixMs::now();
        let hold = self.claim_until(now, ids.len());
        let claimed = deliveries::claim(&self.db, ids, now, hold, &self.process).await?;
        self.requeue_blocked(ids, &claimed.ids).await?;
        if claimed.ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = deliveries::load_claimed(&self.db, &claimed.ids).await?;
        let mut content_ids: Vec<_> = rows.iter().map(|r| r.content_id).collect();
        content_ids.sort_unstable();
        content_ids.dedup();
        let contents = contents::load_many(&self.db, &content_ids, bodies).await?;

        // The POSTs and the recording of their results run as their own task: when a batch is
        // held up by a few callbacks that answer slowly (or never, until the timeout), the job
        // leaves that task to finish them and frees its worker slot for the next batch. The
        // number of such tasks is bounded per process (`Limits::delivery_pipeline`).
        let pipeline_slot = self
            .limits
            .delivery_pipeline()
            .await
            .map_err(|_| JobError::Busy("the delivery pipelines are closed"))?;
        let detached = Arc::new(AtomicBool::new(false));
        let recorded = Arc::new(AtomicUsize::new(0));
        let total = rows.len();
        let (next_tx, mut next_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<DeliveryId>>();
        let pipeline = Pipeline {
            rows,
            contents,
            token: claimed.token,
            // One draw per batch: deliveries that failed alike come back together, as one job.
            jitter: random_unit(),
            stream,
            detached: detached.clone(),
            recorded: recorded.clone(),
            next: next_tx,
            _slot: pipeline_slot,
        };
        let pipeline = tokio::spawn(pipeline.run(self.clone()));
        tokio::pin!(pipeline);
        let started = tokio::time::Instant::now();
        let mut progress = tokio::time::interval(PROGRESS_CHECK);
        let mut next = Vec::new();
        loop {
            tokio::select! {
                finished = &mut pipeline => {
                    finished.map_err(JobError::Pipeline)??;
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
                        let mut outbox = self.outbox().await?;
                        outbox.push(&self.jobs_now(&next)).await?;
                        outbox.commit().await?;
                    }
                    tracing::debug!("batch held up by slow callbacks; left to finish in the background");
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// Deliveries of this job that it could not claim and that are still pending go back to
    /// the queue: those behind an older one to the same subscription due when that one can
    /// next be finished (when it finishes first, the job that finished it pushes them at once;
    /// this covers the moment both jobs run together), the others when they are due.
    async fn requeue_blocked(
        &self,
        requested: &[DeliveryId],
        claimed: &[DeliveryId],
    ) -> Result<(), JobError> {
        let claimed: HashSet<DeliveryId> = claimed.iter().copied().collect();
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
        for d in deliveries::unclaimed(&self.db, &unclaimed, soon).await? {
            by_time
                .entry(try_again_at(&d, now, soon))
                .or_default()
                .push(d.id);
        }
        if by_time.is_empty() {
            return Ok(());
        }
        let mut outbox = self.outbox().await?;
        outbox.push(&jobs_due(by_time)).await?;
        outbox.commit().await?;
        Ok(())
    }

    /// How long a batch keeps its claim: every round of concurrent POSTs may take a full
    /// timeout, plus one more and a margin for writing the results. A claim that lapses lets
    /// another worker take the deliveries again, so it must outlast the slowest batch.
    fn claim_until(&self, now: UnixMs, batch: usize) -> UnixMs {
        let rounds = batch.div_ceil(self.settings.concurrency) as u32 + 1;
        now.after(self.settings.timeout * rounds + Duration::from_secs(5))
    }
}

/// Whether a batch is held up by a few slow callbacks, so the job should leave the rest to
/// finish in the background: almost all of it is done and the rest is late, or it has simply
/// taken long.
fn held_up(elapsed: Duration, recorded: usize, total: usize) -> bool {
    let almost_all = recorded * 10 >= total * 9;
    (almost_all && elapsed >= Duration::from_millis(250)) || elapsed >= Duration::from_secs(2)
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
