//! Upkeep: the periodic work every worker process runs beside the queues, and process
//! liveness.
//!
//! **In:** time. Nothing asks for upkeep; each part runs on its own interval.
//!
//! **Stored / acted on:**
//! - [`leases`] (part of the [`sweep`]): lapsed subscriptions expired, hub-initiated renewals
//!   requested (ordinary `hubverify` requests);
//! - [`sweep`], every `HERALD_SWEEP_INTERVAL`: backlog caps and retention (deliveries, requests,
//!   documents, bodies, finished queue jobs, live backlogs);
//! - [`reconcile`], at start-up and every `HERALD_RECONCILE_INTERVAL`: pending work that no
//!   queue job covers gets one;
//! - [`events_push`], every 250 ms when `HERALD_PRODUCER_EVENTS_URL` is set: the producer's new
//!   events handed to deliveries of the push subscription;
//! - [`liveness`], every 2 s in every process: this process's heartbeat, and the claims of
//!   processes that stopped beating taken back and queued again.
//!
//! **Out:** queue jobs and wakes (through `queue::Outbox`), never a network request.
//!
//! **Retried:** each pass is idempotent — a few statements that claim or delete rows — so a
//! failed pass is simply run again next time, and processes sharing a PostgreSQL database can
//! all run it without acting twice.

pub mod events_push;
pub mod leases;
pub mod liveness;
pub mod reconcile;
pub mod sweep;

use std::time::Duration;

use crate::{
    config::{LeaseSettings, QueueSettings, Role, SweepSettings},
    domain::ids::ProcessId,
    queue::{Outbox, Wakers},
    store::{Db, StoreError},
};

/// The upkeep's handle, built once at start-up.
#[derive(Debug)]
pub struct Upkeep {
    pub db: Db,
    pub wakers: Wakers,
    /// This process, as registered for liveness.
    pub process: ProcessId,
    /// What this process does, said in its registration.
    pub role: Role,
    pub lease: LeaseSettings,
    pub sweep: SweepSettings,
    pub queue: QueueSettings,
    /// Deliveries per hubout job.
    pub delivery_batch: usize,
    /// The most deliveries that may wait for one subscription.
    pub max_pending: usize,
    /// How long live subscribers' updates are kept.
    pub live_backlog_ttl: Duration,
    /// The SQLite file, watched for being deleted or replaced under the hub.
    pub database_file: Option<crate::store::file::DatabaseFile>,
}

impl Upkeep {
    async fn outbox(&self) -> Result<Outbox, StoreError> {
        Outbox::begin(&self.db, &self.wakers).await
    }
}
