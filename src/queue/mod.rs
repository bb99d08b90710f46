//! The job queues: the only module that names apalis types.
//!
//! | queue        | work                                          | flow                         |
//! |--------------|-----------------------------------------------|------------------------------|
//! | `hubverify`  | none any more: requests wait in their table    | [`crate::verification`]      |
//! | `hubdistrib` | one job per topic with unhandled pings        | [`crate::distribution`]      |
//! | `hubout`     | one job per batch of deliveries (hundreds)    | [`crate::delivery`]          |
//!
//! Jobs carry ids, never bodies, and are pushed inside the caller's store transaction, with
//! `max_attempts(1)`: the retry and backoff policy is Herald's (`domain::retry`,
//! `deliveries.next_attempt_at`), never apalis' instant re-runs. What a job acts on is claimed
//! by its handler first, so a duplicate job finds nothing to do.
//!
//! - this file: the queues, a job to push, pushing in a transaction;
//! - [`outbox`]: the one way to commit state and wake the workers that act on it
//!   ([`Outbox`]), and this process's wake-ups ([`Wakers`]);
//! - [`tables`]: apalis' own tables — migrations, what is unfinished, what a dead process had
//!   taken, purging, depths.
//!
//! The workers that run jobs are started by [`crate::runtime`].

pub mod outbox;
pub mod tables;

use apalis::prelude::{Task, TaskBuilder};
use serde::Serialize;

pub use self::outbox::{Outbox, Wakers};
use crate::{
    domain::ids::UnixMs,
    store::{StoreError, Tx},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Verify,
    Distribute,
    Deliver,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Verify, Queue::Distribute, Queue::Deliver];

    /// The queue's name in apalis' tables (and in `NOTIFY herald_jobs` payloads).
    pub fn name(self) -> &'static str {
        match self {
            Queue::Verify => "hubverify",
            Queue::Distribute => "hubdistrib",
            Queue::Deliver => "hubout",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Queue::ALL.into_iter().find(|q| q.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a job stopped early. The queue records it; the reconciler re-enqueues the work later.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something this process holds is at capacity or closing: the work is tried again later.
    #[error("{0}")]
    Busy(&'static str),
    /// A task the job ran ended without an answer (it panicked or was cancelled).
    #[error("a delivery pipeline ended abnormally")]
    Pipeline(#[source] tokio::task::JoinError),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A job to push: its queue, JSON payload, and the earliest second it may run.
#[derive(Debug, Clone)]
pub struct Job {
    queue: Queue,
    payload: Vec<u8>,
    run_at_secs: Option<u64>,
    /// Workers take jobs of a higher priority first (0 by default).
    priority: u8,
}

impl Job {
    pub fn new<T: Serialize>(queue: Queue, payload: &T) -> Self {
        let payload = serde_json::to_vec(payload).expect("job payloads serialise");
        Self::raw(queue, payload)
    }

    /// Taken before the jobs of priority 0 that wait in its queue.
    pub fn ahead(mut self) -> Self {
        self.priority = 1;
        self
    }

    /// Not before `at` (the queue itself keeps whole seconds, so the handler also checks the
    /// precise time carried in its payload).
    pub fn not_before(mut self, at: UnixMs) -> Self {
        self.run_at_secs = Some(at.as_secs());
        self
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// A job with a payload already serialised (one read back from the queue).
    fn raw(queue: Queue, payload: Vec<u8>) -> Self {
        Self {
            queue,
            payload,
            run_at_secs: None,
            priority: 0,
        }
    }

    fn task(&self) -> Task<Vec<u8>> {
        let mut builder = TaskBuilder::new(self.payload.clone()).max_attempts(1);
        if let Some(at) = self.run_at_secs {
            builder = builder.run_at_timestamp(at);
        }
        if self.priority > 0 {
            builder = builder.priority(usize::from(self.priority));
        }
        builder.build()
    }
}

/// The PostgreSQL channel on which pushes wake the workers of other processes (the payload is
/// the queue's name).
pub const JOBS_CHANNEL: &str = "herald_jobs";

/// Pushes `jobs` inside `tx`: they exist if and only if the transaction commits. On PostgreSQL
/// the workers of every process are told at commit (`NOTIFY`), so a web process's pushes do not
/// wait for the worker processes' next poll. Callers go through [`Outbox::push`], which also
/// wakes this process's workers after the commit.
async fn push(tx: &mut Tx, jobs: &[Job]) -> Result<(), StoreError> {
    for queue in Queue::ALL {
        let tasks: Vec<_> = jobs
            .iter()
            .filter(|j| j.queue == queue)
            .map(Job::task)
            .collect();
        if tasks.is_empty() {
            continue;
        }
        crate::store::notify::at_commit(tx, JOBS_CHANNEL, queue.name()).await?;
        for chunk in tasks.chunks(1000) {
            match tx {
                Tx::Sqlite(t) => apalis_sqlite::queries::push_tasks(&mut **t, queue.name(), chunk)
                    .await
                    .map_err(|e| StoreError::Queue(Box::new(e)))?,
                Tx::Pg(t) => {
                    apalis_postgres::queries::push_tasks(&mut **t, queue.name(), chunk.to_vec())
                        .await
                        .map_err(|e| StoreError::Queue(Box::new(e)))?
                }
            }
        }
    }
    Ok(())
}
