//! The verifier: each worker process's one task that takes subscription requests waiting for
//! verification straight from their table, a batch at a time (`requests::claim_next`: the
//! oldest pending requests that nobody holds and that are first in line for their pair), and
//! runs each batch (`Verification::verify_batch`) beside up to [`BATCHES`] others.
//!
//! No queue job per request: the table is the queue. It looks again as soon as it is woken —
//! requests stored by this process, a completed request whose pair has a next one, a
//! notification from another process (`queue::Outbox::wake`) — and at least every
//! `HERALD_QUEUE_POLL`, when it also gives back the requests whose hold lapsed
//! (`requests::release_lapsed`: a stalled verification, an unused `hub.verify=sync`
//! reservation, a rest while the callback host was busy). A request claimed by a process that
//! died is given back by `upkeep::liveness`; nothing waits for a reconciler.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{Semaphore, oneshot},
    task::JoinSet,
};

use super::{BATCH, Verification};
use crate::{domain::ids::UnixMs, queue::Queue, store::requests, telemetry::Chain};

/// Batches one process verifies at once (each up to [`BATCH`] requests).
pub const BATCHES: usize = 16;

/// Under load (the last claim found requests), how long the verifier lets more arrive after a
/// wake before it claims: larger batches, fewer statements per request.
const GATHER: Duration = Duration::from_millis(3);

/// On stop, how long running batches get to finish; what is still running then is given back
/// by `upkeep::liveness::retire`.
const DRAIN: Duration = Duration::from_secs(10);

/// The running verifier; [`Verifier::stop`] lets its batches finish.
pub struct Verifier {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Verifier {
    pub fn start(verification: Arc<Verification>) -> Self {
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(run(verification, stopped));
        Self { stop, done }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

async fn run(verification: Arc<Verification>, mut stopped: oneshot::Receiver<()>) {
    let mut woken = verification.wakers.watch(Queue::Verify);
    let slots = Arc::new(Semaphore::new(BATCHES));
    let mut batches = JoinSet::new();
    let poll = verification.poll;
    let mut released_at: Option<tokio::time::Instant> = None;
    loop {
        while batches.try_join_next().is_some() {}
        if released_at.is_none_or(|at| at.elapsed() >= poll) {
            released_at = Some(tokio::time::Instant::now());
            if let Err(error) = requests::release_lapsed(&verification.db, UnixMs::now()).await {
                tracing::warn!(error = %Chain(&error), "cannot give back lapsed verification claims");
            }
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut stopped => break,
        };
        // Wakes from now on count: what they announce may not be claimable yet.
        woken.borrow_and_update();
        let now = UnixMs::now();
        let hold = verification.claim_hold(now);
        let busy = match requests::claim_next(
            &verification.db,
            now,
            hold,
            &verification.process,
            BATCH,
        )
        .await
        {
            Ok(batch) if !batch.is_empty() => {
                let full = batch.len() == BATCH;
                let verification = verification.clone();
                batches.spawn(async move {
                    if let Err(error) = verification.verify_batch(batch).await {
                        tracing::warn!(error = %Chain(&error), "a verification batch failed; its requests are verified again");
                    }
                    drop(slot);
                });
                // A full batch may have left more waiting; a partial one took all there was,
                // so look again when woken (what arrived since the claim began has woken it).
                if full {
                    continue;
                }
                true
            }
            Ok(_) => {
                drop(slot);
                false
            }
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "cannot claim requests to verify; trying again");
                drop(slot);
                false
            }
        };
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = &mut stopped => break,
        }
        if busy {
            tokio::time::sleep(GATHER).await;
        }
    }
    let finish = async { while batches.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, finish).await.is_err() {
        batches.abort_all();
    }
}
