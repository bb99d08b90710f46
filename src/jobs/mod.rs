//! The three queues of the hub, plus the reconciler that keeps them honest.
//!
//! | queue        | work                                          | module                       |
//! |--------------|-----------------------------------------------|------------------------------|
//! | `hubverify`  | subscribe/unsubscribe requests, in their table | [`verifier`], [`verify`]    |
//! | `hubdistrib` | one job per topic with unhandled pings        | [`distribute`]               |
//! | `hubout`     | one job per batch of deliveries (hundreds)    | [`deliver`]                  |
//!
//! `hubverify` has no job per request: `subscription_requests` is its queue, which each worker
//! process's verifier takes batches from (a claim per batch, no queue round trips).
//!
//! Periodic work — [`reconcile`] and the [`sweep`] (leases, backlog caps, retention) — runs in
//! every worker process and only claims or deletes rows with single statements, so processes
//! sharing a database never act twice.
//!
//! Jobs carry ids, never bodies, and are pushed in the same transaction as the state they act
//! on, so a job exists exactly when its state says there is work. Handlers are idempotent:
//! each claims its state before acting, so a duplicate job finds nothing to do.

pub mod deliver;
pub mod distribute;
pub mod intake;
pub mod leases;
pub mod liveness;
pub mod queue;
pub mod reconcile;
pub mod sweep;
pub mod verifier;
pub mod verify;

/// Why a job stopped early. The queue records it; the reconciler re-enqueues the work later.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Busy(String),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}
