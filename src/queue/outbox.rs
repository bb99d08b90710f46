//! Committing state and waking whoever acts on it, as one step.
//!
//! Work is stored in a transaction — as queue jobs pushed with it, or as rows of its own table
//! (subscription requests) — and the workers that will act on it must hear of it: this
//! process's right after the commit (a watch channel per queue), other processes' at the
//! commit (PostgreSQL `NOTIFY herald_jobs`, listened to by `runtime`). An [`Outbox`] is the
//! transaction together with the wakes it owes, so no caller can commit and forget to wake, or
//! wake before the commit made the work visible.

use std::{
    ops::{Deref, DerefMut},
    pin::Pin,
    sync::Arc,
};

use futures::Stream;
use tokio::sync::watch;

use super::{JOBS_CHANNEL, Job, Queue};
use crate::store::{Db, StoreError, Tx};

/// This process's wake-ups, one channel per queue, and whether this process runs workers.
#[derive(Debug, Clone)]
pub struct Wakers {
    channels: Arc<[watch::Sender<u64>; 3]>,
    local_workers: bool,
}

impl Wakers {
    /// `local_workers`: whether this process runs the queue workers (and the verifier).
    pub fn new(local_workers: bool) -> Self {
        Self {
            channels: Arc::new(std::array::from_fn(|_| watch::channel(0).0)),
            local_workers,
        }
    }

    /// Wakes this process's workers of `queue`.
    pub fn wake(&self, queue: Queue) {
        self.channels[queue.index()].send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every wake of `queue` from now on.
    pub fn watch(&self, queue: Queue) -> watch::Receiver<u64> {
        self.channels[queue.index()].subscribe()
    }

    /// Every wake of `queue` from now on, as a stream (what apalis' polling strategy takes).
    pub fn stream(&self, queue: Queue) -> Pin<Box<dyn Stream<Item = ()> + Send + Sync>> {
        let rx = self.watch(queue);
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        }))
    }

    /// Wakes the queues named by another process's `NOTIFY herald_jobs`.
    pub fn wake_named(&self, name: &str) {
        if let Some(queue) = Queue::from_name(name) {
            self.wake(queue);
        }
    }

    pub fn wake_all(&self) {
        for queue in Queue::ALL {
            self.wake(queue);
        }
    }
}

/// A store transaction and the wakes it owes once committed. It dereferences to the
/// transaction, so store functions take it as `&mut Tx`; [`Outbox::commit`] commits and then
/// wakes. Dropped without a commit, it rolls back and wakes nobody.
pub struct Outbox {
    tx: Tx,
    wakers: Wakers,
    owed: [bool; 3],
}

impl Outbox {
    pub async fn begin(db: &Db, wakers: &Wakers) -> Result<Self, StoreError> {
        Ok(Self {
            tx: db.begin().await?,
            wakers: wakers.clone(),
            owed: [false; 3],
        })
    }

    /// Pushes `jobs` in the transaction; their workers are woken after the commit.
    pub async fn push(&mut self, jobs: &[Job]) -> Result<(), StoreError> {
        super::push(&mut self.tx, jobs).await?;
        for job in jobs {
            self.owed[job.queue.index()] = true;
        }
        Ok(())
    }

    /// Pushes `jobs` that are due later without waking this process's workers for them (their
    /// next poll finds them due).
    pub async fn push_due_later(&mut self, jobs: &[Job]) -> Result<(), StoreError> {
        super::push(&mut self.tx, jobs).await
    }

    /// Work of `queue` kept in its own table waits once this commits: this process's workers
    /// are woken after the commit, and — when this process runs none of its own — every
    /// process's at the commit.
    pub async fn wake(&mut self, queue: Queue) -> Result<(), StoreError> {
        if !self.wakers.local_workers {
            crate::store::notify::at_commit(&mut self.tx, JOBS_CHANNEL, queue.name()).await?;
        }
        self.owed[queue.index()] = true;
        Ok(())
    }

    /// Like [`Outbox::wake`], but every process's workers are told even when this process runs
    /// its own (work this process hands back as it stops, or takes back from a dead one).
    pub async fn announce(&mut self, queue: Queue) -> Result<(), StoreError> {
        crate::store::notify::at_commit(&mut self.tx, JOBS_CHANNEL, queue.name()).await?;
        self.owed[queue.index()] = true;
        Ok(())
    }

    /// Commits, then wakes what is owed.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        for queue in Queue::ALL {
            if self.owed[queue.index()] {
                self.wakers.wake(queue);
            }
        }
        Ok(())
    }
}

impl Deref for Outbox {
    type Target = Tx;
    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl DerefMut for Outbox {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}
