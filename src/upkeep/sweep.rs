//! The periodic sweep, every `HERALD_SWEEP_INTERVAL`, in every worker process:
//!
//! - leases ([`super::leases`]): lapsed subscriptions expired, renewals requested;
//! - backlog caps: a subscription whose callback keeps failing keeps at most
//!   `HERALD_MAX_PENDING_PER_SUBSCRIPTION` waiting deliveries (`store::deliveries::cap_backlogs`
//!   says which are dropped); the dropped ones are `cancelled` with the reason, and
//!   subscribers see the gap in `Herald-Sequence`;
//! - retention: delivered, cancelled and gone deliveries, finished requests, distributions and
//!   the documents and bodies nothing refers to any more are deleted after `HERALD_RETENTION`,
//!   failed deliveries after `HERALD_FAILED_RETENTION` (they stay replayable until then), and
//!   so are finished queue jobs; live subscribers' updates after `HERALD_LIVE_BACKLOG_TTL`
//!   (counted as dropped for the subscriber when no connection was sent them), and live tokens
//!   and grants `HERALD_RETENTION` after they ended; the producer's events after
//!   `HERALD_EVENTS_RETENTION`;
//! - on a PostgreSQL server whose autovacuum is off, a vacuum of Herald's tables every 30 s
//!   (`store::maintenance`), without which they would grow whatever retention deletes.
//!
//! Every step is a few statements that claim or delete rows, deletions in batches of
//! `store::PRUNE_BATCH` rows, so several processes sharing a PostgreSQL database can sweep at
//! once and SQLite's write lock is never held for long.

use std::{sync::Arc, time::Duration};

use super::{Upkeep, leases};
use crate::{
    delivery,
    domain::ids::UnixMs,
    queue::tables,
    store::{
        StoreError, bodies, contents, deliveries, distributions, events, live, maintenance,
        requests, subscriptions,
    },
    telemetry::Chain,
};

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub expired: usize,
    pub renewals: usize,
    /// Subscriptions whose backlog was capped.
    pub capped: usize,
    pub pruned: Pruned,
}

/// Rows deleted by retention.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub requests: u64,
    pub contents: u64,
    pub bodies: u64,
    pub distributions: u64,
    pub jobs: u64,
    /// Subscriptions that ended (unsubscribed, expired, ended) longer than the retention ago.
    pub subscriptions: u64,
    /// Live subscribers' updates older than `HERALD_LIVE_BACKLOG_TTL`.
    pub live_events: u64,
    /// The producer's events older than `HERALD_EVENTS_RETENTION`.
    pub events: u64,
}

/// Finished queue jobs are kept this long, for operators looking at the queue (the state that
/// matters is in Herald's own tables; on PostgreSQL every finished job kept is a row to vacuum).
const DONE_JOBS_KEPT: Duration = Duration::from_secs(60);

/// How often, at most, the sweep vacuums Herald's tables itself (only where the PostgreSQL
/// server's autovacuum is off: `store::maintenance`).
const OWN_VACUUM_EVERY: Duration = Duration::from_secs(30);

pub fn spawn(upkeep: Arc<Upkeep>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let own_vacuum = match maintenance::needs_own_vacuum(&upkeep.db).await {
            Ok(needed) => needed,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "could not read the server's autovacuum setting");
                false
            }
        };
        if own_vacuum {
            tracing::warn!(
                "autovacuum is off on this PostgreSQL server: Herald vacuums its own tables every {}s",
                OWN_VACUUM_EVERY.as_secs()
            );
        }
        let mut vacuumed: Option<tokio::time::Instant> = None;
        loop {
            match sweep_once(&upkeep).await {
                Ok(r) if r != Report::default() => tracing::info!(?r, "sweep"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %Chain(&error), "sweep failed"),
            }
            if own_vacuum && vacuumed.is_none_or(|at| at.elapsed() >= OWN_VACUUM_EVERY) {
                vacuumed = Some(tokio::time::Instant::now());
                if let Err(error) = maintenance::vacuum(&upkeep.db).await {
                    tracing::warn!(error = %Chain(&error), "vacuum failed");
                }
            }
            tokio::time::sleep(upkeep.sweep.interval).await;
        }
    })
}

pub async fn sweep_once(upkeep: &Upkeep) -> Result<Report, StoreError> {
    let leases = leases::sweep_once(upkeep).await?;
    let capped = cap_backlogs(upkeep).await?;
    let pruned = prune(upkeep).await?;
    Ok(Report {
        expired: leases.expired,
        renewals: leases.renewals,
        capped,
        pruned,
    })
}

/// Drops what is beyond the backlog cap and lets the next delivery of each affected
/// subscription go (the dropped one may have been the one it waited for).
async fn cap_backlogs(upkeep: &Upkeep) -> Result<usize, StoreError> {
    let now = UnixMs::now();
    let mut tx = upkeep.outbox().await?;
    let affected = deliveries::cap_backlogs(&mut tx, upkeep.max_pending, now).await?;
    let next = deliveries::successors(&mut tx, &affected).await?;
    tx.push(&delivery::jobs_now(&next, upkeep.delivery_batch))
        .await?;
    tx.commit().await?;
    if !affected.is_empty() {
        tracing::warn!(
            subscriptions = affected.len(),
            cap = upkeep.max_pending,
            "deliveries dropped: backlog cap reached"
        );
    }
    Ok(affected.len())
}

/// Deletes what retention no longer keeps, children before what they refer to.
async fn prune(upkeep: &Upkeep) -> Result<Pruned, StoreError> {
    let db = &upkeep.db;
    let now = UnixMs::now();
    let before = now.before(upkeep.sweep.retention);
    let failed_before = now.before(upkeep.sweep.failed_retention);
    let deliveries = deliveries::prune(db, before, failed_before).await?;
    let live_events = live::sweep(db, now.before(upkeep.live_backlog_ttl), before).await?;
    let requests = requests::prune(db, before).await?;
    let subscriptions = subscriptions::prune_ended(db, before).await?;
    let contents = contents::prune(db, before).await?;
    let bodies = bodies::prune(db, before).await?;
    let distributions = distributions::prune(db, before).await?;
    let jobs = tables::purge_finished(db, now.before(DONE_JOBS_KEPT), failed_before).await?;
    let events = events::prune(db, now.before(upkeep.sweep.events_retention)).await?;
    Ok(Pruned {
        events,
        deliveries,
        requests,
        contents,
        bodies,
        distributions,
        jobs,
        live_events,
        subscriptions,
    })
}
